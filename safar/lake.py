"""The raw landing zone: atomic Parquet writes, validation, reading and quarantine.

Layout: ``lake/raw/events/date=YYYY-MM-DD/part-<file id>.parquet``, partitioned by the date
the events were *received* (so new data always lands in new files and incremental builds can
prune old partitions), with file ids that sort in write order.

A file appears under its final name only when it is complete and fsync'd: it is written to a
hidden temporary name in the same folder and renamed, so readers never see half a file.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from safar.config import SafarHome
from safar.contract import JSON_COLUMNS, MESSAGE_TYPES, RAW_COLUMNS, RAW_SCHEMA

log = logging.getLogger(__name__)

PART_GLOB = "date=*/part-*.parquet"

_id_lock = threading.Lock()
_last_id: tuple[int, int] = (0, 0)


def new_file_id(now_ms: int | None = None) -> str:
    """A file id that sorts in creation order within a process, and across processes by ms.

    Example:
        >>> a, b = new_file_id(1_700_000_000_000), new_file_id(1_700_000_000_000)
        >>> a < b and len(a) == len(b) == 26
        True
    """
    global _last_id
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _id_lock:
        last_ms, seq = _last_id
        seq = seq + 1 if ms <= last_ms else 0
        ms = max(ms, last_ms)
        _last_id = (ms, seq)
    return f"{ms:013d}{seq:05d}-{secrets.token_hex(4)[:7]}"


def file_id_of(path: Path) -> str:
    return path.stem.removeprefix("part-")


# One CASE per rule, first failing rule wins; evaluated by DuckDB over the Arrow batch.
# json_type raises on invalid JSON and AND does not short-circuit, so a CASE guards it.
_REASON_SQL = f"""
case
  when message_id is null or message_id = '' then 'missing message_id'
  when type is null then 'missing type'
  when type not in ({", ".join(f"'{t}'" for t in MESSAGE_TYPES)})
    then 'unknown type ' || type
  when timestamp is null then 'missing timestamp'
  when received_at is null then 'missing received_at'
  when coalesce(user_id, '') = '' and coalesce(anonymous_id, '') = ''
    then 'missing user_id and anonymous_id'
  when type = 'track' and coalesce(event, '') = '' then 'track without event name'
  when type = 'alias' and (coalesce(previous_id, '') = '' or coalesce(user_id, '') = '')
    then 'alias without previous_id and user_id'
  when type = 'identify' and coalesce(user_id, '') = '' and traits is null
    then 'identify without user_id or traits'
  when type = 'group' and coalesce(group_id, '') = '' then 'group without group_id'
  {
    "".join(
        f"when {c} is not null and coalesce("
        f"case when json_valid({c}) then json_type({c}) end, '') <> 'OBJECT' "
        f"then '{c} is not a JSON object' "
        for c in JSON_COLUMNS
    )
}
end
"""


@dataclass
class WriteResult:
    files: list[Path] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    rejected_file: Path | None = None


def conform(data: pa.Table | pl.DataFrame) -> pa.Table:
    """Cast a batch to the raw schema; columns it lacks are filled with nulls.

    Raises:
        ValueError: a column is not in the contract, or cannot be cast to its type.
    """
    table = data.to_arrow() if isinstance(data, pl.DataFrame) else data
    unknown = sorted(set(table.column_names) - set(RAW_COLUMNS))
    if unknown:
        raise ValueError(f"columns not in the raw event contract: {', '.join(unknown)}")
    columns = []
    for f in RAW_SCHEMA:
        if f.name in table.column_names:
            col = table[f.name]
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(
                    f"column {f.name!r}: cannot cast {col.type} to {f.type}: {exc}"
                ) from exc
        else:
            col = pa.nulls(table.num_rows, f.type)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=RAW_SCHEMA.with_metadata(None).remove_metadata())


def split_valid(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Split a conformed batch into (valid rows, rejected rows with a ``reason`` column)."""
    con = duckdb.connect()
    try:
        con.register("batch", table)
        marked = con.sql(f"select *, {_REASON_SQL} as _reason from batch").arrow()
        if hasattr(marked, "read_all"):
            marked = marked.read_all()
    finally:
        con.close()
    reason = marked["_reason"]
    bad_mask = pa.compute.is_valid(reason)
    good = marked.filter(pa.compute.invert(bad_mask)).drop_columns(["_reason"])
    bad = marked.filter(bad_mask).rename_columns([*RAW_COLUMNS, "reason"])
    return good.cast(RAW_SCHEMA), bad


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (the directory entry is data too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so the file is either absent or complete and durable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=256_000)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_rejected(home: SafarHome, bad: pa.Table, file_id: str) -> Path:
    """Append rejected rows, each with its reason, to ``lake/rejected/rejected-<id>.jsonl``."""
    home.rejected.mkdir(parents=True, exist_ok=True)
    path = home.rejected / f"rejected-{file_id}.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for row in bad.to_pylist():
            reason = row.pop("reason")
            fh.write(json.dumps({"reason": reason, "row": row}, default=str) + "\n")
    return path


class LakeWriter:
    """Validates batches of raw events and lands the good rows as Parquet files."""

    def __init__(self, home: SafarHome):
        self.home = home.ensure()

    def write(self, data: pa.Table | pl.DataFrame) -> WriteResult:
        table = conform(data)
        good, bad = split_valid(table)
        result = WriteResult()
        if bad.num_rows:
            result.rejected = bad.num_rows
            result.rejected_file = write_rejected(self.home, bad, new_file_id())
            log.warning(
                "rejected %d of %d rows; reasons in %s",
                bad.num_rows,
                table.num_rows,
                result.rejected_file,
            )
        if good.num_rows == 0:
            return result
        dates = pa.compute.strftime(good["received_at"], format="%Y-%m-%d")
        for day in sorted(pa.compute.unique(dates).to_pylist()):
            part = good.filter(pa.compute.equal(dates, day))
            path = self.home.raw_events / f"date={day}" / f"part-{new_file_id()}.parquet"
            write_parquet_atomic(part, path)
            result.files.append(path)
        result.accepted = good.num_rows
        return result


def landing_files(home: SafarHome, after_id: str | None = None) -> list[Path]:
    """Landing files in write order, optionally only those written after ``after_id``."""
    files = sorted(home.raw_events.glob(PART_GLOB), key=file_id_of)
    if after_id is not None:
        files = [f for f in files if file_id_of(f) > after_id]
    return files


def _check_file(path: Path) -> str | None:
    """Why ``path`` is not a readable raw-events file, or None if it is."""
    try:
        meta = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a broken footer
        return f"unreadable Parquet: {exc}"
    missing = [f.name for f in RAW_SCHEMA if f.name not in schema.names]
    if missing:
        return f"missing contract columns: {', '.join(missing)}"
    if meta.num_rows and meta.num_row_groups == 0:
        return "no row groups"
    return None


_VERIFIED_MARK = ".verified_through"


def quarantine_corrupt(home: SafarHome) -> list[Path]:
    """Move unreadable landing files to ``lake/quarantine`` so a build can go on.

    Only files newer than the last verified one are checked (file ids sort in write order),
    so the cost does not grow with the size of the lake.

    Returns:
        Where each quarantined file now is.
    """
    mark = home.raw_events / _VERIFIED_MARK
    verified = mark.read_text().strip() if mark.exists() else None
    moved = []
    newest = verified
    for path in landing_files(home, after_id=verified):
        reason = _check_file(path)
        if reason is None:
            newest = max(newest or "", file_id_of(path))
            continue
        target = home.quarantine / path.relative_to(home.raw_events)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        target.with_name(target.name + ".reason.json").write_text(
            json.dumps(
                {
                    "file": str(path),
                    "reason": reason,
                    "quarantined_at": datetime.now(UTC).isoformat(),
                }
            )
        )
        log.error("quarantined %s: %s", path, reason)
        moved.append(target)
    if newest and newest != verified:
        mark.write_text(newest)
    return moved
