"""Preview a segment before saving it: how many people, and a few of them.

One query on the locked sandbox connection: the segment's checked query becomes a CTE, the
distinct members are counted, and a stable pseudo-random sample (ordered by a hash of the
person id, so the same definition shows the same people) is joined to their profiles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlglot
from sqlglot import exp

from safar.config import SafarHome
from safar.segments.compile import CompiledSegment, compile_segment
from safar.segments.definitions import SegmentDefinition
from safar.segments.sandbox import (
    Catalog,
    Limits,
    execute,
    load_catalog,
    locked_connection,
    manifest_path,
)

SAMPLE_COLUMNS = ("person_id", "user_id", "name", "email", "phone", "carrier", "last_seen_at")
DEFAULT_LIMITS = Limits()

_TEMPLATE = f"""
with segment as (select 1 as user_id),
ids as (select distinct user_id from segment where user_id is not null),
total as (select count(*) as size from ids),
sample as (
    select {", ".join(f"u.{c}" for c in SAMPLE_COLUMNS)}, hash(ids.user_id) as _order
    from ids join dim_users as u on u.person_id = ids.user_id
    order by _order, u.person_id
    limit 10
)
select total.size, {", ".join(f"sample.{c}" for c in SAMPLE_COLUMNS)}
from total left join sample on true
order by sample._order, sample.person_id
"""


@dataclass(frozen=True)
class Preview:
    """The size of a segment at ``as_of`` and a sample of its people."""

    slug: str
    as_of: datetime
    size: int
    sample: list[dict[str, Any]]
    time_relative: bool
    description: str
    seconds: float


def preview_query(compiled: CompiledSegment, sample: int) -> exp.Query:
    """The count-and-sample query around the segment's checked query."""
    if compiled.query is None:
        raise ValueError("a static list has no query to preview")
    query = sqlglot.parse_one(_TEMPLATE, read="duckdb")
    for cte in query.find_all(exp.CTE):
        if cte.alias == "segment":
            cte.set("this", compiled.query.copy())
        if cte.alias == "sample":
            cte.this.set("limit", exp.Limit(expression=exp.Literal.number(int(sample))))
    return query


def preview(
    home: SafarHome,
    definition: SegmentDefinition,
    catalog: Catalog | None = None,
    *,
    as_of: datetime,
    sample: int = 10,
    limits: Limits = DEFAULT_LIMITS,
) -> Preview:
    """Count ``definition``'s members at ``as_of`` and show ``sample`` of them.

    Without ``catalog`` it is read on the same connection the preview runs on (one attach of
    the warehouse instead of two); callers that keep a catalog pass it.

    Raises:
        CompileError: the definition does not compile or fails the sandbox.
        SandboxError: the query failed or ran out of time.
    """
    started = time.perf_counter()
    con = locked_connection(home, limits)
    try:
        if catalog is None:
            catalog = load_catalog(con, manifest_path(home))
        compiled = compile_segment(definition, catalog, as_of=as_of)
        rows = execute(con, preview_query(compiled, sample), limits)
    finally:
        con.close()
    size = rows[0][0] if rows else 0
    people = [dict(zip(SAMPLE_COLUMNS, row[1:], strict=True)) for row in rows if row[1]]
    return Preview(
        slug=definition.slug,
        as_of=compiled.as_of,
        size=size,
        sample=people,
        time_relative=compiled.time_relative,
        description=compiled.description,
        seconds=time.perf_counter() - started,
    )
