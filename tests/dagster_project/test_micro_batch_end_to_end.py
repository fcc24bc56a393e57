"""Sensor → dbt → warehouse, twice, on a home of its own, through either lane: a
``refresh_micro_batch_job`` run, or the sensor's live lane refreshing in place.

The second batch runs the incremental models on top of the first, as production does.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from dagster_project.definitions import defs
from dagster_project.defs.ingest.live import LiveLane
from dagster_project.defs.ingest.sensors import landing_files_sensor
from dagster_project.defs.resources import SafarResource
from safar.config import SafarHome
from safar.lake import LakeWriter
from safar.warehouse import connect

T = datetime(2026, 1, 15, 10, 30)


def _batch(day: int, *people: str) -> pl.DataFrame:
    """An identify and an app open for each person, on day ``day`` after T."""
    rows = []
    for n, person in enumerate(people):
        at = T + timedelta(days=day, minutes=n)
        base = {"anonymous_id": f"anon-{person}", "timestamp": at, "received_at": at}
        rows.append(
            {
                **base,
                "message_id": f"identify-{person}-{day}",
                "type": "identify",
                "user_id": person,
                "traits": json.dumps({"email": f"{person}@example.com", "email_opt_in": True}),
            }
        )
        rows.append(
            {
                **base,
                "message_id": f"open-{person}-{day}",
                "type": "track",
                "event": "Application Opened",
                "user_id": person,
                "context_device_type": "android",
                "context_device_id": f"device-{person}",
            }
        )
    return pl.DataFrame(rows)


def _tick_and_run(
    instance: dg.DagsterInstance, job: dg.JobDefinition, home: SafarHome, cursor: str | None
) -> str:
    """One tick with the live lane closed (max_bytes=0), then the run it asks for."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "safar": SafarResource(home=str(home.root)),
            "live_lane": LiveLane(max_bytes=0, wait_seconds=0),
        },
    )
    tick = landing_files_sensor.evaluate_tick(context)
    (request,) = tick.run_requests
    result = job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
    failures = [e.message for e in result.all_events if e.is_failure]
    assert result.success, failures
    return tick.cursor


def _tick_in_place(instance: dg.DagsterInstance, home: SafarHome, cursor: str | None) -> str:
    """One tick with the live lane open: the batch is refreshed in the tick, no run."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "safar": SafarResource(home=str(home.root)),
            "live_lane": LiveLane(wait_seconds=0),
        },
    )
    tick = landing_files_sensor.evaluate_tick(context)
    assert tick.run_requests == [], tick.skip_message
    assert "in place" in tick.skip_message
    refreshed = {e.asset_key.path[-1] for e in tick.asset_events}
    assert {"fct_events", "dim_users", "segment_membership"} <= refreshed
    return tick.cursor


def _people_and_events(home: SafarHome) -> tuple[list[str], int, int]:
    con = connect(home, read_only=True)
    try:
        people = [r[0] for r in con.sql("select user_id from dim_users order by 1").fetchall()]
        (events,) = con.sql("select count(*) from fct_events").fetchone()
        (distinct,) = con.sql("select count(distinct message_id) from fct_events").fetchone()
    finally:
        con.close()
    return people, events, distinct


@pytest.mark.parametrize("lane", ["run", "live"])
def test_two_micro_batches_land_every_event_once(
    lane: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = SafarHome(tmp_path / "home").ensure()
    # The job's resources read the home from the environment, as in production.
    monkeypatch.setenv("SAFAR_HOME", str(home.root))
    # No segments: this test counts the events it landed (segments have a test of their own).
    monkeypatch.setenv("SAFAR_SEGMENTS_DIR", str(tmp_path / "no_segments"))

    job = defs().resolve_job_def(landing_files_sensor.job_name)
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None) -> str:
            if lane == "run":
                return _tick_and_run(instance, job, home, cursor)
            return _tick_in_place(instance, home, cursor)

        LakeWriter(home).write(_batch(0, "ali", "sara"))
        cursor = tick(None)
        assert _people_and_events(home) == (["ali", "sara"], 4, 4)

        LakeWriter(home).write(_batch(1, "sara", "reza"))
        tick(cursor)
        assert _people_and_events(home) == (["ali", "reza", "sara"], 8, 8)
