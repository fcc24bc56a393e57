"""The reference retention against hand-checked golden fixtures, and retention spec errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from reference_retention import run_retention

from safar.analytics.events import build_event_log
from safar.analytics.retention_spec import parse_retention_spec
from safar.analytics.spec import SpecError

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "retention").glob("*.json"))


def test_there_are_enough_fixtures() -> None:
    assert len(FIXTURES) >= 12


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_reference_matches_golden_fixture(path: Path) -> None:
    case = json.loads(path.read_text())
    assert case["why"], "every fixture says which rule it pins"
    log = build_event_log(case["events"])
    result = run_retention(parse_retention_spec(case["spec"]), log, case.get("actors"))
    assert result == case["expected"]


TARGET = {"event": "a"}
TO = "2026-01-10"


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"to": TO}, "target"),
        ({"target": TARGET}, "to"),
        ({"target": TARGET, "to": TO, "colour": 1}, "spec.colour"),
        ({"target": {"where": []}, "to": TO}, "target.event"),
        ({"target": {"event": "a", "wher": []}, "to": TO}, "target.wher"),
        ({"target": TARGET, "returning": {"event": ""}, "to": TO}, "returning.event"),
        ({"target": TARGET, "to": TO, "period": "fortnight"}, "period"),
        ({"target": TARGET, "to": TO, "type": "first"}, "type"),
        ({"target": TARGET, "to": TO, "week_start": "saturday"}, "week_start"),
        ({"target": TARGET, "to": TO, "intervals": 0}, "intervals"),
        ({"target": TARGET, "to": TO, "intervals": 2.5}, "intervals"),
        ({"target": TARGET, "to": TO, "min_occurrences": 0}, "min_occurrences"),
        ({"target": TARGET, "to": TO, "cumulative": "yes"}, "cumulative"),
        ({"target": TARGET, "to": "2026-02-30"}, "to"),
        ({"target": TARGET, "to": TO, "from": "yesterday"}, "from"),
        ({"target": TARGET, "to": TO, "from": "2026-02-01"}, "to"),
        ({"target": TARGET, "to": TO, "from": "2026-01-01", "intervals": 3}, "intervals"),
        ({"target": TARGET, "to": TO, "timezone": "Mars/Olympus"}, "timezone"),
        (
            {"target": TARGET, "to": TO, "where": [{"property": "p", "op": "like", "value": 1}]},
            "where[0].op",
        ),
        (
            {"target": {"event": "a", "where": [{"property": "p", "op": "eq"}]}, "to": TO},
            "target.where[0].value",
        ),
        ({"target": TARGET, "to": TO, "breakdown": {"scope": "person"}}, "breakdown.property"),
        (
            {"target": TARGET, "to": TO, "breakdown": {"property": "p", "scope": "group"}},
            "breakdown.scope",
        ),
    ],
)
def test_bad_spec_names_the_field(spec: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as excinfo:
        parse_retention_spec(spec)
    assert excinfo.value.path == path
    assert str(excinfo.value).startswith(f"{path}: ")


def test_defaults() -> None:
    spec = parse_retention_spec({"target": {"event": None}, "to": TO})
    assert (spec.period, spec.intervals, spec.type) == ("day", 11, "recurring")
    assert spec.cumulative is False
    assert (spec.min_occurrences, spec.week_start, spec.timezone) == (1, "sunday", "UTC")
    assert spec.returning == spec.target and spec.target.event is None
    assert (spec.date_from, spec.breakdown, spec.where) == (None, None, ())
    bd = parse_retention_spec({"target": TARGET, "to": TO, "breakdown": {"property": "p"}})
    assert bd.breakdown.scope == "person"
