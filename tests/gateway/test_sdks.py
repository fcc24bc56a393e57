"""The official Segment and RudderStack Python SDKs, unchanged, pointed at the gateway.

Each call lands exactly once in the landing zone with the fields the SDK sent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from gateway_helpers import Gateway, add_key, new_id, wait_for_rows
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

SDKS = {"segment": SegmentClient, "rudder": RudderClient}


def _send_every_call(client, ids: dict[str, str], user: str, anon: str) -> datetime:
    happened = datetime.now(UTC) - timedelta(minutes=5)
    context = {
        "device": {"id": "dev-1", "type": "ios", "model": "iPhone15,2", "token": "apns-abc"},
        "os": {"name": "iOS", "version": "17.2"},
        "app": {"version": "3.1.0"},
        "timezone": "Asia/Tehran",
        "locale": "fa-IR",
    }
    client.identify(
        user,
        {"email": "sara@example.ir", "city": "اصفهان"},
        context=context,
        anonymous_id=anon,
        message_id=ids["identify"],
        timestamp=happened,
    )
    client.track(
        user,
        "Order Completed",
        {"revenue": 1_250_000, "currency": "IRR"},
        context=context,
        message_id=ids["track"],
        timestamp=happened,
    )
    client.page(
        user,
        "Shop",
        "Product",
        {"url": "https://shop.example/p/1"},
        context={"page": {"url": "https://shop.example/p/1"}},
        message_id=ids["page"],
    )
    client.screen(user, "Shop", "Cart", {"items": 2}, context=context, message_id=ids["screen"])
    client.group(user, "acme", {"plan": "gold"}, message_id=ids["group"])
    client.alias(anon, user, message_id=ids["alias"])
    return happened


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_calls_land_exactly_once_with_their_fields(gateway: Gateway, sdk: str) -> None:
    key = add_key(gateway.home, f"sdk-{sdk}")
    errors: list[Exception] = []
    client = SDKS[sdk](
        key, host=gateway.url, on_error=lambda exc, batch: errors.append(exc), max_retries=1
    )
    ids = {kind: new_id(sdk) for kind in ("identify", "track", "page", "screen", "group", "alias")}
    user, anon = new_id("user"), new_id("anon")
    happened = _send_every_call(client, ids, user, anon)
    client.flush()
    client.join()
    assert not errors

    rows = wait_for_rows(gateway.home, ids.values())
    assert len(rows) == len(ids), "each message lands exactly once"
    by_type = {row["type"]: row for row in rows}
    assert {by_type[kind]["message_id"] for kind in ids} == set(ids.values())
    assert {row["source_id"] for row in rows} == {f"src_sdk-{sdk}"}
    assert all(row["user_id"] == user for row in rows)

    identify = by_type["identify"]
    assert identify["anonymous_id"] == anon
    assert json.loads(identify["traits"]) == {"email": "sara@example.ir", "city": "اصفهان"}
    assert identify["context_device_token"] == "apns-abc"
    assert identify["context_device_type"] == "ios"
    assert identify["context_device_id"] == "dev-1"
    assert identify["context_device_model"] == "iPhone15,2"
    assert identify["context_os_name"] == "iOS"
    assert identify["context_app_version"] == "3.1.0"
    assert identify["context_timezone"] == "Asia/Tehran"
    assert identify["context_locale"] == "fa-IR"
    assert identify["context_ip"] == "127.0.0.1"
    assert json.loads(identify["context"])["library"]["name"] == "analytics-python"

    track = by_type["track"]
    assert track["event"] == "Order Completed"
    assert json.loads(track["properties"]) == {"revenue": 1_250_000, "currency": "IRR"}
    # The SDK stamps sentAt when it sends: the corrected time is the call's, within skew.
    original = happened.replace(tzinfo=None)
    assert abs(track["original_timestamp"] - original) < timedelta(milliseconds=1)
    assert abs(track["timestamp"] - original) < timedelta(seconds=5)
    assert track["sent_at"] is not None and track["received_at"] >= track["timestamp"]

    assert by_type["page"]["event"] == "Product"
    assert json.loads(by_type["page"]["properties"])["category"] == "Shop"
    assert by_type["page"]["context_page_url"] == "https://shop.example/p/1"
    assert by_type["screen"]["event"] == "Cart"
    assert by_type["group"]["group_id"] == "acme"
    assert json.loads(by_type["group"]["traits"]) == {"plan": "gold"}
    assert by_type["alias"]["previous_id"] == anon
