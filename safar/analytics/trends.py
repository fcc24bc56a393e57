"""Trends compiled to DuckDB SQL: one number per period for each series (and breakdown value).

Rules (``tests/analytics/reference_trends.py`` implements the same ones in plain Python):

- An event counts for a series when it passes the spec's ``where``, matches the series' event
  (None: any behavioural event) and passes the series' ``where``. Person filters read the
  person's latest traits.
- Periods are wall-clock periods in the spec's time zone (see
  :mod:`safar.analytics.trends_spec`); an event belongs to the period holding its wall time.
- ``total`` counts events; ``unique_persons`` counts distinct people; ``sum``, ``avg``,
  ``min``, ``max`` and ``median`` (the middle value, or the mean of the middle two) aggregate
  the event property's JSON numbers, ignoring other values. With no numbers ``sum`` is 0 and
  the others are null.
- ``dau``/``wau``/``mau`` count the distinct people active in the 1/7/30 wall-clock days
  ending where the period ends (PostHog's "weekly/monthly active users"); events before the
  first period count toward the early windows.
- A series' ``total`` is its math over the whole range as one period; for ``dau``/``wau``/
  ``mau`` that is the window ending where the last period ends (PostHog's total value for
  active-user maths).
- Breakdowns: one line per value seen on a counted event in the range (events tell values
  apart by their JSON text, so ``1``, ``"1"`` and ``true`` differ; unset is ``null``). Event
  scope uses each event's value, person scope the latest traits. Lines of a series are
  sorted by total (descending, null last), then by the value's JSON text.

The SQL is built from static templates whose ``:name`` placeholders are filled with sqlglot
expressions; user values only ever enter it as sqlglot literals.
"""

from __future__ import annotations

from typing import Any

import duckdb
import orjson
import sqlglot
from sqlglot import exp

from safar.analytics.filters import compile_filters, json_path, uses_person_properties
from safar.analytics.periods import interval, iso_label, local_time, period_start, timestamp_literal
from safar.analytics.source import EVENTS, PERSONS
from safar.analytics.spec import Filter
from safar.analytics.trends_spec import (
    PROPERTY_MATHS,
    ROLLING_DAYS,
    Periods,
    Series,
    TrendsSpec,
)

_NUMERIC_JSON_TYPES = ("BIGINT", "UBIGINT", "DOUBLE")
_NULL_KEY = "null"
"""The breakdown key of an unset property, and of every event when there is no breakdown."""

PERIODS_CTE = """
periods as (
    select
        period_start,
        period_start + :step as period_end
    from generate_series(:first_period, :last_period, :step) as spine(period_start)
)
"""
"""The ``periods(period_start, period_end)`` CTE, a row per reported period; its placeholders
are among :func:`period_values`."""

_IN_RANGE_VALUES = "select distinct breakdown_key from in_range"
_NO_BREAKDOWN = "select 'null' as breakdown_key"


def fill_template(template: str, **values: exp.Expression) -> exp.Expression:
    """Parse a static DuckDB template and put a copy of ``values[name]`` at each ``:name``.

    Example:
        >>> sql = fill_template("select * from t where a = :a", a=exp.Literal.string("x'y"))
        >>> print(sql.sql("duckdb"))
        SELECT * FROM t WHERE a = 'x''y'
    """

    def fill(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder):
            return values[node.name].copy()
        return node

    return sqlglot.parse_one(template, dialect="duckdb").transform(fill, copy=False)


def _unit(periods: Periods) -> tuple[str, str]:
    return periods.interval, periods.week_start


def range_bounds(periods: Periods) -> tuple[exp.Expression, exp.Expression]:
    """Wall-time expressions of the first and the last period's start (constants)."""
    tz = periods.timezone
    last = period_start(local_time(timestamp_literal(periods.date_to), tz), *_unit(periods))
    if periods.date_from is not None:
        first = period_start(local_time(timestamp_literal(periods.date_from), tz), *_unit(periods))
    else:
        back = interval(periods.intervals - 1, periods.interval)
        first = exp.Sub(this=last.copy(), expression=back)
    return first, last


def period_values(periods: Periods) -> dict[str, exp.Expression]:
    """The placeholders every template shares: ``step``, ``first_period``, ``last_period``,
    ``range_end`` (where the last period ends) and ``period_of_event`` (of ``local_at``)."""
    first, last = range_bounds(periods)
    step = interval(1, periods.interval)
    return {
        "step": step,
        "first_period": first,
        "last_period": last,
        "range_end": exp.Add(this=last.copy(), expression=step.copy()),
        "period_of_event": period_start(exp.column("local_at"), *_unit(periods)),
    }


def matched_events(
    event: str | None,
    filters: tuple[Filter, ...],
    timezone: str,
    columns: dict[str, exp.Expression] | None = None,
    *,
    since: exp.Expression | None = None,
    until: exp.Expression | None = None,
    person_columns: dict[str, exp.Expression] | None = None,
) -> exp.Select:
    """The events matching ``event`` and ``filters`` as ``(person_id, local_at, *columns)``.

    ``columns`` may read ``e.properties`` and ``p.<name>`` for each of ``person_columns``,
    which are computed once per person from ``properties`` (the latest traits), not once per
    event. ``since``/``until`` are wall times; they only prune on the UTC timestamp (a day
    wider, as no offset exceeds one), so callers still filter ``local_at`` exactly.
    """
    e_props, p_props = exp.column("properties", "e"), exp.column("properties", "p")
    conditions = []
    if event is not None:
        conditions.append(exp.column("event", "e").eq(exp.Literal.string(event)))
    if filters:
        conditions.append(compile_filters(filters, e_props, p_props))
    timestamp = exp.column("timestamp", "e")
    if since is not None:
        conditions.append(timestamp >= exp.Sub(this=since, expression=interval(1, "day")))
    if until is not None:
        conditions.append(timestamp < exp.Add(this=until, expression=interval(1, "day")))
    selected = [
        exp.column("person_id", "e").as_("person_id"),
        local_time(timestamp.copy(), timezone).as_("local_at"),
        *(value.as_(name) for name, value in (columns or {}).items()),
    ]
    query = exp.select(*selected).from_(exp.table_(EVENTS, alias="e"))
    if person_columns or uses_person_properties(filters):
        persons = exp.select(
            "person_id", "properties", *(v.as_(k) for k, v in (person_columns or {}).items())
        ).from_(PERSONS)
        on = exp.column("person_id", "p").eq(exp.column("person_id", "e"))
        query = query.join(persons.subquery("p"), on=on, join_type="left")
    return query.where(exp.and_(*conditions)) if conditions else query


_PER_EVENT = """
per_period as (
    select breakdown_key, period_start, :aggregate as value
    from in_range
    group by breakdown_key, period_start
),
per_range as (
    select breakdown_key, :aggregate as total
    from in_range
    group by breakdown_key
)
"""

# Rolling active people without a periods x people join. Active units are whole wall-clock
# hours or days (window edges always fall on them). A unit at u puts its person in every window
# ending in (u, u + window]; cut at the person's next unit, one person's spans never overlap,
# so the people in the window ending at E are the spans started before E minus those ended
# before E: a running sum of the +1/-1 edges (summed per instant first, so the window runs
# over few rows), read at each period end (which sorts before edges at the same instant).
_ROLLING = """
active as (
    select distinct breakdown_key, person_id, date_trunc(:grain, local_at) as active_at
    from matched
    where local_at >= :first_period + :step - :window and local_at < :range_end
),
spans as (
    select
        breakdown_key,
        active_at as span_start,
        -- least() skips the null lead of a person's last unit
        least(
            active_at + :window,
            lead(active_at) over (partition by breakdown_key, person_id order by active_at)
        ) as span_end
    from active
),
deltas as (
    select breakdown_key, marked_at, sum(delta) as delta
    from (
        select breakdown_key, span_start as marked_at, 1 as delta from spans
        union all
        select breakdown_key, span_end as marked_at, -1 as delta from spans
    ) as edges
    group by breakdown_key, marked_at
),
marks as (
    select breakdown_key, marked_at, delta, false as is_period_end, null as period_start
    from deltas
    union all
    select breakdown_values.breakdown_key, periods.period_end, 0, true, periods.period_start
    from breakdown_values
    cross join periods
),
running as (
    select
        breakdown_key,
        period_start,
        is_period_end,
        sum(delta) over (
            partition by breakdown_key
            order by marked_at, is_period_end desc
            rows between unbounded preceding and current row
        ) as people
    from marks
),
per_period as (
    select breakdown_key, period_start, people as value
    from running
    where is_period_end
),
per_range as (
    -- the window ending with the range is the last period's
    select breakdown_key, value as total
    from per_period
    where period_start = :last_period
)
"""

_TRENDS = """
with
{periods},
matched as (:matched),
in_range as (
    select *, :period_of_event as period_start
    from matched
    where local_at >= :first_period and local_at < :range_end
),
breakdown_values as (
    {breakdown_values}
),
{aggregates},
final as (
    select
        breakdown_values.breakdown_key,
        list(periods.period_start order by periods.period_start) as labels,
        list(per_period.value order by periods.period_start) as period_values,
        any_value(per_range.total) as total
    from breakdown_values
    cross join periods
    left join per_period
        on per_period.breakdown_key = breakdown_values.breakdown_key
        and per_period.period_start = periods.period_start
    left join per_range
        on per_range.breakdown_key = breakdown_values.breakdown_key
    group by breakdown_values.breakdown_key
)
select * from final
"""


def _aggregate(series: Series) -> exp.Expression:
    if series.math == "total":
        return exp.Count(this=exp.Star())
    if series.math == "unique_persons":
        return exp.Count(this=exp.Distinct(expressions=[exp.column("person_id")]))
    value = exp.column("value")
    if series.math == "sum":
        return exp.func("coalesce", exp.Sum(this=value), exp.Literal.number(0))
    return exp.func(series.math, value)


def _number(props: exp.Expression, prop: str) -> exp.Expression:
    """The property as DOUBLE when it is a JSON number, else NULL."""
    raw = exp.func("json_extract", props.copy(), json_path(prop))
    is_number = exp.In(
        this=exp.func("json_type", raw.copy()),
        expressions=[exp.Literal.string(t) for t in _NUMERIC_JSON_TYPES],
    )
    text = exp.func("json_extract_string", props.copy(), json_path(prop))
    return exp.If(this=is_number, true=exp.TryCast(this=text, to=exp.DataType.build("DOUBLE")))


def _json_text(props: exp.Expression, prop: str) -> exp.Expression:
    """The property's JSON text (NULL when the key is missing)."""
    return exp.cast(exp.func("json_extract", props, json_path(prop)), "VARCHAR")


def compile_series(spec: TrendsSpec, series: Series) -> exp.Expression:
    """The DuckDB query of one series: a row per breakdown value with its labels and values."""
    periods = spec.periods
    values = period_values(periods)
    key: exp.Expression = exp.Literal.string(_NULL_KEY)
    person_columns = {}
    if spec.breakdown is not None and spec.breakdown.scope == "person":
        # Read once per person, not once per event.
        person_columns["breakdown_key"] = _json_text(
            exp.column("properties"), spec.breakdown.property
        )
        key = exp.column("breakdown_key", "p")
    elif spec.breakdown is not None:
        key = _json_text(exp.column("properties", "e"), spec.breakdown.property)
    columns = {"breakdown_key": exp.func("coalesce", key, exp.Literal.string(_NULL_KEY))}
    if series.math in PROPERTY_MATHS:
        columns["value"] = _number(exp.column("properties", "e"), series.property)

    since = values["first_period"].copy()
    rolling = ROLLING_DAYS.get(series.math)
    if rolling is None:
        aggregates = _PER_EVENT
        math = {"aggregate": _aggregate(series)}
    else:
        aggregates = _ROLLING
        window = interval(rolling, "day")
        grain = "hour" if periods.interval == "hour" else "day"
        math = {"window": window, "grain": exp.Literal.string(grain)}
        # The first window ends where the first period ends, possibly before it starts.
        first_end = exp.Add(this=since.copy(), expression=values["step"].copy())
        since = exp.func("least", since, exp.Sub(this=first_end, expression=window.copy()))
    matched = matched_events(
        series.event,
        spec.where + series.where,
        periods.timezone,
        columns,
        since=since,
        until=values["range_end"].copy(),
        person_columns=person_columns,
    )
    template = _TRENDS.format(
        periods=PERIODS_CTE,
        breakdown_values=_IN_RANGE_VALUES if spec.breakdown is not None else _NO_BREAKDOWN,
        aggregates=aggregates,
    )
    return fill_template(template, **values, **math, matched=matched)


def compile_trends(spec: TrendsSpec) -> list[str]:
    """The DuckDB SQL of each series, in spec order (what :func:`run_trends` runs)."""
    return [compile_series(spec, series).sql("duckdb", pretty=True) for series in spec.series]


def _line_order(line: dict[str, Any], key: str) -> tuple[bool, float, str]:
    total = line["total"]
    return (total is None, -(total or 0), key)


def run_trends(con: duckdb.DuckDBPyConnection, spec: TrendsSpec) -> dict[str, Any]:
    """Run a trends spec on a connection holding the analytics relations.

    Args:
        con: a connection from :mod:`safar.analytics.source`.
        spec: the parsed trends spec.

    Returns:
        ``{"series": [{"name", "breakdown_value" (with a breakdown only), "labels",
        "values", "total"}, ...]}``: labels are the periods' starts as ISO 8601 wall times.
    """
    output = []
    for series, sql in zip(spec.series, compile_trends(spec), strict=True):
        empty = None if series.math in PROPERTY_MATHS - {"sum"} else 0
        lines = []
        for key, labels, numbers, total in con.execute(sql).fetchall():
            line: dict[str, Any] = {"name": series.name}
            if spec.breakdown is not None:
                line["breakdown_value"] = orjson.loads(key)
            line["labels"] = [iso_label(label, spec.periods.timezone) for label in labels]
            line["values"] = [empty if v is None else v for v in numbers]
            line["total"] = empty if total is None else total
            lines.append((_line_order(line, key), line))
        output.extend(line for _, line in sorted(lines, key=lambda pair: pair[0]))
    return {"series": output}
