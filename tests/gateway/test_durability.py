"""A 2xx means on disk: crash the gateway mid-stream, restart it, and count.

Also: landing files appear within 2 s of a 2xx, and a gateway whose landing zone falls
behind answers 429 with Retry-After.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from gateway_helpers import Gateway, add_key, basic, new_id, rows_by_id, wait_for_rows

from safar.config import SafarHome


@pytest.fixture
def home(tmp_path: Path) -> SafarHome:
    return SafarHome(tmp_path).ensure()


def _batch(size: int) -> tuple[list[str], dict]:
    ids = [new_id() for _ in range(size)]
    batch = [{"type": "track", "event": "Tick", "anonymousId": "a", "messageId": i} for i in ids]
    return ids, {"batch": batch}


def test_every_acknowledged_event_survives_sigkill(home: SafarHome) -> None:
    key = add_key(home)
    # A long flush interval keeps everything in the log until the crash, so what lands after
    # the restart comes from recovery alone.
    gateway = Gateway(home, ["--flush-interval", "60"]).start()
    acknowledged: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=gateway.url, headers=basic(key), timeout=5) as client:
            while not stop.is_set():
                ids, body = _batch(50)
                try:
                    response = client.post("/v1/batch", json=body)
                except httpx.TransportError:
                    continue  # the gateway is down: those events were never acknowledged
                if response.status_code == 200:
                    acknowledged.extend(ids)

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    time.sleep(1.5)
    gateway.kill()
    time.sleep(0.2)
    stop.set()
    for sender in senders:
        sender.join()

    assert len(acknowledged) > 500, "the client was sending when the gateway died"
    segments = list(home.gateway_wal.glob("wal-*.jsonl"))
    assert segments and not rows_by_id(home, acknowledged[:1])
    # As if the crash had cut a write short: a torn line at the end of the newest segment.
    with open(max(segments), "ab") as fh:
        fh.write(b'{"message_id":"torn","type":"tr')

    Gateway(home, port=gateway.port).start().stop()  # recovery runs before it serves
    landed = rows_by_id(home, acknowledged)
    assert {row["message_id"] for row in landed} == set(acknowledged)
    assert len(landed) == len(acknowledged), "recovery lands each segment once"
    assert not rows_by_id(home, ["torn"])
    assert list(home.gateway_wal.glob("wal-*")) == []


def test_landing_files_appear_within_two_seconds_of_a_2xx(home: SafarHome) -> None:
    key = add_key(home)
    gateway = Gateway(home).start()  # the default flush interval
    try:
        with httpx.Client(base_url=gateway.url, headers=basic(key)) as client:
            for _ in range(3):
                ids, body = _batch(10)
                assert client.post("/v1/batch", json=body).status_code == 200
                acknowledged_at = time.monotonic()
                wait_for_rows(home, ids, timeout=5)
                assert time.monotonic() - acknowledged_at < 2.0
                time.sleep(0.3)
    finally:
        gateway.stop()


def test_graceful_stop_lands_everything_accepted(home: SafarHome) -> None:
    key = add_key(home)
    gateway = Gateway(home, ["--flush-interval", "60"]).start()
    ids, body = _batch(20)
    assert httpx.post(f"{gateway.url}/v1/batch", json=body, headers=basic(key)).status_code == 200
    gateway.stop()
    assert len(rows_by_id(home, ids)) == 20
    assert list(home.gateway_wal.glob("wal-*")) == []


def test_overload_is_429_with_retry_after(home: SafarHome) -> None:
    key = add_key(home)
    gateway = Gateway(home, ["--max-pending", "1", "--flush-interval", "30"]).start()
    try:
        with httpx.Client(base_url=gateway.url, headers=basic(key)) as client:
            assert client.post("/v1/batch", json=_batch(5)[1]).status_code == 200
            response = client.post("/v1/batch", json=_batch(5)[1])
            assert response.status_code == 429
            assert response.headers["retry-after"] == "1"
            assert response.json()["code"] == "overloaded"
            assert client.get("/health").json()["backlog"] == 5
    finally:
        gateway.stop()
