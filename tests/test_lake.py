"""The landing zone: validation with reasons, atomic writes, quarantine of unreadable files."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from safar.config import SafarHome
from safar.contract import RAW_SCHEMA
from safar.lake import (
    LakeWriter,
    conform,
    file_id_of,
    landing_files,
    new_file_id,
    quarantine_corrupt,
)

T = datetime(2026, 1, 15, 10, 30)


def _row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "message_id": "m1",
        "type": "track",
        "event": "Product Viewed",
        "user_id": None,
        "anonymous_id": "anon-1",
        "timestamp": T,
        "received_at": T,
        "properties": '{"product_id": "p1"}',
        "context": '{"locale": "fa-IR"}',
    }
    row.update(overrides)
    return row


def _frame(*rows: dict[str, object]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema_overrides={"timestamp": pl.Datetime("us")})


@pytest.fixture
def home(tmp_path: Path) -> SafarHome:
    return SafarHome(tmp_path).ensure()


BAD_ROWS = [
    (_row(message_id=None), "missing message_id"),
    (_row(message_id=""), "missing message_id"),
    (_row(type="purchase"), "unknown type purchase"),
    (_row(anonymous_id=None), "missing user_id and anonymous_id"),
    (_row(event=None), "track without event name"),
    (_row(type="alias", event=None, user_id="u1"), "alias without previous_id and user_id"),
    (_row(type="identify", event=None, anonymous_id="a"), "identify without user_id or traits"),
    (_row(type="group", event=None), "group without group_id"),
    (_row(properties="[1, 2]"), "properties is not a JSON object"),
    (_row(context="{not json"), "context is not a JSON object"),
]


@pytest.mark.parametrize(("row", "reason"), BAD_ROWS, ids=[r for _, r in BAD_ROWS])
def test_bad_row_is_rejected_with_its_reason_and_good_rows_kept(
    home: SafarHome, row: dict[str, object], reason: str
) -> None:
    good = _row(message_id="good")
    result = LakeWriter(home).write(_frame(good, {**row}))

    assert (result.accepted, result.rejected) == (1, 1)
    lines = [json.loads(x) for x in result.rejected_file.read_text().splitlines()]
    assert [x["reason"] for x in lines] == [reason]
    kept = pq.read_table(result.files[0])
    assert kept["message_id"].to_pylist() == ["good"]


def test_valid_rows_land_partitioned_by_received_date(home: SafarHome) -> None:
    late = _row(message_id="late", received_at=datetime(2026, 1, 17, 0, 5))
    result = LakeWriter(home).write(_frame(_row(), late))

    assert result.rejected == 0 and result.rejected_file is None
    assert sorted(p.parent.name for p in result.files) == ["date=2026-01-15", "date=2026-01-17"]
    for path in result.files:
        assert pq.read_schema(path).names == RAW_SCHEMA.names
    # Hive partitioning and the raw schema read back as written.
    got = duckdb.sql(
        f"select message_id, date::varchar as d from read_parquet("
        f"'{home.raw_events}/*/*.parquet', hive_partitioning = true) order by 1"
    ).fetchall()
    assert got == [("late", "2026-01-17"), ("m1", "2026-01-15")]


def test_no_temporary_files_remain_after_a_write(home: SafarHome) -> None:
    LakeWriter(home).write(_frame(_row()))
    leftovers = [p for p in home.raw_events.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_unknown_column_is_an_error_naming_it(home: SafarHome) -> None:
    with pytest.raises(ValueError, match="not in the raw event contract: colour"):
        LakeWriter(home).write(_frame(_row(colour="red")))


def test_uncastable_column_is_an_error_naming_it() -> None:
    frame = pl.DataFrame([_row(timestamp="yesterday")])
    with pytest.raises(ValueError, match="column 'timestamp'"):
        conform(frame)


def test_file_ids_sort_in_write_order() -> None:
    ids = [new_file_id() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000


def test_landing_files_after_an_id(home: SafarHome) -> None:
    writer = LakeWriter(home)
    first = writer.write(_frame(_row(message_id="a"))).files[0]
    second = writer.write(_frame(_row(message_id="b"))).files[0]
    assert landing_files(home) == [first, second]
    assert landing_files(home, after_id=file_id_of(first)) == [second]


def test_corrupt_file_is_quarantined_with_a_reason_and_others_stay(home: SafarHome) -> None:
    good = LakeWriter(home).write(_frame(_row())).files[0]
    corrupt = good.parent / f"part-{new_file_id()}.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")

    moved = quarantine_corrupt(home)

    assert [p.name for p in moved] == [corrupt.name]
    assert not corrupt.exists() and good.exists()
    reason = json.loads(moved[0].with_name(moved[0].name + ".reason.json").read_text())
    assert "unreadable Parquet" in reason["reason"]
    assert reason["file"] == str(corrupt)
    # Already-verified files are not checked again.
    assert quarantine_corrupt(home) == []


def test_parquet_without_contract_columns_is_quarantined(home: SafarHome) -> None:
    path = home.raw_events / "date=2026-01-15" / f"part-{new_file_id()}.parquet"
    path.parent.mkdir(parents=True)
    pl.DataFrame({"foo": [1]}).write_parquet(path)
    moved = quarantine_corrupt(home)
    reason = json.loads(moved[0].with_name(moved[0].name + ".reason.json").read_text())
    assert reason["reason"].startswith("missing contract columns: message_id")
