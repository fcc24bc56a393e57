"""The Messages and Delivery settings pages as Streamlit runs them, on an app DB with real sends.

The outbox is filled the way production fills it: deliveries are enqueued and the real
dispatcher sends them — email through ``SmtpSender`` to an aiosmtpd server on a free port,
in-app messages through ``InboxSender`` — so the pages read rows, events and inbox entries
that the delivery code wrote. Settings are saved through the page and read back with
``load_config``; test sends go to the same SMTP server, or to a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import doctest
import email
import json
import socket
import threading
from collections.abc import Iterator
from datetime import time
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from page_helpers import assert_ok
from streamlit.testing.v1 import AppTest

import dashboards.lib.delivery as delivery_module
from channels.email import SmtpSender, SmtpSettings
from channels.webhook import WebhookSender, WebhookSettings
from dashboards.lib.delivery import (
    build_message_counts_figure,
    check_document,
    find_messages,
    message_counts,
    message_detail,
    option_fields,
    settings_document,
    settings_state,
    state_totals,
)
from safar.delivery import outbox
from safar.delivery.dispatcher import Dispatcher, DispatchSettings, utcnow
from safar.delivery.inbox import InboxSender
from safar.delivery.outbox import Delivery, delivery_id, enqueue
from safar.delivery.policy import Cap, DndWindow
from safar.delivery.providers import PROVIDERS
from safar.delivery.settings import load_config, save_config

SUBJECT = "سفارش شما رسید"
HTML = '<h1 dir="rtl">سلام سارا</h1><p>Your order <b>#1042</b> is on its way.</p>'
WELCOME = "خوش آمدید"
IDS = {
    name: delivery_id("dashboard-test", name) for name in ("email", "inbox", "sms", "lost", "hook")
}
S = "delset_"
M = "msgs_"


class Recorder:
    """An SMTP server's handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 2.0.0 Ok: queued"


class _Controller(Controller):
    """aiosmtpd's controller on a free port (it wants to know the port before binding)."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def smtp() -> Iterator[tuple[int, Recorder]]:
    recorder = Recorder()
    controller = _Controller(recorder, hostname="127.0.0.1", port=0)
    controller.start()
    yield controller.port, recorder
    controller.stop()


def _smtp_settings(port: int) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1", port=port, from_address="news@safar.example", starttls=False, timeout=5
    )


class _Hook(BaseHTTPRequestHandler):
    """A customer's API: answers every webhook call with the tier it gave the person."""

    def do_PUT(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["content-length"]))
        answer = json.dumps({"tier": "gold", "پیام": "ثبت شد"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/tier"
    server.shutdown()
    server.server_close()


@pytest.fixture
def delivered(app_db: sa.Engine, smtp: tuple[int, Recorder], hook_url: str) -> sa.Engine:
    """Five deliveries, dispatched: an email, an in-app message and a webhook call sent, an
    SMS failed (no provider), an in-app message dropped (nobody to address)."""
    port, recorder = smtp
    now = utcnow()
    enqueue(
        app_db,
        [
            Delivery(
                IDS["email"],
                "email",
                "p-sara",
                "sara@example.com",
                "transactional",
                {"subject": SUBJECT, "html": HTML, "text": "سلام سارا\nYour order is on its way."},
                user_id="u-sara",
                campaign_id="spring-sale",
            ),
            Delivery(
                IDS["inbox"],
                "in_app",
                "p-ali",
                "u-ali",
                "promotions",
                {"title": WELCOME, "body": "هدیهٔ شما آماده است"},
                user_id="u-ali",
                journey_id="welcome",
            ),
            Delivery(
                IDS["sms"], "sms", "p-reza", "+989121234567", "promotions", {"text": "کد: 42"}
            ),
            Delivery(IDS["lost"], "in_app", "p-nobody", None, "promotions", {"title": "?"}),
            Delivery(
                IDS["hook"],
                "webhook",
                "p-sara",
                hook_url,
                "transactional",
                {"method": "PUT", "body": {"user": "u-sara", "city": "تهران"}},
                journey_id="tier-sync",
            ),
        ],
        now,
    )
    senders = {
        "email": SmtpSender(_smtp_settings(port)),
        "in_app": InboxSender(app_db),
        "webhook": WebhookSender(WebhookSettings(timeout=5)),
    }
    dispatcher = Dispatcher(app_db, senders, DispatchSettings())

    async def run() -> None:
        try:
            await dispatcher.dispatch_batch()
        finally:
            await dispatcher.aclose()

    asyncio.run(run())
    assert outbox.counts(app_db) == {"sent": 3, "failed": 1, "dropped": 1}
    assert [m["Subject"] for m in recorder.messages] == [SUBJECT]
    return app_db


def _texts(app: AppTest, kind: str) -> list[str]:
    return [e.value for e in app.get(kind)]


def _table(app: AppTest, key: str) -> pl.DataFrame:
    return pl.from_pandas(app.dataframe(key=key).value)


def _frame_with(app: AppTest, column: str) -> pl.DataFrame:
    """The one table on the page with ``column`` (tables without a selection carry no key)."""
    (frame,) = [pl.from_pandas(d.value) for d in app.dataframe if column in d.value.columns]
    return frame


# --- Messages ---------------------------------------------------------------------------------


def test_messages_page_counts_and_shows_each_message_as_sent(
    open_page: Any, delivered: sa.Engine, hook_url: str, tmp_path: Path
) -> None:
    app = open_page(tmp_path / "home", "messages.py")

    assert [t.value for t in app.main.title] == ["Messages"]
    assert {m.label: m.value for m in app.metric[:5]} == {
        "Messages": "5",
        "Sent or delivered": "3",
        "Waiting": "0",
        "Failed or bounced": "1",
        "Dropped": "1",
    }
    assert len(app.get("plotly_chart")) == 1
    table = _table(app, f"{M}table")
    assert table.height == 5
    assert SUBJECT in table["Message"].to_list()
    assert sorted(table["State"].to_list()) == ["Dropped", "Failed", "Sent", "Sent", "Sent"]

    app.selectbox(key=f"{M}open").select(IDS["email"]).run()
    assert_ok(app)
    assert any(SUBJECT in html and "sara@example.com" in html for html in _texts(app, "html"))
    (frame,) = app.get("iframe")
    # The email's HTML is only the srcdoc of a frame that may do nothing: never live markup.
    assert 'sandbox=""' in frame.proto.srcdoc
    assert "&lt;h1 dir=&quot;rtl&quot;&gt;سلام سارا" in frame.proto.srcdoc
    assert "<h1" not in frame.proto.srcdoc
    history = _frame_with(app, "Event")
    assert history["Event"].to_list() == ["Message Queued", "Message Sent"]
    assert history["Provider"].to_list() == [None, "smtp"]
    facts = dict(_frame_with(app, "Value").iter_rows())
    assert facts["Campaign"] == "spring-sale"
    assert facts["Provider message id"].endswith("@safar.example>")

    app.selectbox(key=f"{M}open").select(IDS["inbox"]).run()
    assert_ok(app)
    (card,) = [h for h in _texts(app, "html") if WELCOME in h]
    assert 'dir="auto"' in card and "هدیهٔ شما آماده است" in card
    assert not app.get("iframe")

    app.selectbox(key=f"{M}open").select(IDS["hook"]).run()
    assert_ok(app)
    codes = [c.value for c in app.code]
    assert f"PUT {hook_url}" in codes
    assert any('"city": "تهران"' in c for c in codes)
    (answer,) = app.json
    assert json.loads(answer.value)["body"] == {"tier": "gold", "پیام": "ثبت شد"}


def test_messages_filters_narrow_the_table(
    open_page: Any, delivered: sa.Engine, tmp_path: Path
) -> None:
    app = open_page(tmp_path / "home", "messages.py")

    app.multiselect(key=f"{M}states").set_value(["failed"]).run()
    assert _table(app, f"{M}table")["Message"].to_list() == ["کد: 42"]
    assert any("no provider is configured for the sms channel" in c for c in _texts(app, "caption"))
    bubble = next(h for h in _texts(app, "html") if "کد: 42" in h)
    assert 'dir="auto"' in bubble

    app.multiselect(key=f"{M}states").set_value([]).run()
    app.text_input(key=f"{M}text").input("هدیه").run()
    assert _table(app, f"{M}table")["Person"].to_list() == ["p-ali"]

    app.text_input(key=f"{M}text").input("").run()
    app.text_input(key=f"{M}source").input("welcome").run()
    assert _table(app, f"{M}table")["Journey"].to_list() == ["welcome"]

    app.text_input(key=f"{M}source").input("nothing-like-this").run()
    assert_ok(app)
    assert "No message matches" in app.info[0].value


def test_messages_page_without_messages_says_how_they_come(
    open_page: Any, app_db: sa.Engine, tmp_path: Path
) -> None:
    app = open_page(tmp_path / "home", "messages.py")
    assert "No messages yet" in app.info[0].value
    assert not app.get("plotly_chart")


def test_find_messages_filters_in_the_database(delivered: sa.Engine) -> None:
    def ids(**filters: Any) -> set[str]:
        return set(find_messages(delivered, **filters)["delivery_id"].to_list())

    assert ids() == set(IDS.values())
    assert ids(channels=["in_app"]) == {IDS["inbox"], IDS["lost"]}
    assert ids(source="tier-sync") == {IDS["hook"]}
    assert ids(states=["sent"], channels=["in_app"]) == {IDS["inbox"]}
    assert ids(source="spring-sale") == {IDS["email"]}
    assert ids(person="u-ali") == ids(person="p-ali") == {IDS["inbox"]}
    assert ids(person="p-sara", channels=["webhook"]) == {IDS["hook"]}
    assert ids(text="YOUR ORDER") == ids(text="سارا") == {IDS["email"]}
    assert ids(text="100%") == set()  # a % is a character to find, not a wildcard
    assert find_messages(delivered, limit=2).height == 2


def test_message_detail_has_the_events_and_the_inbox_row(delivered: sa.Engine) -> None:
    inbox_message = message_detail(delivered, IDS["inbox"])
    assert inbox_message is not None
    assert inbox_message.content == {"title": WELCOME, "body": "هدیهٔ شما آماده است"}
    assert inbox_message.inbox is not None and inbox_message.inbox["person_id"] == "u-ali"
    assert inbox_message.history["Event"].to_list() == ["Message Queued", "Message Sent"]
    dropped = message_detail(delivered, IDS["lost"])
    assert dropped is not None and dropped.inbox is None
    assert dropped.history["Event"].to_list() == ["Message Queued", "Message Dropped"]
    assert dropped.history["Detail"][-1].startswith("unreachable")
    assert message_detail(delivered, "d_nope") is None
    counts = message_counts(delivered)
    assert sorted(counts.rows()) == [
        ("email", "sent", 1),
        ("in_app", "dropped", 1),
        ("in_app", "sent", 1),
        ("sms", "failed", 1),
        ("webhook", "sent", 1),
    ]


# --- figure and pure parts --------------------------------------------------------------------


def test_doctests_pass() -> None:
    assert doctest.testmod(delivery_module).failed == 0


def test_counts_figure_stacks_states_per_channel_in_product_order() -> None:
    counts = pl.DataFrame(
        {
            "channel": ["webhook", "email", "email", "in_app", "email"],
            "state": ["sent", "dropped", "queued", "sent", "sent"],
            "messages": [4, 1, 2, 7, 3],
        }
    )
    fig = build_message_counts_figure(counts)

    assert fig.layout.barmode == "stack"
    assert [t.name for t in fig.data] == ["Queued", "Sent", "Dropped"]
    assert all(list(t.x) == ["Email", "Webhook", "In-app"] for t in fig.data)
    assert [list(t.y) for t in fig.data] == [[2, 0, 0], [3, 4, 7], [1, 0, 0]]
    totals = [sum(t.y[i] for t in fig.data) for i in range(3)]
    assert totals == [6, 4, 7]
    assert state_totals(counts)["Messages"] == 17
    assert build_message_counts_figure(counts.clear()).data == ()


def test_every_provider_option_gets_a_widget() -> None:
    kinds = {
        (name, f.name): f.kind
        for name, provider in PROVIDERS.items()
        for f in option_fields(provider.settings)
    }
    assert kinds[("smtp", "password")] == "secret"
    assert kinds[("kavenegar", "api_key")] == "secret"
    assert kinds[("twilio", "auth_token")] == "secret"
    assert kinds[("webhook", "secret")] == "secret"
    assert kinds[("apns", "private_key")] == "secret_text"
    assert kinds[("vapid", "vapid_private_key")] == "secret_text"
    assert kinds[("fcm", "service_account")] == "secret_json"
    assert kinds[("webhook", "default_headers")] == "json"
    assert kinds[("fcm", "verify")] == "flag"
    assert kinds[("vapid", "urgency")] == "choice"
    assert kinds[("smtp", "port")] == "int"
    assert kinds[("vapid", "subject")] == "text"
    urgency = next(f for f in option_fields(PROVIDERS["vapid"].settings) if f.name == "urgency")
    assert urgency.optional and urgency.choices == ("very-low", "low", "normal", "high")


FULL = {
    "time_zone": "Europe/Berlin",
    "week_starts_on": 0,
    "dnd": {"start": "21:30", "end": "07:00", "action": "drop"},
    "caps": [{"count": 3, "period": "week", "channel": "sms"}, {"count": 10, "period": "month"}],
    "min_gaps": [{"minutes": 90}],
    "throttle_per_minute": {"sms": 600, "email": 3000},
    "categories": ["news", "تخفیف‌ها"],
    "max_attempts": 4,
    "providers": {
        "email": {
            "provider": "smtp",
            "options": {"host": "mail", "port": 587, "from_address": "a@b.ir", "password": "pw"},
        },
        "sms": {"provider": "kavenegar", "options": {"api_key": "k-1", "sender": "1000"}},
        "push": {"provider": "push", "options": {"fcm": {"service_account": {"x": "y"}}}},
        "webhook": {"provider": "webhook", "options": {"default_headers": {"X-Team": "growth"}}},
    },
    "note": "kept as it was",
}


def test_the_form_round_trips_a_stored_document_and_never_shows_secrets() -> None:
    state = settings_state(FULL)

    assert state[f"{S}email_smtp_password"] == ""
    assert state[f"{S}sms_kavenegar_api_key"] == ""
    assert state[f"{S}push_fcm_service_account"] == ""
    assert state[f"{S}email_smtp_port"] == 587
    assert not state[f"{S}push_apns_on"]
    document, problems = settings_document(state, FULL)
    assert problems == []
    assert document == FULL

    typed = {**state, f"{S}sms_kavenegar_api_key": "k-2", f"{S}email_smtp_password_clear": True}
    document, _ = settings_document(typed, FULL)
    assert document["providers"]["sms"]["options"]["api_key"] == "k-2"
    assert "password" not in document["providers"]["email"]["options"]

    broken = {**state, f"{S}webhook_webhook_default_headers": "[1, 2]"}
    _, problems = settings_document(broken, FULL)
    assert problems == [
        (
            "providers.webhook.options.default_headers",
            'must be a JSON object, like {"name": "value"}',
        )
    ]


def test_check_document_reports_what_only_making_a_sender_finds(app_db: sa.Engine) -> None:
    assert check_document(app_db, {}) == []
    problems = check_document(
        app_db,
        {
            "caps": [{"count": 0, "period": "day"}],
            "providers": {
                "email": {"provider": "smtp", "options": {"host": "h", "port": 25}},
                "sms": {"provider": "twilio", "options": {"account_sid": "AC1", "auth_token": "t"}},
                "webhook": {"provider": "webhook", "options": {"secret": "not-a-secret"}},
            },
        },
    )
    where = [w for w, _ in problems]
    assert where[0] == "caps[0].count"
    assert ("providers.email.options", "missing from_address") in problems
    assert any(w == "providers.sms.options" and "from_number" in p for w, p in problems)
    assert "providers.webhook.options" in where
    # SmtpSender's address parser raises more than ValueError; it must not escape as a crash.
    bad_from = {"email": {"provider": "smtp", "options": {"host": "h", "port": 25}}}
    bad_from["email"]["options"]["from_address"] = "ali@@example.com"
    ((place, what),) = check_document(app_db, {"providers": bad_from})
    assert place == "providers.email.options" and "cannot be made" in what


# --- Delivery settings ------------------------------------------------------------------------


def _settings_page(open_page: Any, tmp_path: Path) -> AppTest:
    app = open_page(tmp_path / "home", "delivery_settings.py")
    assert [t.value for t in app.main.title] == ["Delivery settings"]
    return app


def _save(app: AppTest) -> AppTest:
    app.button(key=f"{S}save").click().run()
    assert_ok(app)
    return app


def test_a_cap_of_zero_is_shown_where_it_is_and_nothing_is_stored(
    open_page: Any, app_db: sa.Engine, tmp_path: Path
) -> None:
    app = _settings_page(open_page, tmp_path)
    app.session_state[f"{S}caps"] = {
        "edited_rows": {},
        "added_rows": [{"count": 0, "period": "day", "channel": "all channels"}],
        "deleted_rows": [],
    }
    app.number_input(key=f"{S}max_attempts").set_value(3)
    _save(app)

    errors = _texts(app, "error")
    caps_problem = "**caps row 1 · count** — must be a whole number ≥ 1, not 0"
    assert caps_problem in errors  # in the caps section
    assert any(e.startswith("**Not saved: 1 problem.**") and caps_problem in e for e in errors)
    assert load_config(app_db).raw == {}
    with app_db.connect() as con:
        assert con.exec_driver_sql("select count(*) from delivery_settings").scalar() == 0


def test_a_valid_change_is_stored_and_shown_again(
    open_page: Any, app_db: sa.Engine, tmp_path: Path
) -> None:
    app = _settings_page(open_page, tmp_path)
    app.toggle(key=f"{S}dnd_on").set_value(True).run()
    app.radio(key=f"{S}dnd_action").set_value("drop")
    app.number_input(key=f"{S}max_attempts").set_value(5)
    app.number_input(key=f"{S}throttle_sms").set_value(600)
    app.multiselect(key=f"{S}categories").set_value(["news", "تخفیف‌ها"])
    app.session_state[f"{S}caps"] = {
        "edited_rows": {},
        "added_rows": [{"count": 3, "period": "week", "channel": "email"}],
        "deleted_rows": [],
    }
    _save(app)

    assert any("Saved." in s for s in _texts(app, "success"))
    assert not app.error
    config = load_config(app_db)
    assert config.dispatch.max_attempts == 5
    assert config.dispatch.throttle_per_minute == {"sms": 600}
    assert config.dispatch.policy.caps == (Cap(3, "week", "email"),)
    assert config.dispatch.policy.dnd == DndWindow(time(22, 0), time(8, 0), "drop")
    assert config.categories == ("news", "تخفیف‌ها")
    # The form starts over from what is stored, the new cap as a row of the table.
    assert app.number_input(key=f"{S}max_attempts").value == 5
    assert app.dataframe(key=f"{S}caps").value.to_dict("records") == [
        {"count": 3, "period": "week", "channel": "email"}
    ]


def test_email_provider_test_send_reaches_the_server_and_saves_without_echoing_secrets(
    open_page: Any, app_db: sa.Engine, tmp_path: Path, smtp: tuple[int, Recorder]
) -> None:
    port, recorder = smtp
    app = _settings_page(open_page, tmp_path)
    app.selectbox(key=f"{S}email_provider").select("smtp").run()
    app.text_input(key=f"{S}email_smtp_host").input("127.0.0.1")
    app.number_input(key=f"{S}email_smtp_port").set_value(port)
    app.text_input(key=f"{S}email_smtp_from_address").input("news@safar.example")
    app.text_input(key=f"{S}email_smtp_from_name").input("فروشگاه سفر")
    app.checkbox(key=f"{S}email_smtp_starttls").uncheck()
    app.text_input(key=f"{S}email_smtp_password").input("p4ss")
    app.text_input(key=f"{S}email_test_to").input("sara@example.com").run()

    app.button(key=f"{S}email_test").click().run()
    assert_ok(app)
    (sent,) = [s for s in _texts(app, "success") if s.startswith("**sent** via smtp")]
    assert "provider message id `<test_" in sent
    (message,) = recorder.messages
    assert message["To"] == "sara@example.com"
    assert message["Subject"] == delivery_module.TEST_TEXT
    assert "فروشگاه سفر" in message["From"]
    assert message["List-Unsubscribe"].startswith("<http")  # made as the dispatcher makes it

    _save(app)
    options = load_config(app_db).raw["providers"]["email"]["options"]
    assert options == {
        "host": "127.0.0.1",
        "port": port,
        "from_address": "news@safar.example",
        "from_name": "فروشگاه سفر",
        "starttls": False,
        "password": "p4ss",
    }
    # The stored password is not sent back to the browser; saving again keeps it.
    assert app.text_input(key=f"{S}email_smtp_password").value == ""
    app.number_input(key=f"{S}max_attempts").set_value(2)
    _save(app)
    stored = load_config(app_db).raw
    assert stored["max_attempts"] == 2
    assert stored["providers"]["email"]["options"]["password"] == "p4ss"


def test_a_missing_option_blocks_the_save_and_a_dead_endpoint_says_retry(
    open_page: Any, app_db: sa.Engine, tmp_path: Path
) -> None:
    save_config(app_db, {"max_attempts": 6})
    app = _settings_page(open_page, tmp_path)
    app.selectbox(key=f"{S}sms_provider").select("kavenegar").run()
    _save(app)
    assert "**providers · sms · options** — missing api_key" in _texts(app, "error")
    assert load_config(app_db).raw == {"max_attempts": 6}

    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    app.selectbox(key=f"{S}webhook_provider").select("webhook").run()
    app.text_input(key=f"{S}webhook_test_to").input(f"http://127.0.0.1:{dead}/hook").run()
    app.button(key=f"{S}webhook_test").click().run()
    assert_ok(app)
    (warning,) = [w for w in _texts(app, "warning") if w.startswith("**retry** via webhook")]
    assert "connect" in warning.lower()


def test_saving_keeps_what_the_form_does_not_show(
    open_page: Any, app_db: sa.Engine, tmp_path: Path
) -> None:
    save_config(app_db, {"note": "set by the CLI", "max_attempts": 7})
    app = _settings_page(open_page, tmp_path)
    assert app.number_input(key=f"{S}max_attempts").value == 7
    app.number_input(key=f"{S}max_attempts").set_value(9)
    _save(app)
    stored = load_config(app_db).raw
    assert stored["note"] == "set by the CLI" and stored["max_attempts"] == 9
