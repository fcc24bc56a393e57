"""``safar funnel`` / ``safar retention`` end to end, and the warehouse as a source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from reference_funnel import run_funnel as reference_funnel
from reference_retention import run_retention as reference_retention
from test_funnel_engine import approx

from safar.analytics.events import build_event_log
from safar.analytics.funnel import run_funnel
from safar.analytics.retention import run_retention
from safar.analytics.retention_spec import parse_retention_spec
from safar.analytics.source import connect_log, connect_warehouse, parquet_messages
from safar.analytics.spec import parse_funnel_spec
from safar.cli import main
from safar.config import SafarHome
from safar.lake import landing_files

MESSAGES = [
    {"type": "track", "event": "view", "anonymousId": "a1", "timestamp": "2026-01-01T10:00:00Z"},
    {"type": "identify", "anonymousId": "a1", "userId": "u1", "timestamp": "2026-01-01T10:01Z"},
    {"type": "track", "event": "buy", "userId": "u1", "timestamp": "2026-01-01T10:05:00Z"},
    {"type": "track", "event": "view", "userId": "u2", "timestamp": "2026-01-02T09:00:00Z"},
    {"type": "track", "event": "view", "anonymousId": "a3", "timestamp": "2026-01-03T09:00:00Z"},
    {"type": "track", "event": "buy", "userId": "u2", "timestamp": "2026-01-03T09:30:00Z"},
]
FUNNEL = {"steps": [{"event": "view"}, {"event": "buy"}], "window": {"value": 1, "unit": "day"}}
RETENTION = {
    "target": {"event": "view"},
    "returning": {"event": None},
    "to": "2026-01-03",
    "intervals": 3,
}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(m) + "\n" for m in MESSAGES))
    paths = {"events": events}
    for name, spec in (("funnel", FUNNEL), ("retention", RETENTION)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(spec))
    return paths


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_funnel_prints_the_reference_answer_as_json(files, capsys) -> None:
    code, out, _ = run(
        capsys, "funnel", "--spec", str(files["funnel"]), "--events", str(files["events"])
    )
    assert code == 0
    log = build_event_log(MESSAGES)
    assert json.loads(out) == reference_funnel(parse_funnel_spec(FUNNEL), log)
    assert json.loads(out)["steps"][1]["count"] == 1  # u2's buy came 24.5 h after the view


def test_funnel_persons_lists_who_dropped_off(files, capsys) -> None:
    argv = ["funnel", "--spec", str(files["funnel"]), "--events", str(files["events"])]
    code, out, _ = run(capsys, *argv, "--persons", "-2")
    assert code == 0
    assert json.loads(out)["persons"] == ["a3", "u2"]
    code, out, _ = run(capsys, *argv, "--persons", "2", "--format", "csv")
    assert (code, out.splitlines()) == (0, ["person", "u1"])


def test_funnel_table_and_details(files, capsys) -> None:
    argv = ["funnel", "--spec", str(files["funnel"]), "--events", str(files["events"])]
    code, out, _ = run(capsys, *argv, "--format", "table")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "breakdown",
        "step",
        "count",
        "conversion_rate",
        "average_s",
        "median_s",
    ]
    assert lines[2].split() == ["buy", "1", "0.3333", "300", "300"]
    code, out, _ = run(capsys, *argv, "--details")
    result = json.loads(out)
    assert result["time_to_convert"]["bins"] == [
        {"seconds_from": 300.0, "seconds_to": 301.0, "count": 1}
    ]
    assert [
        (d["period_start"], d["entered"], d["converted"]) for d in result["conversion_over_time"]
    ] == [
        ("2026-01-01T00:00:00", 1, 1),
        ("2026-01-02T00:00:00", 1, 0),
        ("2026-01-03T00:00:00", 1, 0),
    ]


def test_funnel_conversion_over_time_by_week(files, capsys) -> None:
    argv = ["funnel", "--spec", str(files["funnel"]), "--events", str(files["events"])]
    code, out, _ = run(capsys, *argv, "--details", "--over-time", "week")
    weeks = json.loads(out)["conversion_over_time"]
    assert code == 0
    assert weeks == [  # 2026-01-01 is a Thursday: all three entries fall in one week
        {
            "period_start": "2025-12-29T00:00:00",
            "entered": 3,
            "converted": 1,
            "conversion_rate": pytest.approx(1 / 3),
        }
    ]


def test_retention_json_and_actors(files, capsys) -> None:
    argv = ["retention", "--spec", str(files["retention"]), "--events", str(files["events"])]
    code, out, _ = run(capsys, *argv)
    log = build_event_log(MESSAGES)
    assert code == 0
    assert json.loads(out) == reference_retention(parse_retention_spec(RETENTION), log)
    code, out, _ = run(capsys, *argv, "--actors", "0", "--format", "csv")
    assert out.splitlines() == ["person,appearances", "u1,0"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"steps": []}, "bad spec: steps: must be a non-empty list of steps"),
        (
            {"steps": [{"event": "a", "where": [{"property": "p", "op": "like", "value": 1}]}]},
            "bad spec: steps[0].where[0].op: must be one of",
        ),
        ({"steps": [{"event": "a"}], "from": "yesterday"}, "bad spec: from: is not an ISO-8601"),
    ],
)
def test_bad_spec_exits_2_naming_the_field(tmp_path, files, capsys, spec, message) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    code, out, err = run(capsys, "funnel", "--spec", str(path), "--events", str(files["events"]))
    assert (code, out) == (2, "")
    assert message in err


def test_unreadable_inputs_say_what_was_wrong(tmp_path, files, capsys) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{steps")
    code, _, err = run(capsys, "funnel", "--spec", str(broken), "--events", str(files["events"]))
    assert code == 2 and f"{broken}: not JSON" in err
    missing = tmp_path / "missing.jsonl"
    code, _, err = run(capsys, "funnel", "--spec", str(files["funnel"]), "--events", str(missing))
    assert code == 1 and f"{missing}: no such file" in err
    code, _, err = run(
        capsys,
        "funnel",
        "--spec",
        str(files["funnel"]),
        "--events",
        str(files["events"]),
        "--persons",
        "3",
    )
    assert code == 2 and "--persons: must be 1..2" in err


def test_warehouse_source_gives_the_answer_of_the_raw_events(demo_home: SafarHome) -> None:
    """dbt's identity and the file reader's agree on the demo lake (2,000 users, 30 days)."""
    messages: dict[str, dict[str, Any]] = {}
    for path in landing_files(demo_home):
        for message in parquet_messages(path):
            messages.setdefault(message["messageId"], message)  # the lake dedups by id
    log = build_event_log(messages.values())
    funnel = parse_funnel_spec(
        {
            "steps": [
                {"event": "Product Viewed"},
                {"event": "Product Added"},
                {"event": "Order Completed"},
            ],
            "window": {"value": 7, "unit": "day"},
            "breakdown": {"property": "carrier", "scope": "person"},
        }
    )
    retention = parse_retention_spec(
        {"target": {"event": None}, "period": "week", "intervals": 4, "to": "2026-01-31"}
    )
    warehouse = connect_warehouse(demo_home)
    files = connect_log(log)
    try:
        from_warehouse = run_funnel(warehouse, funnel)
        assert from_warehouse == approx(run_funnel(files, funnel))
        assert from_warehouse["steps"][2]["count"] > 50
        assert len(from_warehouse["breakdowns"]) > 1
        assert run_retention(warehouse, retention) == run_retention(files, retention)
    finally:
        warehouse.close()
        files.close()
