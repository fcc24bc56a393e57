"""fct_messages end to end: delivery events made by ``safar.delivery.events``, landed through
its ``LakeSink`` (the path the dispatcher publishes by), built by dbt into a real warehouse.

Four deliveries land in a first batch: one sent, opened twice and clicked; one that bounced
after it was sent; one dropped in quiet hours for an anonymous person; one clicked whose
``Message Sent`` (an in-doubt re-send) lands only in a second batch, received an hour later
together with a re-publication of the whole first batch. A third build with nothing new
must change nothing.

Only ``+fct_messages`` is built. dbt selects tests eagerly, so the relationships tests into
models outside the selection (``person_id`` → ``dim_users``, ``session_id`` → ``fct_sessions``)
would be picked and find no table; ``cautious`` indirect selection leaves them to the full
build.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from warehouse_helpers import query

from safar.build import build
from safar.config import SafarHome
from safar.delivery.events import LakeSink, delivery_event
from safar.delivery.outbox import Claimed

T0 = datetime(2026, 1, 5, 10, 0)
MIN = timedelta(minutes=1)
FIRST_LANDING = T0 + 60 * MIN
SECOND_LANDING = T0 + 120 * MIN
COLUMNS = (
    "delivery_id, person_id, channel, category, provider, campaign_id, journey_id, status, "
    "queued_at, sent_at, bounced_at, dropped_at, drop_reason, failure_detail, "
    "first_opened_at, first_clicked_at, open_count, click_count, attempts, was_in_doubt"
)


def claimed(
    delivery_id: str,
    channel: str,
    person_id: str,
    *,
    user_id: str | None,
    attempts: int = 1,
    in_doubt: bool = False,
    campaign_id: str | None = None,
    journey_id: str | None = None,
) -> Claimed:
    """An outbox row as the dispatcher holds it when it writes the delivery's events."""
    return Claimed(
        delivery_id=delivery_id,
        channel=channel,
        person_id=person_id,
        user_id=user_id,
        address=f"{person_id}@example.com" if channel == "email" else "+989120000000",
        time_zone="Asia/Tehran",
        category="news",
        content={"text": "Hello"},
        campaign_id=campaign_id,
        journey_id=journey_id,
        ttl_seconds=None,
        attempts=attempts,
        in_doubt=in_doubt,
        not_before=T0,
        expires_at=None,
    )


CLICK = claimed("d_click", "email", "alice", user_id="alice", campaign_id="c1")
BOUNCE = claimed("d_bounce", "email", "bob", user_id="bob", journey_id="j1")
DROP = claimed("d_drop", "sms", "anon-c", user_id=None, campaign_id="c1")
LATE = claimed("d_late", "email", "alice", user_id="alice", attempts=2, in_doubt=True)
SMTP = {"provider": "smtp", "in_doubt": False, "provider_message_id": "<1@mail.example>"}


def first_batch() -> list[dict[str, Any]]:
    events = [
        delivery_event("Message Queued", CLICK, T0),
        delivery_event("Message Sent", CLICK, T0 + MIN, properties=SMTP),
        delivery_event("Message Opened", CLICK, T0 + 7 * MIN, occurrence="2"),
        delivery_event("Message Opened", CLICK, T0 + 5 * MIN, occurrence="1"),
        delivery_event(
            "Message Clicked",
            CLICK,
            T0 + 8 * MIN,
            occurrence="1",
            properties={"url": "https://shop.example/"},
        ),
        delivery_event("Message Queued", BOUNCE, T0),
        delivery_event("Message Sent", BOUNCE, T0 + MIN, properties=SMTP),
        delivery_event(
            "Message Bounced",
            BOUNCE,
            T0 + 30 * MIN,
            properties={"provider": "smtp", "detail": "550 5.1.1 user unknown"},
        ),
        delivery_event("Message Queued", DROP, T0),
        delivery_event(
            "Message Dropped",
            DROP,
            T0 + MIN,
            properties={"reason": "dnd", "policy": "dnd", "detail": "quiet hours until 08:00"},
        ),
        delivery_event("Message Queued", LATE, T0),
        delivery_event("Message Clicked", LATE, T0 + 20 * MIN, occurrence="1"),
    ]
    return [e.message for e in events]


def late_sent() -> dict[str, Any]:
    props = {"provider": "smtp", "in_doubt": True}
    return delivery_event("Message Sent", LATE, T0 + 2 * MIN, properties=props).message


def rows(home: SafarHome) -> dict[str, dict[str, Any]]:
    names = [c.strip() for c in COLUMNS.split(",")]
    found = query(home, f"select {COLUMNS} from fct_messages")
    by_delivery = {row[0]: dict(zip(names, row, strict=True)) for row in found}
    assert len(by_delivery) == len(found), "more than one row for a delivery"
    return by_delivery


@pytest.fixture(scope="module")
def builds(make_home) -> list[dict[str, dict[str, Any]]]:
    """fct_messages after the first batch, after the second, and after a build with nothing new."""
    home = make_home("fct_messages")
    sink = LakeSink(home)
    snapshots = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DBT_INDIRECT_SELECTION", "cautious")
        sink.write(first_batch(), FIRST_LANDING)
        # The first build also runs fct_messages' unit tests and data tests on real rows.
        build(home, select="+fct_messages")
        snapshots.append(rows(home))
        sink.write([late_sent(), *first_batch()], SECOND_LANDING)
        build(home, select="+fct_messages", test=False)
        snapshots.append(rows(home))
        build(home, select="+fct_messages", test=False)
        snapshots.append(rows(home))
    return snapshots


def test_one_row_per_delivery_with_its_furthest_state(builds):
    first = builds[0]
    assert {d: r["status"] for d, r in first.items()} == {
        "d_click": "clicked",
        "d_bounce": "bounced",
        "d_drop": "dropped",
        "d_late": "clicked",
    }


def test_a_sent_opened_and_clicked_message(builds):
    row = builds[0]["d_click"]
    assert row == {
        "delivery_id": "d_click",
        "person_id": "alice",
        "channel": "email",
        "category": "news",
        "provider": "smtp",
        "campaign_id": "c1",
        "journey_id": None,
        "status": "clicked",
        "queued_at": T0,
        "sent_at": T0 + MIN,
        "bounced_at": None,
        "dropped_at": None,
        "drop_reason": None,
        "failure_detail": None,
        "first_opened_at": T0 + 5 * MIN,
        "first_clicked_at": T0 + 8 * MIN,
        "open_count": 2,
        "click_count": 1,
        "attempts": 1,
        "was_in_doubt": False,
    }


def test_a_bounce_after_sending_and_a_drop(builds):
    bounce, drop = builds[0]["d_bounce"], builds[0]["d_drop"]
    assert (bounce["sent_at"], bounce["bounced_at"]) == (T0 + MIN, T0 + 30 * MIN)
    assert (bounce["journey_id"], bounce["failure_detail"]) == ("j1", "550 5.1.1 user unknown")
    # An anonymous person's events carry their person id as the anonymous id.
    assert (drop["person_id"], drop["channel"], drop["provider"]) == ("anon-c", "sms", None)
    assert (drop["drop_reason"], drop["dropped_at"]) == ("dnd", T0 + MIN)
    assert drop["failure_detail"] == "quiet hours until 08:00"


def test_a_late_sent_event_fills_in_its_columns(builds):
    before, after = builds[0]["d_late"], builds[1]["d_late"]
    assert (before["sent_at"], before["attempts"], before["was_in_doubt"]) == (None, 2, False)
    assert (after["sent_at"], after["attempts"], after["was_in_doubt"]) == (T0 + 2 * MIN, 2, True)
    assert after["status"] == before["status"] == "clicked"
    assert after["first_clicked_at"] == T0 + 20 * MIN


def test_relanded_events_change_nothing(builds):
    first, second = builds[0], builds[1]
    assert {d: r for d, r in second.items() if d != "d_late"} == {
        d: r for d, r in first.items() if d != "d_late"
    }


def test_a_build_with_nothing_new_changes_nothing(builds):
    assert builds[2] == builds[1]
