"""Segments made in the app: SQL written in the editor, builder trees, uploaded static lists.

Segments in ``segments_sql/`` belong to git and are never stored here; the app refuses their
slugs. A definition is compiled against the warehouse catalog before it is stored, so a
segment that cannot run is never saved. A static list stores its matched person ids; its
``list_digest`` changes whenever they do, which makes the evaluator pick the new list up.

Example:
    >>> import tempfile
    >>> from safar.appdb import open_app_db
    >>> engine = open_app_db(url=f"sqlite:///{tempfile.mkdtemp()}/app.sqlite")
    >>> saved = save_static_list(engine, "beta-testers", "Beta testers", ["p2", "p1", "p2"])
    >>> list_members(engine, "beta-testers")
    ['p1', 'p2']
    >>> [(s.slug, s.kind) for s in list_segments(engine)]
    [('beta-testers', 'static')]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable
from datetime import UTC, datetime

import sqlalchemy as sa

from safar.appdb.schema import segment_list_members, segments
from safar.segments.compile import compile_segment
from safar.segments.definitions import (
    DefinitionError,
    SegmentDefinition,
    check_slug,
    format_refresh,
    parse_refresh,
)
from safar.segments.sandbox import Catalog

MAX_NAME_LENGTH = 200


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise DefinitionError("name: a segment needs a name")
    if len(name) > MAX_NAME_LENGTH or any(not c.isprintable() for c in name):
        raise DefinitionError(
            f"name: at most {MAX_NAME_LENGTH} printable characters, not {name[:40]!r}"
        )
    return name


def _definition(row: sa.Row) -> SegmentDefinition:
    body = row.definition
    return SegmentDefinition(
        slug=row.slug,
        name=row.name,
        kind=row.kind,
        description=row.description,
        owner=row.owner,
        refresh=parse_refresh(row.refresh),
        sql=body if row.kind == "sql" else None,
        condition=json.loads(body) if row.kind == "builder" else None,
        list_digest=row.list_digest,
        origin="app",
    )


def _store(
    engine: sa.Engine,
    definition: SegmentDefinition,
    reserved: Collection[str],
    members: list[str] | None = None,
) -> SegmentDefinition:
    check_slug(definition.slug)
    if definition.slug in reserved:
        raise DefinitionError(
            f"slug: {definition.slug!r} is defined in segments_sql/; change it there"
        )
    name = _check_name(definition.name)
    if definition.kind == "sql":
        body = definition.sql
    elif definition.kind == "builder":
        body = json.dumps(definition.condition, ensure_ascii=False, sort_keys=True)
    else:
        body = None
    now = _now()
    values = {
        "name": name,
        "description": definition.description.strip(),
        "owner": definition.owner.strip(),
        "kind": definition.kind,
        "definition": body,
        "refresh": format_refresh(definition.refresh),
        "list_digest": definition.list_digest,
        "updated_at": now,
    }
    with engine.begin() as con:
        updated = con.execute(
            segments.update().where(segments.c.slug == definition.slug).values(**values)
        ).rowcount
        if not updated:
            con.execute(segments.insert().values(slug=definition.slug, created_at=now, **values))
        if members is not None:
            con.execute(
                segment_list_members.delete().where(segment_list_members.c.slug == definition.slug)
            )
            if members:
                con.execute(
                    segment_list_members.insert(),
                    [{"slug": definition.slug, "person_id": p} for p in members],
                )
        row = con.execute(sa.select(segments).where(segments.c.slug == definition.slug)).one()
    return _definition(row)


def save_segment(
    engine: sa.Engine,
    definition: SegmentDefinition,
    catalog: Catalog,
    *,
    reserved: Collection[str] = (),
) -> SegmentDefinition:
    """Store a SQL or builder segment under its slug, replacing one of that slug.

    Args:
        engine: the app DB.
        definition: a ``sql`` or ``builder`` definition.
        catalog: the warehouse relations (the definition must compile against them).
        reserved: slugs that belong to ``segments_sql/`` files.

    Raises:
        DefinitionError: bad slug or name, or a slug of a file segment.
        CompileError: the SQL fails the sandbox or the tree is invalid (nothing is stored).
    """
    if definition.kind not in ("sql", "builder"):
        raise DefinitionError("kind: save a static list with save_static_list")
    compile_segment(definition, catalog, as_of=_now())
    return _store(engine, definition, reserved)


def list_digest(person_ids: Iterable[str]) -> str:
    """A fingerprint of a static list's members (order and repeats do not matter)."""
    return hashlib.sha256("\n".join(sorted(set(person_ids))).encode()).hexdigest()[:16]


def save_static_list(
    engine: sa.Engine,
    slug: str,
    name: str,
    person_ids: Iterable[str],
    *,
    description: str = "",
    owner: str = "",
    reserved: Collection[str] = (),
) -> SegmentDefinition:
    """Store a static list ("specific users"), replacing the members of one of that slug."""
    members = sorted(set(person_ids))
    definition = SegmentDefinition(
        slug=slug,
        name=name,
        kind="static",
        description=description,
        owner=owner,
        list_digest=list_digest(members),
    )
    return _store(engine, definition, reserved, members)


def list_segments(engine: sa.Engine) -> list[SegmentDefinition]:
    """Every segment made in the app, by slug."""
    with engine.connect() as con:
        rows = con.execute(sa.select(segments).order_by(segments.c.slug)).all()
    return [_definition(row) for row in rows]


def get_segment(engine: sa.Engine, slug: str) -> SegmentDefinition | None:
    with engine.connect() as con:
        row = con.execute(sa.select(segments).where(segments.c.slug == slug)).first()
    return None if row is None else _definition(row)


def list_members(engine: sa.Engine, slug: str) -> list[str]:
    """The person ids of the static list ``slug``, sorted."""
    query = (
        sa.select(segment_list_members.c.person_id)
        .where(segment_list_members.c.slug == slug)
        .order_by(segment_list_members.c.person_id)
    )
    with engine.connect() as con:
        return list(con.execute(query).scalars())


def delete_segment(engine: sa.Engine, slug: str) -> None:
    """Delete the app segment ``slug`` (its membership history stays in the lake).

    Raises:
        DefinitionError: there is no such segment.
    """
    with engine.begin() as con:
        con.execute(segment_list_members.delete().where(segment_list_members.c.slug == slug))
        deleted = con.execute(segments.delete().where(segments.c.slug == slug)).rowcount
    if not deleted:
        raise DefinitionError(f"no segment {slug!r} was made in the app")
