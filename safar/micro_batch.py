"""Micro-batches in place, in two stages: the event models first, the profile models after.

The ingest sensor's live lane calls these for small batches, so an event reaches the marts and
its ``Segment Entered`` event is out within seconds: a Dagster run launch alone costs 15–20 s
on 2 cores (ARCHITECTURE §6). dbt is the rest of the cost — about a quarter of a second per
model on 2 cores, whatever the batch size — so the refresh is split:

1. **events** (``refresh_events``): ``fct_events``, the identity mart
   ``dim_person_distinct_ids`` and the micro-batch models they are built from (staging,
   identity, sessions), then the segments that read none of the profile models. Behaviour
   segments ("did X") are out after this stage.
2. **profiles** (``refresh_profiles``): the other micro-batch models (``dim_users``,
   ``dim_devices``, reachability, orders, …), then every segment still due. The live lane runs
   it when no new file is waiting, and at least every ``profiles_max_lag_seconds`` under
   continuous load, so events never queue behind profiles for long.

Batches too big for a sensor tick go to a ``refresh_micro_batch_job`` run, which does both
stages' work as assets (and runs the dbt tests).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from safar.appdb import open_app_db
from safar.build import build
from safar.config import SafarHome
from safar.segments.evaluate import Outcome, evaluate_segments
from safar.segments.registry import load_segments, static_members
from safar.segments.sandbox import manifest_path
from safar.writer_lock import warehouse_writer

MICRO_BATCH_TAG = "micro_batch"
# fct_events and the identity mart (publishing Segment Entered needs it), with their parents.
EVENT_MARTS = ("fct_events", "dim_person_distinct_ids")
EVENT_MODELS = " ".join(f"+{mart}" for mart in EVENT_MARTS)
# dbt selectors: a comma intersects, a space unites.
EVENT_SELECTOR = " ".join(f"tag:{MICRO_BATCH_TAG},+{mart}" for mart in EVENT_MARTS)
PROFILE_SELECTOR = f"tag:{MICRO_BATCH_TAG}"


@dataclass(frozen=True)
class MicroBatch:
    """What one stage of a micro-batch refreshed."""

    batch_id: str
    stage: str
    models: list[str]
    quarantined: list[Path]
    segments: list[Outcome]
    seconds: float


def micro_batch_models(manifest: Path) -> set[str]:
    """The names of the models tagged ``micro_batch`` in a dbt manifest."""
    nodes = json.loads(manifest.read_text())["nodes"].values()
    return {
        n["name"] for n in nodes if n["resource_type"] == "model" and MICRO_BATCH_TAG in n["tags"]
    }


def refresh_events(home: SafarHome, *, batch_id: str, wait: bool = True) -> MicroBatch:
    """Stage 1: the event models, then the segments that read no profile model.

    Args:
        home: the Safar home.
        batch_id: names the batch (``files:<newest landing file id>``); a segment is evaluated
            once per batch, so running a stage again for the same batch publishes nothing twice.
        wait: wait for another writer to finish; if false, raise ``WarehouseBusy`` at once.

    Raises:
        WarehouseBusy: ``wait`` is false and another writer holds the warehouse.
        BuildError: a dbt model failed; nothing was evaluated.
    """
    started = time.perf_counter()
    with warehouse_writer(home, purpose=f"micro-batch events {batch_id}", wait=wait):
        built = build(home, select=EVENT_SELECTOR, test=False)
        profiles = micro_batch_models(manifest_path(home)) - set(built.models)
        outcomes = _evaluate(home, batch_id, waiting_for=profiles)
    return MicroBatch(
        batch_id, "events", built.models, built.quarantined, outcomes, _since(started)
    )


def refresh_profiles(home: SafarHome, *, batch_id: str, wait: bool = True) -> MicroBatch:
    """Stage 2: the other micro-batch models, then every segment still due.

    Arguments and errors as :func:`refresh_events`.
    """
    started = time.perf_counter()
    with warehouse_writer(home, purpose=f"micro-batch profiles {batch_id}", wait=wait):
        built = build(home, select=PROFILE_SELECTOR, exclude=EVENT_MODELS, test=False)
        outcomes = _evaluate(home, batch_id)
    return MicroBatch(
        batch_id, "profiles", built.models, built.quarantined, outcomes, _since(started)
    )


def _evaluate(
    home: SafarHome, batch_id: str, waiting_for: Collection[str] = frozenset()
) -> list[Outcome]:
    engine = open_app_db(home)
    return evaluate_segments(
        home,
        load_segments(engine),
        as_of=datetime.now(UTC),
        batch_id=batch_id,
        static_members=static_members(engine),
        waiting_for=waiting_for,
    )


def _since(started: float) -> float:
    return time.perf_counter() - started
