"""Stickiness compiled to DuckDB SQL: how many people were active in exactly k periods.

A person is active in a period of the range when they did a matching event (the spec's event,
None for any behavioural event, passing its ``where``) at a wall time in it. For k = 1 .. the
number of periods in the range, the value is how many people were active in exactly k of them,
as PostHog's stickiness insight counts. People never active in range are not counted.
"""

from __future__ import annotations

from typing import Any

import duckdb

from safar.analytics.trends import PERIODS_CTE, fill_template, matched_events, period_values
from safar.analytics.trends_spec import StickinessSpec

_STICKINESS = """
with
{periods},
matched as (:matched),
active_periods as (
    select person_id, count(distinct :period_of_event) as active_count
    from matched
    where local_at >= :first_period and local_at < :range_end
    group by person_id
),
counts as (
    select active_count, count(*) as people
    from active_periods
    group by active_count
),
numbered as (
    select row_number() over (order by period_start) as active_count
    from periods
),
final as (
    select
        numbered.active_count,
        coalesce(counts.people, 0) as people
    from numbered
    left join counts
        on counts.active_count = numbered.active_count
)
select * from final order by active_count
"""


def compile_stickiness(spec: StickinessSpec) -> str:
    """The DuckDB SQL :func:`run_stickiness` runs: a row (k, people) per k in 1..periods."""
    values = period_values(spec.periods)
    matched = matched_events(
        spec.event,
        spec.where,
        spec.periods.timezone,
        since=values["first_period"].copy(),
        until=values["range_end"].copy(),
    )
    query = fill_template(_STICKINESS.format(periods=PERIODS_CTE), **values, matched=matched)
    return query.sql("duckdb", pretty=True)


def _label(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def run_stickiness(con: duckdb.DuckDBPyConnection, spec: StickinessSpec) -> dict[str, Any]:
    """Run a stickiness spec on a connection holding the analytics relations.

    Args:
        con: a connection from :mod:`safar.analytics.source`.
        spec: the parsed stickiness spec.

    Returns:
        ``{"series": [{"name", "intervals", "labels", "values", "total"}]}``: ``values[i]``
        people were active in exactly ``intervals[i]`` periods (labelled "2 days" etc.), and
        ``total`` people at all.
    """
    rows = con.execute(compile_stickiness(spec)).fetchall()
    unit = spec.periods.interval
    series = {
        "name": spec.event if spec.event is not None else "any event",
        "intervals": [k for k, _ in rows],
        "labels": [_label(k, unit) for k, _ in rows],
        "values": [people for _, people in rows],
        "total": sum(people for _, people in rows),
    }
    return {"series": [series]}
