"""``make bench`` (gateway part): durable ingest throughput against DuckDB's own conversion.

In one run on this machine:

- raw HTTP load from a second process (``bench/load_client.py``): batches of 100 events over
  keep-alive connections for a fixed time; events/s accepted (a 2xx means fsync'd), request
  p50/p99; then every accepted event is checked to be in the landing zone;
- the official ``segment-analytics-python`` client sending through the gateway;
- the baseline: DuckDB converting the same events from newline-delimited JSON to Parquet
  (``read_json`` → ``COPY … TO parquet``), which does no HTTP, no validation and no fsync.

Results go to ``bench/results/gateway.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

import duckdb
import orjson

from safar.appdb import open_app_db
from safar.appdb.sources import add_source
from safar.config import SafarHome

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from load_client import EVENT  # noqa: E402 - the same event the load client sends


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_gateway(home: SafarHome, port: int) -> subprocess.Popen:
    log = open(home.root / "gateway.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "safar.cli", "--home", str(home.root), "gateway"]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gateway did not start; see {home.root / 'gateway.log'}")


def _landed_events(home: SafarHome) -> int:
    files = list(home.raw_events.glob("date=*/part-*.parquet"))
    if not files:
        return 0
    return duckdb.sql(
        f"select count(*) from read_parquet('{home.raw_events}/date=*/part-*.parquet', "
        "hive_partitioning = false)"
    ).fetchone()[0]


def _wait_landed(home: SafarHome, expected: int, timeout: float = 120) -> float:
    started = time.monotonic()
    while _landed_events(home) < expected:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"only {_landed_events(home)} of {expected} events landed")
        time.sleep(0.2)
    return time.monotonic() - started


def raw_http(port: int, key: str, seconds: float, connections: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(BENCH_DIR / "load_client.py"), str(port), key, str(seconds)]
        + [str(connections)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def python_sdk(port: int, key: str, events: int) -> dict:
    """The official Segment Python client, in its own process, sending ``events`` tracks."""
    code = f"""
import time, segment.analytics as a
a.write_key = {key!r}; a.host = 'http://127.0.0.1:{port}'; a.max_queue_size = {events + 1}
props = {EVENT["properties"]!r}
t = time.perf_counter()
for i in range({events}):
    a.track(user_id='user-%d' % (i % 5000), event='Product Viewed', properties=props)
a.flush()
print(time.perf_counter() - t)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds = float(out.stdout.strip().splitlines()[-1])
    return {"events": events, "seconds": seconds, "events_per_second": events / seconds}


def duckdb_baseline(workdir: Path, events: int) -> dict:
    """DuckDB's JSON → Parquet conversion of the same events: the floor to compare with."""
    source = workdir / "events.ndjson"
    with open(source, "wb") as fh:
        for _ in range(events):
            fh.write(orjson.dumps(dict(EVENT, messageId=uuid.uuid4().hex)) + b"\n")
    target = workdir / "events.parquet"
    started = time.perf_counter()
    duckdb.sql(
        f"copy (select * from read_json('{source}', format = 'newline_delimited')) "
        f"to '{target}' (format parquet, compression zstd)"
    )
    seconds = time.perf_counter() - started
    return {"events": events, "seconds": seconds, "events_per_second": events / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--sdk-events", type=int, default=50_000)
    args = parser.parse_args()

    work = BENCH_DIR / "cache" / "gateway"
    shutil.rmtree(work, ignore_errors=True)
    home = SafarHome(work / "home").ensure()
    key = add_source(open_app_db(home), "bench").write_key
    port = _free_port()
    gateway = _start_gateway(home, port)
    try:
        raw = raw_http(port, key, args.seconds, args.connections)
        raw["seconds_until_all_landed"] = _wait_landed(home, raw["events_accepted"])
        sdk = python_sdk(port, key, args.sdk_events)
        _wait_landed(home, raw["events_accepted"] + args.sdk_events)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=60)
    baseline = duckdb_baseline(work, min(raw["events_accepted"], 1_000_000))

    result = {
        "name": "gateway",
        "at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "raw_http_batches_of_100": raw,
        "segment_python_sdk": sdk,
        "duckdb_json_to_parquet": baseline,
        "ratios": {
            "gateway_vs_duckdb_conversion": raw["events_per_second"]
            / baseline["events_per_second"],
            "python_sdk_vs_raw_http": sdk["events_per_second"] / raw["events_per_second"],
            "gateway_vs_rudderstack_1700_per_second": raw["events_per_second"] / 1700,
        },
    }
    out = BENCH_DIR / "results" / "gateway.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
