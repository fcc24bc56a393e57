"""Helpers for the Insights page tests: what a page shows, and the engines called directly."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from streamlit.testing.v1 import AppTest

from safar.analytics.source import connect_warehouse
from safar.config import SafarHome


def assert_ok(app: AppTest) -> None:
    """The page ran to the end without an exception."""
    assert not app.exception, [e.message for e in app.exception]


def shown_spec(app: AppTest) -> dict[str, Any]:
    """The spec the page ran, from its "Spec (JSON)" block."""
    (code,) = app.code
    return json.loads(code.value)


def run_engine(home: SafarHome, run: Callable[..., Any], spec: Any, *args: Any, **kw: Any) -> Any:
    """``run(con, spec, ...)`` on a fresh read-only warehouse connection, as a page does."""
    con = connect_warehouse(home)
    try:
        return run(con, spec, *args, **kw)
    finally:
        con.close()


def sidebar_notice(app: AppTest) -> list[str]:
    """The saved-insights messages in the sidebar (success, error and warning boxes)."""
    return [e.value for kind in ("success", "error", "warning") for e in app.sidebar.get(kind)]
