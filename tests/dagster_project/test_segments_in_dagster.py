"""Segments in Dagster: the micro-batch run evaluates them after the marts, the live lane right
after its in-place refresh; the clock sensor re-checks them in place only when one is due."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from dagster_project.definitions import defs
from dagster_project.defs.ingest.live import LiveLane
from dagster_project.defs.ingest.sensors import landing_files_sensor
from dagster_project.defs.resources import SafarResource
from dagster_project.defs.segments.sensors import segment_clock_sensor
from safar.config import SafarHome
from safar.lake import LakeWriter
from safar.segments.membership import SOURCE_ID
from safar.warehouse import connect

NOW = datetime.now(UTC).replace(tzinfo=None)


def _batch(*people: tuple[str, str]) -> pl.DataFrame:
    """An identify and an app open (on a device of ``platform``) an hour ago, per person."""
    rows = []
    for n, (person, platform) in enumerate(people):
        at = NOW - timedelta(hours=1, minutes=n)
        base = {"anonymous_id": f"anon-{person}", "timestamp": at, "received_at": at}
        rows.append(
            {
                **base,
                "message_id": f"identify-{person}",
                "type": "identify",
                "user_id": person,
                "traits": json.dumps({"carrier": "Irancell"}),
            }
        )
        rows.append(
            {
                **base,
                "message_id": f"open-{person}",
                "type": "track",
                "event": "Application Opened",
                "user_id": person,
                "context_device_type": platform,
                "context_device_id": f"device-{person}",
            }
        )
    return pl.DataFrame(rows)


def _write_segment(folder: Path, slug: str, sql: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{slug}.sql").write_text(sql)
    (folder / f"{slug}.yml").write_text(f"name: {slug}\nowner: tests\n")


def _segment_events(home: SafarHome) -> list[tuple[str, str]]:
    files = sorted(home.raw_events.glob("date=*/part-*.parquet"))
    frame = pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")
    frame = frame.filter(pl.col("source_id") == SOURCE_ID)
    return sorted(zip(frame["event"], frame["user_id"], strict=True))


def _members(home: SafarHome, slug: str) -> list[str]:
    con = connect(home, read_only=True)
    try:
        rows = con.execute(
            "select person_id from segment_membership where segment_id = ?"
            " and exited_at is null order by 1",
            [slug],
        ).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SafarHome:
    home = SafarHome(tmp_path / "home").ensure()
    monkeypatch.setenv("SAFAR_HOME", str(home.root))
    monkeypatch.setenv("SAFAR_SEGMENTS_DIR", str(tmp_path / "segments"))
    _write_segment(
        tmp_path / "segments",
        "android",
        "select distinct person_id as user_id from dim_devices where platform = 'android'",
    )
    return home


def _context(
    instance: dg.DagsterInstance,
    home: SafarHome,
    cursor: str | None = None,
    live_lane: LiveLane | None = None,
):
    return dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "safar": SafarResource(home=str(home.root)),
            "live_lane": live_lane or LiveLane(max_bytes=0, wait_seconds=0),
        },
    )


def test_a_micro_batch_run_evaluates_segments_once(home: SafarHome, tmp_path: Path) -> None:
    job = defs().resolve_job_def(landing_files_sensor.job_name)
    with dg.instance_for_test() as instance:
        LakeWriter(home).write(_batch(("ali", "android"), ("sara", "ios")))
        tick = landing_files_sensor.evaluate_tick(_context(instance, home))
        (request,) = tick.run_requests
        result = job.execute_in_process(instance=instance, tags=request.tags)
        assert result.success

        materialization = result.asset_materializations_for_node("segment_membership")
        assert materialization[0].metadata["entered"] == dg.IntMetadataValue(1)
        assert _members(home, "android") == ["ali"]
        assert _segment_events(home) == [("Segment Entered", "ali")]

        # Re-executing the same batch (same tags) evaluates nothing again.
        again = job.execute_in_process(instance=instance, tags=request.tags)
        assert again.success
        assert _segment_events(home) == [("Segment Entered", "ali")]

        # Just evaluated, nothing time-relative: the clock has nothing to do.
        clock = segment_clock_sensor.evaluate_tick(_context(instance, home))
        assert not clock.asset_events
        assert "no time-relative segment is due" in clock.skip_message

        # A new segment file is due at once, with no new event: the clock evaluates it in place.
        _write_segment(
            tmp_path / "segments",
            "recent",
            "select person_id as user_id from dim_users"
            " where last_seen_at > now() - interval 1 day",
        )
        clock = segment_clock_sensor.evaluate_tick(_context(instance, home))
        assert clock.run_requests == []
        (materialization,) = clock.asset_events
        assert materialization.asset_key == dg.AssetKey("segment_membership")
        assert materialization.metadata["entered"] == dg.IntMetadataValue(2)
        # (android is evaluated too: re-executing the batch rebuilt the tables it reads.)
        assert clock.skip_message.endswith("android, recent")
        assert _members(home, "recent") == ["ali", "sara"]
        assert _segment_events(home) == [
            ("Segment Entered", "ali"),
            ("Segment Entered", "ali"),
            ("Segment Entered", "sara"),
        ]

        # The same minute again: that batch was evaluated, nothing is published twice.
        segment_clock_sensor.evaluate_tick(_context(instance, home))
        assert len(_segment_events(home)) == 3


def test_the_live_lane_publishes_segment_entered_in_the_tick(
    home: SafarHome, tmp_path: Path
) -> None:
    _write_segment(
        tmp_path / "segments",
        "openers",
        "select distinct person_id as user_id from fct_events"
        " where event_name = 'Application Opened'",
    )
    live = LiveLane(wait_seconds=0)
    with dg.instance_for_test() as instance:
        LakeWriter(home).write(_batch(("ali", "android")))
        first = landing_files_sensor.evaluate_tick(_context(instance, home, live_lane=live))
        assert first.run_requests == []
        assert _members(home, "android") == ["ali"]
        assert _members(home, "openers") == ["ali"]
        # The behaviour segment is out with the event models; the device segment (dim_devices
        # is a profile model) waits for the profile stage, in the same tick when nothing else
        # is waiting. (The tick also refreshes the file of Segment Entered events it wrote.)
        membership = [e for e in first.asset_events if e.asset_key.path == ["segment_membership"]]
        stages = [(m.metadata["stage"].value, m.metadata["entered"].value) for m in membership]
        assert stages[0] == ("events", 1)
        assert "| android | skipped |  | 0 | 0 | waits for " in (
            membership[0].metadata["segments"].value
        )
        assert ("profiles", 1) in stages
        assert sum(entered for _, entered in stages) == 2
        ali = [("Segment Entered", "ali"), ("Segment Entered", "ali")]
        assert _segment_events(home) == ali

        LakeWriter(home).write(_batch(("sara", "android")))
        second = landing_files_sensor.evaluate_tick(
            _context(instance, home, cursor=first.cursor, live_lane=live)
        )
        assert second.run_requests == []
        both = sorted([*ali, ("Segment Entered", "sara"), ("Segment Entered", "sara")])
        assert _segment_events(home) == both

        # A replayed tick (the daemon died before saving the cursor) refreshes the same batch
        # again and publishes nothing new.
        landing_files_sensor.evaluate_tick(
            _context(instance, home, cursor=first.cursor, live_lane=live)
        )
        assert _segment_events(home) == both


def test_a_batch_waits_while_another_process_writes_the_warehouse(
    home: SafarHome, tmp_path: Path
) -> None:
    live = LiveLane(wait_seconds=0)
    with dg.instance_for_test() as instance:
        LakeWriter(home).write(_batch(("ali", "android")))
        first = landing_files_sensor.evaluate_tick(_context(instance, home, live_lane=live))
        LakeWriter(home).write(_batch(("sara", "android")))
        _write_segment(tmp_path / "segments", "everyone", "select user_id from dim_users")
        with _lock_held_by_another_process(home):
            busy = landing_files_sensor.evaluate_tick(
                _context(instance, home, cursor=first.cursor, live_lane=live)
            )
            assert busy.run_requests == []
            # Nothing was handled: the cursor stays, the next tick takes the files.
            assert busy.cursor == first.cursor
            assert "wait for the next tick" in busy.skip_message
            assert "holding the lock for the test" in busy.skip_message
            clock = segment_clock_sensor.evaluate_tick(_context(instance, home))
            assert "segment(s) due (everyone)" in clock.skip_message
            assert "holding the lock for the test" in clock.skip_message
            assert _segment_events(home) == [("Segment Entered", "ali")]
        landing_files_sensor.evaluate_tick(
            _context(instance, home, cursor=first.cursor, live_lane=live)
        )
        assert _segment_events(home) == [
            ("Segment Entered", "ali"),
            ("Segment Entered", "ali"),
            ("Segment Entered", "sara"),
            ("Segment Entered", "sara"),
        ]


def test_a_batch_bigger_than_the_live_lane_goes_to_a_run(home: SafarHome) -> None:
    with dg.instance_for_test() as instance:
        LakeWriter(home).write(_batch(("ali", "android")))
        tick = landing_files_sensor.evaluate_tick(
            _context(instance, home, live_lane=LiveLane(max_bytes=100, wait_seconds=0))
        )
        (request,) = tick.run_requests
        assert request.tags["safar/file_count"] == "1"
        assert _segment_events(home) == []


@contextlib.contextmanager
def _lock_held_by_another_process(home: SafarHome) -> Iterator[None]:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from safar.config import SafarHome\n"
            "from safar.writer_lock import warehouse_writer\n"
            "with warehouse_writer(SafarHome(Path(sys.argv[1])),"
            " purpose='holding the lock for the test'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(600)\n",
            str(home.root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_a_stage_too_slow_for_a_tick_sends_batches_to_runs(home: SafarHome) -> None:
    # Every stage is "too slow" at 0 s: what a warehouse too big for a sensor tick looks like.
    live = LiveLane(wait_seconds=0, max_stage_seconds=0)
    with dg.instance_for_test() as instance:
        LakeWriter(home).write(_batch(("ali", "android")))
        first = landing_files_sensor.evaluate_tick(_context(instance, home, live_lane=live))
        assert first.run_requests == []
        assert "batches go to runs for the next 600 s" in first.skip_message
        cursor = json.loads(first.cursor)
        assert cursor["lane_closed_until"] > cursor["profiles_owed_since"]

        # The profiles still owed go to a run, not into the tick.
        owed = landing_files_sensor.evaluate_tick(
            _context(instance, home, cursor=first.cursor, live_lane=live)
        )
        (profiles_run,) = owed.run_requests
        assert profiles_run.run_key.startswith("profiles-")
        assert "profiles_owed_since" not in json.loads(owed.cursor)

        # So does the next batch.
        LakeWriter(home).write(_batch(("sara", "android")))
        later = landing_files_sensor.evaluate_tick(
            _context(instance, home, cursor=owed.cursor, live_lane=live)
        )
        (batch_run,) = later.run_requests
        assert batch_run.tags["safar/file_count"] == "1"
