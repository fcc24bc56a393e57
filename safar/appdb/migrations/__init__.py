"""Alembic migrations for the app DB (``script_location``); applied by ``safar.appdb.upgrade``.

A new migration is a new file in ``versions/`` whose ``down_revision`` is the newest one's
``revision``; keep ``safar/appdb/schema.py`` in step with it.
"""
