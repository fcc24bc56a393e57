"""Helpers for warehouse tests: hand-written raw events, landing them, querying the lake.

Everything runs for real: events go through ``safar.lake.LakeWriter`` into the Parquet landing
zone and ``safar.build.build`` runs ``dbt build`` into a DuckLake warehouse under a temporary
``SafarHome``. The module sits at the top of ``tests/`` (next to ``conftest.py``, whose folder
pytest puts on ``sys.path``) so any test folder imports it by its unique name. Test folders
have no ``__init__.py``: ``tests/dbt`` would become a package named ``dbt`` and shadow
dbt-core.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import shutil
import sqlite3
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from safar.config import SafarHome
from safar.lake import LakeWriter
from safar.warehouse import connect

_message_ids = itertools.count(1)

DEMO_END = date(2026, 1, 31)
"""The last day of the session's demo warehouse (the ``demo_home`` fixture in conftest.py)."""

# Every model docs/warehouse.md promises, and its grain key (used to compare builds).
MARTS: dict[str, tuple[str, ...]] = {
    "dim_person_distinct_ids": ("distinct_id",),
    "fct_events": ("message_id",),
    "dim_users": ("person_id",),
    "dim_user_attribute_history": ("person_id", "attribute", "valid_from"),
    "fct_sessions": ("session_id",),
    "dim_devices": ("device_id",),
    "fct_active_users_daily": ("activity_date",),
    "fct_installs_daily": ("activity_date", "platform"),
    "fct_retention_weekly": ("cohort_week", "week_number"),
    "dim_user_reachability": ("person_id", "channel"),
    "rpt_channel_reachability": ("channel",),
}


def event(
    type: str = "track",
    *,
    at: datetime,
    received_delay: timedelta = timedelta(seconds=1),
    received_at: datetime | None = None,
    message_id: str | None = None,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """One raw message as the gateway would land it (JSON payloads as text).

    ``at`` is the corrected event time; the message is received ``received_delay`` later
    unless ``received_at`` is given.
    """
    received = received_at or at + received_delay
    row: dict[str, Any] = {
        "message_id": message_id or f"m{next(_message_ids):06d}",
        "type": type,
        "timestamp": at,
        "original_timestamp": at,
        "sent_at": received,
        "received_at": received,
        "properties": json.dumps(properties) if properties is not None else None,
        "traits": json.dumps(traits) if traits is not None else None,
        "context": json.dumps(context or {}),
    }
    row.update(columns)
    return row


def land(home: SafarHome, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` to the landing zone of ``home``; returns how many were accepted."""
    frame = pl.from_dicts(list(rows), infer_schema_length=None)
    result = LakeWriter(home).write(frame)
    assert result.rejected == 0, f"rows rejected, see {result.rejected_file}"
    return result.accepted


def copy_home(source: SafarHome, root: Path) -> SafarHome:
    """A copy of ``source`` at ``root`` that can be opened and written on its own.

    The app DB is left behind (a copy starts with none). DuckLake records the absolute data
    path in its catalog and refuses to attach with another; the data files are stored relative
    to it, so pointing it at the copy's folder moves the lake.
    """
    shutil.copytree(source.root, root, ignore=shutil.ignore_patterns("app.sqlite*"))
    home = SafarHome(root)
    with contextlib.closing(sqlite3.connect(home.catalog)) as db, db:
        db.execute(
            "update ducklake_metadata set value = ? where key = 'data_path'",
            [f"{home.warehouse_data}/"],
        )
    return home


def query(home: SafarHome, sql: str) -> list[tuple]:
    """Rows of ``sql`` against the warehouse of ``home`` (read-only)."""
    con = connect(home, read_only=True)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def shop_story(seed: int, users: int, days: int, start: datetime) -> list[dict[str, Any]]:
    """A small, varied shop: anonymous browsing, sign-ups, second devices, aliases, shared
    browsers, app installs and uninstalls, push tokens, orders, trait changes, system events.

    Deterministic for a given seed; each event is received a few seconds after it happened.
    """
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    shared_browser = "anon-shared"
    for n in range(users):
        user_id = f"user-{n}"
        browser = f"anon-web-{n}"
        phone_app = f"anon-app-{n}"
        device = f"device-{n}"
        app_ctx = {
            "context_device_id": device,
            "context_device_type": rng.choice(["ios", "android"]),
            "context_os_name": "mobile",
            "context_device_model": rng.choice(["Pixel 9", "iPhone 16", "Galaxy S25"]),
            "context_app_version": "1.0",
        }
        web_ctx = {"context_page_url": f"https://shop.example/{n}"}
        signs_up = rng.random() < 0.7
        has_app = rng.random() < 0.5
        first_day = rng.randrange(days)
        for day in range(first_day, days):
            if rng.random() < 0.5:
                continue
            at = start + timedelta(days=day, minutes=rng.randrange(0, 23 * 60))
            for step in range(rng.randrange(1, 6)):
                # Gaps straddle the 30-minute session boundary.
                at += timedelta(minutes=rng.choice([1, 5, 29, 30, 31, 90]))
                is_signed_in = signs_up and day > first_day
                user = {"user_id": user_id} if is_signed_in else {}
                if has_app and rng.random() < 0.4:
                    rows.append(
                        event(
                            "screen", at=at, event="Home", anonymous_id=phone_app, **user, **app_ctx
                        )
                    )
                else:
                    rows.append(
                        event(
                            "page", at=at, event="Product", anonymous_id=browser, **user, **web_ctx
                        )
                    )
                if step == 2 and is_signed_in and rng.random() < 0.5:
                    rows.append(
                        event(
                            "track",
                            at=at,
                            event="Order Completed",
                            user_id=user_id,
                            properties={
                                "order_id": f"o-{n}-{day}",
                                "revenue": rng.randrange(10, 900) * 1000,
                                "currency": "IRR",
                            },
                        )
                    )
                if rng.random() < 0.2:
                    rows.append(
                        event(
                            "track",
                            at=at,
                            event="Message Sent",
                            user_id=user_id,
                            properties={"channel": "email"},
                        )
                    )
            if signs_up and day == first_day + 1:
                rows.append(
                    event(
                        "identify",
                        at=at,
                        anonymous_id=browser,
                        user_id=user_id,
                        traits={
                            "email": f"{user_id}@example.com",
                            "phone": f"+98912{n:07d}",
                            "rfm_class": "new",
                            "email_opt_in": rng.random() < 0.8,
                            "plan": "free",
                        },
                        **web_ctx,
                    )
                )
                rows.append(event("track", at=at, event="Signed Up", user_id=user_id))
            if signs_up and day == first_day + 3:
                rows.append(
                    event(
                        "identify",
                        at=at,
                        user_id=user_id,
                        traits={
                            "rfm_class": rng.choice(["loyal", "new", "at_risk"]),
                            "city": rng.choice(["Tehran", "Shiraz"]),
                        },
                    )
                )
            if has_app and day == first_day:
                rows.append(
                    event(
                        "track",
                        at=at,
                        event="Application Installed",
                        anonymous_id=phone_app,
                        **app_ctx,
                    )
                )
            if has_app and signs_up and day == first_day + 2:
                rows.append(
                    event(
                        "identify",
                        at=at,
                        anonymous_id=phone_app,
                        user_id=user_id,
                        context_device_token=f"token-{n}",
                        **app_ctx,
                    )
                )
            if has_app and day == days - 2 and rng.random() < 0.3:
                rows.append(
                    event(
                        "track",
                        at=at,
                        event="Application Uninstalled",
                        anonymous_id=phone_app,
                        **app_ctx,
                    )
                )
        if signs_up and n % 7 == 0:
            rows.append(
                event(
                    "alias",
                    at=start + timedelta(days=days - 1),
                    user_id=f"member-{n}",
                    previous_id=user_id,
                )
            )
        if signs_up and n % 11 == 0:
            at = start + timedelta(days=first_day, hours=23)
            rows.append(event("page", at=at, event="Home", anonymous_id=shared_browser, **web_ctx))
            rows.append(
                event(
                    "identify",
                    at=at + timedelta(minutes=1),
                    anonymous_id=shared_browser,
                    user_id=user_id,
                    **web_ctx,
                )
            )
    return rows
