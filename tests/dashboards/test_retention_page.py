"""The Retention page as Streamlit runs it (``AppTest``) on the demo warehouse.

What the page shows is compared with :func:`safar.analytics.retention.run_retention` called
directly on the spec the page shows it ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from page_helpers import assert_ok, run_engine, shown_spec, sidebar_notice

from safar.analytics.retention import run_retention
from safar.analytics.retention_spec import parse_retention_spec
from safar.appdb.insights import get_insight, save_insight
from safar.config import SafarHome

PAGE = "retention.py"


def _engine(home: SafarHome, spec: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return run_engine(home, run_retention, parse_retention_spec(spec), **kw)


def _assert_shows(app, home: SafarHome) -> dict[str, Any]:
    """The heatmap's table is the engine's cohorts, as shares of each cohort."""
    spec = shown_spec(app)
    cohorts = _engine(home, spec)["cohorts"]
    table = app.dataframe[0].value
    assert table["People"].tolist() == [c["values"][0] for c in cohorts]
    period = spec["period"].capitalize()
    for offset in range(1, len(cohorts)):
        expected = [
            (f"{c['values'][offset] / c['values'][0]:.1%}" if c["values"][0] else "")
            if offset < len(c["values"])
            else ""
            for c in cohorts
        ]
        assert table[f"{period} {offset}"].tolist() == expected
    return spec


def test_a_new_page_shows_daily_retention_as_the_engine_computes_it(
    open_page, demo_home: SafarHome
) -> None:
    app = open_page(demo_home.root, PAGE)

    assert [t.value for t in app.main.title] == ["Retention"]
    spec = _assert_shows(app, demo_home)
    assert spec == {
        "target": {"event": None},
        "returning": {"event": None},
        "period": "day",
        "intervals": 14,
        "type": "recurring",
        "cumulative": False,
        "to": "2026-01-31",
    }
    (heatmap,) = app.get("plotly_chart")
    assert heatmap.proto.spec
    cohorts = _engine(demo_home, spec)["cohorts"]
    back = sum(c["values"][1] for c in cohorts[:-1]) / sum(c["values"][0] for c in cohorts[:-1])
    assert {m.label: m.value for m in app.metric}["Back after 1 day"] == f"{back:.1%}"


def test_the_builder_drives_the_spec(open_page, demo_home: SafarHome) -> None:
    app = open_page(demo_home.root, PAGE)

    app.selectbox(key="retention_target").select("Signed Up")
    app.selectbox(key="retention_returning").select("Order Completed")
    app.selectbox(key="retention_period").select("week")
    app.number_input(key="retention_intervals").set_value(4)
    app.selectbox(key="retention_type").select("first_time")
    app.checkbox(key="retention_cumulative").check().run()

    assert_ok(app)
    spec = _assert_shows(app, demo_home)
    assert spec == {
        "target": {"event": "Signed Up"},
        "returning": {"event": "Order Completed"},
        "period": "week",
        "intervals": 4,
        "type": "first_time",
        "cumulative": True,
        "to": "2026-01-31",
    }
    assert len(app.dataframe[0].value) == 4


def test_a_cohorts_people_are_listed(open_page, demo_home: SafarHome) -> None:
    app = open_page(demo_home.root, PAGE)

    app.selectbox(key="retention_people").select(3).run()

    assert_ok(app)
    expected = _engine(demo_home, shown_spec(app), actors=3)["actors"]
    listed = app.dataframe[-1].value
    assert listed["person_id"].tolist() == [str(a["person"]) for a in expected]
    first = expected[0]["appearances"]
    assert listed["returned"][0] == ", ".join(f"Day {c}" for c in first if c)


def test_a_saved_report_opens_again_in_a_new_session(
    open_page, demo_home: SafarHome, app_db: sa.Engine
) -> None:
    app = open_page(demo_home.root, PAGE)
    app.selectbox(key="retention_period").select("week")
    app.number_input(key="retention_intervals").set_value(4).run()
    app.text_input(key="retention_save_name").input("Weekly")
    app.button(key="retention_save").click().run()
    assert sidebar_notice(app) == ["Saved “Weekly”."]
    saved = get_insight(app_db, "retention", "Weekly")
    assert saved.spec == shown_spec(app)

    fresh = open_page(demo_home.root, PAGE)
    fresh.selectbox(key="retention_saved").select("Weekly").run()

    assert_ok(fresh)
    assert shown_spec(fresh) == saved.spec
    assert fresh.selectbox(key="retention_period").value == "week"
    _assert_shows(fresh, demo_home)


def test_a_saved_first_period_disables_the_periods_count(
    open_page, demo_home: SafarHome, app_db: sa.Engine
) -> None:
    spec = {"target": {"event": "Signed Up"}, "from": "2026-01-20", "to": "2026-01-31"}
    save_insight(app_db, "retention", "Since the 20th", spec)
    app = open_page(demo_home.root, PAGE)
    app.selectbox(key="retention_saved").select("Since the 20th").run()

    assert app.number_input(key="retention_intervals").disabled
    shown = shown_spec(app)
    assert "intervals" not in shown and shown["from"] == "2026-01-20"
    _assert_shows(app, demo_home)
    assert len(app.dataframe[0].value) == 12  # a cohort a day, January 20 to 31


def test_an_unbuilt_warehouse_shows_a_message(open_page, tmp_path: Path) -> None:
    app = open_page(tmp_path / "empty_home", PAGE)

    (info,) = app.info
    assert "not built yet" in info.value
