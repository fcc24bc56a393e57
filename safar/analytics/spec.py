"""Funnel specs: the JSON a user writes, parsed into frozen dataclasses or a clear error.

Every engine (the SQL compiler, the reference implementation in the tests, the dashboards)
starts from a :class:`FunnelSpec`, so defaults and validation live here and only here. A bad
spec raises :class:`SpecError` naming the field path, e.g. ``steps[1].where[0].op``.

Dates: ``from``/``to`` are inclusive. A value with an offset is that instant; one without is
wall time in ``timezone`` (converted with :mod:`zoneinfo`, so DST is respected). A bare date
means the start of that day for ``from`` and the end of that day for ``to``. All instants are
returned as naive UTC ``datetime`` values, like the rest of Safar.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

OPS = frozenset(
    ("eq", "neq", "contains", "not_contains", "gt", "gte", "lt", "lte", "is_set", "is_not_set")
    + ("regex",)
)
"""Filter operators."""

UNITS = ("second", "minute", "hour", "day", "week", "month")
ORDERS = ("ordered", "strict", "unordered")
SCOPES = ("event", "person")
ATTRIBUTIONS = ("first_touch", "last_touch", "all_events", "step")

MAX_UNORDERED_STEPS = 6
"""Unordered funnels cost n·2^(n-1) window values (see ``safar.analytics.funnel``)."""

_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


class SpecError(ValueError):
    """A spec that cannot be run; the message starts with the offending field path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True)
class Condition:
    """One property test, e.g. ``$browser eq ["Chrome", "Safari"]``."""

    property: str
    op: str
    value: Any = None
    scope: str = "event"


@dataclass(frozen=True)
class AnyOf:
    """True when at least one of ``filters`` is true."""

    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class AllOf:
    """True when every one of ``filters`` is true."""

    filters: tuple[Filter, ...]


Filter = Condition | AnyOf | AllOf


@dataclass(frozen=True)
class Window:
    """The conversion window, measured from an attempt's step-1 event; its bound is inclusive."""

    value: int = 14
    unit: str = "day"

    def end(self, start: datetime) -> datetime:
        """The last instant an attempt entered at ``start`` may convert at.

        Absolute time: a day is 86,400 seconds whatever the time zone; a month is a calendar
        month in UTC, clamped to the month's last day.

        Example:
            >>> Window(2, "hour").end(datetime(2026, 1, 1, 23))
            datetime.datetime(2026, 1, 2, 1, 0)
            >>> Window(1, "month").end(datetime(2026, 1, 31))
            datetime.datetime(2026, 2, 28, 0, 0)
        """
        if self.unit != "month":
            return start + timedelta(seconds=self.value * _UNIT_SECONDS[self.unit])
        months = start.month - 1 + self.value
        year, month = start.year + months // 12, months % 12 + 1
        day = start.day
        while True:
            try:
                return start.replace(year=year, month=month, day=day)
            except ValueError:
                day -= 1


@dataclass(frozen=True)
class Step:
    """One funnel step; ``event`` None matches any behavioural event."""

    event: str | None
    name: str
    where: tuple[Filter, ...] = ()


@dataclass(frozen=True)
class Exclusion:
    """An event that, seen between two steps (0-based) of an attempt, disqualifies it."""

    event: str | None
    from_step: int
    to_step: int
    where: tuple[Filter, ...] = ()


@dataclass(frozen=True)
class Breakdown:
    """Split the funnel by a property; ``step`` is used only by ``step`` attribution."""

    property: str
    scope: str = "event"
    attribution: str = "first_touch"
    step: int = 0


@dataclass(frozen=True)
class FunnelSpec:
    """A parsed funnel spec; ``aggregate_by`` None counts people, a string an event property."""

    steps: tuple[Step, ...]
    order: str = "ordered"
    window: Window = Window()
    date_from: datetime | None = None
    date_to: datetime | None = None
    timezone: str = "UTC"
    where: tuple[Filter, ...] = ()
    exclusions: tuple[Exclusion, ...] = ()
    breakdown: Breakdown | None = None
    aggregate_by: str | None = None


def expect_object(value: Any, path: str, allowed: set[str]) -> Mapping[str, Any]:
    """``value`` as a JSON object with only ``allowed`` keys, or a SpecError at ``path``."""
    if not isinstance(value, Mapping):
        raise SpecError(path, "must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise SpecError(f"{path}.{unknown[0]}", "unknown key")
    return value


def expect_choice(value: Any, path: str, choices: tuple[str, ...] | frozenset[str]) -> str:
    """``value`` if it is one of ``choices``, or a SpecError listing them."""
    if value not in choices:
        raise SpecError(path, f"must be one of {', '.join(sorted(choices))}, not {value!r}")
    return value


def expect_text(value: Any, path: str, *, nullable: bool = False) -> str | None:
    """``value`` as a non-empty string (or None when ``nullable``)."""
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value:
        raise SpecError(path, "must be a non-empty string")
    return value


def _index(value: Any, path: str, n_steps: int) -> int:
    if type(value) is not int:
        raise SpecError(path, "must be an integer step index (0-based)")
    if not 0 <= value < n_steps:
        raise SpecError(path, f"step index {value} is out of range 0..{n_steps - 1}")
    return value


def _filter(obj: Any, path: str) -> Filter:
    if isinstance(obj, Mapping) and ("any" in obj or "all" in obj):
        key = "any" if "any" in obj else "all"
        expect_object(obj, path, {key})
        children = parse_filters(obj[key], f"{path}.{key}")
        return AnyOf(children) if key == "any" else AllOf(children)
    obj = expect_object(obj, path, {"property", "scope", "op", "value"})
    prop = expect_text(obj.get("property"), f"{path}.property")
    scope = expect_choice(obj.get("scope", "event"), f"{path}.scope", SCOPES)
    op = expect_choice(obj.get("op"), f"{path}.op", OPS)
    value = obj.get("value")
    if op in ("is_set", "is_not_set"):
        return Condition(prop, op, None, scope)
    if "value" not in obj or value is None:
        raise SpecError(f"{path}.value", f"is required for op {op}")
    if isinstance(value, list):
        if op not in ("eq", "neq"):
            raise SpecError(f"{path}.value", f"a list is only allowed for eq/neq, not {op}")
        if not value:
            raise SpecError(f"{path}.value", "must not be an empty list")
        value = tuple(value)
    elif isinstance(value, Mapping):
        raise SpecError(f"{path}.value", "must be a string, number, boolean or list")
    if op == "regex":
        try:
            re.compile(str(value))
        except re.error as exc:
            raise SpecError(f"{path}.value", f"is not a valid regular expression: {exc}") from None
    return Condition(prop, op, value, scope)


def parse_filters(value: Any, path: str) -> tuple[Filter, ...]:
    """A list of filters (``{"any"|"all": [...]}`` nest); None is no filter."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SpecError(path, "must be a list of filters")
    return tuple(_filter(item, f"{path}[{i}]") for i, item in enumerate(value))


def parse_instant(value: Any, path: str, zone: ZoneInfo, *, end_of_day: bool) -> datetime | None:
    """An ISO-8601 date or date-time as naive UTC; see the module docstring for the rules."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpecError(path, "must be an ISO-8601 date or date-time string")
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            parsed = datetime(day.year, day.month, day.day)
            if end_of_day:
                parsed += timedelta(days=1, microseconds=-1)
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise SpecError(path, f"is not an ISO-8601 date or date-time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC).replace(tzinfo=None)


def parse_timezone(value: Any, path: str = "timezone") -> tuple[str, ZoneInfo]:
    """An IANA time zone name and its zone, or a SpecError at ``path``."""
    name = expect_text(value, path)
    try:
        return name, ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SpecError(path, f"unknown time zone {name!r}") from None


def parse_funnel_spec(obj: Any) -> FunnelSpec:
    """Parse a funnel spec (already decoded from JSON), filling the documented defaults.

    Args:
        obj: the decoded JSON object.

    Returns:
        The spec, with ``from``/``to`` as naive UTC instants.

    Raises:
        SpecError: the spec is invalid; the message names the field path.

    Example:
        >>> spec = parse_funnel_spec({"steps": [{"event": "a"}, {"event": None}],
        ...                           "from": "2026-03-29T01:30", "timezone": "Europe/Berlin"})
        >>> [s.name for s in spec.steps], spec.order, spec.window
        (['a', 'any event'], 'ordered', Window(value=14, unit='day'))
        >>> spec.date_from
        datetime.datetime(2026, 3, 29, 0, 30)
        >>> parse_funnel_spec({"steps": []})
        Traceback (most recent call last):
        ...
        safar.analytics.spec.SpecError: steps: must be a non-empty list of steps
    """
    keys = {"steps", "order", "window", "from", "to", "timezone", "where", "exclusions"}
    obj = expect_object(obj, "spec", keys | {"breakdown", "aggregate_by"})
    raw_steps = obj.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise SpecError("steps", "must be a non-empty list of steps")
    steps = []
    for i, raw in enumerate(raw_steps):
        raw = expect_object(raw, f"steps[{i}]", {"event", "name", "where"})
        if "event" not in raw:
            raise SpecError(f"steps[{i}].event", "is required (null means any event)")
        event = expect_text(raw["event"], f"steps[{i}].event", nullable=True)
        default_name = event if event is not None else "any event"
        name = expect_text(raw.get("name", default_name), f"steps[{i}].name")
        steps.append(Step(event, name, parse_filters(raw.get("where"), f"steps[{i}].where")))
    n = len(steps)

    order = expect_choice(obj.get("order", "ordered"), "order", ORDERS)
    if order == "unordered" and n > MAX_UNORDERED_STEPS:
        raise SpecError("steps", f"an unordered funnel has at most {MAX_UNORDERED_STEPS} steps")
    window = Window()
    if "window" in obj:
        raw = expect_object(obj["window"], "window", {"value", "unit"})
        value = raw.get("value", 14)
        if type(value) is not int or value <= 0:
            raise SpecError("window.value", "must be a positive integer")
        window = Window(value, expect_choice(raw.get("unit", "day"), "window.unit", UNITS))

    timezone, zone = parse_timezone(obj.get("timezone", "UTC"))
    date_from = parse_instant(obj.get("from"), "from", zone, end_of_day=False)
    date_to = parse_instant(obj.get("to"), "to", zone, end_of_day=True)
    if date_from is not None and date_to is not None and date_from > date_to:
        raise SpecError("to", "must not be before from")

    exclusions = []
    raw_exclusions = obj.get("exclusions") or []
    if not isinstance(raw_exclusions, list):
        raise SpecError("exclusions", "must be a list")
    for i, raw in enumerate(raw_exclusions):
        path = f"exclusions[{i}]"
        raw = expect_object(raw, path, {"event", "where", "from_step", "to_step"})
        if "event" not in raw:
            raise SpecError(f"{path}.event", "is required (null means any event)")
        event = expect_text(raw["event"], f"{path}.event", nullable=True)
        from_step = _index(raw.get("from_step", 0), f"{path}.from_step", n)
        to_step = _index(raw.get("to_step", n - 1), f"{path}.to_step", n)
        if from_step >= to_step:
            raise SpecError(f"{path}.to_step", f"must be after from_step ({from_step})")
        where = parse_filters(raw.get("where"), f"{path}.where")
        exclusions.append(Exclusion(event, from_step, to_step, where))

    breakdown = None
    if obj.get("breakdown") is not None:
        raw = expect_object(
            obj["breakdown"], "breakdown", {"property", "scope", "attribution", "step"}
        )
        breakdown = Breakdown(
            expect_text(raw.get("property"), "breakdown.property"),
            expect_choice(raw.get("scope", "event"), "breakdown.scope", SCOPES),
            expect_choice(
                raw.get("attribution", "first_touch"), "breakdown.attribution", ATTRIBUTIONS
            ),
            _index(raw.get("step", 0), "breakdown.step", n),
        )

    aggregate_by = None
    raw = obj.get("aggregate_by", "person")
    if raw != "person":
        raw = expect_object(raw, "aggregate_by", {"event_property"})
        aggregate_by = expect_text(raw.get("event_property"), "aggregate_by.event_property")

    return FunnelSpec(
        steps=tuple(steps),
        order=order,
        window=window,
        date_from=date_from,
        date_to=date_to,
        timezone=timezone,
        where=parse_filters(obj.get("where"), "where"),
        exclusions=tuple(exclusions),
        breakdown=breakdown,
        aggregate_by=aggregate_by,
    )
