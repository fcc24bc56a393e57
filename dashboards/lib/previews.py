"""The Message preview page's data and pure parts: a channel's template fields, a person to
render them for, the triggering event, and what a send would make of the result.

Rendering goes through :func:`channels.templates.preview` with a person loaded by
:mod:`safar.delivery.people`, the same code a send uses, so the preview is what the person would
get; the page draws it with :func:`dashboards.lib.message_view.show_message`, as the Messages
page draws a sent message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import streamlit as st

from channels.base import Envelope
from channels.push import build_fcm_message
from channels.templates import Problem as TemplateProblem
from channels.templates import TemplateError, preview
from channels.webhook import METHODS, is_json_media_type, json_error
from dashboards.lib import delivery, queries
from safar.config import SafarHome
from safar.delivery.people import Person, find_people, load_people
from safar.warehouse import connect

PREVIEW = "msgprev_"


PEOPLE_SHOWN = 20
"""People a person search lists at most."""


@contextmanager
def _warehouse(home: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only warehouse connection; an unbuilt warehouse is :class:`WarehouseNotReady`."""
    try:
        con = connect(SafarHome(Path(home)), read_only=True)
    except FileNotFoundError as exc:
        raise queries.WarehouseNotReady(str(exc)) from exc
    try:
        yield con
    except duckdb.CatalogException as exc:
        raise queries.WarehouseNotReady(
            f"the warehouse at {home} lacks the people models; run `safar build` ({exc})"
        ) from exc
    finally:
        con.close()


@st.cache_data(
    ttl=queries.CACHE_TTL_SECONDS, max_entries=delivery.CACHE_MAX_ENTRIES, show_spinner=False
)
def search_people(home: str, text: str, limit: int = PEOPLE_SHOWN) -> list[Person]:
    """The people of ``home``'s warehouse that ``text`` finds, to pick one for a preview.

    A person id typed in full comes first (anonymous people too); then the known people whose
    user id, email, phone or name contains it (:func:`safar.delivery.people.find_people`), or
    the most recently seen ones for an empty ``text``.

    Raises:
        WarehouseNotReady: there is no warehouse at ``home``, or it lacks ``dim_users``.
    """
    with _warehouse(home) as con:
        exact = list(load_people(con, [text.strip()]).values()) if text.strip() else []
        found = find_people(con, text, limit)
    others = [p for p in found if p.person_id not in {e.person_id for e in exact}]
    return exact + others[: limit - len(exact)]


@dataclass(frozen=True)
class TemplateField:
    """One template of a channel's message, as the preview page edits it.

    Attributes:
        name: the content key the channel's sender reads (``subject``, ``body``, …).
        label: the field's label on the page.
        example: what the field starts with: a working template to change.
        height: the text area's height in pixels.
        json: the field renders JSON that the sender reads as a value (a webhook's ``body``, a
            push's ``items``) rather than as text.
        layouts: the push layouts that have the field; empty for every layout.
        help: what the field is for, in a line.
    """

    name: str
    label: str
    example: str = ""
    height: int = 68
    json: bool = False
    layouts: tuple[str, ...] = ()
    help: str = ""


_NAME = '{{ user.first_name | default("دوست", true) }}'
TEMPLATE_FIELDS: dict[str, tuple[TemplateField, ...]] = {
    "email": (
        TemplateField("subject", "Subject", _NAME + " عزیز، هدیه‌ی {{ now | jalali('%B') }} شما"),
        TemplateField(
            "html",
            "HTML body",
            "<h2>سلام " + _NAME + "!</h2>\n"
            "<p>امروز {{ now | jalali('%A %d %B %Y') }} است"
            "{% if user.order_count | default(0) %} و شما تا امروز"
            " {{ user.order_count | number('fa') }} سفارش به ارزش"
            " {{ user.revenue | currency('IRT') }} داده‌اید{% endif %}.</p>\n"
            "{% if event is defined %}\n"
            "<p>بابت «{{ event.name }}» از شما ممنونیم.</p>\n"
            "{% endif %}\n"
            "<p>کد تخفیف ۲۰٪ شما: <b>SAFAR20</b></p>\n"
            '<p><a href="https://shop.example/sale">دیدن پیشنهادها</a></p>\n',
            height=220,
            help="Autoescaped: a trait with `<` in it prints as text. Right to left when its "
            "text is Persian and no `dir` is set.",
        ),
        TemplateField(
            "text",
            "Text part",
            "سلام " + _NAME + "!\nکد تخفیف ۲۰٪ شما: SAFAR20\nhttps://shop.example/sale\n\n"
            "Hi {{ user.first_name | default('there', true) }}, your 20% code: SAFAR20\n",
            height=140,
            help="For mail clients that show no HTML; made from the HTML when empty.",
        ),
    ),
    "sms": (
        TemplateField(
            "text",
            "Text",
            "سلام " + _NAME + "! هدیه‌ی {{ now | jalali('%d %B') }}: ۲۰٪ تخفیف با کد SAFAR20"
            " — فروشگاه سفر",
            height=110,
        ),
    ),
    "push": (
        TemplateField("title", "Title", "هدیه‌ای برای " + _NAME),
        TemplateField(
            "body",
            "Body",
            "{% if user.order_count | default(0) %}با {{ user.revenue | currency('IRT') }}"
            " خرید، ۲۰٪ تخفیف بعدی با شماست{% else %}۲۰٪ تخفیف روی اولین خرید{% endif %}",
        ),
        TemplateField(
            "image",
            "Image URL",
            layouts=("banner", "carousel"),
            help="The picture a banner shows (required for a banner).",
        ),
        TemplateField(
            "items",
            "Carousel cards (JSON)",
            '[\n  {"title": "کفش", "body": "۳۰٪ تخفیف", "deep_link": "shop://c/shoes"},\n'
            '  {"title": "کیف", "body": "۲۰٪ تخفیف", "deep_link": "shop://c/bags"}\n]\n',
            height=120,
            json=True,
            layouts=("carousel",),
            help="Two or more `{title, body, image, deep_link}` objects.",
        ),
        TemplateField("deep_link", "Deep link", "shop://sale/welcome", help="Where a tap leads."),
        TemplateField(
            "data",
            "App data (JSON)",
            json=True,
            help="Extra key/values for the app, as a JSON object.",
        ),
    ),
    "web_push": (
        TemplateField("title", "Title", "هدیه‌ای برای " + _NAME),
        TemplateField("body", "Body", "۲۰٪ تخفیف تا {{ now | jalali('%d %B') }}"),
        TemplateField("url", "Click URL", "https://shop.example/sale?utm_source=web_push"),
        TemplateField("icon", "Icon URL"),
        TemplateField("image", "Image URL"),
    ),
    "webhook": (
        TemplateField(
            "headers",
            "Headers (JSON)",
            '{"X-Source": "safar"}\n',
            json=True,
            help="Names to values; Safar adds the signature and idempotency headers itself.",
        ),
        TemplateField(
            "body",
            "Body (JSON)",
            "{\n"
            '  "type": "welcome_offer",\n'
            '  "user_id": {{ user.user_id | tojson }},\n'
            '  "first_name": {{ user.first_name | default(none) | tojson }},\n'
            '  "signed_up": {{ user.signed_up_at | default(now) | jalali("%d %B %Y") | tojson }},\n'
            "  \"spent\": {{ user.revenue | default(0) | currency('IRT') | tojson }},\n"
            '  "trigger": {{ event.name | default(none) | tojson }}\n'
            "}\n",
            height=200,
            json=True,
            help="Use `tojson` for values: it writes strings, numbers and null as valid JSON.",
        ),
    ),
    "in_app": (
        TemplateField("title", "Title", "خوش آمدید، " + _NAME),
        TemplateField("body", "Body", "کد SAFAR20 را در سبد خرید وارد کنید."),
        TemplateField("image", "Image URL"),
        TemplateField("url", "Link", "https://shop.example/sale"),
    ),
}
"""Each channel's template fields, in the order a page shows them, with a working example."""

WEBHOOK_EXAMPLE_URL = "https://api.shop.example/hooks/safar"
EVENT_EXAMPLE = '{"name": "Order Completed", "properties": {"order_id": "1042", "total": 12500000}}'
EVENT_KEYS = ("name", "properties", "timestamp")
ADDRESS_NAMES = {
    "email": "email address",
    "sms": "phone number",
    "push": "active app push token (an iOS or Android device)",
    "web_push": "web push subscription",
    "in_app": "inbox (person id)",
}


def template_key(channel: str, field: str) -> str:
    """The session key of one channel's template field.

    Example:
        >>> template_key("email", "subject")
        'msgprev_email_subject'
    """
    return f"{PREVIEW}{channel}_{field}"


def template_fields(channel: str, layout: str = "text") -> tuple[TemplateField, ...]:
    """The fields of ``channel`` a message in ``layout`` has (the layout matters for push).

    Example:
        >>> [f.name for f in template_fields("push")]
        ['title', 'body', 'deep_link', 'data']
        >>> [f.name for f in template_fields("push", "carousel")]
        ['title', 'body', 'image', 'items', 'deep_link', 'data']
    """
    return tuple(
        f
        for f in TEMPLATE_FIELDS[channel]
        if not f.layouts or channel != "push" or layout in f.layouts
    )


def preview_state() -> dict[str, Any]:
    """The preview page's starting values: every channel's example, an example URL, no event.

    Example:
        >>> state = preview_state()
        >>> state["msgprev_sms_text"].startswith("سلام"), state["msgprev_event"]
        (True, '')
    """
    state: dict[str, Any] = {
        template_key(channel, field.name): field.example
        for channel, fields in TEMPLATE_FIELDS.items()
        for field in fields
    }
    return state | {
        f"{PREVIEW}push_layout": "text",
        f"{PREVIEW}webhook_method": "POST",
        f"{PREVIEW}webhook_url": WEBHOOK_EXAMPLE_URL,
        f"{PREVIEW}event": "",
    }


def parse_event(text: str, now: datetime) -> tuple[dict[str, Any] | None, str | None]:
    """The triggering event a preview renders with, from the JSON a person typed.

    Args:
        text: ``{"name": …, "properties": {…}}``, optionally with a ``timestamp``; blank for
            no event.
        now: the event's timestamp when the text gives none.

    Returns:
        ``(event, None)``, ``(None, None)`` for blank text, or ``(None, what is wrong)``.

    Example:
        >>> at = datetime(2026, 3, 21, 9, 30)
        >>> event, _ = parse_event('{"name": "Paid", "properties": {"total": 125}}', at)
        >>> event["name"], event["properties"], event["timestamp"] == at
        ('Paid', {'total': 125}, True)
        >>> parse_event("   ", at)
        (None, None)
        >>> print(parse_event('{"name": "Paid",\\n "properties": {"total": }}', at)[1])
        The event is not JSON: Expecting value at line 2, column 26: ' "properties": {"total": }}'
        >>> print(parse_event('{"properties": {}, "user": 1}', at)[1])
        The event has no "name"; it may have only "name", "properties", "timestamp", not "user"
    """
    if not text.strip():
        return None, None
    if error := json_error(text):
        return None, f"The event is not JSON: {error}"
    raw = json.loads(text)
    if not isinstance(raw, dict):
        return None, f"The event must be a JSON object, like {EVENT_EXAMPLE}"
    wrong = []
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        wrong.append('has no "name"' if name is None else '"name" must be a non-empty text')
    if not isinstance(raw.get("properties", {}), dict):
        wrong.append('"properties" must be an object')
    if not isinstance(raw.get("timestamp", ""), str):
        wrong.append('"timestamp" must be an ISO-8601 text')
    if extra := [key for key in raw if key not in EVENT_KEYS]:
        allowed = ", ".join(json.dumps(key) for key in EVENT_KEYS)
        others = ", ".join(json.dumps(key, ensure_ascii=False) for key in extra)
        wrong.append(f"may have only {allowed}, not {others}")
    if wrong:
        return None, "The event " + "; it ".join(wrong)
    event = {"name": name, "properties": raw.get("properties", {})}
    return event | {"timestamp": raw.get("timestamp", now)}, None


def render_preview(
    sources: Mapping[str, str],
    traits: Mapping[str, Any],
    event: Mapping[str, Any] | None,
    now: datetime,
) -> tuple[dict[str, str], list[TemplateProblem]]:
    """Render a message's fields for one person as a send does, with every field's problems.

    :func:`channels.templates.preview` stops at syntax errors before rendering anything, so
    the fields that compile are rendered once more on their own: a page then shows a missing
    variable in one field next to a syntax error in another, not one after the other.

    Args:
        sources: each field's template.
        traits: the person's traits (``Person.traits``), the template's ``user``.
        event: the triggering event, if any.
        now: the render time.

    Returns:
        The rendered fields when there is no problem, else ``{}`` and every problem.

    Example:
        >>> at = datetime(2026, 3, 21)
        >>> sources = {"a": "{{ user.x", "b": "{{ user.y }}"}
        >>> rendered, problems = render_preview(sources, {"person_id": "p"}, None, at)
        >>> rendered
        {}
        >>> for problem in problems:
        ...     print(problem)
        a, line 1: unexpected end of template, expected 'end of print statement'.
        b, line 1: 'user' has no attribute 'y'
    """
    try:
        return preview(sources, traits, event=event, now=now), []
    except TemplateError as error:
        problems = list(error.problems)
    broken = {problem.field for problem in problems}
    rest = {field: source for field, source in sources.items() if field not in broken}
    try:
        preview(rest, traits, event=event, now=now)
    except TemplateError as error:
        problems += error.problems
    order = list(sources)
    return {}, sorted(problems, key=lambda problem: order.index(problem.field))


def missing_address(channel: str, person: Person) -> str | None:
    """What a page warns when ``channel`` has no address for ``person``; ``None`` when it has.

    A webhook goes to the step's URL, not to an address of the person's.

    Example:
        >>> sara = Person("p-1", "u-1", {"name": "Sara", "email": "sara@example.com"},
        ...               {"email": "sara@example.com", "in_app": "p-1"})
        >>> missing_address("email", sara) is None, missing_address("webhook", sara) is None
        (True, True)
        >>> missing_address("sms", sara).split(".**")[0]
        '**Sara · sara@example.com (u-1) has no phone number'
    """
    if channel == "webhook" or person.addresses.get(channel):
        return None
    return (
        f"**{person.label} has no {ADDRESS_NAMES.get(channel, 'address')}.** The preview "
        f"renders all the same; a send on {delivery.CHANNEL_LABELS.get(channel, channel)} "
        "would drop the message as unreachable."
    )


def preview_content(
    channel: str, rendered: Mapping[str, str], *, layout: str = "text", method: str = "POST"
) -> tuple[dict[str, Any], list[TemplateProblem]]:
    """The content a channel's sender would get from a message's rendered fields.

    Blank fields are left out, as a send leaves them out; JSON fields (:class:`TemplateField`)
    become the values they spell, and one that does not parse is a problem of its field. A
    webhook body stays text when its headers declare a non-JSON ``Content-Type``.

    Args:
        channel: the message's channel.
        rendered: each field's rendered text (:func:`channels.templates.preview`).
        layout: a push's layout.
        method: a webhook's HTTP method.

    Returns:
        The content, and the problems of fields that do not parse.

    Example:
        >>> preview_content("webhook", {"headers": "", "body": '{"tier": "gold"}'})
        ({'body': {'tier': 'gold'}, 'method': 'POST'}, [])
        >>> _, (problem,) = preview_content("push", {"title": "Hi", "data": "{'a': 1}"})
        >>> problem.field, problem.message[:43]
        ('data', 'renders to text that is not JSON: Expecting')
    """
    parsed = {f.name for f in TEMPLATE_FIELDS.get(channel, ()) if f.json}
    content: dict[str, Any] = {}
    problems: list[TemplateProblem] = []
    for name, text in rendered.items():
        if not text.strip():
            continue
        if name in parsed and not (channel == "webhook" and name == "body"):
            if error := json_error(text):
                problems.append(
                    TemplateProblem(name, None, f"renders to text that is not JSON: {error}")
                )
                continue
            content[name] = json.loads(text)
        else:
            content[name] = text
    if channel == "webhook":
        headers = content.get("headers")
        declared = (
            next((str(v) for k, v in headers.items() if str(k).lower() == "content-type"), None)
            if isinstance(headers, Mapping)
            else None
        )
        body = content.get("body")
        if body is not None and (declared is None or is_json_media_type(declared)):
            if error := json_error(body):
                problems.append(
                    TemplateProblem("body", None, f"renders to text that is not JSON: {error}")
                )
            else:
                content["body"] = json.loads(body)
        content["method"] = method
    if channel == "push":
        content["layout"] = layout
    return content, problems


def send_problems(channel: str, content: Mapping[str, Any], address: str = "") -> list[str]:
    """Why a send of this content would fail before reaching the provider, as the senders check.

    Example:
        >>> send_problems("email", {"subject": "Hi"})
        ['an email needs a text part or an HTML body']
        >>> send_problems("push", {"layout": "banner", "title": "Sale"})
        ['a banner push needs an image URL']
        >>> send_problems("webhook", {"method": "POST", "headers": ["x"]}, "ftp://x")
        ['the URL must start with http:// or https://', 'the headers must be a JSON object']
    """
    problems = []
    if channel == "email":
        if not content.get("subject"):
            problems.append("an email needs a subject")
        if not (content.get("text") or content.get("html")):
            problems.append("an email needs a text part or an HTML body")
    elif channel == "sms" and not content.get("text"):
        problems.append("an SMS needs text")
    elif channel == "push":
        try:
            build_fcm_message(Envelope("preview", "push", "preview", content), now=0)
        except ValueError as error:
            problems.append(str(error))
    elif channel == "webhook":
        if not address.strip().startswith(("http://", "https://")):
            problems.append("the URL must start with http:// or https://")
        if str(content.get("method") or "POST").upper() not in METHODS:
            problems.append(f"the method must be one of {', '.join(METHODS)}")
        if not isinstance(content.get("headers") or {}, Mapping):
            problems.append("the headers must be a JSON object")
    return problems


def template_problem_text(problem: TemplateProblem, label: str, event_given: bool = True) -> str:
    """A template problem as a person reads it by its field: the field, the line, the cause.

    Example:
        >>> from channels.templates import Problem
        >>> template_problem_text(Problem("subject", 2, "'user' has no attribute 'x'"), "Subject")
        "**Subject, line 2** — 'user' has no attribute 'x'"
        >>> no_event = Problem("text", 1, "'event' is undefined")
        >>> template_problem_text(no_event, "Text", event_given=False).split(":")[0]
        "**Text, line 1** — 'event' is undefined"
    """
    where = label if problem.line is None else f"{label}, line {problem.line}"
    text = f"**{where}** — {problem.message}"
    if not event_given and problem.message == "'event' is undefined":
        text += ": give a triggering event, or guard the use with `{% if event is defined %}`"
    return text
