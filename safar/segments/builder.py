"""The no-code segment builder: a JSON condition tree compiled to one query with sqlglot.

A segment built in the UI is a tree of conditions over the dbt marts. :func:`parse_condition`
turns the JSON into frozen dataclasses, or raises a :class:`BuilderError` naming the field path
(``all[1].behaviour.count.op``); :func:`compile_condition` builds one
``SELECT dim_users.person_id AS user_id FROM dim_users WHERE …`` with sqlglot's builder, user
values entering only as literals, for the segment sandbox to check and run; :func:`describe`
says the same in plain English.

Every condition is a JSON object with exactly one key::

    {"all": [c, ...]}    {"any": [c, ...]}    {"not": c}
    {"attribute": {"name": <a dim_users column, see ATTRIBUTES>, "op": ..., "value": ...}}
    {"trait": {"name": <any identify trait>, "op": ..., "value": ...}}
    {"behaviour": {"event": <event name, or null for any active event>, "did": true,
                   "where": [<property filters, as in funnels>], "count": {"op": ..., "value": n},
                   "time": "ever" | {"last_days": n} | {"from": <date>, "to": <date>}}}
    {"first_time": {"event": ..., "where": [...], "time": {...}}}    (and "last_time")
    {"technology": {"name": <see TECHNOLOGY>, "op": ..., "value": ...}}
    {"reachable": "email" | "sms" | "push" | "web_push"}
    {"segment": <the slug of another segment>}

The rules:

- A test on a missing value is false, except ``neq``, ``not_in``, ``not_contains`` and
  ``is_not_set`` (as with property filters); ``not`` is the exact complement, pushed down to
  the leaves (De Morgan) so each leaf negates itself, NULLs included.
- Traits are read from ``dim_users.custom_attributes`` (every latest identify trait) with the
  property-filter rules of ``safar.analytics.filters``; date tests cast the text to a
  timestamp (an offset is honoured, none means UTC); ``between`` two numbers compares numbers,
  between two dates compares dates.
- Times: "last N days" is the N × 24 hours up to and including ``now``, the evaluation time,
  so membership changes as time passes. Dates and date-times without an offset are wall time
  in the ``timezone`` given to :func:`compile_condition`; a bare date is the whole day, so
  ``before`` a date is before its start, ``after`` it is after its end, and ``from``/``to`` and
  ``between`` are inclusive.
- Behaviour counts the person's behavioural events (``track``, ``page``, ``screen``) of that
  name in the time frame that pass ``where``; no ``event`` means any active event (those with
  a session, docs/warehouse.md). Without ``count`` it is "at least once". A count includes
  zero: "fewer than 2 times" holds for people who never did it.
- ``first_time``/``last_time``: the person's first (last) such event ever falls in the frame.
- Technology: the person has a device (``dim_devices``) with that value; the browser is read
  from the user agent of the device's web events; app versions compare as four numbers
  (5.15 = 5.15.0.0); the carrier is the person's (from the phone number, ``dim_users.carrier``).
- Reachability reads ``dim_user_reachability`` (known people only); membership of another
  segment reads the current rows of ``segment_membership``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlglot import exp

from safar.analytics import spec
from safar.analytics.filters import compile_filter, compile_filters, property_text, value_text
from safar.segments.sandbox import MEMBERSHIP, OUTPUT_COLUMN

TEXT, NUMBER, BOOLEAN, TIME, VERSION, TRAIT = (
    "text",
    "number",
    "boolean",
    "time",
    "version",
    "trait",
)
"""Kinds of value a test compares; each allows the operators in ``OPS``."""

_EQUALITY = ("eq", "neq", "in", "not_in")
_SET = ("is_set", "is_not_set")
_ORDER = ("gt", "gte", "lt", "lte", "between")
_DATES = ("before", "after", "between", "within_last_days")
OPS: dict[str, tuple[str, ...]] = {
    TEXT: (*_EQUALITY, "contains", "not_contains", "starts_with", *_SET),
    NUMBER: (*_EQUALITY, *_ORDER, *_SET),
    BOOLEAN: ("eq", "neq", *_SET),
    TIME: (*_DATES, *_SET),
    VERSION: (*_EQUALITY, "starts_with", *_ORDER, *_SET),
    TRAIT: (*_EQUALITY, "contains", "not_contains", "starts_with", *_ORDER)
    + ("before", "after", "within_last_days", *_SET),
}
"""Operators by kind of value."""

COUNT_OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "between")
CHANNELS = ("email", "sms", "push", "web_push")
BEHAVIOURAL_TYPES = ("track", "page", "screen")

BROWSERS = (
    ("Edge", "Edg(e|A|iOS)?/"),
    ("Opera", "OPR/|Opera"),
    ("Samsung Internet", "SamsungBrowser/"),
    ("Firefox", "Firefox/|FxiOS/"),
    ("Chrome", "Chrome/|CriOS/|Chromium/"),
    ("Safari", "Safari/"),
)
"""Browser names by user-agent pattern; the first match wins (Edge's agent names Chrome too)."""
OTHER_BROWSER = "Other"

_VERSION_PATTERN = "[0-9]+([.][0-9]+){0,3}"
"""App versions that compare: up to four dot-separated numbers."""

USERS, EVENTS, DEVICES, REACHABILITY = (
    "dim_users",
    "fct_events",
    "dim_devices",
    "dim_user_reachability",
)


@dataclass(frozen=True)
class Field:
    """A column a test may read: where it lives, its kind, its label, its allowed values."""

    table: str
    column: str
    kind: str
    label: str
    choices: tuple[str, ...] = ()


def _users(column: str, kind: str, label: str, choices: tuple[str, ...] = ()) -> Field:
    return Field(USERS, column, kind, label, choices)


ATTRIBUTES: dict[str, Field] = {
    "user_id": _users("user_id", TEXT, "user id"),
    "email": _users("email", TEXT, "email"),
    "phone": _users("phone", TEXT, "phone"),
    "first_name": _users("first_name", TEXT, "first name"),
    "last_name": _users("last_name", TEXT, "last name"),
    "name": _users("name", TEXT, "name"),
    "city": _users("city", TEXT, "city"),
    "country": _users("country", TEXT, "country"),
    "carrier": _users("carrier", TEXT, "carrier"),
    "language": _users("language", TEXT, "language"),
    "timezone": _users("timezone", TEXT, "time zone"),
    "rfm_class": _users(
        "rfm_class",
        TEXT,
        "RFM class",
        ("champions", "loyal", "potential_loyalist", "new", "at_risk", "hibernating", "lost"),
    ),
    "is_known": _users("is_known", BOOLEAN, "known flag"),
    "email_opt_in": _users("email_opt_in", BOOLEAN, "email opt-in"),
    "sms_opt_in": _users("sms_opt_in", BOOLEAN, "SMS opt-in"),
    "push_opt_in": _users("push_opt_in", BOOLEAN, "push opt-in"),
    "device_count": _users("device_count", NUMBER, "device count"),
    "order_count": _users("order_count", NUMBER, "order count"),
    "revenue": _users("revenue", NUMBER, "revenue"),
    "event_count": _users("event_count", NUMBER, "event count"),
    "first_seen_at": _users("first_seen_at", TIME, "first seen time"),
    "last_seen_at": _users("last_seen_at", TIME, "last seen time"),
    "signed_up_at": _users("signed_up_at", TIME, "sign-up time"),
    "first_order_at": _users("first_order_at", TIME, "first order time"),
    "last_order_at": _users("last_order_at", TIME, "last order time"),
}
"""``attribute`` names: the ``dim_users`` columns (anything else is a ``trait``)."""

TECHNOLOGY: dict[str, Field] = {
    "platform": Field(DEVICES, "platform", TEXT, "platform", ("android", "ios", "server", "web")),
    "device_type": Field(DEVICES, "device_type", TEXT, "device type"),
    "os": Field(DEVICES, "os_name", TEXT, "OS"),
    "device_model": Field(DEVICES, "device_model", TEXT, "device model"),
    "app_version": Field(DEVICES, "app_version", VERSION, "app version"),
    "browser": Field(
        EVENTS, "context", TEXT, "browser", (*(name for name, _ in BROWSERS), OTHER_BROWSER)
    ),
    "carrier": ATTRIBUTES["carrier"],
}
"""``technology`` names: device columns, the browser of web devices, the person's carrier."""


_UTC = ZoneInfo("UTC")


class BuilderError(ValueError):
    """A condition tree that cannot be compiled; the message starts with the field path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


# --- the tree ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllOf:
    """True when every one of ``conditions`` is."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    """True when at least one of ``conditions`` is."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """True when ``condition`` is not."""

    condition: Condition


@dataclass(frozen=True)
class AttributeTest:
    """A test on a ``dim_users`` column (a name of ``ATTRIBUTES``)."""

    name: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class TraitTest:
    """A test on a trait in ``dim_users.custom_attributes``."""

    name: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class TechnologyTest:
    """A test on the person's devices or carrier (a name of ``TECHNOLOGY``)."""

    name: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class TimeFrame:
    """The last ``last_days`` days, or ``date_from``..``date_to`` (ISO text); else ever."""

    last_days: int | None = None
    date_from: str | None = None
    date_to: str | None = None


@dataclass(frozen=True)
class Count:
    """How many times: ``op`` one of ``COUNT_OPS``; ``value`` a pair for ``between``."""

    op: str
    value: int | tuple[int, int]


@dataclass(frozen=True)
class Behaviour:
    """Did (or did not) do ``event`` (None: any active event) ``count`` times in ``time``."""

    event: str | None
    did: bool = True
    where: tuple[spec.Filter, ...] = ()
    count: Count | None = None
    time: TimeFrame = TimeFrame()


@dataclass(frozen=True)
class FirstOrLastTime:
    """The person's ``which`` ("first" or "last") such event falls in ``time``."""

    which: str
    event: str | None
    time: TimeFrame
    where: tuple[spec.Filter, ...] = ()


@dataclass(frozen=True)
class Reachable:
    """Reachable on ``channel`` (one of ``CHANNELS``)."""

    channel: str


@dataclass(frozen=True)
class InSegment:
    """A current member of the segment with the slug ``segment_id``."""

    segment_id: str


Condition = (
    AllOf
    | AnyOf
    | Not
    | AttributeTest
    | TraitTest
    | TechnologyTest
    | Behaviour
    | FirstOrLastTime
    | Reachable
    | InSegment
)


# --- parsing -----------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _choice(value: Any, path: str, choices: tuple[str, ...], what: str = "") -> str:
    if not isinstance(value, str) or value not in choices:
        where = f" for {what}" if what else ""
        raise BuilderError(path, f"must be one of {', '.join(choices)}{where}, not {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_int(value: Any, path: str, *, zero: bool = False) -> int:
    if type(value) is not int or value < (0 if zero else 1):
        raise BuilderError(path, f"must be a {'non-negative' if zero else 'positive'} integer")
    return value


def _instant(value: Any, path: str, *, end_of_day: bool, zone: ZoneInfo = _UTC) -> datetime | None:
    """An ISO date or date-time as naive UTC (``spec.parse_instant``; a bare date is a day)."""
    return spec.parse_instant(value, path, zone, end_of_day=end_of_day)


def _scalar(value: Any, path: str, field: Field | None) -> Any:
    """A single value a test compares with, of the field's kind (traits take any scalar)."""
    kind = field.kind if field else TRAIT
    ok = {
        TEXT: isinstance(value, str),
        VERSION: isinstance(value, str),
        NUMBER: _is_number(value),
        BOOLEAN: isinstance(value, bool),
        TRAIT: isinstance(value, str | bool) or _is_number(value),
    }[kind]
    if not ok or value == "":
        wanted = {TEXT: "a non-empty string", VERSION: "a non-empty string", NUMBER: "a number"}
        wanted |= {BOOLEAN: "true or false", TRAIT: "a non-empty string, number or boolean"}
        raise BuilderError(path, f"must be {wanted[kind]}, not {value!r}")
    if field is not None and field.choices and value not in field.choices:
        raise BuilderError(path, f"must be one of {', '.join(field.choices)}, not {value!r}")
    return value


def _version(value: Any, path: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(_VERSION_PATTERN, value):
        raise BuilderError(path, f"must be a version like 5.15.2 (up to 4 numbers), not {value!r}")
    return value


def _ordered(value: Any, path: str, kind: str) -> Any:
    """A bound of gt/gte/lt/lte/between: a number, a version, or (traits) a number."""
    if kind == VERSION:
        return _version(value, path)
    if not _is_number(value):
        raise BuilderError(path, f"must be a number, not {value!r}")
    return value


def _pair(value: Any, path: str, kind: str) -> tuple[Any, Any]:
    """The ``[low, high]`` of ``between``: numbers, versions or (time, traits) dates."""
    if not isinstance(value, list) or len(value) != 2:
        raise BuilderError(path, "must be a list of two values, [low, high] (inclusive)")
    low, high = value
    if kind == TIME or (kind == TRAIT and isinstance(low, str)):
        first = _instant(low, f"{path}[0]", end_of_day=False)
        last = _instant(high, f"{path}[1]", end_of_day=True)
        if first is None or last is None:
            raise BuilderError(path, "must be two ISO-8601 dates or date-times, [from, to]")
        if first > last:
            raise BuilderError(f"{path}[1]", "must not be before the low bound")
        return low, high
    low, high = _ordered(low, f"{path}[0]", kind), _ordered(high, f"{path}[1]", kind)
    key = _version_key if kind == VERSION else (lambda v: v)
    if key(low) > key(high):
        raise BuilderError(f"{path}[1]", "must not be below the low bound")
    return low, high


def _test_value(op: str, body: Mapping[str, Any], path: str, field: Field | None) -> Any:
    """The ``value`` of a test, checked against its operator and the field's kind."""
    value = body.get("value")
    kind = field.kind if field else TRAIT
    if op in _SET:
        if value is not None:
            raise BuilderError(path, f"must not be given for op {op}")
        return None
    if value is None:
        raise BuilderError(path, f"is required for op {op}")
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise BuilderError(path, f"must be a non-empty list for op {op}")
        return tuple(_scalar(v, f"{path}[{i}]", field) for i, v in enumerate(value))
    if op in ("eq", "neq"):
        if isinstance(value, list | Mapping):
            raise BuilderError(path, f"must be a single value for op {op} (use in/not_in)")
        return _scalar(value, path, field)
    if op in ("contains", "not_contains", "starts_with"):
        if not isinstance(value, str) or not value:
            raise BuilderError(path, f"must be a non-empty string for op {op}")
        return value
    if op == "between":
        return _pair(value, path, kind)
    if op in ("before", "after"):
        _instant(value, path, end_of_day=False)
        return value
    if op == "within_last_days":
        return _positive_int(value, path)
    return _ordered(value, path, kind)


def _parse_test(body: Any, path: str, registry: Mapping[str, Field] | None) -> tuple[str, str, Any]:
    body = spec.expect_object(body, path, {"name", "op", "value"})
    name = spec.expect_text(body.get("name"), f"{path}.name")
    field = None
    if registry is not None:
        if name not in registry:
            known = ", ".join(registry)
            hint = " (use a trait condition for custom traits)" if registry is ATTRIBUTES else ""
            raise BuilderError(f"{path}.name", f"unknown name {name!r}; one of {known}{hint}")
        field = registry[name]
    kind = field.kind if field else TRAIT
    what = f"{kind} value {name}" if field else f"trait {name}"
    op = _choice(body.get("op"), f"{path}.op", OPS[kind], what)
    return name, op, _test_value(op, body, f"{path}.value", field)


def _parse_time(value: Any, path: str) -> TimeFrame:
    if value == "ever":
        return TimeFrame()
    shape = 'must be "ever", {"last_days": n} or {"from": date, "to": date}'
    if not isinstance(value, Mapping):
        raise BuilderError(path, shape)
    body = spec.expect_object(value, path, {"last_days", "from", "to"})
    if "last_days" in body:
        if "from" in body or "to" in body:
            raise BuilderError(path, "give last_days or from/to, not both")
        return TimeFrame(last_days=_positive_int(body["last_days"], f"{path}.last_days"))
    if body.get("from") is None and body.get("to") is None:
        raise BuilderError(path, shape)
    first = _instant(body.get("from"), f"{path}.from", end_of_day=False)
    last = _instant(body.get("to"), f"{path}.to", end_of_day=True)
    if first is not None and last is not None and first > last:
        raise BuilderError(f"{path}.to", "must not be before from")
    return TimeFrame(date_from=body.get("from"), date_to=body.get("to"))


def _parse_count(value: Any, path: str) -> Count:
    body = spec.expect_object(value, path, {"op", "value"})
    op = _choice(body.get("op"), f"{path}.op", COUNT_OPS)
    raw = body.get("value")
    if op != "between":
        return Count(op, _positive_int(raw, f"{path}.value", zero=True))
    if not isinstance(raw, list) or len(raw) != 2:
        raise BuilderError(f"{path}.value", "must be a list of two counts, [low, high] (inclusive)")
    low = _positive_int(raw[0], f"{path}.value[0]", zero=True)
    high = _positive_int(raw[1], f"{path}.value[1]", zero=True)
    if low > high:
        raise BuilderError(f"{path}.value[1]", "must not be below the low bound")
    return Count(op, (low, high))


def _event_filters(body: Mapping[str, Any], path: str) -> tuple[spec.Filter, ...]:
    filters = spec.parse_filters(body.get("where"), f"{path}.where")
    _refuse_person_scope(filters, f"{path}.where")
    return filters


def _refuse_person_scope(filters: tuple[spec.Filter, ...], path: str) -> None:
    for i, filt in enumerate(filters):
        if isinstance(filt, spec.AnyOf | spec.AllOf):
            key = "any" if isinstance(filt, spec.AnyOf) else "all"
            _refuse_person_scope(filt.filters, f"{path}[{i}].{key}")
        elif filt.scope != "event":
            raise BuilderError(f"{path}[{i}].scope", "person filters belong in a trait condition")


def _event(body: Mapping[str, Any], path: str) -> str | None:
    if "event" not in body:
        raise BuilderError(f"{path}.event", "is required (null means any active event)")
    return spec.expect_text(body["event"], f"{path}.event", nullable=True)


def _parse_group(value: Any, path: str) -> tuple[Condition, ...]:
    if not isinstance(value, list) or not value:
        raise BuilderError(path, "must be a non-empty list of conditions")
    return tuple(_parse(item, f"{path}[{i}]") for i, item in enumerate(value))


def _parse_behaviour(value: Any, path: str) -> Behaviour:
    body = spec.expect_object(value, path, {"event", "did", "where", "count", "time"})
    event = _event(body, path)
    did = body.get("did", True)
    if not isinstance(did, bool):
        raise BuilderError(f"{path}.did", "must be true or false")
    count = body.get("count")
    return Behaviour(
        event=event,
        did=did,
        where=_event_filters(body, path),
        count=None if count is None else _parse_count(count, f"{path}.count"),
        time=_parse_time(body.get("time") or "ever", f"{path}.time"),
    )


def _parse_first_or_last(which: str) -> Callable[[Any, str], FirstOrLastTime]:
    def parse(value: Any, path: str) -> FirstOrLastTime:
        body = spec.expect_object(value, path, {"event", "where", "time"})
        event = _event(body, path)
        if body.get("time") in (None, "ever"):
            raise BuilderError(
                f"{path}.time", f"is required: when the {which} time must fall (not ever)"
            )
        time = _parse_time(body["time"], f"{path}.time")
        return FirstOrLastTime(which, event, time, _event_filters(body, path))

    return parse


_PARSERS: dict[str, Callable[[Any, str], Condition]] = {
    "all": lambda v, p: AllOf(_parse_group(v, p)),
    "any": lambda v, p: AnyOf(_parse_group(v, p)),
    "not": lambda v, p: Not(_parse(v, p)),
    "attribute": lambda v, p: AttributeTest(*_parse_test(v, p, ATTRIBUTES)),
    "trait": lambda v, p: TraitTest(*_parse_test(v, p, None)),
    "technology": lambda v, p: TechnologyTest(*_parse_test(v, p, TECHNOLOGY)),
    "behaviour": _parse_behaviour,
    "first_time": _parse_first_or_last("first"),
    "last_time": _parse_first_or_last("last"),
    "reachable": lambda v, p: Reachable(_choice(v, p, CHANNELS)),
    "segment": lambda v, p: InSegment(spec.expect_text(v, p)),
}
"""Condition kinds: the one key of a condition object, and its parser."""


def _parse(obj: Any, path: str) -> Condition:
    if not isinstance(obj, Mapping) or len(obj) != 1:
        kinds = ", ".join(_PARSERS)
        raise BuilderError(path or "condition", f"must be an object with one key, one of {kinds}")
    ((key, value),) = obj.items()
    if key not in _PARSERS:
        raise BuilderError(_join(path, key), f"unknown condition; one of {', '.join(_PARSERS)}")
    return _PARSERS[key](value, _join(path, key))


def parse_condition(obj: Any) -> Condition:
    """Parse a condition tree (already decoded from JSON).

    Args:
        obj: the decoded JSON object.

    Returns:
        The tree as frozen dataclasses.

    Raises:
        BuilderError: the tree is invalid; the message starts with the field path.

    Example:
        >>> parse_condition({"all": [{"reachable": "sms"}, {"segment": "vip"}]})
        AllOf(conditions=(Reachable(channel='sms'), InSegment(segment_id='vip')))
        >>> parse_condition({"not": {"behaviour": {"event": "Signed Up", "did": "no"}}})
        Traceback (most recent call last):
        ...
        safar.segments.builder.BuilderError: not.behaviour.did: must be true or false
    """
    try:
        return _parse(obj, "")
    except spec.SpecError as exc:
        raise BuilderError(exc.path, str(exc).removeprefix(f"{exc.path}: ")) from None


# --- compiling ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    now: datetime
    zone: ZoneInfo

    def instant(self, text: str, *, end_of_day: bool) -> datetime:
        return _instant(text, "", end_of_day=end_of_day, zone=self.zone)

    def bounds(self, frame: TimeFrame) -> tuple[datetime | None, datetime | None]:
        if frame.last_days is not None:
            return self.now - timedelta(days=frame.last_days), self.now
        first = None if frame.date_from is None else self.instant(frame.date_from, end_of_day=False)
        last = None if frame.date_to is None else self.instant(frame.date_to, end_of_day=True)
        return first, last


def _col(table: str, column: str) -> exp.Column:
    return exp.column(column, table)


def _timestamp(value: datetime) -> exp.Cast:
    return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), "TIMESTAMP")


def _literal(value: Any) -> exp.Expression:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if _is_number(value):
        return exp.Literal.number(value)
    return exp.Literal.string(value)


def _is_null(value: exp.Expression) -> exp.Is:
    return exp.Is(this=value, expression=exp.Null())


def _not(condition: exp.Expression) -> exp.Not:
    """NOT ``condition``, reading NULL as false (tests on a missing value are false)."""
    if isinstance(condition, exp.Exists | exp.Is | exp.Not | exp.Coalesce):
        return exp.Not(this=condition)
    return exp.Not(this=exp.func("coalesce", condition, exp.false()))


def _in_range(value: exp.Expression, low: Any, high: Any) -> exp.Expression:
    if low is not None and high is not None:
        return exp.Between(this=value, low=low, high=high)
    if low is not None:
        return exp.GTE(this=value, expression=low)
    return exp.LTE(this=value, expression=high)


def _frame(value: exp.Expression, frame: TimeFrame, ctx: _Context) -> list[exp.Expression]:
    """Conditions keeping ``value`` in the time frame (none for ever)."""
    low, high = ctx.bounds(frame)
    if low is None and high is None:
        return []
    return [
        _in_range(
            value,
            None if low is None else _timestamp(low),
            None if high is None else _timestamp(high),
        )
    ]


def _version_key(value: Any) -> Any:
    """A version as four numbers, missing parts 0: 5.15 → [5, 15, 0, 0]; NULL if not a version.

    On a column the list is NULL unless the text is a version: DuckDB orders a NULL element
    above every number, so a list with one would compare as a very new version.
    """
    if isinstance(value, str):
        parts = [int(p) for p in value.split(".")]
        return tuple(parts + [0] * (4 - len(parts)))
    parts = [
        exp.func(
            "coalesce",
            exp.TryCast(
                this=exp.func("split_part", value.copy(), exp.Literal.string("."), _literal(i)),
                to=exp.DataType.build("INT"),
            ),
            exp.Literal.number(0),
        )
        for i in range(1, 5)
    ]
    is_version = exp.func("regexp_full_match", value.copy(), exp.Literal.string(_VERSION_PATTERN))
    return exp.Case().when(is_version, exp.Array(expressions=parts))


def _version_literal(value: str) -> exp.Array:
    return exp.Array(expressions=[exp.Literal.number(n) for n in _version_key(value)])


_COMPARISONS: dict[str, type[exp.Binary]] = {
    "gt": exp.GT,
    "gte": exp.GTE,
    "lt": exp.LT,
    "lte": exp.LTE,
}
_OPPOSITES = {
    "eq": "neq",
    "in": "not_in",
    "contains": "not_contains",
    "is_set": "is_not_set",
}
_OPPOSITES |= {v: k for k, v in _OPPOSITES.items()}


def _column_test(
    value: exp.Expression, kind: str, op: str, target: Any, ctx: _Context
) -> exp.Expression:
    """``value op target`` on a typed column; NULL (false) when the value is missing."""
    if op in ("neq", "not_in", "not_contains"):
        return _not(_column_test(value, kind, _OPPOSITES[op], target, ctx))
    if op == "is_set":
        return exp.Not(this=_is_null(value))
    if op == "is_not_set":
        return _is_null(value)
    if op == "eq":
        return exp.EQ(this=value, expression=_literal(target))
    if op == "in":
        return exp.In(this=value, expressions=[_literal(t) for t in target])
    if op in ("contains", "starts_with"):
        name = "contains" if op == "contains" else "starts_with"
        return exp.func(name, exp.Lower(this=value), exp.Literal.string(target.lower()))
    if kind == TIME:
        if op == "before":
            return exp.LT(this=value, expression=_timestamp(ctx.instant(target, end_of_day=False)))
        if op == "after":
            return exp.GT(this=value, expression=_timestamp(ctx.instant(target, end_of_day=True)))
        if op == "within_last_days":
            low = ctx.now - timedelta(days=target)
            return _in_range(value, _timestamp(low), _timestamp(ctx.now))
        low, high = (
            ctx.instant(target[0], end_of_day=False),
            ctx.instant(target[1], end_of_day=True),
        )
        return _in_range(value, _timestamp(low), _timestamp(high))
    bound: Callable[[Any], exp.Expression] = _literal
    if kind == VERSION:
        value, bound = _version_key(value), _version_literal
    if op == "between":
        return _in_range(value, bound(target[0]), bound(target[1]))
    return _COMPARISONS[op](this=value, expression=bound(target))


def _negate_test(test: AttributeTest | TraitTest | TechnologyTest, negated: bool) -> str:
    """The operator of the test, or of its exact complement when there is one and it is asked."""
    return _OPPOSITES.get(test.op, test.op) if negated else test.op


def _compile_attribute(test: AttributeTest, ctx: _Context, negated: bool) -> exp.Expression:
    field = ATTRIBUTES[test.name]
    op = _negate_test(test, negated)
    condition = _column_test(_col(USERS, field.column), field.kind, op, test.value, ctx)
    return _not(condition) if negated and op == test.op else condition


def _trait_json() -> exp.Expression:
    return exp.cast(_col(USERS, "custom_attributes"), "JSON")


def _compile_trait(test: TraitTest, ctx: _Context, negated: bool) -> exp.Expression:
    op = _negate_test(test, negated)
    props = _trait_json()
    if op in ("in", "not_in", "eq", "neq", "contains", "not_contains", *_SET, *_COMPARISONS):
        filter_op = {"in": "eq", "not_in": "neq"}.get(op, op)
        filt = spec.Condition(test.name, filter_op, test.value, scope="person")
        condition = compile_filter(filt, exp.Null(), props)
    elif op in _DATES and (op != "between" or isinstance(test.value[0], str)):
        text = exp.TryCast(
            this=property_text(props, test.name), to=exp.DataType.build("TIMESTAMPTZ")
        )
        instant = exp.AtTimeZone(this=text, zone=exp.Literal.string("UTC"))
        condition = _column_test(instant, TIME, op, test.value, ctx)
    elif op == "between":
        low, high = (
            spec.Condition(test.name, o, v, "person")
            for o, v in zip(("gte", "lte"), test.value, strict=True)
        )
        condition = exp.and_(
            compile_filter(low, exp.Null(), props), compile_filter(high, exp.Null(), props)
        )
    else:
        condition = _column_test(property_text(props, test.name), TEXT, op, test.value, ctx)
    return _not(condition) if negated and op == test.op else condition


def _correlated(table: str) -> exp.EQ:
    return exp.EQ(this=_col(table, "person_id"), expression=_col(USERS, "person_id"))


def _exists(query: exp.Select, negated: bool) -> exp.Expression:
    condition = exp.Exists(this=query)
    return exp.Not(this=condition) if negated else condition


def _browser(context: exp.Expression) -> exp.Case:
    """The browser named by the user agent in an event's ``context`` (see ``BROWSERS``)."""
    agent = exp.func("json_extract_string", context, exp.Literal.string("$.userAgent"))
    case = exp.Case(default=exp.Literal.string(OTHER_BROWSER))
    for name, pattern in BROWSERS:
        matches = exp.func("regexp_matches", agent.copy(), exp.Literal.string(pattern))
        case = case.when(matches, exp.Literal.string(name))
    return case


def _compile_technology(test: TechnologyTest, ctx: _Context, negated: bool) -> exp.Expression:
    field = TECHNOLOGY[test.name]
    if field.table == USERS:
        return _compile_attribute(AttributeTest(test.name, test.op, test.value), ctx, negated)
    if field.table == DEVICES:
        value: exp.Expression = _col(DEVICES, field.column)
        query = exp.select(exp.Literal.number(1)).from_(DEVICES)
    else:
        value = _browser(_col(EVENTS, field.column))
        on = exp.EQ(this=_col(EVENTS, "device_id"), expression=_col(DEVICES, "device_id"))
        query = exp.select(exp.Literal.number(1)).from_(DEVICES).join(EVENTS, on=on)
    conditions = [_correlated(DEVICES)]
    if field.table == EVENTS:
        conditions.append(exp.EQ(this=_col(EVENTS, "platform"), expression=_literal("web")))
    conditions.append(_column_test(value, field.kind, test.op, test.value, ctx))
    return _exists(query.where(*conditions), negated)


def _event_match(event: str | None) -> list[exp.Expression]:
    if event is None:
        return [exp.Not(this=_is_null(_col(EVENTS, "session_id")))]
    return [
        exp.EQ(this=_col(EVENTS, "event_name"), expression=_literal(event)),
        exp.In(this=_col(EVENTS, "type"), expressions=[_literal(t) for t in BEHAVIOURAL_TYPES]),
    ]


def _event_conditions(event: str | None, where: tuple[spec.Filter, ...]) -> list[exp.Expression]:
    conditions = _event_match(event)
    if where:
        properties = exp.cast(_col(EVENTS, "properties"), "JSON")
        conditions.append(compile_filters(where, properties, exp.Null()))
    return conditions


_COUNT_OPPOSITES = {"eq": "neq", "neq": "eq", "gt": "lte", "lte": "gt", "gte": "lt", "lt": "gte"}


def _compile_behaviour(cond: Behaviour, ctx: _Context, negated: bool) -> exp.Expression:
    did = cond.did != negated
    conditions = [
        _correlated(EVENTS),
        *_event_conditions(cond.event, cond.where),
        *_frame(_col(EVENTS, "occurred_at"), cond.time, ctx),
    ]
    if cond.count is None:
        return _exists(exp.select(exp.Literal.number(1)).from_(EVENTS).where(*conditions), not did)
    counted = exp.select(exp.Count(this=exp.Star())).from_(EVENTS).where(*conditions).subquery()
    op, value = cond.count.op, cond.count.value
    if op == "between":
        test: exp.Expression = _in_range(counted, _literal(value[0]), _literal(value[1]))
        return test if did else exp.Not(this=exp.Paren(this=test))
    op = op if did else _COUNT_OPPOSITES[op]
    if op in ("eq", "neq"):
        kind = exp.EQ if op == "eq" else exp.NEQ
        return kind(this=counted, expression=_literal(value))
    return _COMPARISONS[op](this=counted, expression=_literal(value))


def _compile_first_or_last(cond: FirstOrLastTime, ctx: _Context, negated: bool) -> exp.Expression:
    person = _col(EVENTS, "person_id")
    moment = exp.Min if cond.which == "first" else exp.Max
    query = (
        exp.select(person)
        .from_(EVENTS)
        .where(*_event_conditions(cond.event, cond.where))
        .group_by(person.copy())
    )
    in_frame = _frame(moment(this=_col(EVENTS, "occurred_at")), cond.time, ctx)
    if in_frame:
        query = query.having(*in_frame)
    condition = _col(USERS, "person_id").isin(query=query)
    return exp.Not(this=condition) if negated else condition


def _compile_reachable(cond: Reachable, ctx: _Context, negated: bool) -> exp.Expression:
    query = (
        exp.select(exp.Literal.number(1))
        .from_(REACHABILITY)
        .where(
            _correlated(REACHABILITY),
            exp.EQ(this=_col(REACHABILITY, "channel"), expression=_literal(cond.channel)),
            _col(REACHABILITY, "is_reachable"),
        )
    )
    return _exists(query, negated)


def _compile_segment(cond: InSegment, ctx: _Context, negated: bool) -> exp.Expression:
    query = (
        exp.select(exp.Literal.number(1))
        .from_(MEMBERSHIP)
        .where(
            _correlated(MEMBERSHIP),
            exp.EQ(this=_col(MEMBERSHIP, "segment_id"), expression=_literal(cond.segment_id)),
            _is_null(_col(MEMBERSHIP, "exited_at")),
        )
    )
    return _exists(query, negated)


def _compile_group(cond: AllOf | AnyOf, ctx: _Context, negated: bool) -> exp.Expression:
    parts = [_compile(c, ctx, negated) for c in cond.conditions]
    # NOT (a AND b) = NOT a OR NOT b: negation goes to the leaves, which negate exactly.
    combine = exp.and_ if isinstance(cond, AllOf) != negated else exp.or_
    return combine(*parts)


_COMPILERS: dict[type, Callable[[Any, _Context, bool], exp.Expression]] = {
    AllOf: _compile_group,
    AnyOf: _compile_group,
    Not: lambda cond, ctx, negated: _compile(cond.condition, ctx, not negated),
    AttributeTest: _compile_attribute,
    TraitTest: _compile_trait,
    TechnologyTest: _compile_technology,
    Behaviour: _compile_behaviour,
    FirstOrLastTime: _compile_first_or_last,
    Reachable: _compile_reachable,
    InSegment: _compile_segment,
}


def _compile(cond: Condition, ctx: _Context, negated: bool = False) -> exp.Expression:
    return _COMPILERS[type(cond)](cond, ctx, negated)


def compile_condition(cond: Condition, *, now: datetime, timezone: str = "UTC") -> exp.Select:
    """The segment's query: one ``user_id`` column (``dim_users.person_id``) per member.

    Args:
        cond: a parsed condition tree.
        now: the evaluation time ("last N days" ends here); naive UTC, or aware.
        timezone: the IANA zone dates without an offset are wall time in.

    Returns:
        ``SELECT dim_users.person_id AS user_id FROM dim_users WHERE …``.

    Raises:
        BuilderError: ``timezone`` is unknown.

    Example:
        >>> cond = parse_condition({"reachable": "sms"})
        >>> print(compile_condition(cond, now=datetime(2026, 1, 31)).sql("duckdb", pretty=True))
        SELECT
          dim_users.person_id AS user_id
        FROM dim_users
        WHERE
          EXISTS(
            SELECT
              1
            FROM dim_user_reachability
            WHERE
              dim_user_reachability.person_id = dim_users.person_id
              AND dim_user_reachability.channel = 'sms'
              AND dim_user_reachability.is_reachable
          )
    """
    try:
        _, zone = spec.parse_timezone(timezone)
    except spec.SpecError as exc:
        raise BuilderError("timezone", str(exc).removeprefix("timezone: ")) from None
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    condition = _compile(cond, _Context(now, zone))
    return (
        exp.select(exp.alias_(_col(USERS, "person_id"), OUTPUT_COLUMN))
        .from_(USERS)
        .where(condition)
    )


# --- describing --------------------------------------------------------------------------------


def _either(values: tuple[Any, ...]) -> str:
    shown = [value_text(v) for v in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


_PHRASES = {
    "eq": ("is {}", "is not {}"),
    "neq": ("is not {}", "is {}"),
    "in": ("is one of {}", "is not one of {}"),
    "not_in": ("is not one of {}", "is one of {}"),
    "contains": ('contains "{}"', 'does not contain "{}"'),
    "not_contains": ('does not contain "{}"', 'contains "{}"'),
    "starts_with": ('starts with "{}"', 'does not start with "{}"'),
    "gt": ("is more than {}", "is not more than {}"),
    "gte": ("is at least {}", "is not at least {}"),
    "lt": ("is less than {}", "is not less than {}"),
    "lte": ("is at most {}", "is not at most {}"),
    "between": ("is between {}", "is not between {}"),
    "is_set": ("is set", "is not set"),
    "is_not_set": ("is not set", "is set"),
    "before": ("is before {}", "is not before {}"),
    "after": ("is after {}", "is not after {}"),
    "within_last_days": ("is in the last {}", "is not in the last {}"),
    "regex": ("matches /{}/", "does not match /{}/"),
}


def _days(n: int) -> str:
    return "day" if n == 1 else f"{n} days"


def _phrase(op: str, value: Any, negated: bool = False) -> str:
    if op in ("in", "not_in") and len(value) == 1:
        op, value = ("eq" if op == "in" else "neq"), value[0]
    if op == "between":
        shown = f"{value_text(value[0])} and {value_text(value[1])}"
    elif op == "within_last_days":
        shown = _days(value)
    elif isinstance(value, tuple):
        shown = _either(value)
    else:
        shown = value_text(value)
    return _PHRASES[op][negated].format(shown)


def _describe_filter(filt: spec.Filter) -> str:
    if isinstance(filt, spec.AnyOf | spec.AllOf):
        word = "or" if isinstance(filt, spec.AnyOf) else "and"
        return f"({f' {word} '.join(_describe_filter(f) for f in filt.filters)})"
    op = filt.op
    if isinstance(filt.value, tuple):  # a list means any-of (eq) or none-of (neq)
        op = "in" if op == "eq" else "not_in"
    return f"{filt.property} {_phrase(op, filt.value)}"


def _describe_time(frame: TimeFrame, count: Count | None = None) -> str:
    if frame.last_days is not None:
        return f" in the last {_days(frame.last_days)}"
    if frame.date_from is not None and frame.date_to is not None:
        if count is not None and count.op == "between":  # not "between 1 and 3 times between"
            return f" from {frame.date_from} to {frame.date_to}"
        return f" between {frame.date_from} and {frame.date_to}"
    if frame.date_from is not None:
        return f" since {frame.date_from}"
    if frame.date_to is not None:
        return f" until {frame.date_to}"
    return ""


def _describe_event(event: str | None, where: tuple[spec.Filter, ...]) -> str:
    name = event if event is not None else "any event"
    if not where:
        return name
    return f"{name} (where {' and '.join(_describe_filter(f) for f in where)})"


_COUNT_PHRASES = {
    "eq": "exactly {}",
    "neq": "other than {}",
    "gt": "more than {}",
    "gte": "at least {}",
    "lt": "fewer than {}",
    "lte": "at most {}",
}


def _times(n: int) -> str:
    return "1 time" if n == 1 else f"{n} times"


def _describe_count(count: Count | None) -> str:
    if count is None:
        return ""
    if count.op == "between":
        low, high = count.value
        return f" between {low} and {_times(high)}"
    return " " + _COUNT_PHRASES[count.op].format(_times(count.value))


def _describe_test(label: str, test: AttributeTest | TraitTest, negated: bool) -> str:
    return f"whose {label} {_phrase(test.op, test.value, negated)}"


def _describe_technology(test: TechnologyTest, negated: bool) -> str:
    field = TECHNOLOGY[test.name]
    if field.table == USERS:
        return _describe_test(field.label, test, negated)
    has = "have no device" if negated else "have a device"
    return f"who {has} whose {field.label} {_phrase(test.op, test.value)}"


def _describe_behaviour(cond: Behaviour, negated: bool) -> str:
    verb = "did" if cond.did != negated else "did not do"
    event = _describe_event(cond.event, cond.where)
    when = _describe_time(cond.time, cond.count)
    return f"who {verb} {event}{_describe_count(cond.count)}{when}"


def _describe_first_or_last(cond: FirstOrLastTime, negated: bool) -> str:
    verb = "did not do" if negated else "did"
    event = _describe_event(cond.event, cond.where)
    return f"who {verb} {event} for the {cond.which} time{_describe_time(cond.time)}"


_CHANNEL_NAMES = {"email": "email", "sms": "SMS", "push": "push", "web_push": "web push"}

_DESCRIBERS: dict[type, Callable[[Any, bool], str]] = {
    AttributeTest: lambda t, negated: _describe_test(ATTRIBUTES[t.name].label, t, negated),
    TraitTest: lambda t, negated: _describe_test(t.name, t, negated),
    TechnologyTest: _describe_technology,
    Behaviour: _describe_behaviour,
    FirstOrLastTime: _describe_first_or_last,
    Reachable: lambda c, negated: (
        f"who are {'not ' if negated else ''}reachable by {_CHANNEL_NAMES[c.channel]}"
    ),
    InSegment: lambda c, negated: f'who are {"not " if negated else ""}in segment "{c.segment_id}"',
}
"""Plain English for each kind of leaf, as a relative clause ("whose …", "who …")."""


def _clause(cond: Condition, negated: bool, nested: bool) -> str:
    if isinstance(cond, Not):
        return _clause(cond.condition, not negated, nested)
    if not isinstance(cond, AllOf | AnyOf):
        return _DESCRIBERS[type(cond)](cond, negated)
    if len(cond.conditions) == 1:
        return _clause(cond.conditions[0], negated, nested)
    word = "and" if isinstance(cond, AllOf) != negated else "or"
    parts = [_clause(c, negated, nested=True) for c in cond.conditions]
    text = f"{', '.join(parts[:-1])} {word} {parts[-1]}"
    return f"({text})" if nested else text


def describe(cond: Condition) -> str:
    """The condition in plain English, negations spelled out on each part.

    Example:
        >>> describe(parse_condition({"not": {"any": [
        ...     {"attribute": {"name": "carrier", "op": "eq", "value": "Irancell"}},
        ...     {"behaviour": {"event": "Order Completed", "time": {"last_days": 30}}}]}}))
        'Users whose carrier is not Irancell and who did not do Order Completed in the last 30 days'
    """
    return f"Users {_clause(cond, negated=False, nested=False)}"
