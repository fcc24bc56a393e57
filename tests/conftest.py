"""Fixtures shared across the suite: one realistic demo warehouse, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from warehouse_helpers import DEMO_END

from safar.config import SafarHome


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> SafarHome:
    """2,000 users over 30 days (seed 1), generated and built into a real DuckLake warehouse.

    Read-only for tests: anything that writes must build its own home.
    """
    from safar.build import build
    from safar.generate import generate

    home = SafarHome(Path(tmp_path_factory.mktemp("demo_home"))).ensure()
    generate(home, users=2000, days=30, seed=1, end=DEMO_END, progress=False)
    build(home)
    return home
