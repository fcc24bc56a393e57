"""Engine creation and schema migration for the app DB."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from safar.config import SafarHome, app_db_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

log = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the gateway read keys while the CLI writes them; foreign keys are off by default
    # in SQLite; the busy timeout turns a brief writer lock into a wait instead of an error.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_app_engine(url: str) -> sa.Engine:
    """An engine for ``url``, with Safar's SQLite settings when it is SQLite.

    Example:
        >>> engine = create_app_engine("sqlite://")
        >>> with engine.connect() as con:
        ...     con.exec_driver_sql("PRAGMA foreign_keys").scalar()
        1
    """
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        if engine.url.database:
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations; no ``alembic.ini`` is needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest migration)."""
    with engine.begin() as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(alembic_config(connection), revision)
        after = MigrationContext.configure(connection).get_current_revision()
    if after != before:
        log.info("app DB schema migrated from %s to %s", before or "empty", after)


def open_app_db(home: SafarHome | None = None, *, url: str | None = None) -> sa.Engine:
    """An engine on the app DB of ``home`` (or ``url``), migrated to the current schema."""
    if url is None:
        if home is None:
            raise ValueError("open_app_db needs a home or a url")
        url = app_db_url(home)
    engine = create_app_engine(url)
    upgrade(engine)
    return engine


def dialect_insert(con: sa.Connection) -> Callable[[sa.Table], Any]:
    """The ``insert`` of the connection's dialect, which has ``on_conflict_do_nothing/update``.

    Example:
        >>> engine = create_app_engine("sqlite://")
        >>> with engine.connect() as con:
        ...     dialect_insert(con).__module__
        'sqlalchemy.dialects.sqlite.dml'
    """
    if con.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif con.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise ValueError(f"the app DB must be SQLite or Postgres, not {con.dialect.name}")
    return insert
