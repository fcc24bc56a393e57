"""``safar.messages``: Segment message → raw row, checked against the lake's own rules."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import polars as pl
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from message_strategies import messages

from safar.contract import RAW_COLUMNS
from safar.lake import conform, split_valid
from safar.messages import OLDEST_TIMESTAMP, normalize_batch, normalize_message

RECEIVED = datetime(2026, 1, 15, 9, 30)


def _normalize(message: object, **kwargs: object) -> dict | str:
    options = {"received_at": RECEIVED, "source_id": "src_test", "ip": "198.51.100.7"}
    return normalize_message(message, **{**options, **kwargs})  # type: ignore[arg-type]


def test_row_has_the_contract_columns_in_order() -> None:
    row = _normalize({"type": "track", "event": "e", "userId": "u"})
    assert isinstance(row, dict) and tuple(row) == RAW_COLUMNS


def test_mobile_context_is_extracted() -> None:
    row = _normalize(
        {
            "type": "track",
            "event": "Application Opened",
            "anonymousId": "a",
            "context": {
                "device": {"id": "d1", "type": "android", "model": "SM-A525F", "token": "fcm:1"},
                "os": {"name": "Android", "version": "14"},
                "app": {"version": 312},  # a number: still text in the column
                "ip": "203.0.113.5",
                "timezone": "Asia/Tehran",
                "locale": "fa-IR",
            },
        }
    )
    assert isinstance(row, dict)
    assert (row["context_device_id"], row["context_device_type"]) == ("d1", "android")
    assert (row["context_device_model"], row["context_device_token"]) == ("SM-A525F", "fcm:1")
    assert (row["context_os_name"], row["context_app_version"]) == ("Android", "312")
    # A context.ip the sender set wins over the request's (server-side SDKs forward it).
    assert row["context_ip"] == "203.0.113.5"
    assert (row["context_timezone"], row["context_locale"]) == ("Asia/Tehran", "fa-IR")


def test_request_ip_fills_in_context_ip() -> None:
    row = _normalize({"type": "page", "anonymousId": "a", "properties": {"url": "https://x/"}})
    assert isinstance(row, dict)
    assert row["context_ip"] == "198.51.100.7"
    assert json.loads(row["context"]) == {"ip": "198.51.100.7"}
    assert row["context_page_url"] == "https://x/"


def test_identify_traits_fall_back_to_context_traits() -> None:
    row = _normalize({"type": "identify", "anonymousId": "a", "context": {"traits": {"x": 1}}})
    assert isinstance(row, dict) and json.loads(row["traits"]) == {"x": 1}


def test_timestamps() -> None:
    sent = (RECEIVED + timedelta(hours=1)).isoformat()
    happened = (RECEIVED + timedelta(hours=1, seconds=-10)).isoformat()
    row = _normalize(
        {"type": "track", "event": "e", "userId": "u", "timestamp": happened, "sentAt": sent}
    )
    assert isinstance(row, dict)
    assert row["timestamp"] == RECEIVED - timedelta(seconds=10)
    assert row["original_timestamp"] == RECEIVED + timedelta(hours=1, seconds=-10)
    assert row["sent_at"] == RECEIVED + timedelta(hours=1)
    assert row["received_at"] == RECEIVED

    no_time = _normalize({"type": "track", "event": "e", "userId": "u"})
    assert isinstance(no_time, dict) and no_time["timestamp"] == RECEIVED

    rudder_js = _normalize(
        {"type": "track", "event": "e", "userId": "u", "originalTimestamp": "2026-01-15T09:00:00Z"}
    )
    assert isinstance(rudder_js, dict) and rudder_js["timestamp"] == datetime(2026, 1, 15, 9)

    ancient = _normalize({"type": "track", "event": "e", "userId": "u", "timestamp": "1999-01-01"})
    assert ancient == "timestamp before 2000-01-01: 1999-01-01T00:00:00"
    absurd = _normalize(
        {
            "type": "track",
            "event": "e",
            "userId": "u",
            "sentAt": "0001-01-01T00:00:00",
            "timestamp": "9999-12-31T00:00:00",
        }
    )
    assert absurd == "timestamp is out of range after correction with sentAt"


def test_batch_sent_at_and_context_apply_to_every_message() -> None:
    rows, rejected = normalize_batch(
        [
            {
                "type": "track",
                "event": "e",
                "userId": "u",
                "timestamp": "2026-01-15T10:29:00Z",
                "context": {"locale": "fa-IR"},
            }
        ],
        received_at=RECEIVED,
        source_id=None,
        ip=None,
        sent_at="2026-01-15T10:30:00Z",
        context={"library": {"name": "x"}, "locale": "en-US"},
    )
    assert rejected == []
    assert rows[0]["timestamp"] == RECEIVED - timedelta(minutes=1)
    assert json.loads(rows[0]["context"]) == {"library": {"name": "x"}, "locale": "fa-IR"}


def test_bad_batch_sent_at_rejects_every_message() -> None:
    rows, rejected = normalize_batch(
        [{"type": "track", "event": "e", "userId": "u"}] * 2,
        received_at=RECEIVED,
        source_id=None,
        ip=None,
        sent_at="soon",
    )
    assert rows == [] and [i for i, _ in rejected] == [0, 1]


def test_too_deep_to_store_is_a_reason_not_a_crash() -> None:
    deep: dict = {}
    for _ in range(300):
        deep = {"d": deep}
    reason = _normalize({"type": "track", "event": "e", "userId": "u", "properties": deep})
    assert isinstance(reason, str) and reason.startswith("properties cannot be stored")


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(messages, min_size=1, max_size=8))
def test_every_row_normalize_returns_passes_the_lake_rules(messages: list[dict]) -> None:
    """The Python rules and the lake's SQL rules agree: nothing accepted is rejected later."""
    rows, rejected = normalize_batch(
        messages, received_at=RECEIVED, source_id="src", ip="127.0.0.1", max_event_bytes=32768
    )
    assert len(rows) + len(rejected) == len(messages)
    assert all(isinstance(reason, str) and reason for _, reason in rejected)
    if rows:
        table = conform(pa.Table.from_pylist(rows))
        _, bad = split_valid(table)
        assert bad.num_rows == 0, pl.from_arrow(bad)
        assert min(table["timestamp"].to_pylist()) >= OLDEST_TIMESTAMP
        assert max(table["timestamp"].to_pylist()) <= RECEIVED
