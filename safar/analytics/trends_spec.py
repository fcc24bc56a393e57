"""Trends, lifecycle and stickiness specs: the JSON a user writes, parsed or a clear error.

Shares its building blocks with :mod:`safar.analytics.spec` (filters, dates, time zones and
:class:`~safar.analytics.spec.SpecError` with field paths), so every spec behaves alike.

Periods (:class:`Periods`, shared by the three specs): wall-clock hours, days, weeks (starting
on ``week_start``) or calendar months in ``timezone``. The last period is the one containing
``to``; the first is the one containing ``from``, or ``intervals - 1`` periods before the last.
Periods are whole: every event of the first and the last period counts, like retention.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from safar.analytics.retention_spec import PERIODS, WEEK_STARTS
from safar.analytics.spec import (
    SCOPES,
    Filter,
    SpecError,
    expect_choice,
    expect_object,
    expect_text,
    parse_filters,
    parse_instant,
    parse_timezone,
)

MATHS = ("total", "unique_persons", "dau", "wau", "mau", "sum", "avg", "min", "max", "median")
"""How a trends series turns a period's events into one number."""

PROPERTY_MATHS = frozenset({"sum", "avg", "min", "max", "median"})
"""Maths over a numeric event property (``series[].property``)."""

ROLLING_DAYS = {"dau": 1, "wau": 7, "mau": 30}
"""Rolling active-user maths and the days their window spans."""

_PERIOD_KEYS = {"interval", "from", "to", "intervals", "timezone", "week_start"}


@dataclass(frozen=True)
class Periods:
    """Which periods a query reports; ``date_from``/``date_to`` are naive UTC instants.

    Exactly one of ``date_from`` and ``intervals`` is set.
    """

    date_to: datetime
    date_from: datetime | None = None
    intervals: int | None = None
    interval: str = "day"
    timezone: str = "UTC"
    week_start: str = "sunday"


@dataclass(frozen=True)
class Series:
    """One trends line; ``event`` None matches any behavioural event."""

    event: str | None
    name: str
    math: str = "total"
    property: str | None = None
    where: tuple[Filter, ...] = ()


@dataclass(frozen=True)
class TrendsBreakdown:
    """Split every series by a property (person: latest traits; event: each event's value)."""

    property: str
    scope: str = "event"


@dataclass(frozen=True)
class TrendsSpec:
    """A parsed trends spec: one or more series over the same periods."""

    series: tuple[Series, ...]
    periods: Periods
    where: tuple[Filter, ...] = ()
    breakdown: TrendsBreakdown | None = None


@dataclass(frozen=True)
class LifecycleSpec:
    """A parsed lifecycle spec: new / returning / resurrecting / dormant people per period."""

    event: str | None
    periods: Periods
    where: tuple[Filter, ...] = ()


@dataclass(frozen=True)
class StickinessSpec:
    """A parsed stickiness spec: how many people were active in exactly k periods."""

    event: str | None
    periods: Periods
    where: tuple[Filter, ...] = ()


def _periods(obj: Any) -> Periods:
    interval = expect_choice(obj.get("interval", "day"), "interval", PERIODS)
    week_start = expect_choice(obj.get("week_start", "sunday"), "week_start", WEEK_STARTS)
    timezone, zone = parse_timezone(obj.get("timezone", "UTC"))
    if obj.get("to") is None:
        raise SpecError("to", "is required")
    date_to = parse_instant(obj["to"], "to", zone, end_of_day=True)
    date_from = parse_instant(obj.get("from"), "from", zone, end_of_day=False)
    intervals = obj.get("intervals")
    if date_from is not None:
        if intervals is not None:
            raise SpecError("intervals", "give either from or intervals, not both")
        if date_from > date_to:
            raise SpecError("to", "must not be before from")
    elif intervals is None:
        raise SpecError("from", "is required (or give intervals)")
    elif type(intervals) is not int or intervals < 1:
        raise SpecError("intervals", "must be an integer >= 1")
    return Periods(date_to, date_from, intervals, interval, timezone, week_start)


def _event(obj: Any, path: str) -> str | None:
    if "event" not in obj:
        raise SpecError(path, "is required (null means any event)")
    return expect_text(obj["event"], path, nullable=True)


def _series(raw: Any, path: str) -> Series:
    raw = expect_object(raw, path, {"event", "where", "math", "property", "name"})
    event = _event(raw, f"{path}.event")
    math = expect_choice(raw.get("math", "total"), f"{path}.math", MATHS)
    prop = None
    if math in PROPERTY_MATHS:
        if raw.get("property") is None:
            raise SpecError(f"{path}.property", f"is required for math {math}")
        prop = expect_text(raw["property"], f"{path}.property")
    elif raw.get("property") is not None:
        maths = ", ".join(sorted(PROPERTY_MATHS))
        raise SpecError(f"{path}.property", f"only applies to math {maths}, not {math}")
    name = expect_text(raw.get("name", event if event is not None else "any event"), f"{path}.name")
    return Series(event, name, math, prop, parse_filters(raw.get("where"), f"{path}.where"))


def parse_trends_spec(obj: Any) -> TrendsSpec:
    """Parse a trends spec (already decoded from JSON), filling the documented defaults.

    Args:
        obj: the decoded JSON object.

    Returns:
        The spec; a series' ``math`` defaults to ``total`` and its name to its event.

    Raises:
        SpecError: the spec is invalid; the message names the field path.

    Example:
        >>> spec = parse_trends_spec({"series": [{"event": "paid", "math": "sum",
        ...                                       "property": "revenue"}],
        ...                           "to": "2026-01-10", "intervals": 7})
        >>> spec.series[0].name, spec.periods.interval, spec.periods.date_to
        ('paid', 'day', datetime.datetime(2026, 1, 10, 23, 59, 59, 999999))
        >>> parse_trends_spec({"series": [{"event": "a", "math": "wau", "property": "p"}],
        ...                    "to": "2026-01-10", "intervals": 7})
        Traceback (most recent call last):
        ...
        safar.analytics.spec.SpecError: series[0].property: only applies to math avg, max, \
median, min, sum, not wau
    """
    obj = expect_object(obj, "spec", _PERIOD_KEYS | {"series", "where", "breakdown"})
    raw_series = obj.get("series")
    if not isinstance(raw_series, list) or not raw_series:
        raise SpecError("series", "must be a non-empty list of series")
    series = tuple(_series(raw, f"series[{i}]") for i, raw in enumerate(raw_series))
    breakdown = None
    if obj.get("breakdown") is not None:
        raw = expect_object(obj["breakdown"], "breakdown", {"property", "scope"})
        breakdown = TrendsBreakdown(
            expect_text(raw.get("property"), "breakdown.property"),
            expect_choice(raw.get("scope", "event"), "breakdown.scope", SCOPES),
        )
    return TrendsSpec(series, _periods(obj), parse_filters(obj.get("where"), "where"), breakdown)


def parse_lifecycle_spec(obj: Any) -> LifecycleSpec:
    """Parse a lifecycle spec (already decoded from JSON).

    Raises:
        SpecError: the spec is invalid; the message names the field path.

    Example:
        >>> spec = parse_lifecycle_spec({"event": None, "interval": "week", "from": "2026-01-01",
        ...                              "to": "2026-01-31", "week_start": "monday"})
        >>> spec.event, spec.periods.interval, spec.periods.week_start
        (None, 'week', 'monday')
    """
    obj = expect_object(obj, "spec", _PERIOD_KEYS | {"event", "where"})
    event = _event(obj, "event")
    return LifecycleSpec(event, _periods(obj), parse_filters(obj.get("where"), "where"))


def parse_stickiness_spec(obj: Any) -> StickinessSpec:
    """Parse a stickiness spec (already decoded from JSON).

    Raises:
        SpecError: the spec is invalid; the message names the field path.

    Example:
        >>> parse_stickiness_spec({"event": "a", "to": "2026-01-07"})
        Traceback (most recent call last):
        ...
        safar.analytics.spec.SpecError: from: is required (or give intervals)
    """
    obj = expect_object(obj, "spec", _PERIOD_KEYS | {"event", "where"})
    event = _event(obj, "event")
    return StickinessSpec(event, _periods(obj), parse_filters(obj.get("where"), "where"))
