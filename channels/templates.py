"""Message templates: every channel's fields, rendered per person with Jinja2 in a sandbox.

Marketers write the fields (email ``subject``/``text``/``html``, SMS ``text``, push ``title``/
``body``/…, a webhook's ``body`` and ``headers``), so templates run in Jinja's immutable sandbox:
``{{ ''.__class__.__mro__ }}`` is refused, never executed, and a template cannot change the data
it is given. Preview and send build the context with the same function, :func:`build_context`,
so a preview that renders is a send that renders.

Variables: ``user`` (the person's traits plus ``person_id``), ``event`` (the triggering event:
``name``, ``properties``, ``timestamp``), ``journey`` (``id``, ``name`` and earlier steps'
outputs, such as a webhook's response) and ``now`` (an aware UTC datetime). A campaign has no
``event`` or ``journey``; using them there is an error, like any other missing name.

Missing is an error, never a blank: ``{{ user.first_name }}`` for a person without that trait
fails with ``'user' has no attribute 'first_name'``. Optional values take a default,
``{{ user.first_name | default("دوست") }}``, which also covers a missing parent
(``user.address.city``). A trait whose value is null counts as missing, so ``default`` applies
to it and a bare use names it (``'user.city' is null``); whole-object uses such as ``tojson``
keep nulls as they are. Keys win over methods: a trait named ``items`` is ``user.items``.

Filters: ``date``, ``jalali`` (Solar Hijri, Persian month names), ``currency`` (IRR, toman,
USD, EUR), ``number``, ``fa_digits``, ``direction``, and Jinja's own (``tojson`` writes valid
JSON for webhook bodies). Block tags on their own line leave no blank line behind
(``trim_blocks``/``lstrip_blocks``) and a trailing newline is kept: plain text comes out as
written.

Fields named ``html`` or ending in ``_html`` are autoescaped; when such a document's text reads
right to left and its author set no ``dir``, :func:`apply_html_direction` marks it RTL. Plain text
is left alone: no bidi marks are injected, since SMS and push clients lay text out by its first
strong character already.

Runaway templates stop with an error: per field, output is capped at :data:`MAX_OUTPUT_BYTES`,
loops and ``range`` at :data:`MAX_LOOP_STEPS`, and ``*``/``**`` may not build values past those
bounds. These stop honest mistakes and the obvious bombs; they are not a memory jail (a template
doubling a string in a loop can still grow it), so the worker's own limits remain the backstop.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import partial
from html.parser import HTMLParser
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jdatetime
from jinja2 import ChainableUndefined, StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import FilterArgumentError, SecurityError, TemplateRuntimeError
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_BYTES = 256 * 1024
"""The most UTF-8 bytes one field may render to."""

MAX_LOOP_STEPS = 100_000
"""Loop iterations plus numbers made by ``range`` that one field's render may use."""

MAX_INT_BITS = 100_000
"""The largest integer ``*`` and ``**`` may build (about 30,000 digits)."""

Direction = Literal["ltr", "rtl"]
Digits = Literal["fa", "latin"]

_FA_DIGITS = str.maketrans("0123456789٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹" * 2)
# CLDR's Persian separators: U+066C groups thousands, U+066B marks decimals.
_FA_NUMBER = str.maketrans({**{chr(k): v for k, v in _FA_DIGITS.items()}, ",": "٬", ".": "٫"})
_FA_LOCALE = "fa_IR"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field, for a page to show next to it.

    Attributes:
        field: the field's name (``subject``, ``html``, …).
        line: the template line, when known.
        message: what is wrong, in plain words.
    """

    field: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.field if self.line is None else f"{self.field}, line {self.line}"
        return f"{where}: {self.message}"


class TemplateError(ValueError):
    """A template that does not compile or render; ``problems`` lists every field's problem."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))


class _LimitExceeded(TemplateRuntimeError):
    """A render went past one of the runaway-template limits."""


def fa_digits(value: Any) -> str:
    """Write Western (0-9) and Arabic-Indic (٠-٩) digits as Persian ones (۰-۹).

    Example:
        >>> fa_digits("Order 1405 / ١٢")
        'Order ۱۴۰۵ / ۱۲'
    """
    return str(value).translate(_FA_DIGITS)


def _persian(digits: str) -> bool:
    if digits not in ("fa", "latin"):
        raise FilterArgumentError(f"digits must be 'fa' or 'latin', not {digits!r}")
    return digits == "fa"


def _defined(value: Any) -> Any:
    # StrictUndefined raises on str(), naming what is missing; without this a filter would
    # report "cannot read Undefined" instead.
    if isinstance(value, Undefined):
        str(value)
    return value


def _decimal(value: Any) -> Decimal:
    if not isinstance(_defined(value), bool):
        try:
            number = Decimal(value if isinstance(value, Decimal | int | str) else str(value))
        except (InvalidOperation, ValueError):
            number = None
        if number is not None and number.is_finite():
            return number
    raise FilterArgumentError(f"{value!r} is not a number")


def _grouped(amount: Decimal, decimals: int) -> str:
    if not isinstance(decimals, int) or isinstance(decimals, bool) or decimals < 0:
        raise FilterArgumentError(f"decimals must be a whole number ≥ 0, not {decimals!r}")
    try:
        rounded = amount.quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)
    except InvalidOperation:
        raise FilterArgumentError(f"{amount} is too large to format") from None
    return f"{rounded:,.{decimals}f}"


def format_number(value: Any, digits: Digits = "latin", decimals: int = 0) -> str:
    """Group thousands and round half up; the ``number`` filter.

    Args:
        value: an int, float, Decimal or numeric string.
        digits: ``latin`` (``1,234.5``) or ``fa`` (``۱٬۲۳۴٫۵``, Persian separators too).
        decimals: digits after the decimal point.

    Returns:
        The formatted number.

    Example:
        >>> format_number(1234567.891, decimals=2), format_number("12500", digits="fa")
        ('1,234,567.89', '۱۲٬۵۰۰')
    """
    text = _grouped(_decimal(value), decimals)
    return text.translate(_FA_NUMBER) if _persian(digits) else text


@dataclass(frozen=True)
class _Currency:
    unit: str
    unit_first: bool
    decimals: int
    script: Digits
    rials_per_unit: int = 1


_CURRENCIES = {
    "IRR": _Currency(" ریال", unit_first=False, decimals=0, script="fa"),
    "IRT": _Currency(" تومان", unit_first=False, decimals=0, script="fa", rials_per_unit=10),
    "USD": _Currency("$", unit_first=True, decimals=2, script="latin"),
    "EUR": _Currency("€", unit_first=True, decimals=2, script="latin"),
}
_CURRENCIES["TOMAN"] = _CURRENCIES["IRT"]


def format_currency(value: Any, code: str = "IRR", digits: Digits | None = None) -> str:
    """Format an amount of money; the ``currency`` filter.

    Iranian amounts are always given in rials, the legal unit that payment gateways report and
    Safar stores: ``IRT`` (or ``toman``) shows rials / 10, rounded half up. Other currencies
    take their major unit (dollars, euros) and show two decimals.

    Args:
        value: the amount (int, float, Decimal or numeric string).
        code: ``IRR``, ``IRT``/``toman``, ``USD`` or ``EUR`` (any case).
        digits: ``fa`` or ``latin``; by default Persian for rial and toman, Latin otherwise.

    Returns:
        The amount with thousands separators and its unit.

    Example:
        >>> format_currency(1250000), format_currency(1250000, "toman", digits="latin")
        ('۱٬۲۵۰٬۰۰۰ ریال', '125,000 تومان')
        >>> format_currency(-1234.5, "USD")
        '-$1,234.50'
    """
    currency = _CURRENCIES.get(str(code).upper())
    if currency is None:
        raise FilterArgumentError(f"currency {code!r} is not one of IRR, IRT (toman), USD, EUR")
    amount = _decimal(value) / currency.rials_per_unit
    text = _grouped(amount, currency.decimals)
    sign, text = ("-", text[1:]) if text.startswith("-") else ("", text)
    text = text.translate(_FA_NUMBER) if _persian(digits or currency.script) else text
    return f"{sign}{currency.unit}{text}" if currency.unit_first else f"{sign}{text}{currency.unit}"


def _instant(value: Any) -> date:
    """A datetime or date from what events carry: datetimes, ISO-8601 text, epoch seconds."""
    if isinstance(_defined(value), date):
        return value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            # A bare day is a calendar date, which no time zone may shift.
            return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            pass
    raise FilterArgumentError(f"cannot read {value!r} as a date")


def _in_zone(moment: date, tz: str | None) -> date:
    if tz is None or not isinstance(moment, datetime):
        return moment
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise FilterArgumentError(f"unknown time zone {tz!r}") from None
    # Safar keeps naive datetimes in UTC.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone)


def format_date(value: Any, fmt: str = "%Y-%m-%d", tz: str | None = None) -> str:
    """Format a Gregorian date or time; the ``date`` filter.

    Args:
        value: a datetime, date, ISO-8601 string or epoch seconds.
        fmt: a ``strftime`` format.
        tz: a zone name (``Asia/Tehran``) to convert a time to first; naive times are UTC.

    Returns:
        The formatted date.

    Example:
        >>> late = "2026-03-20T23:00:00Z"
        >>> format_date(late), format_date(late, tz="Asia/Tehran"), format_date(0, "%d %B %Y")
        ('2026-03-20', '2026-03-21', '01 January 1970')
    """
    return _in_zone(_instant(value), tz).strftime(fmt)


def format_jalali(
    value: Any, fmt: str = "%Y/%m/%d", tz: str | None = "Asia/Tehran", digits: Digits = "fa"
) -> str:
    """Format a date in the Solar Hijri (Jalali) calendar; the ``jalali`` filter.

    Month and weekday names (``%B``, ``%b``, ``%A``) are Persian: the locale is given to each
    ``jdatetime`` object, never set on the process or the thread.

    Args:
        value: a datetime, date, ISO-8601 string or epoch seconds.
        fmt: a ``jdatetime`` ``strftime`` format.
        tz: the zone the calendar day is read in; naive times are UTC. ``None`` keeps the time
            as given.
        digits: ``fa`` (``۱۴۰۵``) or ``latin`` (``1405``).

    Returns:
        The formatted Jalali date.

    Example:
        >>> format_jalali("2026-03-20T23:00:00Z", "%d %B %Y")
        '۰۱ فروردین ۱۴۰۵'
        >>> format_jalali(date(2026, 3, 1), digits="latin")
        '1404/12/10'
    """
    moment = _in_zone(_instant(value), tz)
    if isinstance(moment, datetime):
        jalali = jdatetime.datetime.fromgregorian(datetime=moment, locale=_FA_LOCALE)
    else:
        jalali = jdatetime.date.fromgregorian(date=moment, locale=_FA_LOCALE)
    text = jalali.strftime(fmt)
    return fa_digits(text) if _persian(digits) else text


def _first_strong(text: str) -> Direction | None:
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind == "L":
            return "ltr"
        if kind in ("R", "AL"):
            return "rtl"
    return None


def direction(text: Any) -> Direction:
    """The direction of text by its first strong character, as ``dir="auto"`` decides.

    Example:
        >>> direction("۱۲ سفارش Safar"), direction("12 orders, سلام"), direction("۱۲۳")
        ('rtl', 'ltr', 'ltr')
    """
    return _first_strong(str(text)) or "ltr"


_NOT_SHOWN = frozenset({"head", "title", "style", "script", "template"})
_NOT_CONTENT = frozenset({"html", "head", "body", "meta", "link", "base"})


class _HtmlScan(HTMLParser):
    """Reads, in one pass, what :func:`apply_html_direction` needs to know about a document."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self._line_starts = [0] + [i + 1 for i, char in enumerate(html) if char == "\n"]
        self._hidden = 0
        self._seen_content_tag = False
        self.html_at: int | None = None
        self.body_at: int | None = None
        self.body_tag_length = 0
        self.body_end: int | None = None
        self.author_set_dir = False
        self.direction: Direction | None = None
        self.feed(html)
        self.close()

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        has_dir = any(name == "dir" for name, _ in attrs)
        if tag == "html":
            self.html_at = self._offset()
            self.author_set_dir |= has_dir
        elif tag == "body":
            self.body_at = self._offset()
            self.body_tag_length = len(self.get_starttag_text() or "")
            self.author_set_dir |= has_dir
            self._hidden = 0  # an unclosed <head> ends here
        elif tag in _NOT_SHOWN:
            self._hidden += 1
        elif not self._hidden and not self._seen_content_tag and tag not in _NOT_CONTENT:
            # The body's first element is the wrapper email builders put around everything.
            self._seen_content_tag = True
            self.author_set_dir |= has_dir

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()
        elif tag in _NOT_SHOWN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if self.direction is None and not self._hidden:
            self.direction = _first_strong(data)


def apply_html_direction(html: str) -> str:
    """Mark an HTML email right-to-left when its text is RTL and its author set no ``dir``.

    The author's choice wins: a ``dir`` on ``<html>``, ``<body>`` or the body's first element
    (the usual wrapper) leaves the document as it is, as does text that reads left to right.
    Otherwise ``dir="rtl"`` goes on ``<html>`` and ``<body>`` (Apple Mail, Outlook,
    Thunderbird) and the body's content is wrapped in ``<div dir="rtl">``, because webmail such
    as Gmail drops the ``<html>`` and ``<body>`` tags; a fragment is wrapped whole.

    Args:
        html: the rendered document or fragment.

    Returns:
        The document, marked RTL where needed.

    Example:
        >>> apply_html_direction("<p>سلام علی</p>")
        '<div dir="rtl"><p>سلام علی</p></div>'
        >>> apply_html_direction('<html><body class="x"><p>سلام</p></body></html>')
        '<html dir="rtl"><body dir="rtl" class="x"><div dir="rtl"><p>سلام</p></div></body></html>'
        >>> apply_html_direction('<div dir="ltr">سلام</div>'), apply_html_direction("<p>Hi</p>")
        ('<div dir="ltr">سلام</div>', '<p>Hi</p>')
    """
    scan = _HtmlScan(html)
    if scan.direction != "rtl" or scan.author_set_dir:
        return html
    if scan.html_at is None and scan.body_at is None:
        return f'<div dir="rtl">{html}</div>'
    edits: list[tuple[int, str]] = []
    if scan.html_at is not None:
        edits.append((scan.html_at + len("<html"), ' dir="rtl"'))
    if scan.body_at is not None:
        edits.append((scan.body_at + len("<body"), ' dir="rtl"'))
        edits.append((scan.body_at + scan.body_tag_length, '<div dir="rtl">'))
        edits.append((len(html) if scan.body_end is None else scan.body_end, "</div>"))
    for at, text in sorted(edits, reverse=True):
        html = html[:at] + text + html[at:]
    return html


FILTERS: Mapping[str, Callable[..., Any]] = {
    "date": format_date,
    "jalali": format_jalali,
    "currency": format_currency,
    "number": format_number,
    "fa_digits": fa_digits,
    "direction": direction,
}
"""Safar's filters, by the name templates use."""


class _Record(Mapping[str, Any]):
    """A read-only view of a context mapping that knows its path (``user``, ``event.properties``)
    so a missing key is reported by name rather than as ``'dict object'``."""

    # Private names: the sandbox hides them, so a template sees only the data.
    __slots__ = ("_data", "_path")

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self._data = data
        self._path = path

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(dict(self._data))


class _Undefined(ChainableUndefined, StrictUndefined):
    """Strict, so printing, testing or iterating a missing value fails; chainable, so
    ``user.address.city | default(…)`` works when ``address`` itself is missing."""

    __slots__ = ()


class _Budget:
    """The loop steps one field's render has left; ``range`` and every loop draw from it."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise _LimitExceeded(
                f"loops went past {MAX_LOOP_STEPS:,} steps (each loop iteration and each"
                " number range() makes counts)"
            )


_BUDGET: ContextVar[_Budget] = ContextVar("safar_template_budget")


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _BUDGET.get()
    for item in iterable:
        budget.spend(1)
        yield item


def _range(*args: int) -> range:
    numbers = range(*args)
    try:
        size = len(numbers)
    except OverflowError:
        size = MAX_LOOP_STEPS + 1
    _BUDGET.get().spend(size)
    return numbers


def _check_product(left: Any, right: Any) -> None:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            if len(sequence) * times > MAX_OUTPUT_BYTES:
                raise _LimitExceeded(f"'*' would repeat a value past {MAX_OUTPUT_BYTES:,} items")
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _LimitExceeded(f"'*' would make a number past {MAX_INT_BITS:,} bits")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        if base.bit_length() * exponent > MAX_INT_BITS:
            raise _LimitExceeded(f"'**' would make a number past {MAX_INT_BITS:,} bits")


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):  # the warehouse's DECIMAL columns (revenue) as JSON numbers
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Undefined):  # say which variable is missing, not "not serializable"
        value._fail_with_undefined_error()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with dict keys before methods, named missing keys and bounded ``*``/``**``."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and isinstance(attribute, str):
            return self._key(obj, attribute, partial(super().getattr, obj, attribute))
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping) and isinstance(argument, str):
            return self._key(obj, argument, partial(super().getitem, obj, argument))
        return super().getitem(obj, argument)

    def _key(self, obj: Mapping[str, Any], key: str, method: Callable[[], Any]) -> Any:
        path = f"{obj._path}.{key}" if isinstance(obj, _Record) else key
        if key in obj:
            value = obj[key]
            if value is None:
                return self.undefined(hint=f"'{path}' is null", obj=obj, name=key)
            return _Record(value, path) if isinstance(value, Mapping) else value
        if key.startswith("_") or hasattr(obj, key):
            # Methods such as items(), and anything the sandbox must judge.
            return method()
        owner = obj._path if isinstance(obj, _Record) else "dict object"
        return self.undefined(hint=f"'{owner}' has no attribute '{key}'", obj=obj, name=key)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        return super().call_binop(context, operator, left, right)


def _environment(autoescape: bool) -> _Environment:
    env = _Environment(
        undefined=_Undefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    env.filters["_counted"] = _counted
    env.globals["range"] = _range
    del env.globals["lipsum"]  # unbounded text generation, and no use in a real message
    env.policies["json.dumps_function"] = partial(json.dumps, default=_json_default)
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
    return env


_TEXT = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


def _is_html(field: str) -> bool:
    return field == "html" or field.endswith("_html")


@dataclass(frozen=True)
class CompiledTemplates:
    """A message's fields, compiled once and rendered per person.

    Attributes:
        templates: each field's compiled template.
        names: the top-level variables the fields use (``user``, ``event``, …).
    """

    templates: Mapping[str, Template]
    names: frozenset[str]

    def variables(self) -> set[str]:
        """The top-level variables the fields use, whichever branch a render takes."""
        return set(self.names)


def compile_templates(fields: Mapping[str, str]) -> CompiledTemplates:
    """Compile a message's fields, reporting every field's syntax error at once.

    Args:
        fields: template source by field name; ``html`` and ``*_html`` fields are autoescaped.

    Returns:
        The compiled templates.

    Raises:
        TemplateError: with a :class:`Problem` (field, line, what is wrong) per broken field.
    """
    templates: dict[str, Template] = {}
    names: set[str] = set()
    problems: list[Problem] = []
    for field, source in fields.items():
        env = _HTML if _is_html(field) else _TEXT
        filename = f"<template {field}>"
        try:
            ast = env.parse(source, name=field, filename=filename)
            names |= meta.find_undeclared_variables(ast) - env.globals.keys()
            for loop in ast.find_all(nodes.For):
                loop.iter = nodes.Filter(loop.iter, "_counted", [], [], None, None)
                loop.iter.set_lineno(loop.lineno)
            code = env.compile(ast, name=field, filename=filename)
        except TemplateSyntaxError as exc:
            problems.append(Problem(field, exc.lineno, exc.message or "syntax error"))
            continue
        templates[field] = env.template_class.from_code(env, code, env.make_globals(None))
    if problems:
        raise TemplateError(problems)
    return CompiledTemplates(templates, frozenset(names))


def build_context(
    person: Mapping[str, Any],
    event: Mapping[str, Any] | None = None,
    journey: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The variables a message renders with; preview and send both build them here.

    Args:
        person: the person's traits, with ``person_id``.
        event: the triggering event (``name``, ``properties``, ``timestamp``), if any.
        journey: the journey (``id``, ``name``, earlier steps' outputs), if any.
        now: the render time; the current time by default, and naive means UTC.

    Returns:
        The context for :func:`render`; ``event`` and ``journey`` are absent when not given.
    """
    now = datetime.now(UTC) if now is None else now
    context: dict[str, Any] = {
        "user": dict(person),
        "now": now if now.tzinfo is not None else now.replace(tzinfo=UTC),
    }
    if event is not None:
        context["event"] = event
    if journey is not None:
        context["journey"] = journey
    return context


def _template_line(exc: BaseException, filename: str) -> int | None:
    # Jinja rewrites tracebacks so template frames carry template line numbers; the deepest
    # one is where the failing expression is.
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(exc: Exception) -> str:
    if isinstance(exc, SecurityError):
        return f"refused by the sandbox: {exc}"
    if isinstance(exc, JinjaTemplateError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "nested too deeply (a macro calling itself?)"
    return f"{type(exc).__name__}: {exc}"


def _render_field(field: str, template: Template, variables: Mapping[str, Any]) -> str:
    token = _BUDGET.set(_Budget(MAX_LOOP_STEPS))
    try:
        parts, size = [], 0
        with closing(template.generate(variables)) as chunks:
            for chunk in chunks:
                size += len(chunk.encode())
                if size > MAX_OUTPUT_BYTES:
                    raise _LimitExceeded(f"output is larger than {MAX_OUTPUT_BYTES // 1024} KiB")
                parts.append(chunk)
    finally:
        _BUDGET.reset(token)
    text = "".join(parts)
    return apply_html_direction(text) if _is_html(field) else text


def render(
    templates: Mapping[str, str] | CompiledTemplates, context: Mapping[str, Any]
) -> dict[str, str]:
    """Render every field of a message for one person.

    Args:
        templates: compiled templates, or field sources to compile first.
        context: the variables, from :func:`build_context`.

    Returns:
        The rendered text by field; ``html`` fields are marked RTL where needed.

    Raises:
        TemplateError: naming each failing field, its line and the cause (a missing variable,
            a sandbox refusal, a limit).
    """
    compiled = (
        templates if isinstance(templates, CompiledTemplates) else compile_templates(templates)
    )
    variables = {
        name: _Record(value, name) if isinstance(value, Mapping) else value
        for name, value in context.items()
    }
    rendered: dict[str, str] = {}
    problems: list[Problem] = []
    for field, template in compiled.templates.items():
        try:
            rendered[field] = _render_field(field, template, variables)
        except Exception as exc:  # whatever a template does wrong is reported, never raised raw
            line = _template_line(exc, template.filename or "")
            problems.append(Problem(field, line, _describe(exc)))
    if problems:
        raise TemplateError(problems)
    return rendered


def preview(
    fields: Mapping[str, str] | CompiledTemplates,
    person: Mapping[str, Any],
    event: Mapping[str, Any] | None = None,
    journey: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """Render a message for one person exactly as a send would.

    Args:
        fields: compiled templates, or field sources.
        person: the person's traits, with ``person_id``.
        event: the triggering event, if any.
        journey: the journey and its earlier steps' outputs, if any.
        now: the render time; the current time by default.

    Returns:
        The rendered text by field.

    Raises:
        TemplateError: as :func:`render`.

    Example:
        >>> preview({"text": 'سلام {{ user.first_name | default("دوست") }}'}, {"person_id": "p1"})
        {'text': 'سلام دوست'}
    """
    return render(fields, build_context(person, event, journey, now))
