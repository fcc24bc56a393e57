"""Segment membership history in the lake, and the events every change of it emits.

Two DuckLake tables, written only by the segment evaluator:

- ``segment_membership(segment_id, person_id, entered_at, exited_at)``: one row per stay in a
  segment; current members have no ``exited_at``. A person who leaves and comes back has two
  rows. Segments read it (``{"segment": "vip"}``, or SQL over it), and it answers "who was in
  this segment on March 3rd".
- ``segment_evaluations(segment_id, evaluated_at, batch_id, version, inputs, size, entered,
  exited, events_published)``: one row per evaluation that ran, so segment size over time is
  one query, and a batch that was already evaluated is recognised.

An evaluation is applied in one transaction (new stays, closed stays, the evaluation row),
then its changes are published as ``Segment Entered`` / ``Segment Exited`` events in the
landing zone, then the evaluation is marked published. Event ids are derived from
(segment, person, change, time), so publishing twice — after a crash between landing the
file and marking it — lands the same ids, which the warehouse keeps once.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import polars as pl
import pyarrow as pa

from safar.config import SafarHome
from safar.lake import LakeWriter

MEMBERSHIP_TABLE = "lake.main.segment_membership"
EVALUATIONS_TABLE = "lake.main.segment_evaluations"
ENTERED = "Segment Entered"
EXITED = "Segment Exited"
SOURCE_ID = "safar-segments"
_EVENT_NAMESPACE = uuid.UUID("5a4e9d1c-6f0b-4c1e-9a57-3b1d2f0c5e11")

_DDL = (
    f"""create table if not exists {MEMBERSHIP_TABLE} (
        segment_id varchar not null,
        person_id varchar not null,
        entered_at timestamp not null,
        exited_at timestamp
    )""",
    f"""create table if not exists {EVALUATIONS_TABLE} (
        segment_id varchar not null,
        evaluated_at timestamp not null,
        batch_id varchar not null,
        version varchar not null,
        inputs varchar not null,
        size bigint not null,
        entered bigint not null,
        exited bigint not null,
        events_published boolean not null
    )""",
)


@dataclass(frozen=True)
class LastEvaluation:
    """What the previous evaluation of a segment saw."""

    evaluated_at: datetime
    batch_id: str
    version: str
    inputs: str
    size: int


@dataclass(frozen=True)
class Change:
    """What one evaluation changed."""

    size: int
    entered: int
    exited: int


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the membership tables if this warehouse has none yet (a writable connection)."""
    for statement in _DDL:
        con.execute(statement)


def last_evaluations(con: duckdb.DuckDBPyConnection) -> dict[str, LastEvaluation]:
    """The latest evaluation of every segment that has one.

    Raises:
        duckdb.CatalogException: the warehouse has no evaluations table yet.
    """
    rows = con.execute(
        f"""select segment_id, evaluated_at, batch_id, version, inputs, size
        from {EVALUATIONS_TABLE}
        qualify row_number() over (partition by segment_id order by evaluated_at desc) = 1"""
    ).fetchall()
    return {row[0]: LastEvaluation(*row[1:]) for row in rows}


def batch_seen(con: duckdb.DuckDBPyConnection, segment_id: str, batch_id: str) -> bool:
    """Whether ``segment_id`` was already evaluated for ``batch_id``."""
    (count,) = con.execute(
        f"select count(*) from {EVALUATIONS_TABLE} where segment_id = ? and batch_id = ?",
        [segment_id, batch_id],
    ).fetchone()
    return count > 0


def apply_members(
    con: duckdb.DuckDBPyConnection,
    segment_id: str,
    members: list[str],
    *,
    as_of: datetime,
    batch_id: str,
    version: str,
    inputs: str,
) -> Change:
    """Diff ``members`` against the current stays and record the result, all in one transaction.

    Newcomers get a stay starting at ``as_of``; current members not in ``members`` have their
    stay closed at ``as_of``. The caller guarantees ``as_of`` is later than the segment's last
    evaluation.
    """
    current = pa.table({"person_id": pa.array(sorted(set(members)), pa.string())})
    con.register("segment_now", current)
    try:
        con.execute("begin transaction")
        (entered,) = con.execute(
            f"""insert into {MEMBERSHIP_TABLE}
            select ?, n.person_id, ?, null from segment_now n
            where not exists (
                select 1 from {MEMBERSHIP_TABLE} m
                where m.segment_id = ? and m.exited_at is null and m.person_id = n.person_id
            )""",
            [segment_id, as_of, segment_id],
        ).fetchone()
        (exited,) = con.execute(
            f"""update {MEMBERSHIP_TABLE} set exited_at = ?
            where segment_id = ? and exited_at is null
              and person_id not in (select person_id from segment_now)""",
            [as_of, segment_id],
        ).fetchone()
        change = Change(size=current.num_rows, entered=entered, exited=exited)
        con.execute(
            f"insert into {EVALUATIONS_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                segment_id,
                as_of,
                batch_id,
                version,
                inputs,
                change.size,
                change.entered,
                change.exited,
                change.entered == 0 and change.exited == 0,
            ],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        con.unregister("segment_now")
    return change


def event_id(segment_id: str, person_id: str, change: str, at: datetime) -> str:
    """The message id of a membership event: the same change always gets the same id.

    Example:
        >>> a = event_id("vip", "p1", ENTERED, datetime(2026, 1, 1))
        >>> a == event_id("vip", "p1", ENTERED, datetime(2026, 1, 1)), len(a)
        (True, 36)
        >>> a == event_id("vip", "p1", EXITED, datetime(2026, 1, 1))
        False
    """
    name = f"{segment_id}\x1f{person_id}\x1f{change}\x1f{at.isoformat()}"
    return str(uuid.uuid5(_EVENT_NAMESPACE, name))


def publish_pending(con: duckdb.DuckDBPyConnection, home: SafarHome, names: dict[str, str]) -> int:
    """Land the events of every evaluation not yet published; how many events were landed.

    ``names`` maps segment ids to display names (carried in the events' properties).
    """
    pending = con.execute(
        f"""select segment_id, evaluated_at, batch_id from {EVALUATIONS_TABLE}
        where not events_published order by evaluated_at, segment_id"""
    ).fetchall()
    landed = 0
    for segment_id, evaluated_at, batch_id in pending:
        landed += _publish(con, home, segment_id, evaluated_at, batch_id, names)
        con.execute(
            f"""update {EVALUATIONS_TABLE} set events_published = true
            where segment_id = ? and evaluated_at = ?""",
            [segment_id, evaluated_at],
        )
    return landed


def _publish(
    con: duckdb.DuckDBPyConnection,
    home: SafarHome,
    segment_id: str,
    at: datetime,
    batch_id: str,
    names: dict[str, str],
) -> int:
    # Known people are addressed by user id, anonymous ones by their anonymous id, so the
    # event resolves to the same person as everything else they did. A person is known when
    # their person id is an identified id (dim_users.user_id says the same), read from the
    # identity mart because it is refreshed with the events, before dim_users.
    rows = con.execute(
        f"""select m.person_id, m.entered_at = ? as entered, ids.distinct_id as user_id
        from {MEMBERSHIP_TABLE} m
        left join lake.main.dim_person_distinct_ids ids
            on ids.distinct_id = m.person_id and ids.is_identified_id
        where m.segment_id = ? and (m.entered_at = ? or m.exited_at = ?)
        order by m.person_id""",
        [at, segment_id, at, at],
    ).fetchall()
    if not rows:
        return 0
    now = datetime.now(UTC).replace(tzinfo=None)
    properties = json.dumps(
        {
            "segment_id": segment_id,
            "segment_name": names.get(segment_id, segment_id),
            "batch_id": batch_id,
        },
        ensure_ascii=False,
    )
    context = json.dumps({"library": {"name": SOURCE_ID}})
    events = []
    for person_id, entered, user_id in rows:
        change = ENTERED if entered else EXITED
        events.append(
            {
                "message_id": event_id(segment_id, person_id, change, at),
                "type": "track",
                "event": change,
                "user_id": user_id,
                "anonymous_id": None if user_id else person_id,
                "timestamp": at,
                "original_timestamp": at,
                "sent_at": now,
                "received_at": now,
                "properties": properties,
                "context": context,
                "source_id": SOURCE_ID,
            }
        )
    frame = pl.DataFrame(
        events,
        schema={
            "message_id": pl.String,
            "type": pl.String,
            "event": pl.String,
            "user_id": pl.String,
            "anonymous_id": pl.String,
            "timestamp": pl.Datetime("us"),
            "original_timestamp": pl.Datetime("us"),
            "sent_at": pl.Datetime("us"),
            "received_at": pl.Datetime("us"),
            "properties": pl.String,
            "context": pl.String,
            "source_id": pl.String,
        },
    )
    result = LakeWriter(home).write(frame)
    if result.rejected:
        raise RuntimeError(
            f"{result.rejected} segment event(s) of {segment_id!r} were rejected;"
            f" see {result.rejected_file}"
        )
    return result.accepted


def members_at(con: duckdb.DuckDBPyConnection, segment_id: str, at: datetime) -> list[str]:
    """Who was in the segment at ``at`` (entered at or before, not yet exited)."""
    rows = con.execute(
        f"""select person_id from {MEMBERSHIP_TABLE}
        where segment_id = ? and entered_at <= ? and (exited_at is null or exited_at > ?)
        order by person_id""",
        [segment_id, at, at],
    ).fetchall()
    return [r[0] for r in rows]


def size_history(con: duckdb.DuckDBPyConnection, segment_id: str) -> list[tuple[datetime, int]]:
    """The segment's size after each evaluation, oldest first."""
    return con.execute(
        f"""select evaluated_at, size from {EVALUATIONS_TABLE}
        where segment_id = ? order by evaluated_at""",
        [segment_id],
    ).fetchall()


@dataclass(frozen=True)
class SizeSummary:
    """A segment's latest size, when it was measured, and the change over the week before."""

    size: int | None = None
    evaluated_at: datetime | None = None
    change_7d: int | None = None


def size_summaries(con: duckdb.DuckDBPyConnection) -> dict[str, SizeSummary]:
    """The latest size of every evaluated segment, with its change since 7 days earlier.

    The change is None while the segment's history is shorter than a week.
    """
    try:
        rows = con.execute(
            f"""with latest as (
                select segment_id, evaluated_at, size from {EVALUATIONS_TABLE}
                qualify row_number()
                    over (partition by segment_id order by evaluated_at desc) = 1
            ),
            week_ago as (
                select e.segment_id, e.size
                from {EVALUATIONS_TABLE} as e inner join latest as l using (segment_id)
                where e.evaluated_at <= l.evaluated_at - interval 7 day
                qualify row_number()
                    over (partition by e.segment_id order by e.evaluated_at desc) = 1
            )
            select l.segment_id, l.size, l.evaluated_at, l.size - w.size
            from latest as l left join week_ago as w using (segment_id)"""
        ).fetchall()
    except duckdb.CatalogException:
        return {}  # no evaluation has run on this warehouse yet
    return {row[0]: SizeSummary(*row[1:]) for row in rows}
