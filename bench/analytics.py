"""``make bench``: the analytics engine on the 10M-event warehouse against hand-written DuckDB.

Three questions, each answered twice in the same run on the same warehouse — once by
``safar.analytics`` (spec → sqlglot → DuckDB) and once by a query written by hand for that
one question — and the answers are checked to be equal:

- ``funnel``: Product Viewed → Product Added → Checkout Started → Order Completed, ordered,
  7-day window, over the whole 90 days;
- ``retention``: weekly recurring retention of any event, 12 cohorts;
- ``rolling_mau``: monthly active users (trailing 30 days) for each day of January.

Each measurement runs in its own process so its peak RSS is its own; time is the best of
``--repeat`` runs in that process (the first one also warms the file cache). Results go to
``bench/results/analytics.json`` with engine / baseline ratios for time and memory.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from run import cached_lake

from safar.build import build
from safar.config import SafarHome

BENCH_DIR = Path(__file__).resolve().parent
STEPS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
BEHAVIOURAL = "type in ('track', 'page', 'screen')"

FUNNEL_SPEC = {
    "steps": [{"event": name} for name in STEPS],
    "window": {"value": 7, "unit": "day"},
    "from": "2025-11-02",
    "to": "2026-01-31",
}
RETENTION_SPEC = {
    "target": {"event": None},
    "returning": {"event": None},
    "period": "week",
    "intervals": 12,
    "to": "2026-01-31",
}
MAU_SPEC = {
    "series": [{"event": None, "math": "mau"}],
    "interval": "day",
    "from": "2026-01-01",
    "to": "2026-01-31",
}

# The same ordered-funnel rules as the engine, written by hand for four distinct step
# events: each step-1 row's chain is built backwards with one window pass per step.
FUNNEL_SQL = f"""
with steps as (
    select person_id, occurred_at as t, message_id as seq,
           list_position($steps, event_name) - 1 as s
    from fct_events
    where {BEHAVIOURAL} and event_name in $steps
      and occurred_at between timestamp '2025-11-02' and timestamp '2026-01-31 23:59:59.999999'
),
numbered as (
    select *, row_number() over (partition by person_id order by t, s, seq) as idx from steps
),
l3 as (select *, case when s = 3 then t end as c3 from numbered),
l2 as (
    select *, case when s = 2 then {{'t2': t, 't3': first_value(c3 ignore nulls) over w}} end as c2
    from l3 window w as (partition by person_id order by idx
                         rows between 1 following and unbounded following)
),
l1 as (
    select *, case when s = 1 then {{'t1': t, 't2': n2.t2, 't3': n2.t3}} end as c1
    from (select *, first_value(c2 ignore nulls) over w as n2 from l2
          window w as (partition by person_id order by idx
                       rows between 1 following and unbounded following))
),
l0 as (
    select person_id, t as t0, n1.t1, n1.t2, n1.t3
    from (select *, first_value(c1 ignore nulls) over w as n1 from l1
          window w as (partition by person_id order by idx
                       rows between 1 following and unbounded following))
    where s = 0
),
cut as (
    select person_id, t0,
           case when t1 <= t0 + interval 7 day then t1 end as t1,
           case when t2 <= t0 + interval 7 day then t2 end as t2,
           case when t3 <= t0 + interval 7 day then t3 end as t3
    from l0
),
reached as (
    select *, 1 + (t1 is not null)::int + (t2 is not null)::int + (t3 is not null)::int as reach
    from cut
),
best as (
    select * from reached
    qualify row_number() over (
        partition by person_id
        order by reach desc, [t0, t1, t2, t3][reach] asc, t0 desc
    ) = 1
)
select count(*),
       count(*) filter (reach > 1), avg(epoch(t1) - epoch(t0)), median(epoch(t1) - epoch(t0)),
       count(*) filter (reach > 2), avg(epoch(t2) - epoch(t1)), median(epoch(t2) - epoch(t1)),
       count(*) filter (reach > 3), avg(epoch(t3) - epoch(t2)), median(epoch(t3) - epoch(t2))
from best
"""

RETENTION_SQL = f"""
with active as (
    select distinct person_id,
           date_trunc('week', occurred_at + interval 1 day) - interval 1 day as week
    from fct_events
    where {BEHAVIOURAL}
      and occurred_at >= timestamp '2025-11-09' and occurred_at < timestamp '2026-02-01'
)
select c.week, datediff('week', c.week, r.week) as offset_weeks, count(*)
from active c join active r on r.person_id = c.person_id and r.week >= c.week
group by all order by all
"""

MAU_SQL = f"""
with days as (
    select distinct person_id, occurred_at::date as day
    from fct_events
    where {BEHAVIOURAL}
      and occurred_at >= date '2026-01-01' - interval 29 day
      and occurred_at < date '2026-02-01'
)
select d.day, count(distinct a.person_id)
from (select unnest(range(date '2026-01-01', date '2026-02-01', interval 1 day))::date as day) d
join days a on a.day between d.day - 29 and d.day
group by d.day order by d.day
"""


def _engine(case: str, home: SafarHome) -> Any:
    from safar.analytics.source import connect_warehouse

    con = connect_warehouse(home)
    try:
        if case == "funnel":
            from safar.analytics.funnel import run_funnel
            from safar.analytics.spec import parse_funnel_spec

            steps = run_funnel(con, parse_funnel_spec(FUNNEL_SPEC))["steps"]
            return [
                [s["count"], s["average_conversion_seconds"], s["median_conversion_seconds"]]
                for s in steps
            ]
        if case == "retention":
            from safar.analytics.retention import run_retention
            from safar.analytics.retention_spec import parse_retention_spec

            cohorts = run_retention(con, parse_retention_spec(RETENTION_SPEC))["cohorts"]
            return [c["values"] for c in cohorts]
        from safar.analytics.trends import run_trends
        from safar.analytics.trends_spec import parse_trends_spec

        series = run_trends(con, parse_trends_spec(MAU_SPEC))["series"][0]
        return [int(v) for v in series["values"]]
    finally:
        con.close()


def _baseline(case: str, home: SafarHome) -> Any:
    from safar.warehouse import connect

    con = connect(home, read_only=True)
    try:
        if case == "funnel":
            row = con.sql(FUNNEL_SQL, params={"steps": STEPS}).fetchone()
            steps = [[row[0], None, None]]
            steps += [list(row[k : k + 3]) for k in (1, 4, 7)]
            return steps
        if case == "retention":
            cells: dict[tuple[int, int], int] = {}
            weeks: list = []
            for week, offset, count in con.sql(RETENTION_SQL).fetchall():
                if week not in weeks:
                    weeks.append(week)
                cells[(weeks.index(week), offset)] = count
            return [[cells.get((r, c), 0) for c in range(12 - r)] for r in range(12)]
        return [count for _, count in con.sql(MAU_SQL).fetchall()]
    finally:
        con.close()


def _measure(case: str, impl: str, home: SafarHome, repeat: int) -> None:
    """Child process: run one implementation ``repeat`` times, print JSON to stdout."""
    run = _engine if impl == "engine" else _baseline
    times, answer = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        answer = run(case, home)
        times.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"seconds": min(times), "all_seconds": times, "peak_rss_mib": peak}
    print(json.dumps({**report, "answer": answer}))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", nargs="*", default=["funnel", "retention", "rolling_mau"])
    parser.add_argument("--measure", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    home, meta = cached_lake(args.events)
    if args.measure:
        _measure(*args.measure, home, args.repeat)
        return
    if not home.catalog.exists():
        build(home, full_refresh=True)

    results: dict[str, Any] = {}
    for case in args.cases:
        runs = {}
        for impl in ("baseline", "engine"):
            command = [sys.executable, __file__, "--events", str(args.events)]
            command += ["--repeat", str(args.repeat), "--measure", case, impl]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            runs[impl] = json.loads(done.stdout)
        engine, baseline = runs["engine"], runs["baseline"]
        results[case] = {
            "engine_seconds": engine["seconds"],
            "baseline_seconds": baseline["seconds"],
            "engine_peak_rss_mib": engine["peak_rss_mib"],
            "baseline_peak_rss_mib": baseline["peak_rss_mib"],
            "time_ratio": engine["seconds"] / baseline["seconds"],
            "memory_ratio": engine["peak_rss_mib"] / baseline["peak_rss_mib"],
            "same_answer": _same(engine["answer"], baseline["answer"]),
            "answer": engine["answer"],
        }
        if not results[case]["same_answer"]:
            results[case]["baseline_answer"] = baseline["answer"]
        print(case, json.dumps({k: v for k, v in results[case].items() if "answer" not in k}))

    out = BENCH_DIR / "results" / "analytics.json"
    report = {
        "name": "analytics",
        "at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "data": {"events": meta["events"], "users": meta["users"], "days": meta["days"]},
        "repeat": args.repeat,
        "goal": "engine <= 1.5x the hand-written query in time and in peak memory",
        "cases": results,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
