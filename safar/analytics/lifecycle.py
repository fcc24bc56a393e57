"""Lifecycle compiled to DuckDB SQL: who is new, returning, resurrecting or dormant per period.

A person is *active* in a period when they did a matching event (the spec's event, None for
any behavioural event, passing its ``where``) at a wall time in that period. For each period
P of the range, with P-1 the period before it:

- new: active in P, and P is the period of their first matching event ever (events before
  ``from`` are history: someone first seen earlier is never new in range);
- returning: active in P and in P-1;
- resurrecting: active in P, not in P-1, but in some period before;
- dormant: active in P-1 and not in P; reported as a negative count, as PostHog does.

Unlike PostHog, "new" is not the person's creation time (Safar's events carry none) but their
first matching event, so a lifecycle of ``purchase`` shows first-time buyers.
"""

from __future__ import annotations

from typing import Any

import duckdb

from safar.analytics.periods import iso_label
from safar.analytics.trends import PERIODS_CTE, fill_template, matched_events, period_values
from safar.analytics.trends_spec import LifecycleSpec

STATUSES = ("new", "returning", "resurrecting", "dormant")
"""In PostHog's order."""

_LIFECYCLE = """
with
{periods},
matched as (:matched),
activity as (
    select distinct person_id, :period_of_event as period_start
    from matched
    where local_at < :range_end
),
first_activity as (
    select person_id, min(period_start) as first_period
    from activity
    group by person_id
),
statuses as (
    select
        periods.period_start,
        active_now.person_id,
        case
            when first_activity.first_period = periods.period_start then 'new'
            when active_before.person_id is not null then 'returning'
            else 'resurrecting'
        end as status
    from periods
    inner join activity as active_now
        on active_now.period_start = periods.period_start
    inner join first_activity
        on first_activity.person_id = active_now.person_id
    left join activity as active_before
        on active_before.person_id = active_now.person_id
        and active_before.period_start = periods.period_start - :step
    union all
    select
        periods.period_start,
        active_before.person_id,
        'dormant' as status
    from periods
    inner join activity as active_before
        on active_before.period_start = periods.period_start - :step
    left join activity as active_now
        on active_now.person_id = active_before.person_id
        and active_now.period_start = periods.period_start
    where active_now.person_id is null
),
counts as (
    select period_start, status, count(*) as people
    from statuses
    group by period_start, status
),
final as (
    select
        listed.status,
        list(periods.period_start order by periods.period_start) as labels,
        list(
            case when listed.status = 'dormant' then -1 else 1 end * coalesce(counts.people, 0)
            order by periods.period_start
        ) as people
    from periods
    cross join (
        values ('new'), ('returning'), ('resurrecting'), ('dormant')
    ) as listed(status)
    left join counts
        on counts.period_start = periods.period_start
        and counts.status = listed.status
    group by listed.status
)
select * from final
"""


def compile_lifecycle(spec: LifecycleSpec) -> str:
    """The DuckDB SQL :func:`run_lifecycle` runs: a row per status with its per-period counts."""
    values = period_values(spec.periods)
    # No lower bound: a person's first matching event ever decides "new".
    matched = matched_events(
        spec.event, spec.where, spec.periods.timezone, until=values["range_end"].copy()
    )
    query = fill_template(_LIFECYCLE.format(periods=PERIODS_CTE), **values, matched=matched)
    return query.sql("duckdb", pretty=True)


def run_lifecycle(con: duckdb.DuckDBPyConnection, spec: LifecycleSpec) -> dict[str, Any]:
    """Run a lifecycle spec on a connection holding the analytics relations.

    Args:
        con: a connection from :mod:`safar.analytics.source`.
        spec: the parsed lifecycle spec.

    Returns:
        ``{"series": [{"status", "labels", "values", "total"}, ...]}`` for new, returning,
        resurrecting and dormant (its values negative); labels are the periods' starts as
        ISO 8601 wall times.
    """
    rows = {
        status: (labels, people)
        for status, labels, people in con.execute(compile_lifecycle(spec)).fetchall()
    }
    series = []
    for status in STATUSES:
        labels, people = rows[status]
        series.append(
            {
                "status": status,
                "labels": [iso_label(label, spec.periods.timezone) for label in labels],
                "values": people,
                "total": sum(people),
            }
        )
    return {"series": series}
