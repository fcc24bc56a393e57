"""Reporting periods: what a page shows before anyone picks dates, and what a pick means."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

DEFAULT_DAYS = 30


def default_period(first: date, last: date, days: int = DEFAULT_DAYS) -> tuple[date, date]:
    """The last ``days`` days with data, clipped to the first day with data.

    Example:
        >>> default_period(date(2026, 1, 1), date(2026, 3, 31))
        (datetime.date(2026, 3, 2), datetime.date(2026, 3, 31))
        >>> default_period(date(2026, 3, 20), date(2026, 3, 31))
        (datetime.date(2026, 3, 20), datetime.date(2026, 3, 31))
    """
    return max(first, last - timedelta(days=days - 1)), last


def picked_period(picked: date | Sequence[date], fallback: tuple[date, date]) -> tuple[date, date]:
    """A ``st.date_input`` range as ``(start, end)``.

    While a person is picking, the widget holds one date (the start) or none; the period is then
    that single day, or ``fallback``.

    Example:
        >>> fallback = (date(2026, 1, 1), date(2026, 1, 31))
        >>> picked_period((date(2026, 1, 5), date(2026, 1, 9)), fallback)
        (datetime.date(2026, 1, 5), datetime.date(2026, 1, 9))
        >>> picked_period((date(2026, 1, 5),), fallback)
        (datetime.date(2026, 1, 5), datetime.date(2026, 1, 5))
        >>> picked_period((), fallback) == fallback
        True
    """
    dates = [picked] if isinstance(picked, date) else list(picked)
    if not dates:
        return fallback
    return dates[0], dates[-1]
