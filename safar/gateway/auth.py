"""Write keys: where a request carries one, and which source it belongs to."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from safar.appdb.sources import source_for_key

MAX_KEY_LENGTH = 256


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The write key in HTTP Basic auth (``base64("key:")``) or ``X-Write-Key``, if any.

    Example:
        >>> key_from_headers({"authorization": "Basic " + base64.b64encode(b"k1:").decode()})
        'k1'
        >>> key_from_headers({"x-write-key": "k2"})
        'k2'
        >>> key_from_headers({"authorization": "Basic !!"}) is None
        True
    """
    authorization = headers.get("authorization")
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        key = decoded.partition(":")[0]
        if key:
            return key
    return headers.get("x-write-key") or None


def key_from_body(payload: Any) -> str | None:
    """The ``writeKey`` of a body (analytics.js sends it there), or of its first batch message."""
    if type(payload) is not dict:
        return None
    key = payload.get("writeKey")
    if key is None:
        batch = payload.get("batch")
        if type(batch) is list and batch and type(batch[0]) is dict:
            key = batch[0].get("writeKey")
    return key if type(key) is str and key else None


class WriteKeys:
    """Write key → source id, cached for ``ttl`` seconds (hits and misses alike).

    The cache keeps the database out of the per-request path; the TTL bounds how long a
    revoked key keeps working.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, engine: sa.Engine, ttl: float):
        self.engine = engine
        self.ttl = ttl
        self._cache: dict[str, tuple[str | None, float]] = {}

    async def source_for(self, key: str | None) -> str | None:
        """The active source of ``key``, or None for a missing, unknown or revoked key."""
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        # Off the event loop: SQLite may wait on a writer's lock for a moment.
        source = await asyncio.to_thread(source_for_key, self.engine, key)
        if len(self._cache) >= self.MAX_ENTRIES:
            self._cache.clear()  # bounded under a flood of made-up keys
        self._cache[key] = (source, now + self.ttl)
        return source
