"""A slow, obviously-correct reference of trends, lifecycle and stickiness, the SQL's oracle.

Rules implemented (specs from :mod:`safar.analytics.trends_spec`):

- Periods are wall-clock hours, days, weeks (starting on ``week_start``) or calendar months in
  ``timezone``. The last contains ``to``; the first contains ``from`` or lies
  ``intervals - 1`` periods earlier. An event's period is the one holding its wall time.
- An event counts for a series / the lifecycle / stickiness when it passes the spec's
  ``where``, the event name (None: any) and, for a series, the series' ``where``.
- Trends, per period: ``total`` events; ``unique_persons`` distinct people; ``sum``, ``avg``,
  ``min``, ``max``, ``median`` of the property's JSON numbers (others ignored; no numbers:
  sum 0, the rest None); ``dau``/``wau``/``mau`` distinct people with an event whose wall time
  lies in the 1/7/30 wall-clock days ending where the period ends. A line's ``total`` is the
  same math over the whole range; for rolling maths the window ending where the range ends.
- Breakdowns: a line per value (by JSON text; unset is ``null``) seen on a counted event in
  the range; event scope reads each event, person scope the latest traits. Lines are sorted
  by total (descending, None last), then by the value's JSON text.
- Lifecycle, per period P (P-1 the one before): new = active in P and P is the period of the
  first matching event ever; returning = active in P and P-1; resurrecting = active in P,
  not in P-1, but before; dormant = active in P-1, not in P, as a negative count.
- Stickiness: for k = 1 .. number of periods, people active in exactly k periods of the range.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from reference_funnel import _matches, _value

from safar.analytics.events import Event, EventLog
from safar.analytics.trends_spec import (
    LifecycleSpec,
    Periods,
    Series,
    StickinessSpec,
    TrendsSpec,
)

_ROLLING_DAYS = {"dau": 1, "wau": 7, "mau": 30}


def _wall(periods: Periods, instant: datetime) -> datetime:
    """Naive UTC → naive wall time in the spec's time zone."""
    zone = ZoneInfo(periods.timezone)
    return instant.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)


def _period_start(periods: Periods, wall: datetime) -> datetime:
    if periods.interval == "hour":
        return wall.replace(minute=0, second=0, microsecond=0)
    day = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    if periods.interval == "day":
        return day
    if periods.interval == "week":
        back = wall.weekday() if periods.week_start == "monday" else (wall.weekday() + 1) % 7
        return day - timedelta(days=back)
    return day.replace(day=1)


def _step(periods: Periods, start: datetime, n: int) -> datetime:
    """The period ``n`` periods after (negative: before) the one starting at ``start``."""
    if periods.interval == "hour":
        return start + timedelta(hours=n)
    if periods.interval == "day":
        return start + timedelta(days=n)
    if periods.interval == "week":
        return start + timedelta(weeks=n)
    months = start.year * 12 + start.month - 1 + n
    return start.replace(year=months // 12, month=months % 12 + 1)


def period_starts(periods: Periods) -> list[datetime]:
    """The period starts, as naive wall times."""
    last = _period_start(periods, _wall(periods, periods.date_to))
    if periods.date_from is None:
        first = _step(periods, last, -(periods.intervals - 1))
    else:
        first = _period_start(periods, _wall(periods, periods.date_from))
    starts = [first]
    while starts[-1] < last:
        starts.append(_step(periods, starts[-1], 1))
    return starts


def _labels(periods: Periods, starts: list[datetime]) -> list[str]:
    zone = ZoneInfo(periods.timezone)
    return [start.replace(tzinfo=zone).isoformat() for start in starts]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _aggregate(series: Series, events: list[Event]) -> Any:
    """A non-rolling math over the events of one period (or of the whole range)."""
    if series.math == "total":
        return len(events)
    if series.math == "unique_persons":
        return len({e.person_id for e in events})
    numbers = [e.properties.get(series.property) for e in events]
    numbers = [float(n) for n in numbers if _is_number(n)]
    if series.math == "sum":
        return sum(numbers)
    if not numbers:
        return None
    if series.math == "avg":
        return statistics.fmean(numbers)
    if series.math == "median":
        return statistics.median(numbers)
    return min(numbers) if series.math == "min" else max(numbers)


def _active(timed: Iterable[tuple[datetime, Event]], start: datetime, end: datetime) -> int:
    """People with an event whose wall time is in [start, end)."""
    return len({e.person_id for wall, e in timed if start <= wall < end})


def _key(value: Any) -> str:
    return orjson.dumps(value).decode()


def run_trends(spec: TrendsSpec, log: EventLog) -> dict[str, Any]:
    """Compute the trends output for ``log`` (see the module docstring for the rules)."""
    periods = spec.periods
    starts = period_starts(periods)
    ends = [_step(periods, start, 1) for start in starts]
    bd = spec.breakdown
    output = []
    for series in spec.series:
        where = spec.where + series.where
        timed = [
            (_wall(periods, e.timestamp), e)
            for e in log.events
            if _matches(e, series.event, where, log)
        ]

        def key_of(event: Event) -> str:
            return "null" if bd is None else _key(_value(event, log, bd.property, bd.scope))

        in_range = [(w, e) for w, e in timed if starts[0] <= w < ends[-1]]
        keys = ["null"] if bd is None else sorted({key_of(e) for _, e in in_range})
        lines = []
        for key in keys:
            mine = [(w, e) for w, e in timed if key_of(e) == key]
            days = _ROLLING_DAYS.get(series.math)
            if days is not None:
                window = timedelta(days=days)
                values = [_active(mine, end - window, end) for end in ends]
                total = _active(mine, ends[-1] - window, ends[-1])
            else:
                by_period = [
                    [e for w, e in mine if start <= w < end]
                    for start, end in zip(starts, ends, strict=True)
                ]
                values = [_aggregate(series, events) for events in by_period]
                total = _aggregate(series, [e for events in by_period for e in events])
            line: dict[str, Any] = {"name": series.name}
            if bd is not None:
                line["breakdown_value"] = orjson.loads(key)
            line.update(labels=_labels(periods, starts), values=values, total=total)
            lines.append(((total is None, -(total or 0), key), line))
        output.extend(line for _, line in sorted(lines, key=lambda pair: pair[0]))
    return {"series": output}


def _activity(
    spec: LifecycleSpec | StickinessSpec, log: EventLog, before: datetime
) -> dict[str, set[datetime]]:
    """Each person's active periods (starts) among periods starting before ``before``."""
    periods = spec.periods
    active: dict[str, set[datetime]] = {}
    for event in log.events:
        if not _matches(event, spec.event, spec.where, log):
            continue
        wall = _wall(periods, event.timestamp)
        if wall < before:
            active.setdefault(event.person_id, set()).add(_period_start(periods, wall))
    return active


def run_lifecycle(spec: LifecycleSpec, log: EventLog) -> dict[str, Any]:
    """Compute the lifecycle output for ``log`` (see the module docstring for the rules)."""
    periods = spec.periods
    starts = period_starts(periods)
    active = _activity(spec, log, _step(periods, starts[-1], 1))
    counts: dict[str, list[int]] = {"new": [], "returning": [], "resurrecting": [], "dormant": []}
    for start in starts:
        previous = _step(periods, start, -1)
        now = {p for p, seen in active.items() if start in seen}
        before = {p for p, seen in active.items() if previous in seen}
        new = {p for p in now if min(active[p]) == start}
        counts["new"].append(len(new))
        counts["returning"].append(len(now & before))
        counts["resurrecting"].append(len(now - before - new))
        counts["dormant"].append(-len(before - now))
    labels = _labels(periods, starts)
    return {
        "series": [
            {"status": status, "labels": labels, "values": values, "total": sum(values)}
            for status, values in counts.items()
        ]
    }


def run_stickiness(spec: StickinessSpec, log: EventLog) -> dict[str, Any]:
    """Compute the stickiness output for ``log`` (see the module docstring for the rules)."""
    periods = spec.periods
    starts = period_starts(periods)
    active = _activity(spec, log, _step(periods, starts[-1], 1))
    in_range = [len(seen & set(starts)) for seen in active.values()]
    ks = list(range(1, len(starts) + 1))
    values = [sum(1 for n in in_range if n == k) for k in ks]
    unit = periods.interval
    return {
        "series": [
            {
                "name": spec.event if spec.event is not None else "any event",
                "intervals": ks,
                "labels": [f"{k} {unit}" if k == 1 else f"{k} {unit}s" for k in ks],
                "values": values,
                "total": sum(values),
            }
        ]
    }
