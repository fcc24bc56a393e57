"""Segment messages → raw landing-zone rows: the one normalisation every way in shares.

The gateway calls it per event on the request path, and bulk import can call it per line, so
it is pure (no I/O, no clock: the caller passes ``received_at``) and cheap (plain dict work,
no validation library). It checks exactly the rules that ``safar.lake`` enforces in SQL, so a
row it returns is never rejected later, and names the sender's own fields in its reasons.

What it does to a message (Segment's Tracking API semantics):

- ``messageId`` is kept, or a UUID4 is made up when missing; ids may be strings or integers.
- ``timestamp`` (or ``originalTimestamp``) is the device clock; it is kept as
  ``original_timestamp`` and corrected for device clock skew with Segment's formula
  ``timestamp = received_at - (sent_at - original_timestamp)``; without ``sentAt`` it is used
  as is, without a timestamp ``received_at`` is used.
- **Future and ancient timestamps.** A corrected timestamp after ``received_at`` is clamped to
  ``received_at`` (an event cannot happen after it arrived; ``original_timestamp`` keeps what
  the device said). One before :data:`OLDEST_TIMESTAMP` (2000-01-01) is rejected: such values
  come from devices whose clock was reset and that sent no ``sentAt`` to correct it, and they
  would land in cohorts and retention charts decades before the product existed.
- ``context.ip`` is kept when the sender set it (server-side SDKs forward the end user's IP),
  else it is the request's IP; the extracted ``context_*`` columns are copied out of context.
- ``traits`` (identify, group) fall back to ``context.traits``; ``name`` is the ``event`` of
  ``page`` and ``screen`` calls; ``category`` of a page goes into its properties.

All timestamps are naive UTC ``datetime`` values, as the contract wants.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from safar.contract import MESSAGE_TYPES

OLDEST_TIMESTAMP = datetime(2000, 1, 1)
"""Corrected timestamps before this are rejected (see the module docstring)."""

MAX_EVENT_BYTES = 32 * 1024
"""The largest message accepted (Segment's limit), measured on its stored JSON payloads."""

Row = dict[str, Any]

_TYPES = frozenset(MESSAGE_TYPES)
_EMPTY: Mapping[str, Any] = {}


class _Reject(ValueError):
    """Why a message is rejected; :func:`normalize_message` returns it as text."""


def _id(message: Mapping[str, Any], key: str) -> str | None:
    value = message.get(key)
    if value is None or value == "":
        return None
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise _Reject(f"{key} must be a string")


def _text(value: Any) -> str | None:
    """A context value as text for its extracted column; objects and booleans are not text."""
    if type(value) is str:
        return value or None
    if type(value) in (int, float):
        return str(value)
    return None


def _object(message: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = message.get(key)
    if value is None or type(value) is dict:
        return value
    raise _Reject(f"{key} must be a JSON object")


def _json(value: dict[str, Any] | None, key: str) -> bytes | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:  # nesting deeper than orjson writes (254 levels)
        raise _Reject(f"{key} cannot be stored: {exc}") from None


def parse_timestamp(value: Any, key: str = "timestamp") -> datetime | None:
    """An ISO-8601 date-time as naive UTC; a value without an offset is taken as UTC.

    Raises:
        ValueError: ``value`` is not a string holding an ISO-8601 date-time.

    Example:
        >>> parse_timestamp("2026-01-15T13:00:00.250+03:30")
        datetime.datetime(2026, 1, 15, 9, 30, 0, 250000)
        >>> parse_timestamp("2026-01-15T09:30:00Z")
        datetime.datetime(2026, 1, 15, 9, 30)
        >>> parse_timestamp(None) is None
        True
    """
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise _Reject(f"{key} must be an ISO-8601 date-time string")
    # SDKs almost always send UTC; stripping its suffix skips a costly time zone conversion.
    text = value
    if text.endswith("Z"):
        text = text[:-1]
    elif text.endswith("+00:00"):
        text = text[:-6]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _Reject(f"{key} is not an ISO-8601 date-time: {value[:40]!r}") from None
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise _Reject(f"{key} is out of range: {value[:40]!r}") from None
    return parsed


def corrected_timestamp(
    received_at: datetime, sent_at: datetime | None, original: datetime | None
) -> datetime:
    """Segment's clock-skew correction, clamped so nothing happens after it arrived.

    Raises:
        ValueError: the correction leaves the representable range (absurd ``sentAt``).

    Example:
        >>> received = datetime(2026, 1, 15, 12, 0, 0)
        >>> # The device clock is 1 h fast: it sent at 13:00:05 an event made at 13:00:00.
        >>> corrected_timestamp(received, datetime(2026, 1, 15, 13, 0, 5),
        ...                     datetime(2026, 1, 15, 13, 0, 0))
        datetime.datetime(2026, 1, 15, 11, 59, 55)
        >>> corrected_timestamp(received, None, datetime(2030, 1, 1))  # future: clamped
        datetime.datetime(2026, 1, 15, 12, 0)
    """
    if original is None:
        return received_at
    if sent_at is None:
        timestamp = original
    else:
        try:
            timestamp = received_at - (sent_at - original)
        except OverflowError:
            raise _Reject("timestamp is out of range after correction with sentAt") from None
    return min(timestamp, received_at)


def _normalize(
    message: Any,
    received_at: datetime,
    source_id: str | None,
    ip: str | None,
    message_type: str | None,
    sent_at: datetime | None,
    defaults: Mapping[str, Any],
    max_bytes: int | None,
) -> Row:
    if type(message) is not dict:
        raise _Reject("event is not a JSON object")
    kind = message.get("type")
    if message_type is not None:
        if kind is not None and kind != message_type:
            raise _Reject(f"type {str(kind)[:40]!r} sent to the {message_type} endpoint")
        kind = message_type
    if kind is None:
        raise _Reject("missing type")
    if type(kind) is not str or kind not in _TYPES:
        raise _Reject(f"unknown type {str(kind)[:40]!r}")

    user_id = _id(message, "userId")
    anonymous_id = _id(message, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise _Reject("missing userId and anonymousId")
    message_id = _id(message, "messageId") or str(uuid.uuid4())

    context = _object(message, "context")
    batch_context = defaults.get("context")
    if batch_context:
        # Batch-level context fills in what the message's own context leaves out.
        context = {**batch_context, **context} if context else dict(batch_context)
    properties = _object(message, "properties")
    traits = None
    event = None
    previous_id = None
    group_id = None
    if kind == "track":
        event = message.get("event")
        if event is None or event == "":
            raise _Reject("track without event name")
        if type(event) is not str:
            raise _Reject("event must be a string")
    elif kind == "page" or kind == "screen":
        event = message.get("name")
        if type(event) is not str:
            if event is not None:
                raise _Reject("name must be a string")
        elif not event:
            event = None
        category = message.get("category")
        if category is not None and (properties is None or "category" not in properties):
            properties = {**(properties or {}), "category": category}
    elif kind == "identify" or kind == "group":
        traits = _object(message, "traits")
        if traits is None and context is not None and type(context.get("traits")) is dict:
            traits = context["traits"]
        if kind == "identify" and user_id is None and traits is None:
            raise _Reject("identify without userId or traits")
        if kind == "group":
            group_id = _id(message, "groupId")
            if group_id is None:
                raise _Reject("group without groupId")
    else:  # alias
        previous_id = _id(message, "previousId")
        if previous_id is None or user_id is None:
            raise _Reject("alias without previousId and userId")

    raw_original = message.get("timestamp")
    if raw_original is None:
        raw_original = message.get("originalTimestamp")
    original = parse_timestamp(raw_original, "timestamp")
    raw_sent = message.get("sentAt")
    sent = sent_at if raw_sent is None else parse_timestamp(raw_sent, "sentAt")
    timestamp = corrected_timestamp(received_at, sent, original)
    if timestamp < OLDEST_TIMESTAMP:
        raise _Reject(f"timestamp before {OLDEST_TIMESTAMP:%Y-%m-%d}: {timestamp.isoformat()}")

    ctx = context or _EMPTY
    context_ip = _text(ctx.get("ip"))
    if context_ip is None and ip:
        context_ip = ip
        context = {**ctx, "ip": ip}
    properties_json = _json(properties, "properties")
    traits_json = _json(traits, "traits")
    context_json = _json(context, "context")
    if max_bytes is not None:
        # The payloads are nearly all of a message; measuring what is stored costs nothing
        # more, where serialising each message again only to measure it would.
        size = len(properties_json or b"") + len(traits_json or b"") + len(context_json or b"")
        if size > max_bytes:
            raise _Reject(f"event larger than {max_bytes // 1024} KB")
    device = ctx.get("device")
    device = device if type(device) is dict else _EMPTY
    os_ = ctx.get("os")
    app = ctx.get("app")
    page = ctx.get("page")
    page_url = _text(page.get("url")) if type(page) is dict else None
    if page_url is None and kind == "page" and properties is not None:
        page_url = _text(properties.get("url"))

    return {
        "message_id": message_id,
        "type": kind,
        "event": event,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "previous_id": previous_id,
        "group_id": group_id,
        "timestamp": timestamp,
        "original_timestamp": original,
        "sent_at": sent,
        "received_at": received_at,
        "properties": properties_json.decode() if properties_json is not None else None,
        "traits": traits_json.decode() if traits_json is not None else None,
        "context": context_json.decode() if context_json is not None else None,
        "source_id": source_id,
        "context_device_id": _text(device.get("id")),
        "context_device_type": _text(device.get("type")),
        "context_device_model": _text(device.get("model")),
        "context_device_token": _text(device.get("token")),
        "context_os_name": _text(os_.get("name")) if type(os_) is dict else None,
        "context_app_version": _text(app.get("version")) if type(app) is dict else None,
        "context_timezone": _text(ctx.get("timezone")),
        "context_locale": _text(ctx.get("locale")),
        "context_ip": context_ip,
        "context_page_url": page_url,
    }


def normalize_message(
    message: Any,
    *,
    received_at: datetime,
    source_id: str | None,
    ip: str | None,
    message_type: str | None = None,
    sent_at: str | None = None,
    max_event_bytes: int | None = None,
) -> Row | str:
    """One parsed Segment message as a raw row, or the reason it is rejected.

    Args:
        message: the message as parsed from JSON (anything: it is checked).
        received_at: when the gateway received it, naive UTC.
        source_id: the sending source (from its write key), stored on the row.
        ip: the request's client IP, used when the message has no ``context.ip``.
        message_type: the type the endpoint implies (``/v1/track`` → ``track``); a message
            of another type is rejected. None: the message's own ``type`` decides.
        sent_at: the batch's ``sentAt``, used when the message has none.
        max_event_bytes: reject a message whose stored JSON (properties, traits and context)
            is larger than this; None: no limit.

    Returns:
        A dict with exactly the keys of ``safar.contract.RAW_COLUMNS``, or a reason (str).

    Example:
        >>> received = datetime(2026, 1, 15, 9, 30)
        >>> row = normalize_message(
        ...     {"type": "track", "event": "Product Viewed", "userId": 42,
        ...      "messageId": "m-1", "properties": {"name": "گلیم"},
        ...      "context": {"device": {"type": "ios", "token": "ab12"}, "locale": "fa-IR"},
        ...      "timestamp": "2026-01-15T13:00:00+03:30", "sentAt": "2026-01-15T09:30:05Z"},
        ...     received_at=received, source_id="src_ios", ip="203.0.113.9")
        >>> row["user_id"], row["event"], row["timestamp"], row["context_device_token"]
        ('42', 'Product Viewed', datetime.datetime(2026, 1, 15, 9, 29, 55), 'ab12')
        >>> row["properties"], row["context_ip"]
        ('{"name":"گلیم"}', '203.0.113.9')
        >>> normalize_message({"type": "track", "event": "x"}, received_at=received,
        ...                   source_id=None, ip=None)
        'missing userId and anonymousId'
    """
    try:
        sent = parse_timestamp(sent_at, "sentAt")
        return _normalize(
            message, received_at, source_id, ip, message_type, sent, _EMPTY, max_event_bytes
        )
    except _Reject as reason:
        return str(reason)


def normalize_batch(
    messages: Sequence[Any],
    *,
    received_at: datetime,
    source_id: str | None,
    ip: str | None,
    sent_at: str | None = None,
    context: Mapping[str, Any] | None = None,
    max_event_bytes: int | None = None,
) -> tuple[list[Row], list[tuple[int, str]]]:
    """A batch's messages as raw rows, and the (index, reason) of each one rejected.

    Args:
        messages: the ``batch`` array of a batch request.
        received_at, source_id, ip: as for :func:`normalize_message`.
        sent_at: the batch's ``sentAt`` (Segment's Python SDK sets it only here).
        context: the batch's ``context``; a message's own context keys win over it.
        max_event_bytes: as for :func:`normalize_message`.

    Example:
        >>> rows, rejected = normalize_batch(
        ...     [{"type": "identify", "userId": "u1", "traits": {"city": "Tabriz"}},
        ...      {"type": "alias", "userId": "u1"}],
        ...     received_at=datetime(2026, 1, 15), source_id="src_web", ip=None)
        >>> [r["traits"] for r in rows], rejected
        (['{"city":"Tabriz"}'], [(1, 'alias without previousId and userId')])
    """
    defaults: Mapping[str, Any] = {"context": context} if context else _EMPTY
    rows: list[Row] = []
    rejected: list[tuple[int, str]] = []
    try:
        sent = parse_timestamp(sent_at, "sentAt")
    except _Reject as reason:
        return rows, [(index, str(reason)) for index in range(len(messages))]
    for index, message in enumerate(messages):
        try:
            rows.append(
                _normalize(
                    message, received_at, source_id, ip, None, sent, defaults, max_event_bytes
                )
            )
        except _Reject as reason:
            rejected.append((index, str(reason)))
    return rows, rejected
