"""The delivery pages' data and pure parts: what was sent, how it looks, and the settings form.

Messages: one row per delivery in the app DB's ``outbox``, its events (``delivery_events``)
as its history and, for in-app messages, its ``inbox`` row. The data functions take an engine
and are tested on a real app DB; the pages call the cached ``load_*`` wrappers, which take the
Safar home as a string like :mod:`dashboards.lib.queries` and keep answers for a few seconds
(the dispatcher writes all the time). The renderers turn stored content into HTML the way a
person sees it — escaped, ``dir="auto"`` so Persian reads right to left, an email's own HTML
only inside a sandboxed frame.

Settings: the widgets of the Delivery settings page, as the JSON document
``safar.delivery.settings`` stores. :func:`settings_state` gives the widget values that show a
stored document and :func:`settings_document` reads them back, with every problem the form
itself finds (bad JSON, …) as ``(where, what)`` pairs in the settings module's own style. A
provider's fields come from its settings dataclass (:func:`option_fields`). Secrets never go
back to the browser: their fields start empty, and empty keeps the stored value.

Example:
    >>> raw = {"time_zone": "Asia/Tehran", "caps": [{"count": 2, "period": "day"}],
    ...        "dnd": {"start": "22:00", "end": "08:00", "action": "queue"}}
    >>> state = settings_state(raw)
    >>> state["delset_dnd_start"], state["delset_caps_rows"]
    (datetime.time(22, 0), [{'count': 2, 'period': 'day', 'channel': 'all channels'}])
    >>> document, problems = settings_document(state, raw)
    >>> document["caps"], document["dnd"], problems
    ([{'count': 2, 'period': 'day'}], {'start': '22:00', 'end': '08:00', 'action': 'queue'}, [])
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import inspect
import json
import math
import re
import types
import typing
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Literal

import plotly.graph_objects as go
import polars as pl
import sqlalchemy as sa
import streamlit as st

from channels.base import CHANNELS, Envelope, Outcome, Sender
from dashboards.lib import queries
from safar.appdb.schema import DELIVERY_STATES, delivery_events, delivery_settings, inbox, outbox
from safar.delivery.providers import PROVIDERS, build_senders
from safar.delivery.settings import (
    CONFIG_KEY,
    DEFAULT_CATEGORIES,
    ConfigError,
    DeliveryConfig,
    ProviderConfig,
    parse_config,
)

SETTINGS = "delset_"
MESSAGES = "msgs_"

# The dispatcher writes the outbox all the time; a few seconds keeps the page current while
# many open pages share one query.
CACHE_TTL_SECONDS = 5
CACHE_MAX_ENTRIES = queries.CACHE_MAX_ENTRIES
MAX_ROWS = 500
"""Messages a table shows at most, the newest first."""

Problem = tuple[str, str]
"""Where a problem is (``caps[0].count``) and what it is, as ``ConfigError.problems`` has them."""

CHANNEL_LABELS = {
    "email": "Email",
    "sms": "SMS",
    "push": "Push",
    "web_push": "Web push",
    "webhook": "Webhook",
    "in_app": "In-app",
}
STATE_LABELS = {state: state.capitalize() for state in DELIVERY_STATES}
# Waiting in blues, done in green, refused in reds, held back in grey.
STATE_COLORS = {
    "queued": "#9ecae1",
    "sending": "#4292c6",
    "sent": "#74c476",
    "delivered": "#238b45",
    "failed": "#d62728",
    "bounced": "#ff7f0e",
    "dropped": "#bdbdbd",
}
TILES = {
    "Messages": DELIVERY_STATES,
    "Sent or delivered": ("sent", "delivered"),
    "Waiting": ("queued", "sending"),
    "Failed or bounced": ("failed", "bounced"),
    "Dropped": ("dropped",),
}
"""The metric tiles of the Messages page, by the states each one counts."""


# --- messages: data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageDetail:
    """One delivery as the detail view shows it.

    Attributes:
        row: the outbox columns, ``content`` and ``response`` left as stored text.
        content: the rendered content the channel's sender got.
        response: what the provider answered (webhooks), decoded; ``None`` when nothing was kept.
        history: one row per delivery event, oldest first (:func:`history_frame`).
        inbox: the in-app inbox row (seen, clicked, dismissed), for in-app messages.
    """

    row: dict[str, Any]
    content: dict[str, Any]
    response: Any
    history: pl.DataFrame
    inbox: dict[str, Any] | None


def message_counts(engine: sa.Engine) -> pl.DataFrame:
    """Deliveries per channel and state: ``channel``, ``state``, ``messages``."""
    with engine.connect() as con:
        rows = con.execute(
            sa.select(outbox.c.channel, outbox.c.state, sa.func.count().label("messages"))
            .group_by(outbox.c.channel, outbox.c.state)
            .order_by(outbox.c.channel, outbox.c.state)
        ).all()
    return pl.DataFrame(
        [tuple(row) for row in rows],
        schema={"channel": pl.String, "state": pl.String, "messages": pl.Int64},
        orient="row",
    )


def find_messages(
    engine: sa.Engine,
    *,
    channels: Sequence[str] = (),
    states: Sequence[str] = (),
    source: str = "",
    person: str = "",
    text: str = "",
    limit: int = MAX_ROWS,
) -> pl.DataFrame:
    """The newest deliveries that pass every filter given, one row each.

    Args:
        engine: the app DB.
        channels: keep these channels (all when empty).
        states: keep these states (all when empty).
        source: a campaign or journey id, matched exactly.
        person: a person id or user id, matched exactly.
        text: a piece of the content, address, detail or an id, in any case.
        limit: rows at most.

    Returns:
        ``delivery_id``, ``created_at``, ``channel``, ``state``, ``person_id``, ``address``,
        ``summary`` (:func:`message_summary`), ``campaign_id``, ``journey_id``, ``attempts``,
        ``provider``, ``detail``, ``updated_at``; the newest first.
    """
    query = sa.select(outbox).order_by(outbox.c.created_at.desc(), outbox.c.delivery_id)
    if channels:
        query = query.where(outbox.c.channel.in_(channels))
    if states:
        query = query.where(outbox.c.state.in_(states))
    if source.strip():
        query = query.where(
            sa.or_(outbox.c.campaign_id == source.strip(), outbox.c.journey_id == source.strip())
        )
    if person.strip():
        query = query.where(
            sa.or_(outbox.c.person_id == person.strip(), outbox.c.user_id == person.strip())
        )
    if text.strip():
        needle = text.strip().lower()
        query = query.where(
            sa.or_(
                *(
                    sa.func.lower(column).contains(needle, autoescape=True)
                    for column in (
                        outbox.c.content,
                        outbox.c.address,
                        outbox.c.detail,
                        outbox.c.delivery_id,
                        outbox.c.provider_message_id,
                    )
                )
            )
        )
    with engine.connect() as con:
        rows = con.execute(query.limit(limit)).mappings().all()
    return pl.DataFrame(
        {
            "delivery_id": [r["delivery_id"] for r in rows],
            "created_at": [r["created_at"] for r in rows],
            "channel": [r["channel"] for r in rows],
            "state": [r["state"] for r in rows],
            "person_id": [r["person_id"] for r in rows],
            "address": [r["address"] for r in rows],
            "summary": [message_summary(r["channel"], _decode(r["content"])) for r in rows],
            "campaign_id": [r["campaign_id"] for r in rows],
            "journey_id": [r["journey_id"] for r in rows],
            "attempts": [r["attempts"] for r in rows],
            "provider": [r["provider"] for r in rows],
            "detail": [r["detail"] for r in rows],
            "updated_at": [r["updated_at"] for r in rows],
        },
        schema={
            "delivery_id": pl.String,
            "created_at": pl.Datetime("us"),
            "channel": pl.String,
            "state": pl.String,
            "person_id": pl.String,
            "address": pl.String,
            "summary": pl.String,
            "campaign_id": pl.String,
            "journey_id": pl.String,
            "attempts": pl.Int64,
            "provider": pl.String,
            "detail": pl.String,
            "updated_at": pl.Datetime("us"),
        },
    )


def message_detail(engine: sa.Engine, delivery_id: str) -> MessageDetail | None:
    """One delivery with its events and inbox row; ``None`` when there is no such delivery."""
    with engine.connect() as con:
        row = con.execute(sa.select(outbox).where(outbox.c.delivery_id == delivery_id)).first()
        if row is None:
            return None
        events = con.execute(
            sa.select(
                delivery_events.c.created_at, delivery_events.c.event, delivery_events.c.message
            )
            .where(delivery_events.c.delivery_id == delivery_id)
            .order_by(delivery_events.c.created_at, delivery_events.c.id)
        ).all()
        kept = con.execute(sa.select(inbox).where(inbox.c.delivery_id == delivery_id)).first()
    found = dict(row._mapping)
    history = [
        (at, event, _decode(message).get("properties") or {}) for at, event, message in events
    ]
    return MessageDetail(
        row=found,
        content=_decode(found["content"]),
        response=json.loads(found["response"]) if found["response"] else None,
        history=history_frame(history),
        inbox=None if kept is None else dict(kept._mapping),
    )


def _decode(text: str | None) -> dict[str, Any]:
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {"value": value}


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_message_counts(home: str) -> pl.DataFrame:
    """:func:`message_counts` on the app DB of ``home``."""
    return message_counts(queries.app_db(home))


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_messages(
    home: str,
    channels: tuple[str, ...],
    states: tuple[str, ...],
    source: str,
    person: str,
    text: str,
) -> pl.DataFrame:
    """:func:`find_messages` on the app DB of ``home``."""
    return find_messages(
        queries.app_db(home),
        channels=channels,
        states=states,
        source=source,
        person=person,
        text=text,
    )


@st.cache_data(ttl=CACHE_TTL_SECONDS, max_entries=CACHE_MAX_ENTRIES, show_spinner=False)
def load_message_detail(home: str, delivery_id: str) -> MessageDetail | None:
    """:func:`message_detail` on the app DB of ``home``."""
    return message_detail(queries.app_db(home), delivery_id)


# --- messages: pure parts ---------------------------------------------------------------------


def _cut(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message_summary(channel: str, content: Mapping[str, Any]) -> str:
    """One line saying what a message says: an email's subject, an SMS's text, a push's title.

    Example:
        >>> message_summary("email", {"subject": "سفارش شما رسید", "text": "…"})
        'سفارش شما رسید'
        >>> message_summary("push", {"title": "Sale", "body": "50% off\\ntoday"})
        'Sale — 50% off today'
        >>> message_summary("webhook", {"method": "put", "body": {"tier": "gold"}})
        'PUT {"tier": "gold"}'
    """
    if channel == "email":
        return _cut(str(content.get("subject") or ""))
    if channel == "sms":
        return _cut(str(content.get("text") or ""))
    if channel == "webhook":
        method = str(content.get("method") or "POST").upper()
        body = content.get("body")
        shown = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        return _cut(f"{method} {shown}" if body is not None else method)
    parts = [str(content.get(key)) for key in ("title", "body") if content.get(key)]
    return _cut(" — ".join(parts))


def state_totals(counts: pl.DataFrame) -> dict[str, int]:
    """The tiles' numbers (:data:`TILES`) from :func:`message_counts`.

    Example:
        >>> counts = pl.DataFrame({"channel": ["email", "sms", "sms"],
        ...     "state": ["sent", "failed", "queued"], "messages": [3, 1, 2]})
        >>> state_totals(counts)
        {'Messages': 6, 'Sent or delivered': 3, 'Waiting': 2, 'Failed or bounced': 1, 'Dropped': 0}
    """
    by_state: dict[str, int] = {}
    for state, n in counts.select("state", "messages").iter_rows():
        by_state[state] = by_state.get(state, 0) + n
    return {tile: sum(by_state.get(s, 0) for s in states) for tile, states in TILES.items()}


def build_message_counts_figure(counts: pl.DataFrame) -> go.Figure:
    """Messages per channel as bars, stacked by state, from :func:`message_counts`.

    Channels come in the product's order, states from queued to dropped, each in its colour.

    Example:
        >>> counts = pl.DataFrame({"channel": ["sms", "email", "email"],
        ...     "state": ["failed", "sent", "failed"], "messages": [1, 3, 2]})
        >>> [(t.name, list(t.x), list(t.y)) for t in build_message_counts_figure(counts).data]
        [('Sent', ['Email', 'SMS'], [3, 0]), ('Failed', ['Email', 'SMS'], [2, 1])]
    """
    seen = set(counts["channel"].to_list())
    channels = [c for c in CHANNELS if c in seen] + sorted(seen - set(CHANNELS))
    cells = {(c, s): n for c, s, n in counts.select("channel", "state", "messages").iter_rows()}
    states = set(counts["state"].to_list())
    fig = go.Figure()
    for state in [s for s in DELIVERY_STATES if s in states] + sorted(states - {*DELIVERY_STATES}):
        fig.add_trace(
            go.Bar(
                x=[CHANNEL_LABELS.get(c, c) for c in channels],
                y=[cells.get((c, state), 0) for c in channels],
                name=STATE_LABELS.get(state, state),
                marker_color=STATE_COLORS.get(state, "#c7c7c7"),
                hovertemplate="%{x}: %{y:,} " + state + "<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": "Messages by channel and state"},
        barmode="stack",
        xaxis_title="Channel",
        yaxis_title="Messages",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "traceorder": "normal"},
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        height=320,
        showlegend=True,  # even for one state: the colour alone does not say which
    )
    # Whole messages only: a handful would otherwise get ticks at 0.2, 0.4, …
    most = max((sum(t.y) for t in fig.data), default=0)
    fig.update_yaxes(rangemode="tozero", tickformat=",d", dtick=1 if most <= 5 else None)
    return fig


def history_frame(events: Sequence[tuple[datetime, str, Mapping[str, Any]]]) -> pl.DataFrame:
    """A delivery's events as a table: when, what, which attempt, the provider and its words.

    Args:
        events: ``(at, event name, properties)`` of each delivery event, oldest first.

    Example:
        >>> at = datetime(2026, 1, 10, 12, 0)
        >>> history_frame([(at, "Message Dropped", {"attempt": 1, "reason": "dnd",
        ...     "detail": "quiet hours"})]).row(0)[1:]
        ('Message Dropped', 1, None, None, 'dnd: quiet hours')
    """

    def detail(props: Mapping[str, Any]) -> str | None:
        words = [str(props[key]) for key in ("reason", "detail") if props.get(key)]
        return ": ".join(words) or None

    return pl.DataFrame(
        [
            (
                at,
                event,
                props.get("attempt"),
                props.get("provider"),
                props.get("provider_message_id"),
                detail(props),
            )
            for at, event, props in events
        ],
        schema={
            "At (UTC)": pl.Datetime("us"),
            "Event": pl.String,
            "Attempt": pl.Int64,
            "Provider": pl.String,
            "Provider message id": pl.String,
            "Detail": pl.String,
        },
        orient="row",
    )


def _url(value: Any) -> str:
    """``value`` if it is an http(s) URL, else nothing: a stored ``javascript:`` stays inert."""
    text = str(value or "")
    return html.escape(text) if text.startswith(("https://", "http://")) else ""


def sandboxed_html(document: str) -> str:
    """A page that shows an email's HTML in a frame with every permission taken away.

    The outer page is ours; the email's document is only the inner frame's ``srcdoc``, and
    ``sandbox=""`` runs no script, submits no form, opens no window and cannot reach the app.
    Remote images still load, as in a mail client, without telling their host where from.

    Example:
        >>> page = sandboxed_html('<b onclick="steal()">سلام</b>')
        >>> 'sandbox=""' in page, '<b onclick' in page
        (True, False)
        >>> '&lt;b onclick=&quot;steal()&quot;&gt;سلام' in page
        True
    """
    inner = '<meta name="referrer" content="no-referrer">' + document
    return (
        '<!doctype html><html><head><meta charset="utf-8"><style>'
        "html,body{margin:0;height:100%}"
        "iframe{box-sizing:border-box;width:100%;height:100%;border:1px solid #d9d9d9;"
        "border-radius:8px;background:#fff}"
        '</style></head><body><iframe sandbox="" referrerpolicy="no-referrer" '
        f'title="The email as it arrives" srcdoc="{html.escape(inner, quote=True)}"></iframe>'
        "</body></html>"
    )


def text_html(text: str) -> str:
    """Plain text as written: line breaks kept, direction from its first strong letter.

    Example:
        >>> text_html("سلام\\n<Ali>")
        '<div dir="auto" style="white-space:pre-wrap;line-height:1.6">سلام\\n&lt;Ali&gt;</div>'
    """
    return f'<div dir="auto" style="white-space:pre-wrap;line-height:1.6">{html.escape(text)}</div>'


def email_header_html(subject: str, to: str) -> str:
    """An email's recipient and subject, as a mail client shows them above the message.

    Example:
        >>> header = email_header_html("<b>سفارش شما رسید</b>", "sara@example.com")
        >>> "&lt;b&gt;سفارش شما رسید" in header, "<b>" in header
        (True, False)
    """
    return (
        f'<div style="color:#6b7280;font-size:13px">To {html.escape(to)}</div>'
        '<div dir="auto" style="font-size:1.3rem;font-weight:600;margin:4px 0 8px">'
        f"{html.escape(subject or '(no subject)')}</div>"
    )


def sms_bubble_html(text: str, to: str = "") -> str:
    """An SMS as a phone shows it: a bubble in a narrow screen, right to left for Persian.

    Example:
        >>> "<div dir=\\"auto\\"" in sms_bubble_html("کد شما ۱۲۳۴ است"), "۱۲۳۴" in sms_bubble_html(
        ...     "کد شما ۱۲۳۴ است")
        (True, True)
    """
    header = (
        f'<div style="text-align:center;color:#6b7280;font-size:12px;margin-bottom:10px">'
        f"{html.escape(to)}</div>"
        if to
        else ""
    )
    return (
        '<div style="max-width:340px;border:1px solid #d1d5db;border-radius:28px;'
        'padding:18px 14px;background:#f9fafb;font-family:system-ui,sans-serif">'
        f"{header}"
        '<div dir="auto" style="background:#e5e7eb;color:#111827;border-radius:18px;'
        "padding:10px 14px;white-space:pre-wrap;line-height:1.6;max-width:85%;"
        f'font-size:15px">{html.escape(text)}</div></div>'
    )


def notification_html(content: Mapping[str, Any], *, kind: str = "push") -> str:
    """A push, web push or in-app message as a notification card.

    Shows the title and body, the image of a banner (or any image given), a web push's icon,
    a carousel's cards, the stars of a rating prompt, and where a tap leads.

    Example:
        >>> card = notification_html({"layout": "banner", "title": "حراج", "body": "۵۰٪",
        ...                           "image": "https://cdn.example/sale.png"})
        >>> "حراج" in card, 'src="https://cdn.example/sale.png"' in card, "Banner" in card
        (True, True, True)
        >>> 'src=' in notification_html({"title": "x", "image": "javascript:alert(1)"})
        False
    """
    title = str(content.get("title") or "")
    body = str(content.get("body") or "")
    layout = str(content.get("layout") or "text") if kind == "push" else ""
    icon, image = _url(content.get("icon")), _url(content.get("image"))
    parts = [
        '<div style="max-width:380px;border:1px solid #d1d5db;border-radius:16px;padding:12px 14px;'
        'background:#fff;box-shadow:0 1px 4px rgba(0,0,0,.08);font-family:system-ui,sans-serif">'
        '<div style="display:flex;gap:10px;align-items:flex-start">'
    ]
    if icon:
        parts.append(f'<img src="{icon}" alt="" style="width:40px;height:40px;border-radius:8px">')
    parts.append('<div style="flex:1;min-width:0">')
    if title:
        parts.append(f'<div dir="auto" style="font-weight:600">{html.escape(title)}</div>')
    if body:
        parts.append(
            f'<div dir="auto" style="white-space:pre-wrap;color:#374151">{html.escape(body)}</div>'
        )
    if not (title or body):
        parts.append('<div style="color:#6b7280">(silent: wakes the app, shows nothing)</div>')
    parts.append("</div></div>")
    if image:
        parts.append(
            f'<img src="{image}" alt="" style="width:100%;margin-top:8px;border-radius:10px">'
        )
    if layout == "carousel":
        for item in content.get("items") or []:
            if isinstance(item, Mapping):
                parts.append(
                    '<div dir="auto" style="margin-top:6px;padding:6px 8px;border:1px solid '
                    f'#e5e7eb;border-radius:8px"><b>{html.escape(str(item.get("title") or ""))}'
                    f"</b> {html.escape(str(item.get('body') or ''))}</div>"
                )
    if layout == "rating":
        parts.append('<div style="margin-top:6px;font-size:20px;color:#f59e0b">☆☆☆☆☆</div>')
    link = content.get("deep_link") or content.get("url")
    footer = [f"{layout.capitalize()} layout"] if layout else []
    if link:
        footer.append(f"opens {html.escape(str(link))}")
    if footer:
        parts.append(
            f'<div style="margin-top:8px;color:#6b7280;font-size:12px">{" · ".join(footer)}</div>'
        )
    parts.append("</div>")
    return "".join(parts)


def outcome_text(outcome: Outcome) -> str:
    """What a test send came back with, in one line of Markdown.

    Example:
        >>> outcome_text(Outcome("sent", "smtp", "250 2.0.0 Ok: queued", "<t_1@safar.example>"))
        '**sent** via smtp — 250 2.0.0 Ok: queued · provider message id `<t_1@safar.example>`'
    """
    text = f"**{outcome.status}** via {outcome.provider}"
    if outcome.detail:
        text += f" — {outcome.detail}"
    if outcome.provider_message_id:
        text += f" · provider message id `{outcome.provider_message_id}`"
    if outcome.retry_after:
        text += f" · retry after {outcome.retry_after:g} s"
    return text


# --- settings: the fields of a provider's settings --------------------------------------------

Kind = Literal[
    "text", "secret", "secret_text", "secret_json", "json", "int", "float", "bool", "choice", "flag"
]
SECRET_KINDS = ("secret", "secret_text", "secret_json")
_SECRET = re.compile(r"(password|secret|token|api_key|private_key|service_account)$")
_MULTILINE = re.compile(r"private_key$")
_WORDS = {"url": "URL", "id": "ID", "api": "API", "sid": "SID", "ttl": "TTL", "vapid": "VAPID"}
_WORDS |= {"starttls": "STARTTLS", "smtp": "SMTP"}
NONE = "(none)"
"""The choice that stands for ``None`` in an optional choice."""
ALL_CHANNELS = "all channels"
"""The channel cell of a cap or gap that applies to every channel (``channel`` left out)."""
CAP_COLUMNS = {"count": pl.Int64, "period": pl.String, "channel": pl.String}
GAP_COLUMNS = {"minutes": pl.Int64, "channel": pl.String}
"""The columns of the caps and gaps table editors (typed, so an empty table has them too)."""
PUSH_PLATFORMS = ("fcm", "apns")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_OMIT = object()


@dataclass(frozen=True)
class OptionField:
    """One option of a provider, and the widget that edits it.

    Attributes:
        name: the settings dataclass's field name, the option's key.
        kind: the widget: ``text``, ``int``, ``float``, ``bool``, ``choice`` (a Literal),
            ``json`` (a mapping), ``flag`` (true, false or a text, like TLS ``verify``), or a
            secret: ``secret`` (one line), ``secret_text`` (a PEM key), ``secret_json``.
        default: the default value; ``dataclasses.MISSING`` when the option is required.
        optional: ``None`` is a value it takes.
        choices: a ``choice``'s values.
        help: the settings class's own words about it.
    """

    name: str
    kind: Kind
    default: Any
    optional: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


def _attribute_help(cls: type) -> dict[str, str]:
    """The ``Attributes:`` section of a class's docstring, by name, as Markdown."""
    _, _, section = (inspect.getdoc(cls) or "").partition("Attributes:")
    helps: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        if match := re.match(r" {4}(\w+): (.*)", line):
            name = match[1]
            helps[name] = match[2]
        elif name and line.startswith(" " * 8):
            helps[name] += " " + line.strip()
        elif line.strip():
            break
    return {key: text.replace("``", "`") for key, text in helps.items()}


def _kind(name: str, hint: Any) -> tuple[Kind, bool, tuple[str, ...]]:
    args = (
        typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
    )
    members = [a for a in args if a is not type(None)] or [hint]
    optional = type(None) in args
    secret = bool(_SECRET.search(name))
    if len(members) == 1 and typing.get_origin(members[0]) is Literal:
        return "choice", optional, tuple(str(c) for c in typing.get_args(members[0]))
    if bool in members and str in members:
        return "flag", optional, ()
    only = members[0]
    origin = typing.get_origin(only) or only
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return ("secret_json" if secret else "json"), optional, ()
    if only is bool:
        return "bool", optional, ()
    if only is int:
        return "int", optional, ()
    if only is float:
        return "float", optional, ()
    if secret:
        return ("secret_text" if _MULTILINE.search(name) else "secret"), optional, ()
    return "text", optional, ()


def option_fields(settings: type | None) -> tuple[OptionField, ...]:
    """The options of a provider's settings dataclass, required ones first.

    Example:
        >>> from channels.email import SmtpSettings
        >>> fields = {f.name: f for f in option_fields(SmtpSettings)}
        >>> [(n, fields[n].kind, fields[n].required) for n in ("host", "port", "password")]
        [('host', 'text', True), ('port', 'int', True), ('password', 'secret', False)]
        >>> fields["starttls"].kind, fields["starttls"].default, fields["timeout"].kind
        ('bool', True, 'float')
        >>> fields["port"].help
        "the relay's port (587 for submission with STARTTLS, 25 for a local relay)."
    """
    if settings is None:
        return ()
    hints = typing.get_type_hints(settings)
    helps = _attribute_help(settings)
    fields = []
    for f in dataclasses.fields(settings):
        kind, optional, choices = _kind(f.name, hints[f.name])
        default = f.default
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        fields.append(OptionField(f.name, kind, default, optional, choices, helps.get(f.name, "")))
    return tuple(sorted(fields, key=lambda f: not f.required))


def field_label(name: str) -> str:
    """A field's name as a label.

    Example:
        >>> field_label("tracking_base_url"), field_label("vapid_private_key")
        ('Tracking base URL', 'VAPID private key')
        >>> field_label("starttls"), field_label("from_address")
        ('STARTTLS', 'From address')
    """
    words = [_WORDS.get(word, word) for word in name.split("_")]
    first = words[0] if words[0].isupper() else words[0].capitalize()
    return " ".join([first, *words[1:]])


def field_key(channel: str, provider: str, name: str) -> str:
    """The session-state key of one provider option's widget.

    Example:
        >>> field_key("push", "apns", "team_id")
        'delset_push_apns_team_id'
    """
    return f"{SETTINGS}{channel}_{provider}_{name}"


def channel_providers(channel: str) -> list[str]:
    """The providers that serve ``channel``, in the registry's order.

    Example:
        >>> channel_providers("sms")
        ['kavenegar', 'twilio']
    """
    return [name for name, provider in PROVIDERS.items() if provider.channel == channel]


def field_state(field: OptionField, stored: Any = _OMIT) -> Any:
    """The widget value that shows an option's stored value (or its default).

    Secrets start empty: the stored value stays on the server.

    Example:
        >>> port = OptionField("port", "int", dataclasses.MISSING)
        >>> field_state(port), field_state(port, 2525)
        (None, 2525)
        >>> field_state(OptionField("api_key", "secret", dataclasses.MISSING), "k-123")
        ''
    """
    value = field.default if stored is _OMIT else stored
    if field.kind in SECRET_KINDS:
        return ""
    if value is dataclasses.MISSING or value is None:
        return {"int": None, "float": None, "bool": False, "choice": NONE}.get(field.kind, "")
    if field.kind == "int":
        return int(value)
    if field.kind == "float":
        return float(value)
    if field.kind == "bool":
        return bool(value)
    if field.kind == "json":
        return json.dumps(value, indent=2, ensure_ascii=False) if value else ""
    if field.kind == "flag":
        return str(value).lower() if isinstance(value, bool) else str(value)
    return str(value)


def option_value(
    field: OptionField, widget: Any, stored: Any = _OMIT, *, clear: bool = False
) -> tuple[Any, str | None]:
    """An option's value from its widget, or why the widget's value cannot be one.

    Returns ``(value, None)``, or ``(_OMIT, None)`` when the option is left out of the document
    (its default applies, or it is required and the check will say it is missing), or
    ``(_OMIT, problem)``. An empty secret keeps the stored one unless ``clear``.

    Example:
        >>> headers = OptionField("default_headers", "json", {})
        >>> option_value(headers, '{"X-Team": "growth"}')
        ({'X-Team': 'growth'}, None)
        >>> option_value(headers, "{oops")[1]
        'is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)'
        >>> key = OptionField("api_key", "secret", dataclasses.MISSING)
        >>> option_value(key, "", "k-123"), option_value(key, "k-456", "k-123")
        (('k-123', None), ('k-456', None))
    """
    blank = None if field.optional else _OMIT
    value: Any = widget
    if field.kind in SECRET_KINDS and not str(widget or "").strip():
        kept = not clear and stored is not _OMIT and stored is not None
        value = stored if kept else blank
    elif field.kind in ("json", "secret_json"):
        text = str(widget or "").strip()
        try:
            value = json.loads(text) if text else blank
        except ValueError as exc:
            return _OMIT, f"is not JSON: {exc}"
        if text and not isinstance(value, dict):
            return _OMIT, 'must be a JSON object, like {"name": "value"}'
    elif field.kind in ("text", "secret", "secret_text"):
        text = str(widget or "")
        # Secrets are taken as typed: a password may well end in a space.
        value = blank if not text.strip() else text.strip() if field.kind == "text" else text
    elif field.kind in ("int", "float"):
        value = blank if widget is None else int(widget) if field.kind == "int" else float(widget)
    elif field.kind == "bool":
        value = bool(widget)
    elif field.kind == "choice":
        value = None if widget in (NONE, None) else widget
    elif field.kind == "flag":
        text = str(widget or "").strip()
        value = {"true": True, "false": False}.get(text.lower(), text) if text else _OMIT
    if value is _OMIT or (not field.required and value == field.default):
        return _OMIT, None
    return value, None


# --- settings: the form ↔ the stored document -------------------------------------------------

_FORM_KEYS = frozenset(
    {
        "time_zone",
        "week_starts_on",
        "dnd",
        "caps",
        "min_gaps",
        "throttle_per_minute",
        "categories",
        "max_attempts",
        "providers",
    }
)


def stored_options(stored: Mapping[str, Any], channel: str, provider: str) -> dict[str, Any]:
    """The stored options of ``provider`` on ``channel`` (of a push platform, for push).

    Example:
        >>> raw = {"providers": {"push": {"provider": "push", "options": {"fcm": {"timeout": 5}}}}}
        >>> stored_options(raw, "push", "fcm"), stored_options(raw, "push", "apns")
        ({'timeout': 5}, {})
    """
    item = (stored.get("providers") or {}).get(channel)
    if not isinstance(item, Mapping):
        return {}
    options = item.get("options") or {}
    if channel == "push":
        options = options.get(provider) if isinstance(options, Mapping) else None
    elif item.get("provider") != provider:
        return {}
    return dict(options) if isinstance(options, Mapping) else {}


def _clock(value: Any, fallback: time) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        return fallback


def _rows(items: Any, number: str, others: Sequence[str] = ()) -> list[dict[str, Any]]:
    """A stored caps or gaps list as table rows; a cell no typed column can hold is blank."""
    rows = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping):
            value = item.get(number)
            row = {
                number: value if isinstance(value, int) and not isinstance(value, bool) else None
            }
            row |= {k: item[k] if isinstance(item.get(k), str) else None for k in others}
            channel = item.get("channel")
            row["channel"] = channel if isinstance(channel, str) and channel else ALL_CHANNELS
            rows.append(row)
    return rows


def _number(value: Any, fallback: int, least: int) -> int:
    """A stored number for a number widget; a value the widget cannot show is the fallback."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= least
    return value if ok else fallback


def settings_state(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The settings page's widget values that show the stored document ``raw``.

    Caps and gaps are rows for the page's table editors (``caps_rows``, ``min_gaps_rows``);
    the options of the configured providers are there too, secrets empty. A stored value no
    widget can show (set by hand, with a problem the page reports) shows as the default.
    """
    dnd = raw.get("dnd") if isinstance(raw.get("dnd"), Mapping) else None
    throttles = raw.get("throttle_per_minute")
    throttles = throttles if isinstance(throttles, Mapping) else {}
    categories = raw.get("categories", list(DEFAULT_CATEGORIES))
    action = (dnd or {}).get("action", "queue")
    state: dict[str, Any] = {
        "time_zone": str(raw.get("time_zone", "Asia/Tehran")),
        "week_starts_on": _number(raw.get("week_starts_on", 5), 5, 0) % 7,
        "dnd_on": dnd is not None,
        "dnd_start": _clock((dnd or {}).get("start"), time(22, 0)),
        "dnd_end": _clock((dnd or {}).get("end"), time(8, 0)),
        "dnd_action": action if action in ("queue", "drop") else "queue",
        "caps_rows": _rows(raw.get("caps"), "count", ("period",)),
        "min_gaps_rows": _rows(raw.get("min_gaps"), "minutes"),
        "categories": [str(c) for c in categories] if isinstance(categories, list) else [],
        "max_attempts": _number(raw.get("max_attempts", 8), 8, 1),
        **{f"throttle_{c}": _number(throttles.get(c, 0), 0, 0) for c in CHANNELS},
    }
    providers = raw.get("providers") if isinstance(raw.get("providers"), Mapping) else {}
    configured: list[tuple[str, str]] = []
    for channel in CHANNELS:
        item = providers.get(channel) if isinstance(providers.get(channel), Mapping) else {}
        if channel == "push":
            platforms = item.get("options") if isinstance(item.get("options"), Mapping) else {}
            for platform in PUSH_PLATFORMS:
                state[f"push_{platform}_on"] = platform in platforms
                configured += [("push", platform)] if platform in platforms else []
        elif channel != "in_app":
            name = (
                item.get("provider") if item.get("provider") in channel_providers(channel) else ""
            )
            state[f"{channel}_provider"] = name
            configured += [(channel, name)] if name else []
    out = {f"{SETTINGS}{key}": value for key, value in state.items()}
    for channel, provider in configured:
        options = stored_options(raw, channel, provider)
        for f in option_fields(PROVIDERS[provider].settings):
            out[field_key(channel, provider, f.name)] = field_state(f, options.get(f.name, _OMIT))
    return out


def _whole(value: Any) -> Any:
    """A table cell as a whole number where it is one; blanks as ``None``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _blank(value: Any) -> bool:
    return _whole(value) is None or value == ""


def rows_to_items(rows: Iterable[Mapping[str, Any]], number: str) -> list[dict[str, Any]]:
    """A caps or gaps table's rows as the document's list; rows left empty are skipped.

    Example:
        >>> rows_to_items([{"count": 2.0, "period": "week", "channel": "sms"},
        ...                {"count": None, "period": None, "channel": None},
        ...                {"count": 0, "period": "day", "channel": "all channels"}], "count")
        [{'count': 2, 'period': 'week', 'channel': 'sms'}, {'count': 0, 'period': 'day'}]
    """
    items = []
    for row in rows:
        others = [v for k, v in row.items() if k not in (number, "channel")]
        if _blank(row.get(number)) and all(_blank(v) for v in others):
            continue
        item = {number: _whole(row.get(number))}
        item |= {k: v for k, v in row.items() if k not in (number, "channel")}
        if row.get("channel") not in (None, "", ALL_CHANNELS):
            item["channel"] = row["channel"]
        items.append(item)
    return items


def provider_document(
    state: Mapping[str, Any], channel: str, stored: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """One channel's ``{"provider", "options"}`` from the form (``None``: no provider chosen).

    Push is ``{"provider": "push", "options": {"fcm": {...}, "apns": {...}}}`` with the platforms
    switched on.
    """
    problems: list[Problem] = []

    def options(provider: str, where: str) -> dict[str, Any]:
        kept = stored_options(stored, channel, provider)
        found: dict[str, Any] = {}
        for f in option_fields(PROVIDERS[provider].settings):
            key = field_key(channel, provider, f.name)
            value, problem = option_value(
                f,
                state.get(key, field_state(f, kept.get(f.name, _OMIT))),
                kept.get(f.name, _OMIT),
                clear=bool(state.get(f"{key}_clear")),
            )
            if problem:
                problems.append((f"{where}.{f.name}", problem))
            elif value is not _OMIT:
                found[f.name] = value
        return found

    if channel == "push":
        platforms = {
            platform: options(platform, f"providers.push.options.{platform}")
            for platform in PUSH_PLATFORMS
            if state.get(f"{SETTINGS}push_{platform}_on")
        }
        return ({"provider": "push", "options": platforms} if platforms else None), problems
    name = state.get(f"{SETTINGS}{channel}_provider") or ""
    if name not in channel_providers(channel):
        return None, problems
    return {"provider": name, "options": options(name, f"providers.{channel}.options")}, problems


def settings_document(
    state: Mapping[str, Any], stored: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Problem]]:
    """The document the form shows, and the problems the form itself finds.

    Keys of ``stored`` the form does not show are kept as they are, so saving from the page
    never loses what was set another way (``safar delivery settings set``).
    """
    s = {key[len(SETTINGS) :]: value for key, value in state.items() if key.startswith(SETTINGS)}
    doc: dict[str, Any] = {k: v for k, v in stored.items() if k not in _FORM_KEYS}
    problems: list[Problem] = []
    doc["time_zone"] = s["time_zone"]
    doc["week_starts_on"] = s["week_starts_on"]
    if s["dnd_on"]:
        doc["dnd"] = {
            "start": f"{s['dnd_start']:%H:%M}",
            "end": f"{s['dnd_end']:%H:%M}",
            "action": s["dnd_action"],
        }
    for key, number in (("caps", "count"), ("min_gaps", "minutes")):
        if items := rows_to_items(s[f"{key}_rows"], number):
            doc[key] = items
    throttles = {c: int(s[f"throttle_{c}"]) for c in CHANNELS if s.get(f"throttle_{c}")}
    if throttles:
        doc["throttle_per_minute"] = throttles
    doc["categories"] = list(s["categories"])
    doc["max_attempts"] = s["max_attempts"]
    kept = stored.get("providers") if isinstance(stored.get("providers"), Mapping) else {}
    # In-app needs no provider (the inbox is always there); one set by hand is kept.
    providers = {"in_app": kept["in_app"]} if "in_app" in kept else {}
    for channel in CHANNELS:
        if channel == "in_app":
            continue
        item, found = provider_document(state, channel, stored)
        problems += found
        if item is not None:
            providers[channel] = item
    if providers:
        doc["providers"] = providers
    return doc, problems


def stored_settings(engine: sa.Engine) -> tuple[dict[str, Any], list[Problem]]:
    """The stored document as it is, and its problems (a document set by hand may have some).

    ``load_config`` refuses a document with problems; the page still has to show it.
    """
    with engine.connect() as con:
        value = con.execute(
            sa.select(delivery_settings.c.value).where(delivery_settings.c.key == CONFIG_KEY)
        ).scalar()
    raw = json.loads(value) if value else {}
    raw = raw if isinstance(raw, dict) else {}
    try:
        parse_config(raw)
    except ConfigError as error:
        return raw, error.problems
    return raw, []


async def _close(senders: Iterable[Sender]) -> None:
    for sender in senders:
        await sender.aclose()


def make_senders(
    engine: sa.Engine,
    channel: str,
    item: Mapping[str, Any],
    tracking: Mapping[str, str] | None = None,
) -> dict[str, Sender]:
    """The senders :func:`build_senders` makes for one channel's ``{"provider", "options"}``.

    Raises:
        ConfigError: the provider cannot be made from these options.
    """
    provider = item.get("provider")
    if not isinstance(provider, str):
        raise ConfigError(
            [(f"providers.{channel}", 'must be {"provider": name, "options": {...}}')]
        )
    config = DeliveryConfig(
        providers={channel: ProviderConfig(provider, dict(item.get("options") or {}))}
    )
    return build_senders(config, engine, tracking=tracking)


def check_document(engine: sa.Engine, doc: Mapping[str, Any]) -> list[Problem]:
    """Every problem of a settings document, including those only making its senders finds.

    ``save_config`` checks the policies and the shape of ``providers``; a provider's options
    (an unknown or missing one, a key that does not load) only show when its sender is made,
    which ``safar dispatch`` does at start. Making them here (and closing them at once) keeps
    a document that would stop the dispatcher from being saved.
    """
    problems: list[Problem] = []
    try:
        parse_config(doc)
    except ConfigError as error:
        problems += error.problems
    providers = doc.get("providers")
    for channel, item in providers.items() if isinstance(providers, Mapping) else ():
        if channel not in CHANNELS or not isinstance(item, Mapping):
            continue  # parse_config said so
        try:
            senders = make_senders(engine, channel, item)
        except ConfigError as error:
            problems += [p for p in error.problems if p not in problems]
        else:
            asyncio.run(_close(senders.values()))
    return problems


TEST_TEXT = "پیام آزمایشی سفر — Safar test message"
TEST_CONTENT: dict[str, dict[str, Any]] = {
    "email": {
        "subject": TEST_TEXT,
        "text": f"{TEST_TEXT}\n\nIf this arrived, the email provider works.",
        "html": f'<p dir="auto">{TEST_TEXT}</p><p>If this arrived, the email provider works.</p>',
    },
    "sms": {"text": TEST_TEXT},
    "push": {"title": "Safar", "body": TEST_TEXT},
    "web_push": {"title": "Safar", "body": TEST_TEXT},
    "webhook": {"method": "POST", "body": {"type": "safar.test", "text": TEST_TEXT}},
}
"""What a test send sends on each channel."""
ADDRESS_HINTS = {
    "email": "an email address, like sara@example.com",
    "sms": "a phone number, like +989121234567",
    "push": "a device token, as apns:<token> or fcm:<token>",
    "web_push": "a browser's push subscription, as JSON",
    "webhook": "an http(s) URL",
}


def send_test(
    engine: sa.Engine,
    channel: str,
    item: Mapping[str, Any],
    address: str,
    tracking: Mapping[str, str] | None = None,
) -> Outcome:
    """Send :data:`TEST_CONTENT` to ``address`` through the provider ``item`` describes.

    No outbox row, no event: only the provider is tried. The sender is made as the dispatcher
    makes it (with ``tracking``) and closed afterwards.

    Raises:
        ConfigError: the provider cannot be made from these options.
    """
    senders = make_senders(engine, channel, item, tracking)
    sender = senders[channel]
    envelope = Envelope(
        delivery_id=f"test_{uuid.uuid4().hex}",
        channel=channel,
        to=address.strip(),
        content=TEST_CONTENT[channel],
        person_id="safar-test",
    )

    async def run() -> Outcome:
        try:
            return await sender.send(envelope)
        except Exception as exc:  # a sender bug is shown, as the dispatcher records it
            return Outcome("failed", sender.provider, f"the sender raised {exc!r}")
        finally:
            await _close(senders.values())

    return asyncio.run(run())


SECTIONS = {
    "time_zone": "workspace",
    "week_starts_on": "workspace",
    "dnd": "dnd",
    "caps": "caps",
    "min_gaps": "min_gaps",
    "throttle_per_minute": "throttles",
    "categories": "categories",
    "max_attempts": "retries",
}


def problem_section(where: str) -> str:
    """The part of the page a problem belongs to: a provider tab or a policy's section.

    Example:
        >>> problem_section("caps[0].count"), problem_section("providers.push.options.fcm")
        ('caps', 'providers.push')
        >>> problem_section("week_starts_on"), problem_section("mystery")
        ('workspace', 'other')
    """
    head = re.split(r"[.\[]", where, maxsplit=1)[0]
    if head == "providers" and where.count(".") >= 1:
        return ".".join(where.split(".")[:2])
    return SECTIONS.get(head, "other")


def describe_problem(where: str, what: str) -> str:
    """A problem as a person reads it: rows counted from one, the path as words.

    Example:
        >>> describe_problem("caps[0].count", "must be a whole number ≥ 1, not 0")
        '**caps row 1 · count** — must be a whole number ≥ 1, not 0'
    """
    place = re.sub(r"\[(\d+)\]", lambda m: f" row {int(m[1]) + 1}", where).replace(".", " · ")
    return f"**{place}** — {what}"


def unsubscribe_pattern(gateway: str) -> str:
    """The preference page's address in messages, as the gateway serves it.

    Example:
        >>> unsubscribe_pattern("https://t.example.ir/")
        'https://t.example.ir/v1/unsubscribe/<token>'
    """
    return f"{gateway.rstrip('/')}/v1/unsubscribe/<token>"
