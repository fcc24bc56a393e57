"""Bulk import: files of events or user attributes → the raw landing zone, exactly once.

``safar import events FILE`` and ``safar import users FILE`` turn historical data (a Segment
archive, a CSV export, a Parquet dump of another Safar lake) into the same raw rows the gateway
writes, through the gateway's own normaliser (:func:`safar.messages.normalize_message`), so an
imported event obeys exactly the rules a live one does and is indistinguishable downstream.

Formats, chosen by extension (anything else is refused with the list below):

- **JSONL** (``.jsonl``, ``.ndjson``, also gzipped as ``.jsonl.gz``/``.ndjson.gz``): one Segment
  message per line, camelCase as any Segment SDK or Segment's S3/GCS archive writes it. A line
  may also be a whole ``/v1/batch`` body, ``{"batch": [...], "sentAt": ..., "context": {...}}``
  (logged request bodies look like that); its messages take the batch's ``sentAt`` and
  ``context`` where they lack their own, as the gateway does. Blank lines are skipped.
- **CSV** (``.csv``, ``.csv.gz``): UTF-8 (a BOM is fine), a header row, one message per row.
  Columns are named like Segment's fields in camelCase or like the raw contract in snake_case:
  ``type, event, name, category, userId|user_id, anonymousId|anonymous_id,
  messageId|message_id, previousId|previous_id, groupId|group_id, timestamp,
  originalTimestamp|original_timestamp, sentAt|sent_at, receivedAt|received_at``.
  ``properties``, ``traits``, ``context`` and ``integrations`` hold JSON object text, and dotted
  columns set one key each: ``properties.price``, ``traits.plan``, ``context.device.type``
  (a dotted column wins over the same key in the JSON column). The raw contract's extracted
  columns (``context_device_type``, ``context_ip``, …) set their place in ``context``, and a
  ``source_id`` column wins over ``--source-id``. Any other column is an error that names it:
  data is never dropped silently.
- **Parquet** (``.parquet``, ``.pq``): the same column names, so both raw-contract Parquet (the
  landing zone's own files) and Segment-shaped tables import; object columns may be JSON text or
  Arrow structs/maps, timestamps Arrow timestamps (naive = UTC) or ISO-8601 text.

Cells of dotted CSV columns and user attributes are typed, since CSV has no types: ``42`` and
``-3.5`` become numbers, ``true``/``false`` (any case) booleans, an empty cell is absent (not
``""``), and everything else stays text, so ``09121234567``, ``+98…``, ``۱۲۳`` and ``1e3`` keep
every character (see :func:`typed_cell`). Segment fields (ids, names, timestamps) stay text.

``import users`` reads CSV, Parquet or JSONL with one row per user: the id column (``user_id``,
else ``userId``, else ``id``; or ``--id-column``) becomes ``userId``, an optional
``anonymous_id``/``anonymousId`` column links an anonymous id, an optional ``timestamp`` column
says when the attributes held, and every other column is a trait (dotted names nest:
``address.city``). Each row becomes one ``identify`` event.

Timestamps: ``received_at`` is the moment the import started, for every row (so imported rows
land in a new partition and incremental builds pick them up). The event time comes from the row
(ISO-8601; without an offset it is UTC). Segment's skew correction
``received_at − (sent_at − original_timestamp)`` needs the server clock of the *original*
delivery, so it is applied only when a row carries ``sentAt`` and ``receivedAt`` but no
corrected ``timestamp``; correcting against the import time would move every historical event to
the import day. A row with a ``receivedAt`` has already been through a Segment-like pipeline,
and its ``timestamp`` is the corrected one and is kept. Without any timestamp, the import time
is used.

Rows are checked with the gateway's rules (its 32 KB limit per event too). A rejected row goes,
with its reason, file and line (and index inside a batch line), to
``lake/rejected/rejected-<id>-import.jsonl`` in the gateway's format, and the good rows land;
the summary counts rejections per reason and lists the first few. Lines are 1-based physical
lines (a CSV's header is line 1); Parquet rows are numbered from 1. Files are streamed:
:data:`ROWS_PER_BATCH` rows at a time become Arrow, and every :data:`ROWS_PER_FILE` rows one
landing file is written, so memory does not grow with the file.

Idempotency, in two layers:

1. **A ledger** of imported files under ``$SAFAR_HOME/lake/imports/``, one small JSON file per
   import keyed by the file's SHA-256 (and the kind of import and its options). Importing an
   identical file again is a no-op that says so. When a JSONL or CSV file grows by appending (an
   export that is re-run), the ledger recognises the already imported prefix by its hash and
   only the new lines are read. The ledger lives beside the landing zone, not in the app DB,
   because it describes what the lake holds: copy, restore or wipe ``lake/`` and the ledger
   goes with it (an entry whose landing files are all gone no longer counts).
2. **Deterministic message ids** for rows without a ``messageId``, so that whatever the ledger
   cannot see (an interrupted import run again, an overlapping export with different bytes) is
   removed by the staging model's de-duplication on ``message_id``. A row with a timestamp is
   an observation of a moment: its id is a UUID5 of its canonical content, so the same event
   has the same id in any file (and two identical timed rows are one event; give them message
   ids to keep both). A row without one happens "at import", so its id is a UUID5 of the
   file's hash and its position: a later snapshot of a users file is a new set of observations
   (an attribute that goes A → B → A keeps all three intervals) while the same file run twice
   is the same rows. Two imports of one file at the same moment are not locked against each
   other; both land, with the same ids.

Example:
    >>> import tempfile
    >>> from safar.config import SafarHome
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "users.csv").write_text("user_id,city,vip\\nu1,Tabriz,true\\n")
    >>> home = SafarHome(root / "home")
    >>> import_users(home, root / "users.csv", progress=False).accepted
    1
    >>> import_users(home, root / "users.csv", progress=False).already_imported
    True
    >>> import shutil; shutil.rmtree(root)
"""

from __future__ import annotations

import argparse
import codecs
import csv
import gzip
import hashlib
import io
import logging
import math
import os
import re
import secrets
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from safar.config import SafarHome, home_from_env
from safar.contract import RAW_SCHEMA
from safar.lake import LakeWriter, new_file_id
from safar.messages import MAX_EVENT_BYTES, Row, normalize_message, parse_timestamp

log = logging.getLogger(__name__)

# Extension → format. Compressed variants are recognised by a trailing ``.gz``.
FORMATS: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_GZIP_OK = frozenset({"jsonl", "csv"})

ROWS_PER_BATCH = 10_000
"""Rows held as Python dicts before they become an Arrow table (bounds Python memory)."""

ROWS_PER_FILE = 100_000
"""Rows held as Arrow before they are written as one landing file (bounds Arrow memory)."""

FIRST_REJECTIONS = 10
"""How many rejections the summary lists by line number (all of them go to the file)."""

DEFAULT_SOURCE_ID = "import"
USER_ID_COLUMNS = ("user_id", "userId", "id")

# Fixed forever: changing it would give every re-imported row a new id.
ID_NAMESPACE = uuid.UUID("6f1e3d0c-5a7b-5c2e-9d4f-1b8a2c3e4f50")
_NAMESPACE_BYTES = ID_NAMESPACE.bytes

_LEDGER_VERSION = 1
_HASH_CHUNK = 1 << 20


class ImportFileError(ValueError):
    """The file cannot be imported at all (unknown format, unreadable, no id column, …)."""


@dataclass(frozen=True)
class Rejection:
    """One rejected row: where it is in the file and why."""

    line: int
    """1-based line (JSONL, CSV: where the row starts) or row number (Parquet)."""
    reason: str
    index: int | None = None
    """Position inside a ``{"batch": [...]}`` line, else None."""

    def __str__(self) -> str:
        where = f"line {self.line}" if self.index is None else f"line {self.line}[{self.index}]"
        return f"{where}: {self.reason}"


@dataclass
class ImportSummary:
    """What an import did; :meth:`report` renders it for people."""

    path: Path
    kind: str
    file_format: str
    sha256: str = ""
    accepted: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    """Rejected rows per reason, the reason's text up to its first ``": "`` (details vary)."""
    first_rejections: list[Rejection] = field(default_factory=list)
    rejected_file: Path | None = None
    files: list[Path] = field(default_factory=list)
    already_imported: bool = False
    """True when the ledger holds this exact file: nothing was read or written."""
    previously_imported_at: str | None = None
    skipped_lines: int = 0
    """Lines an earlier import of a shorter version of this file already landed."""
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        rows = self.accepted + self.rejected
        return rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when something landed or there was nothing new to land; 1 when every row failed."""
        return 1 if self.accepted == 0 and self.rejected > 0 else 0

    def report(self) -> str:
        """The summary as a few lines of text, as ``safar import`` prints it."""
        name = self.path.name
        if self.already_imported:
            return (
                f"{name} was already imported on {self.previously_imported_at} "
                f"(sha256 {self.sha256[:12]}…): nothing to do"
            )
        lines = [
            f"imported {self.kind} from {name}: {self.accepted:,} accepted, "
            f"{self.rejected:,} rejected in {self.seconds:.1f} s "
            f"({self.rows_per_second:,.0f} rows/s)"
        ]
        if self.skipped_lines:
            lines.append(
                f"  skipped the first {self.skipped_lines:,} lines: an earlier import of this "
                "file landed them"
            )
        if self.reasons:
            counted = sorted(self.reasons.items(), key=lambda item: (-item[1], item[0]))
            lines.append("  rejected: " + "; ".join(f"{r} ×{n:,}" for r, n in counted))
            lines += [f"    {r}" for r in self.first_rejections]
        if self.rejected_file is not None:
            lines.append(f"  rejected rows with their reasons: {self.rejected_file}")
        return "\n".join(lines)


# --- cell values -----------------------------------------------------------------------------

_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
# Beyond 2**53 a JSON number loses digits in JavaScript (SDKs, browsers): keep such ids as text.
_MAX_SAFE_INT = 2**53


def typed_cell(text: str) -> Any:
    """A CSV cell as the JSON value it stands for; None for an empty cell.

    Only unambiguous spellings become numbers: a leading zero, a plus sign, an exponent or
    non-ASCII digits keep the text as it is, so phone numbers and codes keep every character.

    Example:
        >>> [typed_cell(t) for t in ("42", "-3.5", "true", "FALSE", "", "تهران")]
        [42, -3.5, True, False, None, 'تهران']
        >>> [typed_cell(t) for t in ("09121234567", "+98912", "۱۲", "1e3", "9007199254740993")]
        ['09121234567', '+98912', '۱۲', '1e3', '9007199254740993']
    """
    if text == "":
        return None
    if _INT.fullmatch(text):
        number = int(text)
        return number if abs(number) <= _MAX_SAFE_INT else text
    if _FLOAT.fullmatch(text):
        return float(text)
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return text


def _plain(value: Any) -> Any:
    """A Parquet value as something ``orjson`` writes (it refuses Decimal, bytes, timedelta)."""
    if value is None or type(value) in (str, int, bool, datetime, date):
        return value
    if type(value) is float:
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, clock_time):
        return value.isoformat()
    return str(value)


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``target[path[0]][path[1]]… = value``, making (or replacing) objects on the way.

    Example:
        >>> message = {"context": {"device": "old"}}
        >>> _set_path(message, ("context", "device", "type"), "ios")
        >>> message
        {'context': {'device': {'type': 'ios'}}}
    """
    for key in path[:-1]:
        child = target.get(key)
        if type(child) is not dict:
            child = target[key] = {}
        target = child
    target[path[-1]] = value


# --- column plans: a header → what each column does to a message ----------------------------

_FIELDS = (
    "type",
    "event",
    "name",
    "category",
    "userId",
    "anonymousId",
    "messageId",
    "previousId",
    "groupId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    # Envelope fields Segment archives carry; kept on the message, ignored by the normaliser.
    "version",
    "channel",
    "writeKey",
    "projectId",
)
_SNAKE_FIELDS = {
    "message_id": "messageId",
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "previous_id": "previousId",
    "group_id": "groupId",
    "original_timestamp": "originalTimestamp",
    "sent_at": "sentAt",
    "received_at": "receivedAt",
}
_OBJECTS = ("properties", "traits", "context", "integrations")
# The raw contract's extracted columns, put back where messages.py takes them from.
_CONTEXT_COLUMNS = {
    "context_device_id": ("context", "device", "id"),
    "context_device_type": ("context", "device", "type"),
    "context_device_model": ("context", "device", "model"),
    "context_device_token": ("context", "device", "token"),
    "context_os_name": ("context", "os", "name"),
    "context_app_version": ("context", "app", "version"),
    "context_timezone": ("context", "timezone"),
    "context_locale": ("context", "locale"),
    "context_ip": ("context", "ip"),
    "context_page_url": ("context", "page", "url"),
}
_TIME_FIELDS = frozenset({"timestamp", "originalTimestamp", "sentAt", "receivedAt"})
_ID_FIELDS = frozenset({"userId", "anonymousId", "messageId", "previousId", "groupId"})

# Column actions. FIELD: a top-level message field; OBJECT: a JSON object field; PATH: one key
# somewhere inside an object; SOURCE: the row's source id.
_FIELD, _OBJECT, _PATH, _SOURCE = range(4)
_Plan = list[tuple[int, int, Any]]
"""(column position, action, target) per column, in the order they are applied."""


def _event_plan(columns: list[str]) -> _Plan:
    """What each column of an events table does; raises on columns that have no place."""
    plan: list[tuple[int, Any]] = []
    unknown = []
    for column in columns:
        if column in _FIELDS:
            plan.append((_FIELD, column))
        elif column in _SNAKE_FIELDS:
            plan.append((_FIELD, _SNAKE_FIELDS[column]))
        elif column in _OBJECTS:
            plan.append((_OBJECT, column))
        elif column in _CONTEXT_COLUMNS:
            plan.append((_PATH, _CONTEXT_COLUMNS[column]))
        elif column == "source_id":
            plan.append((_SOURCE, None))
        elif "." in column and column.split(".", 1)[0] in _OBJECTS and "" not in column.split("."):
            plan.append((_PATH, tuple(column.split("."))))
        else:
            unknown.append(column)
    if unknown:
        raise ImportFileError(
            f"columns with no place in a Segment message: {', '.join(map(repr, unknown))}; "
            "name them properties.<key>, traits.<key> or context.<key>, or use the fields "
            "listed in `safar import events --help`"
        )
    fields = [target for action, target in plan if action == _FIELD]
    if "type" not in fields:
        raise ImportFileError("no `type` column: every message needs its type (track, …)")
    twice = sorted({f for f in fields if fields.count(f) > 1})
    if twice:
        raise ImportFileError(f"fields given by two columns: {', '.join(twice)}")
    _check_nesting([target for action, target in plan if action == _PATH])
    # Whole objects first, so the single keys of dotted columns land inside them.
    order = {_OBJECT: 0, _FIELD: 1, _SOURCE: 1, _PATH: 2}
    ordered = sorted(enumerate(plan), key=lambda item: order[item[1][0]])
    return [(position, action, target) for position, (action, target) in ordered]


def _user_plan(columns: list[str], id_column: str) -> _Plan:
    """What each column of a users table does: the id, the links, the rest are traits."""
    if id_column not in columns:
        if id_column != USER_ID_COLUMNS[0]:
            raise ImportFileError(f"no column {id_column!r}; the columns are {columns}")
        found = [c for c in USER_ID_COLUMNS if c in columns]
        if not found:
            raise ImportFileError(
                f"no id column: expected one of {', '.join(USER_ID_COLUMNS)} "
                f"(or name it with --id-column); the columns are {columns}"
            )
        id_column = found[0]
    plan: list[tuple[int, Any]] = []
    for column in columns:
        if column == id_column:
            plan.append((_FIELD, "userId"))
        elif column in ("anonymous_id", "anonymousId"):
            plan.append((_FIELD, "anonymousId"))
        elif column == "timestamp":
            plan.append((_FIELD, "timestamp"))
        else:
            plan.append((_PATH, ("traits", *column.split("."))))
    fields = [target for action, target in plan if action == _FIELD]
    if fields.count("anonymousId") > 1:
        raise ImportFileError("both anonymous_id and anonymousId columns")
    _check_nesting([target for action, target in plan if action == _PATH])
    return [(position, action, target) for position, (action, target) in enumerate(plan)]


def _check_nesting(paths: list[tuple[str, ...]]) -> None:
    """Refuse ``a.b`` beside ``a.b.c``: one column would silently overwrite the other."""
    known = set(paths)
    if len(known) != len(paths):
        twice = sorted({".".join(p) for p in paths if paths.count(p) > 1})
        raise ImportFileError(f"columns given twice: {', '.join(twice)}")
    for path in paths:
        for cut in range(1, len(path)):
            if path[:cut] in known:
                raise ImportFileError(
                    f"column {'.'.join(path[:cut])!r} and {'.'.join(path)!r} set the same key"
                )


class _RowError(ValueError):
    """A row that cannot become a message; the text is its reason."""


def _csv_message(plan: _Plan, cells: list[str]) -> tuple[dict[str, Any], str | None]:
    message: dict[str, Any] = {}
    source_id = None
    for position, action, target in plan:
        text = cells[position]
        if text == "":
            continue
        if action == _FIELD:
            message[target] = text
        elif action == _PATH:
            _set_path(message, target, typed_cell(text))
        elif action == _OBJECT:
            try:
                message[target] = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise _RowError(f"{target} is not valid JSON") from None
        else:
            source_id = text
    return message, source_id


def _parquet_field(target: str, value: Any) -> Any:
    if target in _TIME_FIELDS and isinstance(value, (datetime, date)):
        return value.isoformat()
    if target in _ID_FIELDS and type(value) is float and value.is_integer():
        return int(value)  # an integer id column with nulls, written by pandas as float64
    return _plain(value)


def _parquet_message(plan: _Plan, values: tuple[Any, ...]) -> tuple[dict[str, Any], Any]:
    message: dict[str, Any] = {}
    source_id = None
    for position, action, target in plan:
        value = values[position]
        if value is None or (type(value) is float and math.isnan(value)):
            continue
        if action == _FIELD:
            message[target] = _parquet_field(target, value)
        elif action == _PATH:
            _set_path(message, target, _plain(value))
        elif action == _OBJECT:
            if type(value) is str:
                try:
                    value = orjson.loads(value)
                except orjson.JSONDecodeError:
                    raise _RowError(f"{target} is not valid JSON") from None
            message[target] = _plain(value)
        else:
            source_id = value
    return message, source_id


def _as_event(message: dict[str, Any]) -> dict[str, Any]:
    # The raw contract keeps a page's or screen's name in `event`; Segment calls it `name`.
    if message.get("type") in ("page", "screen") and "name" not in message and "event" in message:
        message["name"] = message.pop("event")
    return message


def _as_identify(message: dict[str, Any]) -> dict[str, Any]:
    message["type"] = "identify"
    message.setdefault("traits", {})
    return message


def _user_message_from_json(record: Any, id_column: str) -> dict[str, Any]:
    """A users-JSONL line (an object of attributes) as an identify message."""
    if type(record) is not dict:
        raise _RowError("line is not a JSON object")
    traits = dict(record)
    message: dict[str, Any] = {"type": "identify"}
    keys = (id_column,) if id_column != USER_ID_COLUMNS[0] else USER_ID_COLUMNS
    for key in keys:
        if key in traits:
            message["userId"] = traits.pop(key)
            break
    for key in ("anonymous_id", "anonymousId"):
        if key in traits:
            message["anonymousId"] = traits.pop(key)
    if "timestamp" in traits:
        message["timestamp"] = traits.pop("timestamp")
    message["traits"] = {k: v for k, v in traits.items() if v is not None and v != ""}
    return message


# --- reading files ----------------------------------------------------------------------------

# What readers yield: (line, index in a batch line or None, message or raw text, source id,
# reason it could not be read or None).
_Item = tuple[int, int | None, Any, Any, str | None]


class _CountingReader(io.RawIOBase):
    """A raw file that counts the bytes read, for a progress bar that is right for .gz too."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n or 0
        return n  # type: ignore[return-value]

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position = self.raw.seek(offset, whence)
        self.count = position
        return position

    def tell(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        self.raw.close()
        super().close()


class _Source:
    """An open input file: a line stream (decompressed if need be) and its byte counter."""

    def __init__(self, path: Path, compressed: bool):
        self.counter = _CountingReader(open(path, "rb", buffering=0))  # noqa: SIM115
        buffered = io.BufferedReader(self.counter, buffer_size=_HASH_CHUNK)
        self.stream: IO[bytes] = gzip.GzipFile(fileobj=buffered) if compressed else buffered

    def close(self) -> None:
        self.stream.close()
        self.counter.close()


def _jsonl_items(stream: IO[bytes], first_line: int, users: str | None) -> Iterator[_Item]:
    """Messages of a JSONL stream; ``users`` is the id column when lines are user records."""
    number = first_line
    for raw in iter(stream.readline, b""):
        number += 1
        if raw.isspace():
            continue
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            yield number, None, raw.decode("utf-8", "replace"), None, "invalid JSON"
            continue
        if users is not None:
            try:
                yield number, None, _user_message_from_json(parsed, users), None, None
            except _RowError as reason:
                yield number, None, parsed, None, str(reason)
        elif type(parsed) is dict and type(parsed.get("batch")) is list and "type" not in parsed:
            yield from _batch_items(number, parsed)
        else:
            yield number, None, parsed, None, None


def _batch_items(number: int, body: dict[str, Any]) -> Iterator[_Item]:
    """The messages of a ``/v1/batch`` body on one line, with the batch's defaults applied."""
    sent_at = body.get("sentAt")
    context = body.get("context")
    for index, message in enumerate(body["batch"]):
        if type(message) is dict:
            message = dict(message)
            if sent_at is not None:
                message.setdefault("sentAt", sent_at)
            if type(context) is dict and context:
                own = message.get("context")
                message["context"] = {**context, **own} if type(own) is dict else dict(context)
        yield number, index, message, None, None


class _Lines:
    """Decoded lines of a binary stream for ``csv.reader``, counted, noting undecodable ones."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.number = 0
        self.undecodable: list[int] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self.stream.readline()
        if not raw:
            raise StopIteration
        self.number += 1
        if self.number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.undecodable.append(self.number)
            return raw.decode("utf-8", "replace")


def _csv_header(lines: _Lines, reader: Any) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError("the CSV file is empty: it needs a header row") from None
    except csv.Error as exc:
        raise ImportFileError(f"cannot read the CSV header: {exc}") from None
    if lines.undecodable:
        raise ImportFileError("the CSV header is not UTF-8: save the file as UTF-8")
    header = [name.strip() for name in header]
    unnamed = [str(i) for i, name in enumerate(header, 1) if not name]
    if unnamed:
        raise ImportFileError(f"the CSV header names no column {', '.join(unnamed)}")
    return header


def _csv_items(
    stream: IO[bytes],
    build: Callable[[list[str]], _Plan],
    to_message: Callable[[dict[str, Any]], dict[str, Any]],
    skip: tuple[int, int] | None,
) -> Iterator[_Item]:
    """Messages of a CSV stream; ``skip`` is (bytes, lines) an earlier import already read."""
    lines = _Lines(stream)
    reader = csv.reader(lines)
    header = _csv_header(lines, reader)
    plan = build(header)
    if skip is not None:
        stream.seek(skip[0])
        lines.number = skip[1]
    width = len(header)
    while True:
        start = lines.number + 1
        lines.undecodable.clear()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, None, None, None, f"unreadable CSV row: {exc}"
            continue
        if not cells:
            continue
        record = dict(zip(header, cells, strict=False))
        if lines.undecodable:
            yield start, None, record, None, "not valid UTF-8"
            continue
        if len(cells) != width:
            yield start, None, record, None, f"expected {width} cells, found {len(cells)}"
            continue
        try:
            message, source_id = _csv_message(plan, cells)
        except _RowError as reason:
            yield start, None, record, None, str(reason)
            continue
        yield start, None, to_message(message), source_id, None


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ImportFileError(f"cannot read {path} as Parquet: {exc}") from None


def _parquet_items(
    parquet: pq.ParquetFile,
    build: Callable[[list[str]], _Plan],
    to_message: Callable[[dict[str, Any]], dict[str, Any]],
    bar: tqdm,
) -> Iterator[_Item]:
    """Messages of a Parquet file, read one row group batch at a time; numbered from 1."""
    plan = build(parquet.schema_arrow.names)
    number = 0
    for batch in parquet.iter_batches(batch_size=ROWS_PER_BATCH):
        names = batch.schema.names
        columns = [column.to_pylist(maps_as_pydicts="lossy") for column in batch.columns]
        for values in zip(*columns, strict=True):
            number += 1
            try:
                message, source_id = _parquet_message(plan, values)
            except _RowError as reason:
                record = dict(zip(names, values, strict=True))
                yield number, None, record, None, str(reason)
                continue
            yield number, None, to_message(message), source_id, None
        bar.update(batch.num_rows)


def _format_of(path: Path) -> tuple[str, bool]:
    """(format, gzipped) from the file name; raises :class:`ImportFileError` for others."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    ext = suffixes[-2] if compressed and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    kind = FORMATS.get(ext)
    if kind is None or (compressed and kind not in _GZIP_OK):
        known = ", ".join([*FORMATS, ".jsonl.gz", ".ndjson.gz", ".csv.gz"])
        raise ImportFileError(
            f"cannot tell the format of {path.name!r} from its extension; use one of {known} "
            "(a Segment S3 archive file is gzipped JSONL: name it .jsonl.gz)"
        )
    return kind, compressed


# --- the ledger ---------------------------------------------------------------------------------


@dataclass
class _Fingerprint:
    sha256: str
    size: int
    lines: int
    ends_with_newline: bool
    prefixes: dict[int, str]
    """SHA-256 of the first N bytes, for each N asked for."""


def _fingerprint(path: Path, prefix_sizes: set[int]) -> _Fingerprint:
    """Hash the file, and its first N bytes for each N in ``prefix_sizes``, in one read."""
    digest = hashlib.sha256()
    prefixes: dict[int, str] = {}
    pending = sorted(prefix_sizes)
    size = lines = 0
    last = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            while pending and pending[0] <= size + len(chunk):
                cut = pending.pop(0) - size
                digest.update(chunk[:cut])
                prefixes[size + cut] = digest.copy().hexdigest()
                lines += chunk.count(b"\n", 0, cut)
                size += cut
                chunk = chunk[cut:]
            digest.update(chunk)
            lines += chunk.count(b"\n")
            size += len(chunk)
            last = chunk[-1:] or last
    return _Fingerprint(digest.hexdigest(), size, lines, last == b"\n", prefixes)


def _ledger_name(kind: str, options: Mapping[str, str], sha256: str) -> str:
    key = orjson.dumps(
        {"kind": kind, "options": options, "sha256": sha256}, option=orjson.OPT_SORT_KEYS
    )
    return f"{kind}-{hashlib.sha256(key).hexdigest()[:32]}.json"


def _entries(home: SafarHome, kind: str, options: Mapping[str, str]) -> list[dict[str, Any]]:
    entries = []
    for path in sorted(home.import_ledger.glob(f"{kind}-*.json")):
        try:
            entry = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            log.warning("ignoring unreadable import ledger entry %s", path)
            continue
        if entry.get("kind") == kind and entry.get("options") == dict(options):
            entries.append(entry)
    return entries


def _still_landed(home: SafarHome, entry: Mapping[str, Any]) -> bool:
    # An entry whose landing files are all gone (lake/raw wiped) protects nothing any more.
    files = entry.get("files") or []
    return not files or any((home.raw_events / f).exists() for f in files)


def _write_entry(home: SafarHome, name: str, entry: Mapping[str, Any]) -> None:
    directory = home.import_ledger
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    tmp = directory / f".{name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(entry, option=orjson.OPT_INDENT_2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- landing ------------------------------------------------------------------------------------


def _reason_key(reason: str) -> str:
    """The part of a reason that names the problem; what follows ``": "`` is the instance.

    Example:
        >>> _reason_key("timestamp is not an ISO-8601 date-time: 'yesterday'")
        'timestamp is not an ISO-8601 date-time'
    """
    return reason.split(": ", 1)[0]


def _uuid5(name: str | bytes) -> str:
    """``str(uuid.uuid5(ID_NAMESPACE, name))``, without the UUID object (a third of the cost).

    Example:
        >>> _uuid5("position:ab:3:") == str(uuid.uuid5(ID_NAMESPACE, "position:ab:3:"))
        True
    """
    data = name.encode() if type(name) is str else name
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + data, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _given(value: Any) -> Any:
    return None if value is None or value == "" else value


class _Landing:
    """Turns messages into raw rows and lands them; keeps the summary and the rejected file."""

    def __init__(
        self, home: SafarHome, summary: ImportSummary, source_id: str, received_at: datetime
    ):
        self.home = home
        self.summary = summary
        self.source_id = source_id
        self.received_at = received_at
        self.writer = LakeWriter(home)
        self.rows: list[Row] = []
        self.tables: list[pa.Table] = []
        self.buffered = 0
        self.reasons: Counter[str] = Counter()
        self._rejected: IO[bytes] | None = None

    # Why the id is built this way is in the module docstring (Idempotency, 2.).
    def message_id(self, message: dict[str, Any], line: int, index: int | None) -> str:
        if _given(message.get("timestamp")) is not None or (
            _given(message.get("originalTimestamp")) is not None
        ):
            content = message
            if "messageId" in content:
                content = {k: v for k, v in content.items() if k != "messageId"}
            try:
                canonical = orjson.dumps(
                    content, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
                )
                return _uuid5(b"content:" + canonical)
            except orjson.JSONEncodeError:
                pass  # too deeply nested to write; it will be rejected, any id will do
        return _uuid5(f"position:{self.summary.sha256}:{line}:{'' if index is None else index}")

    def normalize(self, message: Any, line: int, index: int | None, source_id: Any) -> Row | str:
        """The raw row for ``message``, or why it is rejected."""
        source = source_id if type(source_id) is str and source_id else self.source_id
        if type(message) is not dict:
            return normalize_message(
                message, received_at=self.received_at, source_id=source, ip=None
            )  # only to get the gateway's wording for "not an object"
        m = dict(message)
        if m.get("messageId") is None or m.get("messageId") == "":
            m["messageId"] = self.message_id(message, line, index)
        stamped = _given(m.pop("timestamp", None))
        original = _given(m.pop("originalTimestamp", None))
        sent = _given(m.pop("sentAt", None))
        received = _given(m.pop("receivedAt", None))
        clock = self.received_at
        try:
            if stamped is None and original is not None and sent is not None and received:
                # The only case where the skew correction has the clock it needs.
                m["timestamp"] = original
                m["sentAt"] = sent
                clock = parse_timestamp(received, "receivedAt") or clock
            elif stamped is not None or original is not None:
                m["timestamp"] = stamped if stamped is not None else original
            row = normalize_message(
                m,
                received_at=clock,
                source_id=source,
                ip=None,
                max_event_bytes=MAX_EVENT_BYTES,
            )
            if type(row) is str:
                return row
            row["received_at"] = self.received_at
            if sent is not None:
                row["sent_at"] = parse_timestamp(sent, "sentAt")
            if original is not None:
                row["original_timestamp"] = parse_timestamp(original, "originalTimestamp")
        except ValueError as reason:  # messages.parse_timestamp's rejections
            return str(reason)
        return row

    def add(self, item: _Item) -> None:
        line, index, message, source_id, error = item
        result = error if error is not None else self.normalize(message, line, index, source_id)
        if type(result) is str:
            self.reject(line, index, result, message)
            return
        self.rows.append(result)
        if len(self.rows) >= ROWS_PER_BATCH:
            self._to_arrow()

    def reject(self, line: int, index: int | None, reason: str, message: Any) -> None:
        summary = self.summary
        summary.rejected += 1
        self.reasons[_reason_key(reason)] += 1
        if len(summary.first_rejections) < FIRST_REJECTIONS:
            summary.first_rejections.append(Rejection(line, reason, index))
        if self._rejected is None:
            self.home.rejected.mkdir(parents=True, exist_ok=True)
            summary.rejected_file = self.home.rejected / f"rejected-{new_file_id()}-import.jsonl"
            self._rejected = open(summary.rejected_file, "wb")  # noqa: SIM115
        record = {
            "reason": reason,
            "file": str(summary.path),
            "line": line,
            "index": index,
            "received_at": self.received_at,
            "source_id": self.source_id,
            "message": message,
        }
        try:
            self._rejected.write(orjson.dumps(record, default=str) + b"\n")
        except orjson.JSONEncodeError:  # nested too deep to write back out
            record["message"] = repr(message)[:4096]
            self._rejected.write(orjson.dumps(record, default=str) + b"\n")

    def _to_arrow(self) -> None:
        # Python dicts cost several times the memory of the same rows in Arrow: convert often.
        if self.rows:
            self.tables.append(pa.Table.from_pylist(self.rows, schema=RAW_SCHEMA))
            self.buffered += len(self.rows)
            self.rows = []
        if self.buffered >= ROWS_PER_FILE:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered as landing files."""
        if self.rows:
            self.tables.append(pa.Table.from_pylist(self.rows, schema=RAW_SCHEMA))
            self.rows = []
        if not self.tables:
            return
        table = pa.concat_tables(self.tables)
        self.tables = []
        self.buffered = 0
        result = self.writer.write(table)
        self.summary.accepted += result.accepted
        self.summary.files += result.files
        if result.rejected:
            # messages.py promises its rows pass the lake's rules; count it if one ever does not.
            self.summary.rejected += result.rejected
            self.reasons["rejected by the lake's checks"] += result.rejected

    def close(self) -> None:
        self.summary.reasons = dict(self.reasons.most_common())
        if self._rejected is not None:
            self._rejected.flush()
            os.fsync(self._rejected.fileno())
            self._rejected.close()
            self._rejected = None


# --- the import ---------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _look_up(
    home: SafarHome, path: Path, kind: str, options: dict[str, str], file_format: str, gz: bool
) -> tuple[_Fingerprint, dict[str, Any] | None, dict[str, Any] | None]:
    """Fingerprint ``path`` and find what the ledger knows about it.

    Returns:
        The fingerprint; the ledger entry of this exact file, if it was imported; and the entry
        of the longest earlier version of it that this one appends to, if any.
    """
    previous = _entries(home, kind, options)
    # Only plain line files grow by appending; a compressed or Parquet file is rewritten whole.
    candidates = [
        e
        for e in previous
        if file_format != "parquet"
        and not gz
        and e.get("format") == file_format
        and e.get("ends_with_newline")
        and not e.get("compressed")
        and _still_landed(home, e)
    ]
    try:
        fingerprint = _fingerprint(path, {e["size"] for e in candidates})
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc}") from None
    same = next((e for e in previous if e["sha256"] == fingerprint.sha256), None)
    if same is not None and not _still_landed(home, same):
        log.warning("%s was imported before, but its landing files are gone: importing", path)
        same = None
    prefix = max(
        (
            e
            for e in candidates
            if e["size"] < fingerprint.size and fingerprint.prefixes.get(e["size"]) == e["sha256"]
        ),
        key=lambda e: e["size"],
        default=None,
    )
    return fingerprint, same, prefix


def _import(
    home: SafarHome,
    path: Path | str,
    *,
    kind: str,
    options: dict[str, str],
    source_id: str,
    progress: bool,
    build: Callable[[list[str]], _Plan],
    to_message: Callable[[dict[str, Any]], dict[str, Any]],
    jsonl_users: str | None,
) -> ImportSummary:
    started = time.perf_counter()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    file_format, gz = _format_of(path)
    home = home.ensure()
    summary = ImportSummary(path=path, kind=kind, file_format=file_format)

    fingerprint, same, prefix = _look_up(home, path, kind, options, file_format, gz)
    summary.sha256 = fingerprint.sha256
    if same is not None:
        summary.already_imported = True
        summary.previously_imported_at = same.get("imported_at")
        summary.seconds = time.perf_counter() - started
        return summary
    skip = (prefix["size"], prefix["lines"]) if prefix is not None else None
    summary.skipped_lines = skip[1] if skip else 0

    received_at = _utcnow()
    parquet = _open_parquet(path) if file_format == "parquet" else None
    source = _Source(path, gz)
    landing = _Landing(home, summary, source_id, received_at)
    bar = tqdm(
        total=parquet.metadata.num_rows if parquet else fingerprint.size,
        unit="row" if parquet else "B",
        unit_scale=True,
        desc=f"import {kind}",
        disable=not progress,
        file=sys.stderr,
    )
    try:
        if parquet is not None:
            items = _parquet_items(parquet, build, to_message, bar)
        elif file_format == "csv":
            items = _csv_items(source.stream, build, to_message, skip)
        else:
            if skip is not None:
                source.stream.seek(skip[0])
            items = _jsonl_items(source.stream, skip[1] if skip else 0, jsonl_users)
        reported = 0  # the first update also counts the bytes skipped as already imported
        for count, item in enumerate(items, 1):
            landing.add(item)
            if count % 2048 == 0 and parquet is None:
                bar.update(source.counter.count - reported)
                reported = source.counter.count
        landing.flush()
        if parquet is None:
            bar.update(source.counter.count - reported)
    except (OSError, EOFError) as exc:  # a truncated .gz, a disk error
        # Rows of earlier chunks may have landed; their deterministic ids make a re-run safe.
        raise ImportFileError(f"cannot read {path}: {exc}") from exc
    finally:
        bar.close()
        source.close()
        landing.close()
    summary.seconds = time.perf_counter() - started

    if not (summary.accepted == 0 and summary.rejected > 0):
        # A file whose every row failed landed nothing, so there is nothing to protect; leaving
        # it out of the ledger lets it be imported again once the reason is fixed.
        entry = {
            "version": _LEDGER_VERSION,
            "kind": kind,
            "options": options,
            "sha256": fingerprint.sha256,
            "size": fingerprint.size,
            "lines": fingerprint.lines,
            "ends_with_newline": fingerprint.ends_with_newline,
            "compressed": gz,
            "format": file_format,
            "path": str(path.resolve()),
            "source_id": source_id,
            "imported_at": received_at.isoformat(timespec="seconds"),
            "appended_to": prefix["sha256"] if prefix is not None else None,
            "skipped_lines": summary.skipped_lines,
            "accepted": summary.accepted,
            "rejected": summary.rejected,
            "reasons": summary.reasons,
            "files": [str(f.relative_to(home.raw_events)) for f in summary.files],
            "rejected_file": str(summary.rejected_file) if summary.rejected_file else None,
        }
        _write_entry(home, _ledger_name(kind, options, fingerprint.sha256), entry)
    log.info("import of %s: %d accepted, %d rejected", path, summary.accepted, summary.rejected)
    return summary


def import_events(
    home: SafarHome, path: Path | str, source_id: str = DEFAULT_SOURCE_ID, progress: bool = True
) -> ImportSummary:
    """Import a JSONL, CSV or Parquet file of Segment messages into the landing zone.

    Importing the same file again changes nothing; see the module docstring for the column
    conventions of each format and how idempotency works.

    Args:
        home: the Safar home whose lake receives the events.
        path: the file; its extension names its format.
        source_id: stored as each row's ``source_id`` (a ``source_id`` column wins).
        progress: show a progress bar on stderr.

    Returns:
        Counts of accepted and rejected rows, the reasons, and where the rejected rows went.

    Raises:
        FileNotFoundError: there is no such file.
        ImportFileError: the file cannot be imported at all (format, header, unreadable).
    """
    return _import(
        home,
        path,
        kind="events",
        options={},
        source_id=source_id,
        progress=progress,
        build=_event_plan,
        to_message=_as_event,
        jsonl_users=None,
    )


def import_users(
    home: SafarHome,
    path: Path | str,
    id_column: str = USER_ID_COLUMNS[0],
    progress: bool = True,
    source_id: str = DEFAULT_SOURCE_ID,
) -> ImportSummary:
    """Import a file of users (one row each: id + attributes) as one identify event per row.

    Args:
        home: the Safar home whose lake receives the events.
        path: a CSV, Parquet or JSONL file.
        id_column: the column holding the user id. With the default, ``userId`` and ``id``
            are tried too when there is no ``user_id`` column.
        progress: show a progress bar on stderr.
        source_id: stored as each row's ``source_id``.

    Returns:
        Counts of accepted and rejected rows, the reasons, and where the rejected rows went.

    Raises:
        FileNotFoundError: there is no such file.
        ImportFileError: the file cannot be imported at all (format, no id column, unreadable).
    """
    return _import(
        home,
        path,
        kind="users",
        options={"id_column": id_column},
        source_id=source_id,
        progress=progress,
        build=lambda columns: _user_plan(columns, id_column),
        to_message=_as_identify,
        jsonl_users=id_column,
    )


# --- command line -------------------------------------------------------------------------------

_EVENTS_HELP = """\
FILE is JSONL of Segment messages (.jsonl, .ndjson, optionally .gz), CSV (.csv, .csv.gz) or
Parquet (.parquet). CSV and Parquet columns: type, event, name, userId|user_id,
anonymousId|anonymous_id, messageId|message_id, timestamp, sentAt, receivedAt, previousId,
groupId, category; properties/traits/context as JSON text, or one key per dotted column
(properties.price). Importing the same file twice changes nothing.
"""

_USERS_HELP = """\
FILE has one row per user: an id column (user_id, userId or id; or --id-column), optional
anonymous_id and timestamp columns, and any attribute columns, which become traits (dotted
names nest). Numbers stay numbers, true/false become booleans, empty cells are left out.
"""


def _run(args: argparse.Namespace, action: Callable[[], ImportSummary]) -> int:
    try:
        summary = action()
    except (FileNotFoundError, ImportFileError) as exc:
        print(f"safar import {args.kind}: error: {exc}", file=sys.stderr)
        return 1
    print(summary.report())
    return summary.exit_code


def _cmd_import_events(args: argparse.Namespace) -> int:
    home = home_from_env(getattr(args, "home", None))
    return _run(
        args,
        lambda: import_events(home, args.file, source_id=args.source_id, progress=not args.quiet),
    )


def _cmd_import_users(args: argparse.Namespace) -> int:
    home = home_from_env(getattr(args, "home", None))
    return _run(
        args,
        lambda: import_users(home, args.file, id_column=args.id_column, progress=not args.quiet),
    )


def register(subparsers: Any) -> None:
    """Add ``import events`` and ``import users`` to a ``safar`` subparsers object.

    Each handler is set as ``func`` and returns the exit code: 0 when rows were accepted or the
    file held nothing new, 1 when the file could not be read or every row was rejected.

    Example:
        >>> parser = argparse.ArgumentParser(prog="safar")
        >>> register(parser.add_subparsers(dest="command"))
        >>> args = parser.parse_args(["import", "users", "people.csv", "--id-column", "uid"])
        >>> args.kind, args.file, args.id_column, args.func is _cmd_import_users
        ('users', PosixPath('people.csv'), 'uid', True)
    """
    parser = subparsers.add_parser(
        "import", help="import events or users from JSONL, CSV or Parquet files"
    )
    kinds = parser.add_subparsers(dest="kind", required=True)
    events = kinds.add_parser(
        "events",
        help="import Segment messages",
        description=_EVENTS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    events.add_argument("file", type=Path)
    events.add_argument(
        "--source-id",
        default=DEFAULT_SOURCE_ID,
        help=f"source_id of the rows (default: {DEFAULT_SOURCE_ID})",
    )
    events.add_argument("--quiet", action="store_true", help="no progress bar")
    events.set_defaults(func=_cmd_import_events)

    users = kinds.add_parser(
        "users",
        help="import user attributes as identify events",
        description=_USERS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    users.add_argument("file", type=Path)
    users.add_argument(
        "--id-column",
        default=USER_ID_COLUMNS[0],
        help="column holding the user id (default: user_id, else userId, else id)",
    )
    users.add_argument("--quiet", action="store_true", help="no progress bar")
    users.set_defaults(func=_cmd_import_users)
