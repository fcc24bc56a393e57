"""The Dagster instance settings Safar needs, in ``dagster.yaml`` beside this module.

Dagster reads instance settings only from ``$DAGSTER_HOME/dagster.yaml``, never from the code
location, so whatever starts Dagster (``safar demo``, a service unit, a developer) calls
:func:`prepare_dagster_home` first. Without it the ``warehouse`` pool has no limit and two runs
could write the warehouse at once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

INSTANCE_YAML = Path(__file__).with_name("dagster.yaml")


def prepare_dagster_home(dagster_home: Path) -> Path:
    """Create ``dagster_home`` with Safar's ``dagster.yaml`` unless it already has one.

    An existing ``dagster.yaml`` is an operator's choice (Postgres storage, other limits) and
    is left alone.

    Returns:
        The ``dagster.yaml`` Dagster will read.
    """
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(INSTANCE_YAML, target)
    return target
