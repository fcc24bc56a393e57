"""The ingest sensor's cursor rules, without Dagster."""

from __future__ import annotations

import doctest
import json

import dagster_project.defs.ingest.cursor as cursor_module
from dagster_project.defs.ingest.cursor import LandingCursor, lookback_floor


def _id(ms: int, seq: int = 0) -> str:
    return f"{ms:013d}{seq:05d}-abcdef0"


def test_doctests_pass() -> None:
    assert doctest.testmod(cursor_module).failed == 0


def test_round_trips_through_json() -> None:
    cursor = LandingCursor(_id(2_000), frozenset({_id(1_000), _id(2_000)}))

    assert LandingCursor.loads(cursor.dumps()) == cursor


def test_reads_a_cursor_that_has_only_the_watermark() -> None:
    cursor = LandingCursor.loads(json.dumps({"last_file_id": _id(5_000)}))

    assert cursor == LandingCursor(_id(5_000), frozenset())


def test_empty_cursor_sees_every_file() -> None:
    ids = [_id(1), _id(2)]

    assert LandingCursor.loads(None).unseen(ids) == ids
    assert LandingCursor.loads(None).floor() is None


def test_late_file_inside_the_lookback_is_unseen_until_handled() -> None:
    cursor = LandingCursor().advance([_id(1_000_000)])
    late = _id(1_000_000 - 5_000)

    assert cursor.unseen([late, _id(1_000_000)]) == [late]
    assert cursor.advance([late]).unseen([late, _id(1_000_000)]) == []


def test_advance_keeps_the_watermark_and_trims_ids_below_the_window() -> None:
    old, new = _id(1_000), _id(1_000 + 10 * 60_000)
    cursor = LandingCursor().advance([old]).advance([new])

    assert cursor.last_file_id == new
    assert cursor.recent_file_ids == frozenset({new})
    assert cursor.floor() == lookback_floor(new)


def test_late_file_does_not_move_the_watermark_back() -> None:
    cursor = LandingCursor().advance([_id(1_000_000)]).advance([_id(999_000)])

    assert cursor.last_file_id == _id(1_000_000)
