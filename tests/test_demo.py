"""``safar demo``: builds once, reuses on the second run, serves Streamlit and Dagster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from safar.appdb import open_app_db
from safar.config import SafarHome
from safar.delivery import outbox
from safar.delivery.local_sinks import received
from safar.demo import run_demo
from safar.lake import landing_files


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> SafarHome:
    home = SafarHome(tmp_path_factory.mktemp("demo"))
    assert run_demo(home, users=200, days=7, seed=3, serve_apps=False) == 0
    return home


def test_second_run_reuses_data_and_warehouse(
    small_demo: SafarHome, capsys: pytest.CaptureFixture[str]
) -> None:
    files_before = landing_files(small_demo)
    catalog_mtime = small_demo.catalog.stat().st_mtime_ns

    assert run_demo(small_demo, users=200, days=7, seed=3, serve_apps=False) == 0

    out = capsys.readouterr().out
    assert "reusing" in out and "warehouse is up to date" in out
    assert landing_files(small_demo) == files_before
    assert small_demo.catalog.stat().st_mtime_ns == catalog_mtime


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def test_demo_serves_streamlit_and_dagster_until_stopped(small_demo: SafarHome) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "safar.cli", "--home", str(small_demo.root), "demo"],
        env={**os.environ, "DAGSTER_HOME": str(small_demo.root / "dagster")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    urls: dict[str, str] = {}
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        write_key = ""
        while len(urls) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.match(r"(Streamlit|Dagster|Gateway)\b.*(http://127\.0\.0\.1:\d+)", line)
            if match:
                urls[match.group(1)] = match.group(2)
                key = re.search(r"write key (\S+);", line)
                if key:
                    write_key = key.group(1)
        assert set(urls) == {"Streamlit", "Dagster", "Gateway"}, "".join(lines)

        assert _get(urls["Streamlit"] + "/_stcore/health") == b"ok"
        assert b"<title>" in _get(urls["Streamlit"])
        info = json.loads(_get(urls["Dagster"] + "/server_info"))
        assert "dagster_version" in info
        # The gateway takes events with the key the demo printed.
        sent = urllib.request.Request(
            urls["Gateway"] + "/v1/track",
            data=json.dumps(
                {"userId": "u-demo", "event": "Demo Tried", "writeKey": write_key}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(sent, timeout=10) as resp:
            assert json.loads(resp.read())["success"] is True
        # The instance limits warehouse writers to one run at a time.
        assert "default_limit: 1" in (small_demo.root / "dagster" / "dagster.yaml").read_text()
        # The welcome campaign went to the local sinks, each delivery once, before the URLs.
        delivery = next(line for line in lines if line.startswith("Delivery (demo):"))
        sent = int(re.search(r"sent ([\d,]+);", delivery).group(1).replace(",", ""))
        got = received(small_demo)
        assert sent > 0 and got, delivery
        keys = [r.idempotency_key for r in got]
        assert len(keys) == len(set(keys))
        counts = outbox.counts(open_app_db(small_demo))
        assert counts.get("sent", 0) + counts.get("delivered", 0) == sent, counts
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, "".join(lines) + proc.stdout.read()
    for url in urls.values():
        with pytest.raises(OSError):
            _get(url)


def test_cli_reports_bad_arguments_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "safar.cli", "generate", "--users", "0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "must be greater than 0, got 0" in result.stderr


def test_sql_without_a_warehouse_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "safar.cli", "--home", str(tmp_path), "sql", "select 1"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "run `safar build` first" in result.stderr


def test_sql_error_names_the_problem_without_a_traceback(small_demo: SafarHome) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "safar.cli", "--home", str(small_demo.root), "sql", "selec 1"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Parser Error" in result.stderr and "LINE 1: selec 1" in result.stderr
    assert "Traceback" not in result.stderr
