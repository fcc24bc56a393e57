"""``make bench``: time the foundation on 10M events against hand-written DuckDB baselines.

Every figure comes from this one run on this machine, so the ratios compare like with like:

- ``generate``: ``safar generate`` throughput on a fresh 1M-event lake (the 10M lake is cached
  in ``bench/cache`` so later runs do not pay for it; its own generation time is kept too);
- ``full_build``: ``safar build --full-refresh`` (models and tests) over the 10M events;
- ``incremental_build``: ``safar build`` after one more minute of events lands;
- baselines: a full scan of the landing zone and a per-user profile aggregation written by
  hand in DuckDB over the same Parquet files.

Results go to ``bench/results/<name>.json`` (default name: ``foundation``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import time
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from safar.build import build
from safar.config import SafarHome
from safar.generate import generate, users_for_events
from safar.lake import LakeWriter, WriteResult, landing_files

BENCH_DIR = Path(__file__).resolve().parent
END = date(2026, 1, 31)
DAYS = 90
SEED = 2026


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - started, value


def _raw_glob(home: SafarHome) -> str:
    return f"{home.raw_events}/date=*/part-*.parquet"


def _read_raw(home: SafarHome) -> str:
    """The landing zone as the raw contract's columns (no hive ``date`` column)."""
    return f"read_parquet('{_raw_glob(home)}', hive_partitioning = false)"


def cached_lake(target_events: int) -> tuple[SafarHome, dict]:
    """The cached 10M-event lake, generated on first use; returns it and how it was made."""
    home = SafarHome(BENCH_DIR / "cache" / f"lake_{target_events}").ensure()
    meta_path = home.root / "bench_meta.json"
    if meta_path.exists():
        return home, json.loads(meta_path.read_text())
    shutil.rmtree(home.root)
    home.ensure()
    users = users_for_events(target_events, DAYS)
    seconds, stats = _timed(generate, home, users=users, days=DAYS, seed=SEED, end=END)
    meta = {"users": users, "days": DAYS, "events": stats.events, "generate_seconds": seconds}
    meta_path.write_text(json.dumps(meta))
    return home, meta


def land_one_minute(home: SafarHome) -> WriteResult:
    """Land one more minute of traffic: the busiest minute of the last day, re-sent as new.

    The last day is taken by event time: by received time it would hold only the stragglers
    that arrive after the data ends (late app events).
    """
    con = duckdb.connect()
    try:
        last_received, last_event = con.sql(
            f"select max(received_at), max(timestamp) from {_read_raw(home)}"
        ).fetchone()
        batch = con.sql(
            f"""
            with last_day as (
              select * from {_read_raw(home)}
              where timestamp >= ?::timestamp - interval 1 day
            ),
            busiest as (
              select date_trunc('minute', received_at) as minute from last_day
              group by 1 order by count(*) desc limit 1
            )
            select last_day.* replace (
              message_id || '-rerun-' || epoch_ms(?::timestamp) as message_id,
              received_at + (?::timestamp - minute) + interval 1 minute as received_at,
              timestamp + (?::timestamp - minute) + interval 1 minute as timestamp
            )
            from last_day join busiest on date_trunc('minute', received_at) = busiest.minute
            """,
            params=[last_event, last_received, last_received, last_received],
        ).arrow()
    finally:
        con.close()
    table = batch.read_all() if hasattr(batch, "read_all") else batch
    return LakeWriter(home).write(pa.table(table))


def baselines(home: SafarHome) -> dict[str, float]:
    """Hand-written DuckDB over the raw Parquet: the floor the warehouse build is compared to."""
    raw = _read_raw(home)
    con = duckdb.connect()
    try:
        scan, _ = _timed(
            lambda: con.sql(
                f"select count(*), count(distinct message_id), max(received_at) from {raw}"
            ).fetchall()
        )
        profiles, _ = _timed(
            lambda: con.sql(
                f"""
                select coalesce(user_id, anonymous_id) as distinct_id,
                       min(timestamp), max(timestamp), count(*),
                       count(*) filter (where event = 'Order Completed') as orders,
                       sum(try_cast(json_extract_string(properties, '$.revenue') as double))
                         filter (where event = 'Order Completed') as revenue,
                       arg_max(json_extract_string(traits, '$.email'), timestamp)
                         filter (where type = 'identify') as email
                from {raw}
                group by 1
                """
            ).fetchall()
        )
    finally:
        con.close()
    return {"full_scan_seconds": scan, "profile_aggregation_seconds": profiles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="foundation")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--sample-events", type=int, default=1_000_000)
    args = parser.parse_args()

    home, meta = cached_lake(args.events)
    events = meta["events"]

    sample = SafarHome(BENCH_DIR / "cache" / "generate_sample")
    shutil.rmtree(sample.root, ignore_errors=True)
    gen_seconds, gen_stats = _timed(
        generate,
        sample.ensure(),
        users=users_for_events(args.sample_events, DAYS),
        days=DAYS,
        seed=SEED,
        end=END,
        progress=False,
    )
    shutil.rmtree(sample.root, ignore_errors=True)

    full_seconds, full = _timed(build, home, full_refresh=True)
    batch = land_one_minute(home)
    incr_seconds, _ = _timed(build, home)
    # Keep the cached lake as it was, so every run measures the same data; the next run's full
    # refresh forgets the batch in the warehouse too.
    for path in batch.files:
        path.unlink()
    base = baselines(home)

    result = {
        "name": args.name,
        "at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
        },
        "data": {
            "events": events,
            "users": meta["users"],
            "days": meta["days"],
            "landing_files": len(landing_files(home)),
            "one_minute_batch_events": batch.accepted,
        },
        "seconds": {
            "generate_sample": gen_seconds,
            "generate_cached_lake": meta["generate_seconds"],
            "full_build": full_seconds,
            "incremental_build_one_minute": incr_seconds,
            **base,
        },
        "rates": {
            "generate_events_per_second": gen_stats.events / gen_seconds,
            "full_build_events_per_second": events / full_seconds,
        },
        "ratios": {
            "full_build_vs_full_scan": full_seconds / base["full_scan_seconds"],
            "full_build_vs_profile_aggregation": full_seconds / base["profile_aggregation_seconds"],
            "incremental_vs_full_build": incr_seconds / full_seconds,
            "incremental_vs_profile_aggregation": incr_seconds
            / base["profile_aggregation_seconds"],
        },
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "dbt_nodes": full.nodes,
    }
    out = BENCH_DIR / "results" / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
