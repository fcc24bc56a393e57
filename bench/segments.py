"""``make bench``: segment preview on 1M users, and event → ``Segment Entered`` latency.

**Preview** (goal: ≤ 2 s on 1M users). A lake of 1,000,000 simulated users over 7 days is
generated and built once (cached under ``bench/cache/segments_1m``). Each demo segment in
``segments_sql/`` plus two builder segments is previewed — count and a 10-person sample,
through the sandbox (sqlglot checks, clock pinning, locked connection) — and the same answer
is computed by a hand-written query on a plain read-only connection. Both answers must agree.

**Latency** (goal: p95 ≤ 10 s on 2 cores). On a small built demo home, events are sent to the
real gateway, one new person at a time, each doing an event that puts them in a segment; the
latency is the time from sending the event to its ``Segment Entered`` event landing. Two
pipelines run in turn on the same events:

- ``dagster``: the production path — the Dagster daemon's ingest sensor refreshes small
  batches in place (the live lane: event models and their segments, then profile models);
- ``baseline``: a hand-written loop in one process that polls the landing zone every quarter
  second and runs the same two refresh stages (``safar.micro_batch``) — no orchestration.

Results go to ``bench/results/segments.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

from safar.build import build  # noqa: E402
from safar.config import SafarHome  # noqa: E402
from safar.demo import free_port, gateway_command, wait_for_http  # noqa: E402
from safar.segments.definitions import SegmentDefinition, load_file_segments  # noqa: E402

PREVIEW_USERS = 1_000_000
PREVIEW_DAYS = 7
PREVIEW_END = date(2026, 1, 31)
PREVIEW_AS_OF = datetime(2026, 1, 31, 23, 59, 59)

BUILDER_SEGMENTS = [
    SegmentDefinition(
        slug="irancell-repeat-30d",
        name="Irancell and 2+ orders in 30 days",
        kind="builder",
        condition={
            "all": [
                {"attribute": {"name": "carrier", "op": "eq", "value": "Irancell"}},
                {
                    "behaviour": {
                        "event": "Order Completed",
                        "did": True,
                        "count": {"op": "gte", "value": 2},
                        "time": {"last_days": 30},
                    }
                },
            ]
        },
    ),
    SegmentDefinition(
        slug="android-sms",
        name="Android app users reachable by SMS",
        kind="builder",
        condition={
            "all": [
                {"technology": {"name": "platform", "op": "eq", "value": "android"}},
                {"reachable": "sms"},
            ]
        },
    ),
]


# --- preview -------------------------------------------------------------------------------


def preview_home() -> SafarHome:
    """The cached 1M-user lake, generated and built on first use."""
    from safar.generate import generate

    home = SafarHome(BENCH_DIR / "cache" / "segments_1m").ensure()
    marker = home.root / "bench_meta.json"
    if marker.exists() and home.catalog.exists():
        return home
    if not any(home.raw_events.glob("date=*/part-*.parquet")):
        generate(home, users=PREVIEW_USERS, days=PREVIEW_DAYS, seed=7, end=PREVIEW_END)
    build(home, test=False)
    marker.write_text(json.dumps({"users": PREVIEW_USERS, "days": PREVIEW_DAYS}))
    return home


def _definitions() -> list[SegmentDefinition]:
    return [*load_file_segments(ROOT / "segments_sql"), *BUILDER_SEGMENTS]


def _engine_preview(home: SafarHome, definition: SegmentDefinition) -> tuple[int, list[str]]:
    from safar.segments.preview import preview

    result = preview(home, definition, as_of=PREVIEW_AS_OF, sample=10)
    return result.size, [p["person_id"] for p in result.sample]


def _baseline_preview(home: SafarHome, definition: SegmentDefinition) -> tuple[int, list[str]]:
    """The same question by hand: the segment's SQL with the time written in, count + sample."""
    from safar.segments.builder import compile_condition, parse_condition
    from safar.warehouse import connect

    if definition.kind == "builder":
        sql = compile_condition(parse_condition(definition.condition), now=PREVIEW_AS_OF).sql(
            "duckdb"
        )
    else:
        stamp = f"timestamp '{PREVIEW_AS_OF.isoformat(sep=' ')}'"
        sql = (definition.sql or "").replace("now()", stamp)
    con = connect(home, read_only=True)
    try:
        con.execute(f"create temp table members as select distinct user_id from ({sql}) s")
        (size,) = con.execute("select count(*) from members where user_id is not null").fetchone()
        sample = con.execute(
            """select u.person_id from members m join dim_users u on u.person_id = m.user_id
            order by hash(m.user_id), u.person_id limit 10"""
        ).fetchall()
    finally:
        con.close()
    return size, [r[0] for r in sample]


def _measure_preview(slug: str, impl: str, repeat: int) -> None:
    """Child process: preview one segment ``repeat`` times; print JSON."""
    home = preview_home()
    definition = next(d for d in _definitions() if d.slug == slug)
    run = _engine_preview if impl == "engine" else _baseline_preview
    times, answer = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        answer = run(home, definition)
        times.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": min(times), "all": times, "peak_rss_mib": peak, "answer": answer}))


def bench_preview(repeat: int) -> dict[str, Any]:
    home = preview_home()
    from safar.warehouse import connect

    con = connect(home, read_only=True)
    try:
        (users,) = con.execute("select count(*) from dim_users").fetchone()
        (events,) = con.execute("select count(*) from fct_events").fetchone()
    finally:
        con.close()
    cases = {}
    for definition in _definitions():
        runs = {}
        for impl in ("baseline", "engine"):
            command = [sys.executable, __file__, "--measure-preview", definition.slug, impl]
            command += ["--repeat", str(repeat)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            runs[impl] = json.loads(done.stdout.strip().splitlines()[-1])
        engine, baseline = runs["engine"], runs["baseline"]
        cases[definition.slug] = {
            "size": engine["answer"][0],
            "engine_seconds": engine["seconds"],
            "baseline_seconds": baseline["seconds"],
            "time_ratio": engine["seconds"] / baseline["seconds"],
            "engine_peak_rss_mib": engine["peak_rss_mib"],
            "baseline_peak_rss_mib": baseline["peak_rss_mib"],
            "memory_ratio": engine["peak_rss_mib"] / baseline["peak_rss_mib"],
            "same_answer": engine["answer"] == baseline["answer"],
            "within_goal": engine["seconds"] <= 2.0,
        }
        print("preview", definition.slug, json.dumps(cases[definition.slug]), flush=True)
    return {"users": users, "events": events, "goal_seconds": 2.0, "cases": cases}


# --- latency -------------------------------------------------------------------------------

PING = "Bench Ping"
PING_SEGMENT_SQL = f"""select distinct person_id as user_id from fct_events
where event_name = '{PING}'
"""


def _send(url: str, write_key: str, user: str) -> float:
    body = json.dumps(
        {
            "batch": [
                {
                    "type": "track",
                    "event": PING,
                    "userId": user,
                    "messageId": f"ping-{user}",
                    "timestamp": datetime.now(UTC).isoformat(),
                }
            ],
            "writeKey": write_key,
        }
    ).encode()
    request = urllib.request.Request(
        f"{url}/v1/batch", data=body, headers={"Content-Type": "application/json"}
    )
    sent = time.time()
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    return sent


def _entered_at(home: SafarHome) -> dict[str, float]:
    """When each person's Segment Entered event landed (the landing file's mtime)."""
    import pyarrow.parquet as pq

    seen: dict[str, float] = {}
    for path in home.raw_events.glob("date=*/part-*.parquet"):
        table = pq.read_table(path, columns=["event", "user_id", "source_id"])
        rows = table.to_pylist()
        if any(r["source_id"] == "safar-segments" for r in rows):
            landed = path.stat().st_mtime
            for r in rows:
                if r["event"] == "Segment Entered" and r["user_id"]:
                    seen.setdefault(r["user_id"], landed)
    return seen


def _baseline_loop(home_root: str, stop_file: str) -> None:
    """Child process: the same two refresh stages in a hand-written polling loop, no Dagster."""
    from safar.lake import file_id_of, landing_files
    from safar.micro_batch import refresh_events, refresh_profiles

    home = SafarHome(Path(home_root))
    last = max((file_id_of(p) for p in landing_files(home)), default="")
    profiles_owed = False
    while not Path(stop_file).exists():
        files = landing_files(home, after_id=last)
        if files:
            last = file_id_of(files[-1])
            refresh_events(home, batch_id=f"loop:{last}")
            profiles_owed = True
        elif profiles_owed:
            refresh_profiles(home, batch_id=f"loop:{last}")
            profiles_owed = False
        else:
            time.sleep(0.25)


def _run_latency(home: SafarHome, pipeline: str, people: int, gap: float, env: dict) -> dict:
    gw_port = free_port(0)
    procs: list[subprocess.Popen] = []
    logs = home.root / "logs"
    logs.mkdir(exist_ok=True)

    def start(name: str, command: list[str]) -> None:
        out = open(logs / f"{pipeline}-{name}.log", "ab")
        procs.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    from safar.appdb import open_app_db
    from safar.appdb.sources import add_source

    write_key = add_source(open_app_db(home), f"bench-{pipeline}").write_key
    stop_file = home.root / f"stop-{pipeline}"
    start("gateway", gateway_command(home, gw_port))
    if pipeline == "dagster":
        start(
            "daemon",
            [
                str(Path(sys.executable).parent / "dagster-daemon"),
                "run",
                "-m",
                "dagster_project.definitions",
            ],
        )
    else:
        start("loop", [sys.executable, __file__, "--baseline-loop", str(home.root), str(stop_file)])
    url = f"http://127.0.0.1:{gw_port}"
    try:
        wait_for_http(f"{url}/health", procs[0])
        time.sleep(20 if pipeline == "dagster" else 2)  # the daemon's first sensor tick
        sent: dict[str, float] = {}
        for n in range(people):
            user = f"bench-{pipeline}-{n:04d}"
            sent[user] = _send(url, write_key, user)
            time.sleep(gap)
        deadline = time.time() + 180
        while time.time() < deadline:
            landed = _entered_at(home)
            if all(u in landed for u in sent):
                break
            time.sleep(1)
        landed = _entered_at(home)
    finally:
        stop_file.touch()
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    latencies = sorted(landed[u] - t for u, t in sent.items() if u in landed)
    missing = [u for u in sent if u not in landed]
    quantiles = (
        statistics.quantiles(latencies, n=20, method="inclusive")
        if len(latencies) >= 2
        else latencies
    )
    return {
        "people": people,
        "gap_seconds": gap,
        "entered": len(latencies),
        "missing": len(missing),
        "p50_seconds": statistics.median(latencies) if latencies else None,
        "p95_seconds": quantiles[-1] if latencies else None,
        "max_seconds": latencies[-1] if latencies else None,
    }


def bench_latency(people: int, gap: float) -> dict[str, Any]:
    from safar.generate import generate

    results = {}
    for pipeline in ("baseline", "dagster"):
        root = Path(tempfile.mkdtemp(prefix=f"safar-latency-{pipeline}-"))
        try:
            home = SafarHome(root / "home").ensure()
            generate(home, users=2000, days=30, seed=1, progress=False)
            build(home, test=False)
            segments = root / "segments"
            segments.mkdir()
            (segments / "pinged.sql").write_text(PING_SEGMENT_SQL)
            (segments / "pinged.yml").write_text("name: Pinged\nowner: bench\n")
            env = {
                **os.environ,
                "SAFAR_HOME": str(home.root),
                "SAFAR_SEGMENTS_DIR": str(segments),
                "DAGSTER_HOME": str(root / "dagster"),
            }
            from dagster_project.instance import prepare_dagster_home

            prepare_dagster_home(root / "dagster")
            # The first evaluation (the demo's existing data) is not part of the measurement.
            os.environ["SAFAR_SEGMENTS_DIR"] = str(segments)
            from safar.appdb import open_app_db
            from safar.segments.evaluate import evaluate_segments
            from safar.segments.registry import load_segments

            evaluate_segments(
                home,
                load_segments(open_app_db(home)),
                as_of=datetime.now(UTC),
                batch_id="bench:setup",
            )
            results[pipeline] = _run_latency(home, pipeline, people, gap, env)
            print("latency", pipeline, json.dumps(results[pipeline]), flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    dagster, baseline = results["dagster"], results["baseline"]
    if dagster["p95_seconds"] and baseline["p95_seconds"]:
        results["p95_ratio"] = dagster["p95_seconds"] / baseline["p95_seconds"]
    results["goal_p95_seconds"] = 10.0
    results["goal_met"] = bool(dagster["p95_seconds"]) and dagster["p95_seconds"] <= 10.0
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--people", type=int, default=30, help="latency: persons sent")
    parser.add_argument("--gap", type=float, default=3.0, help="latency: seconds between sends")
    parser.add_argument("--only", choices=["preview", "latency"])
    parser.add_argument("--measure-preview", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-loop", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_preview:
        _measure_preview(*args.measure_preview, args.repeat)
        return
    if args.baseline_loop:
        _baseline_loop(*args.baseline_loop)
        return
    out = BENCH_DIR / "results" / "segments.json"
    report: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"name": "segments"}
    report["at"] = datetime.now().astimezone().isoformat(timespec="seconds")
    if args.only in (None, "preview"):
        report["preview"] = bench_preview(args.repeat)
    if args.only in (None, "latency"):
        report["latency"] = bench_latency(args.people, args.gap)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
