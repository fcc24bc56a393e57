"""The no-code segment builder: golden SQL and descriptions, member sets, bad trees.

(a) golden fixtures pin the SQL sqlglot builds and the plain-English description of every kind
of condition; the same SQL passes the segment sandbox and runs on the demo warehouse;
(b) on the demo warehouse, compiled conditions select exactly the people an independently
hand-written query selects; (c) bad trees raise BuilderError naming the field path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import FrozenInstanceError
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest
import yaml
from sqlglot import exp, parse_one

from safar.config import SafarHome
from safar.segments.builder import (
    ATTRIBUTES,
    BOOLEAN,
    NUMBER,
    TECHNOLOGY,
    TEXT,
    TIME,
    VERSION,
    BuilderError,
    compile_condition,
    describe,
    parse_condition,
)
from safar.segments.sandbox import load_catalog, validate
from safar.warehouse import connect

FIXTURES = Path(__file__).parent / "fixtures" / "builder"
CASES = sorted(FIXTURES.glob("*.json"))
NOW = datetime(2026, 1, 31, 23, 59)
KINDS = {"all", "any", "not", "attribute", "trait", "behaviour", "first_time", "last_time"}
KINDS |= {"technology", "reachable", "segment"}
DBT_PROJECT = Path(__file__).parents[2] / "dbt" / "dbt_project.yml"


def _case(path: Path) -> dict[str, Any]:
    case = json.loads(path.read_text())
    assert case["why"], "every fixture says which rule it pins"
    return case


def _kinds(condition: dict[str, Any], inside: str = "") -> set[str]:
    """The condition kinds a tree uses, and ``<group>/<group>`` for each nesting."""
    ((key, value),) = condition.items()
    found = {key} | ({f"{inside}/{key}"} if inside and key in ("all", "any", "not") else set())
    children = value if key in ("all", "any") else [value] if key == "not" else []
    for child in children:
        found |= _kinds(child, key)
    return found


def _compile(condition: dict[str, Any], timezone: str = "UTC", now: datetime = NOW) -> str:
    return compile_condition(parse_condition(condition), now=now, timezone=timezone).sql("duckdb")


# --- (a) golden fixtures -------------------------------------------------------------------------


def test_fixtures_cover_every_kind_and_nesting() -> None:
    assert len(CASES) >= 20
    used = set().union(*(_kinds(_case(path)["condition"]) for path in CASES))
    assert KINDS <= used
    assert {"all/any", "not/all", "not/any", "any/all", "not/not", "all/not"} <= used


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden_fixture(path: Path) -> None:
    case = _case(path)
    cond = parse_condition(case["condition"])
    query = compile_condition(cond, now=NOW, timezone=case.get("timezone", "UTC"))
    assert query.sql("duckdb", pretty=True) == case["sql"]
    assert describe(cond) == case["description"]


@pytest.fixture(scope="module")
def warehouse(demo_home: SafarHome) -> Iterator[duckdb.DuckDBPyConnection]:
    """The demo warehouse, read-only, with a temporary ``segment_membership``.

    repeat-buyers: people with 3+ orders are current members; people with exactly 2 left it.
    """
    con = connect(demo_home, read_only=True)
    con.execute(
        "create temp table segment_membership"
        " (segment_id varchar, person_id varchar, entered_at timestamp, exited_at timestamp)"
    )
    con.execute(
        """
        insert into segment_membership
        select 'repeat-buyers', person_id, timestamp '2026-01-10',
               case when order_count = 2 then timestamp '2026-01-20' end
        from dim_users where order_count >= 2
        union all
        select 'churned', person_id, timestamp '2026-01-10', null
        from dim_users where rfm_class = 'lost'
        """
    )
    yield con
    con.close()


@pytest.fixture(scope="module")
def catalog(demo_home: SafarHome, warehouse: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    return load_catalog(warehouse, demo_home.dbt_target / "target" / "manifest.json")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden_sql_passes_the_sandbox_and_runs(
    path: Path, warehouse: duckdb.DuckDBPyConnection, catalog: dict[str, Any]
) -> None:
    sql = _case(path)["sql"]
    validate(sql, catalog)
    rows = warehouse.execute(sql).fetchall()
    assert len(rows) == len({r[0] for r in rows}), "one row per person"


# --- (b) member sets against hand-written SQL ----------------------------------------------------

_BEHAVIOURAL = "type in ('track', 'page', 'screen')"
_INACTIVE = ", ".join(
    f"'{name}'" for name in yaml.safe_load(DBT_PROJECT.read_text())["vars"]["inactive_event_names"]
)

# (id, condition, timezone, hand-written SQL returning the expected person ids)
MEMBERS = [
    (
        "irancell",
        {"attribute": {"name": "carrier", "op": "eq", "value": "Irancell"}},
        "UTC",
        "select person_id from dim_users where carrier = 'Irancell'",
    ),
    (
        "not_irancell_includes_no_carrier",
        {"not": {"attribute": {"name": "carrier", "op": "eq", "value": "Irancell"}}},
        "UTC",
        "select person_id from dim_users where carrier is distinct from 'Irancell'",
    ),
    (
        "two_orders_in_30_days",
        {
            "behaviour": {
                "event": "Order Completed",
                "count": {"op": "gte", "value": 2},
                "time": {"last_days": 30},
            }
        },
        "UTC",
        """
        select person_id from fct_events
        where event_name = 'Order Completed' and type = 'track'
          and occurred_at between timestamp '2026-01-01 23:59' and timestamp '2026-01-31 23:59'
        group by person_id having count(*) >= 2
        """,
    ),
    (
        "no_app_open_in_14_days",
        {"behaviour": {"event": "Application Opened", "did": False, "time": {"last_days": 14}}},
        "UTC",
        """
        select person_id from dim_users
        except
        select person_id from fct_events
        where event_name = 'Application Opened'
          and occurred_at between timestamp '2026-01-17 23:59' and timestamp '2026-01-31 23:59'
        """,
    ),
    (
        "fewer_than_3_product_views_in_7_days_includes_none",
        {
            "behaviour": {
                "event": "Product Viewed",
                "count": {"op": "lt", "value": 3},
                "time": {"last_days": 7},
            }
        },
        "UTC",
        """
        select person_id from dim_users
        except
        select person_id from fct_events
        where event_name = 'Product Viewed' and type = 'track'
          and occurred_at between timestamp '2026-01-24 23:59' and timestamp '2026-01-31 23:59'
        group by person_id having count(*) >= 3
        """,
    ),
    (
        "inactive_for_7_days",
        {"behaviour": {"event": None, "did": False, "time": {"last_days": 7}}},
        "UTC",
        f"""
        select person_id from dim_users
        except
        select person_id from fct_events
        where {_BEHAVIOURAL} and event_name not in ({_INACTIVE})
          and occurred_at between timestamp '2026-01-24 23:59' and timestamp '2026-01-31 23:59'
        """,
    ),
    (
        "big_orders_ever",
        {
            "behaviour": {
                "event": "Order Completed",
                "where": [{"property": "revenue", "op": "gt", "value": 2000000}],
            }
        },
        "UTC",
        """
        select person_id from fct_events
        where event_name = 'Order Completed'
          and cast(json_extract(properties, '$.revenue') as double) > 2000000
        """,
    ),
    (
        "first_order_in_last_7_days",
        {"first_time": {"event": "Order Completed", "time": {"last_days": 7}}},
        "UTC",
        """
        select person_id from fct_events where event_name = 'Order Completed'
        group by person_id
        having min(occurred_at) >= timestamp '2026-01-24 23:59'
           and min(occurred_at) <= timestamp '2026-01-31 23:59'
        """,
    ),
    (
        "last_app_open_in_first_half_of_january",
        {
            "last_time": {
                "event": "Application Opened",
                "time": {"from": "2026-01-01", "to": "2026-01-15"},
            }
        },
        "UTC",
        """
        select person_id from fct_events where event_name = 'Application Opened'
        group by person_id
        having max(occurred_at) >= timestamp '2026-01-01'
           and max(occurred_at) < timestamp '2026-01-16'
        """,
    ),
    (
        "android_app_users",
        {"technology": {"name": "platform", "op": "eq", "value": "android"}},
        "UTC",
        "select person_id from dim_devices where platform = 'android'",
    ),
    (
        "app_older_than_5_15",
        {"technology": {"name": "app_version", "op": "lt", "value": "5.15"}},
        "UTC",
        """
        select person_id from dim_devices
        where cast(string_split(app_version, '.') as int[]) < [5, 15]
        """,
    ),
    (
        "chrome_but_not_edge_or_samsung",
        {"technology": {"name": "browser", "op": "eq", "value": "Chrome"}},
        "UTC",
        """
        select devices.person_id
        from dim_devices as devices
        join fct_events as events on events.device_id = devices.device_id
        where events.platform = 'web'
          and events.context like '%Chrome/%'
          and events.context not like '%Edg/%'
          and events.context not like '%SamsungBrowser/%'
        """,
    ),
    (
        "reachable_by_sms",
        {"reachable": "sms"},
        "UTC",
        "select person_id from dim_user_reachability where channel = 'sms' and is_reachable",
    ),
    (
        "current_members_of_another_segment",
        {"segment": "repeat-buyers"},
        "UTC",
        """
        select person_id from segment_membership
        where segment_id = 'repeat-buyers' and exited_at is null
        """,
    ),
    (
        "signed_up_before_15_january_in_tehran",
        {"attribute": {"name": "signed_up_at", "op": "before", "value": "2026-01-15"}},
        "Asia/Tehran",
        "select person_id from dim_users where signed_up_at < timestamp '2026-01-14 20:30'",
    ),
    (
        "paying_plan_born_before_1990",
        {
            "all": [
                {"trait": {"name": "plan", "op": "in", "value": ["plus", "pro"]}},
                {"trait": {"name": "birth_year", "op": "lt", "value": 1990}},
            ]
        },
        "UTC",
        """
        select person_id from dim_users
        where json_extract_string(custom_attributes, '$.plan') in ('plus', 'pro')
          and cast(json_extract(custom_attributes, '$.birth_year') as integer) < 1990
        """,
    ),
    (
        "tehran_or_not_emailable",
        {
            "any": [
                {"attribute": {"name": "city", "op": "eq", "value": "Tehran"}},
                {"not": {"reachable": "email"}},
            ]
        },
        "UTC",
        """
        select person_id from dim_users where city = 'Tehran'
        union
        (select person_id from dim_users
         except
         select person_id from dim_user_reachability where channel = 'email' and is_reachable)
        """,
    ),
    (
        "not_both_irancell_and_sms_reachable",
        {
            "not": {
                "all": [
                    {"attribute": {"name": "carrier", "op": "eq", "value": "Irancell"}},
                    {"reachable": "sms"},
                ]
            }
        },
        "UTC",
        """
        select person_id from dim_users
        except
        (select person_id from dim_users where carrier = 'Irancell'
         intersect
         select person_id from dim_user_reachability where channel = 'sms' and is_reachable)
        """,
    ),
    (
        "irancell_repeat_buyers_reachable_by_sms_or_push",
        {
            "all": [
                {"attribute": {"name": "carrier", "op": "eq", "value": "Irancell"}},
                {"behaviour": {"event": "Order Completed", "count": {"op": "gte", "value": 2}}},
                {"any": [{"reachable": "sms"}, {"reachable": "push"}]},
            ]
        },
        "UTC",
        """
        select person_id from dim_users where carrier = 'Irancell'
        intersect
        select person_id from fct_events where event_name = 'Order Completed'
        group by person_id having count(*) >= 2
        intersect
        select person_id from dim_user_reachability
        where channel in ('sms', 'push') and is_reachable
        """,
    ),
]


def _people(con: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    return {row[0] for row in con.execute(sql).fetchall()}


@pytest.mark.parametrize(
    ("condition", "timezone", "reference"), [m[1:] for m in MEMBERS], ids=[m[0] for m in MEMBERS]
)
def test_members_match_hand_written_sql(
    condition: dict[str, Any], timezone: str, reference: str, warehouse: duckdb.DuckDBPyConnection
) -> None:
    members = _people(warehouse, _compile(condition, timezone))
    assert members == _people(warehouse, reference)
    total = warehouse.execute("select count(*) from dim_users").fetchone()[0]
    assert 0 < len(members) < total


def test_membership_follows_the_evaluation_time(warehouse: duckdb.DuckDBPyConnection) -> None:
    recent_buyers = {"behaviour": {"event": "Order Completed", "time": {"last_days": 7}}}
    at_end = _people(warehouse, _compile(recent_buyers, now=NOW))
    mid_month = _people(warehouse, _compile(recent_buyers, now=datetime(2026, 1, 15)))
    assert at_end and mid_month and at_end != mid_month
    expected = """
        select person_id from fct_events where event_name = 'Order Completed'
        and occurred_at between timestamp '2026-01-08' and timestamp '2026-01-15'
    """
    assert mid_month == _people(warehouse, expected)
    tehran_morning = datetime(2026, 1, 15, 3, 30, tzinfo=ZoneInfo("Asia/Tehran"))
    assert _compile(recent_buyers, now=tehran_morning) == _compile(
        recent_buyers, now=datetime(2026, 1, 15)
    )


def test_user_values_only_enter_as_literals(warehouse: duckdb.DuckDBPyConnection) -> None:
    hostile = "x'); drop table dim_users; --"
    condition = {
        "all": [
            {"attribute": {"name": "city", "op": "in", "value": [hostile, "O'Hare"]}},
            {"trait": {"name": hostile, "op": "starts_with", "value": hostile}},
            {
                "behaviour": {
                    "event": hostile,
                    "where": [{"property": hostile, "op": "eq", "value": hostile}],
                }
            },
            {"segment": hostile},
        ]
    }
    sql = _compile(condition)
    assert _people(warehouse, sql) == set()
    literals = {lit.this for lit in parse_one(sql, read="duckdb").find_all(exp.Literal)}
    assert {hostile, "O'Hare"} <= literals


def test_registries_name_real_mart_columns(warehouse: duckdb.DuckDBPyConnection) -> None:
    types = {
        (table, column): kind
        for table, column, kind in warehouse.execute(
            "select table_name, column_name, data_type from information_schema.columns"
            " where table_catalog = 'lake' and table_schema = 'main'"
        ).fetchall()
    }
    families = {
        TEXT: ("VARCHAR",),
        VERSION: ("VARCHAR",),
        NUMBER: ("BIGINT", "INTEGER", "DOUBLE", "DECIMAL"),
        BOOLEAN: ("BOOLEAN",),
        TIME: ("TIMESTAMP",),
    }
    for name, field in {**ATTRIBUTES, **TECHNOLOGY}.items():
        kind = types.get((field.table, field.column))
        assert kind is not None, f"{name}: no column {field.table}.{field.column}"
        assert kind.startswith(families[field.kind]), f"{name}: {kind} is not {field.kind}"


def test_parsed_trees_are_frozen_values() -> None:
    tree = {
        "not": {
            "all": [{"reachable": "sms"}, {"trait": {"name": "plan", "op": "in", "value": ["a"]}}]
        }
    }
    assert parse_condition(tree) == parse_condition(json.loads(json.dumps(tree)))
    assert len({parse_condition(tree), parse_condition(tree)}) == 1
    with pytest.raises(FrozenInstanceError):
        parse_condition({"segment": "vip"}).segment_id = "other"  # type: ignore[misc]


# --- (c) bad trees name the field ----------------------------------------------------------------

_CARRIER = {"name": "carrier", "op": "eq", "value": "Irancell"}

ERRORS = [
    ([], "condition: must be an object with one key"),
    ({"all": [], "any": []}, "condition: must be an object with one key"),
    ({"all": []}, "all: must be a non-empty list of conditions"),
    (
        {"all": [{"attribute": _CARRIER}, {"atribute": _CARRIER}]},
        "all[1].atribute: unknown condition",
    ),
    (
        {
            "all": [
                {"reachable": "sms"},
                {"behaviour": {"event": "Order Completed", "count": {"op": ">=", "value": 2}}},
            ]
        },
        "all[1].behaviour.count.op: must be one of eq, neq, gt, gte, lt, lte, between, not '>='",
    ),
    (
        {"behaviour": {"event": "Order Completed", "count": {"op": "gte", "value": -1}}},
        "behaviour.count.value: must be a non-negative integer",
    ),
    ({"behaviour": {"did": True}}, "behaviour.event: is required"),
    (
        {"not": {"behaviour": {"event": "x", "did": "no"}}},
        "not.behaviour.did: must be true or false",
    ),
    ({"behaviour": {"event": "x", "time": "last week"}}, 'behaviour.time: must be "ever"'),
    (
        {"behaviour": {"event": "x", "time": {"last_days": 0}}},
        "behaviour.time.last_days: must be a positive integer",
    ),
    (
        {"behaviour": {"event": "x", "time": {"from": "2026-01-20", "to": "2026-01-10"}}},
        "behaviour.time.to: must not be before from",
    ),
    (
        {"behaviour": {"event": "x", "time": {"from": "31/01/2026"}}},
        "behaviour.time.from: is not an ISO-8601",
    ),
    (
        {
            "behaviour": {
                "event": "x",
                "where": [{"property": "revenue", "op": "bigger", "value": 1}],
            }
        },
        "behaviour.where[0].op: must be one of",
    ),
    (
        {
            "behaviour": {
                "event": "x",
                "where": [{"any": [{"property": "plan", "scope": "person", "op": "is_set"}]}],
            }
        },
        "behaviour.where[0].any[0].scope: person filters belong in a trait condition",
    ),
    ({"first_time": {"event": "Order Completed"}}, "first_time.time: is required"),
    ({"last_time": {"event": "x", "time": "ever"}}, "last_time.time: is required"),
    (
        {"attribute": {"name": "plan", "op": "eq", "value": "pro"}},
        "attribute.name: unknown name 'plan'",
    ),
    (
        {"attribute": {"name": "city", "op": "eq", "value": "x", "scope": "person"}},
        "attribute.scope: unknown key",
    ),
    (
        {"attribute": {"name": "signed_up_at", "op": "eq", "value": "2026-01-01"}},
        "attribute.op: must be one of before, after, between, within_last_days, is_set, is_not_set",
    ),
    (
        {"attribute": {"name": "city", "op": "in", "value": []}},
        "attribute.value: must be a non-empty list for op in",
    ),
    (
        {"attribute": {"name": "city", "op": "eq", "value": ["a", "b"]}},
        "attribute.value: must be a single value",
    ),
    (
        {"attribute": {"name": "email", "op": "is_set", "value": True}},
        "attribute.value: must not be given",
    ),
    (
        {"attribute": {"name": "order_count", "op": "between", "value": [5, 2]}},
        "attribute.value[1]: must not be below",
    ),
    (
        {"attribute": {"name": "order_count", "op": "gt", "value": "3"}},
        "attribute.value: must be a number",
    ),
    (
        {"attribute": {"name": "rfm_class", "op": "in", "value": ["loyal", "vip"]}},
        "attribute.value[1]: must be one of",
    ),
    (
        {"attribute": {"name": "last_seen_at", "op": "within_last_days", "value": 1.5}},
        "attribute.value: must be a positive integer",
    ),
    (
        {"not": {"any": [{"all": [{"trait": {"name": "plan", "op": "contains", "value": 3}}]}]}},
        "not.any[0].all[0].trait.value: must be a non-empty string for op contains",
    ),
    (
        {"trait": {"name": "created_at", "op": "between", "value": ["2026-01-01", None]}},
        "trait.value: must be two",
    ),
    (
        {"technology": {"name": "screen", "op": "eq", "value": "big"}},
        "technology.name: unknown name 'screen'",
    ),
    (
        {"technology": {"name": "browser", "op": "eq", "value": "chrome"}},
        "technology.value: must be one of Edge",
    ),
    (
        {"technology": {"name": "app_version", "op": "gte", "value": "5.x"}},
        "technology.value: must be a version",
    ),
    ({"reachable": "fax"}, "reachable: must be one of email, sms, push, web_push, not 'fax'"),
    ({"segment": ""}, "segment: must be a non-empty string"),
]


@pytest.mark.parametrize(
    ("tree", "message"), ERRORS, ids=[e[1].split(":")[0] + f"-{i}" for i, e in enumerate(ERRORS)]
)
def test_bad_tree_names_the_field(tree: Any, message: str) -> None:
    with pytest.raises(BuilderError) as error:
        parse_condition(tree)
    assert str(error.value).startswith(message)
    assert error.value.path == message.split(": ")[0]


def test_unknown_timezone_is_a_builder_error() -> None:
    with pytest.raises(BuilderError, match=r"^timezone: unknown time zone 'Mars/Olympus'"):
        compile_condition(parse_condition({"reachable": "sms"}), now=NOW, timezone="Mars/Olympus")
