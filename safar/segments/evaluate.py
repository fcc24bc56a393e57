"""Evaluate segments in micro-batches: only those whose inputs changed or whose time has come.

After each ingest batch, a segment is re-evaluated when

- it was never evaluated, or its definition changed (a new ``version``);
- a table it reads changed (its DuckLake fingerprint: table id, data and delete files);
- it is time-relative ("no app open in 7 days") and the clock moved on: its members can change
  with no new event, so it is re-checked at least every ``recheck`` (a minute by default);

and a segment with an interval ``refresh`` is evaluated at most once per interval. Segments
that read other segments' membership go after the ones that do not, so a chain settles within
one batch as long as it is one level deep (deeper chains settle over the next batches).

Everything is keyed by the batch: evaluating a batch that was already evaluated is a no-op,
and evaluation times only move forward, so replaying old batches emits nothing new. The
evaluation time is pinned into every query (see :mod:`safar.segments.compile`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import duckdb

from safar.config import SafarHome
from safar.segments.compile import CompiledSegment, CompileError, compile_segment, naive_utc
from safar.segments.definitions import SegmentDefinition
from safar.segments.membership import (
    LastEvaluation,
    apply_members,
    batch_seen,
    ensure_tables,
    last_evaluations,
    publish_pending,
)
from safar.segments.sandbox import (
    Limits,
    SandboxError,
    load_catalog,
    locked_connection,
    manifest_path,
    run,
)
from safar.warehouse import connect
from safar.writer_lock import warehouse_writer

log = logging.getLogger(__name__)

DEFAULT_LIMITS = Limits()

TIME_RECHECK = timedelta(minutes=1)
"""How often a live, time-relative segment is re-checked when nothing else changed."""

Status = Literal["evaluated", "skipped", "failed"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one segment in one evaluation pass."""

    slug: str
    status: Status
    reason: str
    size: int | None = None
    entered: int = 0
    exited: int = 0
    seconds: float = 0.0


StaticMembers = Callable[[str], list[str]]
"""The person ids of a static list, by slug (the app DB holds them)."""


def due_reason(
    definition: SegmentDefinition,
    *,
    time_relative: bool,
    inputs: str,
    last: LastEvaluation | None,
    as_of: datetime,
    recheck: timedelta = TIME_RECHECK,
) -> str | None:
    """Why the segment must be evaluated at ``as_of``, or None if its members cannot differ.

    Example:
        >>> from safar.segments.definitions import SegmentDefinition
        >>> d = SegmentDefinition(slug="vip", name="VIP", kind="sql", sql="select 1")
        >>> t0, t1 = datetime(2026, 1, 1), datetime(2026, 1, 1, 1)
        >>> last = LastEvaluation(t0, "b1", d.version, "i1", 10)
        >>> due_reason(d, time_relative=False, inputs="i1", last=last, as_of=t1)
        >>> due_reason(d, time_relative=False, inputs="i2", last=last, as_of=t0)
        'its tables changed'
        >>> due_reason(d, time_relative=True, inputs="i1", last=last, as_of=t1)
        'time-relative, last checked 1:00:00 ago'
    """
    if last is None:
        return "never evaluated"
    if last.version != definition.version:
        return "its definition changed"
    elapsed = as_of - last.evaluated_at
    if definition.refresh is not None and elapsed < definition.refresh:
        return None
    if last.inputs != inputs:
        return "its tables changed"
    if time_relative and elapsed >= recheck:
        return f"time-relative, last checked {elapsed} ago"
    return None


def table_fingerprints(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """A fingerprint of every warehouse table: it changes whenever the table's data does.

    DuckLake rewrites a table as new data and delete files (a rebuilt table gets a new id),
    so the id with the files' counts and sizes moves on every write and only then.
    """
    rows = con.execute(
        """select table_name, table_uuid, file_count, file_size_bytes,
                  delete_file_count, delete_file_size_bytes
        from ducklake_table_info('lake')"""
    ).fetchall()
    return {row[0]: ":".join(str(v) for v in row[1:]) for row in rows}


def inputs_of(compiled: CompiledSegment, fingerprints: dict[str, str]) -> str:
    """The fingerprint of everything the segment reads (a static list: its members)."""
    if compiled.definition.kind == "static":
        return f"list:{compiled.definition.list_digest}"
    parts = [f"{t}={fingerprints.get(t, 'missing')}" for t in sorted(compiled.tables)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def clock_due(
    home: SafarHome,
    definitions: Sequence[SegmentDefinition],
    *,
    now: datetime,
    recheck: timedelta = TIME_RECHECK,
    manifest: Path | None = None,
) -> list[str]:
    """The segments an evaluation at ``now`` would run even if no table changed.

    Those never evaluated or whose definition changed, and the time-relative ones whose
    last check is older than ``recheck`` (or than their refresh interval). Segments that do
    not compile are left to the evaluation to report. Read-only: the scheduler asks this
    before paying for a run.
    """
    now = naive_utc(now)
    con = connect(home, read_only=True)
    try:
        catalog = load_catalog(con, manifest or manifest_path(home))
        try:
            last = last_evaluations(con)
        except duckdb.CatalogException:
            last = {}  # nothing was ever evaluated on this warehouse
    finally:
        con.close()
    due = []
    for definition in definitions:
        previous = last.get(definition.slug)
        if previous is None or previous.version != definition.version:
            due.append(definition.slug)
            continue
        try:
            compiled = compile_segment(definition, catalog, as_of=now)
        except CompileError:
            continue
        interval = max(recheck, definition.refresh or recheck)
        if compiled.time_relative and now - previous.evaluated_at >= interval:
            due.append(definition.slug)
    return due


def evaluate_segments(
    home: SafarHome,
    definitions: Sequence[SegmentDefinition],
    *,
    as_of: datetime,
    batch_id: str,
    static_members: StaticMembers | None = None,
    force: bool = False,
    recheck: timedelta = TIME_RECHECK,
    limits: Limits = DEFAULT_LIMITS,
    manifest: Path | None = None,
    waiting_for: Collection[str] = frozenset(),
) -> list[Outcome]:
    """Evaluate the due segments of ``definitions`` at ``as_of`` for ``batch_id``.

    Args:
        home: the Safar home; its warehouse must be built.
        definitions: the segments to consider (usually all of them).
        as_of: the evaluation time, pinned into every query; naive UTC or aware.
        batch_id: names the batch (the ingest run key); a batch is evaluated once per segment.
        static_members: reads a static list's members; needed only if a list is due.
        force: evaluate every segment whatever changed (still once per batch).
        recheck: how often live time-relative segments are re-checked.
        limits: memory and time limits of each segment query.
        manifest: the dbt manifest naming the marts (default: the home's newest).
        waiting_for: tables this batch refreshes later; a segment reading one is left for
            the evaluation after that refresh (it is not marked as evaluated for this batch).

    Returns:
        One outcome per definition, in evaluation order. A segment that fails (bad SQL, a
        timeout) is reported and the others go on.
    """
    as_of = naive_utc(as_of)
    names = {d.slug: d.name for d in definitions}
    outcomes: list[Outcome] = []
    # Held from before the first read: two passes must not both find the same change.
    with warehouse_writer(home, purpose=f"segment evaluation {batch_id}"):
        writer = connect(home)
        try:
            ensure_tables(writer)
            # A pass that stopped after applying but before publishing left events owed.
            publish_pending(writer, home, names)
            catalog = load_catalog(writer, manifest or manifest_path(home))
            compiled: list[CompiledSegment] = []
            for definition in definitions:
                try:
                    compiled.append(compile_segment(definition, catalog, as_of=as_of))
                except CompileError as exc:
                    if waiting_for:
                        # It may read a table the later refresh creates (a first batch); the
                        # evaluation after that refresh reports the error if it stays.
                        reason = f"waits for {', '.join(sorted(waiting_for))}: {exc.reason}"
                        outcomes.append(Outcome(definition.slug, "skipped", reason))
                    else:
                        outcomes.append(Outcome(definition.slug, "failed", exc.reason))
            compiled.sort(key=lambda c: (c.reads_membership, c.definition.slug))
            last = last_evaluations(writer)
            reader = locked_connection(home, limits)
            try:
                for segment in compiled:
                    if stale := sorted(segment.tables & set(waiting_for)):
                        outcomes.append(
                            Outcome(
                                segment.definition.slug, "skipped", f"waits for {', '.join(stale)}"
                            )
                        )
                        continue
                    outcomes.append(
                        _evaluate_one(
                            writer,
                            reader,
                            segment,
                            last.get(segment.definition.slug),
                            batch_id=batch_id,
                            static_members=static_members,
                            force=force,
                            recheck=recheck,
                            limits=limits,
                        )
                    )
            finally:
                reader.close()
            publish_pending(writer, home, names)
        finally:
            writer.close()
    return outcomes


def _evaluate_one(
    writer: duckdb.DuckDBPyConnection,
    reader: duckdb.DuckDBPyConnection,
    segment: CompiledSegment,
    last: LastEvaluation | None,
    *,
    batch_id: str,
    static_members: StaticMembers | None,
    force: bool,
    recheck: timedelta,
    limits: Limits,
) -> Outcome:
    definition, as_of = segment.definition, segment.as_of
    slug = definition.slug
    if batch_seen(writer, slug, batch_id):
        return Outcome(slug, "skipped", f"batch {batch_id} was already evaluated")
    if last is not None and as_of <= last.evaluated_at:
        return Outcome(slug, "skipped", f"already evaluated at {last.evaluated_at}, not earlier")
    # Fingerprints are read per segment: an earlier segment of this pass may have changed
    # segment_membership, which the later ones read.
    inputs = inputs_of(segment, table_fingerprints(writer))
    reason = due_reason(
        definition,
        time_relative=segment.time_relative,
        inputs=inputs,
        last=last,
        as_of=as_of,
        recheck=recheck,
    )
    if force:
        reason = reason or "forced"
    if reason is None:
        size = last.size if last else None
        return Outcome(slug, "skipped", "nothing it reads changed", size=size)
    started = time.perf_counter()
    try:
        if segment.query is None:
            if static_members is None:
                raise SandboxError("static list members are not available here")
            members = static_members(slug)
        else:
            members = run(reader, segment.query, limits)
    except SandboxError as exc:
        log.warning("segment %s failed: %s", slug, exc)
        return Outcome(slug, "failed", str(exc))
    change = apply_members(
        writer,
        slug,
        members,
        as_of=as_of,
        batch_id=batch_id,
        version=definition.version,
        inputs=inputs,
    )
    return Outcome(
        slug,
        "evaluated",
        reason,
        size=change.size,
        entered=change.entered,
        exited=change.exited,
        seconds=time.perf_counter() - started,
    )
