"""``safar trends | lifecycle | stickiness``: output formats, bad specs and the warehouse."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from safar.cli import main
from safar.config import SafarHome

FIXTURES = Path(__file__).parent / "fixtures"


def _files(tmp_path: Path, spec: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    spec_path, events_path = tmp_path / "spec.json", tmp_path / "events.jsonl"
    spec_path.write_text(json.dumps(spec))
    events_path.write_text("".join(json.dumps(message) + "\n" for message in events))
    return ["--spec", str(spec_path), "--events", str(events_path)]


def _fixture(kind: str, name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / kind / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("trends", "breakdown_event_property_sorted_by_total"),
        ("lifecycle", "statuses_per_day"),
        ("stickiness", "people_by_number_of_active_days"),
    ],
)
def test_json_on_stdout_is_the_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, name: str
) -> None:
    case = _fixture(kind, name)
    assert main([kind, *_files(tmp_path, case["spec"], case["events"])]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == case["expected"]
    assert out.err == ""


def test_csv_has_a_column_per_line_and_a_total_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _fixture("trends", "breakdown_event_property_sorted_by_total")
    args = _files(tmp_path, case["spec"], case["events"])
    assert main(["trends", *args, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [
        ["label", "view · Chrome", "view · Safari", "view · (none)"],
        ["2026-01-01T00:00:00+00:00", "1", "0", "1"],
        ["2026-01-02T00:00:00+00:00", "2", "1", "0"],
        ["total", "3", "1", "1"],
    ]


def test_table_lists_lifecycle_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _fixture("lifecycle", "statuses_per_day")
    args = _files(tmp_path, case["spec"], case["events"])
    assert main(["lifecycle", *args, "--format", "table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["label", "new", "returning", "resurrecting", "dormant"]
    assert lines[3].split() == ["2026-01-03T00:00:00+00:00", "0", "0", "0", "-2"]
    assert lines[-1].split() == ["total", "3", "1", "1", "-3"]


@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        (
            "trends",
            {"series": [{"event": "a", "math": "p99"}], "to": "2026-01-01"},
            "series[0].math",
        ),
        ("trends", {"series": [{"event": "a"}], "to": "2026-01-01"}, "from"),
        (
            "lifecycle",
            {"event": "a", "from": "2026-01-01", "to": "2026-01-02", "step": 1},
            "spec.step",
        ),
        ("stickiness", {"event": "a", "to": "2026-01-02", "intervals": -1}, "intervals"),
    ],
)
def test_bad_spec_exits_2_with_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, spec: dict, field: str
) -> None:
    assert main([kind, *_files(tmp_path, spec, [])]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert len(out.err.splitlines()) == 1
    assert out.err.startswith(f"safar {kind}: ")
    assert f"{field}: " in out.err


def test_spec_that_is_not_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _files(tmp_path, {}, [])
    Path(args[1]).write_text("{'series': []}")
    assert main(["trends", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "not JSON" in err


def test_missing_events_file_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {"event": None, "from": "2026-01-01", "to": "2026-01-02"}
    args = _files(tmp_path, spec, [])
    args[3] = str(tmp_path / "missing.jsonl")
    assert main(["stickiness", *args]) == 1
    assert "missing.jsonl: no such file" in capsys.readouterr().err


def test_the_installed_command_exits_2_on_a_bad_spec(tmp_path: Path) -> None:
    args = _files(
        tmp_path, {"event": "a", "interval": "year", "intervals": 2, "to": "2026-01-01"}, []
    )
    run = subprocess.run(
        [sys.executable, "-m", "safar.cli", "lifecycle", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1 and "interval: must be one of" in run.stderr


def _run_json(
    capsys: pytest.CaptureFixture[str], home: SafarHome, tmp_path: Path, kind: str, spec: dict
) -> dict:
    spec_path = tmp_path / f"{kind}.json"
    spec_path.write_text(json.dumps(spec))
    assert main(["--home", str(home.root), kind, "--spec", str(spec_path)]) == 0
    return json.loads(capsys.readouterr().out)


def test_warehouse_results_agree_with_each_other(
    demo_home: SafarHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --events the warehouse is read; the three analyses must tell one story."""
    weeks = {
        "interval": "week",
        "from": "2026-01-04",
        "to": "2026-01-31",
        "timezone": "Asia/Tehran",
    }
    days = {"from": "2026-01-05", "to": "2026-01-31"}
    maths = ("unique_persons", "dau", "wau", "mau")

    active = _run_json(
        capsys,
        demo_home,
        tmp_path,
        "trends",
        {"series": [{"event": None, "math": "unique_persons"}], **weeks},
    )["series"][0]
    lifecycle = _run_json(capsys, demo_home, tmp_path, "lifecycle", {"event": None, **weeks})
    statuses = {line["status"]: line["values"] for line in lifecycle["series"]}
    sticky = _run_json(capsys, demo_home, tmp_path, "stickiness", {"event": None, **weeks})[
        "series"
    ][0]
    rolling = _run_json(
        capsys,
        demo_home,
        tmp_path,
        "trends",
        {"series": [{"event": None, "math": m} for m in maths], **days},
    )["series"]

    assert sum(active["values"]) > 0
    for i, people in enumerate(active["values"]):
        # Everyone active in a week is new, returning or resurrecting ...
        assert people == statuses["new"][i] + statuses["returning"][i] + statuses["resurrecting"][i]
        # ... and everyone active the week before either returns or goes dormant.
        if i:
            assert active["values"][i - 1] == statuses["returning"][i] - statuses["dormant"][i]
    assert sticky["total"] == active["total"]
    assert sum(k * n for k, n in zip(sticky["intervals"], sticky["values"], strict=True)) == sum(
        active["values"]
    )
    by_math = dict(zip(maths, (line["values"] for line in rolling), strict=True))
    assert by_math["dau"] == by_math["unique_persons"]  # daily periods: the same people
    for dau, wau, mau in zip(by_math["dau"], by_math["wau"], by_math["mau"], strict=True):
        assert 0 < dau <= wau <= mau
