"""Throttling: a token bucket per channel, so providers are fed at a steady rate.

A channel throttled to ``r`` messages per minute refills ``r / 60`` tokens a second and holds
at most one second's worth (at least one token), so a burst is smoothed out rather than sent
all at once. A message without a token is queued until the next token, not dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class _Bucket:
    per_minute: int
    tokens: float
    at: datetime

    @property
    def capacity(self) -> float:
        return float(max(1, math.ceil(self.per_minute / 60)))

    def refill(self, now: datetime) -> None:
        elapsed = max((now - self.at).total_seconds(), 0.0)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.per_minute / 60)
        self.at = max(self.at, now)


@dataclass
class Throttle:
    """Token buckets keyed by channel; channels without a limit are never held back.

    Example:
        >>> from datetime import datetime, timedelta
        >>> t0 = datetime(2026, 1, 1)
        >>> throttle = Throttle({"sms": 60})  # one a second
        >>> throttle.take("sms", t0), throttle.take("sms", t0)
        (None, datetime.datetime(2026, 1, 1, 0, 0, 1))
        >>> throttle.take("sms", t0 + timedelta(seconds=1)), throttle.take("email", t0)
        (None, None)
    """

    per_minute: dict[str, int]
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, channel: str, now: datetime) -> datetime | None:
        """Take a token for one message now; if there is none, when the next one comes.

        Returns:
            ``None`` if the message may go now (a token was taken), else the earliest time a
            token will be there (nothing was taken).
        """
        rate = self.per_minute.get(channel)
        if not rate:
            return None
        bucket = self._buckets.get(channel)
        if bucket is None:
            bucket = self._buckets[channel] = _Bucket(
                rate, float(max(1, math.ceil(rate / 60))), now
            )
        bucket.refill(now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        missing = 1.0 - bucket.tokens
        return now + timedelta(seconds=missing * 60 / rate)
