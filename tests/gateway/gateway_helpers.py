"""Run a real gateway in a subprocess and read what it landed (``conftest`` has the fixtures)."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import httpx

from safar.appdb import open_app_db
from safar.appdb.sources import add_source
from safar.config import SafarHome

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def basic(key: str) -> dict[str, str]:
    """The Authorization header Segment's SDKs send: ``base64("key:")``."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def new_id(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def wait_for(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {check}")
        time.sleep(interval)


@dataclass
class Gateway:
    """A ``safar gateway`` subprocess on a free loopback port."""

    home: SafarHome
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Gateway:
        self.log_path = self.home.root / f"gateway-{self.port}-{time.monotonic_ns()}.log"
        command = [sys.executable, "-m", "safar.cli", "--home", str(self.home.root), "gateway"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port), *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited at start:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> None:
        """SIGTERM: a graceful stop that lands everything accepted."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: a crash; nothing gets to run."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def add_key(home: SafarHome, name: str | None = None) -> str:
    return add_source(open_app_db(home), name or f"src-{uuid.uuid4().hex[:10]}").write_key


def lake_rows(home: SafarHome, where: str = "true", params: Iterable[Any] = ()) -> list[dict]:
    """Rows of the landing zone matching ``where``, as dicts (empty when nothing landed)."""
    files = sorted(home.raw_events.glob("date=*/part-*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    try:
        relation = con.execute(
            f"select * from read_parquet(?, hive_partitioning = false) where {where}",
            [[str(f) for f in files], *params],
        )
        names = [d[0] for d in relation.description]
        return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]
    finally:
        con.close()


def rows_by_id(home: SafarHome, message_ids: Iterable[str]) -> list[dict]:
    return lake_rows(home, "list_contains(?, message_id)", [list(message_ids)])


def wait_for_rows(home: SafarHome, message_ids: Iterable[str], timeout: float = 10.0) -> list:
    """Wait until every message id has landed; returns their rows (duplicates included)."""
    wanted = set(message_ids)

    def landed() -> list[dict] | None:
        rows = rows_by_id(home, wanted)
        return rows if {r["message_id"] for r in rows} >= wanted else None

    return wait_for(landed, timeout=timeout, interval=0.1)
