"""A raw HTTP/1.1 load client for the gateway, run as its own process by ``bench/gateway.py``.

Keep-alive connections each send ``POST /v1/batch`` with 100 events as fast as answers come
back, for a fixed time. Every event carries a unique messageId. Prints one JSON line: events
accepted per second and request latency percentiles.

Usage: ``python bench/load_client.py PORT WRITE_KEY SECONDS CONNECTIONS``
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
import uuid

import orjson

BATCH = 100
EVENT = {
    "type": "track",
    "event": "Product Viewed",
    "anonymousId": "a-123456789",
    "userId": "user-42",
    "timestamp": "2026-01-15T09:29:59.123Z",
    "properties": {
        "product_id": "p-1",
        "price": 12_000_000,
        "currency": "IRR",
        "name": "گلیم دستباف",
        "category": "home",
    },
    "context": {
        "library": {"name": "analytics.js", "version": "2.0"},
        "locale": "fa-IR",
        "timezone": "Asia/Tehran",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120 Safari/537.36",
        "page": {"url": "https://shop.example/p/1", "path": "/p/1", "title": "گلیم"},
    },
}


def _request(key: str) -> bytes:
    batch = [dict(EVENT, messageId=uuid.uuid4().hex) for _ in range(BATCH)]
    body = orjson.dumps({"batch": batch, "sentAt": "2026-01-15T09:30:00Z"})
    auth = base64.b64encode(f"{key}:".encode()).decode()
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


POOL = 1000


async def _worker(
    port: int, requests: list[bytes], offset: int, deadline: float, stats: dict
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = offset
    try:
        while time.perf_counter() < deadline:
            request = requests[sent % len(requests)]
            sent += 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            stats["latencies"].append(time.perf_counter() - started)
            code = int(head[9:12])
            stats["codes"][code] = stats["codes"].get(code, 0) + 1
            if code == 200:
                stats["accepted"] += BATCH
    finally:
        writer.close()


async def _main(port: int, key: str, seconds: float, connections: int) -> dict:
    requests = [_request(key) for _ in range(POOL)]
    stats: dict = {"accepted": 0, "latencies": [], "codes": {}}
    started = time.perf_counter()
    deadline = started + seconds
    step = POOL // connections
    await asyncio.gather(
        *(_worker(port, requests, i * step, deadline, stats) for i in range(connections))
    )
    elapsed = time.perf_counter() - started
    lat = sorted(stats["latencies"])
    return {
        "events_accepted": stats["accepted"],
        "seconds": elapsed,
        "events_per_second": stats["accepted"] / elapsed,
        "requests": len(lat),
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
        "status_codes": {str(k): v for k, v in stats["codes"].items()},
    }


if __name__ == "__main__":
    port, key, seconds, connections = sys.argv[1:5]
    print(json.dumps(asyncio.run(_main(int(port), key, float(seconds), int(connections)))))
