"""Delivery events: every state change of a delivery, written back as a Segment ``track`` call.

Events are first stored in the app DB's ``delivery_events`` table in the same transaction as
the outbox change that causes them (a transactional outbox for events), then
:func:`publish_events` hands them to a sink and marks them published. A crash between the two
re-publishes them; each event's ``messageId`` is derived from the delivery and the event, so
the warehouse's de-duplication on ``message_id`` keeps one.

Properties of every event: ``delivery_id``, ``channel``, ``category``, ``campaign_id``,
``journey_id`` (where they apply), ``attempt``; ``provider`` once a provider was involved;
``reason`` and ``policy`` on ``Message Dropped``; ``detail`` on failures and bounces.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import sqlalchemy as sa

from safar.appdb.engine import dialect_insert
from safar.appdb.schema import delivery_events
from safar.config import SafarHome
from safar.contract import RAW_SCHEMA
from safar.lake import LakeWriter
from safar.messages import normalize_batch

if TYPE_CHECKING:
    from safar.delivery.outbox import Claimed

SOURCE_ID = "safar-delivery"
LIBRARY = {"name": "safar-delivery"}
_NAMESPACE = uuid.UUID("6f1d8c2e-5a0b-4d83-9c41-2b7e0f3a9d55")


@dataclass(frozen=True)
class EventRow:
    """One delivery event, ready to store: its id, name and the Segment message."""

    message_id: str
    delivery_id: str
    event: str
    message: dict[str, Any]


def event_message_id(delivery: str, event: str, occurrence: str = "") -> str:
    """The deterministic ``messageId`` of a delivery event.

    ``occurrence`` tells repeatable events apart (each open or click of one message).

    Example:
        >>> a = event_message_id("d_1", "Message Sent")
        >>> a == event_message_id("d_1", "Message Sent")
        True
        >>> a == event_message_id("d_1", "Message Queued")
        False
    """
    return str(uuid.uuid5(_NAMESPACE, f"{delivery}\x1f{event}\x1f{occurrence}"))


def delivery_event(
    event: str,
    delivery: Claimed,
    now: datetime,
    *,
    occurrence: str = "",
    properties: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
) -> EventRow:
    """The ``event`` of ``delivery`` at ``now`` (naive UTC), addressed to the person."""
    props: dict[str, Any] = {
        "delivery_id": delivery.delivery_id,
        "channel": delivery.channel,
        "category": delivery.category,
        "attempt": delivery.attempts,
    }
    if delivery.campaign_id:
        props["campaign_id"] = delivery.campaign_id
    if delivery.journey_id:
        props["journey_id"] = delivery.journey_id
    props.update(properties or {})
    message_id = event_message_id(delivery.delivery_id, event, occurrence)
    message: dict[str, Any] = {
        "type": "track",
        "event": event,
        "messageId": message_id,
        "timestamp": now.isoformat() + "Z",
        "properties": props,
        "context": {"library": LIBRARY, **(context or {})},
    }
    if delivery.user_id:
        message["userId"] = delivery.user_id
    else:
        message["anonymousId"] = delivery.person_id
    return EventRow(message_id, delivery.delivery_id, event, message)


def insert_events(con: sa.Connection, events: Sequence[EventRow]) -> None:
    """Store events in the caller's transaction; an event already stored is kept as it was."""
    if not events:
        return
    rows = [
        {
            "message_id": e.message_id,
            "delivery_id": e.delivery_id,
            "event": e.event,
            "message": json.dumps(e.message, ensure_ascii=False),
            "created_at": _naive(e.message["timestamp"]),
        }
        for e in events
    ]
    con.execute(dialect_insert(con)(delivery_events).on_conflict_do_nothing(), rows)


def _naive(iso: str) -> datetime:
    return datetime.fromisoformat(iso.removesuffix("Z"))


class EventSink(Protocol):
    """Where published delivery events go."""

    def write(self, messages: Sequence[dict[str, Any]], received_at: datetime) -> None:
        """Land the messages durably, or raise."""
        ...


class LakeSink:
    """Lands events in the raw landing zone through the gateway's own normalisation.

    The rows are exactly what the gateway would write for the same ``/v1/batch`` call, so
    the warehouse cannot tell the two ways in apart.
    """

    def __init__(self, home: SafarHome):
        self.writer = LakeWriter(home)

    def write(self, messages: Sequence[dict[str, Any]], received_at: datetime) -> None:
        rows, rejected = normalize_batch(
            list(messages), received_at=received_at, source_id=SOURCE_ID, ip=None
        )
        if rejected:
            index, reason = rejected[0]
            raise ValueError(f"delivery event {index} is not a valid Segment message: {reason}")
        self.writer.write(pa.Table.from_pylist(rows, schema=RAW_SCHEMA))


def unpublished(engine: sa.Engine, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` events not yet published, oldest first, as (row id, Segment message)."""
    with engine.connect() as con:
        rows = con.execute(
            sa.select(delivery_events.c.id, delivery_events.c.message)
            .where(delivery_events.c.published_at.is_(None))
            .order_by(delivery_events.c.id)
            .limit(limit)
        ).all()
    return [(row_id, json.loads(message)) for row_id, message in rows]


def mark_published(engine: sa.Engine, row_ids: Sequence[int], now: datetime) -> None:
    """Record that the events ``row_ids`` have been landed."""
    with engine.begin() as con:
        con.execute(
            sa.update(delivery_events)
            .where(delivery_events.c.id.in_(row_ids))
            .values(published_at=now)
        )


def publish_events(engine: sa.Engine, sink: EventSink, now: datetime, limit: int = 10_000) -> int:
    """Hand unpublished events to ``sink`` in the order they happened; how many were published."""
    published = 0
    while rows := unpublished(engine, limit):
        sink.write([message for _, message in rows], now)
        mark_published(engine, [row_id for row_id, _ in rows], now)
        published += len(rows)
        if len(rows) < limit:
            break
    return published
