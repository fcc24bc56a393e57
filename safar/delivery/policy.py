"""Delivery policies: whether a message goes now, waits, or is dropped, and why.

The policies run in this order, and the first that holds a message back decides:

1. **subscription** — a marketing message in a category the person unsubscribed from (or all
   marketing, ``*``) is dropped;
2. **reachability** — a person not reachable on the channel (no consent, no address, dead
   token) is dropped;
3. **DND** — inside the do-not-disturb window, in the person's time zone (else the
   workspace's), the message waits for the window's end, or is dropped if so configured;
4. **frequency caps** — N per day / week / month per channel or over all channels, counted in
   the person's calendar, drop the message; a minimum gap since the last message makes it wait;
5. **throttling** — without a token of the channel's bucket the message waits for the next;
6. **queue TTL** — a message past its ``expires_at``, or that could only go after it, is
   dropped.

Transactional messages (category ``transactional``) skip subscription, DND and caps, and do
not count towards caps. Every drop becomes a ``Message Dropped`` event with the reason.
All times are aware UTC datetimes; the person's zone only decides local windows and periods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from safar.delivery.throttle import Throttle

TRANSACTIONAL = "transactional"
ALL_MARKETING = "*"

Action = Literal["send", "queue", "drop"]
Period = Literal["day", "week", "month"]


@dataclass(frozen=True)
class Message:
    """A delivery about to be sent."""

    delivery_id: str
    person_id: str
    channel: str
    category: str
    expires_at: datetime | None = None

    @property
    def transactional(self) -> bool:
        return self.category == TRANSACTIONAL


@dataclass(frozen=True)
class Recipient:
    """What the policies need to know about the person."""

    person_id: str
    reachable: frozenset[str]
    unsubscribed: frozenset[str] = frozenset()
    time_zone: str | None = None


@dataclass(frozen=True)
class Sent:
    """An earlier message to the person, as the frequency-cap ledger keeps it."""

    channel: str
    at: datetime
    transactional: bool = False


@dataclass(frozen=True)
class DndWindow:
    """Quiet hours, local time; ``start > end`` spans midnight (22:00–08:00)."""

    start: time
    end: time
    action: Literal["queue", "drop"] = "queue"

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True)
class Cap:
    """At most ``count`` messages per calendar ``period``, on ``channel`` (``None``: all)."""

    count: int
    period: Period
    channel: str | None = None


@dataclass(frozen=True)
class MinGap:
    """At least ``gap`` between two messages on ``channel`` (``None``: any channel)."""

    gap: timedelta
    channel: str | None = None


@dataclass(frozen=True)
class PolicySettings:
    """The workspace's delivery settings."""

    time_zone: str = "Asia/Tehran"
    dnd: DndWindow | None = None
    caps: tuple[Cap, ...] = ()
    min_gaps: tuple[MinGap, ...] = ()
    # 0 = Monday … 5 = Saturday (the Iranian week), 6 = Sunday.
    week_starts_on: int = 5


@dataclass(frozen=True)
class Decision:
    """What to do with a message now; ``policy`` names the rule that decided."""

    action: Action
    policy: str
    reason: str
    not_before: datetime | None = None


SEND = Decision("send", "none", "every policy passed")


def decide(
    message: Message,
    recipient: Recipient,
    settings: PolicySettings,
    history: Sequence[Sent],
    throttle: Throttle,
    now: datetime,
) -> Decision:
    """Run the policies in order on one message at ``now``; see the module doc.

    A token of the throttle is taken only when the decision is to send.
    """
    zone = person_zone(recipient.time_zone, settings.time_zone)
    held = (
        _subscription(message, recipient)
        or _reachability(message, recipient)
        or _dnd(message, settings, zone, now)
        or _caps(message, settings, history, zone, now)
    )
    if held is not None:
        return _within_ttl(message, held, now)
    expired = _within_ttl(message, SEND, now)
    if expired is not SEND:
        return expired
    next_token = throttle.take(message.channel, now)
    if next_token is not None:
        waiting = Decision(
            "queue",
            "throttle",
            f"{message.channel} is throttled; next slot {next_token:%H:%M:%S} UTC",
            next_token,
        )
        return _within_ttl(message, waiting, now)
    return SEND


def person_zone(person: str | None, workspace: str) -> ZoneInfo:
    """The person's time zone, or the workspace's when theirs is missing or not a zone name.

    A zone comes from SDK context (``Asia/Tehran``); a wrong one must not stop the message.

    Example:
        >>> person_zone("Europe/Berlin", "Asia/Tehran").key
        'Europe/Berlin'
        >>> person_zone("GMT+3:30 Tehran", "Asia/Tehran").key, person_zone(None, "UTC").key
        ('Asia/Tehran', 'UTC')
    """
    if person:
        try:
            return ZoneInfo(person)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(workspace)


def _subscription(message: Message, recipient: Recipient) -> Decision | None:
    if message.transactional:
        return None
    if ALL_MARKETING in recipient.unsubscribed:
        return Decision("drop", "subscription", "unsubscribed from all marketing messages")
    if message.category in recipient.unsubscribed:
        return Decision("drop", "subscription", f"unsubscribed from {message.category!r}")
    return None


def _reachability(message: Message, recipient: Recipient) -> Decision | None:
    if message.channel in recipient.reachable:
        return None
    return Decision("drop", "reachability", f"not reachable on {message.channel}")


def _dnd(
    message: Message, settings: PolicySettings, zone: ZoneInfo, now: datetime
) -> Decision | None:
    window = settings.dnd
    if message.transactional or window is None:
        return None
    local = now.astimezone(zone)
    if not window.contains(local.time()):
        return None
    span = f"{window.start:%H:%M}–{window.end:%H:%M} {zone.key}"
    if window.action == "drop":
        return Decision("drop", "dnd", f"inside the do-not-disturb window {span}")
    end_day = local.date() if local.time() < window.end else local.date() + timedelta(days=1)
    ends = datetime.combine(end_day, window.end, tzinfo=zone).astimezone(UTC)
    return Decision("queue", "dnd", f"inside the do-not-disturb window {span}", ends)


def period_start(local: datetime, period: Period, week_starts_on: int) -> date:
    """The first local day of the calendar ``period`` that ``local`` falls in.

    Example:
        >>> friday = datetime(2026, 1, 9, 23, 30)  # a Friday
        >>> period_start(friday, "week", 5), period_start(friday, "week", 0)
        (datetime.date(2026, 1, 3), datetime.date(2026, 1, 5))
        >>> period_start(friday, "month", 5), period_start(friday, "day", 5)
        (datetime.date(2026, 1, 1), datetime.date(2026, 1, 9))
    """
    day = local.date()
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=(day.weekday() - week_starts_on) % 7)
    return day.replace(day=1)


def _caps(
    message: Message,
    settings: PolicySettings,
    history: Sequence[Sent],
    zone: ZoneInfo,
    now: datetime,
) -> Decision | None:
    if message.transactional:
        return None
    counted = [s for s in history if not s.transactional]
    local_now = now.astimezone(zone)
    for cap in settings.caps:
        if cap.channel not in (None, message.channel):
            continue
        start = period_start(local_now, cap.period, settings.week_starts_on)
        used = sum(
            1
            for s in counted
            if (cap.channel is None or s.channel == cap.channel)
            and start <= s.at.astimezone(zone).date() <= local_now.date()
        )
        if used >= cap.count:
            scope = cap.channel or "all channels"
            return Decision(
                "drop", "frequency_cap", f"{cap.count} per {cap.period} on {scope} already sent"
            )
    for rule in settings.min_gaps:
        if rule.channel not in (None, message.channel):
            continue
        times = [s.at for s in counted if rule.channel is None or s.channel == rule.channel]
        if times and now < max(times) + rule.gap:
            ready = max(times) + rule.gap
            scope = rule.channel or "any channel"
            return Decision(
                "queue", "min_gap", f"less than {rule.gap} since the last message on {scope}", ready
            )
    return None


def _within_ttl(message: Message, decision: Decision, now: datetime) -> Decision:
    """The queue TTL, applied last: a message that is or would be stale is dropped."""
    expires = message.expires_at
    if expires is None or decision.action == "drop":
        return decision
    if now >= expires:
        return Decision("drop", "ttl", f"expired at {expires:%Y-%m-%d %H:%M:%S} UTC")
    if decision.action == "queue" and decision.not_before and decision.not_before >= expires:
        return Decision(
            "drop",
            "ttl",
            f"would expire at {expires:%Y-%m-%d %H:%M:%S} UTC before it could go"
            f" ({decision.policy}: {decision.reason})",
        )
    return decision
