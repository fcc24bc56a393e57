"""Fixtures shared across the suite: one realistic demo warehouse, built once per session."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from safar.config import SafarHome

DEMO_END = date(2026, 1, 31)


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
