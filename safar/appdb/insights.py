"""Saved insights: a funnel, retention or trends spec kept under a name, to open again later.

The spec is stored as the JSON a person wrote (what the dashboards' builders produce and the
engines' parsers read), not as parsed dataclasses, so a saved insight survives changes to the
parsed form. It is validated with the parser of its kind before it is stored: a spec that
cannot run is never saved. Names are unique per kind; saving under a taken name replaces that
insight's spec and description and keeps its id and creation time.

Example:
    >>> import tempfile
    >>> from safar.appdb import open_app_db
    >>> engine = open_app_db(url=f"sqlite:///{tempfile.mkdtemp()}/app.sqlite")
    >>> spec = {"steps": [{"event": "Signed Up"}, {"event": "Order Completed"}]}
    >>> saved = save_insight(engine, "funnel", "Sign-up to order", spec)
    >>> [i.name for i in list_insights(engine, "funnel")]
    ['Sign-up to order']
    >>> get_insight(engine, "funnel", "Sign-up to order").spec == spec
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from safar.analytics.retention_spec import parse_retention_spec
from safar.analytics.spec import parse_funnel_spec
from safar.analytics.trends_spec import parse_trends_spec
from safar.appdb.schema import INSIGHT_KINDS, saved_insights

PARSERS: dict[str, Callable[[Any], object]] = {
    "funnel": parse_funnel_spec,
    "retention": parse_retention_spec,
    "trends": parse_trends_spec,
}
"""The spec parser of each kind; a spec is saved only if its parser accepts it."""

MAX_NAME_LENGTH = 200


class InsightError(ValueError):
    """A saved-insight command that cannot be carried out (unknown kind or name, bad name, …)."""


@dataclass(frozen=True)
class Insight:
    """One saved insight; ``spec`` is the decoded JSON spec, timestamps are naive UTC."""

    id: int
    kind: str
    name: str
    spec: dict[str, Any]
    description: str
    created_at: datetime
    updated_at: datetime


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _check_kind(kind: str) -> str:
    if kind not in INSIGHT_KINDS:
        raise InsightError(f"unknown insight kind {kind!r}: use one of {', '.join(INSIGHT_KINDS)}")
    return kind


def _check_name(name: str) -> str:
    """``name`` without surrounding blanks, or an InsightError.

    Example:
        >>> _check_name("  Checkout funnel ")
        'Checkout funnel'
        >>> _check_name(" ")
        Traceback (most recent call last):
        ...
        safar.appdb.insights.InsightError: an insight needs a name
    """
    name = name.strip()
    if not name:
        raise InsightError("an insight needs a name")
    if len(name) > MAX_NAME_LENGTH:
        raise InsightError(f"an insight name has at most {MAX_NAME_LENGTH} characters")
    if any(not c.isprintable() for c in name):
        raise InsightError(f"an insight name cannot hold control characters: {name!r}")
    return name


def _insight(row: sa.Row) -> Insight:
    return Insight(**{**row._mapping, "spec": json.loads(row.spec)})


def _upsert(dialect: str) -> Callable[..., Any]:
    """The dialect's ``INSERT … ON CONFLICT`` statement builder (SQLite and Postgres have one)."""
    if dialect == "sqlite":
        return sqlite.insert
    if dialect == "postgresql":
        return postgresql.insert
    raise InsightError(f"saved insights need SQLite or Postgres, not {dialect}")


def save_insight(
    engine: sa.Engine, kind: str, name: str, spec: Any, description: str | None = None
) -> Insight:
    """Store ``spec`` as the ``kind`` insight called ``name``, replacing one of that name.

    Args:
        engine: the app DB.
        kind: ``funnel``, ``retention`` or ``trends``.
        name: unique per kind; surrounding blanks are dropped.
        spec: the decoded JSON spec, as the kind's parser reads it.
        description: free text shown beside the name; None keeps the replaced insight's
            (or leaves a new one's empty).

    Returns:
        The stored insight.

    Raises:
        SpecError: the kind's parser rejects ``spec`` (nothing is stored).
        InsightError: unknown kind, a malformed name, or a spec that is not JSON.
    """
    name = _check_name(name)
    try:
        text = json.dumps(spec, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InsightError(f"the spec is not JSON: {exc}") from None
    PARSERS[_check_kind(kind)](json.loads(text))  # what is stored is what was validated
    now = _now()
    insert = _upsert(engine.dialect.name)(saved_insights).values(
        kind=kind,
        name=name,
        spec=text,
        description=description or "",
        created_at=now,
        updated_at=now,
    )
    replaced = {"spec": text, "updated_at": now}
    if description is not None:
        replaced["description"] = description
    statement = insert.on_conflict_do_update(
        index_elements=[saved_insights.c.kind, saved_insights.c.name], set_=replaced
    ).returning(*saved_insights.c)
    with engine.begin() as con:
        return _insight(con.execute(statement).one())


def list_insights(engine: sa.Engine, kind: str) -> list[Insight]:
    """Every saved insight of ``kind``, by name (case-insensitive)."""
    query = (
        sa.select(saved_insights)
        .where(saved_insights.c.kind == _check_kind(kind))
        .order_by(sa.func.lower(saved_insights.c.name), saved_insights.c.name)
    )
    with engine.connect() as con:
        return [_insight(row) for row in con.execute(query)]


def get_insight(engine: sa.Engine, kind: str, name: str) -> Insight | None:
    """The ``kind`` insight called ``name``, or None."""
    query = sa.select(saved_insights).where(
        saved_insights.c.kind == _check_kind(kind), saved_insights.c.name == name.strip()
    )
    with engine.connect() as con:
        row = con.execute(query).first()
    return None if row is None else _insight(row)


def delete_insight(engine: sa.Engine, kind: str, name: str) -> None:
    """Delete the ``kind`` insight called ``name``.

    Raises:
        InsightError: there is no such insight.
    """
    with engine.begin() as con:
        deleted = con.execute(
            saved_insights.delete().where(
                saved_insights.c.kind == _check_kind(kind),
                saved_insights.c.name == name.strip(),
            )
        ).rowcount
    if not deleted:
        raise InsightError(f"no saved {kind} named {name!r}")


def rename_insight(engine: sa.Engine, kind: str, name: str, new_name: str) -> Insight:
    """Give the ``kind`` insight called ``name`` a new name; its spec and id stay.

    Raises:
        InsightError: there is no such insight, or ``new_name`` is malformed or taken.
    """
    new_name = _check_name(new_name)
    statement = (
        saved_insights.update()
        .where(saved_insights.c.kind == _check_kind(kind), saved_insights.c.name == name.strip())
        .values(name=new_name, updated_at=_now())
        .returning(*saved_insights.c)
    )
    try:
        with engine.begin() as con:
            row = con.execute(statement).first()
    except sa.exc.IntegrityError:
        raise InsightError(f"a saved {kind} named {new_name!r} already exists") from None
    if row is None:
        raise InsightError(f"no saved {kind} named {name!r}")
    return _insight(row)
