"""Segment evaluation across batches: membership diff and history, time-only exits, replay.

One home, one story, evaluated batch after batch like the micro-batch job does:

| person | carrier (batch 1) | app opens          | orders |
|--------|-------------------|--------------------|--------|
| ali    | Irancell          | Jan 9 10:00        | 2      |
| bita   | Hamrah-e Aval     | Jan 2 10:00        | 1      |
| cyrus  | Irancell          | Jan 10 09:00       | 0      |

Batch 3 adds: bita switches to Irancell and opens the app on Jan 17 11:00.
"""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl
import pytest
from warehouse_helpers import event, land

from safar.build import build
from safar.config import SafarHome
from safar.segments.definitions import SegmentDefinition
from safar.segments.evaluate import evaluate_segments
from safar.segments.membership import (
    ENTERED,
    EXITED,
    SOURCE_ID,
    apply_members,
    event_id,
    members_at,
    size_history,
)
from safar.warehouse import connect

T1 = datetime(2026, 1, 10, 12)  # batch 1
T2 = datetime(2026, 1, 13, 12)  # a clock tick: no new data
T3 = datetime(2026, 1, 17, 12)  # another tick: the 7-day windows have moved past Jan 10
T4 = datetime(2026, 1, 17, 12, 5)  # batch 3: new events

SEGMENTS = [
    SegmentDefinition(
        slug="irancell",
        name="Irancell users",
        kind="sql",
        sql="select person_id as user_id from dim_users where carrier = 'Irancell'",
    ),
    SegmentDefinition(
        slug="active-7d",
        name="Opened the app in the last 7 days",
        kind="builder",
        condition={
            "behaviour": {"event": "Application Opened", "did": True, "time": {"last_days": 7}}
        },
    ),
    SegmentDefinition(
        slug="dormant-7d",
        name="No app open in 7 days",
        kind="sql",
        sql="""
            select person_id as user_id from dim_users
            where person_id not in (
                select person_id from fct_events
                where event_name = 'Application Opened'
                  and occurred_at >= now() - interval 7 day
            )""",
    ),
    SegmentDefinition(
        slug="repeat-buyers",
        name="Repeat buyers",
        kind="builder",
        condition={
            "behaviour": {
                "event": "Order Completed",
                "did": True,
                "count": {"op": "gte", "value": 2},
            }
        },
    ),
    SegmentDefinition(
        slug="irancell-repeat",
        name="Irancell repeat buyers",
        kind="builder",
        condition={"all": [{"segment": "irancell"}, {"segment": "repeat-buyers"}]},
    ),
]


def _person(user: str, carrier: str, *, at: datetime) -> dict:
    return event(
        "identify",
        at=at,
        user_id=user,
        anonymous_id=f"anon-{user}",
        traits={"carrier": carrier, "email": f"{user}@example.com"},
    )


def _opened(user: str, at: datetime) -> dict:
    return event("track", at=at, event="Application Opened", user_id=user)


def _order(user: str, at: datetime, n: int) -> dict:
    return event(
        "track",
        at=at,
        event="Order Completed",
        user_id=user,
        properties={"order_id": f"{user}-{n}", "revenue": 100},
    )


def _batch_one() -> list[dict]:
    return [
        _person("ali", "Irancell", at=datetime(2026, 1, 1, 9)),
        _person("bita", "Hamrah-e Aval", at=datetime(2026, 1, 1, 9)),
        _person("cyrus", "Irancell", at=datetime(2026, 1, 1, 9)),
        _opened("ali", datetime(2026, 1, 9, 10)),
        _opened("bita", datetime(2026, 1, 2, 10)),
        _opened("cyrus", datetime(2026, 1, 10, 9)),
        _order("ali", datetime(2026, 1, 3, 10), 1),
        _order("ali", datetime(2026, 1, 8, 10), 2),
        _order("bita", datetime(2026, 1, 4, 10), 1),
    ]


def _members(home: SafarHome, slug: str, at: datetime) -> list[str]:
    con = connect(home, read_only=True)
    try:
        return members_at(con, slug, at)
    finally:
        con.close()


def _segment_events(home: SafarHome) -> pl.DataFrame:
    files = sorted(home.raw_events.glob("date=*/part-*.parquet"))
    frame = pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")
    return frame.filter(pl.col("source_id") == SOURCE_ID)


def _changes(home: SafarHome, at: datetime) -> set[tuple[str, str, str]]:
    """(segment, event, user) of the membership events stamped ``at``."""
    frame = _segment_events(home).filter(pl.col("timestamp") == at)
    return {
        (json.loads(row["properties"])["segment_id"], row["event"], row["user_id"])
        for row in frame.iter_rows(named=True)
    }


def _by_slug(outcomes) -> dict[str, str]:
    return {o.slug: o.status for o in outcomes}


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> SafarHome:
    home = SafarHome(tmp_path_factory.mktemp("segments_story")).ensure()
    land(home, _batch_one())
    build(home)
    return home


def test_first_batch_enters_everyone_who_qualifies(story: SafarHome) -> None:
    outcomes = evaluate_segments(story, SEGMENTS, as_of=T1, batch_id="b1")
    assert _by_slug(outcomes) == dict.fromkeys(_by_slug(outcomes), "evaluated")
    assert [o.slug for o in outcomes][-1] == "irancell-repeat"  # reads the others' membership
    assert _members(story, "irancell", T1) == ["ali", "cyrus"]
    assert _members(story, "active-7d", T1) == ["ali", "cyrus"]
    assert _members(story, "dormant-7d", T1) == ["bita"]
    assert _members(story, "repeat-buyers", T1) == ["ali"]
    assert _members(story, "irancell-repeat", T1) == ["ali"]
    assert _changes(story, T1) == {
        ("irancell", ENTERED, "ali"),
        ("irancell", ENTERED, "cyrus"),
        ("active-7d", ENTERED, "ali"),
        ("active-7d", ENTERED, "cyrus"),
        ("dormant-7d", ENTERED, "bita"),
        ("repeat-buyers", ENTERED, "ali"),
        ("irancell-repeat", ENTERED, "ali"),
    }


def test_replaying_a_batch_emits_nothing(story: SafarHome) -> None:
    landed = sorted(story.raw_events.glob("date=*/part-*.parquet"))
    again = evaluate_segments(story, SEGMENTS, as_of=T1, batch_id="b1")
    assert {o.status for o in again} == {"skipped"}
    assert all("already evaluated" in o.reason for o in again)
    # The same batch id at a later time is still the same batch.
    later = evaluate_segments(story, SEGMENTS, as_of=T2, batch_id="b1")
    assert {o.status for o in later} == {"skipped"}
    assert sorted(story.raw_events.glob("date=*/part-*.parquet")) == landed


def test_a_clock_tick_rechecks_only_time_relative_segments(story: SafarHome) -> None:
    outcomes = evaluate_segments(story, SEGMENTS, as_of=T2, batch_id="tick-1")
    assert _by_slug(outcomes) == {
        "irancell": "skipped",
        "repeat-buyers": "skipped",
        "active-7d": "evaluated",
        "dormant-7d": "evaluated",
        "irancell-repeat": "skipped",
    }
    # Jan 13 12:00: the windows start Jan 6 12:00; ali (Jan 9) and cyrus (Jan 10) are in.
    assert _members(story, "active-7d", T2) == ["ali", "cyrus"]
    assert _changes(story, T2) == set()


def test_time_alone_moves_people_out_and_in(story: SafarHome) -> None:
    outcomes = evaluate_segments(story, SEGMENTS, as_of=T3, batch_id="tick-2")
    assert _by_slug(outcomes)["active-7d"] == "evaluated"
    # Jan 17 12:00: the window starts Jan 10 12:00, after both last opens.
    assert _members(story, "active-7d", T3) == []
    assert _members(story, "dormant-7d", T3) == ["ali", "bita", "cyrus"]
    assert _changes(story, T3) == {
        ("active-7d", EXITED, "ali"),
        ("active-7d", EXITED, "cyrus"),
        ("dormant-7d", ENTERED, "ali"),
        ("dormant-7d", ENTERED, "cyrus"),
    }
    # History keeps the earlier stays.
    assert _members(story, "active-7d", T2) == ["ali", "cyrus"]


def test_new_events_change_membership_after_the_next_build(story: SafarHome) -> None:
    land(
        story,
        [
            _person("bita", "Irancell", at=datetime(2026, 1, 17, 11)),
            _opened("bita", datetime(2026, 1, 17, 11)),
        ],
    )
    build(story)
    outcomes = evaluate_segments(story, SEGMENTS, as_of=T4, batch_id="b3")
    assert _by_slug(outcomes)["irancell"] == "evaluated"
    assert _members(story, "irancell", T4) == ["ali", "bita", "cyrus"]
    assert _members(story, "active-7d", T4) == ["bita"]
    assert _members(story, "dormant-7d", T4) == ["ali", "cyrus"]
    assert _members(story, "irancell-repeat", T4) == ["ali"]
    assert _changes(story, T4) == {
        ("irancell", ENTERED, "bita"),
        ("active-7d", ENTERED, "bita"),
        ("dormant-7d", EXITED, "bita"),
    }


def test_history_and_sizes(story: SafarHome) -> None:
    con = connect(story, read_only=True)
    try:
        sizes = size_history(con, "active-7d")
        stays = con.execute(
            """select person_id, entered_at, exited_at from segment_membership
            where segment_id = 'active-7d' order by person_id, entered_at"""
        ).fetchall()
    finally:
        con.close()
    assert sizes == [(T1, 2), (T2, 2), (T3, 0), (T4, 1)]
    assert stays == [("ali", T1, T3), ("bita", T4, None), ("cyrus", T1, T3)]


def test_membership_events_reach_the_warehouse_once(story: SafarHome) -> None:
    build(story)
    con = connect(story, read_only=True)
    try:
        rows = con.execute(
            """select person_id, event_name, json_extract_string(properties, '$.segment_id')
            from fct_events where event_name in ('Segment Entered', 'Segment Exited')"""
        ).fetchall()
    finally:
        con.close()
    landed = _segment_events(story)
    assert len(rows) == landed.height == landed["message_id"].n_unique() == 7 + 4 + 3
    assert ("bita", "Segment Exited", "dormant-7d") in rows


def test_a_pass_that_stopped_before_publishing_is_published_next_time(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = SafarHome(tmp_path_factory.mktemp("segments_crash")).ensure()
    land(home, _batch_one())
    build(home)
    segment = SEGMENTS[0]
    con = connect(home)
    try:
        from safar.segments.membership import ensure_tables

        ensure_tables(con)
        # What a crash leaves: the evaluation applied, its events never landed.
        apply_members(
            con,
            segment.slug,
            ["ali", "cyrus"],
            as_of=T1,
            batch_id="b1",
            version=segment.version,
            inputs="x",
        )
    finally:
        con.close()
    assert _segment_events_or_none(home) is None
    evaluate_segments(home, [segment], as_of=T2, batch_id="b2")
    landed = _segment_events(home)
    assert sorted(landed["message_id"].to_list()) == sorted(
        event_id("irancell", person, ENTERED, T1) for person in ("ali", "cyrus")
    )


def _segment_events_or_none(home: SafarHome) -> pl.DataFrame | None:
    frame = _segment_events(home)
    return frame if frame.height else None


def test_a_failing_segment_does_not_stop_the_others(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = SafarHome(tmp_path_factory.mktemp("segments_failing")).ensure()
    land(home, _batch_one())
    build(home)
    broken = SegmentDefinition(
        slug="broken", name="Broken", kind="sql", sql="select carrier as user_id from nowhere"
    )
    outcomes = {
        o.slug: o for o in evaluate_segments(home, [broken, SEGMENTS[0]], as_of=T1, batch_id="b1")
    }
    assert outcomes["broken"].status == "failed"
    assert "unknown table 'nowhere'" in outcomes["broken"].reason
    assert outcomes["irancell"].status == "evaluated"
