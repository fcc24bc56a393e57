"""The segment sandbox: hostile queries are refused with what and where, the lock holds."""

from __future__ import annotations

import pytest

from safar.config import SafarHome
from safar.segments.sandbox import (
    Limits,
    SandboxError,
    load_catalog,
    locked_connection,
    run,
    validate,
)
from safar.warehouse import connect

# (query, what the message must say, line, column)
HOSTILE = [
    ("drop table dim_users", "DROP is not allowed", 1, 1),
    ("create table x as select 1", "CREATE is not allowed", 1, 1),
    ("alter table dim_users add column x int", "ALTER is not allowed", 1, 1),
    ("insert into dim_users (person_id) values ('x')", "INSERT is not allowed", 1, 1),
    ("update dim_users set carrier = 'x'", "UPDATE is not allowed", 1, 1),
    ("delete from dim_users", "DELETE is not allowed", 1, 1),
    ("copy dim_users to '/tmp/x.csv'", "COPY is not allowed", 1, 1),
    ("attach '/tmp/x.db' as x", "ATTACH is not allowed", 1, 1),
    ("detach lake", "DETACH is not allowed", 1, 1),
    ("install httpfs", "INSTALL is not allowed", 1, 1),
    ("load httpfs", "LOAD is not allowed", 1, 1),
    ("pragma database_list", "PRAGMA is not allowed", 1, 1),
    ("set memory_limit = '100GB'", "SET is not allowed", 1, 1),
    ("call pragma_version()", "CALL is not allowed", 1, 1),
    ("use lake", "USE is not allowed", 1, 1),
    ("describe dim_users", "DESCRIBE is not allowed", 1, 1),
    ("summarize dim_users", "SUMMARIZE is not allowed", 1, 1),
    ("explain select person_id as user_id from dim_users", "EXPLAIN is not allowed", 1, 1),
    ("vacuum", "VACUUM is not allowed", 1, 1),
    (
        "select person_id as user_id from dim_users;\ndrop table dim_users",
        "2 statements: a segment is exactly one query",
        2,
        1,
    ),
    (
        "select person_id as user_id from dim_users; select 1",
        "2 statements",
        1,
        45,
    ),
    ("select * from read_csv('/etc/passwd')", "table function read_csv() is not allowed", 1, 15),
    ("select * from read_parquet('s3://bucket/x.parquet')", "read_parquet() is not allowed", 1, 15),
    ("select * from glob('/etc/*')", "glob() is not allowed", 1, 15),
    (
        "select user_id from query('select person_id as user_id from dim_users')",
        "query() is not allowed",
        1,
        21,
    ),
    ("select * from '/etc/passwd'", "unknown table '/etc/passwd'", 1, 15),
    ("select range as user_id from range(10)", "generate_series() is not allowed", 1, 30),
    (
        "select person_id as user_id from dim_users\nwhere carrier = getenv('HOME')",
        "function getenv() is not allowed",
        2,
        17,
    ),
    (
        "select person_id as user_id from dim_users where current_setting('threads') > 1",
        "current_setting() is not allowed",
        1,
        50,
    ),
    (
        "select person_id as user_id from stg_safar__events",
        "unknown table 'stg_safar__events'",
        1,
        34,
    ),
    ("select person_id as user_id from raw.events", "schema 'raw' is not allowed", 1, 34),
    (
        "select person_id as user_id from other.main.dim_users",
        "catalog 'other' is not allowed",
        1,
        34,
    ),
    (
        "select table_name as user_id from information_schema.tables",
        "schema 'information_schema' is not allowed",
        1,
        35,
    ),
    ("select * from duckdb_settings()", "duckdb_settings() is not allowed", 1, 15),
    ("select person_id as user_id from dim_users\nwhere nope = 1", "unknown column 'nope'", 2, 7),
    ("select * from dim_users", "exactly one column named user_id", 1, 1),
    ("select person_id from dim_users", "exactly one column named user_id, not: person_id", 1, 1),
    ("select person_id as user_id, carrier from dim_users", "not: user_id, carrier", 1, 1),
    ("selec person_id from dim_users", "not valid SQL", 1, None),
    ("", "empty: write one SELECT returning user_id", None, None),
]

LEGITIMATE = [
    "select person_id as user_id from dim_users where carrier = 'Irancell'",
    "select person_id as user_id from lake.dim_users",
    "select person_id as user_id from lake.main.dim_users",
    """with buyers as (
           select person_id, count(*) as orders from fct_events
           where event_name = 'Order Completed' group by person_id
       )
       select person_id as user_id from buyers where orders >= 2""",
    """select person_id as user_id from dim_users
       union
       select person_id from segment_membership where exited_at is null""",
    "select distinct person_id as user_id from dim_devices where platform = 'android'",
]


@pytest.fixture(scope="module")
def catalog(demo_home: SafarHome) -> dict[str, dict[str, str]]:
    con = connect(demo_home, read_only=True)
    try:
        return load_catalog(con, demo_home.dbt_target / "target" / "manifest.json")
    finally:
        con.close()


def test_the_corpus_is_big_enough() -> None:
    assert len(HOSTILE) >= 30


def test_catalog_is_the_marts_and_membership(catalog) -> None:
    assert {"dim_users", "fct_events", "dim_devices", "segment_membership"} <= set(catalog)
    assert not {name for name in catalog if name.startswith(("stg_", "int_"))}
    assert "carrier" in catalog["dim_users"]


@pytest.mark.parametrize(("sql", "message", "line", "column"), HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_query_is_refused_saying_what_and_where(
    catalog, sql, message, line, column
) -> None:
    with pytest.raises(SandboxError) as caught:
        validate(sql, catalog)
    assert message in str(caught.value)
    if line is not None:
        assert caught.value.line == line
    if column is not None:
        assert caught.value.column == column


@pytest.mark.parametrize("sql", LEGITIMATE, ids=range(len(LEGITIMATE)))
def test_legitimate_query_is_accepted(catalog, sql) -> None:
    validate(sql, catalog)


def test_locked_connection_runs_checked_queries_and_nothing_else(demo_home, catalog) -> None:
    con = locked_connection(demo_home, Limits(memory_limit="1GB", timeout_seconds=30))
    try:
        query = validate(
            "select person_id as user_id from dim_users where carrier = 'Irancell'", catalog
        )
        members = run(con, query)
        expected = (
            connect(demo_home, read_only=True)
            .sql("select person_id from dim_users where carrier = 'Irancell' order by 1")
            .fetchall()
        )
        assert members == sorted(r[0] for r in expected) and len(members) > 50
        with pytest.raises(Exception, match="disabled by configuration"):
            con.sql("select * from read_csv('/etc/passwd')").fetchall()
        with pytest.raises(Exception, match="locked"):
            con.execute("SET enable_external_access = true")
    finally:
        con.close()


def test_a_runaway_query_is_stopped(demo_home, catalog) -> None:
    con = locked_connection(demo_home, Limits(timeout_seconds=0.5))
    try:
        query = validate(
            """select a.person_id as user_id from fct_events a, fct_events b, fct_events c
               where a.occurred_at < b.occurred_at and b.occurred_at < c.occurred_at""",
            catalog,
        )
        with pytest.raises(SandboxError, match="ran longer than 0.5 s and was stopped"):
            run(con, query, Limits(timeout_seconds=0.5))
    finally:
        con.close()
