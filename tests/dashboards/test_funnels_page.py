"""The Funnels page as Streamlit runs it (``AppTest``) on the demo warehouse.

What the page shows is compared with :func:`safar.analytics.funnel.run_funnel` called directly
on the spec the page shows it ran; saved funnels go through the page into a real app DB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from page_helpers import assert_ok, run_engine, shown_spec, sidebar_notice
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from safar.analytics.funnel import run_funnel
from safar.analytics.spec import parse_funnel_spec
from safar.appdb.insights import get_insight, list_insights, save_insight
from safar.config import SafarHome

PAGE = "funnels.py"
COMMERCE = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]


def _engine(home: SafarHome, spec: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return run_engine(home, run_funnel, parse_funnel_spec(spec), **kw)


def _assert_shows(app, home: SafarHome) -> dict[str, Any]:
    """The tiles and the conversion table are the engine's answer to the shown spec."""
    spec = shown_spec(app)
    expected = _engine(home, spec, details=True)["steps"]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Entered"] == f"{expected[0]['count']:,}"
    assert metrics["Completed"] == f"{expected[-1]['count']:,}"
    assert metrics["Conversion"] == f"{expected[-1]['conversion_rate']:.1%}"
    table = app.dataframe[0].value
    assert table["Event"].tolist() == [s["name"] for s in expected]
    assert table["People"].tolist() == [s["count"] for s in expected]
    assert table["Of first step"].tolist() == [f"{s['conversion_rate']:.1%}" for s in expected]
    return spec


def test_a_new_page_shows_the_commerce_funnel_as_the_engine_computes_it(
    open_page, demo_home: SafarHome
) -> None:
    app = open_page(demo_home.root, PAGE)

    assert [t.value for t in app.main.title] == ["Funnels"]
    spec = _assert_shows(app, demo_home)
    assert [s["event"] for s in spec["steps"]] == COMMERCE
    assert (spec["from"], spec["to"]) == ("2026-01-02", "2026-01-31")  # the last 30 days
    assert spec["window"] == {"value": 1, "unit": "day"}
    # the funnel, time to convert and conversion over time
    assert len(app.get("plotly_chart")) == 3
    assert int(app.metric[0].value.replace(",", "")) > int(app.metric[1].value.replace(",", ""))
    assert not app.error


def test_the_builder_drives_the_spec(open_page, demo_home: SafarHome) -> None:
    app = open_page(demo_home.root, PAGE)

    app.number_input(key="funnels_n_steps").set_value(2)
    app.selectbox(key="funnels_step_0").select("Signed Up")
    app.selectbox(key="funnels_step_1").select("Order Completed")
    app.selectbox(key="funnels_order").select("strict")
    app.number_input(key="funnels_window_value").set_value(3)
    app.selectbox(key="funnels_window_unit").select("hour")
    app.date_input(key="funnels_period").set_value(()).run()

    assert_ok(app)
    spec = _assert_shows(app, demo_home)
    assert spec == {
        "steps": [{"event": "Signed Up"}, {"event": "Order Completed"}],
        "order": "strict",
        "window": {"value": 3, "unit": "hour"},
    }


def test_a_breakdown_shows_a_row_per_value(open_page, demo_home: SafarHome) -> None:
    app = open_page(demo_home.root, PAGE)

    app.selectbox(key="funnels_breakdown").select(("event", "category")).run()

    assert_ok(app)
    spec = shown_spec(app)
    assert spec["breakdown"] == {
        "property": "category",
        "scope": "event",
        "attribution": "first_touch",
    }
    expected = _engine(demo_home, spec)["breakdowns"]
    table = app.dataframe[1].value
    assert len(expected) > 1
    assert table["Value"].tolist() == [str(b["value"][0]) for b in expected]
    for i, step in enumerate(COMMERCE):
        assert table[f"{i + 1}. {step}"].tolist() == [b["steps"][i]["count"] for b in expected]
    assert len(app.get("plotly_chart")) == 4


@pytest.mark.parametrize("persons", [3, -3], ids=["reached", "dropped"])
def test_people_at_a_step_are_listed_and_downloadable(
    open_page, demo_home: SafarHome, monkeypatch: pytest.MonkeyPatch, persons: int
) -> None:
    offered: list[tuple[bytes, str | None]] = []
    load = MemoryMediaFileStorage.load_and_get_id

    def capture(self, data, mimetype, kind, filename=None):  # what the download button serves
        offered.append((data if isinstance(data, bytes) else data.encode(), filename))
        return load(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    app = open_page(demo_home.root, PAGE)

    app.selectbox(key="funnels_people").select(persons).run()

    assert_ok(app)
    expected = _engine(demo_home, shown_spec(app), persons=persons)["persons"]
    assert expected
    listed = app.dataframe[-1].value
    assert listed["person_id"].tolist() == [str(p) for p in expected]
    assert any(f"{len(expected):,} people" in c.value for c in app.caption)
    csv, filename = offered[-1]
    assert csv.decode().splitlines() == ["person_id", *map(str, expected)]
    kind = "step" if persons > 0 else "dropped-before-step"
    assert filename == f"funnel-{kind}-3.csv"


def test_a_funnel_saved_on_the_page_opens_again_in_a_new_session(
    open_page, demo_home: SafarHome, app_db: sa.Engine
) -> None:
    app = open_page(demo_home.root, PAGE)
    app.number_input(key="funnels_n_steps").set_value(2)
    app.selectbox(key="funnels_step_0").select("Signed Up")
    app.selectbox(key="funnels_step_1").select("Order Completed")
    app.number_input(key="funnels_window_value").set_value(7).run()
    app.text_input(key="funnels_save_name").input("Sign-up to order")
    app.text_area(key="funnels_save_description").input("Do new people buy in a week?")
    app.button(key="funnels_save").click().run()

    assert_ok(app)
    assert sidebar_notice(app) == ["Saved “Sign-up to order”."]
    saved = get_insight(app_db, "funnel", "Sign-up to order")
    assert saved.spec == shown_spec(app)
    assert saved.description == "Do new people buy in a week?"
    assert app.selectbox(key="funnels_saved").value == "Sign-up to order"

    fresh = open_page(demo_home.root, PAGE)
    assert [s["event"] for s in shown_spec(fresh)["steps"]] == COMMERCE
    fresh.selectbox(key="funnels_saved").select("Sign-up to order").run()

    assert_ok(fresh)
    assert shown_spec(fresh) == saved.spec
    assert fresh.selectbox(key="funnels_step_0").value == "Signed Up"
    assert fresh.number_input(key="funnels_window_value").value == 7
    assert fresh.text_input(key="funnels_save_name").value == "Sign-up to order"
    assert any("Do new people buy in a week?" in c.value for c in fresh.sidebar.caption)
    _assert_shows(fresh, demo_home)

    # Saving again under the same name updates it.
    fresh.number_input(key="funnels_window_value").set_value(14).run()
    fresh.button(key="funnels_save").click().run()
    assert sidebar_notice(fresh) == ["Updated “Sign-up to order”."]
    (only,) = list_insights(app_db, "funnel")
    assert (only.id, only.spec["window"]) == (saved.id, {"value": 14, "unit": "day"})


def test_rename_and_delete_from_the_sidebar(
    open_page, demo_home: SafarHome, app_db: sa.Engine
) -> None:
    save_insight(app_db, "funnel", "Checkout", {"steps": [{"event": "Checkout Started"}]})
    app = open_page(demo_home.root, PAGE)
    app.selectbox(key="funnels_saved").select("Checkout").run()

    app.text_input(key="funnels_rename_to_Checkout").input("Checkout (all)")
    app.button(key="funnels_rename").click().run()

    assert_ok(app)
    assert sidebar_notice(app) == ["Renamed “Checkout” to “Checkout (all)”."]
    assert [i.name for i in list_insights(app_db, "funnel")] == ["Checkout (all)"]
    assert app.selectbox(key="funnels_saved").value == "Checkout (all)"

    app.button(key="funnels_delete").click().run()

    assert_ok(app)
    assert sidebar_notice(app) == ["Deleted “Checkout (all)”."]
    assert list_insights(app_db, "funnel") == []
    assert app.selectbox(key="funnels_saved").value is None


def test_what_the_builder_cannot_show_survives_opening_and_saving(
    open_page, demo_home: SafarHome, app_db: sa.Engine
) -> None:
    spec = {
        "steps": [
            {"event": "Product Viewed", "where": [{"property": "category", "op": "eq",
                                                   "value": "mobile"}]},
            {"event": "Order Completed", "name": "Bought"},
        ],
        "from": "2026-01-10T08:00",
        "to": "2026-01-31",
        "timezone": "Asia/Tehran",
        "exclusions": [{"event": "Application Uninstalled", "from_step": 0, "to_step": 1}],
    }  # fmt: skip
    save_insight(app_db, "funnel", "Mobile buyers", spec)
    app = open_page(demo_home.root, PAGE)
    app.selectbox(key="funnels_saved").select("Mobile buyers").run()

    assert shown_spec(app) == {**spec, "order": "ordered", "window": {"value": 14, "unit": "day"}}
    _assert_shows(app, demo_home)

    app.number_input(key="funnels_window_value").set_value(2)
    app.selectbox(key="funnels_step_1").select("Checkout Started").run()
    changed = shown_spec(app)
    assert changed["steps"] == [spec["steps"][0], {"event": "Checkout Started"}]
    assert {k: changed[k] for k in ("from", "timezone", "exclusions")} == {
        k: spec[k] for k in ("from", "timezone", "exclusions")
    }
    app.button(key="funnels_save").click().run()
    assert get_insight(app_db, "funnel", "Mobile buyers").spec == changed


def test_a_spec_that_cannot_run_says_why_and_cannot_be_saved(
    open_page, demo_home: SafarHome, app_db: sa.Engine
) -> None:
    spec = {
        "steps": [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Signed Up"}],
        "exclusions": [{"event": "Application Uninstalled", "from_step": 1, "to_step": 2}],
    }
    save_insight(app_db, "funnel", "Three steps", spec)
    app = open_page(demo_home.root, PAGE)
    app.selectbox(key="funnels_saved").select("Three steps").run()
    assert not app.error

    app.number_input(key="funnels_n_steps").set_value(2).run()

    assert_ok(app)
    (error,) = app.error
    assert "exclusions[0].to_step" in error.value
    assert app.button(key="funnels_save").disabled
    assert not app.metric


def test_an_unbuilt_warehouse_shows_a_message(open_page, tmp_path: Path) -> None:
    app = open_page(tmp_path / "empty_home", PAGE)

    (info,) = app.info
    assert "not built yet" in info.value
    assert not (tmp_path / "empty_home" / "lake" / "catalog.sqlite").exists()
