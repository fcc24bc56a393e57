"""Engine outputs → the frames the Insights pages show and chart; pure, no Streamlit.

The analytics engines (``safar.analytics``) answer with JSON-like dicts; each function here
turns one part of an answer into a polars frame with the columns a table or a
``charts.build_<chart>_figure`` reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl


def format_duration(seconds: float | None) -> str:
    """A duration as a person reads it: the two largest units.

    Example:
        >>> [format_duration(s) for s in (None, 0, 42.4, 90, 3725, 90061, 1209600)]
        ['–', '0s', '42s', '1m 30s', '1h 2m', '1d 1h', '14d']
    """
    if seconds is None:
        return "–"
    left = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])


def value_label(value: Any) -> str:
    """A breakdown value as a label; a missing value reads "(none)".

    Example:
        >>> [value_label(v) for v in (None, "fashion", 3, True)]
        ['(none)', 'fashion', '3', 'true']
    """
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- Funnels ---------------------------------------------------------------------------------


def funnel_steps_frame(steps: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per step: how many got there, from the start and from the step before.

    Example:
        >>> df = funnel_steps_frame([
        ...     {"name": "a", "count": 10, "conversion_rate": 1.0,
        ...      "average_conversion_seconds": None, "median_conversion_seconds": None},
        ...     {"name": "b", "count": 4, "conversion_rate": 0.4,
        ...      "average_conversion_seconds": 60.0, "median_conversion_seconds": 30.0}])
        >>> df.select("step", "name", "count", "step_conversion_rate", "dropped").rows()
        [(1, 'a', 10, 1.0, 0), (2, 'b', 4, 0.4, 6)]
    """
    counts = [int(step["count"]) for step in steps]
    pairs = list(zip(counts, counts[:1] + counts[:-1], strict=True))  # (step, step before)
    return pl.DataFrame(
        {
            "step": list(range(1, len(steps) + 1)),
            "name": [step["name"] for step in steps],
            "count": counts,
            "conversion_rate": [float(step["conversion_rate"]) for step in steps],
            "step_conversion_rate": [c / p if p else 0.0 for c, p in pairs],
            "dropped": [p - c for c, p in pairs],
            "average_seconds": [step["average_conversion_seconds"] for step in steps],
            "median_seconds": [step["median_conversion_seconds"] for step in steps],
        },
        schema_overrides={"average_seconds": pl.Float64, "median_seconds": pl.Float64},
    )


def funnel_table(steps: pl.DataFrame) -> pl.DataFrame:
    """:func:`funnel_steps_frame` as a person reads it: percentages and durations as text.

    Example:
        >>> df = pl.DataFrame({"step": [1, 2], "name": ["a", "b"], "count": [10, 4],
        ...     "conversion_rate": [1.0, 0.4], "step_conversion_rate": [1.0, 0.4],
        ...     "dropped": [0, 6], "average_seconds": [None, 60.0], "median_seconds": [None, 30.0]})
        >>> funnel_table(df).row(1)
        (2, 'b', 4, '40.0%', '40.0%', 6, '1m', '30s')
    """
    return pl.DataFrame(
        {
            "Step": steps["step"],
            "Event": steps["name"],
            "People": steps["count"],
            "Of first step": [f"{r:.1%}" for r in steps["conversion_rate"]],
            "Of previous step": [f"{r:.1%}" for r in steps["step_conversion_rate"]],
            "Dropped off": steps["dropped"],
            "Average time from previous": [format_duration(s) for s in steps["average_seconds"]],
            "Median time from previous": [format_duration(s) for s in steps["median_seconds"]],
        }
    )


def funnel_breakdown_frame(breakdowns: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """The breakdown rows in long form: one row per value and step, in the engine's order.

    Example:
        >>> steps = [{"name": "a", "count": 5, "conversion_rate": 1.0},
        ...          {"name": "b", "count": 2, "conversion_rate": 0.4}]
        >>> rows = [{"value": ["web"], "steps": steps}]
        >>> funnel_breakdown_frame(rows).rows()
        [('web', 1, 'a', 5, 1.0), ('web', 2, 'b', 2, 0.4)]
    """
    rows = [
        (value_label(row["value"][0]), i, step["name"], int(step["count"]), step["conversion_rate"])
        for row in breakdowns
        for i, step in enumerate(row["steps"], start=1)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "value": pl.String,
            "step": pl.Int64,
            "name": pl.String,
            "count": pl.Int64,
            "conversion_rate": pl.Float64,
        },
        orient="row",
    )


def funnel_breakdown_table(long: pl.DataFrame) -> pl.DataFrame:
    """One row per breakdown value: the people at every step and the overall conversion.

    Example:
        >>> long = pl.DataFrame({"value": ["web", "web", "ios", "ios"], "step": [1, 2, 1, 2],
        ...     "name": ["a", "b", "a", "b"], "count": [5, 2, 4, 3],
        ...     "conversion_rate": [1.0, 0.4, 1.0, 0.75]})
        >>> funnel_breakdown_table(long).rows()
        [('web', 5, 2, '40.0%'), ('ios', 4, 3, '75.0%')]
    """
    columns: dict[str, list[Any]] = {"Value": []}
    last = long["step"].max() if long.height else 0
    names = {s: n for s, n in long.select("step", "name").unique().iter_rows()}
    for step in range(1, (last or 0) + 1):
        columns[f"{step}. {names[step]}"] = []
    columns["Conversion"] = []
    for (value,), group in long.group_by("value", maintain_order=True):
        group = group.sort("step")
        columns["Value"].append(value)
        for step, count in zip(group["step"], group["count"], strict=True):
            columns[f"{step}. {names[step]}"].append(count)
        columns["Conversion"].append(f"{group['conversion_rate'][-1]:.1%}")
    return pl.DataFrame(columns)


def time_to_convert_frame(details: Mapping[str, Any]) -> pl.DataFrame:
    """The time-to-convert histogram bins, each with a readable label.

    Example:
        >>> bins = [{"seconds_from": 0.0, "seconds_to": 60.0, "count": 3},
        ...         {"seconds_from": 60.0, "seconds_to": 3600.0, "count": 1}]
        >>> time_to_convert_frame({"bins": bins})["label"].to_list()
        ['0s – 1m', '1m – 1h']
    """
    bins = details.get("bins") or []
    return pl.DataFrame(
        {
            "seconds_from": [float(b["seconds_from"]) for b in bins],
            "seconds_to": [float(b["seconds_to"]) for b in bins],
            "count": [int(b["count"]) for b in bins],
            "label": [
                f"{format_duration(b['seconds_from'])} – {format_duration(b['seconds_to'])}"
                for b in bins
            ],
        },
        schema={
            "seconds_from": pl.Float64,
            "seconds_to": pl.Float64,
            "count": pl.Int64,
            "label": pl.String,
        },
    )


def _instant(text: str) -> datetime:
    """An ISO period start as naive wall time (its offset dropped: the period's own clock)."""
    return datetime.fromisoformat(text).replace(tzinfo=None)


def period_label(start: str | datetime, period: str) -> str:
    """A period's start as its label: the date, and the hour for hourly periods.

    Example:
        >>> period_label("2026-01-20T00:00:00+03:30", "day")
        '2026-01-20'
        >>> period_label("2026-01-20T13:00", "hour")
        '2026-01-20 13:00'
    """
    wall = _instant(start) if isinstance(start, str) else start
    return wall.strftime("%Y-%m-%d %H:00" if period == "hour" else "%Y-%m-%d")


def conversion_over_time_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Entered, converted and the conversion rate per entry period.

    Example:
        >>> conversion_over_time_frame([{"period_start": "2026-01-01T00:00:00+00:00",
        ...     "entered": 4, "converted": 1, "conversion_rate": 0.25}]).row(0)
        (datetime.datetime(2026, 1, 1, 0, 0), 4, 1, 0.25)
    """
    return pl.DataFrame(
        {
            "period_start": [_instant(r["period_start"]) for r in rows],
            "entered": [int(r["entered"]) for r in rows],
            "converted": [int(r["converted"]) for r in rows],
            "conversion_rate": [float(r["conversion_rate"]) for r in rows],
        },
        schema={
            "period_start": pl.Datetime("us"),
            "entered": pl.Int64,
            "converted": pl.Int64,
            "conversion_rate": pl.Float64,
        },
    )


def people_choices(step_names: Sequence[str]) -> dict[int, str]:
    """The "people" lists a funnel offers, by the engine's ``persons`` argument.

    N lists who reached step N; -N who reached step N-1 but not step N.

    Example:
        >>> people_choices(["Viewed", "Bought"])
        {1: 'Reached step 1: Viewed', 2: 'Reached step 2: Bought', -2: 'Dropped off before step 2: Bought'}
    """  # noqa: E501
    reached = {n: f"Reached step {n}: {name}" for n, name in enumerate(step_names, start=1)}
    dropped = {
        -n: f"Dropped off before step {n}: {step_names[n - 1]}"
        for n in range(2, len(step_names) + 1)
    }
    return reached | dropped


def people_frame(persons: Sequence[Any]) -> pl.DataFrame:
    """The people an engine listed, one ``person_id`` per row.

    Example:
        >>> people_frame(["u2", "u1"]).write_csv()
        'person_id\\nu2\\nu1\\n'
    """
    return pl.DataFrame({"person_id": [str(p) for p in persons]}, schema={"person_id": pl.String})


# --- Retention -------------------------------------------------------------------------------


def retention_frame(cohorts: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Cohorts in long form: one row per cohort and period offset, with the share returned.

    Offset 0 is the cohort itself (its size, 100 %); an empty cohort has no rate.

    Example:
        >>> df = retention_frame([
        ...     {"period_start": "2026-01-01T00:00:00+00:00", "values": [4, 2, 1]},
        ...     {"period_start": "2026-01-02T00:00:00+00:00", "values": [0, 0]}])
        >>> df.select("offset", "size", "count", "rate").rows()
        [(0, 4, 4, 1.0), (1, 4, 2, 0.5), (2, 4, 1, 0.25), (0, 0, 0, None), (1, 0, 0, None)]
    """
    rows = [
        (_instant(cohort["period_start"]), offset, cohort["values"][0], count)
        for cohort in cohorts
        for offset, count in enumerate(cohort["values"])
    ]
    df = pl.DataFrame(
        rows,
        schema={
            "period_start": pl.Datetime("us"),
            "offset": pl.Int64,
            "size": pl.Int64,
            "count": pl.Int64,
        },
        orient="row",
    )
    return df.with_columns(rate=pl.when(pl.col("size") > 0).then(pl.col("count") / pl.col("size")))


def retention_average(long: pl.DataFrame) -> pl.DataFrame:
    """The share back after each offset over all cohorts that reach it, weighted by size.

    Example:
        >>> df = retention_frame([
        ...     {"period_start": "2026-01-01T00:00:00+00:00", "values": [4, 2, 1]},
        ...     {"period_start": "2026-01-02T00:00:00+00:00", "values": [6, 1]}])
        >>> retention_average(df).rows()
        [(0, 10, 10, 1.0), (1, 10, 3, 0.3), (2, 4, 1, 0.25)]
    """
    return (
        long.group_by("offset")
        .agg(pl.col("size").sum(), pl.col("count").sum())
        .sort("offset")
        .with_columns(rate=pl.when(pl.col("size") > 0).then(pl.col("count") / pl.col("size")))
    )


def actors_frame(actors: Sequence[Mapping[str, Any]], period: str) -> pl.DataFrame:
    """A cohort's members and the periods after which they came back.

    Example:
        >>> actors_frame([{"person": "u1", "appearances": [0, 2, 3]}], "week").rows()
        [('u1', 'Week 2, Week 3')]
    """
    return pl.DataFrame(
        {
            "person_id": [str(a["person"]) for a in actors],
            "returned": [
                ", ".join(f"{period.capitalize()} {c}" for c in a["appearances"] if c)
                for a in actors
            ],
        },
        schema={"person_id": pl.String, "returned": pl.String},
    )


def retention_table(long: pl.DataFrame, period: str) -> pl.DataFrame:
    """One row per cohort: its size and the share back in each later period, as text.

    Example:
        >>> df = retention_frame([
        ...     {"period_start": "2026-01-01T00:00:00+00:00", "values": [4, 2]},
        ...     {"period_start": "2026-01-02T00:00:00+00:00", "values": [0]}])
        >>> retention_table(df, "day").rows()
        [('2026-01-01', 4, '50.0%'), ('2026-01-02', 0, '')]
    """
    offsets = range(1, int(long["offset"].max() or 0) + 1) if long.height else range(0)
    columns: dict[str, list[Any]] = {"Cohort": [], "People": []}
    columns.update({f"{period.capitalize()} {o}": [] for o in offsets})
    for (start,), group in long.group_by("period_start", maintain_order=True):
        rates = dict(zip(group["offset"], group["rate"], strict=True))
        columns["Cohort"].append(period_label(start, period))
        columns["People"].append(int(group["size"][0]))
        for o in offsets:
            rate = rates.get(o)
            columns[f"{period.capitalize()} {o}"].append("" if rate is None else f"{rate:.1%}")
    return pl.DataFrame(columns)


# --- Trends ----------------------------------------------------------------------------------


def _line_label(line: Mapping[str, Any]) -> str:
    if "breakdown_value" not in line:
        return line["name"]
    return f"{line['name']} · {value_label(line['breakdown_value'])}"


def trends_frame(lines: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """The trends lines in long form: one row per line and period, in the engine's order.

    A line is a series, or a series and a breakdown value (labelled ``series · value``).

    Example:
        >>> trends_frame([{"name": "Signed Up", "labels": ["2026-01-01T00:00:00+00:00"],
        ...                "values": [3], "total": 3}]).row(0)
        ('Signed Up', datetime.datetime(2026, 1, 1, 0, 0), 3.0)
    """
    rows = [
        (_line_label(line), _instant(label), None if value is None else float(value))
        for line in lines
        for label, value in zip(line["labels"], line["values"], strict=True)
    ]
    return pl.DataFrame(
        rows,
        schema={"line": pl.String, "period_start": pl.Datetime("us"), "value": pl.Float64},
        orient="row",
    )


def trends_totals(lines: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Each line's value over the whole range.

    Example:
        >>> trends_totals([{"name": "Signed Up", "breakdown_value": None, "labels": [],
        ...                 "values": [], "total": 3}]).rows()
        [('Signed Up · (none)', 3.0)]
    """
    return pl.DataFrame(
        {
            "Line": [_line_label(line) for line in lines],
            "Total": [None if line["total"] is None else float(line["total"]) for line in lines],
        },
        schema={"Line": pl.String, "Total": pl.Float64},
    )
