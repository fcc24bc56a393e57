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

from safar.analytics.filters import compile_filters, property_key, uses_person_properties
from safar.analytics.retention_spec import RetentionSpec
from safar.analytics.source import EVENTS, join_persons
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
    utc = exp.func("timezone", exp.Literal.string("UTC"), exp.column("timestamp", "e"))
    wall = exp.func("timezone", exp.Literal.string(spec.timezone), utc)
    if spec.period != "week":
        return exp.func("date_trunc", exp.Literal.string(spec.period), wall)
    if spec.week_start == "monday":
        return exp.func("date_trunc", exp.Literal.string("week"), wall)
    day = exp.Interval(this=exp.Literal.string("1"), unit=exp.Var(this="DAY"))
    shifted = exp.Add(this=wall, expression=day)
    return exp.Sub(
        this=exp.func("date_trunc", exp.Literal.string("week"), shifted), expression=day.copy()
    )


def _match(event: str | None, where: tuple[Filter, ...]) -> exp.Expression:
    props, person = exp.column("properties", "e"), exp.column("properties", "p")
    match = compile_filters(where, props, person)
    if event is not None:
        name = exp.EQ(this=exp.column("event", "e"), expression=exp.Literal.string(event))
        match = exp.and_(name, match)
    return exp.Paren(this=match)


def _events(spec: RetentionSpec, starts: list[datetime]) -> exp.Select:
    """Every considered event with its period index (NULL outside the range)."""
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
    return select.where(compile_filters(spec.where, props, person))


def _members(spec: RetentionSpec) -> exp.Select:
    """(person, r, bv): cohort memberships, bv from the person's first target event there."""
    first = _struct_key()
    targets = _col("is_target")
    if spec.type == "recurring":
        return (
            exp.select(
                _col("person"),
                _col("r"),
                # arg_min would skip a NULL value; the first event's NULL is the answer.
                exp.alias_(exp.func("arg_min_null", _col("bv"), first), "bv"),
            )
            .from_("events")
            .where(exp.and_(targets, exp.Not(this=exp.Is(this=_col("r"), expression=exp.Null()))))
            .group_by(_col("person"), _col("r"))
        )
    entry = exp.ArgMin(
        this=exp.Struct(
            expressions=[
                exp.PropertyEQ(this=exp.to_identifier("r"), expression=_col("r")),
                exp.PropertyEQ(this=exp.to_identifier("bv"), expression=_col("bv")),
            ]
        ),
        expression=first.copy(),
    )
    firsts = (
        exp.select(_col("person"), exp.alias_(entry, "entry"))
        .from_("events")
        .where(targets)
        .group_by(_col("person"))
    )
    r = exp.func("struct_extract", _col("entry"), exp.Literal.string("r"))
    bv = exp.func("struct_extract", _col("entry"), exp.Literal.string("bv"))
    return (
        exp.select(_col("person"), exp.alias_(r, "r"), exp.alias_(bv, "bv"))
        .from_(_subquery(firsts, "firsts"))
        .where(exp.Not(this=exp.Is(this=r.copy(), expression=exp.Null())))
    )


def _struct_key() -> exp.Struct:
    return exp.Struct(
        expressions=[
            exp.PropertyEQ(this=exp.to_identifier("t"), expression=_col("t")),
            exp.PropertyEQ(this=exp.to_identifier("s"), expression=_col("seq")),
        ]
    )


def _returned(spec: RetentionSpec) -> exp.Select:
    """(person, r): periods in which a person returned often enough."""
    enough = exp.GTE(
        this=exp.Count(this=exp.Star()), expression=exp.Literal.number(spec.min_occurrences)
    )
    return (
        exp.select(_col("person"), _col("r"))
        .from_("events")
        .where(
            exp.and_(_col("is_return"), exp.Not(this=exp.Is(this=_col("r"), expression=exp.Null())))
        )
        .group_by(_col("person"), _col("r"))
        .having(enough)
    )


def _with(select: exp.Select, spec: RetentionSpec, starts: list[datetime]) -> exp.Select:
    return (
        select.with_("events", _events(spec, starts))
        .with_("members", _members(spec))
        .with_("returned", _returned(spec))
    )


def _offsets(spec: RetentionSpec) -> exp.Select:
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
            .from_(exp.alias_(exp.to_table("members"), "m", table=True))
            .join(
                exp.alias_(exp.to_table("returned"), "q", table=True),
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
        .from_(exp.alias_(exp.to_table("members"), "m", table=True))
        .join(exp.alias_(exp.to_table("returned"), "q", table=True), on=exp.and_(same, later))
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


def _iso(spec: RetentionSpec, wall: datetime) -> str:
    return wall.replace(tzinfo=ZoneInfo(spec.timezone)).isoformat()


def _cohorts(
    spec: RetentionSpec,
    starts: list[datetime],
    sizes: dict[int, int],
    returns: dict[tuple[int, int], int],
) -> list[dict[str, Any]]:
    n = len(starts)
    return [
        {
            "period_start": _iso(spec, start),
            "values": [sizes.get(r, 0)] + [returns.get((r, c), 0) for c in range(1, n - r)],
        }
        for r, start in enumerate(starts)
    ]


def _text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


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
    sizes_query = _with(
        exp.select(_col("bv"), _col("r"), exp.Count(this=exp.Star()))
        .from_("members")
        .group_by(_col("bv"), _col("r")),
        spec,
        starts,
    )
    returns_query = _with(
        exp.select(_col("bv"), _col("r"), _col("c"), exp.Count(this=exp.Star()))
        .from_(_subquery(_offsets(spec), "offsets"))
        .group_by(_col("bv"), _col("r"), _col("c")),
        spec,
        starts,
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
        rows.sort(key=lambda row: (-row[0], _text(row[1])))
        output["breakdowns"] = [{"value": v, "cohorts": c} for _, v, c in rows]
    if actors is not None:
        output["actors"] = _actors(con, spec, starts, actors)
    return output


def _actors(
    con: duckdb.DuckDBPyConnection, spec: RetentionSpec, starts: list[datetime], row: int
) -> list[dict[str, Any]]:
    row_literal = exp.Literal.number(row)
    members = (
        exp.select(_col("person"))
        .from_("members")
        .where(exp.EQ(this=_col("r"), expression=row_literal))
    )
    offsets = (
        exp.select(_col("person"), exp.alias_(exp.func("list", _col("c")), "cs"))
        .from_(_subquery(_offsets(spec), "offsets"))
        .where(exp.EQ(this=_col("r"), expression=row_literal.copy()))
        .group_by(_col("person"))
    )
    query = _with(
        exp.select(exp.column("person", "m"), exp.column("cs", "o"))
        .from_(_subquery(members, "m"))
        .join(
            _subquery(offsets, "o"),
            on=exp.EQ(this=exp.column("person", "o"), expression=exp.column("person", "m")),
            join_type="LEFT",
        ),
        spec,
        starts,
    )
    listed = []
    for person, columns in sorted(con.sql(query.sql("duckdb")).fetchall()):
        listed.append({"person": person, "appearances": [0, *sorted(columns or [])]})
    return listed
