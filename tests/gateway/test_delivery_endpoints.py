"""The gateway's delivery endpoints on a real gateway: opens, clicks, unsubscribes, the inbox.

Deliveries are put in the gateway's app DB the way the dispatcher does; the events the
endpoints cause must reach the landing zone through the gateway's own log.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from gateway_helpers import Gateway, basic, lake_rows, wait_for

from channels.base import Envelope
from channels.tracking import click_url, open_pixel_url, unsubscribe_url
from safar.appdb import open_app_db
from safar.appdb.schema import subscriptions
from safar.delivery import outbox
from safar.delivery.inbox import InboxSender
from safar.delivery.outbox import Delivery, delivery_id, enqueue
from safar.delivery.settings import save_config, tracking_secret
from safar.gateway.delivery import callback_key


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def engine(gateway: Gateway) -> sa.Engine:
    engine = open_app_db(gateway.home)
    save_config(engine, {"categories": ["promotions", "news"]})
    return engine


def _queued(engine: sa.Engine, name: str, **changes: object) -> Delivery:
    fields: dict[str, object] = {
        "delivery_id": delivery_id("endpoints", name),
        "channel": "email",
        "person_id": f"person-{name}",
        "address": f"{name}@example.com",
        "category": "promotions",
        "content": {"subject": "سلام"},
        "user_id": f"user-{name}",
        "campaign_id": "spring-sale",
    }
    fields.update(changes)
    d = Delivery(**fields)  # type: ignore[arg-type]
    enqueue(engine, [d], _now())
    return d


def _landed(gateway: Gateway, event: str, delivery: str) -> list[dict]:
    def found() -> list[dict]:
        return lake_rows(
            gateway.home,
            "event = ? and json_extract_string(properties, '$.delivery_id') = ?",
            [event, delivery],
        )

    return wait_for(found, timeout=15)


def test_the_open_pixel_records_an_open(gateway: Gateway, engine: sa.Engine) -> None:
    d = _queued(engine, "opener")
    url = open_pixel_url(gateway.url, tracking_secret(engine), d.delivery_id)
    answer = httpx.get(url, headers={"User-Agent": "Thunderbird"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/gif"
    assert answer.content.startswith(b"GIF89a")
    (row,) = _landed(gateway, "Message Opened", d.delivery_id)
    assert row["user_id"] == "user-opener"
    assert row["source_id"] == "safar-delivery"
    # A tampered token still gets the image, but records nothing.
    assert httpx.get(url.replace(".gif", "x.gif")).status_code == 200


def test_a_click_is_recorded_then_redirected(gateway: Gateway, engine: sa.Engine) -> None:
    d = _queued(engine, "clicker")
    target = "https://shop.example.ir/offers?id=7&lang=fa"
    url = click_url(gateway.url, tracking_secret(engine), d.delivery_id, target)
    answer = httpx.get(url)
    assert answer.status_code == 302
    assert answer.headers["location"] == target
    (row,) = _landed(gateway, "Message Clicked", d.delivery_id)
    assert '"url":"https://shop.example.ir/offers?id=7&lang=fa"' in row["properties"].replace(
        " ", ""
    )
    forged = click_url(gateway.url, "another-secret", d.delivery_id, "https://evil.example")
    refused = httpx.get(forged)
    assert refused.status_code == 400
    assert "location" not in refused.headers


def _unsubscribed(engine: sa.Engine, person: str) -> set[str]:
    with engine.connect() as con:
        return set(
            con.execute(
                sa.select(subscriptions.c.category).where(subscriptions.c.person_id == person)
            ).scalars()
        )


def test_one_click_unsubscribe_stops_that_category(gateway: Gateway, engine: sa.Engine) -> None:
    d = _queued(engine, "leaver")
    url = unsubscribe_url(gateway.url, tracking_secret(engine), d.delivery_id)
    # RFC 8058: the mail client POSTs exactly this form body.
    answer = httpx.post(url, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert _unsubscribed(engine, "person-leaver") == {"promotions"}


def test_the_preference_page_saves_choices(gateway: Gateway, engine: sa.Engine) -> None:
    d = _queued(engine, "chooser")
    url = unsubscribe_url(gateway.url, tracking_secret(engine), d.delivery_id)
    page = httpx.get(url)
    assert page.status_code == 200
    assert 'dir="rtl"' in page.text
    assert 'value="promotions" checked' in page.text
    assert 'value="news" checked' in page.text

    saved = httpx.post(url, data={"category": ["news"]})
    assert saved.status_code == 200
    assert _unsubscribed(engine, "person-chooser") == {"promotions"}
    assert 'value="promotions">' in saved.text

    httpx.post(url, data={"all": "1"})
    assert "*" in _unsubscribed(engine, "person-chooser")
    httpx.post(url, data={"category": ["news", "promotions"]})
    assert _unsubscribed(engine, "person-chooser") == set()
    assert httpx.get(url + "x").status_code == 400


def test_the_inbox_serves_messages_and_records_reactions(
    gateway: Gateway, engine: sa.Engine, write_key: str
) -> None:
    d = _queued(
        engine,
        "reader",
        channel="in_app",
        address="user-reader",
        content={"title": "خوش آمدید", "body": "هدیهٔ شما آماده است"},
    )
    # The dispatcher's in-app sender puts it in the inbox and records it sent.
    claimed = outbox.claim(engine, "test", _now(), 1000)
    mine = next(c for c in claimed if c.delivery_id == d.delivery_id)
    for other in claimed:
        if other is not mine:
            outbox.record(engine, "test", [outbox.Transition(other.delivery_id, "queued")], _now())
    envelope = Envelope(d.delivery_id, "in_app", "user-reader", d.content, d.person_id)
    outcome = asyncio.run(InboxSender(engine).send(envelope))
    assert outcome.status == "sent"
    outbox.record(
        engine,
        "test",
        [
            outbox.Transition(
                d.delivery_id,
                "sent",
                provider="inbox",
                provider_message_id=d.delivery_id,
                sent=True,
            )
        ],
        _now(),
    )

    with httpx.Client(base_url=gateway.url, headers=basic(write_key)) as client:
        assert client.get("/v1/inbox").status_code == 400
        listed = client.get("/v1/inbox", params={"userId": "user-reader"})
        assert listed.status_code == 200
        (message,) = listed.json()["messages"]
        assert message["content"]["title"] == "خوش آمدید"
        assert outbox.counts(engine).get("delivered", 0) >= 1

        path = f"/v1/inbox/{d.delivery_id}"
        assert client.post(f"{path}/impression", json={"userId": "user-reader"}).status_code == 204
        clicked = client.post(
            f"{path}/click", json={"userId": "user-reader", "url": "app://offers"}
        )
        assert clicked.status_code == 204
        assert client.post(f"{path}/click", json={"userId": "someone-else"}).status_code == 404
        assert client.post(f"{path}/dismiss", json={"userId": "user-reader"}).status_code == 204
        assert client.get("/v1/inbox", params={"userId": "user-reader"}).json() == {"messages": []}
    assert httpx.get(f"{gateway.url}/v1/inbox", params={"userId": "x"}).status_code == 401
    for event in ("Message Delivered", "Message Opened", "Message Clicked"):
        assert _landed(gateway, event, d.delivery_id)


def _mark_sent(engine: sa.Engine, d: Delivery, provider: str, provider_id: str) -> None:
    claimed = outbox.claim(engine, "callbacks", _now(), 1000)
    transitions = [
        outbox.Transition(
            c.delivery_id, "sent", provider=provider, provider_message_id=provider_id, sent=True
        )
        if c.delivery_id == d.delivery_id
        else outbox.Transition(c.delivery_id, "queued")
        for c in claimed
    ]
    outbox.record(engine, "callbacks", transitions, _now())


def test_kavenegar_reports_delivery_by_callback(gateway: Gateway, engine: sa.Engine) -> None:
    d = _queued(engine, "sms-reader", channel="sms", address="+989121234567")
    _mark_sent(engine, d, "kavenegar", "8792343")
    key = callback_key(tracking_secret(engine), "kavenegar")
    base = f"{gateway.url}/v1/callbacks/kavenegar"
    assert httpx.get(f"{base}/wrong", params={"messageid": "8792343"}).status_code == 403
    assert httpx.get(f"{base}/{key}", params={"messageid": "x"}).status_code == 400
    answer = httpx.post(f"{base}/{key}", data={"messageid": "8792343", "status": "10"})
    assert answer.status_code == 204
    (row,) = _landed(gateway, "Message Delivered", d.delivery_id)
    assert '"provider":"kavenegar"' in row["properties"].replace(" ", "")
    assert outbox.counts(engine).get("delivered", 0) >= 1


def test_twilio_reports_are_accepted_only_when_signed(gateway: Gateway, engine: sa.Engine) -> None:
    token = "twilio-auth-token"
    url = f"{gateway.url}/v1/callbacks/twilio"
    save_config(
        engine,
        {
            "categories": ["promotions", "news"],
            "providers": {
                "sms": {
                    "provider": "twilio",
                    "options": {
                        "account_sid": "AC1",
                        "auth_token": token,
                        "from_number": "+15005550006",
                        "status_callback_url": url,
                    },
                }
            },
        },
    )
    d = _queued(engine, "twilio-reader", channel="sms", address="+15005550009")
    _mark_sent(engine, d, "twilio", "SM123")
    form = {"MessageSid": "SM123", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    # Twilio's documented scheme: HMAC-SHA1 over the URL and the sorted name+value pairs.
    signed = url + "".join(f"{k}{form[k]}" for k in sorted(form))
    signature = base64.b64encode(hmac.new(token.encode(), signed.encode(), "sha1").digest())
    assert httpx.post(url, data=form, headers={"X-Twilio-Signature": "bad"}).status_code == 403
    answer = httpx.post(url, data=form, headers={"X-Twilio-Signature": signature.decode()})
    assert answer.status_code == 204
    assert _landed(gateway, "Message Bounced", d.delivery_id)
    save_config(engine, {"categories": ["promotions", "news"]})
