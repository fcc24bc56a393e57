"""Every way a request can go wrong, against a running gateway, and what it answers."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from gateway_helpers import (
    Gateway,
    add_key,
    basic,
    lake_rows,
    new_id,
    rows_by_id,
    wait_for,
    wait_for_rows,
)

from safar.appdb import open_app_db
from safar.appdb.sources import revoke_source

SHORT_PATHS = {
    "/v1/t": "track",
    "/v1/i": "identify",
    "/v1/p": "page",
    "/v1/s": "screen",
    "/v1/g": "group",
    "/v1/a": "alias",
    "/v1/b": "batch",
}
LONG_PATHS = [f"/v1/{kind}" for kind in ("track", "identify", "page", "screen", "group", "alias")]
ALL_PATHS = [*LONG_PATHS, "/v1/batch", "/v1/import", *SHORT_PATHS]


def _track(**fields: object) -> dict[str, object]:
    return {"event": "Product Viewed", "userId": "u-1", "messageId": new_id(), **fields}


def _rejected_reasons(gateway: Gateway) -> list[str]:
    lines = []
    for path in gateway.home.rejected.glob("rejected-*.jsonl"):
        # Not splitlines(): the fuzz test's messages hold U+2028 and friends, which JSON
        # keeps raw inside strings; JSON Lines are separated by "\n" alone.
        lines += path.read_text().split("\n")
    return [json.loads(line)["reason"] for line in lines if line]


# ------------------------------------------------------------------------------ auth


def test_missing_key_is_401(client: httpx.Client) -> None:
    response = client.post("/v1/track", json=_track())
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "code": "unauthorized",
        "message": "missing write key",
    }


@pytest.mark.parametrize(
    "headers",
    [basic("not-a-key"), {"X-Write-Key": "not-a-key"}, {"Authorization": "Basic %%%"}],
    ids=["basic", "header", "malformed-basic"],
)
def test_unknown_key_is_401(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.post("/v1/track", json=_track(), headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_key_in_body_header_or_basic_auth(client: httpx.Client, gateway: Gateway) -> None:
    key = add_key(gateway.home)
    sent = [
        client.post("/v1/track", json=_track(), headers=basic(key)),
        client.post("/v1/track", json=_track(), headers={"X-Write-Key": key}),
        client.post("/v1/track", json=_track(writeKey=key)),
        client.post("/v1/batch", json={"writeKey": key, "batch": [_track(type="track")]}),
    ]
    assert [r.status_code for r in sent] == [200] * 4


def test_revoked_key_stops_working_within_the_key_ttl(
    client: httpx.Client, gateway: Gateway
) -> None:
    key = add_key(gateway.home, "to-revoke")
    assert client.post("/v1/track", json=_track(), headers=basic(key)).status_code == 200
    revoke_source(open_app_db(gateway.home), "to-revoke")
    # The session gateway caches keys for 0.3 s.
    wait_for(
        lambda: client.post("/v1/track", json=_track(), headers=basic(key)).status_code == 401,
        timeout=3,
    )
    assert client.get(f"/v1/projects/{key}/settings").status_code == 401


# ------------------------------------------------------------------------------ body


def test_invalid_json_is_400(client: httpx.Client, write_key: str) -> None:
    response = client.post("/v1/track", content=b'{"event": "x",', headers=basic(write_key))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


def test_text_plain_is_read_as_json(client: httpx.Client, write_key: str, gateway: Gateway) -> None:
    message = _track(writeKey=write_key, type="track")
    response = client.post(
        "/v1/t", content=json.dumps(message), headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    assert response.status_code == 200, response.text
    wait_for_rows(gateway.home, [message["messageId"]])


def test_gzip_body_is_accepted(client: httpx.Client, write_key: str, gateway: Gateway) -> None:
    batch = {"batch": [_track(type="track") for _ in range(3)]}
    response = client.post(
        "/v1/batch",
        content=gzip.compress(json.dumps(batch).encode()),
        headers={**basic(write_key), "Content-Encoding": "gzip"},
    )
    assert response.json() == {"success": True, "accepted": 3, "rejected": 0, "errors": []}
    wait_for_rows(gateway.home, [m["messageId"] for m in batch["batch"]])


def test_gzip_bomb_is_refused_without_inflating_it(client: httpx.Client, write_key: str) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * 50_000_000 + b"]}", compresslevel=9)
    assert len(bomb) < 500_000
    started = time.monotonic()
    response = client.post(
        "/v1/batch", content=bomb, headers={**basic(write_key), "Content-Encoding": "gzip"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "request_too_large"
    assert "500 KB" in response.json()["message"]
    assert time.monotonic() - started < 2, "the bomb was not inflated"


def test_bad_gzip_and_unknown_encoding(client: httpx.Client, write_key: str) -> None:
    bad = client.post(
        "/v1/track", content=b"not gzip", headers={**basic(write_key), "Content-Encoding": "gzip"}
    )
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_gzip")
    truncated = client.post(
        "/v1/track",
        content=gzip.compress(json.dumps(_track()).encode())[:-8],
        headers={**basic(write_key), "Content-Encoding": "gzip"},
    )
    assert (truncated.status_code, truncated.json()["code"]) == (400, "invalid_gzip")
    brotli = client.post(
        "/v1/track", content=b"{}", headers={**basic(write_key), "Content-Encoding": "br"}
    )
    assert (brotli.status_code, brotli.json()["code"]) == (415, "unsupported_encoding")


def test_oversize_event_is_400_naming_the_limit(client: httpx.Client, write_key: str) -> None:
    message = _track(properties={"blob": "x" * 33_000})
    response = client.post("/v1/track", json=message, headers=basic(write_key))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "event_too_large"
    assert "32 KB" in body["message"] and body["limit"] == 32 * 1024


def test_oversize_request_is_400_naming_the_limit(client: httpx.Client, write_key: str) -> None:
    batch = {"batch": [_track(type="track", properties={"b": "x" * 20_000}) for _ in range(30)]}
    response = client.post("/v1/batch", json=batch, headers=basic(write_key))
    assert response.status_code == 400
    assert response.json()["code"] == "request_too_large"
    assert "500 KB" in response.json()["message"]


def test_oversize_event_in_a_batch_is_rejected_alone(
    client: httpx.Client, write_key: str, gateway: Gateway
) -> None:
    good = [_track(type="track"), _track(type="track")]
    big = _track(type="track", properties={"blob": "ب" * 20_000})  # 40 KB in UTF-8
    response = client.post(
        "/v1/batch", json={"batch": [good[0], big, good[1]]}, headers=basic(write_key)
    )
    assert response.json() == {
        "success": True,
        "accepted": 2,
        "rejected": 1,
        "errors": [{"index": 1, "reason": "event larger than 32 KB"}],
    }
    wait_for_rows(gateway.home, [m["messageId"] for m in good])
    assert rows_by_id(gateway.home, [big["messageId"]]) == []


# ------------------------------------------------------------------------------ events


BAD_EVENTS = [
    ({"event": "x"}, "missing userId and anonymousId"),
    ({"event": "x", "userId": "", "anonymousId": None}, "missing userId and anonymousId"),
    ({"userId": "u"}, "track without event name"),
    ({"userId": {"id": 1}, "event": "x"}, "userId must be a string"),
    ({"userId": True, "event": "x"}, "userId must be a string"),
    ({"anonymousId": 1.5, "event": "x"}, "anonymousId must be a string"),
    ({"userId": "u", "event": 7}, "event must be a string"),
    ({"userId": "u", "event": "x", "properties": [1, 2]}, "properties must be a JSON object"),
    ({"userId": "u", "event": "x", "context": "web"}, "context must be a JSON object"),
    ({"userId": "u", "event": "x", "timestamp": 1700000000}, "timestamp must be an ISO-8601"),
    ({"userId": "u", "event": "x", "timestamp": "yesterday"}, "timestamp is not an ISO-8601"),
    ({"userId": "u", "event": "x", "type": "identify"}, "type 'identify' sent to the track"),
    ({"userId": "u", "event": "x", "messageId": ["a"]}, "messageId must be a string"),
    ("just a string", "event is not a JSON object"),
]


@pytest.mark.parametrize(("message", "reason"), BAD_EVENTS)
def test_bad_single_event_is_400_with_its_reason(
    client: httpx.Client, write_key: str, gateway: Gateway, message: object, reason: str
) -> None:
    response = client.post("/v1/track", json=message, headers=basic(write_key))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_event"
    assert body["message"].startswith(reason)
    assert body["errors"][0]["reason"].startswith(reason)
    assert (body["accepted"], body["rejected"]) == (0, 1)
    assert any(r.startswith(reason) for r in _rejected_reasons(gateway))


def test_batch_stores_good_events_and_rejects_bad_ones(
    client: httpx.Client, write_key: str, gateway: Gateway
) -> None:
    good = [
        {"type": "identify", "userId": "u-9", "traits": {"plan": "gold"}, "messageId": new_id()},
        {"type": "alias", "userId": "u-9", "previousId": "anon-9", "messageId": new_id()},
        {"type": "group", "anonymousId": "anon-9", "groupId": 42, "messageId": new_id()},
    ]
    bad = [
        {"type": "identify", "anonymousId": "anon-9", "messageId": new_id()},
        {"type": "alias", "userId": "u-9", "messageId": new_id()},
        {"type": "group", "userId": "u-9", "messageId": new_id()},
        {"type": "purchase", "userId": "u-9", "messageId": new_id()},
        {"userId": "u-9", "messageId": new_id()},
        [1, 2],
    ]
    response = client.post(
        "/v1/import", json={"batch": [*good, *bad]}, headers={"X-Write-Key": write_key}
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["accepted"], body["rejected"]) == (True, 3, 6)
    assert body["errors"] == [
        {"index": 3, "reason": "identify without userId or traits"},
        {"index": 4, "reason": "alias without previousId and userId"},
        {"index": 5, "reason": "group without groupId"},
        {"index": 6, "reason": "unknown type 'purchase'"},
        {"index": 7, "reason": "missing type"},
        {"index": 8, "reason": "event is not a JSON object"},
    ]
    rows = wait_for_rows(gateway.home, [m["messageId"] for m in good])
    assert len(rows) == 3
    assert rows_by_id(gateway.home, [m["messageId"] for m in bad if isinstance(m, dict)]) == []
    reasons = _rejected_reasons(gateway)
    assert all(error["reason"] in reasons for error in body["errors"])


@pytest.mark.parametrize(
    "body",
    [{"batch": {"type": "track"}}, {"messages": []}, [1], {"batch": [], "context": "x"}],
)
def test_malformed_batch_request_is_400(client: httpx.Client, write_key: str, body: object) -> None:
    response = client.post("/v1/batch", json=body, headers=basic(write_key))
    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


def test_missing_message_id_is_generated(
    client: httpx.Client, write_key: str, gateway: Gateway
) -> None:
    user = new_id("user")
    response = client.post("/v1/identify", json={"userId": user}, headers=basic(write_key))
    assert response.status_code == 200
    rows = wait_for(lambda: lake_rows(gateway.home, "user_id = ?", [user]))
    assert len(rows) == 1 and len(rows[0]["message_id"]) == 36


# ------------------------------------------------------------------------------ text


def test_unicode_and_persian_text_round_trip(
    client: httpx.Client, write_key: str, gateway: Gateway
) -> None:
    properties = {
        "نام": "فرش دست‌باف کاشان",  # with a zero-width non-joiner, as Persian spells it
        "شهر": "اصفهان",
        "emoji": "🧿🇮🇷",
        "rtl": "\u200fسلام\u200e",
        "mixed": "Order #۱۲۳۴ — ٪۲۰ تخفیف",
        "nul": "a\u0000b",
    }
    message = {
        "userId": "کاربر-۴۲",
        "event": "خرید موفق",
        "properties": properties,
        "context": {"locale": "fa-IR", "timezone": "Asia/Tehran"},
        "messageId": new_id(),
    }
    response = client.post("/v1/track", json=message, headers=basic(write_key))
    assert response.status_code == 200
    [row] = wait_for_rows(gateway.home, [message["messageId"]])
    assert row["user_id"] == "کاربر-۴۲"
    assert row["event"] == "خرید موفق"
    assert json.loads(row["properties"]) == properties


# ------------------------------------------------------------------------------ timestamps


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_clock_skew_is_corrected_with_sent_at(
    client: httpx.Client, write_key: str, gateway: Gateway
) -> None:
    skew = timedelta(hours=3)  # the device clock is 3 h fast
    now = datetime.now(UTC)
    message = _track(timestamp=_iso(now + skew - timedelta(seconds=30)), sentAt=_iso(now + skew))
    assert client.post("/v1/track", json=message, headers=basic(write_key)).status_code == 200
    [row] = wait_for_rows(gateway.home, [message["messageId"]])
    assert row["original_timestamp"] - row["timestamp"] > skew - timedelta(seconds=5)
    expected = row["received_at"] - timedelta(seconds=30)
    assert abs(row["timestamp"] - expected) < timedelta(milliseconds=1)


def test_future_timestamp_is_clamped_to_received_at(
    client: httpx.Client, write_key: str, gateway: Gateway
) -> None:
    message = _track(timestamp="2031-03-21T12:00:00+03:30")
    assert client.post("/v1/track", json=message, headers=basic(write_key)).status_code == 200
    [row] = wait_for_rows(gateway.home, [message["messageId"]])
    assert row["timestamp"] == row["received_at"]
    assert row["original_timestamp"] == datetime(2031, 3, 21, 8, 30)


def test_ancient_timestamp_is_rejected(client: httpx.Client, write_key: str) -> None:
    message = _track(timestamp="1999-12-31T23:59:59Z")
    response = client.post("/v1/track", json=message, headers=basic(write_key))
    assert response.status_code == 400
    assert response.json()["message"].startswith("timestamp before 2000-01-01")


def test_reset_device_clock_is_rescued_by_sent_at(
    client: httpx.Client, write_key: str, gateway: Gateway
) -> None:
    # A phone whose clock reset to 1970 stamps both times with it; their difference is true.
    message = _track(timestamp="1970-01-01T00:00:10Z", sentAt="1970-01-01T00:00:40Z")
    assert client.post("/v1/track", json=message, headers=basic(write_key)).status_code == 200
    [row] = wait_for_rows(gateway.home, [message["messageId"]])
    assert row["received_at"] - row["timestamp"] == timedelta(seconds=30)
    assert row["original_timestamp"] == datetime(1970, 1, 1, 0, 0, 10)


# ------------------------------------------------------------------------------ CORS, settings


@pytest.mark.parametrize("path", [*ALL_PATHS, "/v1/projects/k/settings"])
def test_cors_preflight_on_every_path(client: httpx.Client, path: str) -> None:
    response = client.options(
        path,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"


def test_responses_carry_cors_headers(client: httpx.Client, write_key: str) -> None:
    ok = client.post("/v1/t", json=_track(writeKey=write_key))
    refused = client.post("/v1/t", json=_track())
    for response in (ok, refused):
        assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("path", ALL_PATHS)
def test_every_path_accepts_its_messages(
    client: httpx.Client, write_key: str, gateway: Gateway, path: str
) -> None:
    kind = SHORT_PATHS.get(path, path.removeprefix("/v1/"))
    message = {
        "userId": "u-1",
        "anonymousId": "a-1",
        "messageId": new_id(),
        "event": "E",
        "groupId": "g",
        "previousId": "a-1",
        "traits": {"t": 1},
    }
    if kind in ("batch", "import"):
        body: dict[str, object] = {"batch": [{**message, "type": "track"}]}
    else:
        body = {**message, "type": kind}
    response = client.post(path, json=body, headers=basic(write_key))
    assert response.status_code == 200, response.text
    [row] = wait_for_rows(gateway.home, [message["messageId"]])
    assert row["type"] == ("track" if kind in ("batch", "import") else kind)


def test_settings_point_analytics_js_at_the_gateway(
    client: httpx.Client, write_key: str, gateway: Gateway
) -> None:
    response = client.get(f"/v1/projects/{write_key}/settings")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    segment_io = response.json()["integrations"]["Segment.io"]
    assert segment_io["apiKey"] == write_key
    assert segment_io["apiHost"] == f"127.0.0.1:{gateway.port}/v1"
    assert segment_io["protocol"] == "http"
    assert client.get("/v1/projects/nope/settings").status_code == 401
