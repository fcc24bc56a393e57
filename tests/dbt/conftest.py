"""Fixtures for the dbt project tests (helpers live in ``warehouse_helpers``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from safar.config import SafarHome


@pytest.fixture(scope="session")
def make_home(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], SafarHome]:
    """A factory of fresh, empty homes (one temporary directory each)."""

    def _make(name: str) -> SafarHome:
        return SafarHome(Path(tmp_path_factory.mktemp(name))).ensure()

    return _make
