"""Segments in Dagster: the micro-batch run evaluates them after the marts; the clock asks
for a run only when a segment is due and nothing else will evaluate it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from dagster_project.definitions import defs
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


def _context(instance: dg.DagsterInstance, home: SafarHome, cursor: str | None = None):
    return dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"safar": SafarResource(home=str(home.root))}
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
        assert not clock.run_requests
        assert "no time-relative segment is due" in clock.skip_message

        # A new segment file is due at once, with no new event.
        _write_segment(
            tmp_path / "segments",
            "recent",
            "select person_id as user_id from dim_users"
            " where last_seen_at > now() - interval 1 day",
        )
        clock = segment_clock_sensor.evaluate_tick(_context(instance, home))
        (clock_request,) = clock.run_requests
        assert clock_request.tags["safar/due_segments"] == "recent"
        evaluate = defs().resolve_job_def("evaluate_segments_job")
        assert evaluate.execute_in_process(instance=instance, tags=clock_request.tags).success
        assert _members(home, "recent") == ["ali", "sara"]
        assert _segment_events(home) == [
            ("Segment Entered", "ali"),
            ("Segment Entered", "ali"),
            ("Segment Entered", "sara"),
        ]
