"""The Insights pages' pure parts: builder state ↔ specs, engine answers → frames and figures."""

from __future__ import annotations

import doctest
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import dashboards.lib.forms as forms_module
import dashboards.lib.results as results_module
from dashboards.lib import charts, forms, results
from safar.analytics.retention_spec import parse_retention_spec
from safar.analytics.spec import parse_funnel_spec
from safar.analytics.trends_spec import parse_trends_spec

FIXTURES = Path(__file__).resolve().parents[1] / "analytics" / "fixtures"


def _specs(kind: str) -> list[Any]:
    paths = sorted((FIXTURES / kind).glob("*.json"))
    assert paths, f"no {kind} fixtures"
    return [pytest.param(json.loads(p.read_text())["spec"], id=p.stem) for p in paths]


@pytest.mark.parametrize("module", [forms_module, results_module], ids=lambda m: m.__name__)
def test_doctests_pass(module: object) -> None:
    assert doctest.testmod(module).failed == 0


# Every golden spec of the engines, opened in a builder and read back untouched, is the same
# spec: what the builder cannot show rides along.
@pytest.mark.parametrize("spec", _specs("funnels"))
def test_a_funnel_spec_survives_the_builder(spec: dict[str, Any]) -> None:
    assert parse_funnel_spec(forms.funnel_spec(forms.funnel_state(spec))) == parse_funnel_spec(spec)


@pytest.mark.parametrize("spec", _specs("retention"))
def test_a_retention_spec_survives_the_builder(spec: dict[str, Any]) -> None:
    back = forms.retention_spec(forms.retention_state(spec))
    assert parse_retention_spec(back) == parse_retention_spec(spec)


@pytest.mark.parametrize("spec", _specs("trends"))
def test_a_trends_spec_survives_the_builder(spec: dict[str, Any]) -> None:
    assert parse_trends_spec(forms.trends_spec(forms.trends_state(spec))) == parse_trends_spec(spec)


def test_changing_one_widget_changes_only_its_part_of_the_funnel() -> None:
    spec = {
        "steps": [
            {"event": "a", "where": [{"property": "p", "op": "is_set"}]},
            {"event": "b", "name": "B!"},
        ],
        "window": {"value": 2, "unit": "hour"},
        "from": "2026-01-01T06:00",
        "to": "2026-01-31",
        "breakdown": {"property": "plan", "scope": "person", "attribution": "step", "step": 1},
        "where": [{"property": "country", "op": "eq", "value": "IR", "scope": "person"}],
    }
    state = forms.funnel_state(spec)

    assert state["funnels_breakdown"] == ("person", "plan")
    assert state["funnels_period"] == (date(2026, 1, 1), date(2026, 1, 31))
    assert forms.funnel_spec({**state, "funnels_step_1": "c"})["steps"] == [
        spec["steps"][0],
        {"event": "c"},
    ]
    more = forms.funnel_spec({**state, "funnels_n_steps": 3, "funnels_step_2": forms.ANY_EVENT})
    assert more["steps"][2] == {"event": None}
    moved = forms.funnel_spec({**state, "funnels_period": (date(2026, 1, 5), date(2026, 1, 6))})
    assert (moved["from"], moved["to"]) == ("2026-01-05", "2026-01-06")
    everything = forms.funnel_spec({**state, "funnels_period": ()})
    assert "from" not in everything and "to" not in everything
    assert forms.funnel_spec({**state, "funnels_attribution": "last_touch"})["breakdown"] == {
        "property": "plan",
        "scope": "person",
        "attribution": "last_touch",
    }
    assert "breakdown" not in forms.funnel_spec({**state, "funnels_breakdown": None})
    assert forms.funnel_spec({**state, "funnels_window_value": 5})["where"] == spec["where"]


def test_a_new_builder_starts_from_data_not_from_a_saved_spec() -> None:
    names = ["Home", "Product Viewed", "Signed Up", "Order Completed"]
    period = (date(2026, 1, 2), date(2026, 1, 31))

    funnel = forms.funnel_spec(forms.funnel_state(forms.default_funnel(names, period)))
    new_retention = forms.default_retention(names, period[1])
    retention = forms.retention_spec(forms.retention_state(new_retention))
    trends = forms.trends_spec(forms.trends_state(forms.default_trends(names, period)))

    assert [s["event"] for s in funnel["steps"]] == ["Product Viewed", "Order Completed"]
    assert parse_retention_spec(retention).intervals == 14
    assert parse_trends_spec(trends).series[0].event == "Home"


def test_a_one_step_funnel_and_an_empty_one_make_frames_and_figures() -> None:
    entered_nobody = [
        {"name": "a", "count": 0, "conversion_rate": 0.0, "average_conversion_seconds": None,
         "median_conversion_seconds": None},
        {"name": "b", "count": 0, "conversion_rate": 0.0, "average_conversion_seconds": None,
         "median_conversion_seconds": None},
    ]  # fmt: skip
    steps = results.funnel_steps_frame(entered_nobody)

    assert steps["step_conversion_rate"].to_list() == [0.0, 0.0]
    assert results.funnel_table(steps)["Median time from previous"].to_list() == ["–", "–"]
    assert [list(t.y) for t in charts.build_funnel_figure(steps).data] == [[0, 0], [0, 0]]
    assert results.funnel_breakdown_frame([]).is_empty()
    assert results.funnel_breakdown_table(results.funnel_breakdown_frame([])).columns == [
        "Value",
        "Conversion",
    ]
    assert charts.build_time_to_convert_figure(results.time_to_convert_frame({})).data
    empty_over_time = results.conversion_over_time_frame([])
    assert len(charts.build_conversion_over_time_figure(empty_over_time).data[0].x) == 0


def test_funnel_figure_stacks_each_bar_to_the_step_before() -> None:
    steps = results.funnel_steps_frame(
        [
            {"name": n, "count": c, "conversion_rate": c / 50, "average_conversion_seconds": None,
             "median_conversion_seconds": None}
            for n, c in (("Viewed", 50), ("Added", 20), ("Bought", 5))
        ]
    )  # fmt: skip

    converted, dropped = charts.build_funnel_figure(steps).data

    assert list(converted.x) == ["1. Viewed", "2. Added", "3. Bought"]
    assert [c + d for c, d in zip(converted.y, dropped.y, strict=True)] == [50, 50, 20]
    assert list(converted.text) == ["50 · 100.0%", "20 · 40.0%", "5 · 10.0%"]
    assert charts.build_funnel_figure(steps).layout.barmode == "stack"


def test_retention_heatmap_labels_every_cell_with_its_share() -> None:
    cohorts = [
        {"period_start": "2026-01-05T00:00:00+03:30", "values": [10, 5, 2]},
        {"period_start": "2026-01-12T00:00:00+03:30", "values": [4, 1]},
        {"period_start": "2026-01-19T00:00:00+03:30", "values": [0]},
    ]
    long = results.retention_frame(cohorts)

    (heat,) = charts.build_retention_figure(long, "week").data

    assert list(heat.x) == ["Week 0", "Week 1", "Week 2"]
    assert list(heat.y) == ["2026-01-05 (10)", "2026-01-12 (4)", "2026-01-19 (0)"]
    assert [list(r) for r in heat.text] == [
        ["100%", "50%", "20%"],
        ["100%", "25%", ""],
        ["", "", ""],  # an empty cohort has no shares
    ]
    assert (heat.zmin, heat.zmax) == (0, 100)
    table = results.retention_table(long, "week")
    assert table.columns == ["Cohort", "People", "Week 1", "Week 2"]
    assert table.row(1) == ("2026-01-12", 4, "25.0%", "")
    assert results.retention_average(long).filter(pl.col("offset") == 1)["rate"][0] == 6 / 14


def test_trends_figure_draws_a_line_per_series_and_breakdown_value() -> None:
    lines = [
        {"name": "Paid", "breakdown_value": "IRR", "labels": ["2026-01-01T00:00:00+00:00",
         "2026-01-02T00:00:00+00:00"], "values": [3, 4], "total": 7},
        {"name": "Paid", "breakdown_value": None, "labels": ["2026-01-01T00:00:00+00:00",
         "2026-01-02T00:00:00+00:00"], "values": [0, 1], "total": 1},
    ]  # fmt: skip

    fig = charts.build_trends_figure(results.trends_frame(lines))

    assert [(t.name, list(t.y)) for t in fig.data] == [
        ("Paid · IRR", [3.0, 4.0]),
        ("Paid · (none)", [0.0, 1.0]),
    ]
    assert list(fig.data[0].x) == [datetime(2026, 1, 1), datetime(2026, 1, 2)]
    assert results.trends_totals(lines)["Total"].to_list() == [7.0, 1.0]
