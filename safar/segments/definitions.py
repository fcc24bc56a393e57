"""What a segment is: a slug, a name, an owner, how often it refreshes, and its definition.

Segments come from two places and are one list to everything downstream:

- **Files** (analysts, in git): ``segments_sql/<slug>.sql`` holds one query returning ``user_id``
  and ``segments_sql/<slug>.yml`` its metadata (``name``, ``description``, ``owner``,
  ``refresh``); a builder tree can live in the yml instead, under ``condition``.
- **The app DB** (marketers, from the Segments pages): SQL, builder trees and static lists,
  stored by :mod:`safar.appdb.segments`.

``refresh`` is ``live`` (re-evaluated after every micro-batch that changed the tables the
segment reads, and re-checked as time passes when its conditions are relative to now) or an
interval such as ``15m``, ``6h`` or ``1d`` (evaluated at most that often, for expensive queries).

Each definition has a ``version``: a hash of what decides its members, so a changed definition
is re-evaluated even when no data changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from safar.config import PROJECT_ROOT, segments_directory

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_INTERVAL = re.compile(r"(\d+)\s*([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
MIN_INTERVAL = timedelta(minutes=1)

Kind = Literal["sql", "builder", "static"]
KINDS: tuple[Kind, ...] = ("sql", "builder", "static")
METADATA_KEYS = ("name", "description", "owner", "refresh", "condition")


class DefinitionError(ValueError):
    """A segment definition that cannot be used; the message names the file or field."""


@dataclass(frozen=True)
class SegmentDefinition:
    """One segment, wherever it was defined.

    ``sql`` is set for SQL segments, ``condition`` (the builder's JSON tree) for builder
    segments; a static list's members live in the app DB and ``list_digest`` fingerprints them.
    ``refresh`` is None for ``live``.
    """

    slug: str
    name: str
    kind: Kind
    description: str = ""
    owner: str = ""
    refresh: timedelta | None = None
    sql: str | None = None
    condition: Mapping[str, Any] | None = field(default=None, hash=False)
    list_digest: str | None = None
    origin: str = "app"

    @property
    def version(self) -> str:
        """A short hash of what decides the members (not the name or description)."""
        body = {"kind": self.kind, "sql": self.sql, "condition": self.condition}
        body["list"] = self.list_digest
        text = json.dumps(body, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def refresh_text(self) -> str:
        return format_refresh(self.refresh)


def check_slug(slug: str, where: str = "slug") -> str:
    """``slug`` if it is a valid segment slug, else a DefinitionError.

    Example:
        >>> check_slug("repeat-buyers")
        'repeat-buyers'
        >>> check_slug("Repeat Buyers")
        Traceback (most recent call last):
        ...
        safar.segments.definitions.DefinitionError: slug: 'Repeat Buyers' is not a slug \
(lower-case letters, digits, - and _, at most 63, starting with a letter or digit)
    """
    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise DefinitionError(
            f"{where}: {slug!r} is not a slug (lower-case letters, digits, - and _, at most 63,"
            " starting with a letter or digit)"
        )
    return slug


def parse_refresh(value: Any, where: str = "refresh") -> timedelta | None:
    """``live`` → None; ``15m`` / ``6h`` / ``1d`` → that interval.

    Example:
        >>> parse_refresh("live") is None, parse_refresh("90m")
        (True, datetime.timedelta(seconds=5400))
        >>> parse_refresh("30s")
        Traceback (most recent call last):
        ...
        safar.segments.definitions.DefinitionError: refresh: '30s' is not live or an interval \
like 15m, 6h or 1d
    """
    if value is None or value == "live":
        return None
    match = _INTERVAL.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise DefinitionError(f"{where}: {value!r} is not live or an interval like 15m, 6h or 1d")
    interval = timedelta(**{_UNITS[match[2]]: int(match[1])})
    if interval < MIN_INTERVAL:
        raise DefinitionError(f"{where}: at least 1m")
    return interval


def format_refresh(refresh: timedelta | None) -> str:
    """The inverse of :func:`parse_refresh`.

    Example:
        >>> [format_refresh(r) for r in (None, timedelta(hours=6), timedelta(days=2))]
        ['live', '6h', '2d']
    """
    if refresh is None:
        return "live"
    minutes = int(refresh.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def _text_field(meta: Mapping[str, Any], key: str, where: str, *, required: bool) -> str:
    value = meta.get(key)
    if value is None:
        if required:
            raise DefinitionError(f"{where}: {key} is missing")
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise DefinitionError(f"{where}: {key} must be a non-empty text")
    return value.strip()


def shown_path(path: Path) -> str:
    """``path`` relative to the project when it is inside it (as people name the files)."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def read_segment_file(path: Path) -> str:
    """The text of a segment file, which must be UTF-8.

    Raises:
        DefinitionError: the file is not UTF-8 (the message names it, the line and the byte).
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DefinitionError(
            f"{shown_path(path)}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line});"
            " save the file as UTF-8"
        ) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """`` at line L, column C: what is wrong``, on one line.

    PyYAML's own text spans several lines and names the input ``"<unicode string>"``; the
    file is already named, and ``safar segment validate`` prints one line per problem.
    """
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if problem is None:
        return f"{at}: {' '.join(str(exc).split())}"
    return f"{at}: {context}: {problem}" if context else f"{at}: {problem}"


def load_file_segment(yml: Path) -> SegmentDefinition:
    """The segment defined by ``<slug>.yml`` and its ``<slug>.sql`` (or ``condition``).

    Raises:
        DefinitionError: a bad slug, unreadable YAML, an unknown or missing key, both or
            neither of a ``.sql`` file and ``condition``; the message names the file.
    """
    where = shown_path(yml)
    slug = check_slug(yml.stem, f"{where}: file name")
    try:
        meta = yaml.safe_load(read_segment_file(yml))
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{where}: not valid YAML{_yaml_problem(exc)}") from None
    if not isinstance(meta, dict):
        raise DefinitionError(f"{where}: must be a mapping with name, description, owner, refresh")
    unknown = sorted(set(meta) - set(METADATA_KEYS))
    if unknown:
        raise DefinitionError(
            f"{where}: unknown key {unknown[0]!r}; a segment file has {', '.join(METADATA_KEYS)}"
        )
    sql_file = yml.with_suffix(".sql")
    condition = meta.get("condition")
    if sql_file.exists() == (condition is not None):
        raise DefinitionError(
            f"{where}: give the query in {sql_file.name} or a builder tree under condition,"
            " exactly one of them"
        )
    if condition is not None and not isinstance(condition, dict):
        raise DefinitionError(f"{where}: condition must be a mapping (a builder tree)")
    common = {
        "slug": slug,
        "name": _text_field(meta, "name", where, required=True),
        "description": _text_field(meta, "description", where, required=False),
        "owner": _text_field(meta, "owner", where, required=False),
        "refresh": parse_refresh(meta.get("refresh"), f"{where}: refresh"),
    }
    if condition is not None:
        return SegmentDefinition(kind="builder", condition=condition, origin=where, **common)
    sql = read_segment_file(sql_file)
    if not sql.strip():
        raise DefinitionError(f"{shown_path(sql_file)}: empty; write one SELECT returning user_id")
    return SegmentDefinition(kind="sql", sql=sql, origin=shown_path(sql_file), **common)


def load_file_segments(directory: Path | None = None) -> list[SegmentDefinition]:
    """Every segment in ``directory`` (default: :func:`safar.config.segments_directory`).

    Raises:
        DefinitionError: any file is bad, or a ``.sql`` file has no ``.yml`` beside it.
    """
    directory = directory or segments_directory()
    if not directory.exists():
        return []
    lonely = [
        sql for sql in sorted(directory.glob("*.sql")) if not sql.with_suffix(".yml").exists()
    ]
    if lonely:
        raise DefinitionError(
            f"{shown_path(lonely[0])}: no {lonely[0].with_suffix('.yml').name} beside it"
        )
    return [load_file_segment(yml) for yml in sorted(directory.glob("*.yml"))]


def merge_segments(*groups: list[SegmentDefinition]) -> list[SegmentDefinition]:
    """One list from several sources, by slug.

    Raises:
        DefinitionError: two definitions share a slug.
    """
    seen: dict[str, SegmentDefinition] = {}
    for group in groups:
        for definition in group:
            other = seen.get(definition.slug)
            if other is not None:
                raise DefinitionError(
                    f"segment {definition.slug!r} is defined twice: {other.origin} and"
                    f" {definition.origin}"
                )
            seen[definition.slug] = definition
    return [seen[slug] for slug in sorted(seen)]
