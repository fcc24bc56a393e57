"""The email channel over SMTP: a pool of persistent connections, one message per transaction.

There is no asynchronous SMTP client to rely on, so ``smtplib`` runs in a small thread pool
with one worker per connection: ``pool_size`` transactions are in flight at once, and each
connection carries many messages (``RSET`` before reuse doubles as the check that the server
has not dropped an idle connection, so a stale one is replaced before anything is sent on it).

The ``Message-ID`` is ``<{delivery_id}@{domain}>``: the mail world's de-facto idempotency key,
so a message re-sent after a crash carries the same id and receivers can drop the duplicate.
SMTP replies decide the outcome: a 4xx or a lost connection is ``retry``; a mailbox-level 5xx
at ``RCPT``/``DATA`` (550, 551, 553, or an enhanced ``5.1.x`` code) is a dead address; any other
5xx is ``failed``.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
import threading
from base64 import b64encode
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from html.parser import HTMLParser

from channels import tracking
from channels.base import Envelope, Outcome

PROVIDER = "smtp"

# 7-bit bodies (base64 or quoted-printable) need no 8BITMIME from the server. With
# refold_source="none", headers stored raw (see _set_header) are sent as given: the policy's
# folder turns a long URL in List-Unsubscribe into encoded words nobody reads, and (CPython
# 3.11) drops the space at a fold between two encoded words of a Persian subject.
_POLICY = policy.SMTP.clone(cte_type="7bit", refold_source="none")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
# Headers the sender owns: letting content override them would break threading, idempotency
# or the MIME structure.
_RESERVED = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "reply-to",
        "x-safar-delivery-id",
    }
)
# 39 UTF-8 bytes make a 64-character encoded word, so "Subject: " and one word fit in 78.
_WORD_BYTES = 39
_ENHANCED_CODE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})\b")
_MAILBOX_CODES = frozenset({550, 551, 553})


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP relay and how to sign messages.

    Attributes:
        host: the relay's host name.
        port: the relay's port (587 for submission with STARTTLS, 25 for a local relay).
        from_address: the sender address, also the envelope sender (``MAIL FROM``).
        from_name: the display name in ``From``; any script, encoded as RFC 2047 needs.
        username: the ``AUTH`` user; no ``AUTH`` when ``None``.
        password: the ``AUTH`` password.
        starttls: upgrade every connection with ``STARTTLS`` (certificate verified) before
            ``AUTH``.
        timeout: seconds for connecting and for each SMTP reply.
        pool_size: connections kept open, and messages in flight at once.
        tracking_base_url: the gateway's public URL; with ``tracking_secret``, links are
            click-tracked, an open pixel is added and ``List-Unsubscribe`` gets an https URL.
        tracking_secret: the workspace secret tracking tokens are signed with.
        unsubscribe_mailto: an address for the ``mailto:`` form of ``List-Unsubscribe``.
        message_id_domain: the right-hand side of ``Message-ID`` (and the ``EHLO`` name);
            defaults to the domain of ``from_address``.
    """

    host: str
    port: int
    from_address: str
    from_name: str = ""
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    timeout: float = 30.0
    pool_size: int = 4
    tracking_base_url: str | None = None
    tracking_secret: str | None = None
    unsubscribe_mailto: str | None = None
    message_id_domain: str | None = None


class SmtpSender:
    """Sends ``email`` envelopes through an SMTP relay over a pool of persistent connections.

    ``Envelope.content`` takes ``subject`` (required), ``text`` and/or ``html`` (at least
    one; a text part is derived from ``html`` when missing), ``reply_to`` and ``headers``
    (extra headers; those the sender sets itself, like ``From`` or ``Message-ID``, are refused).
    """

    channel = "email"
    provider = PROVIDER

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        name, address = settings.from_name, Address(addr_spec=settings.from_address)
        self._from = (
            formataddr((name, address.addr_spec))
            if name.isascii()
            else f"{_encoded_words(name)} <{address.addr_spec}>"
        )
        self._domain = settings.message_id_domain or address.domain
        self._idle: list[smtplib.SMTP] = []
        self._lock = threading.Lock()
        # One worker per connection: a worker never waits for a connection, and there are
        # never more than pool_size connections.
        self._workers = ThreadPoolExecutor(settings.pool_size, thread_name_prefix="smtp")

    async def send(self, envelope: Envelope) -> Outcome:
        """Sends one envelope; never raises for what the relay or the network did."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._workers, self._send, envelope)

    async def aclose(self) -> None:
        """Waits for messages in flight, then says ``QUIT`` on every pooled connection."""
        await asyncio.to_thread(self._close)

    def build_message(self, envelope: Envelope) -> EmailMessage:
        """The complete email for an envelope, as it goes on the wire.

        Raises:
            ValueError: the content lacks a subject or a body, or sets a reserved header.
            TypeError: a content field is not a string.
        """
        content = envelope.content
        for key in ("subject", "text", "html", "reply_to"):
            if not isinstance(content.get(key) or "", str):
                raise TypeError(f"content.{key} is not a string")
        subject, text, html = content.get("subject"), content.get("text"), content.get("html")
        if not subject:
            raise ValueError("the content has no subject")
        if not text and not html:
            raise ValueError("the content has neither text nor html")
        if not envelope.to.isascii():
            # An internationalized address needs SMTPUTF8 end to end, which this sender
            # does not negotiate.
            raise ValueError(
                f"the address {envelope.to!r} is not ASCII (SMTPUTF8 is not supported)"
            )
        settings = self.settings
        tracked = bool(settings.tracking_base_url and settings.tracking_secret)

        message = EmailMessage(policy=_POLICY)
        message.set_raw("From", self._from)
        message["To"] = envelope.to
        _set_header(message, "Subject", subject)
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = self.message_id(envelope.delivery_id)
        if content.get("reply_to"):
            message["Reply-To"] = content["reply_to"]
        unsubscribe = []
        if tracked:
            url = tracking.unsubscribe_url(
                settings.tracking_base_url, settings.tracking_secret, envelope.delivery_id
            )
            unsubscribe.append(f"<{url}>")
        if settings.unsubscribe_mailto:
            unsubscribe.append(f"<mailto:{settings.unsubscribe_mailto}?subject=unsubscribe>")
        if unsubscribe:
            _set_header(message, "List-Unsubscribe", ", ".join(unsubscribe))
        if tracked:
            # RFC 8058 one-click needs the https URL to POST to, not just a mailto.
            _set_header(message, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
        _set_header(message, "X-Safar-Delivery-Id", envelope.delivery_id)
        if envelope.campaign_id:
            _set_header(message, "X-Safar-Campaign-Id", envelope.campaign_id)
        if envelope.journey_id:
            _set_header(message, "X-Safar-Journey-Id", envelope.journey_id)
        for name, value in (content.get("headers") or {}).items():
            if name.lower() in _RESERVED:
                raise ValueError(f"content.headers may not set {name}")
            del message[name]
            _set_header(message, name, str(value))

        message.set_content(text or html_to_text(html))
        if html:
            if tracked:
                html = tracking.rewrite_links(
                    html,
                    base_url=settings.tracking_base_url,
                    secret=settings.tracking_secret,
                    delivery_id=envelope.delivery_id,
                )
            message.add_alternative(html, subtype="html")
        return message

    def message_id(self, delivery_id: str) -> str:
        """The ``Message-ID`` of a delivery, the same on every attempt."""
        return f"<{delivery_id}@{self._domain}>"

    def _send(self, envelope: Envelope) -> Outcome:
        """Builds and sends one message on a pooled connection (in a worker thread)."""
        try:
            message = self.build_message(envelope)
            data, message_id = message.as_bytes(), message["Message-ID"]
        except (ValueError, TypeError, MessageError) as exc:
            return Outcome("failed", PROVIDER, f"cannot build the email: {exc}")
        where = f"{self.settings.host}:{self.settings.port}"

        connection = self._checkout()
        if connection is None:
            try:
                connection = self._connect()
            except (smtplib.SMTPException, OSError) as exc:
                return Outcome("retry", PROVIDER, f"cannot connect to {where}: {_describe(exc)}")
        try:
            stage, code, reply = self._transact(connection, envelope.to, data)
        except (smtplib.SMTPException, OSError) as exc:
            # The message may or may not have gone; a retry carries the same Message-ID.
            connection.close()
            return Outcome("retry", PROVIDER, f"connection to {where} lost: {_describe(exc)}")
        if code == 421:  # the server is closing this connection
            connection.close()
        else:
            with self._lock:
                self._idle.append(connection)
        if stage == "DATA" and code == 250:
            return Outcome(
                "sent",
                PROVIDER,
                f"accepted: {code} {reply}",
                provider_message_id=message_id,
                response={"code": code, "message": reply},
            )
        return classify(stage, code, reply)

    def _checkout(self) -> smtplib.SMTP | None:
        """An idle connection that still answers ``RSET``, or ``None`` to open a new one."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            try:
                if connection.rset()[0] == 250:
                    return connection
            except (smtplib.SMTPException, OSError):
                pass
            connection.close()

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        connection = smtplib.SMTP(timeout=settings.timeout, local_hostname=self._domain)
        try:
            code, reply = connection.connect(settings.host, settings.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, reply)
            connection.ehlo_or_helo_if_needed()
            if settings.starttls:
                connection.starttls(context=ssl.create_default_context())
                connection.ehlo()
            if settings.username is not None:
                connection.login(settings.username, settings.password or "")
        except BaseException:
            connection.close()
            raise
        return connection

    def _transact(self, connection: smtplib.SMTP, to: str, data: bytes) -> tuple[str, int, str]:
        """Runs ``MAIL``, ``RCPT`` and ``DATA``; returns the last stage run and its reply."""
        # With SIZE, a relay refuses an oversized message before it is transferred.
        options = [f"SIZE={len(data)}"] if connection.has_extn("size") else []
        code, reply = connection.mail(self.settings.from_address, options)
        if code != 250:
            return "MAIL FROM", code, _text(reply)
        code, reply = connection.rcpt(to)
        if code not in (250, 251):
            return "RCPT TO", code, _text(reply)
        try:
            code, reply = connection.data(data)
        except smtplib.SMTPDataError as exc:
            code, reply = exc.smtp_code, exc.smtp_error
        return "DATA", code, _text(reply)

    def _close(self) -> None:
        self._workers.shutdown(wait=True)
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()


def classify(stage: str, code: int, reply: str) -> Outcome:
    """What an SMTP refusal means for a delivery.

    A 4xx is temporary. A 5xx at ``MAIL FROM`` is about the sender or the message, never the
    recipient. At ``RCPT TO`` or ``DATA`` an enhanced status code decides when given (``5.1.x``
    is a bad mailbox, ``5.7.1`` a policy refusal even with 550); without one, 550, 551 and 553
    mean the mailbox is gone.

    Args:
        stage: ``MAIL FROM``, ``RCPT TO`` or ``DATA``.
        code: the reply code.
        reply: the reply text, quoted in ``detail``.

    Returns:
        The outcome of the delivery.

    Example:
        >>> classify("RCPT TO", 550, "5.1.1 <gone@example.com>: user unknown").address_dead
        True
        >>> classify("DATA", 550, "5.7.1 rejected as spam").status
        'failed'
        >>> classify("RCPT TO", 451, "4.7.1 greylisted, try again later").status
        'retry'
        >>> classify("MAIL FROM", 552, "message size exceeds fixed maximum").detail
        'MAIL FROM refused with 552 message size exceeds fixed maximum'
    """
    detail = f"{stage} refused with {code} {reply}".rstrip()
    if not 500 <= code < 600:
        return Outcome("retry", PROVIDER, detail)
    if stage == "MAIL FROM":
        return Outcome("failed", PROVIDER, detail)
    enhanced = _ENHANCED_CODE.match(reply)
    if enhanced:
        dead = enhanced[1] == "5" and enhanced[2] == "1"
    else:
        dead = code in _MAILBOX_CODES
    if dead:
        return Outcome("bounced", PROVIDER, detail, address_dead=True)
    return Outcome("failed", PROVIDER, detail)


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML email, for its ``text/plain`` part.

    Blocks become lines, scripts, styles and the head go, and every link keeps its target
    after its label, so the text part is as usable as the HTML.

    Example:
        >>> html_to_text(
        ...     "<html><head><title>t</title></head><body><h1>سلام!</h1>"
        ...     "<p>تخفیف  ویژه\u200cی <b>امروز</b>:<br><a href='https://x.ir/?a=1&amp;b=2'>"
        ...     "خرید</a></p><ul><li>یک</li><li>دو</li></ul></body></html>"
        ... )
        'سلام!\\n\\nتخفیف ویژه\\u200cی امروز:\\nخرید (https://x.ir/?a=1&b=2)\\n\\n- یک\\n- دو'
    """
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", "".join(parser.pieces))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class _TextExtractor(HTMLParser):
    _PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"})
    _LINES = frozenset({"br", "div", "tr", "blockquote", "hr"})
    _HIDDEN = frozenset({"head", "script", "style", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._hidden = 0
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._PARAGRAPHS:
            self.pieces.append("\n\n")
        elif tag in self._LINES:
            self.pieces.append("\n")
        elif tag == "li":
            self.pieces.append("\n- ")
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self.pieces)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._PARAGRAPHS:
            self.pieces.append("\n\n")
        elif tag in self._LINES:
            self.pieces.append("\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self.pieces[start:]).strip()
            target = (href or "").strip()
            if target and not target.startswith("#") and target.removeprefix("mailto:") != label:
                self.pieces.append(f" ({target})")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.pieces.append(re.sub(r"\s+", " ", data))


def _set_header(message: EmailMessage, name: str, value: str) -> None:
    """Adds an unstructured header: ASCII as given, anything else as RFC 2047 encoded words."""
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"not a header name: {name!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} has a line break in its value")
    message.set_raw(name, value if value.isascii() else _encoded_words(value))


def _encoded_words(text: str) -> str:
    """Text as base64 UTF-8 encoded words, one per folded line.

    Every character, spaces included, sits inside a word: readers drop the whitespace
    between two encoded words, so the text decodes back exactly.

    Example:
        >>> _encoded_words("سلام دنیا")
        '=?utf-8?b?2LPZhNin2YUg2K/ZhtuM2Kc=?='
        >>> len(_encoded_words("سلام " * 10).split())
        3
    """
    words, word = [], ""
    for char in text:
        if len((word + char).encode()) > _WORD_BYTES:
            words.append(word)
            word = ""
        word += char
    words.append(word)
    return "\r\n ".join(f"=?utf-8?b?{b64encode(w.encode()).decode('ascii')}?=" for w in words)


def _text(reply: bytes | str) -> str:
    """An SMTP reply's text on one line (``smtplib`` joins multi-line replies with newlines)."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return str(exc) or type(exc).__name__
