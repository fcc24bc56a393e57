"""The app DB: transactional state (write keys, definitions, instances) behind SQLAlchemy Core.

SQLite in WAL mode by default (``$SAFAR_HOME/app.sqlite``), any SQLAlchemy URL in production
(``$SAFAR_APP_DB_URL``, e.g. Postgres). The schema is owned by the Alembic migrations shipped in
``safar/appdb/migrations/versions``; :func:`open_app_db` applies them, so every process that opens
the database sees the current schema and nobody has to run ``alembic upgrade`` by hand.

Example:
    >>> import tempfile
    >>> from safar.appdb import open_app_db, sources
    >>> engine = open_app_db(url=f"sqlite:///{tempfile.mkdtemp()}/app.sqlite")
    >>> web = sources.add_source(engine, "web")
    >>> sources.source_for_key(engine, web.write_key)
    'src_web'
"""

from __future__ import annotations

import logging

# Every process migrates on start, and Alembic logs INFO lines as soon as it is imported;
# they would drown a CLI's output. ``upgrade`` logs one line when a migration really ran.
logging.getLogger("alembic").setLevel(logging.WARNING)

from safar.appdb.engine import create_app_engine, open_app_db, upgrade  # noqa: E402

__all__ = ["create_app_engine", "open_app_db", "upgrade"]
