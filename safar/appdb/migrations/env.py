"""Alembic environment: runs migrations on the connection that ``safar.appdb.upgrade`` passes."""

from __future__ import annotations

from alembic import context

from safar.appdb.schema import metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through safar.appdb.upgrade(engine)")
    # Batch mode lets later migrations alter SQLite tables (which have no ALTER COLUMN).
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


# Alembic sets ``context.config`` only while it runs this file; pytest's doctest collection
# also imports it, and must not run anything.
if getattr(context, "config", None) is not None:
    run_migrations()
