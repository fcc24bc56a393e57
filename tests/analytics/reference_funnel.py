"""A slow, obviously-correct reference of the funnel rules, the oracle for the SQL engine.

Readability over speed: every attempt (each step-1 event) is walked on its own, and the
person's result is picked among the attempts exactly as the rules in issue 4 say.

Rules implemented (``spec`` is a :class:`safar.analytics.spec.FunnelSpec`):

- Candidate events are behavioural events in [from, to] that pass the spec's ``where``.
- A unit's events are ordered by timestamp, then by the first step they match (so different
  events at one timestamp count in step order), then by input position.
- ordered: an attempt starts at each step-1 event and takes, in order, the next event matching
  the next step while within the inclusive window; one event advances at most one step.
- strict: as ordered, but the first candidate event that does not match the next step ends it.
- unordered: an attempt starts at each event matching any step; its progress at time t is the
  largest number of steps that distinct events in [start, t] can be assigned to.
- The unit's result is the attempt reaching the most steps; among those, the one that got
  there first, and among those the latest start. Conversion times come from that attempt.
- ordered/strict exclusions: an exclusion event seen by an attempt while it is at a step in
  [from_step, to_step) (and within its window) taints it; if the chosen attempt is tainted the
  unit leaves the whole funnel. unordered: an exclusion event voids an unfinished attempt.
- Breakdowns (one row per value, the funnel counted over the units in it): first_touch /
  last_touch put each unit in the bucket of the first / last non-null value on its step
  events; all_events runs the funnel per value on that value's events only (a unit can be in
  several buckets); step lets only events with the value match the breakdown step.
- ``aggregate_by`` an event property makes each value of it a unit; events without it drop.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from safar.analytics.events import Event, EventLog
from safar.analytics.spec import AllOf, AnyOf, Condition, Filter, FunnelSpec

_MISSING = object()


@dataclass(frozen=True)
class Attempt:
    """How far one attempt got: ``times[i]`` is when it reached step i."""

    times: tuple[datetime, ...]
    excluded: bool = False


def _text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same_kind(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return True
    return type(a) is type(b)


def _equal(a: Any, b: Any) -> bool:
    return a == b if _same_kind(a, b) else _text(a) == _text(b)


def _compare(a: Any, b: Any) -> int:
    if not _same_kind(a, b):
        a, b = _text(a), _text(b)
    return (a > b) - (a < b)


def _condition(cond: Condition, value: Any) -> bool:
    present = value is not _MISSING and value is not None
    op, target = cond.op, cond.value
    if op == "is_set":
        return present
    if op == "is_not_set":
        return not present
    if op in ("eq", "neq"):
        targets = target if isinstance(target, tuple) else (target,)
        hit = present and any(_equal(value, t) for t in targets)
        return hit if op == "eq" else not hit
    if op in ("contains", "not_contains"):
        hit = present and _text(target).lower() in _text(value).lower()
        return hit if op == "contains" else not hit
    if not present:
        return False
    if op == "regex":
        return re.search(_text(target), _text(value)) is not None
    sign = _compare(value, target)
    return {"gt": sign > 0, "gte": sign >= 0, "lt": sign < 0, "lte": sign <= 0}[op]


def _property(event: Event, log: EventLog, prop: str, scope: str) -> Any:
    if scope == "person":
        return log.person_properties.get(event.person_id, {}).get(prop, _MISSING)
    return event.properties.get(prop, _MISSING)


def matches_filter(filt: Filter, event: Event, log: EventLog) -> bool:
    """Whether ``event`` passes one filter (nested any/all included)."""
    if isinstance(filt, AnyOf):
        return any(matches_filter(f, event, log) for f in filt.filters)
    if isinstance(filt, AllOf):
        return all(matches_filter(f, event, log) for f in filt.filters)
    return _condition(filt, _property(event, log, filt.property, filt.scope))


def _matches(event: Event, name: str | None, where: Sequence[Filter], log: EventLog) -> bool:
    if name is not None and event.event != name:
        return False
    return all(matches_filter(f, event, log) for f in where)


StepMatch = Callable[[Event, int], bool]
ExclusionMatch = Callable[[Event, int | None], bool]


def _ordered_attempts(
    spec: FunnelSpec, events: list[Event], match_step: StepMatch, is_exclusion: ExclusionMatch
) -> list[Attempt]:
    strict = spec.order == "strict"
    attempts = []
    for k, start in enumerate(events):
        if not match_step(start, 0):
            continue
        end = spec.window.end(start.timestamp)
        times, excluded = [start.timestamp], False
        for event in events[k + 1 :]:
            if event.timestamp > end or len(times) == len(spec.steps):
                break
            if is_exclusion(event, len(times) - 1):
                excluded = True
            if match_step(event, len(times)):
                times.append(event.timestamp)
            elif strict:
                break
        attempts.append(Attempt(tuple(times), excluded))
    return attempts


def _max_assignment(events: list[Event], n_steps: int, match_step: StepMatch) -> int:
    """The most steps that distinct events can be assigned to (Kuhn's augmenting paths)."""
    owner: dict[int, int] = {}

    def assign(e: int, seen: set[int]) -> bool:
        for step in range(n_steps):
            if step in seen or not match_step(events[e], step):
                continue
            seen.add(step)
            if step not in owner or assign(owner[step], seen):
                owner[step] = e
                return True
        return False

    return sum(assign(e, set()) for e in range(len(events)))


def _unordered_attempts(
    spec: FunnelSpec, events: list[Event], match_step: StepMatch, is_exclusion: ExclusionMatch
) -> list[Attempt]:
    n = len(spec.steps)
    attempts = []
    for k, start in enumerate(events):
        if not any(match_step(start, s) for s in range(n)):
            continue
        end = spec.window.end(start.timestamp)
        seen: list[Event] = []
        times: list[datetime] = []
        for event in events[k:]:
            if event.timestamp > end or len(times) == n:
                break
            if is_exclusion(event, None):  # unordered: from_step/to_step do not apply
                times = []
                break
            seen.append(event)
            while len(times) < _max_assignment(seen, n, match_step):
                times.append(event.timestamp)
        if times:
            attempts.append(Attempt(tuple(times)))
    return attempts


def _best(attempts: list[Attempt]) -> Attempt | None:
    if not attempts:
        return None
    furthest = max(len(a.times) for a in attempts)
    reached = [a for a in attempts if len(a.times) == furthest]
    first = min(a.times[-1] for a in reached)
    return max((a for a in reached if a.times[-1] == first), key=lambda a: a.times[0])


def _unit_result(
    spec: FunnelSpec, events: list[Event], log: EventLog, step_match: StepMatch | None = None
) -> Attempt | None:
    """The attempt that counts for one unit, or None when it is not in the funnel.

    ``step_match`` narrows which events may match a step (used by ``step`` attribution).
    """

    def match_step(event: Event, i: int) -> bool:
        if step_match is not None and not step_match(event, i):
            return False
        return _matches(event, spec.steps[i].event, spec.steps[i].where, log)

    def is_exclusion(event: Event, at_step: int | None) -> bool:
        return any(
            (at_step is None or x.from_step <= at_step < x.to_step)
            and _matches(event, x.event, x.where, log)
            for x in spec.exclusions
        )

    def first_step(event: Event) -> int:
        return next((i for i in range(len(spec.steps)) if match_step(event, i)), len(spec.steps))

    events = sorted(events, key=lambda e: (e.timestamp, first_step(e), e.position))
    walk = _unordered_attempts if spec.order == "unordered" else _ordered_attempts
    best = _best(walk(spec, events, match_step, is_exclusion))
    if best is None or best.excluded:
        return None
    return best


def _summary(spec: FunnelSpec, results: dict[Any, Attempt]) -> list[dict[str, Any]]:
    steps = []
    entered = len(results)
    for i, step in enumerate(spec.steps):
        reached = [a for a in results.values() if len(a.times) > i]
        seconds = [(a.times[i] - a.times[i - 1]).total_seconds() for a in reached] if i else []
        steps.append(
            {
                "name": step.name,
                "count": len(reached),
                "conversion_rate": len(reached) / entered if entered else 0.0,
                "average_conversion_seconds": statistics.fmean(seconds) if seconds else None,
                "median_conversion_seconds": statistics.median(seconds) if seconds else None,
            }
        )
    return steps


def _value(event: Event, log: EventLog, prop: str, scope: str) -> Any:
    value = _property(event, log, prop, scope)
    return None if value is _MISSING else value


def _key(value: Any) -> str:
    return repr(value)


def run_funnel(spec: FunnelSpec, log: EventLog, persons: int | None = None) -> dict[str, Any]:
    """Compute the funnel output of issue 4 for ``log``.

    Args:
        spec: the parsed funnel spec.
        log: the identity-resolved event log.
        persons: 1-based N lists units that reached step N; -N those that reached step N-1
            but not step N; None leaves ``persons`` out.

    Returns:
        ``{"steps": [...], "breakdowns": [...]}`` plus ``"persons"`` when asked.
    """
    units: dict[Any, list[Event]] = {}
    for event in log.events:
        if spec.date_from is not None and event.timestamp < spec.date_from:
            continue
        if spec.date_to is not None and event.timestamp > spec.date_to:
            continue
        if not all(matches_filter(f, event, log) for f in spec.where):
            continue
        unit = event.person_id
        if spec.aggregate_by is not None:
            unit = event.properties.get(spec.aggregate_by)
            if unit is None:
                continue
            unit = _text(unit)
        units.setdefault(unit, []).append(event)

    results = {}
    for unit, events in units.items():
        result = _unit_result(spec, events, log)
        if result is not None:
            results[unit] = result
    output: dict[str, Any] = {"steps": _summary(spec, results), "breakdowns": []}
    if spec.breakdown is not None:
        output["breakdowns"] = _breakdowns(spec, log, units)
    if persons is not None:
        n = abs(persons)
        if persons > 0:
            chosen = [u for u, a in results.items() if len(a.times) >= n]
        else:
            chosen = [u for u, a in results.items() if len(a.times) == n - 1]
        output["persons"] = sorted(chosen)
    return output


def _touch(
    spec: FunnelSpec, log: EventLog, events: list[Event]
) -> list[tuple[Any, Attempt | None]]:
    """first_touch / last_touch: one bucket, the first / last non-null value on a step event."""
    bd = spec.breakdown
    values = [
        _value(e, log, bd.property, bd.scope)
        for e in events
        if any(_matches(e, s.event, s.where, log) for s in spec.steps)
    ]
    values = [v for v in values if v is not None] or [None]
    value = values[0] if bd.attribution == "first_touch" else values[-1]
    return [(value, _unit_result(spec, events, log))]


def _all_events(
    spec: FunnelSpec, log: EventLog, events: list[Event]
) -> list[tuple[Any, Attempt | None]]:
    """all_events: the funnel run once per value, on only the events carrying that value."""
    bd = spec.breakdown
    by_value: dict[str, tuple[Any, list[Event]]] = {}
    for event in events:
        value = _value(event, log, bd.property, bd.scope)
        by_value.setdefault(_key(value), (value, []))[1].append(event)
    return [(value, _unit_result(spec, subset, log)) for value, subset in by_value.values()]


def _step_value(
    spec: FunnelSpec, log: EventLog, events: list[Event]
) -> list[tuple[Any, Attempt | None]]:
    """step: the value on the event used for the breakdown step.

    The funnel is run once per value seen on that step's events, letting only events with
    that value match the step; the value that gets furthest wins (the first seen on ties).
    Units with no value on any such event fall in the null bucket.
    """
    bd = spec.breakdown
    step = spec.steps[bd.step]
    values: dict[str, Any] = {}
    for event in events:
        value = _value(event, log, bd.property, bd.scope)
        if value is not None and _matches(event, step.event, step.where, log):
            values.setdefault(_key(value), value)
    if not values:
        return [(None, _unit_result(spec, events, log))]
    best_value, best = None, None
    for key, value in values.items():

        def only_value(event: Event, i: int, key: str = key) -> bool:
            return i != bd.step or _key(_value(event, log, bd.property, bd.scope)) == key

        result = _unit_result(spec, events, log, only_value)
        if best_value is None or _reach(result) > _reach(best):
            best_value, best = value, result
    return [(best_value, best)]


_ATTRIBUTIONS = {
    "first_touch": _touch,
    "last_touch": _touch,
    "all_events": _all_events,
    "step": _step_value,
}


def _breakdowns(spec: FunnelSpec, log: EventLog, units: dict[Any, list[Event]]) -> list[dict]:
    buckets: dict[str, tuple[Any, dict[Any, Attempt]]] = {}
    for unit, events in units.items():
        for value, result in _ATTRIBUTIONS[spec.breakdown.attribution](spec, log, events):
            bucket = buckets.setdefault(_key(value), (value, {}))[1]
            if result is not None:
                bucket[unit] = result

    rows = []
    for value, results in buckets.values():
        steps = _summary(replace(spec, breakdown=None), results)
        if steps[0]["count"]:
            rows.append({"value": [value], "steps": steps})
    rows.sort(
        key=lambda r: (-r["steps"][0]["count"], _text(r["value"][0]), json.dumps(r["value"][0]))
    )
    return rows


def _reach(result: Attempt | None) -> int:
    return 0 if result is None else len(result.times)
