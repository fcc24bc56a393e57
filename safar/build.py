"""``safar build``: quarantine unreadable landing files, then build the warehouse with dbt.

dbt runs in-process through ``dbtRunner`` with its target and log folders under the data
directory, so one checkout can build several homes (the tests do) without them mixing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from safar.config import DBT_PROJECT_DIR, SafarHome, extension_directory
from safar.lake import quarantine_corrupt
from safar.writer_lock import warehouse_writer

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """dbt reported failures; the message lists each failing node and its error."""


@dataclass
class BuildResult:
    seconds: float
    nodes: int
    quarantined: list[Path] = field(default_factory=list)
    models: list[str] = field(default_factory=list)


@contextlib.contextmanager
def dbt_environment(home: SafarHome) -> Iterator[dict[str, str]]:
    """The environment dbt's profile reads (see dbt/profiles.yml), set for the duration."""
    env = {
        "SAFAR_HOME": str(home.root),
        "SAFAR_DUCKDB_EXTENSIONS": str(extension_directory()),
        "DBT_TARGET_PATH": str(home.dbt_target / "target"),
        "DBT_LOG_PATH": str(home.dbt_target / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_PARTIAL_PARSE": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def prepare_catalog(home: SafarHome) -> None:
    """Create the DuckLake catalog in WAL mode so readers never block the builder's commits."""
    home.ensure()
    con = sqlite3.connect(home.catalog)
    try:
        con.execute("pragma journal_mode=wal")
    finally:
        con.close()


def run_dbt(home: SafarHome, args: Sequence[str]) -> list:
    """Run one dbt command against ``home``; raise :class:`BuildError` on any failure.

    Returns:
        dbt's per-node results.
    """
    from dbt.cli.main import dbtRunner  # imported late: it is slow and only builds need it

    with dbt_environment(home):
        result = dbtRunner().invoke(
            [
                *args,
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
                "--quiet",
                "--no-use-colors",
            ]
        )
    if result.exception is not None:
        raise BuildError(f"dbt {' '.join(args)} could not run: {result.exception}")
    nodes = list(result.result or [])
    failures = [
        f"{r.node.resource_type} {r.node.name}: {r.status}: {(r.message or '').strip()}"
        for r in nodes
        if str(r.status) in {"error", "fail", "runtime error"}
    ]
    if failures or not result.success:
        raise BuildError(
            f"dbt {' '.join(args)} failed:\n  " + "\n  ".join(failures or ["(see dbt logs)"])
        )
    return nodes


def _ensure_segment_tables(home: SafarHome) -> None:
    """Create the (empty) segment membership tables, so segments over them can be previewed
    before the first evaluation; the evaluator owns their rows."""
    from safar.segments.membership import ensure_tables
    from safar.warehouse import connect

    con = connect(home)
    try:
        ensure_tables(con)
    finally:
        con.close()


def build(
    home: SafarHome,
    *,
    full_refresh: bool = False,
    select: str | None = None,
    exclude: str | None = None,
    dbt_vars: str | None = None,
    test: bool = True,
) -> BuildResult:
    """Build (and by default test) every dbt model over the landing zone of ``home``."""
    started = time.perf_counter()
    home.ensure()
    args = ["build" if test else "run"]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", select]
    if exclude:
        args += ["--exclude", exclude]
    if dbt_vars:
        args += ["--vars", dbt_vars]
    with warehouse_writer(home, purpose=f"dbt {' '.join(args)}"):
        quarantined = quarantine_corrupt(home)
        prepare_catalog(home)
        nodes = run_dbt(home, args)
        _ensure_segment_tables(home)
    return BuildResult(
        seconds=time.perf_counter() - started,
        nodes=len(nodes),
        quarantined=quarantined,
        models=[r.node.name for r in nodes if r.node.resource_type == "model"],
    )
