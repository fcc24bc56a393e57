"""Every model of docs/warehouse.md on the generated demo shop: present, filled, consistent.

Uses the suite's shared ``demo_home`` (tests/conftest.py: 2,000 users over 30 days, built
once per session), so the build cost is paid once for all packages' tests.
"""

from __future__ import annotations

import re

import pytest
from warehouse_helpers import MARTS, query

from safar.config import PROJECT_ROOT


def documented_columns() -> dict[str, list[str]]:
    """Model -> key columns, read from the marts table of docs/warehouse.md."""
    text = (PROJECT_ROOT / "docs" / "warehouse.md").read_text()
    marts = text.split("## Marts", 1)[1].split("\n## ", 1)[0]
    columns = {}
    for line in marts.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        spec = cells[2]
        while re.search(r"\([^()]*\)", spec):  # drop parenthesised notes, nested ones too
            spec = re.sub(r"\([^()]*\)", "", spec)
        names = [item.strip() for item in spec.split(",")]
        columns[cells[0].strip("`")] = [n for n in names if re.fullmatch(r"[a-z_]+", n)]
    return columns


def test_the_doc_lists_exactly_the_marts_we_check():
    assert set(documented_columns()) == set(MARTS)


@pytest.mark.parametrize("model", sorted(MARTS))
def test_mart_has_rows_and_the_documented_columns(demo_home, model):
    assert query(demo_home, f"select count(*) from {model}")[0][0] > 0
    actual = {
        r[0]
        for r in query(
            demo_home,
            "select column_name from information_schema.columns "
            f"where table_catalog = 'lake' and table_name = '{model}'",
        )
    }
    assert set(documented_columns()[model]) <= actual


@pytest.mark.parametrize("model,key", sorted(MARTS.items()))
def test_mart_grain_is_unique(demo_home, model, key):
    columns = ", ".join(key)
    duplicates = query(
        demo_home,
        f"select count(*) from (select {columns} from {model} group by all having count(*) > 1)",
    )
    assert duplicates == [(0,)]


INVARIANTS = {
    "every raw message is one event": """
        select (select count(*) from fct_events) = (select count(*) from stg_safar__events)
    """,
    "every event belongs to a person in dim_users": """
        select count(*) = 0 from fct_events left join dim_users using (person_id)
        where dim_users.person_id is null
    """,
    "known and unknown people both exist": """
        select count(distinct is_known) = 2 from dim_users
    """,
    "mau >= wau >= dau": """
        select bool_and(mau >= wau and wau >= dau and dau > 0) from fct_active_users_daily
    """,
    "active users split into known and unknown": """
        select bool_and(dau = dau_known + dau_unknown and wau = wau_known + wau_unknown
                        and mau = mau_known + mau_unknown)
        from fct_active_users_daily
    """,
    "week 0 retention is 1 and rates stay in 0..1": """
        select bool_and(case when week_number = 0 then retention_rate = 1
                             else retention_rate between 0 and 1 end)
        from fct_retention_weekly
    """,
    "reachable users never exceed known users": """
        select bool_and(reachable_users <= total_users
                        and total_users = (select count(*) from dim_users where is_known))
        from rpt_channel_reachability
    """,
    "reachability covers four channels": """
        select count(*) = 4 from rpt_channel_reachability
    """,
    "attribute history has changes and one current row per attribute": """
        select max(intervals) > 1 and max(current_rows) = 1 and min(current_rows) = 1
        from (select count(*) as intervals, count(*) filter (where is_current) as current_rows
              from dim_user_attribute_history group by person_id, attribute)
    """,
    "sessions add up to the sessionized events": """
        select (select sum(event_count) from fct_sessions)
             = (select count(*) from fct_events where session_id is not null)
    """,
    "devices have every push token state": """
        select count(distinct push_token_state) = 3 from dim_devices
    """,
    "installs are counted per app platform": """
        select sum(installs) > 0 and count(distinct platform) = 2 from fct_installs_daily
    """,
    "revenue is exact decimal money": """
        select bool_and(kind like 'DECIMAL%') and sum(total) > 0
        from (select typeof(revenue) as kind, revenue as total from dim_users)
    """,
}


@pytest.mark.parametrize("name", sorted(INVARIANTS))
def test_invariant_holds(demo_home, name):
    assert query(demo_home, INVARIANTS[name]) == [(True,)], name
