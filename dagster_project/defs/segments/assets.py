"""``segment_membership``: segment entry and exit, evaluated after the marts it reads.

Most batches are evaluated in place by the sensors (the ingest sensor's live lane, the clock
sensor), which report materializations of this asset. The asset itself runs in the micro-batch
job right after the dbt models, for batches too big for the live lane, and alone in
``evaluate_segments_job`` when an operator asks for a re-check. The batch id comes from the
run's tags (the ingest sensor names a batch by its newest landing file, as the live lane does),
so re-executing a run evaluates nothing twice.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from dagster_project.defs.dbt.project import dbt_project
from dagster_project.defs.resources import SafarResource
from dagster_project.pools import WAREHOUSE_POOL
from safar.appdb import open_app_db
from safar.segments.evaluate import Outcome, evaluate_segments
from safar.segments.registry import load_segments, static_members

SEGMENTS_ASSET = dg.AssetKey("segment_membership")
BATCH_TAGS = ("safar/last_file_id", "safar/clock")

# The marts refreshed in every micro-batch; segments read these (and segment_membership).
MART_DEPS = (
    "dim_users",
    "fct_events",
    "dim_devices",
    "dim_user_reachability",
    "dim_person_distinct_ids",
    "dim_user_attribute_history",
    "fct_sessions",
)


def batch_id_of(tags: dict[str, str], run_id: str) -> str:
    """The batch a run evaluates: its ingest or clock tag, else the run itself.

    Example:
        >>> batch_id_of({"safar/last_file_id": "0001-x"}, "run-1")
        'files:0001-x'
        >>> batch_id_of({}, "run-1")
        'run:run-1'
    """
    if "safar/last_file_id" in tags:
        return f"files:{tags['safar/last_file_id']}"
    if "safar/clock" in tags:
        return f"clock:{tags['safar/clock']}"
    return f"run:{run_id}"


@dg.asset(
    key=SEGMENTS_ASSET,
    deps=[dg.AssetKey(name) for name in MART_DEPS],
    pool=WAREHOUSE_POOL,
    group_name="segments",
    description=(
        "Segment membership history (segment_id, person_id, entered_at, exited_at) and the "
        "Segment Entered / Segment Exited events of every change."
    ),
)
def segment_membership(
    context: dg.AssetExecutionContext, safar: SafarResource
) -> dg.MaterializeResult:
    home = safar.safar_home()
    engine = open_app_db(home)
    definitions = load_segments(engine)
    outcomes = evaluate_segments(
        home,
        definitions,
        as_of=datetime.now(UTC),
        batch_id=batch_id_of(context.run.tags, context.run_id),
        static_members=static_members(engine),
        manifest=dbt_project.manifest_path,
    )
    for outcome in outcomes:
        if outcome.status == "failed":
            context.log.error(f"segment {outcome.slug} failed: {outcome.reason}")
        elif outcome.status == "evaluated":
            context.log.info(
                f"segment {outcome.slug}: {outcome.size} people, +{outcome.entered}"
                f" −{outcome.exited} ({outcome.reason}, {outcome.seconds:.2f} s)"
            )
    return dg.MaterializeResult(metadata=outcome_metadata(outcomes))


def outcome_metadata(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Counts and a per-segment table, for a materialization of ``segment_membership``."""
    table = "\n".join(
        f"| {o.slug} | {o.status} | {o.size if o.size is not None else ''} | {o.entered} "
        f"| {o.exited} | {o.reason} |"
        for o in outcomes
    )
    return {
        "evaluated": sum(o.status == "evaluated" for o in outcomes),
        "failed": sum(o.status == "failed" for o in outcomes),
        "entered": sum(o.entered for o in outcomes),
        "exited": sum(o.exited for o in outcomes),
        "segments": dg.MetadataValue.md(
            "| segment | status | size | entered | exited | why |\n|---|---|---|---|---|---|\n"
            + table
        ),
    }


evaluate_segments_job = dg.define_asset_job(
    name="evaluate_segments_job",
    selection=dg.AssetSelection.assets(SEGMENTS_ASSET),
    description=(
        "Evaluate the segments that are due now (new, changed, or relative to the current"
        " time); the clock sensor does this in place every minute."
    ),
)
