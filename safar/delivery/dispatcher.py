"""The dispatcher: claims due deliveries, applies the policies, sends, records the outcomes.

One batch is: claim due rows (``queued`` → ``sending``), decide on each with
:func:`safar.delivery.policy.decide` in due order (a person's earlier message in the same batch
counts towards their caps), record the ones held back (queued again for later, or dropped with
a ``Message Dropped`` event), send the rest concurrently through the channels' senders, and
record every outcome with its events. A temporary failure is retried with exponential backoff
and jitter until ``max_attempts``; a hard bounce marks the address dead.

One dispatcher runs per home (:func:`dispatcher_lock`); at start it puts rows a killed
dispatcher left ``sending`` back in the queue (:func:`safar.delivery.outbox.recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from channels.base import Envelope, Outcome, Sender
from safar.config import SafarHome
from safar.delivery import outbox
from safar.delivery.events import EventRow, EventSink, delivery_event, publish_events
from safar.delivery.outbox import Claimed, Transition
from safar.delivery.policy import Message, PolicySettings, Recipient, Sent, decide
from safar.delivery.throttle import Throttle
from safar.writer_lock import LockBusy, release_file_lock, take_file_lock

# The reason vocabulary of ``Message Dropped`` (ARCHITECTURE.md §4), by deciding policy.
DROP_REASONS = {
    "subscription": "unsubscribed",
    "reachability": "unreachable",
    "dnd": "dnd",
    "frequency_cap": "cap",
    "min_gap": "cap",
    "throttle": "throttle",
    "ttl": "expired",
}

# Caps count calendar months in the person's zone; 32 days back covers any month.
_HISTORY = timedelta(days=32)


class DispatcherBusy(RuntimeError):
    """Another dispatcher runs for this home; the message names it."""


@contextlib.contextmanager
def dispatcher_lock(home: SafarHome) -> Iterator[None]:
    """Hold the one-dispatcher-per-home lock; raise :class:`DispatcherBusy` if it is taken."""
    try:
        fd = take_file_lock(home.root / "delivery" / "dispatcher.lock", "dispatcher", wait=False)
    except LockBusy as busy:
        raise DispatcherBusy(f"a dispatcher already runs for {home.root}: {busy}") from None
    try:
        yield
    finally:
        release_file_lock(fd)


@dataclass(frozen=True)
class DispatchSettings:
    """How the dispatcher works, besides the policies."""

    policy: PolicySettings = PolicySettings()
    throttle_per_minute: Mapping[str, int] = field(default_factory=dict)
    batch_size: int = 500
    # Requests in flight per channel; providers are I/O-bound, so many overlap on one core.
    concurrency: int = 64
    max_attempts: int = 8
    backoff_base_seconds: float = 30.0
    backoff_cap_seconds: float = 3600.0
    # Providers that report delivery only when asked (SMS) are asked this often, about
    # messages sent in the last ``poll_window``.
    poll_seconds: float = 60.0
    poll_window: timedelta = timedelta(days=3)


def backoff(
    attempt: int, retry_after: float | None, base: float, cap: float, rng: random.Random
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, jittered, ≥ ``retry_after``.

    "Equal jitter": half the exponential step is fixed, half random, so retries of a burst
    spread out without any coming back immediately.

    Example:
        >>> rng = random.Random(1)
        >>> [round(backoff(a, None, 30, 3600, rng)) for a in (1, 2, 3, 10)]
        [17, 55, 106, 2259]
        >>> backoff(1, 120, 30, 3600, rng)
        120
    """
    step = min(cap, base * 2 ** (attempt - 1))
    delay = step / 2 + rng.uniform(0, step / 2)
    return max(delay, retry_after or 0)


@dataclass
class BatchReport:
    """What batches did, by outcome, and the seconds spent per phase."""

    claimed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)

    def add(self, other: BatchReport) -> None:
        self.claimed += other.claimed
        self.outcomes.update(other.outcomes)
        self.seconds.update(other.seconds)

    def __str__(self) -> str:
        parts = ", ".join(f"{n} {what}" for what, n in sorted(self.outcomes.items()))
        return f"{self.claimed} claimed" + (f": {parts}" if parts else "")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Dispatcher:
    """Sends the outbox's due deliveries through ``senders`` (one per channel)."""

    def __init__(
        self,
        engine: sa.Engine,
        senders: Mapping[str, Sender],
        settings: DispatchSettings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ):
        self.engine = engine
        self.senders = dict(senders)
        self.settings = settings or DispatchSettings()
        self.clock = clock
        self.rng = rng or random.Random()
        self.worker = f"dispatcher-{uuid.uuid4().hex[:12]}"
        self.throttle = Throttle(dict(self.settings.throttle_per_minute))
        self._limits = {
            channel: asyncio.Semaphore(self.settings.concurrency) for channel in self.senders
        }

    async def dispatch_batch(self) -> BatchReport:
        """Claim, decide, send and record one batch; claims nothing when nothing is due."""
        report = BatchReport()
        clock = _Stopwatch(report.seconds)
        now = self.clock()
        with clock("claim"):
            rows = outbox.claim(self.engine, self.worker, now, self.settings.batch_size)
        report.claimed = len(rows)
        if not rows:
            return report
        with clock("decide"):
            to_send, held = self._decide(rows, now)
        with clock("record"):
            outbox.record(self.engine, self.worker, held, now)
        report.outcomes.update(t.state for t in held)
        with clock("send"):
            results = await asyncio.gather(*(self._send(row) for row in to_send))
        now = self.clock()
        with clock("record"):
            done = [
                self._outcome(row, result, now)
                for row, result in zip(to_send, results, strict=True)
            ]
            outbox.record(self.engine, self.worker, done, now)
        report.outcomes.update("retry" if t.state == "queued" else t.state for t in done)
        return report

    async def run(
        self,
        *,
        sink: EventSink | None = None,
        until_idle: bool = False,
        idle_seconds: float = 1.0,
        stop: asyncio.Event | None = None,
    ) -> BatchReport:
        """Dispatch batches until ``stop`` is set (or, with ``until_idle``, nothing is due).

        Events are published to ``sink`` after each batch. Returns the totals.
        """
        total = BatchReport()
        polled = float("-inf")
        while stop is None or not stop.is_set():
            if time.monotonic() - polled >= self.settings.poll_seconds:
                polled = time.monotonic()
                total.outcomes.update(await self.poll_reports())
            report = await self.dispatch_batch()
            total.add(report)
            if sink is not None:
                with _Stopwatch(total.seconds)("publish"):
                    publish_events(self.engine, sink, self.clock())
            if report.claimed:
                continue
            if until_idle:
                break
            await asyncio.sleep(idle_seconds)
        return total

    async def poll_reports(self) -> Counter[str]:
        """Ask polling providers about sent messages and apply their final states."""
        moved: Counter[str] = Counter()
        now = self.clock()
        for sender in self.senders.values():
            poll = getattr(sender, "poll", None)
            if poll is None:
                continue
            with self.engine.connect() as con:
                ids = outbox.awaiting_report(con, sender.provider, now - self.settings.poll_window)
            if not ids:
                continue
            for report in await poll(ids):
                if outbox.apply_report(self.engine, report, self.clock()):
                    moved[report.status] += 1
        return moved

    async def aclose(self) -> None:
        for sender in self.senders.values():
            await sender.aclose()

    def _decide(self, rows: list[Claimed], now: datetime) -> tuple[list[Claimed], list[Transition]]:
        people = sorted({row.person_id for row in rows})
        addresses = [(row.channel, row.address) for row in rows if row.address]
        with self.engine.connect() as con:
            unsubscribed = outbox.unsubscribed(con, people)
            dead = outbox.dead(con, addresses)
            history = {
                person: [Sent(c, _aware(at), t) for c, at, t in sent]
                for person, sent in outbox.sent_history(con, people, now - _HISTORY).items()
            }
        aware_now = _aware(now)
        to_send: list[Claimed] = []
        held: list[Transition] = []
        for row in rows:
            if row.channel not in self.senders:
                detail = f"no provider is configured for the {row.channel} channel"
                held.append(self._final(row, "failed", detail, "Message Failed", now))
                continue
            reachable = bool(row.address) and (row.channel, row.address) not in dead
            decision = decide(
                Message(
                    row.delivery_id,
                    row.person_id,
                    row.channel,
                    row.category,
                    _aware(row.expires_at) if row.expires_at else None,
                ),
                Recipient(
                    row.person_id,
                    frozenset({row.channel}) if reachable else frozenset(),
                    unsubscribed.get(row.person_id, frozenset()),
                    row.time_zone,
                ),
                self.settings.policy,
                history.get(row.person_id, ()),
                self.throttle,
                aware_now,
            )
            if decision.action == "send":
                to_send.append(row)
                history.setdefault(row.person_id, []).append(
                    Sent(row.channel, aware_now, row.category == "transactional")
                )
            elif decision.action == "queue":
                assert decision.not_before is not None
                held.append(
                    Transition(
                        row.delivery_id,
                        "queued",
                        f"{decision.policy}: {decision.reason}",
                        not_before=decision.not_before.astimezone(UTC).replace(tzinfo=None),
                    )
                )
            else:
                event = delivery_event(
                    "Message Dropped",
                    row,
                    now,
                    properties={
                        "reason": DROP_REASONS[decision.policy],
                        "policy": decision.policy,
                        "detail": decision.reason,
                    },
                )
                held.append(Transition(row.delivery_id, "dropped", decision.reason, events=[event]))
        return to_send, held

    async def _send(self, row: Claimed) -> Outcome:
        sender = self.senders[row.channel]
        envelope = Envelope(
            delivery_id=row.delivery_id,
            channel=row.channel,
            to=row.address or "",
            content=row.content,
            person_id=row.person_id,
            campaign_id=row.campaign_id,
            journey_id=row.journey_id,
            ttl_seconds=row.ttl_seconds,
        )
        async with self._limits[row.channel]:
            try:
                return await sender.send(envelope)
            except Exception as exc:  # a sender bug must not take the batch down with it
                return Outcome("retry", sender.provider, f"the sender raised {exc!r}")

    def _outcome(self, row: Claimed, outcome: Outcome, now: datetime) -> Transition:
        provider = {"provider": outcome.provider}
        if outcome.status in ("sent", "delivered"):
            props = {**provider, "in_doubt": row.in_doubt}
            if outcome.provider_message_id:
                props["provider_message_id"] = outcome.provider_message_id
            events = [delivery_event("Message Sent", row, now, properties=props)]
            if outcome.status == "delivered":
                events.append(delivery_event("Message Delivered", row, now, properties=props))
            return Transition(
                row.delivery_id,
                outcome.status,
                outcome.detail,
                provider=outcome.provider,
                provider_message_id=outcome.provider_message_id,
                response=outcome.response,
                sent=True,
                events=events,
            )
        if outcome.status == "retry":
            return self._retry(row, outcome, now)
        if outcome.status == "bounced":
            events = self._bounce_events(row, outcome, now)
            return Transition(
                row.delivery_id,
                "bounced",
                outcome.detail,
                provider=outcome.provider,
                response=outcome.response,
                dead_address=(row.channel, row.address)
                if outcome.address_dead and row.address
                else None,
                events=events,
            )
        return self._final(
            row, "failed", outcome.detail, "Message Failed", now, outcome.provider, outcome
        )

    def _retry(self, row: Claimed, outcome: Outcome, now: datetime) -> Transition:
        s = self.settings
        if row.attempts >= s.max_attempts:
            detail = f"gave up after {row.attempts} attempts: {outcome.detail}"
            return self._final(row, "failed", detail, "Message Failed", now, outcome.provider)
        base, cap = s.backoff_base_seconds, s.backoff_cap_seconds
        wait = backoff(row.attempts, outcome.retry_after, base, cap, self.rng)
        again = now + timedelta(seconds=wait)
        if row.expires_at is not None and again >= row.expires_at:
            event = delivery_event(
                "Message Dropped",
                row,
                now,
                properties={
                    "reason": "expired",
                    "policy": "ttl",
                    "detail": f"expires before the next attempt; last: {outcome.detail}",
                    "provider": outcome.provider,
                },
            )
            return Transition(row.delivery_id, "dropped", outcome.detail, events=[event])
        return Transition(
            row.delivery_id,
            "queued",
            f"attempt {row.attempts} failed, retrying: {outcome.detail}",
            not_before=again,
            provider=outcome.provider,
        )

    def _final(
        self,
        row: Claimed,
        state: str,
        detail: str,
        event: str,
        now: datetime,
        provider: str | None = None,
        outcome: Outcome | None = None,
    ) -> Transition:
        props = {"detail": detail}
        if provider:
            props["provider"] = provider
        return Transition(
            row.delivery_id,
            state,
            detail,
            provider=provider,
            response=outcome.response if outcome else None,
            events=[delivery_event(event, row, now, properties=props)],
        )

    def _bounce_events(self, row: Claimed, outcome: Outcome, now: datetime) -> list[EventRow]:
        props = {"provider": outcome.provider, "detail": outcome.detail}
        events = [delivery_event("Message Bounced", row, now, properties=props)]
        if row.channel == "push" and outcome.address_dead:
            # A dead token means the app is gone from that device (Segment's uninstall event).
            device = {"device": {"token": row.address}}
            for name in ("Push Notification Bounced", "Application Uninstalled"):
                events.append(delivery_event(name, row, now, properties=props, context=device))
        return events


class _Stopwatch:
    """Adds the seconds spent in each ``with watch(phase):`` block to ``seconds[phase]``."""

    def __init__(self, seconds: Counter[str]):
        self.seconds = seconds

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - started


def _aware(naive: datetime) -> datetime:
    return naive.replace(tzinfo=UTC)
