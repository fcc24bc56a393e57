"""A micro-batch in place, in its two stages, on a real warehouse.

| person | before the batch      | in the batch                         |
|--------|-----------------------|--------------------------------------|
| ali    | Irancell, no app open | opens the app                        |
| bita   | Hamrah-e Aval         | switches to Irancell (identify)      |

"openers" reads fct_events (an event model): it changes in the events stage. "irancell" reads
dim_users (a profile model): it waits for the profiles stage.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from warehouse_helpers import event, land

from safar.build import build
from safar.config import SafarHome
from safar.micro_batch import refresh_events, refresh_profiles
from safar.segments.membership import SOURCE_ID, members_at
from safar.warehouse import connect

BEFORE = datetime(2026, 1, 1, 9)
DURING = datetime(2026, 1, 5, 9)


def _identify(user: str, carrier: str, at: datetime) -> dict:
    return event(
        "identify", at=at, user_id=user, anonymous_id=f"anon-{user}", traits={"carrier": carrier}
    )


def _segment_events(home: SafarHome) -> list[tuple[str, str, str]]:
    files = sorted(home.raw_events.glob("date=*/part-*.parquet"))
    frame = pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")
    frame = frame.filter(pl.col("source_id") == SOURCE_ID)
    return sorted(
        (row["event"], row["user_id"], json.loads(row["properties"])["segment_id"])
        for row in frame.iter_rows(named=True)
    )


def _members(home: SafarHome, slug: str) -> list[str]:
    con = connect(home, read_only=True)
    try:
        return members_at(con, slug, datetime(2100, 1, 1))
    finally:
        con.close()


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SafarHome:
    segments = tmp_path / "segments"
    segments.mkdir()
    for slug, sql in {
        "openers": "select distinct person_id as user_id from fct_events"
        " where event_name = 'Application Opened'",
        "irancell": "select person_id as user_id from dim_users where carrier = 'Irancell'",
    }.items():
        (segments / f"{slug}.sql").write_text(sql)
        (segments / f"{slug}.yml").write_text(f"name: {slug}\nowner: tests\n")
    monkeypatch.setenv("SAFAR_SEGMENTS_DIR", str(segments))
    home = SafarHome(tmp_path / "home").ensure()
    land(home, [_identify("ali", "Irancell", BEFORE), _identify("bita", "Hamrah-e Aval", BEFORE)])
    build(home, test=False)
    refresh_profiles(home, batch_id="files:first")  # evaluates both segments once
    return home


def test_events_first_then_profiles_each_change_published_once(home: SafarHome) -> None:
    assert _members(home, "irancell") == ["ali"] and _members(home, "openers") == []
    land(
        home,
        [
            event("track", at=DURING, event="Application Opened", user_id="ali"),
            _identify("bita", "Irancell", DURING),
        ],
    )

    events = refresh_events(home, batch_id="files:second")
    assert {"fct_events", "dim_person_distinct_ids", "stg_safar__events"} <= set(events.models)
    assert "dim_users" not in events.models
    by_slug = {o.slug: o for o in events.segments}
    assert by_slug["openers"].status == "evaluated" and by_slug["openers"].entered == 1
    assert by_slug["irancell"].status == "skipped"
    assert by_slug["irancell"].reason.startswith("waits for ")
    assert "dim_users" in by_slug["irancell"].reason
    assert _members(home, "openers") == ["ali"]
    assert _members(home, "irancell") == ["ali"]  # bita's identify is not in dim_users yet

    profiles = refresh_profiles(home, batch_id="files:second")
    assert "dim_users" in profiles.models and "fct_events" not in profiles.models
    by_slug = {o.slug: o for o in profiles.segments}
    assert by_slug["irancell"].status == "evaluated" and by_slug["irancell"].entered == 1
    assert by_slug["openers"].status == "skipped"  # read nothing the profiles stage changed
    assert _members(home, "irancell") == ["ali", "bita"]

    published = [
        ("Segment Entered", "ali", "irancell"),
        ("Segment Entered", "ali", "openers"),
        ("Segment Entered", "bita", "irancell"),
    ]
    assert _segment_events(home) == published

    # Both stages again for the same batch (a replayed tick): nothing is published twice.
    refresh_events(home, batch_id="files:second")
    refresh_profiles(home, batch_id="files:second")
    assert _segment_events(home) == published
