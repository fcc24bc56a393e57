"""In-app and on-site messages: an inbox per person that the web SDK or an app fetches.

Sending puts the message in the person's inbox (``sent``); the first fetch that returns it
makes it ``delivered``; the SDK reports an impression (``Message Opened``), a click
(``Message Clicked``) or a dismissal. The inbox is addressed by the ids an SDK knows — the
user id of a known person, the anonymous id otherwise — which is what the enqueuer puts in
the delivery's address.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from channels.base import Envelope, Outcome, StatusReport
from safar.appdb.engine import dialect_insert
from safar.appdb.schema import inbox
from safar.delivery import outbox

PROVIDER = "inbox"
Action = Literal["impression", "click", "dismiss"]
EVENTS = {"impression": "Message Opened", "click": "Message Clicked"}


class InboxSender:
    """The ``in_app`` channel's sender: writes into the app DB's inbox table."""

    channel = "in_app"
    provider = PROVIDER

    def __init__(self, engine: sa.Engine, keep: timedelta = timedelta(days=30)):
        self.engine = engine
        self.keep = keep

    async def send(self, envelope: Envelope) -> Outcome:
        try:
            await asyncio.to_thread(self._put, envelope)
        except sa.exc.OperationalError as exc:  # a locked or unreachable database is temporary
            return Outcome("retry", PROVIDER, f"could not write the inbox: {exc.orig}")
        return Outcome("sent", PROVIDER, "in the inbox", provider_message_id=envelope.delivery_id)

    def _put(self, envelope: Envelope) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        ttl = timedelta(seconds=envelope.ttl_seconds) if envelope.ttl_seconds else self.keep
        with self.engine.begin() as con:
            con.execute(
                dialect_insert(con)(inbox).on_conflict_do_nothing(),
                {
                    "delivery_id": envelope.delivery_id,
                    "person_id": envelope.to or envelope.person_id,
                    "content": json.dumps(envelope.content, ensure_ascii=False),
                    "created_at": now,
                    "expires_at": now + ttl,
                },
            )

    async def aclose(self) -> None:
        return None


def fetch(
    engine: sa.Engine, ids: list[str], now: datetime, limit: int = 50
) -> list[dict[str, Any]]:
    """The live messages of the person known by ``ids``, newest first.

    The first fetch of a message makes its delivery ``delivered``.
    """
    with engine.connect() as con:
        rows = con.execute(
            sa.select(inbox)
            .where(
                inbox.c.person_id.in_(ids),
                inbox.c.dismissed_at.is_(None),
                sa.or_(inbox.c.expires_at.is_(None), inbox.c.expires_at > now),
            )
            .order_by(inbox.c.created_at.desc(), inbox.c.delivery_id)
            .limit(limit)
        ).all()
    for delivery in outbox.in_state(engine, [row.delivery_id for row in rows], "sent"):
        outbox.apply_report(engine, StatusReport(PROVIDER, delivery, "delivered", now), now)
    return [
        {
            "delivery_id": row.delivery_id,
            "content": json.loads(row.content),
            "created_at": row.created_at.isoformat() + "Z",
            "expires_at": row.expires_at.isoformat() + "Z" if row.expires_at else None,
            "seen": row.seen_at is not None,
            "clicked": row.clicked_at is not None,
        }
        for row in rows
    ]


def react(
    engine: sa.Engine, delivery: str, ids: list[str], action: Action, now: datetime, url: str = ""
) -> bool:
    """Record an impression, click or dismissal of one inbox message; ``False`` if not theirs.

    Every impression and click is an event (people look at a message more than once); the
    inbox row keeps the first of each.
    """
    column = {"impression": "seen_at", "click": "clicked_at", "dismiss": "dismissed_at"}[action]
    with engine.begin() as con:
        row = con.execute(
            sa.select(inbox.c.delivery_id).where(
                inbox.c.delivery_id == delivery, inbox.c.person_id.in_(ids)
            )
        ).first()
        if row is None:
            return False
        con.execute(
            sa.update(inbox)
            .where(inbox.c.delivery_id == delivery, inbox.c[column].is_(None))
            .values({column: now})
        )
        if action in EVENTS:
            props: dict[str, Any] = {"provider": PROVIDER}
            if url:
                props["url"] = url
            outbox.add_engagement(con, delivery, EVENTS[action], now, props)
    return True
