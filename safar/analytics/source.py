"""Where analytics queries read from: two relations on a DuckDB connection, whatever the input.

Every engine (funnels, retention, trends, lifecycle, stickiness) compiles SQL against

- ``analytics_events(person_id VARCHAR, event VARCHAR, type VARCHAR, timestamp TIMESTAMP,
  properties JSON, seq)``: behavioural events (track, page, screen) with identity applied;
  ``timestamp`` is naive UTC; ``seq`` breaks timestamp ties deterministically (the message's
  position in a file, or the message id in the warehouse);
- ``analytics_persons(person_id VARCHAR, properties JSON)``: each person's latest traits.

so a query gives the same answer on a JSONL file, a raw-contract Parquet file and the
warehouse. The relations are temporary views or tables of the returned connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
from sqlglot import exp

from safar.analytics.events import EventLog, build_event_log, load_event_log
from safar.config import SafarHome

EVENTS = "analytics_events"
PERSONS = "analytics_persons"

_EVENT_SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("event", pa.string()),
        ("type", pa.string()),
        ("timestamp", pa.timestamp("us")),
        ("properties", pa.string()),
        ("seq", pa.int64()),
    ]
)
_PERSON_SCHEMA = pa.schema([("person_id", pa.string()), ("properties", pa.string())])


def join_persons(select: exp.Select, needed: bool) -> exp.Select:
    """Join person properties as ``p`` to a query over ``analytics_events e``.

    When no filter or breakdown reads them, ``p.properties`` is a NULL constant instead, so
    compiled expressions stay valid without paying for the join.
    """
    if needed:
        on = exp.EQ(this=exp.column("person_id", "p"), expression=exp.column("person_id", "e"))
        return select.join(
            exp.alias_(exp.to_table(PERSONS), "p", table=True), on=on, join_type="LEFT"
        )
    nothing = exp.select(exp.alias_(exp.cast(exp.Null(), "JSON"), "properties")).subquery("p")
    return select.join(nothing, join_type="CROSS")


@contextmanager
def temp_table(con: duckdb.DuckDBPyConnection, label: str, select: exp.Select) -> Iterator[str]:
    """Materialize ``select`` once as a temporary table; yields its name, drops it after.

    For intermediate results several queries read (a funnel's per-unit attempts, retention's
    people × periods), so the events are worked through once.
    """
    name = f"_{label}_{uuid.uuid4().hex}"
    create = exp.Create(
        this=exp.to_table(name),
        kind="TABLE",
        expression=select,
        properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
    )
    con.execute(create.sql("duckdb"))
    try:
        yield name
    finally:
        drop = exp.Drop(tables=[exp.to_table(name)], kind="TABLE", exists=True)
        con.execute(drop.sql("duckdb"))


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def connect_log(log: EventLog) -> duckdb.DuckDBPyConnection:
    """An in-memory connection holding ``log`` as the two analytics relations.

    Example:
        >>> log = build_event_log([{"type": "track", "event": "a", "userId": "u",
        ...                         "timestamp": "2026-01-01T00:00:00Z"}])
        >>> connect_log(log).sql(f"select person_id, event from {EVENTS}").fetchall()
        [('u', 'a')]
    """
    events = pa.table(
        {
            "person_id": [e.person_id for e in log.events],
            "event": [e.event for e in log.events],
            "type": [e.type for e in log.events],
            "timestamp": [e.timestamp for e in log.events],
            "properties": [_json(dict(e.properties)) for e in log.events],
            "seq": [e.position for e in log.events],
        },
        schema=_EVENT_SCHEMA,
    )
    persons = pa.table(
        {
            "person_id": list(log.person_properties),
            "properties": [_json(dict(p)) for p in log.person_properties.values()],
        },
        schema=_PERSON_SCHEMA,
    )
    con = duckdb.connect()
    con.register("_events_arrow", events)
    con.register("_persons_arrow", persons)
    con.execute(
        f"create table {EVENTS} as select person_id, event, type, timestamp,"
        " properties::json as properties, seq from _events_arrow"
    )
    con.execute(
        f"create table {PERSONS} as select person_id, properties::json as properties"
        " from _persons_arrow"
    )
    con.unregister("_events_arrow")
    con.unregister("_persons_arrow")
    return con


def parquet_messages(path: Path) -> Iterator[dict[str, Any]]:
    """Raw-contract rows (``safar.contract``) as Segment messages, in file order."""
    con = duckdb.connect()
    relation = con.sql(
        "select message_id, type, event, user_id, anonymous_id, previous_id, timestamp,"
        " properties, traits"
        " from read_parquet(?)",
        params=[str(path)],
    )
    while batch := relation.fetchmany(50_000):
        for message_id, kind, event, user, anonymous, previous, timestamp, props, traits in batch:
            yield {
                "messageId": message_id,
                "type": kind,
                "event": event,
                "name": event,
                "userId": user,
                "anonymousId": anonymous,
                "previousId": previous,
                "timestamp": timestamp.isoformat() + "Z" if timestamp else None,
                "properties": orjson.loads(props) if props else {},
                "traits": orjson.loads(traits) if traits else {},
            }


def connect_file(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A connection over a JSONL file of Segment messages or a raw-contract Parquet file.

    Raises:
        ValueError: the file is missing, of another kind, or a message is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix == ".parquet":
        try:
            return connect_log(build_event_log(parquet_messages(path)))
        except duckdb.Error as exc:
            raise ValueError(f"{path}: not a raw-contract Parquet file: {exc}") from None
    try:
        return connect_log(load_event_log(path))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSONL: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def connect_warehouse(home: SafarHome) -> duckdb.DuckDBPyConnection:
    """A read-only warehouse connection with the two relations as views over the marts."""
    from safar.warehouse import connect

    con = connect(home, read_only=True)
    con.execute(
        f"""
        create or replace temp view {EVENTS} as
        select person_id, event_name as event, type, occurred_at as timestamp,
               coalesce(properties, '{{}}')::json as properties, message_id as seq
        from lake.fct_events
        where type in ('track', 'page', 'screen')
        """
    )
    con.execute(
        f"""
        create or replace temp view {PERSONS} as
        select person_id, json_group_object(attribute, value_json::json)::json as properties
        from (
            select person_id, attribute, value_json
            from lake.int_traits_unpivoted
            qualify row_number() over (
                partition by person_id, attribute order by occurred_at desc, received_at desc
            ) = 1
        )
        group by person_id
        """
    )
    return con
