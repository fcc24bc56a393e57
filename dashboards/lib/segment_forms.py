"""The Segments pages' pure parts: slugs, refresh, the builder's rows ↔ condition trees.

No Streamlit here. The builder page keeps its widget values in session state under the prefix
``segbuild_``; :func:`builder_tree` reads them into the JSON condition tree of
:mod:`safar.segments.builder` and :func:`builder_state` gives the values that show a tree. The
form shows a top-level "all" or "any" of rows, each one attribute, behaviour, technology,
reachability or segment test; anything else (``not``, nesting, traits, first/last time) is
edited as JSON, and :func:`builder_state` says so rather than showing it approximately.

Example:
    >>> tree = {"all": [{"reachable": "sms"}, {"segment": "vip"}]}
    >>> state = builder_state(tree)
    >>> state["segbuild_join"], state["segbuild_rows"], state["segbuild_r1_segment"]
    ('all', [0, 1], 'vip')
    >>> builder_tree(state) == tree
    True
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import polars as pl

from dashboards.lib.forms import event_option, event_value
from safar.segments.builder import (
    ATTRIBUTES,
    BOOLEAN,
    NUMBER,
    TECHNOLOGY,
    TEXT,
    TIME,
    VERSION,
    AllOf,
    BuilderError,
    Field,
    parse_condition,
)
from safar.segments.definitions import SLUG, SegmentDefinition, format_refresh, parse_refresh
from safar.segments.membership import SizeSummary
from safar.segments.static_list import DELIMITERS

BUILDER = "segbuild_"
SQL_EDITOR = "segsql_"
UPLOAD = "segupload_"
LIST = "segments_"

ROW_KINDS = ("attribute", "behaviour", "technology", "reachable", "segment")
"""The conditions a form row can be; the rest of the grammar is edited as JSON."""
ROW_KIND_LABELS = {
    "attribute": "Attribute",
    "behaviour": "Behaviour",
    "technology": "Technology",
    "reachable": "Reachable on",
    "segment": "In segment",
}
JOINS = {"all": "all of these", "any": "any of these"}

OP_LABELS = {
    "eq": "is",
    "neq": "is not",
    "in": "is one of",
    "not_in": "is not one of",
    "contains": "contains",
    "not_contains": "does not contain",
    "starts_with": "starts with",
    "gt": "more than",
    "gte": "at least",
    "lt": "less than",
    "lte": "at most",
    "between": "between",
    "is_set": "is set",
    "is_not_set": "is not set",
    "before": "before",
    "after": "after",
    "within_last_days": "in the last … days",
}
ONCE = "once"
"""The count option that stands for no count: at least once."""
COUNT_LABELS = {
    ONCE: "at least once",
    "eq": "exactly",
    "neq": "other than",
    "gt": "more than",
    "gte": "at least",
    "lt": "fewer than",
    "lte": "at most",
    "between": "between",
}
TIME_LABELS = {"ever": "ever", "last_days": "in the last N days", "dates": "between dates"}
NO_PROPERTY = ""
"""The property option that stands for no property filter."""
PROPERTY_OPS = ("eq", "neq", "contains", "not_contains", "gt", "gte", "lt", "lte", "is_set")
PROPERTY_OPS += ("is_not_set",)
"""Operators of a behaviour row's property filter (``safar.analytics.spec.OPS`` but regex)."""

SUGGESTED = frozenset({"carrier", "city", "country", "language", "timezone", "device_type", "os"})
SUGGESTED |= {"device_model"}
"""Text fields whose warehouse values are offered in a pick list (few values, not personal)."""

REFRESH_UNITS = {"m": "minutes", "h": "hours", "d": "days"}

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


# --- names and refresh -----------------------------------------------------------------------


def slugify(name: str) -> str:
    """The slug a segment name suggests: lower case, runs of other characters as ``-``.

    Example:
        >>> slugify("  Irancell buyers (2+ orders)! "), slugify("VIP_Tehran"), slugify("مشتریان")
        ('irancell-buyers-2-orders', 'vip-tehran', '')
    """
    slug = _NOT_SLUG.sub("-", name.lower()).strip("-")[:63].rstrip("-")
    return slug if SLUG.fullmatch(slug) else ""


def refresh_text(mode: str, every: int, unit: str) -> str:
    """The ``refresh`` of the live/interval widgets.

    Example:
        >>> refresh_text("live", 15, "m"), refresh_text("interval", 6, "h")
        ('live', '6h')
    """
    return "live" if mode == "live" else f"{int(every)}{unit}"


def refresh_state(prefix: str, refresh: Any) -> dict[str, Any]:
    """The refresh widgets' values that show a definition's ``refresh`` (a timedelta or None).

    Example:
        >>> from datetime import timedelta
        >>> refresh_state("p_", timedelta(hours=6))
        {'p_refresh_mode': 'interval', 'p_refresh_every': 6, 'p_refresh_unit': 'h'}
        >>> refresh_state("p_", None)["p_refresh_mode"]
        'live'
    """
    if refresh is None:
        return {f"{prefix}refresh_mode": "live"}
    text = format_refresh(refresh)
    return {
        f"{prefix}refresh_mode": "interval",
        f"{prefix}refresh_every": int(text[:-1]),
        f"{prefix}refresh_unit": text[-1],
    }


# --- messages --------------------------------------------------------------------------------

_MARKDOWN = re.compile(r"([\\`*$\[\]<>~])")


def plain(text: str) -> str:
    """``text`` escaped for Streamlit's Markdown, so names and values show as typed.

    ``$`` would start LaTeX and ``*`` emphasis; ``_`` inside words is left alone (CommonMark
    does not emphasise there, and slugs are full of it).

    Example:
        >>> print(plain("revenue is more than $5 and name contains *"))
        revenue is more than \\$5 and name contains \\*
    """
    return _MARKDOWN.sub(r"\\\1", text)


def error_excerpt(text: str, line: int | None, column: int | None) -> str | None:
    """The offending line of ``text`` with a caret under ``column`` (1-based), or None.

    Example:
        >>> print(error_excerpt("select person_id as user_id\\nfrom dim_users\\nwhere carier = 1",
        ...                     3, 7))
        3 | where carier = 1
          |       ^
    """
    lines = text.splitlines()
    if line is None or not 1 <= line <= len(lines):
        return None
    gutter = f"{line} | "
    caret = " " * (len(gutter) - 2) + "| " + " " * max((column or 1) - 1, 0) + "^"
    return f"{gutter}{lines[line - 1]}\n{caret}"


def without_position(reason: str) -> str:
    """A sandbox message without its ``line L, column C:`` prefix (the page shows it apart).

    Example:
        >>> without_position("line 3, column 7: unknown column 'carier'")
        "unknown column 'carier'"
    """
    return re.sub(r"^line \d+, column \d+: ", "", reason)


# --- uploaded lists --------------------------------------------------------------------------


def csv_columns(data: bytes) -> list[str]:
    """The header of an uploaded list, read as ``parse_static_list`` reads it; [] if unreadable.

    Example:
        >>> csv_columns(b"\\xef\\xbb\\xbfName;Mobile\\n0912;x\\n"), csv_columns(b"\\xff\\x00")
        (['Name', 'Mobile'], [])
    """
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return []
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        return []
    delimiter = max(DELIMITERS, key=first.count) if any(d in first for d in DELIMITERS) else ","
    header = next(csv.reader(io.StringIO(first), delimiter=delimiter), [])
    return [name.strip() for name in header if name.strip()]


# --- the builder form ------------------------------------------------------------------------


class FormCannotShow(ValueError):
    """A tree the form has no widgets for; it is edited as JSON."""


def row_key(row: int, name: str, prefix: str = BUILDER) -> str:
    """The session-state key of one field of one form row."""
    return f"{prefix}r{row}_{name}"


def registry(kind: str) -> Mapping[str, Field]:
    """The fields a row of ``kind`` ("attribute" or "technology") may test."""
    return ATTRIBUTES if kind == "attribute" else TECHNOLOGY


def suggests(name: str, field: Field) -> bool:
    """Whether the value of ``field`` is picked from a list (its choices or warehouse values)."""
    return bool(field.choices) or name in SUGGESTED


def value_widgets(name: str, field: Field, op: str) -> tuple[str, ...]:
    """Which value widgets a test on ``field`` with ``op`` shows (key suffixes, in order).

    Example:
        >>> value_widgets("carrier", ATTRIBUTES["carrier"], "eq")
        ('choice',)
        >>> value_widgets("email", ATTRIBUTES["email"], "eq")
        ('text',)
        >>> value_widgets("revenue", ATTRIBUTES["revenue"], "between")
        ('number', 'number_high')
        >>> value_widgets("signed_up_at", ATTRIBUTES["signed_up_at"], "is_set")
        ()
    """
    kind = field.kind
    if op in ("is_set", "is_not_set"):
        return ()
    if op in ("in", "not_in"):
        return ("choices",)
    if kind == BOOLEAN:
        return ("bool",)
    if kind == TIME:
        return {"within_last_days": ("days",), "between": ("dates",)}.get(op, ("date",))
    if kind == NUMBER:
        return ("number", "number_high") if op == "between" else ("number",)
    if kind == VERSION and op == "between":
        return ("text", "text_high")
    if kind == TEXT and op in ("eq", "neq") and suggests(name, field):
        return ("choice",)
    return ("text",)


def _number(value: Any) -> Any:
    """A widget's number as JSON wants it: integral floats as ints.

    Example:
        >>> _number(2.0), _number(2.5), _number(None)
        (2, 2.5, None)
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _number_text(text: Any) -> Any:
    """Text a person typed as a number when it is one, else the text itself (trimmed).

    Example:
        >>> _number_text(" 12 "), _number_text("1.5"), _number_text("12a")
        (12, 1.5, '12a')
    """
    text = str(text).strip()
    try:
        return _number(float(text)) if re.fullmatch(r"-?\d+(\.\d+)?", text) else text
    except ValueError:
        return text


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, date) else None


def _dates(value: Any) -> list[str | None]:
    picked = [value] if isinstance(value, date) else list(value or ())
    return [_iso(d) for d in picked]


def _test_value(state: Mapping[str, Any], row: int, ns: str, name: str, op: str) -> Any:
    field = registry(ns)[name]

    def get(suffix: str) -> Any:
        return state.get(row_key(row, f"{ns}_{suffix}"))

    widgets = value_widgets(name, field, op)
    if not widgets:
        return None
    first = widgets[0]
    if first == "choices":
        values = list(get("choices") or [])
        if field.kind in (NUMBER,):
            return [_number_text(v) for v in values]
        return values
    if first in ("choice", "bool"):
        return get(first)
    if first == "days":
        return get("days")
    if first == "date":
        return _iso(get("date"))
    if first == "dates":
        picked = _dates(get("dates"))
        return [picked[0], picked[-1]] if picked else None
    if first == "number":
        if op == "between":
            return [_number(get("number")), _number(get("number_high"))]
        return _number(get("number"))
    text = (get("text") or "").strip() or None
    if op == "between":
        return [text, (get("text_high") or "").strip() or None]
    return text


def _test(state: Mapping[str, Any], row: int, ns: str) -> dict[str, Any]:
    name = state.get(row_key(row, f"{ns}_name"))
    op = state.get(row_key(row, f"{ns}_op"))
    body: dict[str, Any] = {"name": name, "op": op}
    if name in registry(ns) and op is not None:
        value = _test_value(state, row, ns, name, op)
        if value is not None:
            body["value"] = value
    return {ns: body}


def _behaviour(state: Mapping[str, Any], row: int) -> dict[str, Any]:
    def get(name: str, default: Any = None) -> Any:
        return state.get(row_key(row, name), default)

    body: dict[str, Any] = {"event": event_value(get("event")), "did": get("did", True)}
    count_op = get("count_op", ONCE)
    if count_op == "between":
        body["count"] = {"op": count_op, "value": [get("count", 0), get("count_high", 0)]}
    elif count_op != ONCE:
        body["count"] = {"op": count_op, "value": get("count", 0)}
    time = get("time", "ever")
    if time == "last_days":
        body["time"] = {"last_days": get("last_days")}
    elif time == "dates":
        picked = _dates(get("dates"))
        frame = {"from": picked[0], "to": picked[-1]} if len(picked) > 1 else {}
        body["time"] = frame or ({"from": picked[0]} if picked else "ever")
    else:
        body["time"] = "ever"
    prop = get("property")
    if prop:
        op = get("property_op", "eq")
        where: dict[str, Any] = {"property": prop, "op": op}
        if op not in ("is_set", "is_not_set"):
            raw = get("property_value") or ""
            where["value"] = _number_text(raw) if op in ("gt", "gte", "lt", "lte") else raw
        body["where"] = [where]
    return {"behaviour": body}


def builder_tree(state: Mapping[str, Any], prefix: str = BUILDER) -> dict[str, Any] | None:
    """The condition tree the form's rows describe; None when there are no rows.

    Values go in as the widgets hold them: whether they make a valid tree is
    :func:`safar.segments.builder.parse_condition`'s to say, with the field path.

    Example:
        >>> builder_tree({"segbuild_join": "any", "segbuild_rows": [3],
        ...               "segbuild_r3_kind": "reachable", "segbuild_r3_channel": "email"})
        {'any': [{'reachable': 'email'}]}
    """
    rows = state.get(f"{prefix}rows") or []
    if not rows:
        return None
    conditions = []
    for row in rows:
        kind = state.get(row_key(row, "kind", prefix))
        if kind in ("attribute", "technology"):
            conditions.append(_test(state, row, kind))
        elif kind == "behaviour":
            conditions.append(_behaviour(state, row))
        elif kind == "reachable":
            conditions.append({"reachable": state.get(row_key(row, "channel", prefix))})
        else:
            conditions.append({"segment": state.get(row_key(row, "segment", prefix))})
    return {state.get(f"{prefix}join", "all"): conditions}


def _date_value(text: Any) -> date | None:
    if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise FormCannotShow(f"the form shows dates, not {text!r}")
    return date.fromisoformat(text)


def _test_state(row: int, ns: str, body: Mapping[str, Any]) -> dict[str, Any]:
    name, op, value = body.get("name"), body.get("op"), body.get("value")
    field = registry(ns)[name]
    state: dict[str, Any] = {row_key(row, f"{ns}_name"): name, row_key(row, f"{ns}_op"): op}

    def put(suffix: str, item: Any) -> None:
        state[row_key(row, f"{ns}_{suffix}")] = item

    widgets = value_widgets(name, field, op)
    first = widgets[0] if widgets else None
    if first == "choices":
        put("choices", [str(v) if field.kind == NUMBER else v for v in value])
    elif first in ("choice", "bool", "days"):
        put(first, value)
    elif first == "date":
        put("date", _date_value(value))
    elif first == "dates":
        put("dates", (_date_value(value[0]), _date_value(value[1])))
    elif first == "number":
        if op == "between":
            put("number", float(value[0]))
            put("number_high", float(value[1]))
        else:
            put("number", float(value))
    elif first == "text":
        if op == "between":
            put("text", value[0])
            put("text_high", value[1])
        else:
            put("text", value)
    return state


def _behaviour_state(row: int, body: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {
        row_key(row, "event"): event_option(body.get("event")),
        row_key(row, "did"): body.get("did", True),
        row_key(row, "count_op"): ONCE,
        row_key(row, "time"): "ever",
        row_key(row, "property"): NO_PROPERTY,
    }
    count = body.get("count")
    if count is not None:
        state[row_key(row, "count_op")] = count["op"]
        if count["op"] == "between":
            state[row_key(row, "count")], state[row_key(row, "count_high")] = count["value"]
        else:
            state[row_key(row, "count")] = count["value"]
    time = body.get("time") or "ever"
    if isinstance(time, Mapping) and "last_days" in time:
        state[row_key(row, "time")] = "last_days"
        state[row_key(row, "last_days")] = time["last_days"]
    elif isinstance(time, Mapping):
        state[row_key(row, "time")] = "dates"
        dates = [time.get("from"), time.get("to")]
        state[row_key(row, "dates")] = tuple(_date_value(d) for d in dates if d is not None)
    where = body.get("where") or []
    if len(where) > 1 or (where and set(where[0]) - {"property", "op", "value"}):
        raise FormCannotShow("the form shows one property filter on an event")
    if where:
        (only,) = where
        if only.get("op") not in PROPERTY_OPS:
            raise FormCannotShow(f"the form has no property operator {only.get('op')!r}")
        state[row_key(row, "property")] = only["property"]
        state[row_key(row, "property_op")] = only["op"]
        if "value" in only:
            value = only["value"]
            state[row_key(row, "property_value")] = "" if value is None else str(value)
    return state


def builder_state(tree: Any, prefix: str = BUILDER) -> dict[str, Any]:
    """Session-state values that show ``tree`` in the form.

    Raises:
        BuilderError: the tree is not valid (the message starts with the field path).
        FormCannotShow: the tree is valid but the form cannot show it exactly.
    """
    if prefix != BUILDER:
        raise ValueError("the builder form lives under the segbuild_ prefix")
    parsed = parse_condition(tree)
    grouped = next(iter(tree)) in ("all", "any")
    ((join, items),) = tree.items() if grouped else (("all", [tree]),)
    state: dict[str, Any] = {f"{prefix}join": join, f"{prefix}rows": list(range(len(items)))}
    for row, item in enumerate(items):
        ((kind, body),) = item.items()
        if kind not in ROW_KINDS:
            raise FormCannotShow(
                f"the form has no row for {kind!r}; it shows {', '.join(ROW_KINDS)} under one "
                "all or any"
            )
        state[row_key(row, "kind")] = kind
        if kind in ("attribute", "technology"):
            state.update(_test_state(row, kind, body))
        elif kind == "behaviour":
            state.update(_behaviour_state(row, body))
        elif kind == "reachable":
            state[row_key(row, "channel")] = body
        else:
            state[row_key(row, "segment")] = body
    expected = parsed if grouped else AllOf((parsed,))
    try:
        same = parse_condition(builder_tree(state, prefix)) == expected
    except BuilderError:
        same = False
    if not same:
        raise FormCannotShow("the form would not show this tree exactly")
    return state


DEFAULT_FIELDS = {"attribute": "carrier", "technology": "platform"}
"""The field a new attribute or technology row tests."""


def new_row_state(row: int, event: str | None, prefix: str = BUILDER) -> dict[str, Any]:
    """A new row: did ``event`` (the warehouse's most frequent one) at least once, ever.

    Example:
        >>> new_row_state(2, "Product Viewed")["segbuild_r2_event"]
        'Product Viewed'
    """
    return {row_key(row, "kind", prefix): "behaviour", **_behaviour_state(row, {"event": event})}


def new_builder_state(event: str | None, prefix: str = BUILDER) -> dict[str, Any]:
    """The form of a new segment: one behaviour row (a tree that runs as it is)."""
    return {f"{prefix}join": "all", f"{prefix}rows": [0], **new_row_state(0, event, prefix)}


# --- definitions from the pages' widgets -----------------------------------------------------


def details_state(prefix: str, definition: SegmentDefinition) -> dict[str, Any]:
    """The name, slug, description, owner and refresh widgets' values for ``definition``.

    The slug no longer follows the name: renaming a saved segment keeps its slug.
    """
    return {
        f"{prefix}name": definition.name,
        f"{prefix}slug": definition.slug,
        f"{prefix}slug_auto": None,
        f"{prefix}description": definition.description,
        f"{prefix}owner": definition.owner,
        **refresh_state(prefix, definition.refresh),
    }


def definition_from_state(
    state: Mapping[str, Any], prefix: str, kind: str, **body: Any
) -> SegmentDefinition:
    """The definition the details widgets and ``body`` (``sql=`` or ``condition=``) describe.

    Raises:
        DefinitionError: the refresh interval is not one.

    Example:
        >>> d = definition_from_state({"p_name": " Buyers ", "p_slug": "buyers",
        ...     "p_refresh_mode": "interval", "p_refresh_every": 6, "p_refresh_unit": "h"},
        ...     "p_", "sql", sql="select 1")
        >>> d.slug, d.name, d.refresh_text, d.sql
        ('buyers', 'Buyers', '6h', 'select 1')
    """
    refresh = refresh_text(
        state.get(f"{prefix}refresh_mode", "live"),
        state.get(f"{prefix}refresh_every", 1),
        state.get(f"{prefix}refresh_unit", "h"),
    )
    return SegmentDefinition(
        slug=(state.get(f"{prefix}slug") or "").strip(),
        name=(state.get(f"{prefix}name") or "").strip(),
        kind=kind,  # type: ignore[arg-type]
        description=(state.get(f"{prefix}description") or "").strip(),
        owner=(state.get(f"{prefix}owner") or "").strip(),
        refresh=parse_refresh(refresh),
        **body,
    )


# --- the list ---------------------------------------------------------------------------------

KIND_LABELS = {"sql": "SQL", "builder": "Builder", "static": "List"}
APP_ORIGIN = "app"


def defined_in(definition: SegmentDefinition) -> str:
    """Where a segment is defined, as the list shows it.

    Example:
        >>> from safar.segments.definitions import SegmentDefinition as D
        >>> defined_in(D("a", "A", "sql", origin="segments_sql/a.sql"))
        'segments_sql/a.sql'
        >>> defined_in(D("b", "B", "sql"))
        'Safar app'
    """
    return "Safar app" if definition.origin == APP_ORIGIN else definition.origin


def segments_frame(
    definitions: Sequence[SegmentDefinition],
    sizes: Mapping[str, SizeSummary],
    trends: Mapping[str, Sequence[int]],
) -> pl.DataFrame:
    """One row per segment: what it is, where it is defined, its size and its trend.

    Example:
        >>> from datetime import datetime
        >>> from safar.segments.definitions import SegmentDefinition as D
        >>> sizes = {"vip": SizeSummary(12, datetime(2026, 1, 31), 2)}
        >>> df = segments_frame([D("vip", "VIP", "sql", owner="ana")], sizes, {"vip": [10, 12]})
        >>> df.select("Slug", "Kind", "Size", "7-day change", "Trend").row(0)
        ('vip', 'SQL', 12, 2, [10, 12])
    """
    empty = SizeSummary()
    rows = []
    for d in definitions:
        summary = sizes.get(d.slug, empty)
        rows.append(
            {
                "Name": d.name,
                "Slug": d.slug,
                "Kind": KIND_LABELS[d.kind],
                "Refresh": d.refresh_text,
                "Owner": d.owner,
                "Defined in": defined_in(d),
                "Size": summary.size,
                "7-day change": summary.change_7d,
                "Last evaluated": summary.evaluated_at,
                "Trend": list(trends.get(d.slug, [])),
            }
        )
    schema = {
        "Name": pl.String,
        "Slug": pl.String,
        "Kind": pl.String,
        "Refresh": pl.String,
        "Owner": pl.String,
        "Defined in": pl.String,
        "Size": pl.Int64,
        "7-day change": pl.Int64,
        "Last evaluated": pl.Datetime("us"),
        "Trend": pl.List(pl.Int64),
    }
    return pl.DataFrame(rows, schema=schema)
