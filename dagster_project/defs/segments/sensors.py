"""``segment_clock_sensor``: time-relative segments are re-checked when only time has passed.

"No app open in 7 days" changes with no new event. When such a segment's last evaluation is
older than its re-check interval and no micro-batch run is waiting or running (that run
re-checks it anyway), the sensor requests one ``evaluate_segments_job`` run, named by the
minute so a repeated tick does not launch it twice.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from dagster_project.defs.dbt.jobs import refresh_micro_batch_job
from dagster_project.defs.dbt.project import dbt_project
from dagster_project.defs.resources import SafarResource
from dagster_project.defs.segments.assets import evaluate_segments_job
from safar.appdb import open_app_db
from safar.segments.evaluate import clock_due
from safar.segments.registry import load_segments

_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    job=evaluate_segments_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-checks time-relative segments when time has passed and no batch came.",
)
def segment_clock_sensor(
    context: dg.SensorEvaluationContext, safar: SafarResource
) -> dg.SensorResult | dg.SkipReason:
    home = safar.safar_home()
    if not home.catalog.exists():
        return dg.SkipReason(f"no warehouse yet at {home.catalog}")
    now = datetime.now(UTC).replace(tzinfo=None)
    definitions = load_segments(open_app_db(home))
    due = clock_due(home, definitions, now=now, manifest=dbt_project.manifest_path)
    if not due:
        return dg.SkipReason("no time-relative segment is due for a re-check")
    for job in (refresh_micro_batch_job, evaluate_segments_job):
        active = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=job.name, statuses=_ACTIVE), limit=1
        )
        if active:
            return dg.SkipReason(
                f"{len(due)} segment(s) due; run {active[0].run_id} of {job.name} will"
                " re-check them"
            )
    minute = now.strftime("%Y-%m-%dT%H:%M")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"clock-{minute}",
                tags={"safar/clock": minute, "safar/due_segments": ",".join(due)[:200]},
            )
        ]
    )
