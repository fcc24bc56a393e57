"""Trends, lifecycle and stickiness: golden fixtures, the SQL engine against the reference, specs.

(a) the reference implementation matches hand-checked golden fixtures; (b) the DuckDB engine
matches them too; (c) on random small event logs the engine equals the reference; (d) bad
specs raise SpecError naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import reference_trends
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safar.analytics.events import EventLog, build_event_log
from safar.analytics.lifecycle import run_lifecycle
from safar.analytics.source import connect_log
from safar.analytics.spec import SpecError
from safar.analytics.stickiness import run_stickiness
from safar.analytics.trends import run_trends
from safar.analytics.trends_spec import (
    MATHS,
    PROPERTY_MATHS,
    parse_lifecycle_spec,
    parse_stickiness_spec,
    parse_trends_spec,
)

FIXTURES = Path(__file__).parent / "fixtures"

# kind -> (spec parser, SQL engine, reference, minimum number of fixtures)
KINDS: dict[str, tuple[Callable, Callable, Callable, int]] = {
    "trends": (parse_trends_spec, run_trends, reference_trends.run_trends, 8),
    "lifecycle": (parse_lifecycle_spec, run_lifecycle, reference_trends.run_lifecycle, 5),
    "stickiness": (parse_stickiness_spec, run_stickiness, reference_trends.run_stickiness, 4),
}
CASES = [(kind, path) for kind in KINDS for path in sorted((FIXTURES / kind).glob("*.json"))]


def _approx(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9, abs=1e-9)
    return value


@pytest.mark.parametrize("kind", KINDS)
def test_there_are_enough_fixtures(kind: str) -> None:
    assert len([path for k, path in CASES if k == kind]) >= KINDS[kind][3]


def _case(path: Path) -> dict[str, Any]:
    case = json.loads(path.read_text())
    assert case["why"], "every fixture says which rule it pins"
    return case


@pytest.mark.parametrize(("kind", "path"), CASES, ids=lambda x: getattr(x, "stem", x))
def test_reference_matches_golden_fixture(kind: str, path: Path) -> None:
    parse, _, reference, _ = KINDS[kind]
    case = _case(path)
    result = reference(parse(case["spec"]), build_event_log(case["events"]))
    assert result == _approx(case["expected"])


@pytest.mark.parametrize(("kind", "path"), CASES, ids=lambda x: getattr(x, "stem", x))
def test_sql_engine_matches_golden_fixture(kind: str, path: Path) -> None:
    parse, engine, _, _ = KINDS[kind]
    case = _case(path)
    con = connect_log(build_event_log(case["events"]))
    assert engine(con, parse(case["spec"])) == _approx(case["expected"])


# --- (c) random small event logs: the SQL engine equals the reference --------------------------

BASE = datetime(2026, 3, 1)  # the range crosses New York's (8 Mar) and Berlin's (29 Mar) DST
USERS = ("u1", "u2", "u3")
ANONYMOUS = ("anon-1", "anon-2")
TIMEZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tehran")
FILTERS = (
    {"property": "plan", "op": "eq", "value": "pro"},
    {"property": "plan", "scope": "person", "op": "eq", "value": "pro"},
    {"property": "revenue", "op": "gt", "value": 3},
    {"property": "plan", "scope": "person", "op": "is_set"},
)


def _iso(minutes: int) -> str:
    return (BASE + timedelta(minutes=minutes)).replace(tzinfo=UTC).isoformat()


# Half hours often, so events land exactly on period edges (Tehran is +03:30).
_minutes = st.one_of(
    st.integers(0, 40 * 48).map(lambda n: n * 30), st.integers(0, 40 * 24 * 60 - 1)
)
_properties = st.fixed_dictionaries(
    {},
    optional={
        "plan": st.sampled_from(["pro", "free", 1, True]),
        "revenue": st.one_of(st.integers(-5, 20), st.sampled_from([2.5, "7", None])),
    },
)


@st.composite
def _message(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["track", "track", "track", "page", "identify", "alias"]))
    timestamp = _iso(draw(_minutes))
    user = draw(st.sampled_from(USERS))
    if kind == "identify":
        message = {"type": "identify", "userId": user, "timestamp": timestamp}
        if draw(st.booleans()):
            message["anonymousId"] = draw(st.sampled_from(ANONYMOUS))
        message["traits"] = {"plan": draw(st.sampled_from(["pro", "free"]))}
        return message
    if kind == "alias":
        previous = draw(st.sampled_from(ANONYMOUS + USERS))
        return {"type": "alias", "previousId": previous, "userId": user, "timestamp": timestamp}
    message = {"type": kind, "timestamp": timestamp, "properties": draw(_properties)}
    message["event" if kind == "track" else "name"] = draw(st.sampled_from(["a", "b"]))
    if draw(st.booleans()):
        message["userId"] = user
    else:
        message["anonymousId"] = draw(st.sampled_from(ANONYMOUS))
    return message


@st.composite
def _periods(draw: st.DrawFn, intervals: tuple[str, ...]) -> dict[str, Any]:
    interval = draw(st.sampled_from(intervals))
    longest = {"hour": 2, "day": 20, "week": 35, "month": 60}[interval]
    start = BASE + timedelta(days=draw(st.integers(-5, 40)))
    end = start + timedelta(days=draw(st.integers(0, longest)))
    periods = {
        "interval": interval,
        "timezone": draw(st.sampled_from(TIMEZONES)),
        "week_start": draw(st.sampled_from(["sunday", "monday"])),
        "to": end.date().isoformat(),
    }
    if draw(st.booleans()):
        periods["from"] = start.date().isoformat()
    else:
        periods["intervals"] = draw(st.integers(1, 6))
    if draw(st.booleans()):
        periods["where"] = [draw(st.sampled_from(FILTERS))]
    return periods


@st.composite
def _series(draw: st.DrawFn) -> dict[str, Any]:
    series = {
        "event": draw(st.sampled_from([None, "a", "b"])),
        "math": draw(st.sampled_from(MATHS)),
    }
    if series["math"] in PROPERTY_MATHS:
        series["property"] = "revenue"
    if draw(st.booleans()):
        series["where"] = [draw(st.sampled_from(FILTERS))]
    return series


@st.composite
def _trends_spec(draw: st.DrawFn) -> dict[str, Any]:
    spec = draw(_periods(("hour", "day", "week", "month")))
    spec["series"] = draw(st.lists(_series(), min_size=1, max_size=2))
    if draw(st.booleans()):
        scope = draw(st.sampled_from(["event", "person"]))
        spec["breakdown"] = {"property": "plan", "scope": scope}
    return spec


@st.composite
def _event_spec(draw: st.DrawFn) -> dict[str, Any]:
    spec = draw(_periods(("hour", "day", "week", "month")))
    spec["event"] = draw(st.sampled_from([None, "a", "b"]))
    return spec


_messages = st.lists(_message(), max_size=25)
_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _engine_equals_reference(kind: str, spec_json: dict[str, Any], log: EventLog) -> None:
    parse, engine, reference, _ = KINDS[kind]
    spec = parse(spec_json)
    con = connect_log(log)
    try:
        assert engine(con, spec) == _approx(reference(spec, log))
    finally:
        con.close()


@_settings
@given(messages=_messages, spec=_trends_spec())
def test_trends_engine_equals_reference(messages: list[dict], spec: dict[str, Any]) -> None:
    _engine_equals_reference("trends", spec, build_event_log(messages))


@_settings
@given(messages=_messages, spec=_event_spec())
def test_lifecycle_engine_equals_reference(messages: list[dict], spec: dict[str, Any]) -> None:
    _engine_equals_reference("lifecycle", spec, build_event_log(messages))


@_settings
@given(messages=_messages, spec=_event_spec())
def test_stickiness_engine_equals_reference(messages: list[dict], spec: dict[str, Any]) -> None:
    _engine_equals_reference("stickiness", spec, build_event_log(messages))


# --- (d) bad specs name the field ---------------------------------------------------------------

SERIES = [{"event": "a"}]
RANGE = {"from": "2026-01-01", "to": "2026-01-10"}


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({**RANGE}, "series"),
        ({"series": [], **RANGE}, "series"),
        ({"series": SERIES, **RANGE, "colour": 1}, "spec.colour"),
        ({"series": [{"math": "total"}], **RANGE}, "series[0].event"),
        ({"series": [{"event": ""}], **RANGE}, "series[0].event"),
        ({"series": [{"event": "a", "mth": "dau"}], **RANGE}, "series[0].mth"),
        ({"series": [{"event": "a", "math": "p99"}], **RANGE}, "series[0].math"),
        ({"series": [{"event": "a", "math": "sum"}], **RANGE}, "series[0].property"),
        (
            {"series": [{"event": "a", "math": "dau", "property": "x"}], **RANGE},
            "series[0].property",
        ),
        ({"series": [{"event": "a", "name": ""}], **RANGE}, "series[0].name"),
        (
            {"series": [{"event": "a", "where": [{"property": "p", "op": "~"}]}], **RANGE},
            "series[0].where[0].op",
        ),
        ({"series": SERIES, **RANGE, "where": {"property": "p"}}, "where"),
        ({"series": SERIES, **RANGE, "interval": "quarter"}, "interval"),
        ({"series": SERIES, **RANGE, "week_start": "saturday"}, "week_start"),
        ({"series": SERIES, **RANGE, "timezone": "Mars/Olympus"}, "timezone"),
        ({"series": SERIES, "from": "2026-01-01"}, "to"),
        ({"series": SERIES, "to": "2026-01-10"}, "from"),
        ({"series": SERIES, "to": "2026-01-10", "intervals": 0}, "intervals"),
        ({"series": SERIES, "to": "2026-01-10", "intervals": "7"}, "intervals"),
        ({"series": SERIES, **RANGE, "intervals": 3}, "intervals"),
        ({"series": SERIES, "from": "2026-02-01", "to": "2026-01-10"}, "to"),
        ({"series": SERIES, "from": "last week", "to": "2026-01-10"}, "from"),
        ({"series": SERIES, **RANGE, "breakdown": {"scope": "event"}}, "breakdown.property"),
        (
            {"series": SERIES, **RANGE, "breakdown": {"property": "p", "scope": "group"}},
            "breakdown.scope",
        ),
        (
            {"series": SERIES, **RANGE, "breakdown": {"property": "p", "limit": 5}},
            "breakdown.limit",
        ),
    ],
)
def test_bad_trends_spec_names_the_field(spec: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as excinfo:
        parse_trends_spec(spec)
    assert excinfo.value.path == path
    assert str(excinfo.value).startswith(f"{path}: ")


@pytest.mark.parametrize("parse", [parse_lifecycle_spec, parse_stickiness_spec])
@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({**RANGE}, "event"),
        ({"event": 3, **RANGE}, "event"),
        ({"event": "a", **RANGE, "series": []}, "spec.series"),
        ({"event": "a", **RANGE, "interval": "fortnight"}, "interval"),
        ({"event": "a", **RANGE, "where": [{"property": "p", "op": "eq"}]}, "where[0].value"),
        ({"event": "a", "to": "2026-13-01", "intervals": 2}, "to"),
    ],
)
def test_bad_lifecycle_and_stickiness_spec_names_the_field(
    parse: Callable[[Any], Any], spec: dict[str, Any], path: str
) -> None:
    with pytest.raises(SpecError) as excinfo:
        parse(spec)
    assert excinfo.value.path == path


def test_defaults() -> None:
    spec = parse_trends_spec({"series": [{"event": None}], "to": "2026-01-10", "intervals": 3})
    (series,) = spec.series
    assert (series.name, series.math, series.property, series.where) == (
        "any event",
        "total",
        None,
        (),
    )
    periods = spec.periods
    assert (periods.interval, periods.timezone, periods.week_start) == ("day", "UTC", "sunday")
    assert (periods.date_from, periods.intervals, spec.where, spec.breakdown) == (None, 3, (), None)
    bd = parse_trends_spec({"series": SERIES, **RANGE, "breakdown": {"property": "p"}}).breakdown
    assert bd.scope == "event"
    assert parse_lifecycle_spec({"event": "a", **RANGE}).periods.interval == "day"
