"""The write-ahead log on its own: torn tails, damaged lines, and no segment landing twice."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from gateway_helpers import lake_rows

from safar.config import SafarHome
from safar.gateway.wal import (
    Backlog,
    GroupCommitter,
    SegmentWriter,
    acquire_lock,
    flush_segment,
    recover,
)
from safar.messages import normalize_message


@pytest.fixture
def home(tmp_path: Path) -> SafarHome:
    home = SafarHome(tmp_path).ensure()
    home.gateway_wal.mkdir(parents=True)
    return home


def _line(message_id: str, received_at: datetime = datetime(2026, 1, 15, 23, 59)) -> bytes:
    row = normalize_message(
        {"type": "track", "event": "E", "userId": "u", "messageId": message_id},
        received_at=received_at,
        source_id="src_test",
        ip=None,
    )
    assert isinstance(row, dict)
    return orjson.dumps(row) + b"\n"


def _segment(home: SafarHome, name: str, data: bytes) -> Path:
    path = home.gateway_wal / f"wal-{name}.jsonl"
    path.write_bytes(data)
    return path


def _ids(home: SafarHome) -> list[str]:
    return sorted(row["message_id"] for row in lake_rows(home))


def test_torn_last_line_is_ignored_and_only_it(home: SafarHome) -> None:
    torn = _line("m3")[:-20]
    _segment(home, "0001", _line("m1") + _line("m2") + torn)
    written = recover(home)
    assert len(written) == 1
    assert _ids(home) == ["m1", "m2"]
    assert list(home.gateway_wal.glob("wal-*")) == []


def test_damaged_line_in_the_middle_is_kept_aside_with_its_reason(home: SafarHome) -> None:
    _segment(home, "0001", _line("m1") + b'{"message_id": "m2", "type": \n' + _line("m3"))
    recover(home)
    assert _ids(home) == ["m1", "m3"]
    [rejected] = home.rejected.glob("rejected-0001-damaged.jsonl")
    record = json.loads(rejected.read_text())
    assert record["reason"].startswith("damaged write-ahead log line")
    assert record["line"].startswith('{"message_id": "m2"')


def test_segment_across_midnight_lands_one_file_per_received_date(home: SafarHome) -> None:
    late = _line("m1", datetime(2026, 1, 15, 23, 59, 59))
    early = _line("m2", datetime(2026, 1, 16, 0, 0, 1))
    _segment(home, "0001", late + early)
    written = recover(home)
    assert sorted(p.parent.name for p in written) == ["date=2026-01-15", "date=2026-01-16"]


def test_a_segment_already_landed_before_a_crash_is_not_landed_again(home: SafarHome) -> None:
    path = _segment(home, "0001", _line("m1") + _line("m2"))
    flush_segment(home, path)
    # Simulate a crash after the landing file was written but before the segment was
    # deleted: put the segment and its intent back as they were.
    path.write_bytes(_line("m1") + _line("m2"))
    [landed] = home.raw_events.glob("date=*/part-*.parquet")
    intent = {"2026-01-15": str(landed.relative_to(home.raw_events))}
    path.with_name(path.name + ".flush").write_bytes(orjson.dumps(intent))
    assert recover(home) == []
    assert _ids(home) == ["m1", "m2"]
    assert list(home.gateway_wal.glob("wal-*")) == []


def test_a_planned_file_that_never_landed_gets_a_new_id(home: SafarHome) -> None:
    path = _segment(home, "0001", _line("m1"))
    planned = "date=2026-01-15/part-0000000000001-aaaaaaa.parquet"
    path.with_name(path.name + ".flush").write_bytes(orjson.dumps({"2026-01-15": planned}))
    [written] = recover(home)
    assert written.name != Path(planned).name, "a fresh id, newer than any sensor cursor"
    assert _ids(home) == ["m1"]


def test_second_gateway_on_the_same_home_is_refused(home: SafarHome) -> None:
    acquire_lock(home.gateway_wal)
    with pytest.raises(RuntimeError, match="another gateway"):
        acquire_lock(home.gateway_wal)


def test_group_commit_acknowledges_after_the_data_is_in_the_segment(home: SafarHome) -> None:
    closed: list[tuple[Path, int]] = []

    async def scenario() -> None:
        writer = SegmentWriter(
            home, max_age=60, max_bytes=1 << 20, on_close=lambda p, n: closed.append((p, n))
        )
        committer = GroupCommitter(writer, Backlog())
        committer.start()
        await asyncio.gather(*(committer.commit(_line(f"m{i}"), 1) for i in range(50)))
        [segment] = home.gateway_wal.glob("wal-*.jsonl")
        assert segment.read_bytes().count(b"\n") == 50
        await committer.stop()

    asyncio.run(scenario())
    assert [n for _, n in closed] == [50]
