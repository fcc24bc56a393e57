"""While ``safar build`` rewrites the warehouse, another process reads consistent snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from safar.build import build
from safar.config import SafarHome
from safar.generate import generate
from safar.warehouse import connect

MARTS = ("dim_users", "fct_events", "fct_active_users_daily", "rpt_channel_reachability")


def _counts(home: SafarHome) -> dict[str, int]:
    con = connect(home, read_only=True)
    try:
        return {m: con.sql(f"select count(*) from {m}").fetchone()[0] for m in MARTS}
    finally:
        con.close()


def test_readers_see_whole_snapshots_while_a_full_refresh_runs(tmp_path: Path) -> None:
    home = SafarHome(tmp_path).ensure()
    generate(home, users=300, days=14, seed=7, end=date(2026, 1, 31), progress=False)
    build(home, test=False)
    expected = _counts(home)
    assert all(expected.values()), expected

    writer = subprocess.Popen(
        [sys.executable, "-m", "safar.cli", "--home", str(home.root), "build", "--full-refresh"],
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reads, errors = 0, []
    try:
        while writer.poll() is None:
            try:
                got = _counts(home)
            except Exception as exc:  # every failure is a finding: collect, report below
                errors.append(repr(exc))
                continue
            reads += 1
            # Same events rebuilt: any other count is a half-written table.
            assert got == expected, f"read {reads} saw {got}, expected {expected}"
            time.sleep(0.05)
        output = writer.stdout.read()
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, output
    assert errors == [], errors[:3]
    assert reads >= 5, f"only {reads} reads happened during the build"
