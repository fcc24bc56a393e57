"""Fixtures for the Insights page tests: open a page as Streamlit runs it, with its own app DB."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from page_helpers import assert_ok
from streamlit.testing.v1 import AppTest

from safar.appdb import open_app_db

APP = Path(__file__).resolve().parents[2] / "dashboards" / "streamlit_app.py"

OpenPage = Callable[[Path, str], AppTest]


@pytest.fixture
def app_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    """A fresh app DB for the app (``$SAFAR_APP_DB_URL``), so the demo home stays read-only."""
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    monkeypatch.setenv("SAFAR_APP_DB_URL", url)
    return open_app_db(url=url)


@pytest.fixture
def open_page(monkeypatch: pytest.MonkeyPatch, app_db: sa.Engine) -> OpenPage:
    """Open ``app_pages/<page>`` of the app on the home at a path; fails on any exception."""

    def open_(home: Path, page: str) -> AppTest:
        monkeypatch.setenv("SAFAR_HOME", str(home))
        app = AppTest.from_file(str(APP), default_timeout=120)
        app.run()
        app.switch_page(f"app_pages/{page}").run()
        assert_ok(app)
        return app

    return open_
