"""The SMTP sender against a real aiosmtpd server: message shape, outcomes, pooling."""

from __future__ import annotations

import asyncio
import email
import re
import socket
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from tls_helpers import self_signed, server_context

from channels import mime
from channels.base import Envelope, Outcome
from channels.email import SmtpSender, SmtpSettings
from channels.tracking import read_token

BASE = "https://t.safar.example"
SECRET = "s3cret"
FROM_NAME = "فروشگاه سفر"


class Recorder:
    """Stores accepted messages; refuses some mailboxes the way real servers do."""

    def __init__(self, pipelining: bool = False) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.connections = 0
        self.servers: list[Any] = []
        self.pipelining = pipelining

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.connections += 1
        self.servers.append(server)
        if self.pipelining:  # aiosmtpd reads pipelined commands fine but does not say so
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        mailbox = address.partition("@")[0]
        if mailbox == "gone":
            return "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
        if mailbox == "nouser":
            return "550 No such user here"
        if mailbox == "busy":
            return "451 4.3.2 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if envelope.rcpt_tos == ["slow@example.com"]:
            await asyncio.sleep(0.4)  # longer than the sender waits in the timeout test
        if envelope.rcpt_tos == ["drop@example.com"]:
            server.transport.close()  # the server goes away before answering
            return "250 OK"
        if envelope.rcpt_tos == ["spam@example.com"]:
            return "554 5.7.1 Message rejected as spam"
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.original_content))
        return "250 2.0.0 Ok: queued"

    def received(self) -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=policy.default) for *_, raw in self.messages]


class _Controller(Controller):
    """aiosmtpd's controller on a free port (it wants to know the port before binding)."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def _start(handler: Recorder, **smtp_options: Any) -> _Controller:
    controller = _Controller(
        handler, hostname="127.0.0.1", port=0, data_size_limit=64_000, **smtp_options
    )
    controller.start()
    return controller


@pytest.fixture(params=[False, True], ids=["lockstep", "pipelining"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[_Controller, Recorder]]:
    handler = Recorder(pipelining=request.param)
    controller = _start(handler)
    yield controller, handler
    controller.stop()


def _sender(port: int, **overrides: Any) -> SmtpSender:
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "from_address": "news@safar.example",
        "from_name": FROM_NAME,
        "starttls": False,
        "timeout": 5.0,
        "tracking_base_url": BASE,
        "tracking_secret": SECRET,
        "unsubscribe_mailto": "unsubscribe@safar.example",
    }
    return SmtpSender(SmtpSettings(**(settings | overrides)))


def _envelope(delivery_id: str = "dlv-1", to: str = "ali@example.com", **content: Any) -> Envelope:
    content = {"subject": "سلام", "text": "متن"} | content
    return Envelope(delivery_id=delivery_id, channel="email", to=to, content=content)


def _send_all(sender: SmtpSender, *envelopes: Envelope) -> list[Outcome]:
    """Sends one after the other, on one event loop, then closes the sender."""

    async def run() -> list[Outcome]:
        try:
            return [await sender.send(envelope) for envelope in envelopes]
        finally:
            await sender.aclose()

    return asyncio.run(run())


class _Links(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"] or "")
        elif tag == "img":
            self.images.append(dict(attrs))


def _canonical(text: str) -> str:
    """MIME carries text with CRLF line ends and a final one; compare what the reader sees."""
    return text.replace("\r\n", "\n").removesuffix("\n")


SUBJECT = "سلام علی! پیشنهاد ویژهٔ امروز — ۵۰٪ تخفیف روی همه‌ی کفش‌ها 🎉"
TEXT = "علی عزیز،\nسفارش شمارهٔ ۱۲۳۴ ارسال شد.\u200f\nمی‌خواهید پیگیری کنید؟"
HTML = (
    '<html><body dir="rtl"><p>علی عزیز، سفارش شمارهٔ ۱۲۳۴ ارسال شد.</p>'
    '<p><a href="https://shop.example/orders/1234?utm=mail&amp;lang=fa">پیگیری</a> · '
    "<a href='http://shop.example/help'>راهنما</a> · "
    '<a href="mailto:support@shop.example">پشتیبانی</a></p></body></html>'
)


def test_message_shape_headers_and_persian_round_trip(
    server: tuple[_Controller, Recorder],
) -> None:
    controller, handler = server
    envelope = Envelope(
        delivery_id="dlv-42",
        channel="email",
        to="ali@example.com",
        content={
            "subject": SUBJECT,
            "text": TEXT,
            "html": HTML,
            "reply_to": "support@shop.example",
            "headers": {"X-Entity-Ref-ID": "order-1234"},
        },
        campaign_id="cmp-7",
        journey_id="jrn-3",
    )
    first, again = _send_all(_sender(controller.port), envelope, envelope)

    assert first.status == "sent" and first.provider == "smtp"
    assert first.provider_message_id == "<dlv-42@safar.example>"
    assert "250" in first.detail and "queued" in first.detail
    # The re-send carries the same Message-ID: receivers can tell it is the same message.
    assert again.provider_message_id == first.provider_message_id
    assert [raw.count(b"Message-ID: <dlv-42@safar.example>") for *_, raw in handler.messages] == [
        1,
        1,
    ]

    sender_address, recipients, raw = handler.messages[0]
    assert (sender_address, recipients) == ("news@safar.example", ["ali@example.com"])
    message = handler.received()[0]
    assert message["Subject"] == SUBJECT
    (author,) = message["From"].addresses
    assert (author.display_name, author.addr_spec) == (FROM_NAME, "news@safar.example")
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n")[0]  # encoded words, not raw UTF-8 headers
    assert message["To"] == "ali@example.com"
    assert message["Reply-To"] == "support@shop.example"
    assert message["X-Safar-Delivery-Id"] == "dlv-42"
    assert message["X-Safar-Campaign-Id"] == "cmp-7"
    assert message["X-Safar-Journey-Id"] == "jrn-3"
    assert message["X-Entity-Ref-ID"] == "order-1234"
    assert message["Date"] is not None

    unsubscribe = re.fullmatch(
        re.escape(BASE) + r"/v1/unsubscribe/(?P<token>[\w.-]+)>, "
        r"<mailto:unsubscribe@safar\.example\?subject=unsubscribe>",
        message["List-Unsubscribe"].removeprefix("<"),
    )
    assert unsubscribe is not None
    assert read_token(SECRET, unsubscribe["token"], kind="unsubscribe").delivery_id == "dlv-42"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Mail clients read the URL as is: it must not be folded into encoded words.
    assert b"List-Unsubscribe: <https://t.safar.example/v1/unsubscribe/" in raw

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert _canonical(parts[0].get_content()) == TEXT
    assert "علی عزیز، سفارش شمارهٔ ۱۲۳۴ ارسال شد." in parts[1].get_content()


def test_links_are_click_tracked_and_the_pixel_is_added(
    server: tuple[_Controller, Recorder],
) -> None:
    controller, handler = server
    (outcome,) = _send_all(_sender(controller.port), _envelope("dlv-7", html=HTML))
    assert outcome.status == "sent"

    html = handler.received()[0].get_body(("html",)).get_content()
    links = _Links(html)
    web = [href for href in links.hrefs if not href.startswith("mailto:")]
    assert len(web) == 2 and all(href.startswith(f"{BASE}/v1/t/c/") for href in web)
    targets = []
    for href in web:
        link = read_token(SECRET, href.rsplit("/", 1)[1], kind="click")
        assert link.delivery_id == "dlv-7"
        targets.append(link.target)
    assert targets == [
        "https://shop.example/orders/1234?utm=mail&lang=fa",
        "http://shop.example/help",
    ]
    assert "mailto:support@shop.example" in links.hrefs

    (pixel,) = links.images
    assert (pixel["width"], pixel["height"], pixel["alt"]) == ("1", "1", "")
    token = pixel["src"].removeprefix(f"{BASE}/v1/t/o/").removesuffix(".gif")
    assert read_token(SECRET, token, kind="open").delivery_id == "dlv-7"
    assert html.index("<img") < html.index("</body>")


def test_without_tracking_settings_links_stay(server: tuple[_Controller, Recorder]) -> None:
    controller, handler = server
    sender = _sender(controller.port, tracking_base_url=None, unsubscribe_mailto=None)
    (outcome,) = _send_all(sender, _envelope(html=HTML))
    assert outcome.status == "sent"
    message = handler.received()[0]
    assert message.get_body(("html",)).get_content().rstrip("\r\n") == HTML
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None


def test_html_only_gets_a_readable_text_part(server: tuple[_Controller, Recorder]) -> None:
    controller, handler = server
    (outcome,) = _send_all(_sender(controller.port), _envelope(text=None, html=HTML))
    assert outcome.status == "sent"
    message = handler.received()[0]
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    text = _canonical(message.get_body(("plain",)).get_content())
    assert text == (
        "علی عزیز، سفارش شمارهٔ ۱۲۳۴ ارسال شد.\n\n"
        "پیگیری (https://shop.example/orders/1234?utm=mail&lang=fa) · "
        "راهنما (http://shop.example/help) · پشتیبانی (mailto:support@shop.example)"
    )


def test_refusals_are_classified_and_the_connection_is_kept(
    server: tuple[_Controller, Recorder],
) -> None:
    controller, handler = server
    outcomes = _send_all(
        _sender(controller.port, pool_size=1),
        _envelope("d1", "gone@example.com"),
        _envelope("d2", "nouser@example.com"),
        _envelope("d3", "busy@example.com"),
        _envelope("d4", "spam@example.com"),
        _envelope("d5", "ali@example.com", text="x" * 100_000),
        _envelope("d6", "ali@example.com"),
    )
    summary = [(o.status, o.address_dead) for o in outcomes]
    assert summary == [
        ("bounced", True),
        ("bounced", True),
        ("retry", False),
        ("failed", False),
        ("failed", False),
        ("sent", False),
    ]
    details = [o.detail for o in outcomes[:5]]
    assert details[0].startswith("RCPT TO refused with 550 5.1.1 <gone@example.com>")
    assert details[1] == "RCPT TO refused with 550 No such user here"
    assert details[2] == "RCPT TO refused with 451 4.3.2 Mailbox busy, try again later"
    assert details[3] == "DATA refused with 554 5.7.1 Message rejected as spam"
    assert details[4].startswith("MAIL FROM refused with 552")
    assert [recipients for _, recipients, _ in handler.messages] == [["ali@example.com"]]
    assert handler.connections == 1  # RSET after each refusal, no reconnect


def test_server_down_is_retry() -> None:
    with socket.socket() as blocker:  # bound, not listening: connections are refused
        blocker.bind(("127.0.0.1", 0))
        (outcome,) = _send_all(_sender(blocker.getsockname()[1]), _envelope())
    assert outcome.status == "retry"
    assert outcome.detail.startswith("cannot connect to 127.0.0.1:") and "refused" in outcome.detail


def test_300_concurrent_sends_over_a_pool_of_4(server: tuple[_Controller, Recorder]) -> None:
    controller, handler = server
    sender = _sender(controller.port, pool_size=4)

    async def run() -> list[Outcome]:
        try:
            envelopes = [_envelope(f"dlv-{i}", f"p{i}@example.com") for i in range(300)]
            return await asyncio.gather(*(sender.send(envelope) for envelope in envelopes))
        finally:
            await sender.aclose()

    outcomes = asyncio.run(run())
    assert {outcome.status for outcome in outcomes} == {"sent"}
    received = Counter(message["Message-ID"] for message in handler.received())
    assert received == Counter(f"<dlv-{i}@safar.example>" for i in range(300))
    assert 1 <= handler.connections <= 4


def test_a_dropped_connection_is_retry_and_the_next_send_reconnects(
    server: tuple[_Controller, Recorder],
) -> None:
    controller, handler = server
    dropped, after = _send_all(
        _sender(controller.port, pool_size=1),
        _envelope("d1", "drop@example.com"),
        _envelope("d2", "ali@example.com"),
    )
    assert dropped.status == "retry" and "lost" in dropped.detail
    assert after.status == "sent"
    assert handler.connections == 2
    assert [message["Message-ID"] for message in handler.received()] == ["<d2@safar.example>"]


def test_an_idle_connection_the_server_closed_is_replaced(
    server: tuple[_Controller, Recorder],
) -> None:
    controller, handler = server
    sender = _sender(controller.port, pool_size=1)

    async def close_server_side() -> None:
        for smtp in handler.servers:
            smtp.transport.close()

    async def run() -> list[Outcome]:
        try:
            first = await sender.send(_envelope("d1"))
            asyncio.run_coroutine_threadsafe(close_server_side(), controller.loop).result()
            return [first, await sender.send(_envelope("d2"))]
        finally:
            await sender.aclose()

    # The stale connection fails its RSET before anything is sent, so this is not a retry.
    assert [outcome.status for outcome in asyncio.run(run())] == ["sent", "sent"]
    assert handler.connections == 2


def test_content_errors_fail_without_touching_the_server(
    server: tuple[_Controller, Recorder],
) -> None:
    controller, handler = server
    outcomes = _send_all(
        _sender(controller.port),
        _envelope(subject=""),
        _envelope(text=None),
        _envelope(headers={"Message-ID": "<other@example.com>"}),
        _envelope(headers={"X-Bad": "a\r\nBcc: victim@example.com"}),
        _envelope(to="علی@example.com"),
        _envelope(subject=["not", "text"]),
    )
    assert [outcome.status for outcome in outcomes] == ["failed"] * 6
    assert "no subject" in outcomes[0].detail
    assert "neither text nor html" in outcomes[1].detail
    assert "may not set Message-ID" in outcomes[2].detail
    assert "line break" in outcomes[3].detail
    assert "not ASCII" in outcomes[4].detail
    assert "content.subject is not a string" in outcomes[5].detail
    assert handler.connections == 0


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    valid = (auth_data.login, auth_data.password) == (b"safar", b"pa55")
    return AuthResult(success=valid, handled=False)  # handled=False: the server replies 535


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_login() -> None:
    handler = Recorder()
    controller = _start(
        handler, authenticator=_authenticator, auth_required=True, auth_require_tls=False
    )
    try:
        good, bad = (
            _send_all(_sender(controller.port, username="safar", password=password), _envelope())[0]
            for password in ("pa55", "wrong")
        )
    finally:
        controller.stop()
    assert good.status == "sent"
    # Refused credentials are the relay's configuration, not the message's fault.
    assert bad.status == "retry" and "535" in bad.detail
    assert len(handler.messages) == 1


# --- the message as written on the wire, read back by the stdlib parser ------------------------

LONG_NOTE = " ".join(f"word{i}" for i in range(40))
# Text that looks like MIME structure: boundary lines (ours start with "=_"), a lone dot
# (SMTP's end of data) and a line starting with one, trailing whitespace, a 300-character word.
TRICKY = (
    "--=_000000000000000000000000\n--=_000000000000000000000000--\n--boundary\n"
    ".\n.starts with a dot\na = b\t \n" + "x" * 300
)


def test_the_wire_format_parses_back_exactly(server: tuple[_Controller, Recorder]) -> None:
    controller, handler = server
    # Persian text goes in base64, mostly-ASCII HTML in quoted-printable: both are read back.
    text = f"{TEXT}\n{TRICKY}"
    html = f"<pre>\n{TRICKY}\n</pre><p><a href='https://shop.example/'>Shop</a> now</p>"
    envelope = Envelope(
        delivery_id="dlv-wire",
        channel="email",
        to="علی رضایی <ali@example.com>",
        content={
            "subject": SUBJECT,
            "text": text,
            "html": html,
            "reply_to": "پشتیبانی سفر <support@shop.example>",
            "headers": {"X-Long-Note": LONG_NOTE},
        },
    )
    sender = _sender(controller.port, tracking_base_url=None)  # untracked: the HTML stays as is
    (outcome,) = _send_all(sender, envelope)
    assert outcome.status == "sent"

    sender_address, recipients, raw = handler.messages[0]
    assert (sender_address, recipients) == ("news@safar.example", ["ali@example.com"])
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 78  # headers folded, bodies encoded in short lines
    message = handler.received()[0]
    assert message.defects == [] and all(part.defects == [] for part in message.walk())

    assert message["Subject"] == SUBJECT
    assert raw.count(b"=?utf-8?b?") > 3  # the Persian subject took several encoded words
    (author,) = message["From"].addresses
    assert (author.display_name, author.addr_spec) == (FROM_NAME, "news@safar.example")
    (to,) = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("علی رضایی", "ali@example.com")
    (reply_to,) = message["Reply-To"].addresses
    assert (reply_to.display_name, reply_to.addr_spec) == ("پشتیبانی سفر", "support@shop.example")
    assert message["Message-ID"] == "<dlv-wire@safar.example>"
    assert abs(message["Date"].datetime - datetime.now(UTC)) < timedelta(minutes=5)
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@safar.example?subject=unsubscribe>"
    assert message["List-Unsubscribe-Post"] is None  # one-click needs the https URL
    # The long header was folded onto several lines and unfolds to the exact text.
    assert b"X-Long-Note: word0 " in raw and b"\r\n word" in raw
    assert message["X-Long-Note"] == LONG_NOTE

    plain, rich = message.iter_parts()
    assert (plain.get_content_type(), rich.get_content_type()) == ("text/plain", "text/html")
    assert (plain["Content-Transfer-Encoding"], rich["Content-Transfer-Encoding"]) == (
        "base64",
        "quoted-printable",
    )
    assert _canonical(plain.get_content()) == text
    assert _canonical(rich.get_content()) == html
    # Only the three delimiter lines start with the boundary; the bodies never do.
    delimiter = f"--{message.get_boundary()}".encode()
    assert [line for line in lines if line.startswith(delimiter)] == [
        delimiter,
        delimiter,
        delimiter + b"--",
    ]


def test_message_bytes_are_the_message_and_its_recipient() -> None:
    sender = _sender(25)
    envelope = _envelope("dlv-9", html=HTML)
    data, recipient = sender.message_bytes(envelope)
    assert recipient == "ali@example.com"
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert parsed["Message-ID"] == "<dlv-9@safar.example>" and parsed["Subject"] == "سلام"


@pytest.mark.parametrize("name", ["Subject", "X-A-Rather-Long-Header-Name-For-A-Campaign-Note"])
@pytest.mark.parametrize(
    "value", [SUBJECT * 3, "🎉" * 40, "a" + "ی" * 100, "=?utf-8?q?not_a_word?="]
)
def test_encoded_headers_fit_lines_and_decode_back(name: str, value: str) -> None:
    field = mime.header(name, value)
    assert all(len(line) <= 78 for line in field.split("\r\n"))
    assert email.message_from_string(field + "\r\n", policy=policy.default)[name] == value


def test_text_bodies_decode_back_in_either_encoding() -> None:
    for text in (TEXT, HTML, TRICKY, "", "\n\n", "tab\tand space \nend", "\u200f" * 200):
        encoding, body = mime.text_body(text)
        part = email.message_from_bytes(
            b"Content-Type: text/plain; charset=utf-8\r\n"
            + f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode()
            + body,
            policy=policy.default,
        )
        # Line ends become CRLF, with one after the last line.
        assert _canonical(part.get_content()) == "\n".join(text.splitlines()), text
        assert all(len(line) <= 76 for line in body.split(b"\r\n"))


# --- sessions: TLS, timeouts -----------------------------------------------------------------


def test_starttls_is_verified_before_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key, _ = self_signed(tmp_path)
    context = server_context(cert, key)
    handler = Recorder()
    # The server takes neither AUTH nor MAIL before STARTTLS.
    controller = _start(
        handler,
        tls_context=context,
        require_starttls=True,
        authenticator=_authenticator,
        auth_required=True,
    )
    settings = {"starttls": True, "username": "safar", "password": "pa55"}
    try:
        (untrusted,) = _send_all(_sender(controller.port, **settings), _envelope("d1"))
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # what the default context trusts
        (trusted,) = _send_all(_sender(controller.port, **settings), _envelope("d2"))
    finally:
        controller.stop()
    assert untrusted.status == "retry" and "CERTIFICATE_VERIFY_FAILED" in untrusted.detail
    assert trusted.status == "sent", trusted.detail
    assert [message["Message-ID"] for message in handler.received()] == ["<d2@safar.example>"]


def test_a_silent_server_is_retry() -> None:
    with socket.socket() as silent:  # listening, so connections are made, but never greeting
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        (outcome,) = _send_all(_sender(silent.getsockname()[1], timeout=0.2), _envelope())
    assert outcome.status == "retry"
    assert outcome.detail.startswith("cannot connect to 127.0.0.1:")
    assert outcome.detail.endswith("timed out")


def test_a_reply_that_comes_too_late_is_retry_and_the_connection_is_not_reused(
    server: tuple[_Controller, Recorder],
) -> None:
    controller, handler = server
    slow, after = _send_all(
        _sender(controller.port, pool_size=1, timeout=0.3),
        _envelope("d1", "slow@example.com"),
        _envelope("d2", "ali@example.com"),
    )
    assert slow.status == "retry" and slow.detail.endswith("lost: timed out")
    # On the old connection, the late reply to d1 would be taken for d2's MAIL, and so on.
    assert after.status == "sent" and after.provider_message_id == "<d2@safar.example>"
    assert "<d2@safar.example>" in [message["Message-ID"] for message in handler.received()]
    assert handler.connections == 2
