"""``landing_files_sensor``: new files in the landing zone start a micro-batch refresh.

A small batch is refreshed in the tick itself (the live lane, ``live.py``), in the two stages
of ``safar.micro_batch``: the event models and the segments over them at once, the profile
models when no file is waiting (or when they lag too long). What a tick refreshed is reported
as asset materializations. A batch bigger than the lane takes goes to a
``refresh_micro_batch_job`` run, as does a batch whose in-place refresh failed (the run shows
the failure with dbt's logs, and can be re-executed). While another writer holds the
warehouse, small batches wait for the next tick with the cursor unchanged.

A tick keeps going while files keep coming, up to ``busy_seconds``, and when none comes keeps
looking for ``wait_seconds``: the daemon starts ticks 5 s apart at best.

Finding files only lists names (file ids sort in write order) and stats sizes; it never opens
a file. Cursor (JSON, ``cursor.py``): ``last_file_id`` is the high-watermark,
``recent_file_ids`` the ids already handled within a lookback window below it. A file that shows
up later than the window still reaches the warehouse: the staging model re-reads a lookback on
``received_at`` with the next batch.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from dagster_project.defs.dbt.jobs import refresh_micro_batch_job
from dagster_project.defs.ingest.cursor import LandingCursor
from dagster_project.defs.ingest.live import POLL_SECONDS, LiveLane, batch_materializations
from dagster_project.defs.resources import SafarResource
from safar.config import SafarHome
from safar.lake import file_id_of, landing_files
from safar.micro_batch import MicroBatch, refresh_events, refresh_profiles
from safar.writer_lock import WarehouseBusy

# Runs that have not started yet will read every landing file when they do.
_PENDING_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]


def _new_files(home: SafarHome, cursor: LandingCursor) -> tuple[list[Path], int]:
    """The landing files the cursor has not handled, and how many the lookback window holds."""
    listed = landing_files(home, after_id=cursor.floor())
    unseen = set(cursor.unseen([file_id_of(p) for p in listed]))
    return [p for p in listed if file_id_of(p) in unseen], len(listed)


def _run_request(first: str, last: str, count: int, **tags: str) -> dg.RunRequest:
    return dg.RunRequest(
        # The newest id names this set of files: a repeated tick with the same cursor asks
        # for the same run, which Dagster then does not launch twice.
        run_key=last,
        tags={
            "safar/first_file_id": first,
            "safar/last_file_id": last,
            "safar/file_count": str(count),
            **tags,
        },
    )


@dataclass
class _Tick:
    """What one tick did: the cursor so far, its materializations, runs and messages."""

    cursor: LandingCursor
    asset_events: list[dg.AssetMaterialization] = field(default_factory=list)
    run_requests: list[dg.RunRequest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stop: bool = False

    def refreshed(self, batch: MicroBatch, files: str, live_lane: LiveLane) -> None:
        self.asset_events.extend(batch_materializations(batch))
        entered = sum(o.entered for o in batch.segments)
        exited = sum(o.exited for o in batch.segments)
        self.notes.append(
            f"{batch.stage} of {files} refreshed in place in {batch.seconds:.1f} s"
            f" ({len(batch.models)} model(s), segments +{entered} −{exited})"
        )
        if batch.seconds > live_lane.max_stage_seconds:
            # Another tick this slow could outlast the sensor's time limit and never advance.
            self.cursor = self.cursor.closing_lane(time.time() + live_lane.closed_seconds)
            self.stop = True
            self.notes.append(
                f"that is over {live_lane.max_stage_seconds:g} s: batches go to runs for the"
                f" next {live_lane.closed_seconds:g} s"
            )


@dg.sensor(
    job=refresh_micro_batch_job,
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Refreshes the micro-batch models and the segments when new files land in the raw "
        "landing zone: small batches in place, big ones in a refresh_micro_batch_job run."
    ),
)
def landing_files_sensor(
    context: dg.SensorEvaluationContext, safar: SafarResource, live_lane: LiveLane
) -> dg.SensorResult | dg.SkipReason:
    """Refresh new landing files in place, or request a run for them; see the module doc."""
    home = safar.safar_home()
    if not home.raw_events.exists():
        return dg.SkipReason(f"no landing zone yet at {home.raw_events}")
    tick = _Tick(LandingCursor.loads(context.cursor))
    started = time.monotonic()
    listed = 0
    while not tick.stop:
        elapsed = time.monotonic() - started
        new_files, listed = _new_files(home, tick.cursor)
        if new_files:
            if elapsed >= live_lane.busy_seconds:
                break  # the next tick goes on at once
            _take_files(context, home, tick, new_files, live_lane)
            owed = tick.cursor.profiles_owed_since
            lagging = owed is not None and time.time() - owed >= live_lane.profiles_max_lag_seconds
            if lagging and not tick.stop:
                _refresh_profiles(context, home, tick, live_lane)
        elif tick.cursor.profiles_owed_since is not None:
            _refresh_profiles(context, home, tick, live_lane)
        elif elapsed >= live_lane.wait_seconds:
            break
        else:
            time.sleep(POLL_SECONDS)

    if not (tick.notes or tick.run_requests):
        last = tick.cursor.last_file_id
        return dg.SkipReason(
            f"no new landing files in {home.raw_events} after {last or 'the start'}"
            f" ({listed} file(s) in the lookback window, all handled)"
        )
    if tick.run_requests:
        return dg.SensorResult(
            run_requests=tick.run_requests,
            cursor=tick.cursor.dumps(),
            asset_events=tick.asset_events,
        )
    return dg.SensorResult(
        skip_reason=dg.SkipReason("; ".join(tick.notes)),
        cursor=tick.cursor.dumps(),
        asset_events=tick.asset_events,
    )


def _take_files(
    context: dg.SensorEvaluationContext,
    home: SafarHome,
    tick: _Tick,
    new_files: list[Path],
    live_lane: LiveLane,
) -> None:
    """Hand new files to a waiting run, to a new run, or refresh their events in place."""
    new_ids = [file_id_of(p) for p in new_files]
    first, last = min(new_ids), max(new_ids)
    files = f"{len(new_ids)} landing file(s) up to {last}"
    advanced = tick.cursor.advance(new_ids)
    pending = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=refresh_micro_batch_job.name, statuses=_PENDING_STATUSES),
        limit=1,
    )
    if pending:
        # Coalesce: the waiting run reads every landing file when it starts, so one more run
        # would only queue behind it and find nothing to do.
        tick.cursor, tick.stop = advanced, True
        tick.notes.append(f"{files} will be read by run {pending[0].run_id}, not started yet")
        return
    if (
        tick.cursor.lane_closed(time.time())
        or sum(p.stat().st_size for p in new_files) > live_lane.max_bytes
    ):
        tick.cursor, tick.stop = advanced, True
        tick.run_requests.append(_run_request(first, last, len(new_ids)))
        return
    try:
        batch = refresh_events(home, batch_id=f"files:{last}", wait=False)
    except WarehouseBusy as busy:
        tick.stop = True  # the cursor stays: the next tick takes these files
        tick.notes.append(f"{files} wait for the next tick: {busy}")
        return
    except Exception as error:  # the run re-does the batch and shows why it fails
        context.log.exception(f"refreshing {files} in place failed")
        tick.cursor, tick.stop = advanced, True
        tick.run_requests.append(
            _run_request(first, last, len(new_ids), **{"safar/live_lane_error": str(error)[:200]})
        )
        return
    tick.cursor = advanced.owing_profiles(time.time())
    tick.refreshed(batch, files, live_lane)


def _refresh_profiles(
    context: dg.SensorEvaluationContext, home: SafarHome, tick: _Tick, live_lane: LiveLane
) -> None:
    """Bring the profile models up to the events already refreshed."""
    last = tick.cursor.last_file_id or ""
    files = f"the files up to {last}"
    if tick.cursor.lane_closed(time.time()):
        tick.cursor, tick.stop = tick.cursor.profiles_settled(), True
        tick.run_requests.append(
            dg.RunRequest(run_key=f"profiles-{last}", tags={"safar/last_file_id": last})
        )
        return
    try:
        batch = refresh_profiles(home, batch_id=f"files:{last}", wait=False)
    except WarehouseBusy as busy:
        tick.stop = True  # still owed: the next tick tries again
        tick.notes.append(f"profiles of {files} wait for the next tick: {busy}")
        return
    except Exception as error:  # a micro-batch run refreshes every model and shows the error
        context.log.exception(f"refreshing the profiles of {files} in place failed")
        tick.cursor, tick.stop = tick.cursor.profiles_settled(), True
        tick.run_requests.append(
            dg.RunRequest(
                run_key=f"profiles-{last}",
                tags={"safar/last_file_id": last, "safar/live_lane_error": str(error)[:200]},
            )
        )
        return
    tick.cursor = tick.cursor.profiles_settled()
    tick.refreshed(batch, files, live_lane)
