"""The dispatcher's semantics against a real webhook endpoint, with a fixed clock.

Idempotent enqueue, policy drops with their ``Message Dropped`` reasons, DND queueing, retries
with backoff until the attempt limit, hard bounces that make an address unreachable, the queue
TTL, provider status reports, and delivery events landed in the lake.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from webhook_receiver import Receiver, webhook_receiver

from channels.base import StatusReport
from channels.webhook import WebhookSender, WebhookSettings, new_secret
from safar.appdb import open_app_db
from safar.appdb.schema import delivery_events, subscriptions
from safar.appdb.schema import outbox as outbox_table
from safar.config import SafarHome
from safar.delivery import outbox
from safar.delivery.dispatcher import Dispatcher, DispatchSettings
from safar.delivery.events import LakeSink, publish_events
from safar.delivery.outbox import Delivery, delivery_id, enqueue
from safar.delivery.policy import Cap, DndWindow, PolicySettings

# 2026-01-10 is a Saturday; 12:00 UTC is 15:30 in Tehran.
NOON = datetime(2026, 1, 10, 12, 0)
SECRET = new_secret()


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver(SECRET) as running:
        yield running


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return open_app_db(url=f"sqlite:///{tmp_path}/app.sqlite")


def _delivery(n: int, url: str, **changes: object) -> Delivery:
    fields: dict[str, object] = {
        "delivery_id": delivery_id("test", str(n)),
        "channel": "webhook",
        "person_id": f"p{n}",
        "address": url,
        "category": "promotions",
        "content": {"body": {"n": n}},
        "user_id": f"u{n}",
    }
    fields.update(changes)
    return Delivery(**fields)  # type: ignore[arg-type]


def _dispatcher(
    engine: sa.Engine, clock: Clock, policy: PolicySettings | None = None, **settings: object
) -> Dispatcher:
    sender = WebhookSender(WebhookSettings(secret=SECRET, timeout=5))
    return Dispatcher(
        engine,
        {"webhook": sender},
        DispatchSettings(policy=policy or PolicySettings(), **settings),  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(7),
    )


def _run(dispatcher: Dispatcher) -> None:
    async def go() -> None:
        try:
            await dispatcher.dispatch_batch()
        finally:
            await dispatcher.aclose()

    asyncio.run(go())


def _row(engine: sa.Engine, delivery: str) -> sa.Row:
    with engine.connect() as con:
        return con.execute(
            sa.select(outbox_table).where(outbox_table.c.delivery_id == delivery)
        ).one()


def _events(engine: sa.Engine) -> list[tuple[str, dict]]:
    with engine.connect() as con:
        rows = con.execute(
            sa.select(delivery_events.c.event, delivery_events.c.message).order_by(
                delivery_events.c.id
            )
        ).all()
    return [(event, json.loads(message)) for event, message in rows]


def test_enqueue_is_idempotent_and_queues_one_event(engine: sa.Engine) -> None:
    d = _delivery(1, "http://127.0.0.1:9/x")
    assert enqueue(engine, [d], NOON) == [d.delivery_id]
    assert enqueue(engine, [d, d], NOON) == []
    assert outbox.counts(engine) == {"queued": 1}
    assert [e for e, _ in _events(engine)] == ["Message Queued"]


def test_a_sent_message_keeps_the_response_and_emits_sent(
    engine: sa.Engine, receiver: Receiver
) -> None:
    d = _delivery(1, f"{receiver.url}/hook")
    enqueue(engine, [d], NOON)
    _run(_dispatcher(engine, Clock(NOON)))
    row = _row(engine, d.delivery_id)
    assert (row.state, row.attempts, row.provider) == ("sent", 1, "webhook")
    assert json.loads(row.response)["body"] == {"ok": True, "tier": "gold"}
    assert receiver.applied[d.delivery_id] == 1
    sent = [m for e, m in _events(engine) if e == "Message Sent"]
    assert len(sent) == 1
    assert sent[0]["userId"] == "u1"
    assert sent[0]["properties"]["delivery_id"] == d.delivery_id
    assert sent[0]["properties"]["provider"] == "webhook"


def test_policies_drop_with_their_reasons(engine: sa.Engine, receiver: Receiver) -> None:
    url = f"{receiver.url}/hook"
    unsubscribed = _delivery(1, url)
    no_address = _delivery(2, None)
    expired = _delivery(3, url, expires_at=NOON - timedelta(minutes=1))
    capped_first = _delivery(4, url, person_id="p4")
    capped_second = _delivery(5, url, person_id="p4")
    transactional = _delivery(6, url, person_id="p4", category="transactional")
    enqueue(
        engine,
        [unsubscribed, no_address, expired, capped_first, capped_second, transactional],
        NOON,
    )
    with engine.begin() as con:
        con.execute(
            sa.insert(subscriptions).values(
                person_id="p1", category="promotions", unsubscribed_at=NOON, source="test"
            )
        )
    policy = PolicySettings(caps=(Cap(1, "day"),))
    _run(_dispatcher(engine, Clock(NOON), policy))

    dropped = {
        m["properties"]["delivery_id"]: m["properties"]["reason"]
        for e, m in _events(engine)
        if e == "Message Dropped"
    }
    # Of p4's two marketing messages due at once, one goes and the other meets the cap.
    capped = {capped_first.delivery_id, capped_second.delivery_id}
    went = capped - set(dropped)
    assert len(went) == 1
    assert dropped == {
        unsubscribed.delivery_id: "unsubscribed",
        no_address.delivery_id: "unreachable",
        expired.delivery_id: "expired",
        (capped - went).pop(): "cap",
    }
    # Transactional messages skip caps and do not count towards them.
    assert _row(engine, transactional.delivery_id).state == "sent"
    assert set(receiver.applied) == went | {transactional.delivery_id}


def test_dnd_queues_until_the_window_ends_in_the_persons_zone(
    engine: sa.Engine, receiver: Receiver
) -> None:
    # 22:00 UTC is 01:30 in Tehran, inside 22:00–08:00; in Berlin (23:00) too; in New York
    # (17:00) it is not.
    night = datetime(2026, 1, 10, 22, 0)
    tehran = _delivery(1, f"{receiver.url}/hook", time_zone="Asia/Tehran")
    new_york = _delivery(2, f"{receiver.url}/hook", time_zone="America/New_York")
    enqueue(engine, [tehran, new_york], night)
    policy = PolicySettings(dnd=DndWindow(time(22), time(8)))
    _run(_dispatcher(engine, Clock(night), policy))
    waiting = _row(engine, tehran.delivery_id)
    assert waiting.state == "queued"
    assert waiting.not_before == datetime(2026, 1, 11, 4, 30)  # 08:00 Tehran
    assert "dnd" in waiting.detail
    assert _row(engine, new_york.delivery_id).state == "sent"

    later = Clock(datetime(2026, 1, 11, 4, 30))
    _run(_dispatcher(engine, later, policy))
    assert _row(engine, tehran.delivery_id).state == "sent"
    assert receiver.applied[tehran.delivery_id] == 1


def test_retries_back_off_then_give_up(engine: sa.Engine, receiver: Receiver) -> None:
    d = _delivery(1, f"{receiver.url}/flaky")
    receiver.script["/flaky"] = [(503, {})] * 3
    enqueue(engine, [d], NOON)
    clock = Clock(NOON)
    _run(_dispatcher(engine, clock, max_attempts=3))
    first = _row(engine, d.delivery_id)
    assert (first.state, first.attempts) == ("queued", 1)
    # The endpoint said Retry-After: 120, more than the first backoff step.
    assert first.not_before >= NOON + timedelta(seconds=120)

    _run(_dispatcher(engine, clock, max_attempts=3))  # not due yet: nothing happens
    assert _row(engine, d.delivery_id).attempts == 1

    for _ in range(2):
        clock.at = _row(engine, d.delivery_id).not_before
        _run(_dispatcher(engine, clock, max_attempts=3))
    failed = _row(engine, d.delivery_id)
    assert (failed.state, failed.attempts) == ("failed", 3)
    assert failed.detail.startswith("gave up after 3 attempts")
    assert [e for e, _ in _events(engine)] == ["Message Queued", "Message Failed"]


def test_a_hard_bounce_makes_the_address_unreachable(engine: sa.Engine, receiver: Receiver) -> None:
    url = f"{receiver.url}/gone"
    receiver.script["/gone"] = [(410, {})]
    first, second = _delivery(1, url), _delivery(2, url)
    enqueue(engine, [first], NOON)
    _run(_dispatcher(engine, Clock(NOON)))
    assert _row(engine, first.delivery_id).state == "bounced"
    enqueue(engine, [second], NOON)
    _run(_dispatcher(engine, Clock(NOON)))
    assert _row(engine, second.delivery_id).state == "dropped"
    reasons = [m["properties"].get("reason") for e, m in _events(engine) if e != "Message Queued"]
    assert reasons == [None, "unreachable"]  # Message Bounced, then Message Dropped


def test_provider_reports_move_sent_messages_once(engine: sa.Engine, receiver: Receiver) -> None:
    d = _delivery(1, f"{receiver.url}/hook")
    enqueue(engine, [d], NOON)
    _run(_dispatcher(engine, Clock(NOON)))
    report = StatusReport("webhook", d.delivery_id, "delivered", NOON + timedelta(seconds=5))
    assert outbox.apply_report(engine, report, NOON) == d.delivery_id
    assert outbox.apply_report(engine, report, NOON) is None
    late_failure = StatusReport("webhook", d.delivery_id, "failed", NOON)
    assert outbox.apply_report(engine, late_failure, NOON) is None
    assert _row(engine, d.delivery_id).state == "delivered"
    assert [e for e, _ in _events(engine)].count("Message Delivered") == 1


def test_events_land_in_the_lake_once(
    tmp_path: Path, engine: sa.Engine, receiver: Receiver
) -> None:
    home = SafarHome(tmp_path / "home")
    known = _delivery(1, f"{receiver.url}/hook")
    anonymous = _delivery(2, f"{receiver.url}/hook", user_id=None)
    enqueue(engine, [known, anonymous], NOON)
    _run(_dispatcher(engine, Clock(NOON)))
    sink = LakeSink(home)
    assert publish_events(engine, sink, NOON) == 4
    assert publish_events(engine, sink, NOON) == 0
    rows = duckdb.sql(
        f"""select event, user_id, anonymous_id, source_id,
                   json_extract_string(properties, '$.delivery_id') as delivery_id
            from read_parquet('{home.raw_events}/**/*.parquet', hive_partitioning = false)
            order by event, delivery_id"""
    ).fetchall()
    by = {(event, d): (user, anon, source) for event, user, anon, source, d in rows}
    assert len(rows) == 4
    assert by[("Message Sent", known.delivery_id)] == ("u1", None, "safar-delivery")
    assert by[("Message Sent", anonymous.delivery_id)] == (None, "p2", "safar-delivery")
