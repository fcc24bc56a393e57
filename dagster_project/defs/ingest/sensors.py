"""``landing_files_sensor``: new files in the landing zone start a micro-batch refresh.

A tick only lists file names (file ids sort in write order), never opens a file, so it stays
well under a second however busy the gateway is.

Cursor (JSON, ``cursor.py``): ``last_file_id`` is the high-watermark, ``recent_file_ids`` the
ids already handled within a lookback window below it. A file that shows up later than the
window still reaches the warehouse: the staging model re-reads a lookback on ``received_at``
with the next batch.
"""

import dagster as dg

from dagster_project.defs.dbt.jobs import refresh_micro_batch_job
from dagster_project.defs.ingest.cursor import LandingCursor
from dagster_project.defs.resources import SafarResource
from safar.lake import file_id_of, landing_files

# Runs that have not started yet will read every landing file when they do.
_PENDING_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]


@dg.sensor(
    job=refresh_micro_batch_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a micro-batch refresh when new files land in the raw landing zone.",
)
def landing_files_sensor(
    context: dg.SensorEvaluationContext, safar: SafarResource
) -> dg.SensorResult | dg.SkipReason:
    """Request one ``refresh_micro_batch_job`` run per set of new landing files."""
    home = safar.safar_home()
    cursor = LandingCursor.loads(context.cursor)
    if not home.raw_events.exists():
        return dg.SkipReason(f"no landing zone yet at {home.raw_events}")

    listed = [file_id_of(p) for p in landing_files(home, after_id=cursor.floor())]
    new_ids = cursor.unseen(listed)
    if not new_ids:
        return dg.SkipReason(
            f"no new landing files in {home.raw_events} after {cursor.last_file_id or 'the start'}"
            f" ({len(listed)} file(s) in the lookback window, all handled)"
        )

    advanced = cursor.advance(new_ids).dumps()
    pending = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=refresh_micro_batch_job.name, statuses=_PENDING_STATUSES),
        limit=1,
    )
    if pending:
        # Coalesce: the waiting run reads every landing file when it starts, so one more run
        # would only queue behind it and find nothing to do.
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"{len(new_ids)} new landing file(s) up to {max(new_ids)} will be read by "
                f"run {pending[0].run_id}, which has not started yet"
            ),
            cursor=advanced,
        )

    newest = max(new_ids)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                # The newest id names this set of files: a repeated tick with the same cursor
                # asks for the same run, which Dagster then does not launch twice.
                run_key=newest,
                tags={
                    "safar/first_file_id": min(new_ids),
                    "safar/last_file_id": newest,
                    "safar/file_count": str(len(new_ids)),
                },
            )
        ],
        cursor=advanced,
    )
