"""Jobs over the dbt assets: the full build, and the slice a micro-batch refreshes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import build_dbt_asset_selection

from dagster_project.defs.dbt.assets import warehouse_dbt_assets
from dagster_project.defs.dbt.project import dbt_project
from dagster_project.defs.segments.assets import SEGMENTS_ASSET
from safar.micro_batch import MICRO_BATCH_TAG



def tests_reading_outside(manifest: Mapping[str, Any], tag: str) -> set[str]:
    """Names of the dbt tests that read a model not tagged ``tag``.

    Example:
        >>> manifest = {"nodes": {
        ...     "model.p.a": {"resource_type": "model", "tags": ["micro_batch"]},
        ...     "model.p.b": {"resource_type": "model", "tags": ["nightly"]},
        ...     "test.p.t1": {"resource_type": "test", "name": "t1",
        ...                   "depends_on": {"nodes": ["model.p.a"]}},
        ...     "test.p.t2": {"resource_type": "test", "name": "t2",
        ...                   "depends_on": {"nodes": ["model.p.a", "model.p.b"]}},
        ... }}
        >>> tests_reading_outside(manifest, "micro_batch")
        {'t2'}
    """
    nodes = manifest["nodes"]
    tagged = {uid for uid, n in nodes.items() if n["resource_type"] == "model" and tag in n["tags"]}
    return {
        node["name"]
        for node in nodes.values()
        if node["resource_type"] == "test"
        and any(d.startswith("model.") and d not in tagged for d in node["depends_on"]["nodes"])
    }


def micro_batch_selection() -> dg.AssetSelection:
    """The models tagged ``micro_batch`` and the checks that read nothing else.

    dbt selects tests eagerly: a relationships test between a micro-batch model and a nightly
    one would be picked, and would fail whenever new rows reach only the micro-batch side
    (or the nightly table does not exist yet). Those tests run with the full build instead.
    """
    manifest = json.loads(dbt_project.manifest_path.read_text())
    outside = tests_reading_outside(manifest, MICRO_BATCH_TAG)
    skipped = [key for key in warehouse_dbt_assets.check_keys if key.name in outside]
    models = build_dbt_asset_selection([warehouse_dbt_assets], dbt_select=f"tag:{MICRO_BATCH_TAG}")
    return models - dg.AssetSelection.checks(*skipped)


build_warehouse_job = dg.define_asset_job(
    name="build_warehouse_job",
    selection=dg.AssetSelection.assets(warehouse_dbt_assets),
    description="Build and test every dbt model of the warehouse.",
)

refresh_micro_batch_job = dg.define_asset_job(
    name="refresh_micro_batch_job",
    # Segments are evaluated after the marts in the same run: no second run launch per batch.
    selection=micro_batch_selection() | dg.AssetSelection.assets(SEGMENTS_ASSET),
    description=(
        "Refresh the models tagged `micro_batch` (staging and the marts that follow new events) "
        "after new landing files arrive, then evaluate the segments whose tables changed."
    ),
)
