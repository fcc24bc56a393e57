"""Data access for the dashboards: one cached function per question, read-only.

Every function takes the Safar home as a string (resolved once per script run by
:func:`current_home`, outside the cache) so the cache key names the warehouse it read. Each
call opens its own read-only DuckDB connection: DuckLake gives it a consistent snapshot while
``safar build`` or a micro-batch writes, and nothing is shared between Streamlit sessions.
The one writable thing here is :func:`app_db`, the app DB engine that saved insights are read
and written through (``safar.appdb.insights``), uncached.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import sqlalchemy as sa
import streamlit as st

from safar import live
from safar.analytics import funnel, retention, trends
from safar.analytics.retention_spec import parse_retention_spec
from safar.analytics.source import EVENTS, PERSONS, connect_warehouse
from safar.analytics.spec import parse_funnel_spec
from safar.analytics.trends_spec import parse_trends_spec
from safar.appdb import open_app_db
from safar.appdb.sources import Source, list_sources
from safar.config import SafarHome, app_db_url, home_from_env
from safar.warehouse import connect

CACHE_TTL_SECONDS = 60
# Bounded so a long-running app that sees many periods does not grow without limit.
CACHE_MAX_ENTRIES = 64

CHANNEL_ORDER = ("email", "sms", "push", "web_push")


class WarehouseNotReady(RuntimeError):
    """The warehouse, or a model a page reads, has not been built yet."""


@dataclass(frozen=True)
class UserTotals:
    """People in the warehouse, and how many signed up in a period."""

    total_users: int
    known_users: int
    unknown_users: int
    signed_up_users: int


def current_home() -> str:
    """The Safar home this app reads (``$SAFAR_HOME``, else ``./data``), as an absolute path."""
    return str(home_from_env().root)


def read_frame(home: str, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
    """Run one query on the warehouse of ``home``, read-only.

    Raises:
        WarehouseNotReady: there is no warehouse at ``home``, or it lacks a queried model.
    """
    try:
        con = connect(SafarHome(Path(home)), read_only=True)
    except FileNotFoundError as exc:
        raise WarehouseNotReady(str(exc)) from exc
    try:
        return con.execute(sql, params or []).pl()
    except duckdb.CatalogException as exc:
        raise WarehouseNotReady(
            f"the warehouse at {home} lacks a model this page reads; run `safar build` ({exc})"
        ) from exc
    finally:
        con.close()


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_activity_bounds(home: str) -> tuple[date | None, date | None]:
    """First and last day with activity (``fct_active_users_daily``); ``None`` when empty."""
    row = read_frame(
        home,
        "select min(activity_date) as first, max(activity_date) as last "
        "from fct_active_users_daily",
    ).row(0)
    return row[0], row[1]


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_user_totals(home: str, start: date, end: date) -> UserTotals:
    """All people (known and unknown) and the sign-ups between ``start`` and ``end``."""
    row = read_frame(
        home,
        """
        select
            count(*) as total_users,
            count(*) filter (where is_known) as known_users,
            count(*) filter (where not is_known) as unknown_users,
            count(*) filter (where cast(signed_up_at as date) between ? and ?) as signed_up_users,
        from dim_users
        """,
        [start, end],
    ).row(0)
    return UserTotals(*(int(v) for v in row))


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_active_users_daily(home: str, start: date, end: date) -> pl.DataFrame:
    """``fct_active_users_daily`` between ``start`` and ``end``, oldest day first."""
    return read_frame(
        home,
        """
        select
            activity_date, dau, wau, mau,
            dau_known, dau_unknown, mau_known, mau_unknown, stickiness,
        from fct_active_users_daily
        where activity_date between ? and ?
        order by activity_date
        """,
        [start, end],
    )


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_channel_reachability(home: str) -> pl.DataFrame:
    """``rpt_channel_reachability``: one row per channel, in the product's channel order."""
    return read_frame(
        home,
        """
        select channel, total_users, reachable_users, reachable_pct,
        from rpt_channel_reachability
        order by coalesce(list_position(?, channel), 99), channel
        """,
        [list(CHANNEL_ORDER)],
    )


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_installs_daily(home: str, start: date, end: date) -> pl.DataFrame:
    """App installs and uninstalls per day between ``start`` and ``end``, all platforms."""
    return read_frame(
        home,
        """
        select
            activity_date,
            cast(sum(installs) as bigint) as installs,
            cast(sum(uninstalls) as bigint) as uninstalls,
            cast(sum(net_installs) as bigint) as net_installs,
        from fct_installs_daily
        where activity_date between ? and ?
        group by activity_date
        order by activity_date
        """,
        [start, end],
    )


# Live numbers: short enough that the page, refreshing every few seconds, shows new events;
# long enough that many open Live pages share one scan of the landing zone.
LIVE_CACHE_TTL_SECONDS = 2


@st.cache_data(ttl=LIVE_CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def has_landed_events(home: str) -> bool:
    """Whether any event file has landed in ``home``'s landing zone."""
    return live.has_landed_events(SafarHome(Path(home)))


@st.cache_data(ttl=LIVE_CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_live_stats(home: str) -> live.LiveStats:
    """Live stats as of now (:func:`safar.live.live_stats`), from the landing zone of ``home``."""
    return live.live_stats(SafarHome(Path(home)))


@st.cache_data(ttl=5, max_entries=8, show_spinner=False)
def load_sources(home: str) -> list[Source]:
    """Every source with its write key, newest first (a short TTL: keys are added by CLI)."""
    return sorted(
        list_sources(open_app_db(SafarHome(Path(home)))),
        key=lambda source: source.created_at,
        reverse=True,
    )


# --- Insights: the analytics engines on the warehouse, and saved insights in the app DB ------
#
# Specs arrive as the decoded JSON the builders produce (a dict is a fine cache key) and are
# parsed inside, so a page never holds a half-parsed spec; a SpecError reaches the page, which
# shows the field path it names.


@contextmanager
def _analytics(home: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection with the analytics relations (``safar.analytics.source``)."""
    try:
        con = connect_warehouse(SafarHome(Path(home)))
    except FileNotFoundError as exc:
        raise WarehouseNotReady(str(exc)) from exc
    except duckdb.CatalogException as exc:
        raise WarehouseNotReady(
            f"the warehouse at {home} lacks the events model; run `safar build` ({exc})"
        ) from exc
    try:
        yield con
    finally:
        con.close()


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_event_names(home: str) -> list[str]:
    """Names of the behavioural events in the warehouse, the most frequent first."""
    with _analytics(home) as con:
        rows = con.execute(
            f"select event from {EVENTS} where event is not null and event <> '' "
            "group by event order by count(*) desc, event"
        ).fetchall()
    return [row[0] for row in rows]


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_event_days(home: str) -> tuple[date | None, date | None]:
    """The first and last day (UTC) with a behavioural event; ``None`` when there are none."""
    with _analytics(home) as con:
        row = con.execute(
            f"select min(timestamp)::date, max(timestamp)::date from {EVENTS}"
        ).fetchone()
    return row[0], row[1]


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_property_names(home: str) -> list[tuple[str, str]]:
    """``(scope, property)`` pairs to break insights down by: event properties, then traits.

    Most frequent first within each scope.
    """
    with _analytics(home) as con:
        rows = con.execute(
            f"""
            select scope, property from (
                select 'event' as scope, unnest(json_keys(properties)) as property
                from {EVENTS}
                union all
                select 'person' as scope, unnest(json_keys(properties)) as property
                from {PERSONS}
            )
            group by scope, property
            order by scope, count(*) desc, property
            """
        ).fetchall()
    return [(scope, prop) for scope, prop in rows]


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_funnel(
    home: str, spec: dict[str, Any], persons: int | None = None, details: bool = False
) -> dict[str, Any]:
    """:func:`safar.analytics.funnel.run_funnel` on the warehouse of ``home``.

    Raises:
        SpecError: the spec is invalid (before the warehouse is opened).
    """
    parsed = parse_funnel_spec(spec)
    with _analytics(home) as con:
        return funnel.run_funnel(con, parsed, persons, details=details)


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_retention(home: str, spec: dict[str, Any], actors: int | None = None) -> dict[str, Any]:
    """:func:`safar.analytics.retention.run_retention` on the warehouse of ``home``."""
    parsed = parse_retention_spec(spec)
    with _analytics(home) as con:
        return retention.run_retention(con, parsed, actors)


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_trends(home: str, spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`safar.analytics.trends.run_trends` on the warehouse of ``home``."""
    parsed = parse_trends_spec(spec)
    with _analytics(home) as con:
        return trends.run_trends(con, parsed)


def app_db(home: str) -> sa.Engine:
    """The app DB of ``home`` (``$SAFAR_APP_DB_URL`` wins), opened and migrated once per process.

    Saved insights are read through it uncached: a save must show up at once.
    """
    return _app_db_engine(app_db_url(SafarHome(Path(home))))


@st.cache_resource(show_spinner=False)
def _app_db_engine(url: str) -> sa.Engine:
    return open_app_db(url=url)
