"""The outbox: one row per delivery, and the only transitions a delivery may take.

A campaign or journey step *enqueues* rendered messages; the dispatcher *claims* due rows,
sends them and *records* what the provider said. Every transition is one guarded ``UPDATE``
(``... where state = <the state it must be in>``) in the same transaction as the delivery
events it causes, so a replayed batch, a second dispatcher or a crash can never move a row
twice or lose its event.

States::

    queued ──claim──► sending ──► sent ──(provider report)──► delivered | failed | bounced
      ▲  │                │
      │  └──policy──► dropped (policy or TTL)      └──► failed | bounced (provider refused)
      └─ retry / DND / min gap / throttle (with a later ``not_before``)

Exactly once: ``delivery_id`` is deterministic (the same step for the same person always makes
the same id) and the primary key, so enqueueing twice queues once. A row is ``sending`` from
the moment it is claimed until its outcome is recorded. After a crash, rows left ``sending``
are *in doubt* — the provider may or may not have them — and :func:`recover` puts them back in
the queue marked ``in_doubt``; they are re-sent with the same ``delivery_id`` as the provider's
idempotency key, so a provider that honours it (webhooks' ``Idempotency-Key``, Kavenegar's
``localid``, the email ``Message-ID`` at receivers that de-duplicate on it) applies them once.
Only one dispatcher runs per home (:func:`safar.delivery.dispatcher.dispatcher_lock`), so a
row ``sending`` at its start belongs to a dead process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from channels.base import StatusReport
from safar.appdb.engine import dialect_insert
from safar.appdb.schema import dead_addresses, outbox, subscriptions
from safar.delivery.events import EventRow, delivery_event, insert_events

FINAL_STATES = ("delivered", "failed", "bounced", "dropped")


def delivery_id(*parts: str) -> str:
    """A deterministic delivery id from what makes a delivery unique.

    Journeys pass (journey version, instance, node, person), campaigns (campaign, variant,
    person, occurrence). The separator cannot occur in the parts' text, so ("a", "bc") and
    ("ab", "c") differ.

    Example:
        >>> delivery_id("welcome", "v1", "p1", "2026-01-01")
        'd_a2ee4eb27d3b6b9910af89fb086eb01e'
        >>> delivery_id("a", "bc") == delivery_id("ab", "c")
        False
    """
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()
    return f"d_{digest}"


@dataclass(frozen=True)
class Delivery:
    """A rendered message to enqueue.

    Attributes:
        delivery_id: from :func:`delivery_id`.
        channel: the channel to send on.
        person_id: whom it is for.
        address: where to send it (email, phone, token, subscription JSON, URL; the person id
            for in-app); ``None`` when the person has none, which the reachability policy drops.
        category: ``transactional`` or a marketing category (``promotions``, ``news``, …).
        content: the rendered content for the channel's sender.
        user_id: the person's user id when known, so delivery events join their profile.
        time_zone: the person's zone (IANA name) for DND and caps; ``None``: the workspace's.
        not_before: do not send earlier (a scheduled campaign).
        expires_at: drop it if it cannot go before this (the queue TTL).
        ttl_seconds: how long push providers keep it for an offline device.
    """

    delivery_id: str
    channel: str
    person_id: str
    address: str | None
    category: str
    content: Mapping[str, Any]
    user_id: str | None = None
    time_zone: str | None = None
    campaign_id: str | None = None
    journey_id: str | None = None
    not_before: datetime | None = None
    expires_at: datetime | None = None
    ttl_seconds: int | None = None


@dataclass(frozen=True)
class Claimed:
    """A row the dispatcher claimed: everything needed to decide on it and send it."""

    delivery_id: str
    channel: str
    person_id: str
    user_id: str | None
    address: str | None
    time_zone: str | None
    category: str
    content: dict[str, Any]
    campaign_id: str | None
    journey_id: str | None
    ttl_seconds: int | None
    attempts: int
    in_doubt: bool
    not_before: datetime
    expires_at: datetime | None


_CLAIMED_FIELDS = tuple(f.name for f in dataclasses.fields(Claimed))


@dataclass
class Transition:
    """One recorded change of a claimed (``sending``) row."""

    delivery_id: str
    state: str
    detail: str = ""
    not_before: datetime | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    response: Mapping[str, Any] | None = None
    sent: bool = False
    dead_address: tuple[str, str] | None = None
    events: list[EventRow] = field(default_factory=list)


def enqueue(engine: sa.Engine, deliveries: Sequence[Delivery], now: datetime) -> list[str]:
    """Queue deliveries; those already in the outbox are left alone. Returns the new ids.

    Each new row gets a ``Message Queued`` event in the same transaction.
    """
    if not deliveries:
        return []
    rows = [
        {
            "delivery_id": d.delivery_id,
            "channel": d.channel,
            "person_id": d.person_id,
            "user_id": d.user_id,
            "address": d.address,
            "time_zone": d.time_zone,
            "category": d.category,
            "content": json.dumps(d.content, ensure_ascii=False, sort_keys=True),
            "campaign_id": d.campaign_id,
            "journey_id": d.journey_id,
            "ttl_seconds": d.ttl_seconds,
            "state": "queued",
            "attempts": 0,
            "in_doubt": False,
            "not_before": d.not_before or now,
            "expires_at": d.expires_at,
            "created_at": now,
            "updated_at": now,
        }
        for d in deliveries
    ]
    by_id = {d.delivery_id: d for d in deliveries}
    with engine.begin() as con:
        inserted = _insert_ignoring_duplicates(con, outbox, rows, "delivery_id")
        insert_events(
            con,
            [delivery_event("Message Queued", _as_claimed(by_id[i], now), now) for i in inserted],
        )
    return inserted


def _insert_ignoring_duplicates(
    con: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], key: str
) -> list[str]:
    statement = dialect_insert(con)(table).on_conflict_do_nothing().returning(table.c[key])
    return [row[0] for row in con.execute(statement, rows)] if rows else []


def _as_claimed(d: Delivery, now: datetime) -> Claimed:
    shared = {name: getattr(d, name) for name in _CLAIMED_FIELDS if hasattr(d, name)}
    shared.update(
        content=dict(d.content), attempts=0, in_doubt=False, not_before=d.not_before or now
    )
    return Claimed(**shared)


def recover(engine: sa.Engine, now: datetime) -> int:
    """Put rows a dead dispatcher left ``sending`` back in the queue, marked in doubt.

    Call it only while holding the dispatcher lock: then no live process is sending them.
    """
    with engine.begin() as con:
        result = con.execute(
            sa.update(outbox)
            .where(outbox.c.state == "sending")
            .values(state="queued", in_doubt=True, claimed_by=None, updated_at=now)
        )
    return result.rowcount


def claim(engine: sa.Engine, worker: str, now: datetime, limit: int) -> list[Claimed]:
    """Move up to ``limit`` due rows from ``queued`` to ``sending``, oldest due first."""
    with engine.begin() as con:
        due = (
            sa.select(outbox.c.delivery_id)
            .where(outbox.c.state == "queued", outbox.c.not_before <= now)
            .order_by(outbox.c.not_before, outbox.c.delivery_id)
            .limit(limit)
        )
        if con.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = con.execute(due).scalars().all()
        if not ids:
            return []
        con.execute(
            sa.update(outbox)
            .where(outbox.c.delivery_id.in_(ids), outbox.c.state == "queued")
            .values(
                state="sending",
                claimed_by=worker,
                attempts=outbox.c.attempts + 1,
                updated_at=now,
            )
        )
        rows = con.execute(
            sa.select(outbox)
            .where(
                outbox.c.delivery_id.in_(ids),
                outbox.c.state == "sending",
                outbox.c.claimed_by == worker,
            )
            .order_by(outbox.c.not_before, outbox.c.delivery_id)
        ).all()
    return [_claimed(r) for r in rows]


def has_due(engine: sa.Engine, now: datetime) -> bool:
    """Whether a dispatcher has anything to do: a due queued row, or one left in flight."""
    with engine.connect() as con:
        due = con.execute(
            sa.select(outbox.c.delivery_id)
            .where(
                sa.or_(
                    sa.and_(outbox.c.state == "queued", outbox.c.not_before <= now),
                    outbox.c.state == "sending",
                )
            )
            .limit(1)
        ).first()
    return due is not None


class _Moved(Exception):
    """Some row of a batch was not where this worker left it; redo the batch row by row."""


# One statement for every transition, executed for many rows at once: a NULL parameter keeps
# the column as it is. Only a row still ``sending`` by this worker moves.
_TRANSITION = (
    sa.update(outbox)
    .where(
        outbox.c.delivery_id == sa.bindparam("t_id"),
        outbox.c.state == "sending",
        outbox.c.claimed_by == sa.bindparam("t_worker"),
    )
    .values(
        state=sa.bindparam("t_state"),
        detail=sa.bindparam("t_detail"),
        updated_at=sa.bindparam("t_now"),
        not_before=sa.func.coalesce(
            sa.bindparam("t_not_before", type_=sa.DateTime), outbox.c.not_before
        ),
        claimed_by=sa.case(
            (sa.bindparam("t_state") == "queued", sa.null()), else_=outbox.c.claimed_by
        ),
        provider=sa.func.coalesce(sa.bindparam("t_provider", type_=sa.String), outbox.c.provider),
        provider_message_id=sa.func.coalesce(
            sa.bindparam("t_provider_message_id", type_=sa.String),
            outbox.c.provider_message_id,
        ),
        response=sa.func.coalesce(sa.bindparam("t_response", type_=sa.Text), outbox.c.response),
        sent_at=sa.func.coalesce(sa.bindparam("t_sent_at", type_=sa.DateTime), outbox.c.sent_at),
    )
)


def record(engine: sa.Engine, worker: str, transitions: Iterable[Transition], now: datetime) -> int:
    """Apply transitions of rows this worker holds, with their events; how many applied.

    A transition of a row that is no longer ``sending`` by ``worker`` is skipped with its
    events: someone else owns it now, and applying it would move it twice. The whole batch is
    one statement when every row is where the worker left it (the usual case), else row by row.
    """
    transitions = list(transitions)
    if not transitions:
        return 0
    params = [_parameters(t, worker, now) for t in transitions]
    try:
        with engine.begin() as con:
            if con.execute(_TRANSITION, params).rowcount != len(params):
                raise _Moved
            for t in transitions:
                _mark_dead_address(con, t, now)
            insert_events(con, [event for t in transitions for event in t.events])
        return len(transitions)
    except _Moved:
        pass
    applied = 0
    with engine.begin() as con:
        for t, one in zip(transitions, params, strict=True):
            if con.execute(_TRANSITION, one).rowcount:
                applied += 1
                _mark_dead_address(con, t, now)
                insert_events(con, t.events)
    return applied


def _parameters(t: Transition, worker: str, now: datetime) -> dict[str, Any]:
    return {
        "t_id": t.delivery_id,
        "t_worker": worker,
        "t_state": t.state,
        "t_detail": t.detail,
        "t_now": now,
        "t_not_before": (t.not_before or now) if t.state == "queued" else None,
        "t_provider": t.provider,
        "t_provider_message_id": t.provider_message_id,
        "t_response": None
        if t.response is None
        else json.dumps(t.response, ensure_ascii=False, default=str),
        "t_sent_at": now if t.sent else None,
    }


def _mark_dead_address(con: sa.Connection, t: Transition, now: datetime) -> None:
    if t.dead_address is not None:
        channel, address = t.dead_address
        mark_dead(con, channel, address, t.detail, t.delivery_id, now)


def sent_history(
    con: sa.Connection, person_ids: Sequence[str], since: datetime
) -> dict[str, list[tuple[str, datetime, bool]]]:
    """(channel, sent at, transactional) of each person's messages sent since ``since``."""
    history: dict[str, list[tuple[str, datetime, bool]]] = {}
    if not person_ids:
        return history
    rows = con.execute(
        sa.select(outbox.c.person_id, outbox.c.channel, outbox.c.sent_at, outbox.c.category)
        .where(outbox.c.person_id.in_(person_ids), outbox.c.sent_at >= since)
        .order_by(outbox.c.sent_at)
    )
    for person_id, channel, sent_at, category in rows:
        history.setdefault(person_id, []).append((channel, sent_at, category == "transactional"))
    return history


def awaiting_report(
    con: sa.Connection, provider: str, since: datetime, limit: int = 5_000
) -> list[str]:
    """Provider message ids of ``provider``'s messages sent since ``since`` and still ``sent``."""
    return list(
        con.execute(
            sa.select(outbox.c.provider_message_id)
            .where(
                outbox.c.provider == provider,
                outbox.c.state == "sent",
                outbox.c.sent_at >= since,
                outbox.c.provider_message_id.is_not(None),
            )
            .order_by(outbox.c.sent_at)
            .limit(limit)
        ).scalars()
    )


def unsubscribed(con: sa.Connection, person_ids: Sequence[str]) -> dict[str, frozenset[str]]:
    """The categories each person unsubscribed from (``*``: all marketing)."""
    found: dict[str, set[str]] = {}
    if person_ids:
        rows = con.execute(
            sa.select(subscriptions.c.person_id, subscriptions.c.category).where(
                subscriptions.c.person_id.in_(person_ids)
            )
        )
        for person_id, category in rows:
            found.setdefault(person_id, set()).add(category)
    return {person: frozenset(categories) for person, categories in found.items()}


def dead(con: sa.Connection, addresses: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (channel, address) pairs are known dead (hard bounce, unregistered token)."""
    if not addresses:
        return set()
    wanted = {address for _, address in addresses}
    rows = con.execute(
        sa.select(dead_addresses.c.channel, dead_addresses.c.address).where(
            dead_addresses.c.address.in_(wanted)
        )
    )
    return {(channel, address) for channel, address in rows}


def mark_dead(
    con: sa.Connection, channel: str, address: str, reason: str, delivery: str, now: datetime
) -> None:
    """Remember that ``address`` will never work on ``channel`` again."""
    _insert_ignoring_duplicates(
        con,
        dead_addresses,
        [
            {
                "channel": channel,
                "address": address,
                "reason": reason,
                "delivery_id": delivery,
                "dead_at": now,
            }
        ],
        "address",
    )


def in_state(engine: sa.Engine, deliveries: Sequence[str], state: str) -> list[str]:
    """Which of ``deliveries`` are in ``state`` now."""
    if not deliveries:
        return []
    with engine.connect() as con:
        return list(
            con.execute(
                sa.select(outbox.c.delivery_id).where(
                    outbox.c.delivery_id.in_(deliveries), outbox.c.state == state
                )
            ).scalars()
        )


def counts(engine: sa.Engine) -> dict[str, int]:
    """Rows per state, for status pages and tests."""
    with engine.connect() as con:
        rows = con.execute(
            sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state)
        ).all()
    return {state: n for state, n in rows}


def load(con: sa.Connection, delivery: str) -> Claimed | None:
    """The delivery ``delivery`` as it is now, or ``None`` if there is no such delivery."""
    row = con.execute(sa.select(outbox).where(outbox.c.delivery_id == delivery)).first()
    return None if row is None else _claimed(row)


def add_engagement(
    con: sa.Connection, delivery: str, event: str, now: datetime, properties: dict[str, Any]
) -> bool:
    """Store an open or a click of ``delivery``; ``False`` if there is no such delivery.

    People open and click a message more than once, so each occurrence is its own event.
    """
    claimed = load(con, delivery)
    if claimed is None:
        return False
    occurrence = now.isoformat()
    insert_events(
        con, [delivery_event(event, claimed, now, occurrence=occurrence, properties=properties)]
    )
    return True


def apply_report(engine: sa.Engine, report: StatusReport, now: datetime) -> str | None:
    """Apply a provider's later word (callback or poll) to the sent message it is about.

    Only a ``sent`` row moves (to ``delivered``, ``failed`` or ``bounced``): a report that
    arrives twice, or after a final state, changes nothing. Returns the delivery id moved.
    """
    event = {
        "delivered": "Message Delivered",
        "failed": "Message Failed",
        "bounced": "Message Bounced",
    }[report.status]
    with engine.begin() as con:
        row = con.execute(
            sa.select(outbox).where(
                outbox.c.provider == report.provider,
                outbox.c.provider_message_id == report.provider_message_id,
            )
        ).first()
        if row is None or row.state != "sent":
            return None
        moved = con.execute(
            sa.update(outbox)
            .where(outbox.c.delivery_id == row.delivery_id, outbox.c.state == "sent")
            .values(state=report.status, detail=report.detail or row.detail, updated_at=now)
        ).rowcount
        if not moved:
            return None
        props: dict[str, Any] = {"provider": report.provider}
        if report.detail:
            props["detail"] = report.detail
        delivery = _claimed(row)
        insert_events(con, [delivery_event(event, delivery, _naive(report.at), properties=props)])
        if report.status == "bounced" and row.address:
            mark_dead(con, row.channel, row.address, report.detail, row.delivery_id, now)
    return row.delivery_id


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def _claimed(r: sa.Row[Any]) -> Claimed:
    shared = {name: r._mapping[name] for name in _CLAIMED_FIELDS}
    shared["content"] = json.loads(shared["content"])
    return Claimed(**shared)
