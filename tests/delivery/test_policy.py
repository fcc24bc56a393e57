"""Delivery policies with a fixed clock: order, time zones, DND across midnight, caps at a week
boundary in the person's calendar, min gap, throttling, TTL."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, time, timedelta

import pytest

from safar.delivery import policy, throttle
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

TEHRAN_DND = DndWindow(time(22, 0), time(8, 0))  # Asia/Tehran is UTC+03:30 all year


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _message(**overrides) -> Message:
    return Message(
        **{
            "delivery_id": "d1",
            "person_id": "ali",
            "channel": "sms",
            "category": "promotions",
            **overrides,
        }
    )


def _ali(**overrides) -> Recipient:
    return Recipient(**{"person_id": "ali", "reachable": frozenset({"sms", "email"}), **overrides})


def _decide(message=None, recipient=None, settings=None, history=(), now=None, bucket=None):
    return decide(
        message or _message(),
        recipient or _ali(),
        settings or PolicySettings(),
        list(history),
        bucket or Throttle({}),
        now or _utc(2026, 1, 10, 10, 0),
    )


@pytest.mark.parametrize("module", [policy, throttle])
def test_doctests_pass(module: object) -> None:
    assert doctest.testmod(module).failed == 0


def test_the_first_policy_that_holds_a_message_back_decides() -> None:
    settings = PolicySettings(dnd=TEHRAN_DND)
    at_night = _utc(2026, 1, 10, 20, 0)  # 23:30 in Tehran
    everything_wrong = _ali(unsubscribed=frozenset({"promotions"}), reachable=frozenset())
    first = _decide(recipient=everything_wrong, settings=settings, now=at_night)
    assert (first.action, first.policy) == ("drop", "subscription")
    assert first.reason == "unsubscribed from 'promotions'"

    unreachable = _decide(recipient=_ali(reachable=frozenset()), settings=settings, now=at_night)
    assert (unreachable.action, unreachable.policy) == ("drop", "reachability")
    assert unreachable.reason == "not reachable on sms"

    dnd = _decide(settings=settings, now=at_night)
    assert (dnd.action, dnd.policy) == ("queue", "dnd")


def test_unsubscribing_from_all_marketing_still_lets_transactional_through() -> None:
    everyone_off = _ali(unsubscribed=frozenset({"*"}))
    assert _decide(recipient=everyone_off).reason == "unsubscribed from all marketing messages"
    receipt = _message(category="transactional")
    assert _decide(message=receipt, recipient=everyone_off).action == "send"
    # ... but not to a channel the person cannot be reached on.
    assert _decide(message=_message(category="transactional", channel="push")).action == "drop"


def test_dnd_across_midnight_in_the_persons_zone_waits_for_the_morning() -> None:
    settings = PolicySettings(dnd=TEHRAN_DND)
    before = _decide(settings=settings, now=_utc(2026, 1, 10, 18, 29))  # 21:59 Tehran
    assert before.action == "send"
    evening = _decide(settings=settings, now=_utc(2026, 1, 10, 18, 30))  # 22:00 Tehran
    assert evening.not_before == _utc(2026, 1, 11, 4, 30)  # 08:00 Tehran next day
    assert evening.reason == "inside the do-not-disturb window 22:00–08:00 Asia/Tehran"
    after_midnight = _decide(settings=settings, now=_utc(2026, 1, 10, 22, 0))  # 01:30, Jan 11
    assert after_midnight.not_before == _utc(2026, 1, 11, 4, 30)
    assert _decide(settings=settings, now=_utc(2026, 1, 11, 4, 29)).action == "queue"
    assert _decide(settings=settings, now=_utc(2026, 1, 11, 4, 30)).action == "send"


def test_a_person_in_another_zone_has_their_own_night() -> None:
    settings = PolicySettings(dnd=TEHRAN_DND)
    berlin = _ali(time_zone="Europe/Berlin")
    now = _utc(2026, 1, 10, 20, 0)  # 23:30 in Tehran, 21:00 in Berlin
    assert _decide(settings=settings, now=now).action == "queue"
    assert _decide(recipient=berlin, settings=settings, now=now).action == "send"
    night = _decide(recipient=berlin, settings=settings, now=_utc(2026, 1, 10, 21, 0))
    assert night.not_before == _utc(2026, 1, 11, 7, 0)  # 08:00 in Berlin (UTC+1)


def test_dnd_can_drop_and_transactional_messages_ignore_it() -> None:
    dropping = PolicySettings(dnd=DndWindow(time(22, 0), time(8, 0), action="drop"))
    night = _utc(2026, 1, 10, 20, 0)
    dropped = _decide(settings=dropping, now=night)
    assert (dropped.action, dropped.policy) == ("drop", "dnd")
    otp = _message(category="transactional")
    assert _decide(message=otp, settings=dropping, now=night).action == "send"


def test_a_weekly_cap_resets_at_the_start_of_the_persons_week() -> None:
    # The Iranian week starts on Saturday. Two SMS on Thursday and Friday (Tehran time).
    settings = PolicySettings(caps=(Cap(2, "week", "sms"),))
    history = [
        Sent("sms", _utc(2026, 1, 8, 9, 0)),  # Thursday 12:30 Tehran
        Sent("sms", _utc(2026, 1, 9, 20, 0)),  # Friday 23:30 Tehran
    ]
    friday_late = _decide(settings=settings, history=history, now=_utc(2026, 1, 9, 20, 15))
    assert (friday_late.action, friday_late.policy) == ("drop", "frequency_cap")
    assert friday_late.reason == "2 per week on sms already sent"
    # 20:45 UTC on Friday is 00:15 on Saturday in Tehran: a new week there.
    saturday = _decide(settings=settings, history=history, now=_utc(2026, 1, 9, 20, 45))
    assert saturday.action == "send"
    # With a Monday week, Saturday is still the same week.
    monday_weeks = PolicySettings(caps=(Cap(2, "week", "sms"),), week_starts_on=0)
    again = _decide(settings=monday_weeks, history=history, now=_utc(2026, 1, 9, 20, 45))
    assert again.action == "drop"


def test_caps_over_all_channels_count_every_marketing_message_but_no_transactional_one() -> None:
    settings = PolicySettings(caps=(Cap(2, "day"),))
    history = [
        Sent("email", _utc(2026, 1, 10, 6, 0)),
        Sent("sms", _utc(2026, 1, 10, 7, 0), transactional=True),
    ]
    assert _decide(settings=settings, history=history).action == "send"
    history.append(Sent("sms", _utc(2026, 1, 10, 8, 0)))
    capped = _decide(settings=settings, history=history)
    assert capped.reason == "2 per day on all channels already sent"
    # Yesterday (Tehran calendar) does not count towards today.
    yesterday = [Sent("email", _utc(2026, 1, 9, 20, 0)), Sent("sms", _utc(2026, 1, 9, 20, 10))]
    assert _decide(settings=settings, history=yesterday).action == "send"
    assert (
        _decide(
            message=_message(category="transactional"), settings=settings, history=history
        ).action
        == "send"
    )


def test_a_minimum_gap_makes_the_message_wait() -> None:
    settings = PolicySettings(min_gaps=(MinGap(timedelta(hours=4), "sms"),))
    history = [Sent("sms", _utc(2026, 1, 10, 8, 0)), Sent("email", _utc(2026, 1, 10, 9, 30))]
    waiting = _decide(settings=settings, history=history, now=_utc(2026, 1, 10, 10, 0))
    assert (waiting.action, waiting.policy) == ("queue", "min_gap")
    assert waiting.not_before == _utc(2026, 1, 10, 12, 0)
    assert (
        _decide(
            message=_message(channel="email"),
            settings=settings,
            history=history,
            now=_utc(2026, 1, 10, 10, 0),
        ).action
        == "send"
    )


def test_throttling_queues_for_the_next_token_and_spends_none_on_held_messages() -> None:
    bucket = Throttle({"sms": 120})  # two a second
    now = _utc(2026, 1, 10, 10, 0)
    decisions = [_decide(bucket=bucket, now=now) for _ in range(3)]
    assert [d.action for d in decisions] == ["send", "send", "queue"]
    assert decisions[2].policy == "throttle"
    assert decisions[2].not_before == now + timedelta(seconds=0.5)
    # An unreachable person is dropped before the bucket is asked: no token is spent.
    later = now + timedelta(seconds=1)
    assert _decide(recipient=_ali(reachable=frozenset()), bucket=bucket, now=later).action == "drop"
    assert [_decide(bucket=bucket, now=later).action for _ in range(3)] == ["send", "send", "queue"]


def test_the_queue_ttl_drops_what_is_or_would_be_stale() -> None:
    now = _utc(2026, 1, 10, 20, 0)  # 23:30 Tehran, inside DND until 04:30 UTC
    expired = _decide(message=_message(expires_at=now), now=now)
    assert (expired.action, expired.policy) == ("drop", "ttl")
    assert expired.reason == "expired at 2026-01-10 20:00:00 UTC"
    flash_sale = _message(expires_at=_utc(2026, 1, 11, 0, 0))
    stale = _decide(message=flash_sale, settings=PolicySettings(dnd=TEHRAN_DND), now=now)
    assert (stale.action, stale.policy) == ("drop", "ttl")
    assert "before it could go (dnd: inside the do-not-disturb window" in stale.reason
    fresh = _message(expires_at=_utc(2026, 1, 11, 6, 0))
    kept = _decide(message=fresh, settings=PolicySettings(dnd=TEHRAN_DND), now=now)
    assert (kept.action, kept.not_before) == ("queue", _utc(2026, 1, 11, 4, 30))
    # An expired message takes no throttle token.
    bucket = Throttle({"sms": 60})
    assert _decide(message=_message(expires_at=now), bucket=bucket, now=now).policy == "ttl"
    assert _decide(bucket=bucket, now=now).action == "send"
