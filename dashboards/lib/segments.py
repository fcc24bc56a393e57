"""Data access for the Segments pages: definitions, sizes, previews, uploads, saves.

Like :mod:`dashboards.lib.queries`, every function takes the Safar home as a string so a cache
key names the warehouse it read. What is expensive is cached: the warehouse catalog segments
are checked against (keyed by the dbt manifest's modification time, so a rebuild is seen at
once), sizes and histories from the evaluations table (a short TTL: the evaluator writes them
after every micro-batch), previews (keyed by the definition and the minute they are as of),
and the matching of an uploaded file (keyed by its bytes). Definitions are read uncached from
``segments_sql/`` and the app DB, so a save or a delete shows at once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import sqlalchemy as sa
import streamlit as st

from dashboards.lib import queries
from safar.appdb import segments as app_segments
from safar.config import SafarHome
from safar.segments.builder import ATTRIBUTES, TECHNOLOGY, Field
from safar.segments.compile import CompiledSegment, compile_segment
from safar.segments.definitions import SegmentDefinition
from safar.segments.membership import SizeSummary, size_history, size_summaries
from safar.segments.preview import Preview, preview
from safar.segments.registry import file_slugs, load_segments
from safar.segments.sandbox import Catalog, manifest_path, read_catalog
from safar.segments.static_list import (
    Kind,
    MatchReport,
    StaticList,
    match_static_list,
    parse_static_list,
)
from safar.warehouse import connect

CACHE_TTL_SECONDS = queries.CACHE_TTL_SECONDS
CACHE_MAX_ENTRIES = queries.CACHE_MAX_ENTRIES
SAMPLE_SIZE = 10
SUGGESTIONS = 50
"""Values offered for a text field: the most common ones in the warehouse."""


def now() -> datetime:
    """The evaluation time of a preview or a check: now, naive UTC (the warehouse's clock)."""
    return datetime.now(UTC).replace(tzinfo=None)


def registry(home: str) -> sa.Engine:
    """The app DB where app segments live (``queries.app_db``: one engine per process)."""
    return queries.app_db(home)


def load_definitions(home: str) -> list[SegmentDefinition]:
    """Every segment, files and app, by slug (uncached: a save shows at once).

    Raises:
        DefinitionError: a bad file in ``segments_sql/``, or a slug defined twice.
    """
    return load_segments(registry(home))


def reserved_slugs() -> frozenset[str]:
    """The slugs of ``segments_sql/`` files, which the app may not use."""
    return file_slugs()


def get_app_segment(home: str, slug: str) -> SegmentDefinition | None:
    return app_segments.get_segment(registry(home), slug)


def delete_app_segment(home: str, slug: str) -> None:
    """Delete an app segment (its membership history stays in the lake)."""
    app_segments.delete_segment(registry(home), slug)


# --- the warehouse catalog -------------------------------------------------------------------


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def _load_catalog(home: str, manifest: str, manifest_version: int) -> dict[str, dict[str, str]]:
    try:
        return read_catalog(SafarHome(Path(home)), Path(manifest))
    except FileNotFoundError as exc:
        raise queries.WarehouseNotReady(str(exc)) from exc


def catalog(home: str) -> Catalog:
    """The relations and columns segments may read (``safar.segments.sandbox.load_catalog``).

    Raises:
        WarehouseNotReady: no warehouse or no dbt manifest yet.
    """
    manifest = manifest_path(SafarHome(Path(home)))
    if not manifest.exists():
        raise queries.WarehouseNotReady(f"no dbt manifest at {manifest}: run `safar build` first")
    return _load_catalog(home, str(manifest), manifest.stat().st_mtime_ns)


def check(home: str, definition: SegmentDefinition) -> CompiledSegment:
    """Compile ``definition`` against the warehouse catalog, as of now.

    Raises:
        CompileError: the SQL fails the sandbox or the tree is invalid.
        WarehouseNotReady: the warehouse is not built.
    """
    return compile_segment(definition, catalog(home), as_of=now())


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def _preview(
    home: str, slug: str, kind: str, sql: str | None, condition: str | None, as_of: datetime
) -> Preview:
    definition = SegmentDefinition(
        slug=slug,
        name=slug,
        kind=kind,  # type: ignore[arg-type]
        sql=sql,
        condition=None if condition is None else json.loads(condition),
    )
    return preview(
        SafarHome(Path(home)), definition, catalog(home), as_of=as_of, sample=SAMPLE_SIZE
    )


def run_preview(home: str, definition: SegmentDefinition) -> Preview:
    """Count a SQL or builder definition's members now and sample a few (cached a minute).

    Raises:
        CompileError: the definition does not compile.
        SandboxError: the query failed or ran out of time.
        WarehouseNotReady: the warehouse is not built.
    """
    condition = definition.condition
    return _preview(
        home,
        definition.slug,
        definition.kind,
        definition.sql,
        None if condition is None else json.dumps(condition, sort_keys=True),
        now().replace(second=0, microsecond=0),
    )


# --- sizes -----------------------------------------------------------------------------------


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_sizes(home: str) -> dict[str, SizeSummary]:
    """The latest size, its time and the 7-day change of every evaluated segment; {} when none."""
    try:
        con = connect(SafarHome(Path(home)), read_only=True)
    except FileNotFoundError:
        return {}
    try:
        return size_summaries(con)
    finally:
        con.close()


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_histories(home: str, slugs: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    """Each segment's size after each evaluation (``evaluated_at``, ``size``), oldest first."""
    empty = pl.DataFrame(schema={"evaluated_at": pl.Datetime("us"), "size": pl.Int64})
    try:
        con = connect(SafarHome(Path(home)), read_only=True)
    except FileNotFoundError:
        return {slug: empty for slug in slugs}
    try:
        histories = {}
        for slug in slugs:
            try:
                rows = size_history(con, slug)
            except duckdb.CatalogException:  # nothing evaluated on this warehouse yet
                rows = []
            histories[slug] = pl.DataFrame(rows, schema=empty.schema, orient="row")
        return histories
    finally:
        con.close()


def static_size(home: str, slug: str) -> int:
    """How many people the static list ``slug`` holds (from the app DB)."""
    return len(app_segments.list_members(registry(home), slug))


def load_static_sample(home: str, slug: str) -> pl.DataFrame:
    """The profiles of the first few people of the static list ``slug``.

    Raises:
        WarehouseNotReady: the warehouse is not built.
    """
    members = app_segments.list_members(registry(home), slug)[:SAMPLE_SIZE]
    return queries.read_frame(
        home,
        "select person_id, user_id, name, email, phone, carrier, last_seen_at from dim_users"
        " where person_id in (select unnest(?)) order by person_id",
        [members],
    )


# --- the builder's pick lists ----------------------------------------------------------------


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def _field_values(home: str, table: str, column: str) -> list[str]:
    frame = queries.read_frame(
        home,
        f"select {column} as value from {table} where {column} is not null and {column} <> ''"
        f" group by {column} order by count(*) desc, {column} limit {SUGGESTIONS}",
    )
    return [str(v) for v in frame["value"].to_list()]


def field_values(home: str, kind: str, name: str) -> list[str]:
    """The most common values of an attribute or technology field: its choices, else the
    warehouse's (only columns from the builder's registries reach the SQL)."""
    field: Field = (ATTRIBUTES if kind == "attribute" else TECHNOLOGY)[name]
    if field.choices:
        return list(field.choices)
    if field.table not in ("dim_users", "dim_devices"):
        return []
    return _field_values(home, field.table, field.column)


# --- uploaded lists --------------------------------------------------------------------------


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=8, show_spinner=False)
def match_upload(
    home: str, data: bytes, column: str | None, kind: Kind | None
) -> tuple[StaticList, MatchReport]:
    """Parse an uploaded list and find its people in ``dim_users`` (one join).

    Raises:
        StaticListError: the file cannot be used at all (the message names the line).
        WarehouseNotReady: the warehouse is not built.
    """
    parsed = parse_static_list(data, column=column, kind=kind)
    try:
        con = connect(SafarHome(Path(home)), read_only=True)
    except FileNotFoundError as exc:
        raise queries.WarehouseNotReady(str(exc)) from exc
    try:
        return parsed, match_static_list(con, parsed)
    finally:
        con.close()


def unmatched_frame(report: MatchReport) -> pl.DataFrame:
    """The rows of an upload that selected nobody: line, value and why."""
    return pl.DataFrame(
        {
            "Line": [row.line for row in report.unmatched],
            "Value": [row.raw for row in report.unmatched],
            "Why": [row.reason for row in report.unmatched],
        },
        schema={"Line": pl.Int64, "Value": pl.String, "Why": pl.String},
    )


# --- saving ----------------------------------------------------------------------------------


def save(home: str, definition: SegmentDefinition) -> SegmentDefinition:
    """Store a SQL or builder segment in the app DB (compiled first; file slugs refused).

    Raises:
        DefinitionError: a bad slug or name, or the slug of a file segment.
        CompileError: the definition does not compile (nothing is stored).
        WarehouseNotReady: the warehouse is not built.
    """
    return app_segments.save_segment(
        registry(home), definition, catalog(home), reserved=reserved_slugs()
    )


def save_list(home: str, report: MatchReport, **fields: Any) -> SegmentDefinition:
    """Store the people an upload matched as a static list (``slug``, ``name``, …)."""
    return app_segments.save_static_list(
        registry(home),
        fields.pop("slug"),
        fields.pop("name"),
        report.person_ids,
        reserved=reserved_slugs(),
        **fields,
    )
