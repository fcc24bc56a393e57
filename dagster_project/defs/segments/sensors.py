"""``segment_clock_sensor``: time-relative segments are re-checked when only time has passed.

"No app open in 7 days" changes with no new event. When such a segment's last evaluation is
older than its re-check interval (or a segment is new or changed), the sensor evaluates the due
segments itself, named by the minute so a repeated tick evaluates nothing twice, and reports a
``segment_membership`` materialization. A run launch per minute would cost more than the
evaluation. While another writer holds the warehouse the tick skips: that writer is a batch
(which re-checks these segments anyway) or a build, and the next tick comes within a minute.
"""

from datetime import UTC, datetime

import dagster as dg

from dagster_project.defs.dbt.project import dbt_project
from dagster_project.defs.resources import SafarResource
from dagster_project.defs.segments.assets import SEGMENTS_ASSET, outcome_metadata
from safar.appdb import open_app_db
from safar.segments.evaluate import clock_due, evaluate_segments
from safar.segments.registry import load_segments, static_members
from safar.writer_lock import WarehouseBusy, warehouse_writer


@dg.sensor(
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
    engine = open_app_db(home)
    definitions = load_segments(engine)
    due = clock_due(home, definitions, now=now, manifest=dbt_project.manifest_path)
    if not due:
        return dg.SkipReason("no time-relative segment is due for a re-check")
    batch_id = f"clock:{now.strftime('%Y-%m-%dT%H:%M')}"
    try:
        with warehouse_writer(home, purpose=f"segment re-check {batch_id}", wait=False):
            outcomes = evaluate_segments(
                home,
                definitions,
                as_of=now,
                batch_id=batch_id,
                static_members=static_members(engine),
                manifest=dbt_project.manifest_path,
            )
    except WarehouseBusy as busy:
        return dg.SkipReason(f"{len(due)} segment(s) due ({', '.join(due)}); {busy}")
    for outcome in outcomes:
        if outcome.status == "failed":
            context.log.error(f"segment {outcome.slug} failed: {outcome.reason}")
    evaluated = [o.slug for o in outcomes if o.status == "evaluated"]
    return dg.SensorResult(
        skip_reason=dg.SkipReason(
            f"re-checked {len(evaluated)} segment(s) at {now:%H:%M}: {', '.join(evaluated)}"
        ),
        asset_events=[
            dg.AssetMaterialization(
                asset_key=SEGMENTS_ASSET,
                description=f"Re-checked in place by segment_clock_sensor ({batch_id}).",
                metadata=outcome_metadata(outcomes),
            )
        ],
    )
