"""The live lane: the ingest sensor refreshes small batches itself instead of launching a run.

A run launch costs 15–20 s on 2 cores and the sensor daemon starts a tick at best every 5 s,
while an event should reach its ``Segment Entered`` (and, later, its message) within 10 s
(ARCHITECTURE §6). So a tick that finds a small batch refreshes it in place
(``safar.micro_batch``: event models and their segments first, profile models after) and
reports what it refreshed as asset materializations; a big batch still goes to a
``refresh_micro_batch_job`` run. A tick that finds nothing keeps looking for a few seconds,
which cuts the wait for the next tick from up to 5 s to a quarter of a second.
"""

from collections.abc import Sequence

import dagster as dg
from dagster_dbt import get_asset_key_for_model
from pydantic import Field

from dagster_project.defs.dbt.assets import warehouse_dbt_assets
from dagster_project.defs.segments.assets import SEGMENTS_ASSET, outcome_metadata
from safar.micro_batch import MicroBatch

POLL_SECONDS = 0.25


class LiveLane(dg.ConfigurableResource):
    """How much the ingest sensor refreshes in place, and how long a tick looks for files."""

    max_bytes: int = Field(
        default=8 * 1024 * 1024,
        description=(
            "The largest batch (bytes of new landing files) the sensor refreshes itself; a "
            "bigger one goes to a refresh_micro_batch_job run. 0 sends every batch to a run."
        ),
    )
    wait_seconds: float = Field(
        default=4.0,
        description=(
            "How long a tick that finds no new file keeps looking before it returns. The daemon "
            "starts a tick every 5 s at best, so this keeps the lane listening in between."
        ),
    )
    busy_seconds: float = Field(
        default=20.0,
        description=(
            "A tick starts no new batch after this long, so it returns well inside the "
            "sensor's 60 s time limit; the next tick goes on at once."
        ),
    )
    max_stage_seconds: float = Field(
        default=25.0,
        description=(
            "A refresh stage in place that takes longer than this (a warehouse grown too big "
            "for a sensor tick, which must end within 60 s) closes the lane for "
            "closed_seconds: batches go to runs meanwhile."
        ),
    )
    closed_seconds: float = Field(
        default=600.0, description="How long the lane stays closed after a slow stage."
    )
    profiles_max_lag_seconds: float = Field(
        default=30.0,
        description=(
            "Profile models are refreshed when no file is waiting, and at least this often "
            "under continuous load (event models always come first)."
        ),
    )


def batch_materializations(batch: MicroBatch) -> Sequence[dg.AssetMaterialization]:
    """One materialization per model the stage refreshed, and one for segment membership."""
    described = (
        f"Refreshed in place by landing_files_sensor ({batch.stage} stage of {batch.batch_id})."
    )
    metadata = {"batch": batch.batch_id, "stage": batch.stage}
    events = [
        dg.AssetMaterialization(
            asset_key=get_asset_key_for_model([warehouse_dbt_assets], model),
            description=described,
            metadata=metadata,
        )
        for model in batch.models
    ]
    events.append(
        dg.AssetMaterialization(
            asset_key=SEGMENTS_ASSET,
            description=described,
            metadata={
                **metadata,
                "seconds": round(batch.seconds, 3),
                **outcome_metadata(batch.segments),
            },
        )
    )
    return events


@dg.definitions
def live_lane_resource() -> dg.Definitions:
    return dg.Definitions(resources={"live_lane": LiveLane()})
