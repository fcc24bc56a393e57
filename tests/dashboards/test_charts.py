"""Figure builders on hand-made frames: traces, axis titles and the values plotted."""

from __future__ import annotations

import doctest
from datetime import date

import polars as pl
import pytest

import dashboards.lib.charts as charts_module
import dashboards.lib.periods as periods_module
from dashboards.lib.charts import (
    build_active_users_figure,
    build_channel_reachability_figure,
    build_installs_figure,
    build_known_unknown_figure,
)

DAYS = [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)]


@pytest.fixture
def active() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "activity_date": DAYS,
            "dau": [10, 12, 9],
            "wau": [20, 25, 27],
            "mau": [40, 45, 50],
            "dau_known": [6, 7, 5],
            "dau_unknown": [4, 5, 4],
        }
    )


@pytest.mark.parametrize("module", [charts_module, periods_module], ids=lambda m: m.__name__)
def test_doctests_pass(module: object) -> None:
    assert doctest.testmod(module).failed == 0


def test_active_users_has_one_line_per_metric(active: pl.DataFrame) -> None:
    fig = build_active_users_figure(active)

    assert [t.name for t in fig.data] == ["DAU", "WAU", "MAU"]
    assert {t.type for t in fig.data} == {"scatter"}
    assert list(fig.data[0].x) == DAYS
    assert [list(t.y) for t in fig.data] == [[10, 12, 9], [20, 25, 27], [40, 45, 50]]
    assert fig.layout.xaxis.title.text == "Date"
    assert fig.layout.yaxis.title.text == "Users"
    assert fig.layout.title.text == "Active users"


def test_known_unknown_stacks_the_two_halves_of_dau(active: pl.DataFrame) -> None:
    fig = build_known_unknown_figure(active)

    assert [t.name for t in fig.data] == ["Known", "Unknown"]
    assert {t.stackgroup for t in fig.data} == {"dau"}
    stacked = [k + u for k, u in zip(fig.data[0].y, fig.data[1].y, strict=True)]
    assert stacked == active["dau"].to_list()
    assert fig.layout.yaxis.title.text == "Users"


def test_channel_reachability_plots_percentages_with_readable_labels() -> None:
    df = pl.DataFrame(
        {
            "channel": ["email", "sms", "push", "web_push"],
            "total_users": [200, 200, 200, 200],
            "reachable_users": [150, 90, 61, 0],
            "reachable_pct": [75.0, 45.0, 30.5, 0.0],
        }
    )

    fig = build_channel_reachability_figure(df)

    (bar,) = fig.data
    assert bar.type == "bar"
    assert list(bar.x) == ["Email", "SMS", "Push", "Web push"]
    assert list(bar.y) == [75.0, 45.0, 30.5, 0.0]
    assert list(bar.text) == ["75.0%", "45.0%", "30.5%", "0.0%"]
    assert [tuple(c) for c in bar.customdata][2] == (61, 200)
    assert tuple(fig.layout.yaxis.range) == (0, 100)
    assert fig.layout.xaxis.title.text == "Channel"


def test_installs_shows_installs_and_uninstalls_side_by_side() -> None:
    df = pl.DataFrame(
        {"activity_date": DAYS, "installs": [5, 3, 0], "uninstalls": [1, 0, 2]},
    )

    fig = build_installs_figure(df)

    assert [(t.type, t.name) for t in fig.data] == [("bar", "Installs"), ("bar", "Uninstalls")]
    assert [list(t.y) for t in fig.data] == [[5, 3, 0], [1, 0, 2]]
    assert fig.layout.barmode == "group"
    assert fig.layout.xaxis.title.text == "Date"


@pytest.mark.parametrize(
    "build",
    [build_active_users_figure, build_known_unknown_figure, build_installs_figure],
)
def test_an_empty_period_still_draws_an_empty_chart(build, active: pl.DataFrame) -> None:
    empty = active.clear().with_columns(pl.lit(0).alias("installs"), pl.lit(0).alias("uninstalls"))

    fig = build(empty)

    assert fig.data and all(len(t.x) == 0 for t in fig.data)
