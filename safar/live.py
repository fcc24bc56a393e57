"""Live stats: who is here now and what they do, read from the raw landing zone.

The warehouse is as fresh as its last micro-batch; the landing zone is as fresh as the gateway
(files appear within ~2 s of acceptance). This module reads the landing zone directly so the
dashboard's Live page lags the gateway by seconds, and stays fast on a big lake by reading only
the newest files of today's and yesterday's ``date=`` folders.

Definitions (all times naive UTC, like the lake):

- **Activity** is what the warehouse calls activity (``int_events_sessionized``): ``track``,
  ``page`` and ``screen`` messages, minus :data:`INACTIVE_EVENTS` (the platform's own system
  events and lifecycle events nobody performs). A ``Message Sent`` is not a person being here,
  and neither is an event that happened more than a day before it arrived (a bulk import or
  backfill lands now, but describes the past).
- **Now** is arrival time: an event counts in a window by its ``received_at`` (the gateway's
  clock), so late mobile batches count when they arrive and the chart never changes behind
  the viewer's back. Windows are half-open on the left: *active* means
  ``now - 5 min < received_at <= now``, so an event exactly five minutes old is out.
- **Person**: events are keyed by ``coalesce(user_id, anonymous_id)``, stitched to a person
  by, in order, the warehouse's ``dim_person_distinct_ids`` (when a warehouse is built), then
  the earliest link seen in the scanned landing files (an event carrying both an anonymous and
  a user id, or an ``alias``; one hop, where the warehouse follows whole alias chains), else
  the id itself.
- **Known** person: any of their scanned events has a user id, one of their ids was linked to
  a user id, or the warehouse says so (``dim_users.is_known``). Otherwise unknown.
- **New** person: first seen today (the UTC day of ``now``). **Returning**: seen before
  today, by event time (``timestamp``, like the warehouse's ``first_seen_at``): the
  warehouse's ``dim_users.first_seen_at`` is before today, or a scanned landing row of theirs
  has a ``timestamp`` before today. Without a warehouse the landing zone is read back to
  yesterday's folder only, so a person last seen two or more days ago counts as new until the
  warehouse is built.
- **Events per minute** counts every message landed (SDK retries of one ``message_id`` once)
  per clock minute of ``received_at``, with the share that is activity; **top events** are
  tracked activity and **top pages** page and screen views, over the last :data:`TOP_WINDOW`.

Which files are read: only those of yesterday's and today's folders whose newest
``received_at`` (from the Parquet footer's statistics, cached per file since landing files
never change) falls in the hour shown, or after the warehouse's newest event
(``fct_events.received_at``, less :data:`WAREHOUSE_MARGIN`) when that is older: everything
before it is in the warehouse, which answers for identity and history. Without a warehouse,
all of yesterday and today are read. The rows of the hour shown stay in memory between calls
(a landed file never changes), so a refresh reads only the files landed since the last one.
A file that cannot be read is skipped with a warning (quarantining is the pipeline's job:
dashboards never write to the lake).

Example:
    >>> from pathlib import Path
    >>> stats = live_stats(SafarHome(Path("/nonexistent")), datetime(2026, 1, 31, 12, 0))
    >>> stats.active_people, stats.events_per_minute.height, stats.last_received_at
    (0, 60, None)
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from safar.config import SafarHome
from safar.contract import RAW_SCHEMA, SYSTEM_EVENTS
from safar.lake import PART_GLOB, file_id_of
from safar.warehouse import LAKE_ALIAS, duckdb_config, lake_attach_sql

log = logging.getLogger(__name__)

ACTIVE_WINDOW = timedelta(minutes=5)
"""People who performed an event within this long before now are "active now"."""

TOP_WINDOW = timedelta(minutes=15)
"""Top events and pages count this long back: five minutes is too few events on a quiet site."""

SERIES_MINUTES = 60
"""Events per minute are shown for this many clock minutes, the current (partial) one last."""

TOP_LIMIT = 10

WAREHOUSE_MARGIN = timedelta(minutes=5)
"""Events received this long before the warehouse's newest may still be missing from it: a
writer lands a file a little after receiving its events (group commit, several gateways)."""

_FOOTER_CACHE_SIZE = 200_000
"""Landing files whose footers are remembered: a few busy days' worth, a few tens of MB."""

_ROW_CACHE_ROWS = 1_000_000
"""Rows of the hour shown kept in memory between calls (about 200 MB at most)."""

_COLUMNS = (
    "message_id", "type", "event", "user_id", "anonymous_id", "previous_id", "timestamp",
    "received_at", "context_page_url",
)  # fmt: skip
_ROWS_SCHEMA = pa.schema([pa.field(name, RAW_SCHEMA.field(name).type) for name in _COLUMNS])

# Mirrors `inactive_event_names` in dbt/dbt_project.yml (a test keeps the two equal), so
# "active" means the same on the Live page as in the warehouse's DAU.
INACTIVE_EVENTS = (*SYSTEM_EVENTS, "Application Uninstalled", "Push Notification Received")

_WAREHOUSE_TABLES = ("dim_person_distinct_ids", "dim_users", "fct_events")


@dataclass(frozen=True)
class LiveStats:
    """What is happening now, as of ``now``.

    ``active_people == known_people + unknown_people == new_people + returning_people``.
    """

    now: datetime
    active_people: int
    known_people: int
    unknown_people: int
    new_people: int
    returning_people: int
    events_per_minute: pl.DataFrame
    """One row per clock minute, oldest first, always :data:`SERIES_MINUTES` rows: ``minute``,
    ``events`` (every message landed, duplicates removed), ``activity_events`` (those that
    count as activity)."""
    top_events: pl.DataFrame
    """``event``, ``events``, ``people``: tracked activity in the last :data:`TOP_WINDOW`."""
    top_pages: pl.DataFrame
    """``page``, ``views``, ``people``: page and screen views in the last :data:`TOP_WINDOW`,
    by page name, else URL path."""
    last_received_at: datetime | None
    """The newest event received at or before ``now`` in the files read, if any."""
    used_warehouse: bool
    files_read: int
    unreadable_files: tuple[Path, ...] = field(default=())


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as the lake stores times: naive UTC (naive input is taken as UTC already).

    Example:
        >>> from datetime import timezone
        >>> tehran = timezone(timedelta(hours=3, minutes=30))
        >>> naive_utc(datetime(2026, 3, 21, 12, 30, tzinfo=tehran))
        datetime.datetime(2026, 3, 21, 9, 0)
        >>> naive_utc(datetime(2026, 3, 21, 9, 0))
        datetime.datetime(2026, 3, 21, 9, 0)
    """
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


@functools.lru_cache(maxsize=_FOOTER_CACHE_SIZE)
def newest_received_at(path: Path) -> datetime | None:
    """The newest ``received_at`` in a landing file, from its footer (no data is read).

    Cached: a landing file never changes once it has its name (``write_parquet_atomic``).

    Returns:
        The newest time, or ``None`` if the file has no statistics (it must then be read).

    Raises:
        OSError: the file is missing or cannot be read.
        ValueError: the file is not Parquet, or has no ``received_at``.
    """
    metadata = pq.read_metadata(path)
    column = metadata.schema.names.index("received_at")
    newest = None
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(column).statistics
        if statistics is None or not statistics.has_min_max:
            return None
        newest = statistics.max if newest is None else max(newest, statistics.max)
    return newest


class _RecentRows:
    """The rows of recently landed files, kept in memory between calls.

    The Live page asks for the same last hour every few seconds, and the gateway lands a small
    file about every second: reading thousands of files again costs about 1 ms each, while a
    landed file never changes. Bounded by rows; the least recently used files go first.
    """

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._tables: OrderedDict[Path, pa.Table] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()  # Streamlit serves each session from its own thread

    def read(self, path: Path) -> pa.Table:
        """The columns live stats use, for every row of ``path``.

        Raises:
            OSError: the file is missing or cannot be read.
            ValueError: the file is not Parquet or does not have the contract's columns.
        """
        with self._lock:
            table = self._tables.get(path)
            if table is not None:
                self._tables.move_to_end(path)
                return table
        table = pq.read_table(path, columns=list(_COLUMNS)).cast(_ROWS_SCHEMA)
        with self._lock:
            if path not in self._tables:
                self._tables[path] = table
                self._rows += table.num_rows
            while self._rows > self.max_rows and len(self._tables) > 1:
                _, evicted = self._tables.popitem(last=False)
                self._rows -= evicted.num_rows
        return table


_recent_rows = _RecentRows(_ROW_CACHE_ROWS)


def describe_age(age: timedelta) -> str:
    """A short, human reading of how long ago something happened.

    Example:
        >>> [describe_age(timedelta(seconds=s)) for s in (0.4, 42, 150, 7300, 200_000)]
        ['just now', '42 s ago', '2 min ago', '2 h ago', '2 days ago']
    """
    seconds = age.total_seconds()
    if seconds < 1:
        return "just now"
    for unit, size in (("day", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return f"{int(seconds)} s ago"


def has_landed_events(home: SafarHome) -> bool:
    """Whether the landing zone holds any file at all (an empty zone needs a different page)."""
    return next(home.raw_events.glob(PART_GLOB), None) is not None


def recent_files(
    home: SafarHome, now: datetime, received_since: datetime
) -> tuple[list[Path], list[Path]]:
    """Files of yesterday's and today's folders that hold events received since a time.

    Args:
        home: the Safar home.
        now: the moment the stats are for; its UTC day is "today".
        received_since: files whose newest event was received before this are skipped.

    Returns:
        The files to read, in write order, and the files whose footer cannot be read.
    """
    today = now.date()
    files, unreadable = [], []
    for day in (today - timedelta(days=1), today):
        for path in (home.raw_events / f"date={day:%Y-%m-%d}").glob("part-*.parquet"):
            try:
                newest = newest_received_at(path)
            except (OSError, ValueError):
                unreadable.append(path)
                continue
            if newest is None or newest >= received_since:
                files.append(path)
    return sorted(files, key=file_id_of), sorted(unreadable, key=file_id_of)


def live_stats(
    home: SafarHome, now: datetime | None = None, *, use_warehouse: bool = True
) -> LiveStats:
    """Live stats for ``home`` as of ``now`` (default: the current time).

    Args:
        home: the Safar home whose landing zone (and, if built, warehouse) is read.
        now: the moment to compute for; naive times are UTC. Events received after it are
            ignored, so a test can place events around an injected ``now``.
        use_warehouse: stitch identities and look back through the warehouse when one is
            built. Off, only the landing zone is read.

    Returns:
        The stats; all zeros (and a zero-filled series) when nothing was received.
    """
    now = naive_utc(now or datetime.now(UTC))
    con = duckdb.connect(config=duckdb_config())
    try:
        con.sql("SET TimeZone = 'UTC'")
        used_warehouse, watermark = _attach_warehouse(con, home) if use_warehouse else (False, None)
        bounds = _Bounds.of(now, watermark)
        files_read, unreadable = _load_landing_zone(con, home, bounds)
        for path in unreadable:
            log.warning("live stats skip an unreadable landing file: %s", path)
        return _compute(con, bounds, used_warehouse, files_read, tuple(unreadable))
    finally:
        con.close()


def _load_landing_zone(
    con: duckdb.DuckDBPyConnection, home: SafarHome, bounds: _Bounds
) -> tuple[int, list[Path]]:
    """Fill the ``landed`` table from the files that matter.

    Returns:
        How many files were read, and the files skipped because they cannot be read.
    """
    files, unreadable = recent_files(
        home, bounds.now, min(bounds.series_start, bounds.history_start)
    )
    # Files with events in the hour shown come from memory; older ones (the history, when
    # there is no warehouse) are read by DuckDB on each call rather than crowd the memory.
    tables, cold = [], []
    for path in files:
        newest = newest_received_at(path)
        if newest is not None and newest < bounds.series_start:
            cold.append(path)
            continue
        try:
            tables.append(_recent_rows.read(path))
        except (OSError, ValueError):
            unreadable.append(path)
    recent = pa.concat_tables(tables).combine_chunks() if tables else _ROWS_SCHEMA.empty_table()
    try:
        _load(con, recent, cold, bounds)
    except duckdb.Error:
        # A footer can be fine and a page broken: find the files that fail on their own.
        broken = _unreadable(con, cold, bounds)
        if not broken:
            raise  # every file reads on its own: the failure is not theirs
        skipped = set(broken)
        cold = [f for f in cold if f not in skipped]
        unreadable += broken
        _load(con, recent, cold, bounds)
    return len(tables) + len(cold), sorted(unreadable, key=file_id_of)


@dataclass(frozen=True)
class _Bounds:
    """The moments every query is bound to; each is a named parameter of the same name."""

    now: datetime
    today_start: datetime
    yesterday_start: datetime
    series_start: datetime
    top_start: datetime
    active_start: datetime
    history_start: datetime
    """Events received before this are in the warehouse (or older than yesterday)."""

    @classmethod
    def of(cls, now: datetime, watermark: datetime | None) -> _Bounds:
        today_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        yesterday_start = today_start - timedelta(days=1)
        minute = now.replace(second=0, microsecond=0)
        return cls(
            now=now,
            today_start=today_start,
            yesterday_start=yesterday_start,
            series_start=minute - timedelta(minutes=SERIES_MINUTES - 1),
            top_start=now - TOP_WINDOW,
            active_start=now - ACTIVE_WINDOW,
            history_start=(
                max(yesterday_start, watermark - WAREHOUSE_MARGIN) if watermark else yesterday_start
            ),
        )


def _execute(
    con: duckdb.DuckDBPyConnection, sql: str, bounds: _Bounds, **extra: Any
) -> duckdb.DuckDBPyConnection:
    """Run ``sql`` with those of the bounds and ``extra`` that it names as ``$parameters``.

    DuckDB refuses parameters a statement does not use, and every statement uses a few.
    """
    values = {**vars(bounds), **extra}
    return con.execute(sql, {k: v for k, v in values.items() if re.search(rf"\${k}\b", sql)})


def _attach_warehouse(
    con: duckdb.DuckDBPyConnection, home: SafarHome
) -> tuple[bool, datetime | None]:
    """Attach the warehouse read-only if it has the models used here.

    Returns:
        Whether a usable warehouse is attached (if not, nothing stays attached), and the
        newest ``received_at`` in it (``None`` when it is empty).
    """
    if not home.catalog.exists():
        return False, None
    try:
        con.sql(lake_attach_sql(home, read_only=True))
        (found,) = con.execute(
            "select count(*) from information_schema.tables "
            "where table_catalog = $lake and table_name in $tables",
            {"lake": LAKE_ALIAS, "tables": list(_WAREHOUSE_TABLES)},
        ).fetchone()
        if found < len(_WAREHOUSE_TABLES):
            con.sql(f"DETACH {LAKE_ALIAS}")
            return False, None
        (watermark,) = con.sql(f"select max(received_at) from {LAKE_ALIAS}.fct_events").fetchone()
    except duckdb.Error as exc:
        # A live view is better without stitching than not at all.
        log.warning("live stats read the landing zone only; the warehouse failed: %s", exc)
        return False, None
    return True, watermark


_CREATE_LANDED = """
create or replace temp table landed (
    message_id varchar, type varchar, event varchar, user_id varchar, anonymous_id varchar,
    previous_id varchar, timestamp timestamp, received_at timestamp, context_page_url varchar
)
"""

# Kept: the hour shown, rows that link ids, and rows that show someone was seen before today.
# Everything else received earlier today cannot change a number on the page.
_SELECT_LANDED = """
select
    message_id, type, nullif(event, ''), nullif(user_id, ''), nullif(anonymous_id, ''),
    nullif(previous_id, ''), timestamp, received_at, context_page_url
from {source}
where
    received_at >= $yesterday_start
    and received_at <= $now
    and (
        received_at >= $series_start
        or timestamp < $today_start
        or (nullif(user_id, '') is not null and nullif(anonymous_id, '') is not null)
        or type = 'alias'
    )
"""
_FROM_FILES = "read_parquet($files, hive_partitioning = false)"


def _load(
    con: duckdb.DuckDBPyConnection, recent: pa.Table, files: list[Path], bounds: _Bounds
) -> None:
    """Fill ``landed`` from the rows in memory and from ``files``."""
    con.sql(_CREATE_LANDED)
    con.register("recent_rows", recent)
    _execute(con, "insert into landed " + _SELECT_LANDED.format(source="recent_rows"), bounds)
    if files:
        _execute(
            con,
            "insert into landed " + _SELECT_LANDED.format(source=_FROM_FILES),
            bounds,
            files=[str(f) for f in files],
        )


def _unreadable(con: duckdb.DuckDBPyConnection, files: list[Path], bounds: _Bounds) -> list[Path]:
    """The files among ``files`` (which fail to load together) that fail on their own.

    Halving finds a few bad files among thousands in a few reads, rather than one per file.
    """
    if len(files) <= 1:
        return files
    bad = []
    for half in (files[: len(files) // 2], files[len(files) // 2 :]):
        try:
            _execute(
                con,
                "create or replace temp table probe as "
                + _SELECT_LANDED.format(source=_FROM_FILES),
                bounds,
                files=[str(f) for f in half],
            )
        except duckdb.Error:
            bad += _unreadable(con, half, bounds)
    return bad


# SDK retries repeat a message_id; the first arrival counts.
_MESSAGES = """
create or replace temp table messages as
select
    *,
    coalesce(user_id, anonymous_id) as distinct_id,
    type in ('track', 'page', 'screen')
        and not list_contains($inactive, coalesce(event, type))
        -- Imports and backfills arrive now but happened long ago: they are not people here now.
        and timestamp > received_at - interval 1 day as is_activity,
from landed
qualify row_number() over (partition by message_id order by received_at) = 1
"""

# Each id follows its earliest link to a user id, as the warehouse's identity model does.
_LINKS = """
create or replace temp table links as
select distinct_id, linked_to
from (
    select anonymous_id as distinct_id, user_id as linked_to, received_at, message_id
    from messages
    where
        type <> 'alias' and anonymous_id is not null and user_id is not null
        and anonymous_id <> user_id
    union all
    select previous_id, user_id, received_at, message_id
    from messages
    where
        type = 'alias' and previous_id is not null and user_id is not null
        and previous_id <> user_id
)
qualify row_number() over (partition by distinct_id order by received_at, message_id) = 1
"""

_SEEN_BEFORE_TODAY = """
create or replace temp table seen_before_today as
select distinct distinct_id from messages where timestamp < $today_start
"""

# The ids whose person matters: everyone on the page, and everyone seen before today.
_IDS = """
create or replace temp table ids as
select distinct_id, bool_or(user_id is not null) as is_user_id
from messages
where (is_activity and received_at > $top_start) or timestamp < $today_start
group by distinct_id
"""

_PEOPLE_LAKE_ONLY = """
create or replace temp table people as
select
    ids.distinct_id,
    coalesce(links.linked_to, ids.distinct_id) as person_id,
    ids.is_user_id or links.linked_to is not null as is_known,
    null::timestamp as first_seen_at,
from ids
left join links on ids.distinct_id = links.distinct_id
"""

_PEOPLE_WITH_WAREHOUSE = f"""
create or replace temp table people as
with

warehouse_ids as (
    select distinct_id, person_id
    from {LAKE_ALIAS}.dim_person_distinct_ids
    where distinct_id in (select distinct_id from ids union select linked_to from links)
),

resolved as (
    select
        ids.distinct_id,
        coalesce(
            by_id.person_id, by_link.person_id, links.linked_to, ids.distinct_id
        ) as person_id,
        ids.is_user_id or links.linked_to is not null as is_known,
    from ids
    left join links on ids.distinct_id = links.distinct_id
    left join warehouse_ids as by_id on ids.distinct_id = by_id.distinct_id
    left join warehouse_ids as by_link on links.linked_to = by_link.distinct_id
),

warehouse_people as (
    select person_id, is_known, first_seen_at
    from {LAKE_ALIAS}.dim_users
    where person_id in (select person_id from resolved)
)

select
    resolved.distinct_id,
    resolved.person_id,
    resolved.is_known or coalesce(warehouse_people.is_known, false) as is_known,
    warehouse_people.first_seen_at,
from resolved
left join warehouse_people on resolved.person_id = warehouse_people.person_id
"""

_PEOPLE_NOW = """
with

active as (
    select
        people.person_id,
        bool_or(people.is_known) as is_known,
        min(people.first_seen_at) as warehouse_first_seen_at,
    from messages
    inner join people on messages.distinct_id = people.distinct_id
    where messages.is_activity and messages.received_at > $active_start
    group by people.person_id
),

returning_people as (
    select distinct people.person_id
    from seen_before_today
    inner join people on seen_before_today.distinct_id = people.distinct_id
),

flagged as (
    select
        active.is_known,
        returning_people.person_id is not null
            or coalesce(active.warehouse_first_seen_at < $today_start, false) as is_returning,
    from active
    left join returning_people on active.person_id = returning_people.person_id
)

select
    count(*) as active_people,
    count(*) filter (where is_known) as known_people,
    count(*) filter (where not is_known) as unknown_people,
    count(*) filter (where not is_returning) as new_people,
    count(*) filter (where is_returning) as returning_people,
from flagged
"""

_EVENTS_PER_MINUTE = """
with

minutes as (
    select unnest(generate_series($series_start, $now, interval 1 minute)) as minute
),

counts as (
    select
        date_trunc('minute', received_at) as minute,
        count(*) as events,
        count(*) filter (where is_activity) as activity_events,
    from messages
    where received_at >= $series_start
    group by all
)

select
    minutes.minute,
    coalesce(counts.events, 0) as events,
    coalesce(counts.activity_events, 0) as activity_events,
from minutes
left join counts on minutes.minute = counts.minute
order by minutes.minute
"""

_TOP_EVENTS = """
select
    messages.event,
    count(*) as events,
    count(distinct people.person_id) as people,
from messages
inner join people on messages.distinct_id = people.distinct_id
where messages.is_activity and messages.type = 'track' and messages.received_at > $top_start
group by messages.event
order by events desc, messages.event
limit $top_limit
"""

# Page names group views of one kind of page ("Product Detail"); unnamed pages fall back to the
# URL path without query string or fragment, so UTM tags do not split one page into many.
_TOP_PAGES = """
with

views as (
    select
        coalesce(
            messages.event,
            nullif(regexp_extract(messages.context_page_url, $url_path, 1), ''),
            messages.context_page_url,
            '(unnamed ' || messages.type || ')'
        ) as page,
        people.person_id,
    from messages
    inner join people on messages.distinct_id = people.distinct_id
    where
        messages.is_activity and messages.type in ('page', 'screen')
        and messages.received_at > $top_start
)

select
    page,
    count(*) as views,
    count(distinct person_id) as people,
from views
group by page
order by views desc, page
limit $top_limit
"""

_URL_PATH = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^?#]*)"


def _compute(
    con: duckdb.DuckDBPyConnection,
    bounds: _Bounds,
    used_warehouse: bool,
    files_read: int,
    unreadable: tuple[Path, ...],
) -> LiveStats:
    _execute(con, _MESSAGES, bounds, inactive=list(INACTIVE_EVENTS))
    for sql in (_LINKS, _SEEN_BEFORE_TODAY, _IDS):
        _execute(con, sql, bounds)
    _execute(con, _PEOPLE_WITH_WAREHOUSE if used_warehouse else _PEOPLE_LAKE_ONLY, bounds)
    people = _execute(con, _PEOPLE_NOW, bounds).fetchone()
    (last_received_at,) = con.sql("select max(received_at) from messages").fetchone()
    return LiveStats(
        now=bounds.now,
        active_people=people[0],
        known_people=people[1],
        unknown_people=people[2],
        new_people=people[3],
        returning_people=people[4],
        events_per_minute=_execute(con, _EVENTS_PER_MINUTE, bounds).pl(),
        top_events=_execute(con, _TOP_EVENTS, bounds, top_limit=TOP_LIMIT).pl(),
        top_pages=_execute(con, _TOP_PAGES, bounds, top_limit=TOP_LIMIT, url_path=_URL_PATH).pl(),
        last_received_at=last_received_at,
        used_warehouse=used_warehouse,
        files_read=files_read,
        unreadable_files=unreadable,
    )
