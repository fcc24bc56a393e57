"""``landing_files_sensor`` against real landing files written by ``LakeWriter``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from dagster_project.defs.ingest.live import LiveLane
from dagster_project.defs.ingest.sensors import landing_files_sensor
from dagster_project.defs.resources import SafarResource
from safar.config import SafarHome
from safar.lake import LakeWriter, conform, file_id_of, write_parquet_atomic

T = datetime(2026, 1, 15, 10, 30)


def _events(*message_ids: str) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "message_id": m,
                "type": "track",
                "event": "Product Viewed",
                "anonymous_id": "anon-1",
                "timestamp": T,
                "received_at": T,
            }
            for m in message_ids
        ]
    )


def _land(home: SafarHome, *message_ids: str) -> str:
    """Write one landing file through the real writer; return its file id."""
    (path,) = LakeWriter(home).write(_events(*message_ids)).files
    return file_id_of(path)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def _tick(instance: dg.DagsterInstance, home: Path, cursor: str | None = None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        # The live lane is closed: these tests are about which runs the sensor asks for
        # (test_live_lane.py covers refreshing in place).
        resources={
            "safar": SafarResource(home=str(home)),
            "live_lane": LiveLane(max_bytes=0, wait_seconds=0),
        },
    )
    return landing_files_sensor.evaluate_tick(context)


def test_skips_with_a_diagnostic_when_there_is_no_landing_zone(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    result = _tick(instance, tmp_path)

    assert result.run_requests == []
    assert "no landing zone yet" in result.skip_message
    assert str(tmp_path) in result.skip_message


def test_skips_when_the_landing_zone_is_empty(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    SafarHome(tmp_path).ensure()

    result = _tick(instance, tmp_path)

    assert result.run_requests == []
    assert "no new landing files" in result.skip_message


def test_new_files_request_one_micro_batch_keyed_by_the_newest_file(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    home = SafarHome(tmp_path)
    first, newest = _land(home, "m1", "m2"), _land(home, "m3")

    result = _tick(instance, tmp_path)

    (request,) = result.run_requests
    assert request.run_key == newest
    assert request.job_name in (None, "refresh_micro_batch_job")
    assert landing_files_sensor.job_name == "refresh_micro_batch_job"
    assert request.tags["safar/first_file_id"] == first
    assert request.tags["safar/last_file_id"] == newest
    assert request.tags["safar/file_count"] == "2"
    assert json.loads(result.cursor)["last_file_id"] == newest


def test_second_tick_with_the_returned_cursor_skips(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    newest = _land(SafarHome(tmp_path), "m1")
    first = _tick(instance, tmp_path)

    second = _tick(instance, tmp_path, first.cursor)

    assert second.run_requests == []
    assert f"after {newest}" in second.skip_message


def test_replaying_a_tick_asks_for_the_same_run(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    _land(SafarHome(tmp_path), "m1")

    keys = {_tick(instance, tmp_path).run_requests[0].run_key for _ in range(2)}

    assert len(keys) == 1


def test_a_new_file_after_the_cursor_starts_a_new_run(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    home = SafarHome(tmp_path)
    _land(home, "m1")
    first = _tick(instance, tmp_path)
    newer = _land(home, "m2")

    second = _tick(instance, tmp_path, first.cursor)

    (request,) = second.run_requests
    assert request.run_key == newer != first.run_requests[0].run_key
    assert request.tags["safar/file_count"] == "1"


def test_a_file_that_lands_late_with_an_older_id_is_still_picked_up(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    home = SafarHome(tmp_path)
    newest = _land(home, "m1")
    first = _tick(instance, tmp_path)
    # A slow writer (another process) named its file 10 s before the newest one but finished
    # after the tick. Built by hand: new_file_id never goes back in time within one process.
    late_id = f"{int(newest[:13]) - 10_000:013d}00000-1a7e000"
    assert late_id < newest
    late = home.raw_events / "date=2026-01-15" / f"part-{late_id}.parquet"
    write_parquet_atomic(conform(_events("m-late")), late)

    second = _tick(instance, tmp_path, first.cursor)
    third = _tick(instance, tmp_path, second.cursor)

    assert [r.run_key for r in second.run_requests] == [late_id]
    assert json.loads(second.cursor)["last_file_id"] == newest
    assert third.run_requests == []


def test_files_that_a_waiting_run_will_read_do_not_queue_another_run(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    # NOT_STARTED stands in for QUEUED too: a queued run needs a code location origin to exist.
    waiting = instance.add_run(
        dg.DagsterRun(job_name="refresh_micro_batch_job", status=dg.DagsterRunStatus.NOT_STARTED)
    )
    newest = _land(SafarHome(tmp_path), "m1")

    result = _tick(instance, tmp_path)

    assert result.run_requests == []
    assert waiting.run_id in result.skip_message
    assert json.loads(result.cursor)["last_file_id"] == newest


def test_a_run_already_under_way_does_not_hold_back_new_files(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    # A started run may have read the landing zone before these files arrived.
    instance.add_run(
        dg.DagsterRun(job_name="refresh_micro_batch_job", status=dg.DagsterRunStatus.STARTED)
    )
    newest = _land(SafarHome(tmp_path), "m1")

    result = _tick(instance, tmp_path)

    assert [r.run_key for r in result.run_requests] == [newest]
