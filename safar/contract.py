"""The raw event contract: one row per Segment message in the landing zone.

ARCHITECTURE.md §4 names the columns. Two columns are added here because the identity
model needs them and Segment sends them: ``previous_id`` (``alias``) and ``group_id``
(``group``); ``context_device_id`` and ``context_device_model`` let devices be told apart.
JSON payloads are stored as JSON text so any engine (DuckDB, polars, Spark) reads them.
All timestamps are naive UTC microseconds.
"""

from __future__ import annotations

import pyarrow as pa

MESSAGE_TYPES = ("track", "identify", "page", "screen", "alias", "group")

# Events the platform writes itself (segments, journeys, deliveries); reserved for SDKs.
SYSTEM_EVENTS = (
    "Segment Entered",
    "Segment Exited",
    "Journey Entered",
    "Journey Step",
    "Journey Exited",
    "Message Queued",
    "Message Sent",
    "Message Delivered",
    "Message Failed",
    "Message Bounced",
    "Message Opened",
    "Message Clicked",
    "Message Dropped",
    "Conversion",
)

TS = pa.timestamp("us")

RAW_SCHEMA = pa.schema(
    [
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("event", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("anonymous_id", pa.string()),
        pa.field("previous_id", pa.string()),
        pa.field("group_id", pa.string()),
        pa.field("timestamp", TS, nullable=False),
        pa.field("original_timestamp", TS),
        pa.field("sent_at", TS),
        pa.field("received_at", TS, nullable=False),
        pa.field("properties", pa.string()),
        pa.field("traits", pa.string()),
        pa.field("context", pa.string()),
        pa.field("source_id", pa.string()),
        pa.field("context_device_id", pa.string()),
        pa.field("context_device_type", pa.string()),
        pa.field("context_device_model", pa.string()),
        pa.field("context_device_token", pa.string()),
        pa.field("context_os_name", pa.string()),
        pa.field("context_app_version", pa.string()),
        pa.field("context_timezone", pa.string()),
        pa.field("context_locale", pa.string()),
        pa.field("context_ip", pa.string()),
        pa.field("context_page_url", pa.string()),
    ]
)

RAW_COLUMNS = tuple(RAW_SCHEMA.names)
JSON_COLUMNS = ("properties", "traits", "context")
