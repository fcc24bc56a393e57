"""Live stats on hand-made events landed at known times around an injected ``now``."""

from __future__ import annotations

import itertools
import logging
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from safar.build import build
from safar.config import DBT_PROJECT_DIR, SafarHome
from safar.lake import LakeWriter, new_file_id
from safar.live import (
    ACTIVE_WINDOW,
    INACTIVE_EVENTS,
    SERIES_MINUTES,
    TOP_LIMIT,
    live_stats,
    recent_files,
)

# Mid-minute and mid-second, so minute buckets and window edges are not the same instant.
NOW = datetime(2026, 3, 10, 12, 30, 20, 500_000)
TODAY = datetime(2026, 3, 10)
MINUTE = NOW.replace(second=0, microsecond=0)

_ids = itertools.count()


def event(
    received: datetime,
    *,
    user: str | None = None,
    anon: str | None = None,
    type: str = "track",
    name: str | None = "Product Viewed",
    occurred: datetime | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """One raw row; ``occurred`` (the corrected timestamp) defaults to ``received``."""
    return {
        "message_id": columns.pop("message_id", f"m{next(_ids)}"),
        "type": type,
        "event": name if type in ("track", "page", "screen") else None,
        "user_id": user,
        "anonymous_id": anon,
        "timestamp": occurred or received,
        "received_at": received,
        **columns,
    }


def land(home: SafarHome, *rows: dict[str, Any]) -> list[Path]:
    """Write ``rows`` as the gateway would: one landing file per received date."""
    result = LakeWriter(home).write(pl.DataFrame(list(rows), infer_schema_length=None))
    assert result.rejected == 0, result.rejected_file.read_text()
    return result.files


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


@pytest.fixture
def home(tmp_path: Path) -> SafarHome:
    return SafarHome(tmp_path / "home").ensure()


def stats_of(home: SafarHome, **kwargs: Any):
    stats = live_stats(home, NOW, **kwargs)
    # The two splits of "active now" always add up.
    assert stats.known_people + stats.unknown_people == stats.active_people
    assert stats.new_people + stats.returning_people == stats.active_people
    return stats


def test_an_empty_landing_zone_gives_zeros_and_a_full_zero_series(home: SafarHome) -> None:
    stats = stats_of(home)

    assert (stats.active_people, stats.known_people, stats.new_people) == (0, 0, 0)
    assert stats.events_per_minute.height == SERIES_MINUTES
    assert stats.events_per_minute["events"].sum() == 0
    assert stats.top_events.is_empty() and stats.top_pages.is_empty()
    assert stats.last_received_at is None
    assert stats.files_read == 0 and not stats.used_warehouse


def test_the_active_window_is_the_last_five_minutes_excluding_its_start(home: SafarHome) -> None:
    land(
        home,
        event(NOW - ACTIVE_WINDOW, anon="exactly-five-minutes-ago"),
        event(NOW - ACTIVE_WINDOW + timedelta(microseconds=1), anon="just-inside"),
        event(NOW, anon="right-now"),
        event(NOW + timedelta(microseconds=1), anon="after-now"),
        event(ago(minutes=30), anon="half-an-hour-ago"),
    )

    stats = stats_of(home)

    assert stats.active_people == 2  # just-inside, right-now
    assert stats.last_received_at == NOW
    # Events after `now` are not there yet, not even in the chart or the tables.
    assert stats.events_per_minute["events"].sum() == 4
    assert stats.top_events.row(0) == ("Product Viewed", 3, 3)  # half an hour ago is out


def test_active_means_received_recently_whatever_the_event_time(home: SafarHome) -> None:
    land(
        home,
        # A phone that was offline sends an hour-old event now: the person is here now.
        event(ago(minutes=1), anon="late-batch", occurred=ago(hours=1)),
        # An event that happened a minute ago but arrived ten minutes ago is not "now".
        event(ago(minutes=10), anon="early-arrival", occurred=ago(minutes=1)),
    )

    assert stats_of(home).active_people == 1


def test_events_per_minute_is_sixty_clock_minutes_zero_filled(home: SafarHome) -> None:
    first_minute = MINUTE - timedelta(minutes=SERIES_MINUTES - 1)
    land(
        home,
        event(first_minute - timedelta(microseconds=1), anon="a"),  # before the series
        event(first_minute, anon="a"),
        event(MINUTE - timedelta(minutes=7, seconds=-59), anon="b"),
        event(MINUTE - timedelta(minutes=7), anon="b"),
        event(MINUTE - timedelta(minutes=7), anon="b", type="identify", traits='{"x": 1}'),
        event(MINUTE - timedelta(minutes=7), user="u1", name="Message Sent"),
        event(NOW, anon="c", type="page", name="Home"),
    )

    series = stats_of(home).events_per_minute

    assert series.columns == ["minute", "events", "activity_events"]
    assert series["minute"].to_list() == [
        first_minute + timedelta(minutes=i) for i in range(SERIES_MINUTES)
    ]
    counts = {
        row["minute"]: (row["events"], row["activity_events"])
        for row in series.iter_rows(named=True)
    }
    assert counts[first_minute] == (1, 1)
    # The identify and the platform's "Message Sent" landed, but nobody did anything.
    assert counts[MINUTE - timedelta(minutes=7)] == (4, 2)
    assert counts[MINUTE] == (1, 1)  # the minute in progress is the last bar
    assert series["events"].sum() == 6
    assert (series["events"] == 0).sum() == SERIES_MINUTES - 3


def test_a_burst_counts_events_once_each_and_people_once(home: SafarHome) -> None:
    burst_minute = MINUTE - timedelta(minutes=2)
    land(
        home,
        *(
            event(burst_minute + timedelta(milliseconds=100 * i), anon=f"p{i % 3}")
            for i in range(500)
        ),
    )
    # An SDK retry lands a message again in another file: it counts once.
    land(home, event(burst_minute, anon="p0", message_id="m-retried"))
    land(home, event(burst_minute + timedelta(seconds=5), anon="p0", message_id="m-retried"))

    stats = stats_of(home)

    assert stats.active_people == 3
    per_minute = dict(stats.events_per_minute.select("minute", "events").iter_rows())
    assert per_minute[burst_minute] == 501
    assert stats.top_events.to_dicts() == [{"event": "Product Viewed", "events": 501, "people": 3}]


def test_known_people_have_or_were_linked_to_a_user_id(home: SafarHome) -> None:
    land(
        home,
        # Signed in now.
        event(ago(minutes=1), user="u-signed-in", anon="a-signed-in"),
        # Anonymous now, but identified this morning: one known person, with their own events.
        event(ago(hours=3), user="u-morning", anon="a-morning", type="identify"),
        event(ago(minutes=2), anon="a-morning", type="page", name="Home"),
        event(ago(minutes=3), user="u-morning", name="Order Completed"),
        # Aliased: the old id is the new user's.
        event(ago(hours=2), user="u-aliased", type="alias", previous_id="old-id"),
        event(ago(minutes=1), anon="old-id"),
        # Never identified.
        event(ago(minutes=1), anon="a-stranger"),
        event(ago(minutes=4), anon="a-stranger", type="screen", name="Cart"),
    )

    stats = stats_of(home)

    assert (stats.active_people, stats.known_people, stats.unknown_people) == (4, 3, 1)
    pages = {row["page"]: row for row in stats.top_pages.to_dicts()}
    assert pages["Home"]["people"] == 1 and pages["Cart"]["people"] == 1


def test_new_people_were_first_seen_today(home: SafarHome) -> None:
    land(
        home,
        # Seen yesterday (landed in yesterday's folder), back now: returning.
        event(TODAY - timedelta(hours=1), anon="a-yesterday"),
        event(ago(minutes=1), anon="a-yesterday"),
        # First seen this morning: new all day.
        event(TODAY + timedelta(minutes=5), anon="a-this-morning"),
        event(ago(minutes=1), anon="a-this-morning"),
        # Arrived today, but it happened yesterday (an offline phone): seen before today.
        event(ago(minutes=30), anon="a-offline", occurred=TODAY - timedelta(minutes=10)),
        event(ago(minutes=1), anon="a-offline"),
        # Seen yesterday anonymously, signed in now: the link makes it the same person.
        event(TODAY - timedelta(hours=2), anon="a-signed-in-later"),
        event(ago(minutes=1), user="u-signed-in-later", anon="a-signed-in-later"),
        # First ever event, now.
        event(ago(minutes=1), anon="a-brand-new"),
    )
    # Seen three days ago only: beyond the two folders read, so without a warehouse they look
    # new (the documented limit; the warehouse remembers them, see the warehouse test).
    land(home, event(TODAY - timedelta(days=3), anon="a-long-ago"))
    land(home, event(ago(minutes=1), anon="a-long-ago"))

    stats = stats_of(home)

    assert stats.active_people == 6
    assert (stats.new_people, stats.returning_people) == (3, 3)


def test_the_platforms_own_events_are_not_someone_being_active(home: SafarHome) -> None:
    land(
        home,
        event(ago(minutes=1), user="u1", name="Message Sent"),
        event(ago(minutes=1), user="u2", name="Segment Entered"),
        event(ago(minutes=1), user="u3", name="Push Notification Received"),
        event(ago(minutes=1), user="u4", type="identify", traits='{"plan": "pro"}'),
        event(ago(minutes=1), user="u5", name="Order Completed"),
    )

    stats = stats_of(home)

    assert stats.active_people == 1
    assert stats.top_events["event"].to_list() == ["Order Completed"]
    assert stats.events_per_minute["events"].sum() == 5


def test_top_events_and_pages_rank_the_last_fifteen_minutes(home: SafarHome) -> None:
    land(
        home,
        *(event(ago(minutes=1), anon=f"a{i}", name="Added to Cart") for i in range(3)),
        *(event(ago(minutes=14), anon="a0", name="Searched") for _ in range(3)),
        event(ago(minutes=2), anon="a1", name="Zoomed"),
        event(ago(minutes=16), anon="a1", name="Too Old"),
        *(event(ago(minutes=1), anon="a1", name=f"Event {i:02}") for i in range(TOP_LIMIT)),
        # Pages: by name; unnamed pages by path, without query string or fragment.
        event(ago(minutes=1), anon="a0", type="page", name="Product Detail",
              context_page_url="https://shop.example/p/1?utm_source=x"),
        event(ago(minutes=1), anon="a1", type="page", name="Product Detail",
              context_page_url="https://shop.example/p/2"),
        event(ago(minutes=1), anon="a0", type="page", name=None,
              context_page_url="https://shop.example/blog/hello?ref=1#top"),
        event(ago(minutes=1), anon="a2", type="page", name=None,
              context_page_url="https://shop.example/blog/hello"),
        event(ago(minutes=1), anon="a2", type="page", name=None, context_page_url=None),
        event(ago(minutes=1), anon="a2", type="screen", name="Home"),
    )  # fmt: skip

    stats = stats_of(home)

    assert stats.top_events.height == TOP_LIMIT
    assert stats.top_events.head(2).rows() == [("Added to Cart", 3, 3), ("Searched", 3, 1)]
    # Ties are in name order; "Zoomed" (1 event) falls off the end, "Too Old" is out.
    assert stats.top_events["event"][2:].to_list() == [f"Event {i:02}" for i in range(8)]
    assert stats.top_pages.rows() == [
        ("/blog/hello", 2, 2),
        ("Product Detail", 2, 2),
        ("(unnamed page)", 1, 1),
        ("Home", 1, 1),
    ]


def _damage(model: Path, target: Path) -> Path:
    """Move ``model`` to ``target`` with its first data pages zeroed and its footer sound."""
    data = bytearray(model.read_bytes())
    model.unlink()
    data[4:400] = bytes(396)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    return target


def test_unreadable_files_are_skipped_with_a_warning_and_left_in_place(
    home: SafarHome, caplog: pytest.LogCaptureFixture
) -> None:
    land(home, event(ago(minutes=1), anon="a1"), event(ago(minutes=1), anon="a2"))
    today = home.raw_events / f"date={NOW:%Y-%m-%d}"
    corrupt = today / f"part-{new_file_id()}.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    truncated = today / f"part-{new_file_id()}.parquet"
    (good,) = land(home, event(ago(minutes=1), anon="a3"))
    truncated.write_bytes(good.read_bytes()[:-30])
    # Sound footers over broken data pages: only reading the rows finds out, in the hour
    # shown (read into memory) and in yesterday's history (read by DuckDB).
    (model,) = land(home, *(event(ago(minutes=2), anon=f"b{i}") for i in range(50)))
    damaged_now = _damage(model, today / f"part-{new_file_id()}.parquet")
    (model,) = land(home, *(event(ago(days=1), anon=f"c{i}") for i in range(50)))
    yesterday = home.raw_events / f"date={NOW - timedelta(days=1):%Y-%m-%d}"
    damaged_yesterday = _damage(model, yesterday / f"part-{new_file_id()}.parquet")
    land(home, event(ago(days=1), anon="a4"))  # a4 is back: returning
    land(home, event(ago(minutes=1), anon="a4"))

    with caplog.at_level(logging.WARNING, logger="safar.live"):
        stats = stats_of(home)

    assert (stats.active_people, stats.returning_people) == (4, 1)
    assert stats.unreadable_files == (corrupt, truncated, damaged_now, damaged_yesterday)
    assert stats.files_read == 4
    assert sum("unreadable" in r.message for r in caplog.records) == 4
    assert all(f.exists() for f in stats.unreadable_files)  # dashboards never move lake files


def test_files_landed_since_the_last_call_are_read(home: SafarHome) -> None:
    land(home, event(ago(minutes=1), anon="a1"))
    before = stats_of(home)
    land(home, event(ago(minutes=1), anon="a2"))

    after = stats_of(home)

    assert (before.active_people, after.active_people) == (1, 2)
    assert (before.files_read, after.files_read) == (1, 2)


def test_only_files_with_events_received_since_the_start_are_read(home: SafarHome) -> None:
    since = ago(hours=1)
    (before,) = land(home, event(since - timedelta(microseconds=1), anon="a"))
    (spanning,) = land(
        home, event(ago(hours=2), anon="a"), event(since, anon="a"), event(ago(hours=3), anon="a")
    )
    (yesterday,) = land(home, event(TODAY - timedelta(minutes=1), anon="a"))
    (older,) = land(home, event(TODAY - timedelta(days=1, minutes=1), anon="a"))
    # The demo generator lands a whole day at once, events "received" later than the file.
    (future,) = land(home, event(NOW + timedelta(hours=5), anon="a"))
    garbage = home.raw_events / f"date={NOW:%Y-%m-%d}" / f"part-{new_file_id()}.parquet"
    garbage.write_bytes(b"not parquet")

    files, unreadable = recent_files(home, NOW, since)

    assert files == [spanning, future]
    assert unreadable == [garbage]
    # Only yesterday's and today's folders are looked at, however far back `since` goes.
    files, _ = recent_files(home, NOW, TODAY - timedelta(days=7))
    assert files == [before, spanning, yesterday, future] and older not in files


def test_an_aware_now_means_the_same_instant(home: SafarHome) -> None:
    land(home, event(ago(minutes=4), anon="a1"), event(ago(minutes=6), anon="a2"))
    tehran = timezone(timedelta(hours=3, minutes=30))

    aware = live_stats(home, NOW.replace(tzinfo=UTC).astimezone(tehran))

    assert aware.now == NOW and aware.active_people == 1


def test_inactive_events_are_the_warehouses() -> None:
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())

    assert set(INACTIVE_EVENTS) == set(project["vars"]["inactive_event_names"])


@pytest.fixture(scope="module")
def warehouse_home(tmp_path_factory: pytest.TempPathFactory) -> SafarHome:
    """People from last week in a built warehouse, then today's events landed after the build."""
    home = SafarHome(tmp_path_factory.mktemp("live_warehouse")).ensure()
    last_week = TODAY - timedelta(days=7)
    land(
        home,
        event(last_week, user="u-regular", anon="a-regular-laptop", type="identify"),
        event(last_week, user="u-regular", anon="a-regular-laptop", name="Order Completed"),
        event(last_week, anon="a-lurker", type="page", name="Home"),
        # An alias chain the landing zone alone cannot follow in one hop.
        event(last_week, user="u-renamed", type="alias", previous_id="u-old-name"),
        event(last_week, user="u-old-name", type="alias", previous_id="a-old-device"),
    )
    build(home, test=False)
    land(
        home,
        # The regular, on a new phone, not signed in yet: anonymous id unknown to everyone...
        event(ago(minutes=1), anon="a-regular-phone", type="screen", name="Home"),
        # ...and the laptop the warehouse knows, anonymous-only now.
        event(ago(minutes=1), anon="a-regular-laptop", type="page", name="Home"),
        event(ago(minutes=2), anon="a-lurker", type="page", name="Home"),
        event(ago(minutes=2), anon="a-old-device", name="Product Viewed"),
        event(ago(minutes=3), anon="a-brand-new", name="Product Viewed"),
    )
    return home


def test_the_warehouse_remembers_and_stitches_what_the_landing_zone_cannot(
    warehouse_home: SafarHome,
) -> None:
    with_warehouse = stats_of(warehouse_home)
    lake_only = stats_of(warehouse_home, use_warehouse=False)

    assert with_warehouse.used_warehouse and not lake_only.used_warehouse
    # People: regular-phone, regular (laptop), lurker, renamed (old device), brand-new.
    assert with_warehouse.active_people == lake_only.active_people == 5
    # The warehouse knows the laptop and the old device belong to user ids...
    assert (with_warehouse.known_people, lake_only.known_people) == (2, 0)
    # ...and that three of them were here last week, which yesterday's folder cannot tell.
    assert (with_warehouse.returning_people, lake_only.returning_people) == (3, 0)
    assert with_warehouse.new_people == 2


def test_a_warehouse_without_the_models_is_ignored(warehouse_home: SafarHome, tmp_path) -> None:
    home = SafarHome(tmp_path / "copy")
    shutil.copytree(warehouse_home.root, home.root)
    home.catalog.write_bytes(b"")  # a catalog that is not one (being created, or broken)

    stats = stats_of(home)

    assert not stats.used_warehouse and stats.active_people == 5


def test_imported_history_does_not_make_people_active_now(tmp_path: Path) -> None:
    """A bulk import lands old events with today's received_at; they are not people here now."""
    home = SafarHome(tmp_path).ensure()
    now = datetime(2026, 1, 15, 12, 0)
    rows = [
        {"message_id": "old", "type": "track", "event": "Order Completed", "user_id": "u-old",
         "timestamp": now - timedelta(days=40), "received_at": now - timedelta(minutes=1)},
        {"message_id": "new", "type": "track", "event": "Product Viewed", "user_id": "u-now",
         "timestamp": now - timedelta(minutes=1), "received_at": now - timedelta(minutes=1)},
    ]  # fmt: skip
    LakeWriter(home).write(pl.DataFrame(rows))
    stats = live_stats(home, now=now, use_warehouse=False)
    assert stats.active_people == 1
    assert stats.events_per_minute["events"].sum() == 2  # both still landed this hour
