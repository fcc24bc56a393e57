"""Time in analytics SQL: literals, wall-clock time in a zone, period starts, ISO labels.

Shared by funnels, retention and trends so every engine puts an event in the same period.
Timestamps in the analytics relations are naive UTC.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlglot import exp


def timestamp_literal(instant: datetime) -> exp.Expression:
    """A naive ``datetime`` as a DuckDB TIMESTAMP literal."""
    return exp.cast(exp.Literal.string(instant.isoformat(sep=" ")), "TIMESTAMP")


def local_time(timestamp: exp.Expression, timezone: str) -> exp.Expression:
    """A naive-UTC timestamp expression as naive wall time in ``timezone``."""
    if timezone == "UTC":  # the common case, and ICU's conversion is not free
        return timestamp
    utc = exp.func("timezone", exp.Literal.string("UTC"), timestamp)
    return exp.func("timezone", exp.Literal.string(timezone), utc)


def interval(count: int, unit: str) -> exp.Expression:
    """``INTERVAL 'count' UNIT`` (``unit`` one of hour, day, week, month)."""
    return exp.Interval(this=exp.Literal.string(str(count)), unit=exp.var(unit.upper()))


def period_start(wall: exp.Expression, unit: str, week_start: str = "monday") -> exp.Expression:
    """The start of the hour/day/week/month holding the wall time ``wall``.

    Example:
        >>> print(period_start(exp.column("t"), "week", "sunday").sql("duckdb"))
        DATE_TRUNC('WEEK', t + INTERVAL '1' DAY) - INTERVAL '1' DAY
    """
    if unit == "week" and week_start == "sunday":
        # DuckDB weeks start on Monday: shift Sunday into the next week and back.
        shifted = exp.Add(this=wall, expression=interval(1, "day"))
        start = exp.func("date_trunc", exp.Literal.string(unit), shifted)
        return exp.Sub(this=start, expression=interval(1, "day"))
    return exp.func("date_trunc", exp.Literal.string(unit), wall)


def iso_label(wall: datetime, timezone: str) -> str:
    """A period start (naive wall time) as ISO 8601 with the zone's offset at that time."""
    return wall.replace(tzinfo=ZoneInfo(timezone)).isoformat()
