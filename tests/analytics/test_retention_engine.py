"""The SQL retention engine against the golden fixtures and, on random logs, the reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_retention import run_retention as reference_retention

from safar.analytics.events import build_event_log
from safar.analytics.retention import run_retention
from safar.analytics.retention_spec import parse_retention_spec
from safar.analytics.source import connect_log

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "retention").glob("*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_engine_matches_golden_fixture(path: Path) -> None:
    case = json.loads(path.read_text())
    log = build_event_log(case["events"])
    result = run_retention(connect_log(log), parse_retention_spec(case["spec"]), case.get("actors"))
    assert result == case["expected"]


def test_actors_row_out_of_range_is_an_error() -> None:
    log = build_event_log([])
    spec = parse_retention_spec({"target": {"event": "a"}, "to": "2026-01-03", "intervals": 3})
    with pytest.raises(ValueError, match="actors: row 3 is out of range 0..2"):
        run_retention(connect_log(log), spec, actors=3)


@st.composite
def _messages(draw: st.DrawFn) -> list[dict[str, Any]]:
    messages = []
    for _ in range(draw(st.integers(0, 16))):
        person = draw(st.sampled_from(["u1", "u2", "u3", "u4"]))
        day = draw(st.integers(1, 20))
        hour = draw(st.sampled_from([0, 3, 12, 21, 23]))
        stamp = f"2026-03-{day:02d}T{hour:02d}:00:00Z"
        if draw(st.integers(0, 6)) == 0:
            traits = {"plan": draw(st.sampled_from(["pro", "free", 1]))}
            messages.append(
                {"type": "identify", "userId": person, "timestamp": stamp, "traits": traits}
            )
            continue
        properties = {}
        if draw(st.booleans()):
            properties["p"] = draw(st.sampled_from([1, "1", True, "x"]))
        messages.append(
            {
                "type": "track",
                "event": draw(st.sampled_from(["a", "b"])),
                "userId": person,
                "timestamp": stamp,
                "properties": properties,
            }
        )
    return messages


@st.composite
def _specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "target": {"event": draw(st.sampled_from(["a", "b", None]))},
        "returning": {"event": draw(st.sampled_from(["a", "b", None]))},
        "period": draw(st.sampled_from(["day", "week", "hour"])),
        "intervals": draw(st.integers(1, 6)),
        "type": draw(st.sampled_from(["recurring", "first_time"])),
        "cumulative": draw(st.booleans()),
        "min_occurrences": draw(st.integers(1, 3)),
        "to": f"2026-03-{draw(st.integers(3, 20)):02d}T{draw(st.integers(0, 23)):02d}:00:00",
        "week_start": draw(st.sampled_from(["sunday", "monday"])),
        "timezone": draw(st.sampled_from(["UTC", "Asia/Tehran", "America/New_York"])),
    }
    if spec["period"] == "hour":
        spec["intervals"] = draw(st.integers(1, 30))
    if draw(st.integers(0, 3)) == 0:
        spec["target"]["where"] = [
            {"property": "p", "op": "eq", "value": draw(st.sampled_from([1, "x", True]))}
        ]
    if draw(st.integers(0, 3)) == 0:
        spec["where"] = [{"property": "plan", "scope": "person", "op": "neq", "value": "free"}]
    if draw(st.integers(0, 2)) == 0:
        spec["breakdown"] = {
            "property": draw(st.sampled_from(["p", "plan"])),
            "scope": draw(st.sampled_from(["person", "event"])),
        }
    return spec


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=_messages(), raw_spec=_specs(), actors=st.sampled_from([None, 0, 1]))
def test_engine_equals_reference_on_random_logs(
    messages: list[dict[str, Any]], raw_spec: dict[str, Any], actors: int | None
) -> None:
    spec = parse_retention_spec(raw_spec)
    log = build_event_log(messages)
    expected = reference_retention(
        spec, log, actors if actors is None or actors < spec.intervals else None
    )
    result = run_retention(
        connect_log(log), spec, actors if actors is None or actors < spec.intervals else None
    )
    assert result == expected
