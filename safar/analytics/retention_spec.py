"""Retention specs: the JSON a user writes, parsed into frozen dataclasses or a clear error.

Shares its building blocks with :mod:`safar.analytics.spec` (filters, dates, time zones and
:class:`~safar.analytics.spec.SpecError` with field paths), so the two specs behave alike.

Periods: the last period is the one containing ``to``; the first is ``intervals - 1`` periods
earlier, or, when ``from`` is given instead of ``intervals``, the one containing ``from``.
Periods are wall-clock periods in ``timezone``; weeks start on ``week_start``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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

PERIODS = ("hour", "day", "week", "month")
TYPES = ("recurring", "first_time")
WEEK_STARTS = ("sunday", "monday")


@dataclass(frozen=True)
class Entity:
    """The target or returning event; ``event`` None matches any behavioural event."""

    event: str | None
    where: tuple[Filter, ...] = ()


@dataclass(frozen=True)
class RetentionBreakdown:
    """Split the cohorts by a property (person: latest traits; event: the cohort entry event)."""

    property: str
    scope: str = "person"


@dataclass(frozen=True)
class RetentionSpec:
    """A parsed retention spec; ``date_from``/``date_to`` are naive UTC instants."""

    target: Entity
    returning: Entity
    date_to: datetime
    period: str = "day"
    intervals: int = 11
    type: str = "recurring"
    cumulative: bool = False
    min_occurrences: int = 1
    date_from: datetime | None = None
    week_start: str = "sunday"
    timezone: str = "UTC"
    where: tuple[Filter, ...] = ()
    breakdown: RetentionBreakdown | None = None


def _entity(value: Any, path: str) -> Entity:
    raw = expect_object(value, path, {"event", "where"})
    if "event" not in raw:
        raise SpecError(f"{path}.event", "is required (null means any event)")
    event = expect_text(raw["event"], f"{path}.event", nullable=True)
    return Entity(event, parse_filters(raw.get("where"), f"{path}.where"))


def _positive(value: Any, path: str) -> int:
    if type(value) is not int or value < 1:
        raise SpecError(path, "must be an integer >= 1")
    return value


def parse_retention_spec(obj: Any) -> RetentionSpec:
    """Parse a retention spec (already decoded from JSON), filling the documented defaults.

    Args:
        obj: the decoded JSON object.

    Returns:
        The spec; ``returning`` defaults to the target.

    Raises:
        SpecError: the spec is invalid; the message names the field path.

    Example:
        >>> spec = parse_retention_spec({"target": {"event": "signed up"}, "to": "2026-01-10"})
        >>> spec.period, spec.intervals, spec.returning.event, spec.date_to
        ('day', 11, 'signed up', datetime.datetime(2026, 1, 10, 23, 59, 59, 999999))
        >>> parse_retention_spec({"target": {"event": "a"}, "to": "2026-01-10", "intervals": 0})
        Traceback (most recent call last):
        ...
        safar.analytics.spec.SpecError: intervals: must be an integer >= 1
    """
    keys = {"target", "returning", "period", "intervals", "type", "cumulative"}
    keys |= {"min_occurrences", "to", "from", "week_start", "timezone", "where", "breakdown"}
    obj = expect_object(obj, "spec", keys)
    if "target" not in obj:
        raise SpecError("target", "is required")
    target = _entity(obj["target"], "target")
    returning = _entity(obj["returning"], "returning") if "returning" in obj else target

    period = expect_choice(obj.get("period", "day"), "period", PERIODS)
    intervals = _positive(obj.get("intervals", 11), "intervals")
    kind = expect_choice(obj.get("type", "recurring"), "type", TYPES)
    cumulative = obj.get("cumulative", False)
    if type(cumulative) is not bool:
        raise SpecError("cumulative", "must be true or false")
    min_occurrences = _positive(obj.get("min_occurrences", 1), "min_occurrences")
    week_start = expect_choice(obj.get("week_start", "sunday"), "week_start", WEEK_STARTS)

    timezone, zone = parse_timezone(obj.get("timezone", "UTC"))
    if obj.get("to") is None:
        raise SpecError("to", "is required")
    date_to = parse_instant(obj["to"], "to", zone, end_of_day=True)
    date_from = parse_instant(obj.get("from"), "from", zone, end_of_day=False)
    if date_from is not None:
        if "intervals" in obj:
            raise SpecError("intervals", "give either from or intervals, not both")
        if date_from > date_to:
            raise SpecError("to", "must not be before from")

    breakdown = None
    if obj.get("breakdown") is not None:
        raw = expect_object(obj["breakdown"], "breakdown", {"property", "scope"})
        breakdown = RetentionBreakdown(
            expect_text(raw.get("property"), "breakdown.property"),
            expect_choice(raw.get("scope", "person"), "breakdown.scope", SCOPES),
        )

    return RetentionSpec(
        target=target,
        returning=returning,
        date_to=date_to,
        period=period,
        intervals=intervals,
        type=kind,
        cumulative=cumulative,
        min_occurrences=min_occurrences,
        date_from=date_from,
        week_start=week_start,
        timezone=timezone,
        where=parse_filters(obj.get("where"), "where"),
        breakdown=breakdown,
    )
