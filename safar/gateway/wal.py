"""Durable acceptance: a group-committed write-ahead log, flushed into landing files.

A ``2xx`` from the gateway means the events are on disk. Writing a Parquet file per request
would make that slow (one file, fsync and rename per request), so acceptance and landing are
split, as databases do:

1. **Group commit.** Request handlers hand their encoded rows to :class:`GroupCommitter`
   and wait. One I/O thread appends everything that queued up meanwhile to the open log
   segment (``$SAFAR_HOME/lake/gateway_wal/wal-<id>.jsonl``, one JSON row per line) and
   calls ``fdatasync`` once for the whole group, then wakes every waiting request. While one
   group syncs, the next one gathers, so the sync cost is shared by all concurrent requests
   and an idle gateway adds no delay.
2. **Flush.** A segment is closed once its first row is ``flush_interval_seconds`` old (or
   it is large), and :class:`SegmentFlusher` turns it into Parquet landing files (one per
   received date) with :func:`safar.lake.write_parquet_atomic`, then deletes it.
3. **Recovery.** On start, :func:`recover` flushes every segment left by a previous run
   before the gateway takes requests. A crash can leave the last line of a segment half
   written: it was never acknowledged, so it is dropped (and only it: a damaged line
   elsewhere goes to the rejected file with its reason).

Writing a segment twice is avoided with an intent file (``wal-<id>.jsonl.flush``, written
and synced before any Parquet file) naming the landing files a flush will create: after a
crash between landing and deleting, recovery finds them and only deletes the segment. A file
the intent names but that never landed gets a fresh id, because the ingest sensor's cursor
(the newest file id it has seen) may have moved past the planned one meanwhile.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from safar.config import SafarHome
from safar.contract import RAW_SCHEMA
from safar.lake import (
    conform,
    fsync_dir,
    new_file_id,
    split_valid,
    write_parquet_atomic,
    write_rejected,
)

log = logging.getLogger(__name__)

SEGMENT_GLOB = "wal-*.jsonl"
_INTENT_SUFFIX = ".flush"
_LOCK_NAME = ".lock"

# Parse options for segments: explicit types (timestamps are ISO strings in the log), and
# blocks large enough for the largest row (32 KB event, escaped) many times over.
_PARSE = pj.ParseOptions(explicit_schema=RAW_SCHEMA, unexpected_field_behavior="error")
_READ = pj.ReadOptions(block_size=8 * 1024 * 1024)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _segment_id(path: Path) -> str:
    return path.name.removeprefix("wal-").removesuffix(".jsonl")


class Backlog:
    """Events accepted but not yet in the landing zone; thread-safe.

    Example:
        >>> backlog = Backlog()
        >>> backlog.add(100); backlog.done(40); backlog.value
        60
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    @property
    def value(self) -> int:
        return self._value

    def add(self, events: int) -> None:
        with self._lock:
            self._value += events

    def done(self, events: int) -> None:
        with self._lock:
            self._value -= events


# --------------------------------------------------------------------------------------------
# Segment → landing files


@dataclass
class SegmentRead:
    table: pa.Table
    bad_lines: list[tuple[bytes, str]]
    torn_bytes: int
    damaged: bool = False


def read_segment(path: Path) -> SegmentRead:
    """The rows of a segment; a torn last line is left out and damaged lines set aside."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    torn = len(data) - end
    body = data[:end]
    if not body:
        return SegmentRead(RAW_SCHEMA.empty_table(), [], torn)
    try:
        table = pj.read_json(io.BytesIO(body), read_options=_READ, parse_options=_PARSE)
        return SegmentRead(table, [], torn)
    except pa.ArrowInvalid:
        pass
    # Slow path, only for a damaged segment: parse line by line to keep every good row.
    tables, bad = [], []
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        try:
            tables.append(pj.read_json(io.BytesIO(line), parse_options=_PARSE))
        except pa.ArrowInvalid as exc:
            bad.append((line, f"damaged write-ahead log line: {exc}"))
    table = pa.concat_tables(tables) if tables else RAW_SCHEMA.empty_table()
    return SegmentRead(table, bad, torn, damaged=True)


def _write_bad_lines(home: SafarHome, segment_id: str, bad: list[tuple[bytes, str]]) -> None:
    home.rejected.mkdir(parents=True, exist_ok=True)
    path = home.rejected / f"rejected-{segment_id}-damaged.jsonl"
    with open(path, "wb") as fh:
        for line, reason in bad:
            text = line.decode("utf-8", errors="replace")
            fh.write(orjson.dumps({"reason": reason, "line": text}) + b"\n")
    log.error("%d damaged lines in segment %s; kept in %s", len(bad), segment_id, path)


def flush_segment(home: SafarHome, path: Path) -> list[Path]:
    """Turn one closed segment into landing files, then delete it.

    Safe to call again on the same segment after a crash at any point: the intent file
    keeps landing files from being written twice.

    Returns:
        The landing files written by this call.
    """
    segment_id = _segment_id(path)
    intent_path = path.with_name(path.name + _INTENT_SUFFIX)
    recovering = intent_path.exists()
    planned: dict[str, str] = orjson.loads(intent_path.read_bytes()) if recovering else {}

    read = read_segment(path)
    if read.torn_bytes:
        log.warning("segment %s: ignoring a torn last line (%d bytes)", path, read.torn_bytes)
    if read.bad_lines:
        _write_bad_lines(home, segment_id, read.bad_lines)
    good = conform(read.table)
    written: list[Path] = []
    if good.num_rows:
        if read.damaged:
            # Lines that survived damage may still be nonsense: check them with the lake's
            # rules. Intact segments need no check: the gateway validated every row before
            # writing it, with the same rules (tests/gateway/test_messages.py proves they
            # agree), and checking again would cost the flusher more than the write.
            good, bad = split_valid(good)
            if bad.num_rows:
                write_rejected(home, bad, f"{segment_id}-flush")
        dates = pc.strftime(good["received_at"], format="%Y-%m-%d")
        days = sorted(pc.unique(dates).to_pylist())
        if not recovering:
            planned = {day: f"date={day}/part-{new_file_id()}.parquet" for day in days}
            intent_path.write_bytes(orjson.dumps(planned))
            with open(intent_path, "rb") as fh:
                os.fsync(fh.fileno())
            fsync_dir(path.parent)
        for day in days:
            target = home.raw_events / planned[day] if day in planned else None
            if target is not None and target.exists():
                continue  # landed before a crash
            if recovering or target is None:
                target = home.raw_events / f"date={day}" / f"part-{new_file_id()}.parquet"
            write_parquet_atomic(good.filter(pc.equal(dates, day)), target)
            written.append(target)
    path.unlink()
    intent_path.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return written


def acquire_lock(directory: Path) -> int:
    """Hold the segment directory for this process; the OS releases it if the process dies.

    Raises:
        RuntimeError: another gateway is using the same directory.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"another gateway is running on {directory}") from None
    return fd


def recover(home: SafarHome) -> list[Path]:
    """Flush every segment a previous run left behind, oldest first.

    Returns:
        The landing files written.
    """
    directory = home.gateway_wal
    written: list[Path] = []
    for path in sorted(directory.glob(SEGMENT_GLOB)):
        log.info("recovering write-ahead log segment %s", path.name)
        written += flush_segment(home, path)
    for intent in directory.glob(f"*{_INTENT_SUFFIX}"):
        intent.unlink()  # its segment was deleted after landing; only the intent was left
    return written


class SegmentFlusher:
    """A thread that turns closed segments into landing files, in the order they closed."""

    RETRY_SECONDS = 1.0

    def __init__(self, home: SafarHome, backlog: Backlog):
        self.home = home
        self.backlog = backlog
        self._queue: queue.Queue[tuple[Path, int] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="safar-flusher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, path: Path, events: int) -> None:
        self._queue.put((path, events))

    def stop(self) -> None:
        """Flush everything submitted so far, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            path, events = item
            while True:
                try:
                    flush_segment(self.home, path)
                    break
                except Exception:  # a full disk must not lose the segment: keep retrying
                    log.exception("could not flush %s; retrying", path)
                    time.sleep(self.RETRY_SECONDS)
            self.backlog.done(events)


# --------------------------------------------------------------------------------------------
# Group commit


class SegmentWriter:
    """The open segment and rejected-events file; used from one I/O thread only."""

    def __init__(
        self,
        home: SafarHome,
        *,
        max_age: float,
        max_bytes: int,
        on_close: Callable[[Path, int], None],
    ):
        self.home = home
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.on_close = on_close
        self._fd: int | None = None
        self._path: Path | None = None
        self._events = 0
        self._bytes = 0
        self._opened_at = 0.0
        self._rejected_fd: int | None = None

    def seconds_until_rotation(self) -> float | None:
        """How long the committer may sleep before the open segment is due; None: no segment."""
        if self._fd is None:
            return None
        return max(0.0, self._opened_at + self.max_age - time.monotonic())

    def write(self, rows: bytes, events: int, rejected: bytes) -> None:
        """Append ``rows`` (and ``rejected`` lines) durably; rotate the segment when due."""
        if self._fd is not None and (
            time.monotonic() - self._opened_at >= self.max_age or self._bytes >= self.max_bytes
        ):
            self.rotate()
        try:
            if rows:
                if self._fd is None:
                    self._open()
                assert self._fd is not None
                _write_all(self._fd, rows)
                os.fdatasync(self._fd)
                self._events += events
                self._bytes += len(rows)
            if rejected:
                if self._rejected_fd is None:
                    self.home.rejected.mkdir(parents=True, exist_ok=True)
                    path = self.home.rejected / f"rejected-{new_file_id()}.jsonl"
                    self._rejected_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                _write_all(self._rejected_fd, rejected)
                os.fdatasync(self._rejected_fd)
        except OSError:
            # The segment may now end in a partial line: close it (its flush ignores a torn
            # tail) and start a new one on the next write. The failed group is not counted in
            # the segment: the committer takes it off the backlog itself.
            self.rotate()
            raise

    def _open(self) -> None:
        self._path = self.home.gateway_wal / f"wal-{new_file_id()}.jsonl"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        # The new name must be durable too, or a crash could lose the whole segment.
        fsync_dir(self._path.parent)
        self._events = 0
        self._bytes = 0
        self._opened_at = time.monotonic()

    def rotate(self) -> None:
        """Close the open segment and hand it to the flusher."""
        if self._rejected_fd is not None:
            os.close(self._rejected_fd)
            self._rejected_fd = None
        if self._fd is None:
            return
        os.close(self._fd)
        path, events = self._path, self._events
        self._fd, self._path = None, None
        assert path is not None
        self.on_close(path, events)


class GroupCommitter:
    """Collects rows from concurrent requests and makes each group durable with one sync."""

    def __init__(self, writer: SegmentWriter, backlog: Backlog):
        self.writer = writer
        self.backlog = backlog
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="safar-wal")
        self._rows: list[bytes] = []
        self._rejected: list[bytes] = []
        self._events = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="safar-committer")

    async def commit(self, rows: bytes, events: int, rejected: bytes = b"") -> None:
        """Return once ``rows`` (``events`` of them) and ``rejected`` lines are on disk.

        Raises:
            OSError: the log could not be written (disk full, …); nothing was acknowledged.
        """
        if self._stopping:
            raise OSError("the gateway is shutting down")
        waiter = asyncio.get_running_loop().create_future()
        if rows:
            self._rows.append(rows)
            self._events += events
            self.backlog.add(events)
        if rejected:
            self._rejected.append(rejected)
        self._waiters.append(waiter)
        self._wake.set()
        await waiter

    async def stop(self) -> None:
        """Commit what is queued, close the open segment, and stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await asyncio.get_running_loop().run_in_executor(self._io, self.writer.rotate)
        self._io.shutdown()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiters:
                if self._stopping:
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.writer.seconds_until_rotation())
                except TimeoutError:
                    pass
            rows, rejected, events, waiters = (
                self._rows,
                self._rejected,
                self._events,
                self._waiters,
            )
            self._rows, self._rejected, self._events, self._waiters = [], [], 0, []
            try:
                await loop.run_in_executor(
                    self._io, self.writer.write, b"".join(rows), events, b"".join(rejected)
                )
            except OSError as exc:
                log.error("write-ahead log write failed: %s", exc)
                self.backlog.done(events)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
