"""The app as Streamlit runs it (``AppTest``), against the demo warehouse and an empty home."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from safar.config import SafarHome
from safar.warehouse import connect

APP = Path(__file__).resolve().parents[2] / "dashboards" / "streamlit_app.py"


def _run_app(monkeypatch: pytest.MonkeyPatch, home: Path) -> AppTest:
    # The app resolves the home itself (safar.config.home_from_env), as it does in production.
    monkeypatch.setenv("SAFAR_HOME", str(home))
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def _metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def test_overview_shows_the_marts_numbers(
    monkeypatch: pytest.MonkeyPatch, demo_home: SafarHome
) -> None:
    app = _run_app(monkeypatch, demo_home.root)

    assert [t.value for t in app.sidebar.title] == ["Safar"]
    assert [t.value for t in app.main.title] == ["Overview"]
    start, end = app.date_input(key="overview_period").value
    con = connect(demo_home, read_only=True)
    try:
        total, known, unknown, signed_up = con.execute(
            """
            select count(*), count(*) filter (where is_known), count(*) filter (where not is_known),
                count(*) filter (where cast(signed_up_at as date) between ? and ?)
            from dim_users
            """,
            [start, end],
        ).fetchone()
        (mau,) = con.execute(
            "select mau from fct_active_users_daily where activity_date = ?", [end]
        ).fetchone()
    finally:
        con.close()
    metrics = _metrics(app)
    assert metrics["Total users"] == f"{total:,}"
    assert metrics["Known users"] == f"{known:,}"
    assert metrics["Unknown users"] == f"{unknown:,}"
    assert metrics["Sign-ups in period"] == f"{signed_up:,}"
    assert metrics[f"MAU on {end:%b %d}"] == f"{mau:,}"
    assert total > 0 and known > 0 and signed_up > 0
    assert len(app.get("plotly_chart")) == 4


def test_picking_a_shorter_period_changes_the_period_numbers(
    monkeypatch: pytest.MonkeyPatch, demo_home: SafarHome
) -> None:
    app = _run_app(monkeypatch, demo_home.root)
    start, end = app.date_input(key="overview_period").value
    before = _metrics(app)

    app.date_input(key="overview_period").set_value((end, end)).run()

    assert not app.exception
    after = _metrics(app)
    assert after["Total users"] == before["Total users"]
    signups = [int(m["Sign-ups in period"].replace(",", "")) for m in (before, after)]
    assert signups[1] <= signups[0]


def test_an_unbuilt_warehouse_shows_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app = _run_app(monkeypatch, tmp_path / "empty_home")

    (info,) = app.info
    assert "not built yet" in info.value
    assert "safar build" in info.value
    assert not app.metric
    assert not (tmp_path / "empty_home" / "lake" / "catalog.sqlite").exists()
