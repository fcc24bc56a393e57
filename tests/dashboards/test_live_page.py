"""The Live page as Streamlit runs it (``AppTest``), on landing zones written moments ago."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from dashboards.lib.charts import build_events_per_minute_figure
from safar.config import SafarHome
from safar.lake import LakeWriter
from safar.live import live_stats

APP = Path(__file__).resolve().parents[2] / "dashboards" / "streamlit_app.py"
TILES = ("Active now", "Known", "Unknown", "New today", "Returning")


def _live_page(monkeypatch: pytest.MonkeyPatch, home: Path) -> AppTest:
    monkeypatch.setenv("SAFAR_HOME", str(home))
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    app.switch_page("app_pages/live.py").run()
    assert not app.exception, [e.message for e in app.exception]
    assert [t.value for t in app.main.title] == ["Live"]
    return app


def _land(home: SafarHome, rows: list[dict]) -> None:
    assert LakeWriter(home).write(pl.DataFrame(rows, infer_schema_length=None)).rejected == 0


@pytest.fixture
def busy_home(tmp_path: Path) -> SafarHome:
    """A shop a few minutes into a busy hour, on the real clock (the page reads "now").

    Every event is well inside its window, so the page and the test see the same numbers even
    if a few seconds pass between them.
    """
    home = SafarHome(tmp_path / "home").ensure()
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {"type": "identify", "user_id": "u1", "anonymous_id": "a1", "traits": "{}", "ago": 40},
        {"type": "track", "event": "Order Completed", "user_id": "u1", "ago": 1},
        {"type": "page", "event": "Home", "anonymous_id": "a1", "ago": 2},
        {"type": "page", "event": "Home", "anonymous_id": "a2", "ago": 2},
        {"type": "screen", "event": "Cart", "anonymous_id": "a3", "ago": 3},
        {"type": "track", "event": "Product Viewed", "anonymous_id": "a3", "ago": 3},
        {"type": "track", "event": "Product Viewed", "anonymous_id": "a4", "ago": 10},
        {"type": "track", "event": "Message Sent", "user_id": "u9", "ago": 1},
    ]
    _land(
        home,
        [
            {
                "message_id": f"m{i}",
                **{k: v for k, v in row.items() if k != "ago"},
                "timestamp": now - timedelta(minutes=row["ago"]),
                "received_at": now - timedelta(minutes=row["ago"]),
            }
            for i, row in enumerate(rows)
        ],
    )
    return home


def test_the_tiles_and_tables_show_what_safar_live_computes(
    monkeypatch: pytest.MonkeyPatch, busy_home: SafarHome
) -> None:
    app = _live_page(monkeypatch, busy_home.root)
    expected = live_stats(busy_home)

    metrics = {m.label: m.value for m in app.metric}
    assert list(metrics) == list(TILES)
    assert [metrics[label] for label in TILES] == [
        f"{expected.active_people:,}",
        f"{expected.known_people:,}",
        f"{expected.unknown_people:,}",
        f"{expected.new_people:,}",
        f"{expected.returning_people:,}",
    ]
    # u1 (signed in, also browsing as a1), a2 and a3; a4 was ten minutes ago. (New and
    # returning depend on the UTC day, so near midnight they differ; they add up regardless.)
    assert [metrics[label] for label in TILES[:3]] == ["3", "1", "2"]

    (chart,) = app.get("plotly_chart")
    assert chart.proto.spec  # a figure was sent, not an empty placeholder
    top_events, top_pages = (d.value for d in app.dataframe)
    assert top_events.to_dict("records") == expected.top_events.to_dicts()
    assert top_pages.to_dict("records") == expected.top_pages.to_dicts()
    assert any("last event received" in c.value for c in app.caption)


def test_an_empty_landing_zone_says_so_instead_of_showing_zeros(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app = _live_page(monkeypatch, tmp_path / "empty_home")

    (info,) = app.info
    assert "No events have landed yet" in info.value
    assert not app.metric and not app.get("plotly_chart")
    assert not (tmp_path / "empty_home" / "lake").exists()  # the page wrote nothing


def test_a_quiet_landing_zone_shows_zeros_and_says_when_it_last_heard(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = SafarHome(tmp_path / "home").ensure()
    long_ago = datetime(2026, 1, 1, 12, 0)
    _land(
        home,
        [
            {
                "message_id": "m1",
                "type": "track",
                "event": "Product Viewed",
                "anonymous_id": "a1",
                "timestamp": long_ago,
                "received_at": long_ago,
            }
        ],
    )

    app = _live_page(monkeypatch, home.root)

    assert {m.label: m.value for m in app.metric} == dict.fromkeys(TILES, "0")
    assert any("nothing received today or yesterday" in c.value for c in app.caption)
    assert not app.dataframe
    assert len(app.get("plotly_chart")) == 1


def test_events_per_minute_stacks_peoples_events_under_the_rest() -> None:
    minutes = [datetime(2026, 1, 1, 12, m) for m in range(60)]
    events = [0] * 58 + [7, 3]
    activity = [0] * 58 + [5, 3]
    df = pl.DataFrame({"minute": minutes, "events": events, "activity_events": activity})

    fig = build_events_per_minute_figure(df)

    assert [(t.type, t.name) for t in fig.data] == [("bar", "People"), ("bar", "Other")]
    assert fig.layout.barmode == "stack"
    assert list(fig.data[0].x) == minutes
    assert list(fig.data[0].y) == activity
    assert list(fig.data[1].y) == [0] * 58 + [2, 0]
    assert fig.layout.xaxis.title.text == "Minute (UTC)"
    assert fig.layout.title.text == "Events per minute"
