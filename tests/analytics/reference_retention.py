"""A slow, obviously-correct reference of the retention rules, the oracle for the SQL engine.

Rules implemented (``spec`` is a :class:`safar.analytics.retention_spec.RetentionSpec`):

- Periods are wall-clock hours, days, weeks (starting on ``week_start``) or calendar months in
  ``timezone``. The last period contains ``to``; the first is ``intervals - 1`` periods
  earlier, or the one containing ``from`` when it is given.
- An event is considered when it passes the spec's ``where``; it is a target / returning
  event when it also matches that entity's event name (None: any behavioural event) and where.
- recurring: a person is in the cohort of every period in which they did a target event.
  first_time: only in the period of their first-ever target event, if that period is in range
  (target events before the first period count as history).
- A person returned in period p when they did at least ``min_occurrences`` returning events
  in p. Column 0 of cohort r is its size; column c counts members who returned in period r + c
  (cumulative: in r + c or any later period in range). Row r has ``intervals - r`` columns.
- Breakdowns: person scope uses the latest traits; event scope the value on the person's first
  target event of that cohort period. Rows are sorted by total cohort size, then value text.
- Actors of row r: each member with the columns they appear in (0 always).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from reference_funnel import _matches, _text, _value, matches_filter

from safar.analytics.events import Event, EventLog
from safar.analytics.retention_spec import RetentionSpec


def _local(spec: RetentionSpec, instant: datetime) -> datetime:
    """Naive UTC → naive wall time in the spec's time zone."""
    zone = ZoneInfo(spec.timezone)
    return instant.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)


def _period_start(spec: RetentionSpec, wall: datetime) -> datetime:
    if spec.period == "hour":
        return wall.replace(minute=0, second=0, microsecond=0)
    day = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    if spec.period == "day":
        return day
    if spec.period == "week":
        back = wall.weekday() if spec.week_start == "monday" else (wall.weekday() + 1) % 7
        return day - timedelta(days=back)
    return day.replace(day=1)


def _step(spec: RetentionSpec, start: datetime, n: int) -> datetime:
    """The period ``n`` periods after (negative: before) the one starting at ``start``."""
    if spec.period == "hour":
        return start + timedelta(hours=n)
    if spec.period == "day":
        return start + timedelta(days=n)
    if spec.period == "week":
        return start + timedelta(weeks=n)
    months = start.year * 12 + start.month - 1 + n
    return start.replace(year=months // 12, month=months % 12 + 1)


def periods(spec: RetentionSpec) -> list[datetime]:
    """The period starts, as naive wall times in the spec's time zone."""
    last = _period_start(spec, _local(spec, spec.date_to))
    if spec.date_from is None:
        first = _step(spec, last, -(spec.intervals - 1))
    else:
        first = _period_start(spec, _local(spec, spec.date_from))
    starts = [first]
    while starts[-1] < last:
        starts.append(_step(spec, starts[-1], 1))
    return starts


def _iso(spec: RetentionSpec, wall: datetime) -> str:
    return wall.replace(tzinfo=ZoneInfo(spec.timezone)).isoformat()


def _size(cohorts: list[dict[str, Any]]) -> int:
    return sum(cohort["values"][0] for cohort in cohorts)


def _rows(
    spec: RetentionSpec,
    members: list[dict[str, Any]],
    returned: dict[str, set[int]],
) -> list[list[int]]:
    n = len(members)
    rows = []
    for r in range(n):
        values = [len(members[r])]
        for c in range(1, n - r):
            if spec.cumulative:
                hit = [p for p in members[r] if any(q >= r + c for q in returned.get(p, ()))]
            else:
                hit = [p for p in members[r] if r + c in returned.get(p, ())]
            values.append(len(hit))
        rows.append(values)
    return rows


def run_retention(spec: RetentionSpec, log: EventLog, actors: int | None = None) -> dict[str, Any]:
    """Compute the retention output of issue 4 for ``log``.

    Args:
        spec: the parsed retention spec.
        log: the identity-resolved event log.
        actors: a 0-based cohort row whose members to list; None leaves ``actors`` out.

    Returns:
        ``{"cohorts": [...], "breakdowns": [...]}`` plus ``"actors"`` when asked.
    """
    starts = periods(spec)
    index = {start: i for i, start in enumerate(starts)}

    def period_of(event: Event) -> int | None:
        return index.get(_period_start(spec, _local(spec, event.timestamp)))

    events = [e for e in log.events if all(matches_filter(f, e, log) for f in spec.where)]
    # members[r]: person -> their first target event in period r (for event-scope breakdowns)
    members: list[dict[str, Event]] = [{} for _ in starts]
    seen_target: set[str] = set()
    counts: dict[tuple[str, int], int] = {}
    for event in events:  # already in (timestamp, position) order
        r = period_of(event)
        if _matches(event, spec.target.event, spec.target.where, log):
            first_ever = event.person_id not in seen_target
            seen_target.add(event.person_id)
            if r is not None and (spec.type == "recurring" or first_ever):
                members[r].setdefault(event.person_id, event)
        if r is not None and _matches(event, spec.returning.event, spec.returning.where, log):
            counts[(event.person_id, r)] = counts.get((event.person_id, r), 0) + 1
    returned: dict[str, set[int]] = {}
    for (person, r), count in counts.items():
        if count >= spec.min_occurrences:
            returned.setdefault(person, set()).add(r)

    def cohorts(chosen: list[dict[str, Event]]) -> list[dict[str, Any]]:
        pairs = zip(starts, _rows(spec, chosen, returned), strict=True)
        return [{"period_start": _iso(spec, s), "values": v} for s, v in pairs]

    output: dict[str, Any] = {"cohorts": cohorts(members), "breakdowns": []}
    if spec.breakdown is not None:
        bd = spec.breakdown
        buckets: dict[str, tuple[Any, list[dict[str, Event]]]] = {}
        for r, row in enumerate(members):
            for person, event in row.items():
                value = _value(event, log, bd.property, bd.scope)
                bucket = buckets.setdefault(repr(value), (value, [{} for _ in starts]))[1]
                bucket[r][person] = event
        rows = [{"value": v, "cohorts": cohorts(b)} for v, b in buckets.values()]
        rows.sort(
            key=lambda row: (-_size(row["cohorts"]), _text(row["value"]), json.dumps(row["value"]))
        )
        output["breakdowns"] = rows
    if actors is not None:
        listed = []
        for person in sorted(members[actors]):
            appearances = [0]
            for c in range(1, len(starts) - actors):
                mine = returned.get(person, set())
                if any(q >= actors + c for q in mine) if spec.cumulative else actors + c in mine:
                    appearances.append(c)
            listed.append({"person": person, "appearances": appearances})
        output["actors"] = listed
    return output
