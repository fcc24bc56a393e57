"""The one protocol every channel's sender speaks, and the types that cross it.

The dispatcher (``safar.delivery``) hands a sender an :class:`Envelope` — one rendered message
to one address — and gets an :class:`Outcome` back. A sender never raises for what a provider
or the network did: a refused connection, a timeout or a 503 is ``retry``; a permanent refusal
is ``failed`` or ``bounced``. Whether and when to try again is the dispatcher's decision, kept
durably in the outbox, so a retry survives a crash.

``delivery_id`` is deterministic and unique per delivery; a sender passes it to the provider as
the idempotency key wherever the provider takes one (``Idempotency-Key``, Kavenegar's
``localid``, ``apns-id``, the email ``Message-ID``), so a message re-sent after a crash is not
delivered twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol, runtime_checkable

Status = Literal["sent", "delivered", "retry", "failed", "bounced"]
"""``sent``: the provider accepted it; ``delivered``: the provider says it reached the device or
mailbox already; ``retry``: a temporary failure; ``failed``: a permanent one; ``bounced``: the
address is gone (a hard bounce, an invalid token, an expired subscription)."""

CHANNELS = ("email", "sms", "push", "web_push", "webhook", "in_app")


@dataclass(frozen=True)
class Envelope:
    """One rendered message to one address.

    Attributes:
        delivery_id: the deterministic id of this delivery; the provider's idempotency key.
        channel: one of :data:`CHANNELS`.
        to: the address: an email address, a phone number (E.164), a device token, a web
            push subscription as JSON, a URL, or a person id (in-app).
        content: the rendered, channel-specific content (``subject``/``text``/``html`` for
            email, ``text`` for SMS, ``title``/``body``/``layout``/… for push, ``method``/
            ``headers``/``body`` for webhooks).
        person_id: whom it is for.
        campaign_id: the campaign that sent it, if any.
        journey_id: the journey that sent it, if any.
        ttl_seconds: how long a push or web push provider may keep it for an offline device.
    """

    delivery_id: str
    channel: str
    to: str
    content: Mapping[str, Any]
    person_id: str = ""
    campaign_id: str | None = None
    journey_id: str | None = None
    ttl_seconds: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What the provider said about one envelope.

    Attributes:
        status: see :data:`Status`.
        provider: the provider's name (``smtp``, ``kavenegar``, ``fcm``, …).
        detail: a human-readable reason, with the provider's own words where it gave any.
        provider_message_id: the provider's id for the message, to match later status reports.
        retry_after: seconds the provider asked to wait (``Retry-After``), for ``retry``.
        address_dead: the address will never work again (hard bounce, unregistered token,
            expired subscription); the person is no longer reachable there.
        response: what the provider answered (status code, headers, body), kept for later
            journey steps (webhooks).
    """

    status: Status
    provider: str
    detail: str = ""
    provider_message_id: str | None = None
    retry_after: float | None = None
    address_dead: bool = False
    response: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StatusReport:
    """A later word from a provider about a sent message (a delivery callback or a poll)."""

    provider: str
    provider_message_id: str
    status: Literal["delivered", "failed", "bounced"]
    at: datetime
    detail: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Sender(Protocol):
    """Sends envelopes of one channel through one provider.

    Senders are asynchronous so one process keeps many requests in flight (HTTP keep-alive or
    HTTP/2 streams, a pool of SMTP connections); ``send`` may be called concurrently.
    """

    channel: str
    provider: str

    async def send(self, envelope: Envelope) -> Outcome:
        """Send one envelope; never raises for provider or network failures."""
        ...

    async def aclose(self) -> None:
        """Close connections; the sender is not used afterwards."""
        ...


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date.

    Args:
        value: the header's value, if any.
        now: the current time for HTTP-dates; the clock when ``None``.

    Returns:
        Seconds (0 for a date already past), or ``None`` when absent or unreadable.

    Example:
        >>> parse_retry_after("120")
        120.0
        >>> now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
        >>> parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now)
        120.0
        >>> parse_retry_after("soon") is None
        True
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
