"""Retention compiled to DuckDB queries (sqlglot expressions) over an analytics source.

The rules are those of issue 4, pinned by the golden fixtures and the reference
implementation in ``tests/analytics/reference_retention.py``:

- Periods are wall-clock hours, days, weeks (from ``week_start``) or calendar months in the
  spec's time zone; the last contains ``to``, the first is ``intervals - 1`` earlier (or
  contains ``from``).
- recurring: a person is in the cohort of every period with a target event; first_time:
  only the period of their first-ever target event (earlier history counts).
- Column c of cohort r counts members with at least ``min_occurrences`` returning events in
  period r + c (cumulative: in r + c or later).

The heavy work (matching, bucketing into periods, cohort and return sets) runs in DuckDB;
Python only lays the aggregated counts out as rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import orjson
from sqlglot import exp

from safar.analytics.filters import (
    compile_filters,
    property_key,
    uses_person_properties,
    value_text,
)
from safar.analytics.periods import iso_label, local_time, period_start, timestamp_literal
from safar.analytics.retention_spec import RetentionSpec
from safar.analytics.source import EVENTS, join_persons, temp_table
from safar.analytics.spec import Filter


def _wall(spec: RetentionSpec, instant: datetime) -> datetime:
    zone = ZoneInfo(spec.timezone)
    return instant.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)


def _truncate(spec: RetentionSpec, wall: datetime) -> datetime:
    if spec.period == "hour":
        return wall.replace(minute=0, second=0, microsecond=0)
    day = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    if spec.period == "day":
        return day
    if spec.period == "week":
        back = wall.weekday() if spec.week_start == "monday" else (wall.weekday() + 1) % 7
        return day - timedelta(days=back)
    return day.replace(day=1)


def _shift(spec: RetentionSpec, start: datetime, count: int) -> datetime:
    if spec.period == "month":
        months = start.year * 12 + start.month - 1 + count
        return start.replace(year=months // 12, month=months % 12 + 1)
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
    return start + step[spec.period] * count


def period_starts(spec: RetentionSpec) -> list[datetime]:
    """The cohort periods' starts, as naive wall times in the spec's time zone.

    Example:
        >>> from safar.analytics.retention_spec import parse_retention_spec
        >>> spec = parse_retention_spec({"target": {"event": "a"}, "to": "2026-01-07",
        ...                              "period": "week", "intervals": 2})
        >>> [s.date().isoformat() for s in period_starts(spec)]
        ['2025-12-28', '2026-01-04']
    """
    last = _truncate(spec, _wall(spec, spec.date_to))
    if spec.date_from is None:
        first = _shift(spec, last, -(spec.intervals - 1))
    else:
        first = _truncate(spec, _wall(spec, spec.date_from))
    starts = [first]
    while starts[-1] < last:
        starts.append(_shift(spec, starts[-1], 1))
    return starts


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table)


def _subquery(select: exp.Expression, alias: str) -> exp.Subquery:
    return exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(alias)))


def _period_sql(spec: RetentionSpec) -> exp.Expression:
    """The wall-clock period start of an event's timestamp, in SQL."""
    wall = local_time(exp.column("timestamp", "e"), spec.timezone)
    return period_start(wall, spec.period, spec.week_start)


def _match(event: str | None, where: tuple[Filter, ...]) -> exp.Expression:
    props, person = exp.column("properties", "e"), exp.column("properties", "p")
    match = compile_filters(where, props, person)
    if event is not None:
        name = exp.EQ(this=exp.column("event", "e"), expression=exp.Literal.string(event))
        match = exp.and_(name, match)
    return exp.Paren(this=match)


def _utc_bounds(spec: RetentionSpec, starts: list[datetime]) -> tuple[datetime, datetime]:
    """UTC instants safely around the periods' wall-clock range (a day of margin for DST)."""
    zone = ZoneInfo(spec.timezone)
    end = _shift(spec, starts[-1], 1)

    def utc(wall: datetime) -> datetime:
        return wall.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)

    return utc(starts[0]) - timedelta(days=1), utc(end) + timedelta(days=1)


def _events(spec: RetentionSpec, starts: list[datetime], *, in_range: bool) -> exp.Select:
    """Every considered event with its period index (NULL outside the range).

    ``in_range`` reads only events near the range (a pruning hint for the Parquet scan);
    first-time cohorts need the history before it too.
    """
    props, person = exp.column("properties", "e"), exp.column("properties", "p")
    columns = [
        exp.alias_(exp.column("person_id", "e"), "person"),
        exp.alias_(exp.column("timestamp", "e"), "t"),
        exp.alias_(exp.column("seq", "e"), "seq"),
        exp.alias_(_match(spec.target.event, spec.target.where), "is_target"),
        exp.alias_(_match(spec.returning.event, spec.returning.where), "is_return"),
        exp.alias_(exp.column("r", "periods"), "r"),
    ]
    if spec.breakdown is not None:
        source = person if spec.breakdown.scope == "person" else props
        columns.append(exp.alias_(property_key(source, spec.breakdown.property), "bv"))
    else:
        columns.append(exp.alias_(exp.Null(), "bv"))
    periods = exp.select(
        exp.alias_(exp.func("unnest", exp.func("range", exp.Literal.number(len(starts)))), "r"),
        exp.alias_(
            exp.func(
                "unnest",
                exp.Array(
                    expressions=[
                        exp.cast(exp.Literal.string(s.isoformat(sep=" ")), "TIMESTAMP")
                        for s in starts
                    ]
                ),
            ),
            "start",
        ),
    )
    select = (
        exp.select(*columns)
        .from_(exp.alias_(exp.to_table(EVENTS), "e", table=True))
        .join(
            _subquery(periods, "periods"),
            on=exp.EQ(this=exp.column("start", "periods"), expression=_period_sql(spec)),
            join_type="LEFT",
        )
    )
    filters = spec.where + spec.target.where + spec.returning.where
    by_person = spec.breakdown is not None and spec.breakdown.scope == "person"
    select = join_persons(select, by_person or uses_person_properties(filters))
    condition = compile_filters(spec.where, props, person)
    if in_range:
        low, high = _utc_bounds(spec, starts)
        stamp = exp.column("timestamp", "e")
        condition = exp.and_(
            exp.GTE(this=stamp, expression=timestamp_literal(low)),
            exp.LT(this=stamp.copy(), expression=timestamp_literal(high)),
            condition,
        )
    return select.where(condition)


def _first_key() -> exp.Struct:
    """Orders a person's events: timestamp, then input order."""
    return exp.Struct(
        expressions=[
            exp.PropertyEQ(this=exp.to_identifier("t"), expression=_col("t")),
            exp.PropertyEQ(this=exp.to_identifier("s"), expression=_col("seq")),
        ]
    )


def _in_range(column: str = "r") -> exp.Expression:
    return exp.Not(this=exp.Is(this=_col(column), expression=exp.Null()))


def _activity(spec: RetentionSpec, starts: list[datetime]) -> exp.Select:
    """One row per person and period in range: targeted?, returning events, entry value.

    The entry value is the breakdown value on the person's first target event there;
    ``arg_min_null`` because ``arg_min`` would skip a NULL value, and the first event's NULL
    is the answer.
    """
    entry: exp.Expression = exp.Null()
    if spec.breakdown is not None:
        entry = exp.Filter(
            this=exp.func("arg_min_null", _col("bv"), _first_key()),
            expression=exp.Where(this=_col("is_target")),
        )
    returns = exp.Filter(
        this=exp.Count(this=exp.Star()), expression=exp.Where(this=_col("is_return"))
    )
    return (
        exp.select(
            _col("person"),
            _col("r"),
            exp.alias_(exp.func("bool_or", _col("is_target")), "targeted"),
            exp.alias_(returns, "returns"),
            exp.alias_(entry, "bv"),
        )
        .from_(_subquery(_events(spec, starts, in_range=True), "events"))
        .where(_in_range())
        .group_by(_col("person"), _col("r"))
    )


def _members(spec: RetentionSpec, starts: list[datetime], activity: str) -> exp.Select:
    """(person, r, bv): cohort memberships."""
    if spec.type == "recurring":
        return (
            exp.select(_col("person"), _col("r"), _col("bv"))
            .from_(activity)
            .where(_col("targeted"))
        )
    # first_time: the period of the first-ever target event, history before the range included.
    value = _col("bv") if spec.breakdown is not None else exp.Null()
    entry = exp.ArgMin(
        this=exp.Struct(
            expressions=[
                exp.PropertyEQ(this=exp.to_identifier("r"), expression=_col("r")),
                exp.PropertyEQ(this=exp.to_identifier("bv"), expression=value),
            ]
        ),
        expression=_first_key(),
    )
    firsts = (
        exp.select(_col("person"), exp.alias_(entry, "entry"))
        .from_(_subquery(_events(spec, starts, in_range=False), "events"))
        .where(_col("is_target"))
        .group_by(_col("person"))
    )
    r = exp.func("struct_extract", _col("entry"), exp.Literal.string("r"))
    bv = exp.func("struct_extract", _col("entry"), exp.Literal.string("bv"))
    return (
        exp.select(_col("person"), exp.alias_(r, "r"), exp.alias_(bv, "bv"))
        .from_(_subquery(firsts, "firsts"))
        .where(exp.Not(this=exp.Is(this=r.copy(), expression=exp.Null())))
    )


def _returned(spec: RetentionSpec, activity: str) -> exp.Select:
    """(person, r): periods in which a person returned often enough."""
    enough = exp.GTE(this=_col("returns"), expression=exp.Literal.number(spec.min_occurrences))
    return exp.select(_col("person"), _col("r")).from_(activity).where(enough)


def _offsets(spec: RetentionSpec, tables: dict[str, str]) -> exp.Select:
    """(person, r, bv, c): member of cohort r, returned c periods later (c >= 1).

    Cumulative counts a return in r + c or later: every c up to the last return.
    """
    member, back = exp.column("r", "m"), exp.column("r", "q")
    later = exp.GT(this=back, expression=member)
    same = exp.EQ(this=exp.column("person", "q"), expression=exp.column("person", "m"))
    if not spec.cumulative:
        return (
            exp.select(
                exp.column("person", "m"),
                member.copy(),
                exp.column("bv", "m"),
                exp.alias_(exp.Sub(this=back.copy(), expression=member.copy()), "c"),
            )
            .from_(exp.alias_(exp.to_table(tables["members"]), "m", table=True))
            .join(
                exp.alias_(exp.to_table(tables["returned"]), "q", table=True),
                on=exp.and_(same, later),
            )
        )
    last = exp.Sub(this=exp.Max(this=back.copy()), expression=member.copy())
    spans = (
        exp.select(
            exp.column("person", "m"),
            member.copy(),
            exp.column("bv", "m"),
            exp.alias_(last, "span"),
        )
        .from_(exp.alias_(exp.to_table(tables["members"]), "m", table=True))
        .join(
            exp.alias_(exp.to_table(tables["returned"]), "q", table=True), on=exp.and_(same, later)
        )
        .group_by(exp.column("person", "m"), member.copy(), exp.column("bv", "m"))
    )
    c = exp.func(
        "unnest",
        exp.func(
            "range",
            exp.Literal.number(1),
            exp.Add(this=_col("span"), expression=exp.Literal.number(1)),
        ),
    )
    return exp.select(_col("person"), _col("r"), _col("bv"), exp.alias_(c, "c")).from_(
        _subquery(spans, "spans")
    )


def _cohorts(
    spec: RetentionSpec,
    starts: list[datetime],
    sizes: dict[int, int],
    returns: dict[tuple[int, int], int],
) -> list[dict[str, Any]]:
    n = len(starts)
    return [
        {
            "period_start": iso_label(start, spec.timezone),
            "values": [sizes.get(r, 0)] + [returns.get((r, c), 0) for c in range(1, n - r)],
        }
        for r, start in enumerate(starts)
    ]


def run_retention(
    con: duckdb.DuckDBPyConnection, spec: RetentionSpec, actors: int | None = None
) -> dict[str, Any]:
    """Run a retention query on a connection holding the analytics relations.

    Args:
        con: the connection (``safar.analytics.source``).
        spec: the parsed spec.
        actors: a 0-based cohort row whose members to list with the columns they appear in.

    Returns:
        ``{"cohorts": [...], "breakdowns": [...]}`` (and ``actors`` when asked).

    Raises:
        ValueError: ``actors`` is not a cohort row.
    """
    starts = period_starts(spec)
    if actors is not None and not 0 <= actors < len(starts):
        raise ValueError(f"actors: row {actors} is out of range 0..{len(starts) - 1}")
    # Members and returns are small (people × periods): work out the events once into temp
    # tables, then count from them.
    with (
        temp_table(con, "retention_activity", _activity(spec, starts)) as activity,
        temp_table(con, "retention_members", _members(spec, starts, activity)) as members,
        temp_table(con, "retention_returned", _returned(spec, activity)) as returned,
    ):
        tables = {"members": members, "returned": returned}
        return _report(con, spec, starts, tables, actors)


def _report(
    con: duckdb.DuckDBPyConnection,
    spec: RetentionSpec,
    starts: list[datetime],
    tables: dict[str, str],
    actors: int | None,
) -> dict[str, Any]:
    sizes_query = (
        exp.select(_col("bv"), _col("r"), exp.Count(this=exp.Star()))
        .from_(tables["members"])
        .group_by(_col("bv"), _col("r"))
    )
    returns_query = (
        exp.select(_col("bv"), _col("r"), _col("c"), exp.Count(this=exp.Star()))
        .from_(_subquery(_offsets(spec, tables), "offsets"))
        .group_by(_col("bv"), _col("r"), _col("c"))
    )
    sizes: dict[str | None, dict[int, int]] = {}
    for bucket, r, count in con.sql(sizes_query.sql("duckdb")).fetchall():
        sizes.setdefault(bucket, {})[r] = count
    returns: dict[str | None, dict[tuple[int, int], int]] = {}
    for bucket, r, c, count in con.sql(returns_query.sql("duckdb")).fetchall():
        returns.setdefault(bucket, {})[(r, c)] = count

    total_sizes: dict[int, int] = {}
    for by_row in sizes.values():
        for r, count in by_row.items():
            total_sizes[r] = total_sizes.get(r, 0) + count
    total_returns: dict[tuple[int, int], int] = {}
    for by_cell in returns.values():
        for cell, count in by_cell.items():
            total_returns[cell] = total_returns.get(cell, 0) + count
    output: dict[str, Any] = {
        "cohorts": _cohorts(spec, starts, total_sizes, total_returns),
        "breakdowns": [],
    }
    if spec.breakdown is not None:
        rows = []
        for bucket, by_row in sizes.items():
            value = None if bucket is None else orjson.loads(bucket)
            cohorts = _cohorts(spec, starts, by_row, returns.get(bucket, {}))
            rows.append((sum(by_row.values()), value, cohorts))
        rows.sort(key=lambda row: (-row[0], value_text(row[1]), orjson.dumps(row[1])))
        output["breakdowns"] = [{"value": v, "cohorts": c} for _, v, c in rows]
    if actors is not None:
        output["actors"] = _actors(con, spec, tables, actors)
    return output


def _actors(
    con: duckdb.DuckDBPyConnection, spec: RetentionSpec, tables: dict[str, str], row: int
) -> list[dict[str, Any]]:
    row_literal = exp.Literal.number(row)
    members = (
        exp.select(_col("person"))
        .from_(tables["members"])
        .where(exp.EQ(this=_col("r"), expression=row_literal))
    )
    offsets = (
        exp.select(_col("person"), exp.alias_(exp.func("list", _col("c")), "cs"))
        .from_(_subquery(_offsets(spec, tables), "offsets"))
        .where(exp.EQ(this=_col("r"), expression=row_literal.copy()))
        .group_by(_col("person"))
    )
    query = (
        exp.select(exp.column("person", "m"), exp.column("cs", "o"))
        .from_(_subquery(members, "m"))
        .join(
            _subquery(offsets, "o"),
            on=exp.EQ(this=exp.column("person", "o"), expression=exp.column("person", "m")),
            join_type="LEFT",
        )
    )
    listed = []
    for person, columns in sorted(con.sql(query.sql("duckdb")).fetchall()):
        listed.append({"person": person, "appearances": [0, *sorted(columns or [])]})
    return listed
