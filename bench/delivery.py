"""``make bench`` (delivery part): messages/s through the outbox to local sinks, and policy cost.

The goal (the delivery issue): ≥ 1,000 messages/s per core for email and webhooks, to local
sinks, on 2 cores. In one run on this machine:

- **webhook, end to end**: N deliveries enqueued in a fresh SQLite app DB, then
  ``Dispatcher.run(until_idle=True)`` with a signing ``WebhookSender``, at the shipped
  ``max_connections`` and at 4; the time is split into the phases the dispatcher times itself
  (claim, decide = policy reads + policies, send, record). A run with a sender
  that accepts everything at once measures the outbox's own cost (an internal cost, not a
  delivery rate);
- **email, end to end**: the same with ``SmtpSender`` (pools of 4 and 8 connections);
- **senders alone**: each sender fed the same envelopes by 64 coroutines, no outbox;
- **baselines**: a hand-written ``aiohttp.ClientSession`` loop (the webhook sender's client
  library) posting the same bodies with the same concurrency (no outbox, no policies, no
  signatures) and a hand-written ``smtplib`` loop with one thread per connection sending
  pre-built messages;
- **policies**: ``decide()`` per message with a DND window, three caps, a min gap and a
  throttle over ~20 earlier sends per person, against the same rules written inline over plain
  tuples; both must reach the same decisions.

Sinks run in their own processes (a bare asyncio HTTP/1.1 server, a bare asyncio SMTP server;
aiosmtpd once for comparison) and count what arrives: every run must deliver exactly N, with N
distinct idempotency keys where it sends them, or the bench fails. Each measured case runs in
its own process, so its peak RSS is its own.

Results go to ``bench/results/delivery.json``; ``--quick`` (small N, a smoke test) only prints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import resource
import secrets
import smtplib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Safar, the channels and their clients are imported where they are used: a sink process
# imports none of them, so it starts fast and takes little of the two cores.
BENCH_DIR = Path(__file__).resolve().parent
GOAL_PER_CORE = 1000
WORKERS = 64  # the dispatcher's default concurrency per channel, for the senders alone
FROM = "news@shop.example"

HTTP_RESPONSE = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
)
EMAIL_HTML = (
    "<html><body><h1>سلام {name}!</h1>"
    "<p>تخفیف ویژه‌ی امروز برای شما: <a href='https://shop.example/sale?c=winter'>خرید</a></p>"
    + "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.</p>"
    * 12
    + "<p><a href='https://shop.example/orders'>سفارش‌ها</a> · "
    "<a href='https://shop.example/help'>راهنما</a></p></body></html>"
)


# --- sinks (each in its own process) -------------------------------------------------------


class _Stats:
    """What a sink received: requests or messages, and the distinct idempotency keys."""

    def __init__(self) -> None:
        self.received = 0
        self.keys: set[bytes] = set()

    def snapshot(self) -> dict[str, float]:
        return {
            "received": self.received,
            "distinct_keys": len(self.keys),
            "cpu_seconds": time.process_time(),
        }


class _HttpSink(asyncio.Protocol):
    """HTTP/1.1 with keep-alive: answers every request 200 with a tiny JSON body."""

    def __init__(self, stats: _Stats) -> None:
        self.stats = stats
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            length = int(_header(head, b"content-length") or 0)
            if len(buffer) < end + 4 + length:
                return
            del buffer[: end + 4 + length]
            key = _header(head, b"idempotency-key")
            if key:
                self.stats.keys.add(key)
            self.stats.received += 1
            self.transport.write(HTTP_RESPONSE)  # type: ignore[attr-defined]


def _header(head: bytes, name: bytes) -> bytes | None:
    """A header's value in a lower-cased request head, or ``None``."""
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else None].strip()


class _SmtpSink(asyncio.Protocol):
    """Enough ESMTP for a relay client: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

    EHLO = b"250-sink\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250 PIPELINING\r\n"

    def __init__(self, stats: _Stats) -> None:
        self.stats = stats
        self.buffer = bytearray()
        self.mail = False
        self.recipients = 0
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            if self.in_data:
                # The buffer starts with the CRLF that ended DATA, so an empty message's
                # ".\r\n" is found by the same search.
                end = buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self._received(bytes(buffer[2:end]))
                del buffer[: end + 5]
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                return
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            self._command(line)

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        write = self.transport.write
        if verb == b"EHLO":
            self._reset()
            write(self.EHLO)
        elif verb == b"HELO":
            self._reset()
            write(b"250 sink\r\n")
        elif verb == b"MAIL":
            if self.mail:
                write(b"503 5.5.1 nested MAIL command\r\n")
            else:
                self.mail = True
                write(b"250 2.1.0 OK\r\n")
        elif verb == b"RCPT":
            if not self.mail:
                write(b"503 5.5.1 need MAIL first\r\n")
            else:
                self.recipients += 1
                write(b"250 2.1.5 OK\r\n")
        elif verb == b"DATA":
            if not self.recipients:
                write(b"503 5.5.1 need RCPT first\r\n")
            else:
                self.in_data = True
                self.buffer[:0] = b"\r\n"
                write(b"354 end data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"RSET":
            self._reset()
            write(b"250 2.0.0 OK\r\n")
        elif verb == b"NOOP":
            write(b"250 2.0.0 OK\r\n")
        elif verb == b"QUIT":
            write(b"221 2.0.0 bye\r\n")
            self.transport.close()
        else:
            write(b"500 5.5.2 command not recognized\r\n")

    def _received(self, message: bytes) -> None:
        self._reset()
        self.stats.received += 1
        key = _message_id(message)
        if key:
            self.stats.keys.add(key)
        self.transport.write(b"250 2.0.0 OK queued\r\n")

    def _reset(self) -> None:
        self.mail, self.recipients, self.in_data = False, 0, False


def _message_id(message: bytes) -> bytes | None:
    """The ``Message-ID`` of a raw message (headers only are searched), or ``None``."""
    head = message[: message.find(b"\r\n\r\n")].lower()
    return _header(b"\r\n" + head, b"message-id")


def _aiosmtpd_factory(stats: _Stats) -> Any:
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            stats.received += 1
            key = _message_id(envelope.original_content)
            if key:
                stats.keys.add(key)
            return "250 2.0.0 OK queued"

    handler = Handler()
    return lambda: SMTP(handler, hostname="sink", ident="sink")


def serve_sink(kind: str) -> None:
    """Child process: serve ``kind`` on a free port, print it, then print stats on request.

    Each line on stdin is answered with one JSON line of :class:`_Stats`; end of input stops
    the sink. uvloop, when installed, keeps the sink's share of the two cores small.
    """
    stats = _Stats()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        factories = {
            "http": lambda: _HttpSink(stats),
            "smtp": lambda: _SmtpSink(stats),
        }
        factory = factories[kind] if kind in factories else _aiosmtpd_factory(stats)
        server = await loop.create_server(factory, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await loop.run_in_executor(None, _answer_stats, stats)
        server.close()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())


def _answer_stats(stats: _Stats) -> None:
    for _ in sys.stdin:
        print(json.dumps(stats.snapshot()), flush=True)


class Sink:
    """A sink process, seen from the bench: its port and what it received so far."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--sink", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"the {kind} sink did not start")
        self.port = int(line)

    def stats(self) -> dict[str, float]:
        self.proc.stdin.write("stats\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@contextlib.contextmanager
def sink(kind: str) -> Iterator[Sink]:
    running = Sink(kind)
    try:
        yield running
    finally:
        running.close()


# --- what is sent ----------------------------------------------------------------------------


def webhook_body(n: int) -> dict[str, Any]:
    """A journey step's rendered webhook body (~250 bytes of JSON)."""
    return {
        "event": "order_shipped",
        "order_id": f"o-{n:07d}",
        "person": {"id": f"p-{n:07d}", "tier": "gold", "city": "Tehran"},
        "items": [{"sku": "A-1001", "qty": 2}, {"sku": "B-2002", "qty": 1}],
        "total": 1_250_000,
        "currency": "IRR",
    }


def email_content(n: int) -> dict[str, Any]:
    """A campaign's rendered email: a Persian subject and ~1.5 KB of HTML with three links."""
    return {"subject": f"تخفیف ویژه برای شما، مشتری {n}", "html": EMAIL_HTML.format(name=n)}


def policy_settings() -> Any:
    """Policies that are all evaluated but all pass for a campaign to fresh people now.

    The DND window is put six hours away from the current Tehran time, so a run never
    depends on when it happens.
    """
    from safar.delivery.policy import Cap, DndWindow, MinGap, PolicySettings

    local = datetime.now(ZoneInfo("Asia/Tehran"))
    start, end = local + timedelta(hours=6), local + timedelta(hours=7)
    return PolicySettings(
        dnd=DndWindow(clock_time(start.hour), clock_time(end.hour)),
        caps=(Cap(3, "day"), Cap(5, "week", "email"), Cap(12, "month")),
        min_gaps=(MinGap(timedelta(hours=1)),),
    )


def smtp_settings(port: int, pool: int) -> Any:
    from channels.email import SmtpSettings

    return SmtpSettings(
        host="127.0.0.1",
        port=port,
        from_address=FROM,
        from_name="فروشگاه سفر",
        starttls=False,
        pool_size=pool,
        tracking_base_url="https://t.shop.example",
        tracking_secret=secrets.token_urlsafe(32),
        unsubscribe_mailto="unsubscribe@shop.example",
    )


# --- measured cases (each in its own process) ------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _NullSender:
    """Accepts every envelope at once: what remains is the outbox's and dispatcher's cost."""

    provider = "null"

    def __init__(self, channel: str) -> None:
        self.channel = channel

    async def send(self, envelope: Any) -> Any:
        from channels.base import Outcome

        return Outcome("sent", "null", "accepted", provider_message_id=envelope.delivery_id)

    async def aclose(self) -> None:
        return None


def _deliveries(channel: str, n: int, port: int, label: str) -> list[Any]:
    from safar.delivery.outbox import Delivery, delivery_id

    rows = []
    for i in range(n):
        if channel == "webhook":
            address, content = f"http://127.0.0.1:{port}/hooks/orders", webhook_body(i)
        else:
            address, content = f"customer{i}@example.test", email_content(i)
        rows.append(
            Delivery(
                delivery_id=delivery_id("bench", label, str(i)),
                channel=channel,
                person_id=f"p-{i:07d}",
                user_id=f"u-{i:07d}",
                address=address,
                category="promotions",
                content=content,
                campaign_id="winter-sale",
            )
        )
    return rows


def _sender(channel: str, port: int, pool: int) -> Any:
    if channel == "null":
        return _NullSender("webhook")
    if channel == "webhook":
        from channels.webhook import WebhookSender, WebhookSettings, new_secret

        return WebhookSender(WebhookSettings(secret=new_secret(), max_connections=pool))
    from channels.email import SmtpSender

    return SmtpSender(smtp_settings(port, pool))


async def _dispatch(channel: str, n: int, port: int, pool: int) -> dict[str, Any]:
    """Enqueue N deliveries in a fresh app DB and dispatch them all, timing each phase."""
    from safar.appdb import open_app_db
    from safar.delivery import outbox
    from safar.delivery.dispatcher import Dispatcher, DispatchSettings, utcnow

    with tempfile.TemporaryDirectory(prefix="safar-bench-delivery-") as tmp:
        engine = open_app_db(url=f"sqlite:///{tmp}/app.sqlite")
        kind = "webhook" if channel == "null" else channel
        deliveries = _deliveries(kind, n, port, f"{channel}-{pool}-{secrets.token_hex(4)}")
        started = time.perf_counter()
        outbox.enqueue(engine, deliveries, utcnow())
        enqueue_seconds = time.perf_counter() - started
        del deliveries

        settings = DispatchSettings(policy=policy_settings())
        dispatcher = Dispatcher(engine, {kind: _sender(channel, port, pool)}, settings)
        cpu, started = _cpu_seconds(), time.perf_counter()
        total = await dispatcher.run(until_idle=True)
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        await dispatcher.aclose()
        states = outbox.counts(engine)
    if states != {"sent": n} or total.outcomes != Counter({"sent": n}):
        raise SystemExit(f"{channel}: not every delivery was sent: {states}, {total}")

    # The dispatcher times its own phases (claim, decide = policy reads + policies, send,
    # record); what is left is the loop itself.
    phases = dict(total.seconds)
    phases["other"] = seconds - sum(phases.values())
    return {
        **_rate(n, seconds, cpu),
        "enqueue_seconds": enqueue_seconds,
        "enqueue_per_second": n / enqueue_seconds,
        "phases_us_per_message": {p: s / n * 1e6 for p, s in sorted(phases.items())},
        "phases_share": {p: s / seconds for p, s in sorted(phases.items())},
    }


async def _senders_alone(channel: str, n: int, port: int, pool: int) -> dict[str, Any]:
    """The sender fed envelopes by ``WORKERS`` coroutines, as the dispatcher would, no outbox."""
    from channels.base import Envelope

    sender = _sender(channel, port, pool)
    label = secrets.token_hex(4)
    envelopes = [
        Envelope(d.delivery_id, d.channel, d.address, d.content, d.person_id, d.campaign_id)
        for d in _deliveries(channel, n, port, f"alone-{label}")
    ]
    statuses: Counter[str] = Counter()
    queue = iter(envelopes)

    async def worker() -> None:
        for envelope in queue:
            statuses[(await sender.send(envelope)).status] += 1

    cpu, started = _cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    await sender.aclose()
    if statuses != Counter({"sent": n}):
        raise SystemExit(f"{channel} sender: not every envelope was sent: {statuses}")
    return _rate(n, seconds, cpu)


async def _aiohttp_baseline(n: int, port: int, concurrency: int) -> dict[str, Any]:
    """A hand-written client: pre-serialised bodies posted over ``concurrency`` connections.

    aiohttp, the webhook sender's own client library, so the ratio compares like with like.
    """
    import aiohttp

    url = f"http://127.0.0.1:{port}/hooks/orders"
    bodies = [
        json.dumps(webhook_body(i), ensure_ascii=False, separators=(",", ":")).encode()
        for i in range(n)
    ]
    headers = {"Content-Type": "application/json"}
    statuses: Counter[int] = Counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(bodies)

        async def worker() -> None:
            for body in queue:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    statuses[response.status] += 1

        cpu, started = _cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    if statuses != Counter({200: n}):
        raise SystemExit(f"aiohttp baseline: not every post was answered 200: {statuses}")
    return _rate(n, seconds, cpu)


def _smtplib_baseline(n: int, port: int, pool: int) -> dict[str, Any]:
    """A hand-written client: ``pool`` threads, one connection each, pre-built messages.

    The messages are one message built by ``SmtpSender`` (so they have its size) with the
    delivery id and address swapped in, made before the clock starts.
    """
    from channels.base import Envelope
    from channels.email import SmtpSender

    builder = SmtpSender(smtp_settings(port, 1))
    template, _ = builder.message_bytes(
        Envelope("d_TEMPLATE", "email", "TEMPLATE@example.test", email_content(0))
    )
    run = secrets.token_hex(4)
    messages = [
        (
            f"customer{i}@example.test",
            template.replace(b"d_TEMPLATE", f"d_{run}_{i}".encode()).replace(
                b"TEMPLATE@example.test", f"customer{i}@example.test".encode()
            ),
        )
        for i in range(n)
    ]
    asyncio.run(builder.aclose())

    def send_share(share: Sequence[tuple[str, bytes]]) -> int:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as connection:
            connection.ehlo("bench.example")
            for to, data in share:
                connection.sendmail(FROM, [to], data)
        return len(share)

    cpu, started = _cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(pool) as threads:
        sent = sum(threads.map(send_share, [messages[k::pool] for k in range(pool)]))
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    if sent != n:
        raise SystemExit(f"smtplib baseline: sent {sent} of {n}")
    return _rate(n, seconds, cpu)


def _rate(n: int, seconds: float, cpu: float) -> dict[str, Any]:
    return {
        "messages": n,
        "seconds": seconds,
        "messages_per_second": n / seconds,
        "cpu_seconds": cpu,
        "messages_per_cpu_second": n / cpu,
    }


def measure(case: str, n: int, port: int, pool: int) -> None:
    """Child process: run one case; print its JSON (with this process's peak RSS)."""
    if case == "dispatch_webhook":
        result = asyncio.run(_dispatch("webhook", n, port, pool))
    elif case == "dispatch_null":
        result = asyncio.run(_dispatch("null", n, port, pool))
    elif case == "dispatch_email":
        result = asyncio.run(_dispatch("email", n, port, pool))
    elif case == "sender_webhook":
        result = asyncio.run(_senders_alone("webhook", n, port, pool))
    elif case == "sender_email":
        result = asyncio.run(_senders_alone("email", n, port, pool))
    elif case == "baseline_aiohttp":
        result = asyncio.run(_aiohttp_baseline(n, port, pool))
    elif case == "baseline_smtplib":
        result = _smtplib_baseline(n, port, pool)
    elif case == "policy":
        result = bench_policy(n)
    else:
        raise SystemExit(f"unknown case {case}")
    result["peak_rss_mib"] = _peak_rss_mib()
    print(json.dumps(result))


def run_case(case: str, n: int, on: Sink | None = None, pool: int = 0) -> dict[str, Any]:
    """Run ``case`` in a child process; check that ``on`` received exactly ``n`` of it."""
    before = on.stats() if on else None
    command = [sys.executable, __file__, "--measure", case, str(n), str(on.port if on else 0)]
    done = subprocess.run([*command, str(pool)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{case} failed:\n{done.stderr}{done.stdout}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if on is not None and before is not None:
        after = on.stats()
        received = after["received"] - before["received"]
        keys = after["distinct_keys"] - before["distinct_keys"]
        if received != n:
            raise SystemExit(f"{case}: the {on.kind} sink received {received} of {n} messages")
        keyed = not case.startswith("baseline_aiohttp")
        if keyed and keys != n:
            raise SystemExit(f"{case}: {keys} distinct idempotency keys arrived for {n} messages")
        result["sink"] = {
            "kind": on.kind,
            "received": received,
            "distinct_keys": keys,
            # Of one core, over the measured seconds (the sink idles while the case starts).
            "cpu_share": (after["cpu_seconds"] - before["cpu_seconds"]) / result["seconds"],
        }
    print(case, pool or "", json.dumps(result), flush=True)
    return result


# --- policies --------------------------------------------------------------------------------

POLICY_CHANNELS = ("email", "sms", "push", "webhook")
ZONES = (None,) * 7 + ("Asia/Tehran", "Asia/Tehran", "Europe/Berlin", "GMT+3:30 Tehran")
PEOPLE = 10_000
HISTORY = 20
# 09:30 in Tehran on a Saturday (the first day of the Iranian week): the day's messages start
# outside DND, so a send shortly before it can still hold one back by the min gap.
BASE = datetime(2026, 1, 10, 6, 0, tzinfo=UTC)


def _policy_world(
    n: int,
) -> tuple[list[tuple], list[tuple], dict[int, list[tuple[str, datetime, bool]]]]:
    """People (zone, unsubscribed, reachable), their histories and N messages over one day."""
    rng = random.Random(7)
    people = []
    history: dict[int, list[tuple[str, datetime, bool]]] = {}
    for p in range(PEOPLE):
        unsubscribed = frozenset(["news"] if rng.random() < 0.1 else [])
        reachable = frozenset(c for c in POLICY_CHANNELS if rng.random() < 0.9)
        people.append((rng.choice(ZONES), unsubscribed, reachable))
        sends = [
            (
                rng.choice(POLICY_CHANNELS),
                BASE - timedelta(seconds=rng.uniform(0, 30 * 86400)),
                rng.random() < 0.1,
            )
            for _ in range(HISTORY)
        ]
        history[p] = sorted(sends, key=lambda s: s[1])
    messages = []
    for i in range(n):
        now = BASE + timedelta(seconds=i * 86400 / n)
        category = rng.choice(("promotions", "promotions", "news", "transactional"))
        expires = now + timedelta(hours=6) if rng.random() < 0.3 else None
        messages.append(
            (f"d{i}", rng.randrange(PEOPLE), rng.choice(POLICY_CHANNELS), category, expires, now)
        )
    return people, messages, history


def bench_policy(n: int) -> dict[str, Any]:
    """``decide()`` against the same rules inline over tuples; µs per message and agreement."""
    from safar.delivery.policy import (
        Cap,
        DndWindow,
        Message,
        MinGap,
        PolicySettings,
        Recipient,
        Sent,
        decide,
    )
    from safar.delivery.throttle import Throttle

    settings = PolicySettings(
        dnd=DndWindow(clock_time(22), clock_time(8)),
        caps=(Cap(3, "day"), Cap(4, "week", "push"), Cap(8, "month")),
        min_gaps=(MinGap(timedelta(hours=4)),),
    )
    # sms messages come at ~35 a minute, so a throttle of 12 a minute holds some back.
    throttle_rates = {"sms": 12}
    people, messages, history = _policy_world(n)

    recipients = [
        Recipient(f"p{p}", reachable, unsubscribed, zone)
        for p, (zone, unsubscribed, reachable) in enumerate(people)
    ]
    ledgers = {p: [Sent(c, at, t) for c, at, t in sends] for p, sends in history.items()}
    inputs = [
        (Message(d, f"p{p}", channel, category, expires), recipients[p], ledgers[p], now)
        for d, p, channel, category, expires, now in messages
    ]
    throttle = Throttle(dict(throttle_rates))
    started = time.perf_counter()
    engine = [
        decide(message, recipient, settings, ledger, throttle, now)
        for message, recipient, ledger, now in inputs
    ]
    engine_seconds = time.perf_counter() - started

    started = time.perf_counter()
    inline = _inline_policies(messages, people, history, throttle_rates)
    inline_seconds = time.perf_counter() - started

    engine_answers = [(d.action, d.policy, d.not_before) for d in engine]
    wrong = [i for i, (a, b) in enumerate(zip(engine_answers, inline, strict=True)) if a != b]
    if wrong:
        first = wrong[0]
        raise SystemExit(
            f"policies: the inline rules disagree on {len(wrong)} of {n} messages, first "
            f"{messages[first]}: decide {engine_answers[first]}, inline {inline[first]}"
        )
    return {
        "messages": n,
        "people": PEOPLE,
        "history_per_person": HISTORY,
        "decide_us_per_message": engine_seconds / n * 1e6,
        "inline_us_per_message": inline_seconds / n * 1e6,
        "time_ratio": engine_seconds / inline_seconds,
        "same_decisions": True,
        "decisions": dict(Counter(f"{d.action}:{d.policy}" for d in engine).most_common()),
    }


def _inline_policies(
    messages: Sequence[tuple],
    people: Sequence[tuple],
    history: Mapping[int, Sequence[tuple[str, datetime, bool]]],
    throttle_rates: Mapping[str, int],
) -> list[tuple[str, str, datetime | None]]:
    """The bench's policies written by hand: one function, plain tuples, a cache of zones.

    Same rules and order as ``decide()`` with the bench's settings (DND 22:00–08:00 queued;
    3/day, 4/week on push, 8/month; 4 h min gap; sms throttled), minus the reason texts.
    """
    zones: dict[str | None, ZoneInfo] = {}
    workspace = ZoneInfo("Asia/Tehran")
    dnd_start, dnd_end = clock_time(22), clock_time(8)
    caps = ((3, "day", None), (4, "week", "push"), (8, "month", None))
    gap = timedelta(hours=4)
    buckets: dict[str, list] = {}
    answers: list[tuple[str, str, datetime | None]] = []
    for _, p, channel, category, expires, now in messages:
        zone_name, unsubscribed, reachable = people[p]
        zone = zones.get(zone_name)
        if zone is None:
            try:
                zone = ZoneInfo(zone_name) if zone_name else workspace
            except (ZoneInfoNotFoundError, ValueError):
                zone = workspace
            zones[zone_name] = zone
        marketing = category != "transactional"
        held: tuple[str, str, datetime | None] | None = None
        if marketing and ("*" in unsubscribed or category in unsubscribed):
            held = ("drop", "subscription", None)
        elif channel not in reachable:
            held = ("drop", "reachability", None)
        elif marketing:
            local = now.astimezone(zone)
            at = local.time()
            if at >= dnd_start or at < dnd_end:
                day = local.date() if at < dnd_end else local.date() + timedelta(days=1)
                ends = datetime.combine(day, dnd_end, tzinfo=zone).astimezone(UTC)
                held = ("queue", "dnd", ends)
            else:
                today = local.date()
                counted = [(c, s.astimezone(zone).date(), s) for c, s, t in history[p] if not t]
                starts = {
                    "day": today,
                    "week": today - timedelta(days=(today.weekday() - 5) % 7),
                    "month": today.replace(day=1),
                }
                for count, period, only in caps:
                    if only not in (None, channel):
                        continue
                    start = starts[period]
                    used = sum(
                        1
                        for c, day, _ in counted
                        if (only is None or c == only) and start <= day <= today
                    )
                    if used >= count:
                        held = ("drop", "frequency_cap", None)
                        break
                if held is None and counted:
                    ready = max(s for _, _, s in counted) + gap
                    if now < ready:
                        held = ("queue", "min_gap", ready)
        if held is None:
            if expires is not None and now >= expires:
                answers.append(("drop", "ttl", None))
                continue
            rate = throttle_rates.get(channel)
            if rate:
                bucket = buckets.get(channel)
                if bucket is None:
                    bucket = buckets[channel] = [float(max(1, math.ceil(rate / 60))), now]
                capacity = float(max(1, math.ceil(rate / 60)))
                elapsed = max((now - bucket[1]).total_seconds(), 0.0)
                bucket[0] = min(capacity, bucket[0] + elapsed * rate / 60)
                bucket[1] = max(bucket[1], now)
                if bucket[0] >= 1.0:
                    bucket[0] -= 1.0
                else:
                    ready = now + timedelta(seconds=(1.0 - bucket[0]) * 60 / rate)
                    held = ("queue", "throttle", ready)
            if held is None:
                answers.append(("send", "none", None))
                continue
        if expires is not None and held[0] != "drop":
            if now >= expires or (held[2] is not None and held[2] >= expires):
                held = ("drop", "ttl", None)
        answers.append(held)
    return answers


# --- the run ----------------------------------------------------------------------------------


def _ratio(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    return a["messages_per_second"] / b["messages_per_second"]


def _compare(channel: str, n: int, on: Sink, pool: int) -> dict[str, Any]:
    """The dispatcher, the sender alone and the hand-written baseline at one pool size."""
    baseline = "baseline_aiohttp" if channel == "webhook" else "baseline_smtplib"
    runs = {
        "dispatcher": run_case(f"dispatch_{channel}", n, on, pool),
        "sender_alone": run_case(f"sender_{channel}", n, on, pool),
        baseline: run_case(baseline, n, on, pool),
    }
    runs["ratios"] = {
        "dispatcher_vs_baseline": _ratio(runs["dispatcher"], runs[baseline]),
        "sender_vs_baseline": _ratio(runs["sender_alone"], runs[baseline]),
        "dispatcher_vs_sender": _ratio(runs["dispatcher"], runs["sender_alone"]),
    }
    return runs


def measure_webhook(n: int) -> dict[str, Any]:
    """Webhooks at the shipped pool size and at 4, and the outbox's own cost."""
    from channels.webhook import WebhookSettings

    webhook: dict[str, Any] = {}
    with sink("http") as http:
        # The shipped pool size, then a small one: pool bookkeeping can grow with its size.
        for pool in dict.fromkeys((WebhookSettings().max_connections, 4)):
            webhook[f"max_connections_{pool}"] = _compare("webhook", n, http, pool)
    webhook["outbox_internal_cost"] = run_case("dispatch_null", n)
    return webhook


def measure_email(n: int) -> dict[str, Any]:
    """Email with pools of 4 and 8 connections, and aiosmtpd against the bench's own sink."""
    email: dict[str, Any] = {}
    with sink("smtp") as smtp:
        for pool in (4, 8):
            email[f"pool_{pool}"] = _compare("email", n, smtp, pool)
    with sink("aiosmtpd") as aiosmtpd:
        aiosmtpd_sink = run_case("baseline_smtplib", n, aiosmtpd, 8)
    raw_sink = email["pool_8"]["baseline_smtplib"]
    email["sink_used"] = "the bench's own asyncio SMTP server on uvloop"
    email["sink_comparison_smtplib_pool_8"] = {
        "raw_asyncio_messages_per_second": raw_sink["messages_per_second"],
        "raw_asyncio_sink_cpu_share": raw_sink["sink"]["cpu_share"],
        "aiosmtpd_messages_per_second": aiosmtpd_sink["messages_per_second"],
        "aiosmtpd_sink_cpu_share": aiosmtpd_sink["sink"]["cpu_share"],
        "aiosmtpd_vs_raw": _ratio(aiosmtpd_sink, raw_sink),
    }
    return email


def measure_part(args: argparse.Namespace) -> dict[str, Any]:
    """One part of the bench (``--only``), with the counts given or the full run's."""
    if args.only == "webhook":
        return measure_webhook(args.webhooks or 10_000)
    if args.only == "email":
        return measure_email(args.emails or 2_000)
    return run_case("policy", args.decisions or 200_000)


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N, nothing written")
    parser.add_argument("--webhooks", type=int, help="webhook deliveries per run")
    parser.add_argument("--emails", type=int, help="email deliveries per run")
    parser.add_argument("--decisions", type=int, help="messages through decide()")
    parser.add_argument(
        "--only",
        choices=("webhook", "email", "policies"),
        help="measure one part and only print it (while tuning that part)",
    )
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        serve_sink(args.sink)
        return
    if args.measure:
        case, n, port, pool = args.measure
        measure(case, int(n), int(port), int(pool))
        return
    if args.only:
        print(json.dumps(measure_part(args), indent=2, ensure_ascii=False))
        return

    webhooks = args.webhooks or (1_000 if args.quick else 10_000)
    emails = args.emails or (300 if args.quick else 2_000)
    decisions = args.decisions or (10_000 if args.quick else 200_000)
    machine = _machine()
    started = time.perf_counter()

    from channels.webhook import WebhookSettings

    connections = WebhookSettings().max_connections
    webhook = measure_webhook(webhooks)
    email = measure_email(emails)
    policies = run_case("policy", decisions)

    def goal(run: Mapping[str, Any]) -> bool:
        # One dispatcher process: per core means both per wall second and per CPU second.
        return min(run["messages_per_second"], run["messages_per_cpu_second"]) >= GOAL_PER_CORE

    result = {
        "name": "delivery",
        "at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_at_end": os.getloadavg()},
        "goal_messages_per_second_per_core": GOAL_PER_CORE,
        "goal_met": {
            f"webhook_max_connections_{connections}": goal(
                webhook[f"max_connections_{connections}"]["dispatcher"]
            ),
            "webhook_max_connections_4": goal(webhook["max_connections_4"]["dispatcher"]),
            "email_pool_4": goal(email["pool_4"]["dispatcher"]),
            "email_pool_8": goal(email["pool_8"]["dispatcher"]),
        },
        "webhook": webhook,
        "email": email,
        "policies": policies,
        "seconds_total": time.perf_counter() - started,
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.quick:  # a smoke test's small-N figures must not replace a real run's
        print("quick run: results not written")
        return
    out = BENCH_DIR / "results" / "delivery.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
