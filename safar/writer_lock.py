"""One warehouse writer at a time, across processes.

DuckLake commits through its SQLite catalog: two writers at once make one of them fail half-way
("database is locked", a transaction conflict). Dagster runs that write are serialized by the
``warehouse`` pool, but the ingest sensor's live lane refreshes small batches outside any run,
and ``safar build`` runs from a shell. So every writer — ``safar build``, segment evaluation, the
Dagster dbt step — holds this lock while it writes: an advisory ``flock`` on
``lake/writer.lock`` that the kernel releases if the holder dies. Readers never take it;
DuckLake gives them consistent snapshots.

The lock is re-entrant within a thread (a micro-batch holds it around the build and the
evaluation it calls); other threads of the same process wait like other processes do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from safar.config import SafarHome


class WarehouseBusy(RuntimeError):
    """Another writer holds the warehouse; the message names it (pid, purpose, since when)."""


@dataclass
class _Held:
    guard: threading.RLock
    fd: int | None = None
    depth: int = 0


_registry_guard = threading.Lock()
_registry: dict[Path, _Held] = {}


def lock_path(home: SafarHome) -> Path:
    return home.lake / "writer.lock"


def holder(home: SafarHome) -> str:
    """Who holds (or last held) the lock, as its holder wrote it; empty if never taken."""
    return _read_holder(lock_path(home))


def _entry(path: Path) -> _Held:
    with _registry_guard:
        return _registry.setdefault(path, _Held(threading.RLock()))


@contextlib.contextmanager
def warehouse_writer(home: SafarHome, *, purpose: str, wait: bool = True) -> Iterator[None]:
    """Hold the warehouse's writer lock for the duration.

    Args:
        home: the Safar home whose warehouse is written.
        purpose: what the holder does, shown to whoever finds the lock taken.
        wait: block until the lock is free; if false, raise :class:`WarehouseBusy` at once.

    Raises:
        WarehouseBusy: ``wait`` is false and another writer holds the lock.
    """
    path = lock_path(home)
    held = _entry(path)
    if not held.guard.acquire(blocking=wait):
        raise WarehouseBusy(f"the warehouse is being written by this process ({holder(home)})")
    try:
        if held.depth == 0:
            try:
                held.fd = take_file_lock(path, purpose, wait=wait)
            except LockBusy as busy:
                raise WarehouseBusy(f"the warehouse is being written by {busy}") from None
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0 and held.fd is not None:
                release_file_lock(held.fd)
                held.fd = None
    finally:
        held.guard.release()


class LockBusy(RuntimeError):
    """Another process holds a file lock; the message is what the holder wrote (pid, purpose)."""


def take_file_lock(path: Path, purpose: str, *, wait: bool) -> int:
    """Take an exclusive ``flock`` on ``path`` and write who holds it; the open descriptor.

    The kernel releases the lock when the process dies, so a crash never leaves it stuck.

    Raises:
        LockBusy: ``wait`` is false and another process holds the lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise LockBusy(_read_holder(path)) from None
            fcntl.flock(fd, fcntl.LOCK_EX)
        since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({purpose}) since {since}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def release_file_lock(fd: int) -> None:
    """Let go of a lock from :func:`take_file_lock`."""
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _read_holder(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
