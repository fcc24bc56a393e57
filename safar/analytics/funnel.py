"""Funnels compiled to one DuckDB query (sqlglot expressions) and run on an analytics source.

The rules are those of issue 4, pinned by the golden fixtures and the reference
implementation in ``tests/analytics/reference_funnel.py``; this module computes the same
answer without walking attempts one by one:

- A unit's candidate events (in range, passing ``where``, matching a step or an exclusion)
  are numbered ``idx`` by timestamp, first step matched, then ``seq``.
- ordered: an attempt starting at a step-1 row takes, for each next step, the first later row
  matching it. Built backwards, one window pass per step: the chain of a step-i row is the row
  itself followed by the chain of the first later step-(i+1) row (``first_value … IGNORE
  NULLS`` over the following rows). strict: the next row must match the next step (``lead``).
- unordered: the most steps that distinct events in [start, t] can be assigned to is, by the
  König–Ore formula, ``min over step subsets S of (n - |S| + |events matching S|)``; so level
  L is reached at the latest, over S, of the ``(L - n + |S|)``-th row from the start matching
  S (``nth_value … IGNORE NULLS``). That is ``n·2^(n-1)`` window values, hence the step limit.
- The chain is cut at the window end; the unit keeps the attempt reaching the most steps,
  then the one that got there first, then the latest start; exclusions are checked on it
  through the first exclusion row after its ``from_step`` row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from itertools import combinations
from typing import Any

import duckdb
import orjson
from sqlglot import exp

from safar.analytics.filters import (
    compile_filters,
    json_path,
    property_key,
    uses_person_properties,
    value_text,
)
from safar.analytics.periods import local_time, period_start, timestamp_literal
from safar.analytics.source import EVENTS, join_persons, temp_table
from safar.analytics.spec import Filter, FunnelSpec, Window

OVER_TIME = ("day", "week")
"""Periods of ``conversion_over_time``."""

_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_G, _IDX = "g", "idx"


def _col(name: str) -> exp.Column:
    return exp.column(name)


def _field(struct: exp.Expression, name: str) -> exp.Expression:
    return exp.func("struct_extract", struct.copy(), exp.Literal.string(name))


def _struct(**fields: exp.Expression) -> exp.Struct:
    return exp.Struct(
        expressions=[
            exp.PropertyEQ(this=exp.to_identifier(k), expression=v) for k, v in fields.items()
        ]
    )


def _case(condition: exp.Expression, value: exp.Expression) -> exp.Case:
    return exp.Case(ifs=[exp.If(this=condition, true=value)])


def _is_null(value: exp.Expression) -> exp.Is:
    return exp.Is(this=value.copy(), expression=exp.Null())


def _not_null(value: exp.Expression) -> exp.Not:
    return exp.Not(this=_is_null(value))


_AFTER = exp.WindowSpec(
    kind="ROWS",
    start=exp.Literal.number(1),
    start_side="FOLLOWING",
    end="UNBOUNDED",
    end_side="FOLLOWING",
)
_FROM_HERE = exp.WindowSpec(kind="ROWS", start="CURRENT ROW", end="UNBOUNDED", end_side="FOLLOWING")


def _over(func: exp.Expression, frame: exp.WindowSpec | None = None) -> exp.Window:
    return exp.Window(
        this=func,
        partition_by=[_col(_G)],
        order=exp.Order(expressions=[exp.Ordered(this=_col(_IDX))]),
        spec=frame.copy() if frame is not None else None,
    )


def _first_after(value: exp.Expression, *, inclusive: bool = False) -> exp.Window:
    """The first non-NULL ``value`` on a later row (or this one, when ``inclusive``)."""
    return _over(
        exp.IgnoreNulls(this=exp.FirstValue(this=value)), _FROM_HERE if inclusive else _AFTER
    )


def _nth_from_here(value: exp.Expression, n: int) -> exp.Window:
    nth = exp.NthValue(this=value, offset=exp.Literal.number(n))
    return _over(exp.IgnoreNulls(this=nth), _FROM_HERE)


def window_end(window: Window, start: exp.Expression) -> exp.Expression:
    """The inclusive window end of an attempt entered at ``start`` (see ``Window.end``)."""
    if window.unit == "month":
        months = exp.func("to_months", exp.Literal.number(window.value))
        return exp.Add(this=start.copy(), expression=months)
    seconds = exp.func("to_seconds", exp.Literal.number(window.value * _SECONDS[window.unit]))
    return exp.Add(this=start.copy(), expression=seconds)


def _step_match(event: str | None, where: tuple[Filter, ...]) -> exp.Expression:
    props, person = exp.column("properties", "e"), exp.column("properties", "p")
    match = compile_filters(where, props, person)
    if event is not None:
        match = exp.and_(
            exp.EQ(this=exp.column("event", "e"), expression=exp.Literal.string(event)), match
        )
    return exp.Paren(this=match)


def _candidates(spec: FunnelSpec) -> exp.Select:
    """One row per considered event: unit, time, step/exclusion matches, breakdown value."""
    props, person = exp.column("properties", "e"), exp.column("properties", "p")
    if spec.aggregate_by is None:
        unit = exp.column("person_id", "e")
    else:
        unit = exp.func("json_extract_string", props.copy(), json_path(spec.aggregate_by))
    columns: list[exp.Expression] = [
        exp.alias_(unit, "unit"),
        exp.alias_(exp.column("timestamp", "e"), "t"),
        exp.alias_(exp.column("seq", "e"), "seq"),
    ]
    for i, step in enumerate(spec.steps):
        columns.append(exp.alias_(_step_match(step.event, step.where), f"m{i}"))
    for j, exclusion in enumerate(spec.exclusions):
        columns.append(exp.alias_(_step_match(exclusion.event, exclusion.where), f"x{j}"))
    if spec.breakdown is not None:
        source = person if spec.breakdown.scope == "person" else props
        columns.append(exp.alias_(property_key(source, spec.breakdown.property), "bv"))
    else:
        columns.append(exp.alias_(exp.Null(), "bv"))

    conditions: list[exp.Expression] = [
        _not_null(unit),
        compile_filters(spec.where, props, person),
    ]
    if spec.date_from is not None:
        conditions.append(
            exp.GTE(this=exp.column("timestamp", "e"), expression=timestamp_literal(spec.date_from))
        )
    if spec.date_to is not None:
        conditions.append(
            exp.LTE(this=exp.column("timestamp", "e"), expression=timestamp_literal(spec.date_to))
        )
    select = exp.select(*columns).from_(exp.alias_(exp.to_table(EVENTS), "e", table=True))
    return join_persons(select, _needs_persons(spec)).where(exp.and_(*conditions))


def _needs_persons(spec: FunnelSpec) -> bool:
    filters = spec.where
    for entity in spec.steps + spec.exclusions:
        filters += entity.where
    by_person = spec.breakdown is not None and spec.breakdown.scope == "person"
    return by_person or uses_person_properties(filters)


def _any(columns: Sequence[str]) -> exp.Expression:
    if not columns:
        return exp.false()
    return exp.Paren(this=exp.or_(*(_col(c) for c in columns)))


def _numbered(spec: FunnelSpec, rows: exp.Expression, group: exp.Expression) -> exp.Select:
    """Rows a funnel walk needs, numbered per group in walk order."""
    n = len(spec.steps)
    steps = [f"m{i}" for i in range(n)]
    exclusions = [f"x{j}" for j in range(len(spec.exclusions))]
    first_step = exp.Case(
        ifs=[exp.If(this=_col(m), true=exp.Literal.number(i)) for i, m in enumerate(steps)],
        default=exp.Literal.number(n),
    )
    idx = exp.Window(
        this=exp.RowNumber(),
        partition_by=[_col(_G)],
        order=exp.Order(
            expressions=[
                exp.Ordered(this=_col("t")),
                exp.Ordered(this=first_step),
                exp.Ordered(this=_col("seq")),
            ]
        ),
    )
    select = exp.select(exp.Star(), exp.alias_(group, _G)).from_(
        exp.Subquery(this=rows, alias=exp.TableAlias(this=exp.to_identifier("r")))
    )
    inner = exp.select(exp.Star(), exp.alias_(idx, _IDX)).from_(
        exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier("s")))
    )
    if spec.order != "strict":
        inner = inner.where(_any(steps + exclusions))
    return inner


def _subquery(select: exp.Expression, alias: str) -> exp.Subquery:
    return exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(alias)))


def _sequential_attempts(spec: FunnelSpec, numbered: exp.Select) -> exp.Select:
    """ordered / strict: every step-1 row's chain, cut at its window, with its exclusion rows."""
    n = len(spec.steps)
    here = {"i": _col(_IDX), "t": _col("t")}
    by_from: dict[int, list[int]] = {}
    for j, exclusion in enumerate(spec.exclusions):
        by_from.setdefault(exclusion.from_step, []).append(j)

    current = numbered
    later_fields: list[str] = []
    for level in range(n - 1, -1, -1):
        fields: dict[str, exp.Expression] = {
            f"i{level}": here["i"].copy(),
            f"t{level}": here["t"].copy(),
        }
        if level < n - 1:
            following = _col(f"c{level + 1}")
            if spec.order == "strict":
                nxt = _over(exp.Lead(this=following))
            else:
                nxt = _first_after(following)
            for name in later_fields:
                fields[name] = _field(nxt, name)
        for j in by_from.get(level, []):
            first_exclusion = _first_after(_case(_col(f"x{j}"), _struct(i=_col(_IDX), t=_col("t"))))
            fields[f"x{j}"] = first_exclusion
        later_fields = list(fields)
        chain = exp.alias_(_case(_col(f"m{level}"), _struct(**fields)), f"c{level}")
        current = exp.select(exp.Star(), chain).from_(_subquery(current, f"level{level}"))

    c0 = _col("c0")
    start = _field(c0, "t0")
    end = window_end(spec.window, start)
    times = [_field(c0, f"t{i}") for i in range(n)]
    indexes = [_field(c0, f"i{i}") for i in range(n)]
    within = [
        exp.func("coalesce", exp.LTE(this=t, expression=end.copy()), exp.false()) for t in times
    ]
    reach = exp.Paren(this=_sum_bools(within))
    columns: list[exp.Expression] = [
        _col(_G),
        exp.alias_(reach, "reach"),
        exp.alias_(indexes[0], "i0"),
    ]
    for i, t in enumerate(times):
        columns.append(exp.alias_(_case(within[i].copy(), t), f"t{i}"))

    taints = []
    for j, exclusion in enumerate(spec.exclusions):
        seen = _field(c0, f"x{j}")
        if spec.order == "strict":
            open_end = exp.Add(
                this=_last_index(indexes, reach, n), expression=exp.Literal.number(1)
            )
        else:
            open_end = exp.cast(exp.Literal.number(2**62), "BIGINT")
        bound = exp.If(
            this=exp.GT(this=reach.copy(), expression=exp.Literal.number(exclusion.to_step)),
            true=indexes[exclusion.to_step].copy(),
            false=open_end,
        )
        taints.append(
            exp.and_(
                exp.GT(this=reach.copy(), expression=exp.Literal.number(exclusion.from_step)),
                _not_null(seen),
                exp.LTE(this=_field(seen, "i"), expression=bound),
                exp.LTE(this=_field(seen, "t"), expression=end.copy()),
            )
        )
    tainted = (
        exp.func("coalesce", exp.Paren(this=exp.or_(*taints)), exp.false())
        if taints
        else exp.false()
    )
    columns.append(exp.alias_(tainted, "tainted"))
    return exp.select(*columns).from_(_subquery(current, "chains")).where(_not_null(c0))


def _sum_bools(values: list[exp.Expression]) -> exp.Expression:
    total: exp.Expression = exp.cast(values[0], "INTEGER")
    for value in values[1:]:
        total = exp.Add(this=total, expression=exp.cast(value, "INTEGER"))
    return total


def _last_index(indexes: list[exp.Expression], reach: exp.Expression, n: int) -> exp.Expression:
    return exp.Case(
        ifs=[
            exp.If(
                this=exp.EQ(this=reach.copy(), expression=exp.Literal.number(k + 1)),
                true=indexes[k].copy(),
            )
            for k in range(n)
        ]
    )


def _unordered_attempts(spec: FunnelSpec, numbered: exp.Select) -> exp.Select:
    """unordered: every row matching a step starts an attempt; levels by König–Ore."""
    n = len(spec.steps)
    row = _struct(i=_col(_IDX), t=_col("t"))
    windows: dict[tuple[tuple[int, ...], int], str] = {}
    columns: list[exp.Expression] = [exp.Star()]
    for size in range(1, n + 1):
        for subset in combinations(range(n), size):
            matches = _any([f"m{i}" for i in subset])
            for count in range(1, size + 1):
                name = f"s{'_'.join(map(str, subset))}_{count}"
                windows[(subset, count)] = name
                columns.append(exp.alias_(_nth_from_here(_case(matches, row.copy()), count), name))
    exclusion = _any([f"x{j}" for j in range(len(spec.exclusions))])
    columns.append(exp.alias_(_first_after(_case(exclusion, row.copy()), inclusive=True), "nx"))
    scanned = exp.select(*columns).from_(_subquery(numbered, "numbered"))

    levels = []
    for level in range(1, n + 1):
        needed = [
            _col(windows[(subset, level - n + len(subset))])
            for (subset, count) in windows
            if count == level - n + len(subset)
        ]
        missing = exp.or_(*(_is_null(v) for v in needed))
        latest = exp.Greatest(this=needed[0], expressions=needed[1:])
        levels.append(exp.Case(ifs=[exp.If(this=missing, true=exp.Null())], default=latest))
    level_columns = [exp.alias_(levels[k], f"r{k}") for k in range(n)]
    with_levels = (
        exp.select(_col(_G), _col(_IDX), _col("t"), _col("nx"), *level_columns)
        .from_(_subquery(scanned, "scanned"))
        .where(_any([f"m{i}" for i in range(n)]))
    )

    end = window_end(spec.window, _col("t"))
    within = [
        exp.func(
            "coalesce", exp.LTE(this=_field(_col(f"r{k}"), "t"), expression=end.copy()), exp.false()
        )
        for k in range(n)
    ]
    reach = exp.Paren(this=_sum_bools(within))
    nx = _col("nx")
    complete = exp.EQ(this=reach.copy(), expression=exp.Literal.number(n))
    voided = exp.and_(
        _not_null(nx),
        exp.LTE(this=_field(nx, "t"), expression=end.copy()),
        exp.or_(
            exp.Not(this=complete.copy()),
            exp.LTE(this=_field(nx, "i"), expression=_field(_col(f"r{n - 1}"), "i")),
        ),
    )
    columns = [_col(_G), exp.alias_(reach, "reach"), exp.alias_(_col(_IDX), "i0")]
    for k in range(n):
        columns.append(exp.alias_(_case(within[k].copy(), _field(_col(f"r{k}"), "t")), f"t{k}"))
    columns.append(exp.alias_(exp.false(), "tainted"))
    return (
        exp.select(*columns)
        .from_(_subquery(with_levels, "levels"))
        .where(exp.Not(this=exp.Paren(this=voided)))
    )


def _best(spec: FunnelSpec, attempts: exp.Select) -> exp.Select:
    """Each group's counted attempt; a tainted one takes the group out of the funnel."""
    n = len(spec.steps)
    last = exp.Case(
        ifs=[
            exp.If(
                this=exp.EQ(this=_col("reach"), expression=exp.Literal.number(k + 1)),
                true=_col(f"t{k}"),
            )
            for k in range(n)
        ]
    )
    rank = exp.Window(
        this=exp.RowNumber(),
        partition_by=[_col(_G)],
        order=exp.Order(
            expressions=[
                exp.Ordered(this=_col("reach"), desc=True),
                exp.Ordered(this=last),
                exp.Ordered(this=_col("t0"), desc=True),
                exp.Ordered(this=_col("i0")),
            ]
        ),
    )
    ranked = exp.select(exp.Star(), exp.alias_(rank, "rank")).from_(_subquery(attempts, "attempts"))
    return (
        exp.select(exp.Star())
        .from_(_subquery(ranked, "ranked"))
        .where(
            exp.and_(
                exp.EQ(this=_col("rank"), expression=exp.Literal.number(1)),
                exp.Not(this=_col("tainted")),
            )
        )
    )


def _results(spec: FunnelSpec, rows: exp.Expression, group: exp.Expression) -> exp.Select:
    numbered = _numbered(spec, rows, group)
    if spec.order == "unordered":
        attempts = _unordered_attempts(spec, numbered)
    else:
        attempts = _sequential_attempts(spec, numbered)
    return _best(spec, attempts)


def _summary_columns(n: int) -> list[exp.Expression]:
    columns: list[exp.Expression] = []
    for i in range(n):
        reached = exp.GT(this=_col("reach"), expression=exp.Literal.number(i))
        columns.append(
            exp.alias_(
                exp.Filter(this=exp.Count(this=exp.Star()), expression=exp.Where(this=reached)),
                f"count{i}",
            )
        )
        if i:
            seconds = _seconds_between(f"t{i}", f"t{i - 1}")
            columns.append(exp.alias_(exp.Avg(this=seconds), f"avg{i}"))
            columns.append(exp.alias_(exp.func("median", seconds.copy()), f"median{i}"))
    return columns


def _steps(spec: FunnelSpec, row: Sequence[Any]) -> list[dict[str, Any]]:
    """Steps output from a summary row (count0, count1, avg1, median1, …)."""
    values = list(row)
    entered = values[0]
    steps, k = [], 1
    for i, step in enumerate(spec.steps):
        count = values[0] if i == 0 else values[k]
        average = median = None
        if i:
            average, median = values[k + 1], values[k + 2]
            k += 3
        steps.append(
            {
                "name": step.name,
                "count": count,
                "conversion_rate": count / entered if entered else 0.0,
                "average_conversion_seconds": average,
                "median_conversion_seconds": median,
            }
        )
    return steps


class FunnelQuery:
    """A compiled funnel; each method returns a query over the analytics relations."""

    def __init__(self, spec: FunnelSpec) -> None:
        self.spec = spec
        self.n = len(spec.steps)

    def plain(self) -> exp.Select:
        """Each unit's counted attempt, without breakdown: g (the unit), reach, t0 … tn-1."""
        return _results(self.spec, _candidates(self.spec), _col("unit"))

    def broken_down(self, plain_results: str) -> exp.Select:
        """Each unit's counted attempt per bucket: unit, bucket (JSON text), reach, t0 …

        ``plain_results`` is a table holding :meth:`plain`, which first/last touch reuse.
        """
        attribution = self.spec.breakdown.attribution
        if attribution == "all_events":
            return self._all_events()
        if attribution == "step":
            return self._step()
        return self._touch(plain_results, first=attribution == "first_touch")

    def _all_events(self) -> exp.Select:
        group = _struct(u=_col("unit"), v=_col("bv"))
        results = _results(self.spec, _candidates(self.spec), group)
        return exp.select(
            exp.alias_(_field(_col(_G), "u"), "unit"),
            exp.alias_(_field(_col(_G), "v"), "bucket"),
            exp.Star(),
        ).from_(_subquery(results, "results"))

    def _touch(self, plain_results: str, *, first: bool) -> exp.Select:
        on_step = exp.and_(_not_null(_col("bv")), _any([f"m{i}" for i in range(self.n)]))
        pick = exp.ArgMin if first else exp.ArgMax
        touch = exp.Filter(
            this=pick(this=_col("bv"), expression=_struct(t=_col("t"), s=_col("seq"))),
            expression=exp.Where(this=on_step),
        )
        buckets = (
            exp.select(_col("unit"), exp.alias_(touch, "bucket"))
            .from_(_subquery(_candidates(self.spec), "candidates"))
            .group_by(_col("unit"))
        )
        return (
            exp.select(
                exp.column("unit", "b"),
                exp.column("bucket", "b"),
                exp.Star(except_=[exp.column("unit", "b"), exp.column("bucket", "b")]),
            )
            .from_(exp.alias_(exp.to_table(plain_results), "res", table=True))
            .join(
                _subquery(buckets, "b"),
                on=exp.EQ(this=exp.column("unit", "b"), expression=exp.column(_G, "res")),
            )
        )

    def _step(self) -> exp.Select:
        """step: one run per value seen on the breakdown step; the furthest value wins.

        Only events carrying the value may match the breakdown step; ties go to the value
        seen first; a unit with no value keeps the plain run in the NULL bucket.
        """
        b = f"m{self.spec.breakdown.step}"
        candidates = _subquery(_candidates(self.spec), "c")
        seen = exp.Min(this=_struct(t=_col("t"), s=_col("seq")))
        values = (
            exp.select(_col("unit"), exp.alias_(_col("bv"), "v"), exp.alias_(seen, "seen"))
            .from_(candidates.copy())
            .where(exp.and_(_col(b), _not_null(_col("bv"))))
            .group_by(_col("unit"), _col("bv"))
        )
        value = exp.column("v", "vals")
        only_value = exp.and_(
            exp.column(b, "c"),
            exp.or_(_is_null(value), exp.EQ(this=exp.column("bv", "c"), expression=value.copy())),
        )
        expanded = (
            exp.select(
                exp.Star(except_=[exp.column(b, "c")]),
                exp.alias_(exp.Paren(this=only_value), b),
                exp.alias_(value.copy(), "candidate"),
                exp.alias_(exp.column("seen", "vals"), "seen"),
            )
            .from_(candidates)
            .join(
                _subquery(values, "vals"),
                on=exp.EQ(this=exp.column("unit", "vals"), expression=exp.column("unit", "c")),
                join_type="LEFT",
            )
        )
        group = _struct(u=_col("unit"), v=_col("candidate"), seen=_col("seen"))
        results = _results(self.spec, expanded, group)
        rank = exp.Window(
            this=exp.RowNumber(),
            partition_by=[_field(_col(_G), "u")],
            order=exp.Order(
                expressions=[
                    exp.Ordered(this=_col("reach"), desc=True),
                    exp.Ordered(this=_field(_col(_G), "seen")),
                ]
            ),
        )
        ranked = exp.select(
            exp.alias_(_field(_col(_G), "u"), "unit"),
            exp.alias_(_field(_col(_G), "v"), "bucket"),
            exp.Star(),
            exp.alias_(rank, "value_rank"),
        ).from_(_subquery(results, "results"))
        return (
            exp.select(exp.Star())
            .from_(_subquery(ranked, "ranked"))
            .where(exp.EQ(this=_col("value_rank"), expression=exp.Literal.number(1)))
        )


def _loads(key: str | None) -> Any:
    return None if key is None else orjson.loads(key)


def run_funnel(
    con: duckdb.DuckDBPyConnection,
    spec: FunnelSpec,
    persons: int | None = None,
    *,
    details: bool = False,
    over_time: str = "day",
) -> dict[str, Any]:
    """Run a funnel on a connection holding the analytics relations (``safar.analytics.source``).

    Args:
        con: the connection.
        spec: the parsed spec.
        persons: 1-based N lists the units that reached step N; -N those that reached step
            N-1 but not step N; None leaves ``persons`` out.
        details: also return ``time_to_convert`` (first to last step) and
            ``conversion_over_time`` (by entry period in the spec's time zone).
        over_time: that period, ``day`` or ``week`` (weeks start on Monday).

    Raises:
        ValueError: ``persons`` or ``over_time`` is out of range.

    Returns:
        ``{"steps": [...], "breakdowns": [...]}`` (and ``persons`` / details when asked), as
        issue 4 describes.
    """
    if over_time not in OVER_TIME:
        raise ValueError(f"over_time: must be one of {', '.join(OVER_TIME)}, not {over_time!r}")
    query = FunnelQuery(spec)
    n = query.n
    if persons is not None and not 1 <= abs(persons) <= n:
        raise ValueError(f"persons: step {persons} is out of range 1..{n} (or -{n}..-1)")
    with temp_table(con, "funnel_results", query.plain()) as results:
        summary = exp.select(*_summary_columns(n)).from_(results)
        row = con.sql(summary.sql("duckdb")).fetchone()
        output: dict[str, Any] = {"steps": _steps(spec, row), "breakdowns": []}
        if spec.breakdown is not None:
            output["breakdowns"] = _breakdowns(con, query, results)
        if persons is not None:
            output["persons"] = _persons(con, results, persons)
        if details:
            output["time_to_convert"] = _time_to_convert(con, spec, results)
            output["conversion_over_time"] = _conversion_over_time(con, spec, results, over_time)
    return output


def _persons(con: duckdb.DuckDBPyConnection, results: str, persons: int) -> list[str]:
    k = abs(persons)
    reach = exp.GTE(this=_col("reach"), expression=exp.Literal.number(k))
    if persons < 0:
        reach = exp.EQ(this=_col("reach"), expression=exp.Literal.number(k - 1))
    units = exp.select(_col(_G)).from_(results).where(reach)
    return sorted(r[0] for r in con.sql(units.sql("duckdb")).fetchall())


def _breakdowns(
    con: duckdb.DuckDBPyConnection, query: FunnelQuery, plain_results: str
) -> list[dict[str, Any]]:
    spec, n = query.spec, query.n
    rows = query.broken_down(plain_results)
    summary = (
        exp.select(_col("bucket"), *_summary_columns(n))
        .from_(_subquery(rows, "results"))
        .group_by(_col("bucket"))
    )
    output = []
    for bucket, *values in con.sql(summary.sql("duckdb")).fetchall():
        steps = _steps(replace(spec, breakdown=None), values)
        if steps[0]["count"]:
            output.append({"value": [_loads(bucket)], "steps": steps})
    # 1 and "1" share a text: their JSON breaks the tie, so the order never depends on the scan.
    output.sort(
        key=lambda r: (
            -r["steps"][0]["count"],
            value_text(r["value"][0]),
            orjson.dumps(r["value"][0]),
        )
    )
    return output


def _seconds_between(later: str, earlier: str) -> exp.Expression:
    """Seconds from column ``earlier`` to column ``later`` (timestamps), as a double."""
    micros = exp.Sub(
        this=exp.func("epoch_us", _col(later)), expression=exp.func("epoch_us", _col(earlier))
    )
    return exp.Div(this=exp.Paren(this=micros), expression=exp.Literal.number("1e6"))


def _time_to_convert(
    con: duckdb.DuckDBPyConnection, spec: FunnelSpec, results: str, max_bins: int = 20
) -> dict[str, Any]:
    """A histogram of first-to-last-step seconds of the units that converted.

    ``ceil(sqrt(conversions))`` equal-width bins, at most ``max_bins``; the last bin's upper
    bound is inclusive.
    """
    n = len(spec.steps)
    converted = exp.EQ(this=_col("reach"), expression=exp.Literal.number(n))
    seconds = (
        exp.select(exp.alias_(_seconds_between(f"t{n - 1}", "t0"), "s"))
        .from_(results)
        .where(converted)
    )
    stats = exp.select(exp.Count(this=exp.Star()), exp.Min(this=_col("s")), exp.Max(this=_col("s")))
    count, low, high = con.sql(stats.from_(_subquery(seconds, "c")).sql("duckdb")).fetchone()
    if not count:
        return {"bins": []}
    bins = min(max_bins, max(1, math.ceil(math.sqrt(count))))
    width = (high - low) / bins if high > low else 1.0
    index = exp.func(
        "least",
        exp.cast(
            exp.Floor(
                this=exp.Div(
                    this=exp.Paren(
                        this=exp.Sub(this=_col("s"), expression=exp.Literal.number(low))
                    ),
                    expression=exp.Literal.number(width),
                )
            ),
            "INTEGER",
        ),
        exp.Literal.number(bins - 1),
    )
    counts = (
        exp.select(exp.alias_(index, "bin"), exp.alias_(exp.Count(this=exp.Star()), "count"))
        .from_(_subquery(seconds.copy(), "c"))
        .group_by(exp.column("bin"))
    )
    found = dict(con.sql(counts.sql("duckdb")).fetchall())
    return {
        "bins": [
            {
                "seconds_from": low + i * width,
                "seconds_to": low + (i + 1) * width,
                "count": found.get(i, 0),
            }
            for i in range(bins)
        ]
    }


def _conversion_over_time(
    con: duckdb.DuckDBPyConnection, spec: FunnelSpec, results: str, interval: str = "day"
) -> list[dict[str, Any]]:
    """Units entered and converted by the wall-clock day (or week) of their counted entry."""
    n = len(spec.steps)
    period = period_start(local_time(_col("t0"), spec.timezone), interval)
    converted = exp.EQ(this=_col("reach"), expression=exp.Literal.number(n))
    rows = (
        exp.select(
            exp.alias_(period, "period"),
            exp.alias_(exp.Count(this=exp.Star()), "entered"),
            exp.alias_(exp.Sum(this=exp.cast(converted, "INTEGER")), "converted"),
        )
        .from_(results)
        .group_by(exp.column("period"))
        .order_by(exp.column("period"))
    )
    return [
        {
            "period_start": start.isoformat(),
            "entered": entered,
            "converted": int(done),
            "conversion_rate": done / entered,
        }
        for start, entered, done in con.sql(rows.sql("duckdb")).fetchall()
    ]
