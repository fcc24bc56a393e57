"""Sources: the senders of events (a website, an app, a backend), each with its own write key.

A write key authenticates an SDK to the gateway and names the source on every event it sends
(the raw column ``source_id``). Revoking a source keeps its row, so old events still name it
and its name is never handed to someone else.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from safar.appdb.schema import sources

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class SourceError(ValueError):
    """A source command that cannot be carried out (duplicate name, unknown source, …)."""


@dataclass(frozen=True)
class Source:
    id: str
    name: str
    write_key: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def source_id_for(name: str) -> str:
    """The stable id of the source called ``name``, the value of ``source_id`` on its events.

    Example:
        >>> source_id_for("web")
        'src_web'
    """
    return f"src_{name}"


def add_source(engine: sa.Engine, name: str) -> Source:
    """Create a source with a new random write key.

    Raises:
        SourceError: the name is malformed or already taken (also by a revoked source).
    """
    if not _NAME.fullmatch(name):
        raise SourceError(
            f"invalid source name {name!r}: use 1-64 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    source = Source(
        id=source_id_for(name),
        name=name,
        write_key=secrets.token_urlsafe(24),
        created_at=_now(),
        revoked_at=None,
    )
    with engine.begin() as con:
        existing = con.execute(
            sa.select(sources.c.revoked_at).where(sources.c.name == name)
        ).first()
        if existing is not None:
            state = "a revoked source" if existing.revoked_at else "a source"
            raise SourceError(f"{state} named {name!r} already exists")
        con.execute(sources.insert().values(**source.__dict__))
    return source


def list_sources(engine: sa.Engine) -> list[Source]:
    """Every source, active and revoked, oldest first."""
    with engine.connect() as con:
        rows = con.execute(sa.select(sources).order_by(sources.c.created_at, sources.c.name))
        return [Source(**row._mapping) for row in rows]


def revoke_source(engine: sa.Engine, name: str) -> Source:
    """Revoke the source called ``name``; its key stops working within the gateway's key TTL.

    Raises:
        SourceError: no such source, or it is already revoked.
    """
    with engine.begin() as con:
        row = con.execute(sa.select(sources).where(sources.c.name == name)).first()
        if row is None:
            raise SourceError(f"no source named {name!r}")
        if row.revoked_at is not None:
            raise SourceError(f"source {name!r} was already revoked at {row.revoked_at}")
        revoked_at = _now()
        con.execute(sources.update().where(sources.c.name == name).values(revoked_at=revoked_at))
    return Source(**{**row._mapping, "revoked_at": revoked_at})


def source_for_key(engine: sa.Engine, write_key: str) -> str | None:
    """The id of the active source whose key is ``write_key``, or None."""
    with engine.connect() as con:
        return con.execute(
            sa.select(sources.c.id).where(
                sources.c.write_key == write_key, sources.c.revoked_at.is_(None)
            )
        ).scalar()
