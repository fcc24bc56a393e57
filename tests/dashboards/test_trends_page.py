"""The Events & Trends page as Streamlit runs it (``AppTest``) on the demo warehouse.

What the page shows is compared with :func:`safar.analytics.trends.run_trends` called directly
on the spec the page shows it ran.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from page_helpers import assert_ok, run_engine, shown_spec, sidebar_notice

from safar.analytics.trends import run_trends
from safar.analytics.trends_spec import parse_trends_spec
from safar.appdb.insights import get_insight
from safar.config import SafarHome

PAGE = "trends.py"


def _engine(home: SafarHome, spec: dict[str, Any]) -> dict[str, Any]:
    return run_engine(home, run_trends, parse_trends_spec(spec))


def _chart_lines(app) -> dict[str, list[float]]:
    (chart,) = app.get("plotly_chart")
    figure = json.loads(chart.proto.spec)
    return {trace["name"]: trace["y"] for trace in figure["data"]}


def _assert_shows(app, home: SafarHome) -> dict[str, Any]:
    """The totals table and the chart's lines are the engine's series."""
    spec = shown_spec(app)
    lines = _engine(home, spec)["series"]
    totals = app.dataframe[0].value
    assert totals["Total"].tolist() == [line["total"] for line in lines]
    assert list(_chart_lines(app).values()) == [line["values"] for line in lines]
    return spec


def test_a_new_page_counts_the_most_frequent_event_per_day(open_page, demo_home: SafarHome) -> None:
    app = open_page(demo_home.root, PAGE)

    assert [t.value for t in app.main.title] == ["Events & Trends"]
    spec = _assert_shows(app, demo_home)
    assert spec == {
        "series": [{"event": "Product Viewed", "math": "total"}],
        "interval": "day",
        "from": "2026-01-02",
        "to": "2026-01-31",
    }
    assert len(_chart_lines(app)["Product Viewed"]) == 30


def test_series_maths_interval_and_breakdown(open_page, demo_home: SafarHome) -> None:
    app = open_page(demo_home.root, PAGE)

    app.number_input(key="trends_n_series").set_value(2).run()
    app.selectbox(key="trends_event_1").select("Order Completed")
    app.selectbox(key="trends_math_1").select("sum").run()
    assert "series[1].property" in app.error[0].value
    assert app.button(key="trends_save").disabled

    app.selectbox(key="trends_property_1").select("revenue")
    app.selectbox(key="trends_math_0").select("unique_persons")
    app.selectbox(key="trends_interval").select("week")
    app.selectbox(key="trends_breakdown").select(("event", "currency")).run()

    assert_ok(app)
    assert not app.error
    spec = _assert_shows(app, demo_home)
    assert spec["series"] == [
        {"event": "Product Viewed", "math": "unique_persons",
         "name": "Product Viewed · unique people"},
        {"event": "Order Completed", "math": "sum", "property": "revenue",
         "name": "Order Completed · sum of revenue"},
    ]  # fmt: skip
    assert spec["interval"] == "week"
    assert spec["breakdown"] == {"property": "currency", "scope": "event"}
    assert "Order Completed · sum of revenue · IRR" in _chart_lines(app)


def test_a_saved_trend_opens_again_in_a_new_session(
    open_page, demo_home: SafarHome, app_db: sa.Engine
) -> None:
    app = open_page(demo_home.root, PAGE)
    app.selectbox(key="trends_event_0").select("Signed Up")
    app.selectbox(key="trends_math_0").select("unique_persons").run()
    app.text_input(key="trends_save_name").input("Sign-ups")
    app.button(key="trends_save").click().run()
    assert sidebar_notice(app) == ["Saved “Sign-ups”."]
    saved = get_insight(app_db, "trends", "Sign-ups")
    assert saved.spec == shown_spec(app)

    fresh = open_page(demo_home.root, PAGE)
    fresh.selectbox(key="trends_saved").select("Sign-ups").run()

    assert_ok(fresh)
    assert shown_spec(fresh) == saved.spec
    assert fresh.selectbox(key="trends_event_0").value == "Signed Up"
    _assert_shows(fresh, demo_home)


def test_an_unbuilt_warehouse_shows_a_message(open_page, tmp_path: Path) -> None:
    app = open_page(tmp_path / "empty_home", PAGE)

    (info,) = app.info
    assert "not built yet" in info.value
