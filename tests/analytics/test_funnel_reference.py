"""The reference funnel against hand-checked golden fixtures, and funnel spec errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from reference_funnel import run_funnel

from safar.analytics.events import build_event_log, load_event_log
from safar.analytics.spec import SpecError, parse_funnel_spec

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "funnels").glob("*.json"))


def _approx(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    if isinstance(value, float):
        return pytest.approx(value, abs=1e-6)
    return value


def test_there_are_enough_fixtures() -> None:
    assert len(FIXTURES) >= 25


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_reference_matches_golden_fixture(path: Path) -> None:
    case = json.loads(path.read_text())
    assert case["why"], "every fixture says which rule it pins"
    log = build_event_log(case["events"])
    result = run_funnel(parse_funnel_spec(case["spec"]), log, case.get("persons"))
    assert result == _approx(case["expected"])


def test_load_event_log_reads_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        {"type": "track", "event": "a", "anonymousId": "x", "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "identify", "anonymousId": "x", "userId": "u", "timestamp": "2026-01-01T00:01Z"},
        {"type": "screen", "name": "Home", "userId": "u", "timestamp": "2026-01-01T00:02:00Z"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    log = load_event_log(path)
    assert [(e.person_id, e.event, e.type) for e in log.events] == [
        ("u", "a", "track"),
        ("u", "Home", "screen"),
    ]


def test_shared_device_belongs_to_first_user_and_alias_chains_resolve() -> None:
    log = build_event_log(
        [
            {"type": "identify", "anonymousId": "d", "userId": "u1", "timestamp": "2026-01-01"},
            {"type": "identify", "anonymousId": "d", "userId": "u2", "timestamp": "2026-01-02"},
            {"type": "alias", "previousId": "u1", "userId": "u3", "timestamp": "2026-01-03"},
            {"type": "alias", "previousId": "u3", "userId": "u4", "timestamp": "2026-01-04"},
            {"type": "track", "event": "a", "anonymousId": "d", "timestamp": "2026-01-05"},
        ]
    )
    assert [e.person_id for e in log.events] == ["u4"]


STEPS = [{"event": "a"}, {"event": "b"}]


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"steps": []}, "steps"),
        ({}, "steps"),
        ({"steps": [{"name": "x"}]}, "steps[0].event"),
        ({"steps": STEPS, "colour": 1}, "spec.colour"),
        ({"steps": [{"event": "a", "wher": []}]}, "steps[0].wher"),
        ({"steps": STEPS, "order": "random"}, "order"),
        ({"steps": STEPS, "window": {"value": 3, "unit": "fortnight"}}, "window.unit"),
        ({"steps": STEPS, "window": {"value": 0}}, "window.value"),
        ({"steps": STEPS, "from": "yesterday"}, "from"),
        ({"steps": STEPS, "to": "2026-02-30"}, "to"),
        ({"steps": STEPS, "from": "2026-02-01", "to": "2026-01-01"}, "to"),
        ({"steps": STEPS, "timezone": "Mars/Olympus"}, "timezone"),
        (
            {"steps": [{"event": "a", "where": [{"property": "p", "op": "like", "value": 1}]}]},
            "steps[0].where[0].op",
        ),
        ({"steps": STEPS, "where": [{"property": "p", "op": "eq"}]}, "where[0].value"),
        (
            {"steps": STEPS, "where": [{"any": [{"property": "p", "op": "gt", "value": [1]}]}]},
            "where[0].any[0].value",
        ),
        (
            {"steps": STEPS, "where": [{"property": "p", "op": "regex", "value": "("}]},
            "where[0].value",
        ),
        (
            {"steps": STEPS, "where": [{"property": "p", "scope": "group", "op": "is_set"}]},
            "where[0].scope",
        ),
        (
            {"steps": STEPS, "exclusions": [{"event": "x", "from_step": 1, "to_step": 1}]},
            "exclusions[0].to_step",
        ),
        (
            {"steps": STEPS, "exclusions": [{"event": "x", "from_step": 0, "to_step": 2}]},
            "exclusions[0].to_step",
        ),
        (
            {"steps": STEPS, "breakdown": {"property": "p", "attribution": "x"}},
            "breakdown.attribution",
        ),
        ({"steps": STEPS, "breakdown": {"property": "p", "step": 5}}, "breakdown.step"),
        ({"steps": STEPS, "aggregate_by": "group"}, "aggregate_by"),
        ({"steps": [{"event": "a"}] * 7, "order": "unordered"}, "steps"),
    ],
)
def test_bad_spec_names_the_field(spec: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as excinfo:
        parse_funnel_spec(spec)
    assert excinfo.value.path == path
    assert str(excinfo.value).startswith(f"{path}: ")


def test_defaults() -> None:
    spec = parse_funnel_spec({"steps": STEPS})
    assert (spec.order, spec.window.value, spec.window.unit) == ("ordered", 14, "day")
    assert (spec.date_from, spec.date_to, spec.breakdown, spec.aggregate_by) == (None,) * 4
    assert spec.exclusions == ()
    excl = parse_funnel_spec({"steps": STEPS, "exclusions": [{"event": "x"}]}).exclusions[0]
    assert (excl.from_step, excl.to_step) == (0, 1)


def test_bad_timestamp_names_the_message() -> None:
    with pytest.raises(ValueError, match="message 2: timestamp"):
        build_event_log(
            [
                {"type": "track", "event": "a", "userId": "u", "timestamp": "2026-01-01"},
                {"type": "track", "event": "a", "userId": "u", "timestamp": "soon"},
            ]
        )
