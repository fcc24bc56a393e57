"""Bulk import: real files in, real landing files out, read back with DuckDB."""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safar.config import SafarHome
from safar.importer import (
    ImportFileError,
    import_events,
    import_users,
    register,
)
from safar.lake import landing_files

FIXTURES = Path(__file__).parent / "fixtures" / "import"
EVENTS_JSONL = FIXTURES / "events.jsonl"
EVENTS_CSV = FIXTURES / "events.csv"
USERS_CSV = FIXTURES / "users.csv"
TEHRAN = ZoneInfo("Asia/Tehran")


@pytest.fixture
def home(tmp_path: Path) -> SafarHome:
    return SafarHome(tmp_path / "home").ensure()


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def lake_rows(home: SafarHome) -> list[dict[str, Any]]:
    """Every landed row, as DuckDB reads it, in a stable order."""
    files = landing_files(home)
    if not files:
        return []
    rel = duckdb.sql(
        f"select * from read_parquet({[str(f) for f in files]!r}) order by timestamp, message_id"
    )
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def by_event(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["event"] or row["type"]: row for row in rows}


def lake_snapshot(home: SafarHome) -> dict[str, bytes]:
    """Every file under the lake's raw and rejected folders, with its content."""
    return {
        str(p.relative_to(home.lake)): p.read_bytes()
        for folder in (home.raw_events, home.rejected)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def rejected_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- formats ---------------------------------------------------------------------------------


def test_jsonl_events_land_with_contract_fields(home: SafarHome) -> None:
    before = _utcnow().replace(microsecond=0)
    summary = import_events(home, EVENTS_JSONL, progress=False)
    after = _utcnow() + timedelta(seconds=1)

    assert (summary.accepted, summary.rejected) == (8, 4)
    rows = lake_rows(home)
    assert len(rows) == 8
    assert all(before <= row["received_at"] <= after for row in rows)
    assert {row["source_id"] for row in rows} == {"import"}
    events = by_event(rows)

    viewed = events["Product Viewed"]
    assert viewed["message_id"] == "m-track-1"
    assert (viewed["user_id"], viewed["anonymous_id"]) == ("u1", "a1")
    # +03:30 converted to UTC; with no sentAt the device clock is kept as is.
    assert viewed["timestamp"] == datetime(2025, 11, 2, 9, 30, 0, 250000)
    assert viewed["original_timestamp"] == viewed["timestamp"]
    assert json.loads(viewed["properties"]) == {
        "product_id": "p-7",
        "name": "گلیم دستباف",
        "price": 1250000,
    }
    assert {k: v for k, v in viewed.items() if k.startswith("context_")} == {
        "context_device_id": "dev-1",
        "context_device_type": "ios",
        "context_device_model": "iPhone15,2",
        "context_device_token": "tok-1",
        "context_os_name": "iOS",
        "context_app_version": "3.2.0",
        "context_timezone": "Asia/Tehran",
        "context_locale": "fa-IR",
        "context_ip": "203.0.113.9",
        "context_page_url": None,
    }

    identify = events["identify"]
    assert identify["timestamp"] == datetime(2025, 11, 2, 9, 0)  # no offset: UTC
    assert json.loads(identify["traits"]) == {"first_name": "مریم", "city": "تهران", "plan": "gold"}

    page = events["Home"]
    assert page["type"] == "page"
    assert json.loads(page["properties"]) == {
        "url": "https://shop.example/",
        "category": "Landing",
    }
    assert page["context_page_url"] == "https://shop.example/"

    alias = events["alias"]
    assert (alias["previous_id"], alias["user_id"]) == ("a2", "u6")


def test_jsonl_batch_lines_take_the_batch_defaults(home: SafarHome) -> None:
    import_events(home, EVENTS_JSONL, progress=False)
    events = by_event(lake_rows(home))
    cart, screen = events["Cart Viewed"], events["Cart"]
    assert cart["sent_at"] == screen["sent_at"] == datetime(2025, 11, 3, 8, 0, 5)
    assert (cart["context_device_type"], cart["context_locale"]) == ("android", "fa-IR")
    # The message's own context keys win over the batch's.
    assert (screen["context_device_type"], screen["context_locale"]) == ("android", "en-US")
    assert screen["type"] == "screen"


def test_a_bad_message_in_a_batch_line_is_located_by_its_index(
    home: SafarHome, tmp_path: Path
) -> None:
    path = tmp_path / "requests.jsonl"
    body = {
        "batch": [
            {"type": "track", "event": "A", "userId": "u1"},
            {"type": "alias", "userId": "u1"},
        ],
        "sentAt": "2025-11-03T08:00:05Z",
    }
    path.write_bytes(orjson.dumps(body) + b"\n")
    summary = import_events(home, path, progress=False)
    assert (summary.accepted, summary.rejected) == (1, 1)
    [rejection] = summary.first_rejections
    assert str(rejection) == "line 1[1]: alias without previousId and userId"
    [record] = rejected_records(summary.rejected_file)
    assert (record["line"], record["index"]) == (1, 1)


def test_sent_at_correction_needs_the_original_received_at(home: SafarHome) -> None:
    import_events(home, EVENTS_JSONL, progress=False)
    rows = {row["message_id"]: row for row in lake_rows(home)}
    archived = rows["m-archived-1"]
    # receivedAt 11:00:10 − (sentAt 12:00:10 − originalTimestamp 12:00:00): the device was 1 h fast.
    assert archived["timestamp"] == datetime(2025, 11, 4, 11, 0, 0)
    assert archived["original_timestamp"] == datetime(2025, 11, 4, 12, 0, 0)
    assert archived["sent_at"] == datetime(2025, 11, 4, 12, 0, 10)
    # sentAt but no receivedAt: correcting against the import time would move it to today.
    sdk = rows["m-sdk-1"]
    assert sdk["timestamp"] == datetime(2025, 11, 4, 12, 0, 0)
    assert sdk["sent_at"] == datetime(2025, 11, 4, 12, 0, 10)


def test_bad_rows_are_rejected_with_reasons_and_line_numbers(home: SafarHome) -> None:
    summary = import_events(home, EVENTS_JSONL, progress=False)

    assert summary.reasons == {
        "invalid JSON": 1,
        "missing userId and anonymousId": 1,
        "timestamp is not an ISO-8601 date-time": 1,
        "unknown type 'purchase'": 1,
    }
    assert [(r.line, r.reason) for r in summary.first_rejections] == [
        (4, "invalid JSON"),
        (5, "missing userId and anonymousId"),
        (6, "timestamp is not an ISO-8601 date-time: 'yesterday'"),
        (7, "unknown type 'purchase'"),
    ]
    assert summary.rejected_file is not None and summary.rejected_file.parent == home.rejected
    records = rejected_records(summary.rejected_file)
    assert [(r["line"], r["reason"]) for r in records] == [
        (r.line, r.reason) for r in summary.first_rejections
    ]
    assert records[0]["message"].startswith('{"type": "track", "event": "Broken')
    assert records[3]["message"]["type"] == "purchase"
    assert {r["file"] for r in records} == {str(EVENTS_JSONL)}
    report = summary.report()
    assert "8 accepted, 4 rejected" in report and "line 6: timestamp" in report


def test_csv_events_with_json_and_dotted_columns(home: SafarHome) -> None:
    summary = import_events(home, EVENTS_CSV, progress=False)

    assert (summary.accepted, summary.rejected) == (3, 3)
    assert [(r.line, r.reason) for r in summary.first_rejections] == [
        (5, "missing userId and anonymousId"),
        (6, "properties is not valid JSON"),
        (7, "expected 11 cells, found 4"),
    ]
    events = by_event(lake_rows(home))
    viewed = events["Product Viewed"]
    # Dotted cells are typed, but "00123" keeps its leading zeros.
    assert json.loads(viewed["properties"]) == {
        "product_id": "p-7",
        "title": "کتاب",
        "price": 1250000,
        "sku": "00123",
    }
    assert json.loads(viewed["context"]) == {"device": {"type": "ios"}, "locale": "fa-IR"}
    assert viewed["context_device_type"] == "ios"

    cart = events["Added To Cart"]
    assert cart["user_id"] is None and cart["anonymous_id"] == "a9"
    assert cart["timestamp"] == datetime(2025, 11, 2, 6, 35)  # "10:05:00+03:30"
    assert json.loads(cart["properties"]) == {"price": 99.5}
    assert cart["context_locale"] is None  # an empty cell is absent, not ""

    page = events["Home"]
    assert (page["type"], page["user_id"]) == ("page", "u1")
    assert page["context_page_url"] == "https://shop.example/"


def test_csv_snake_case_columns_and_source_id(home: SafarHome, tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_text(
        "message_id,type,event,user_id,anonymous_id,timestamp,context_device_type,source_id\n"
        "m1,track,Opened,u1,,2025-11-02T10:00:00Z,android,src_app\n"
        "m2,track,Opened,u2,,2025-11-02T10:00:00Z,,\n",
        encoding="utf-8",
    )
    import_events(home, path, source_id="backfill", progress=False)
    rows = {row["message_id"]: row for row in lake_rows(home)}
    assert rows["m1"]["source_id"] == "src_app"  # the row's own source wins
    assert rows["m2"]["source_id"] == "backfill"
    assert json.loads(rows["m1"]["context"]) == {"device": {"type": "android"}}
    assert rows["m1"]["context_device_type"] == "android"


def test_parquet_segment_shaped_events(home: SafarHome, tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    table = pa.table(
        {
            "messageId": ["p1", None],
            "type": ["track", "identify"],
            "event": ["Order Completed", None],
            "userId": pa.array([101.0, 102.0]),  # how pandas writes int ids next to nulls
            "anonymousId": [None, "a-2"],
            "timestamp": pa.array(
                [datetime(2025, 11, 2, 13, 0, tzinfo=TEHRAN), datetime(2025, 11, 2, 9, 0)],
                pa.timestamp("us", tz="Asia/Tehran"),
            ),
            "properties": pa.array(
                [{"revenue": 1250000.5, "currency": "IRR"}, None],
                pa.struct([("revenue", pa.float64()), ("currency", pa.string())]),
            ),
            "properties.coupon": ["نوروز", None],
            "traits": [None, '{"city": "مشهد"}'],
            "context": ['{"device": {"type": "android"}, "locale": "fa-IR"}', None],
        }
    )
    pq.write_table(table, path)

    summary = import_events(home, path, progress=False)

    assert (summary.accepted, summary.rejected) == (2, 0)
    rows = by_event(lake_rows(home))
    order = rows["Order Completed"]
    assert order["message_id"] == "p1" and order["user_id"] == "101"
    assert order["timestamp"] == datetime(2025, 11, 2, 9, 30)  # 13:00 Tehran time
    assert json.loads(order["properties"]) == {
        "revenue": 1250000.5,
        "currency": "IRR",
        "coupon": "نوروز",
    }
    assert order["context_device_type"] == "android"
    identify = rows["identify"]
    assert identify["user_id"] == "102" and identify["anonymous_id"] == "a-2"
    assert json.loads(identify["traits"]) == {"city": "مشهد"}


def test_raw_contract_parquet_round_trips(home: SafarHome, tmp_path: Path) -> None:
    """Landing files of one home import into another unchanged, but for received_at."""
    import_events(home, EVENTS_JSONL, source_id="src_web", progress=False)
    original = lake_rows(home)
    other = SafarHome(tmp_path / "other").ensure()
    for path in landing_files(home):
        summary = import_events(other, path, progress=False)
        assert summary.rejected == 0

    copied = lake_rows(other)
    assert len(copied) == len(original)
    for before, after in zip(original, copied, strict=True):
        assert after["received_at"] > before["received_at"]
        assert {k: v for k, v in after.items() if k != "received_at"} == {
            k: v for k, v in before.items() if k != "received_at"
        }


def test_gzipped_jsonl_gives_the_same_rows(home: SafarHome, tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl.gz"
    path.write_bytes(gzip.compress(EVENTS_JSONL.read_bytes()))
    other = SafarHome(tmp_path / "other").ensure()

    import_events(home, path, progress=False)
    import_events(other, EVENTS_JSONL, progress=False)

    # Every fixture row has a timestamp, so its id comes from its content, not from the file.
    strip = [{k: v for k, v in r.items() if k != "received_at"} for r in lake_rows(home)]
    assert strip == [{k: v for k, v in r.items() if k != "received_at"} for r in lake_rows(other)]


# --- users -------------------------------------------------------------------------------------


def test_users_csv_becomes_identify_events_with_typed_traits(home: SafarHome) -> None:
    before = _utcnow().replace(microsecond=0)
    summary = import_users(home, USERS_CSV, progress=False)

    assert (summary.accepted, summary.rejected) == (3, 1)
    assert [(r.line, r.reason) for r in summary.first_rejections] == [
        (4, "missing userId and anonymousId")
    ]
    rows = {row["user_id"]: row for row in lake_rows(home)}
    assert {row["type"] for row in rows.values()} == {"identify"}
    # Without a timestamp column the attributes are true as of the import.
    assert all(row["timestamp"] >= before for row in rows.values())
    assert json.loads(rows["u1"]["traits"]) == {
        "first_name": "مریم",
        "last_name": "حسینی",
        "city": "تهران",
        "email": "maryam@example.ir",
        "phone": "09121234567",
        "age": 34,
        "vip": True,
        "score": 4.5,
        "address": {"city": "Tehran"},
    }
    assert json.loads(rows["u2"]["traits"]) == {
        "first_name": "Reza",
        "last_name": "Karimi",
        "city": "Tabriz",
        "phone": "+989141112233",
        "age": 41,
        "vip": False,
        "score": 3,
        "note": 'likes "rugs", tea',
        "address": {"city": "Tabriz"},
    }
    assert json.loads(rows["u3"]["traits"]) == {
        "first_name": "سارا",
        "city": "شیراز",
        "email": "sara@example.ir",
        "vip": False,
    }


@pytest.mark.parametrize("header", ["userId", "id"])
def test_users_id_column_falls_back_to_userid_and_id(
    home: SafarHome, tmp_path: Path, header: str
) -> None:
    path = tmp_path / "users.csv"
    path.write_text(f"{header},plan\nu9,gold\n", encoding="utf-8")
    import_users(home, path, progress=False)
    [row] = lake_rows(home)
    assert row["user_id"] == "u9" and json.loads(row["traits"]) == {"plan": "gold"}


def test_users_with_named_id_column_anonymous_id_and_timestamp(
    home: SafarHome, tmp_path: Path
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(
        "customer,anonymous_id,timestamp,id,tier\nc-1,anon-1,2025-10-01T08:00:00+03:30,77,2\n",
        encoding="utf-8",
    )
    import_users(home, path, id_column="customer", progress=False)
    [row] = lake_rows(home)
    assert (row["user_id"], row["anonymous_id"]) == ("c-1", "anon-1")
    assert row["timestamp"] == datetime(2025, 10, 1, 4, 30)
    assert json.loads(row["traits"]) == {"id": 77, "tier": 2}  # "id" is just a trait here


def test_users_parquet_and_jsonl(home: SafarHome, tmp_path: Path) -> None:
    parquet = tmp_path / "users.parquet"
    pq.write_table(
        pa.table({"user_id": ["u1", "u2"], "age": [30, None], "vip": [True, False]}), parquet
    )
    jsonl = tmp_path / "users.jsonl"
    jsonl.write_text('{"userId": "u3", "address": {"city": "یزد"}, "age": null}\n', "utf-8")

    import_users(home, parquet, progress=False)
    import_users(home, jsonl, progress=False)

    traits = {row["user_id"]: json.loads(row["traits"]) for row in lake_rows(home)}
    assert traits == {
        "u1": {"age": 30, "vip": True},
        "u2": {"vip": False},
        "u3": {"address": {"city": "یزد"}},
    }


# --- idempotency ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("importer", "path"),
    [(import_events, EVENTS_JSONL), (import_events, EVENTS_CSV), (import_users, USERS_CSV)],
    ids=["jsonl", "csv", "users"],
)
def test_importing_the_same_file_twice_changes_nothing(
    home: SafarHome, tmp_path: Path, importer: Any, path: Path
) -> None:
    first = importer(home, path, progress=False)
    snapshot = lake_snapshot(home)
    count = len(lake_rows(home))

    # A copy under another name is the same file: the ledger goes by content.
    copy = tmp_path / f"copy{path.suffix}"
    shutil.copy(path, copy)
    second = importer(home, copy, progress=False)

    assert first.accepted > 0 and not first.already_imported
    assert second.already_imported and (second.accepted, second.rejected) == (0, 0)
    assert second.previously_imported_at is not None
    assert "nothing to do" in second.report() and second.exit_code == 0
    assert lake_snapshot(home) == snapshot
    assert len(lake_rows(home)) == count


def test_appended_jsonl_only_adds_the_new_lines(home: SafarHome, tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    lines = [
        orjson.dumps({"type": "track", "event": f"E{i}", "userId": "u1"}).decode() for i in range(5)
    ]
    path.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    import_events(home, path, progress=False)

    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n".join([*lines[3:], "{oops"]) + "\n")
    summary = import_events(home, path, progress=False)

    assert summary.skipped_lines == 3
    assert (summary.accepted, summary.rejected) == (2, 1)
    assert [(r.line, r.reason) for r in summary.first_rejections] == [(6, "invalid JSON")]
    rows = lake_rows(home)
    assert sorted(row["event"] for row in rows) == ["E0", "E1", "E2", "E3", "E4"]
    assert len({row["message_id"] for row in rows}) == 5
    assert len(list(home.import_ledger.glob("events-*.json"))) == 2


def test_appended_csv_keeps_its_header_and_line_numbers(home: SafarHome, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "type,event,userId,timestamp\ntrack,A,u1,2025-11-01T00:00:00Z\n", encoding="utf-8"
    )
    import_events(home, path, progress=False)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("track,B,u1,2025-11-02T00:00:00Z\ntrack,C,,2025-11-03T00:00:00Z\n")

    summary = import_events(home, path, progress=False)

    assert (summary.skipped_lines, summary.accepted, summary.rejected) == (2, 1, 1)
    assert summary.first_rejections[0].line == 4
    assert sorted(row["event"] for row in lake_rows(home)) == ["A", "B"]


def test_message_ids_are_deterministic(home: SafarHome, tmp_path: Path) -> None:
    """Rows with a timestamp get ids from their content; rows without, from file and line."""
    other = SafarHome(tmp_path / "other").ensure()
    import_events(home, EVENTS_JSONL, progress=False)
    import_events(other, EVENTS_JSONL, progress=False)
    assert [r["message_id"] for r in lake_rows(home)] == [r["message_id"] for r in lake_rows(other)]

    # The same timed events in another file (an overlapping re-export) keep their ids, so the
    # staging model's de-duplication on message_id removes them.
    reordered = tmp_path / "reordered.jsonl"
    good = [line for line in EVENTS_JSONL.read_text("utf-8").splitlines() if "Cart" in line]
    reordered.write_text("\n".join(reversed(good)) + "\n", encoding="utf-8")
    third = SafarHome(tmp_path / "third").ensure()
    import_events(third, reordered, progress=False)
    ids = {r["message_id"] for r in lake_rows(home)}
    assert {r["message_id"] for r in lake_rows(third)} <= ids

    # Untimed rows (a users snapshot) are new observations in a new file: A → B → A survives.
    snapshots = []
    for n, plan in enumerate(["gold", "silver", "gold"]):
        path = tmp_path / f"users-{n}.csv"
        path.write_text(f"user_id,plan,snapshot\nu1,{plan},{n // 2}\n", encoding="utf-8")
        snapshots.append(path)
    fourth = SafarHome(tmp_path / "fourth").ensure()
    for path in snapshots:
        import_users(fourth, path, progress=False)
    assert len({r["message_id"] for r in lake_rows(fourth)}) == 3


def test_rerun_without_the_ledger_lands_the_same_ids(home: SafarHome) -> None:
    """What an interrupted import leaves behind is removed by staging's de-duplication."""
    import_users(home, USERS_CSV, progress=False)
    first = sorted(r["message_id"] for r in lake_rows(home))
    shutil.rmtree(home.import_ledger)

    summary = import_users(home, USERS_CSV, progress=False)

    assert summary.accepted == 3
    assert sorted(r["message_id"] for r in lake_rows(home)) == sorted(first * 2)


def test_a_wiped_lake_can_be_imported_again(home: SafarHome) -> None:
    import_events(home, EVENTS_JSONL, progress=False)
    shutil.rmtree(home.raw_events)
    home.ensure()
    summary = import_events(home, EVENTS_JSONL, progress=False)
    assert not summary.already_imported and summary.accepted == 8


def test_a_file_whose_every_row_failed_is_not_in_the_ledger(
    home: SafarHome, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"type": "track"}\nnot json\n', encoding="utf-8")
    first = import_events(home, path, progress=False)
    second = import_events(home, path, progress=False)
    assert (first.accepted, first.rejected, first.exit_code) == (0, 2, 1)
    assert not second.already_imported
    assert not list(home.import_ledger.glob("*.json"))


# --- errors ----------------------------------------------------------------------------------


def test_missing_file_is_a_clear_error(home: SafarHome, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file: .*nope.jsonl"):
        import_events(home, tmp_path / "nope.jsonl", progress=False)


@pytest.mark.parametrize("name", ["events.txt", "events.json", "events.gz", "events.parquet.gz"])
def test_unknown_extension_is_a_clear_error(home: SafarHome, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("{}\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match=r"cannot tell the format .*\.jsonl.*\.csv"):
        import_events(home, path, progress=False)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("event,userId", "no `type` column"),
        ("type,event,userId,price", "no place in a Segment message: 'price'"),
        ("type,userId,user_id", "fields given by two columns: userId"),
        ("type,properties.a,properties.a.b", "set the same key"),
        ("type,event,userId,", "names no column 4"),
    ],
)
def test_csv_header_problems_are_clear_errors(
    home: SafarHome, tmp_path: Path, header: str, message: str
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(header + "\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match=message):
        import_events(home, path, progress=False)
    assert not landing_files(home)


def test_users_without_an_id_column_is_a_clear_error(home: SafarHome, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("email,city\na@b.ir,Qom\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="no id column: expected one of user_id, userId, id"):
        import_users(home, path, progress=False)
    with pytest.raises(ImportFileError, match="no column 'uid'"):
        import_users(home, path, id_column="uid", progress=False)


def test_empty_csv_and_broken_parquet_are_clear_errors(home: SafarHome, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ImportFileError, match="empty"):
        import_events(home, empty, progress=False)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(ImportFileError, match="cannot read .* as Parquet"):
        import_events(home, broken, progress=False)


def test_non_utf8_csv_rows_are_rejected(home: SafarHome, tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("\ufefftype,event,userId\ntrack,Opened,u1\n".encode() + b"track,Caf\xe9,u2\n")
    summary = import_events(home, path, progress=False)
    assert (summary.accepted, summary.rejected) == (1, 1)
    assert summary.first_rejections[0].line == 3
    assert summary.first_rejections[0].reason == "not valid UTF-8"


# --- command line ------------------------------------------------------------------------------


def _cli(home: SafarHome, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="safar")
    parser.add_argument("--home")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--home", str(home.root), *argv])
    return args.func(args)


def test_cli_prints_the_summary_and_exit_codes(
    home: SafarHome, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(home, "import", "events", str(EVENTS_JSONL), "--quiet", "--source-id", "s1") == 0
    out = capsys.readouterr().out
    assert "8 accepted, 4 rejected" in out and "invalid JSON ×1" in out and "line 4" in out
    assert {row["source_id"] for row in lake_rows(home)} == {"s1"}

    assert _cli(home, "import", "events", str(EVENTS_JSONL), "--quiet") == 0
    assert "already imported" in capsys.readouterr().out

    assert _cli(home, "import", "users", str(USERS_CSV), "--id-column", "user_id", "--quiet") == 0
    assert "3 accepted, 1 rejected" in capsys.readouterr().out

    assert _cli(home, "import", "users", "/no/such/users.csv", "--quiet") == 1
    assert "error: no such file" in capsys.readouterr().err


# --- scale ------------------------------------------------------------------------------------

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from safar.config import SafarHome
    from safar.importer import import_events
    summary = import_events(SafarHome(Path(sys.argv[1])), sys.argv[2], progress=False)
    print(json.dumps({
        "accepted": summary.accepted,
        "rows_per_second": summary.rows_per_second,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
    """
)


def _write_events(path: Path, count: int) -> None:
    with open(path, "wb") as fh:
        for i in range(count):
            message = {
                "type": "track",
                "event": "Product Viewed",
                "userId": f"u{i % 5000}",
                "timestamp": f"2025-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00.{i:06d}Z",
                "properties": {"product_id": f"p-{i % 300}", "title": "گلیم دستباف", "n": i},
                "context": {"device": {"type": "ios"}, "locale": "fa-IR"},
            }
            fh.write(orjson.dumps(message) + b"\n")


def _measure(home: Path, path: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(home), str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_large_files_import_in_bounded_memory(tmp_path: Path) -> None:
    """Peak memory does not grow with the file: 3x the lines, about the same peak RSS."""
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    _write_events(small, 70_000)
    _write_events(large, 210_000)

    first = _measure(tmp_path / "a", small)
    second = _measure(tmp_path / "b", large)

    assert (first["accepted"], second["accepted"]) == (70_000, 210_000)
    print(f"\nimport: {first} / {second}")
    # Holding 140k more messages as Python objects would take several hundred MB more.
    assert second["max_rss_mb"] - first["max_rss_mb"] < 80
    rows = duckdb.sql(
        f"select count(*), count(distinct message_id) "
        f"from read_parquet('{tmp_path / 'b'}/lake/raw/events/*/*.parquet')"
    ).fetchone()
    assert rows == (210_000, 210_000)


# --- end to end ---------------------------------------------------------------------------------


def test_imported_users_appear_in_dim_users_after_a_build(home: SafarHome) -> None:
    from safar.build import build
    from safar.warehouse import connect

    import_events(home, EVENTS_JSONL, progress=False)
    import_users(home, USERS_CSV, progress=False)
    build(home)

    con = connect(home, read_only=True)
    try:
        rel = con.sql(
            "select user_id, first_name, last_name, city, phone, custom_attributes "
            "from dim_users where user_id in ('u1', 'u2', 'u3') order by user_id"
        )
        users = {row[0]: row for row in rel.fetchall()}
    finally:
        con.close()
    assert users["u1"][1:5] == ("مریم", "حسینی", "تهران", "09121234567")
    attributes = json.loads(users["u1"][5])
    assert attributes["vip"] is True and attributes["age"] == 34
    assert attributes["plan"] == "gold"  # from the identify in events.jsonl
    assert attributes["address"] == {"city": "Tehran"}
    assert json.loads(users["u2"][5])["vip"] is False
    assert users["u3"][1:4] == ("سارا", None, "شیراز")
