"""The email channel over SMTP: a pool of persistent connections, one message per transaction.

The SMTP client is asyncio's own streams: ``pool_size`` connections, each carrying one
transaction at a time and many messages over its life, all on the event loop (threads running
``smtplib`` spent more CPU handing work and the GIL to each other than on SMTP). With
PIPELINING, ``MAIL``, ``RCPT`` and ``DATA`` share one round trip. A pooled connection is not
checked before use: a server that dropped it shows at ``MAIL``, before anything of the message
is sent, and the message goes on a new connection. Messages are written as bytes by
:mod:`channels.mime`, not through the stdlib ``email`` package (milliseconds a message).

The ``Message-ID`` is ``<{delivery_id}@{domain}>``: the mail world's de-facto idempotency key,
so a message re-sent after a crash carries the same id and receivers can drop the duplicate.
SMTP replies decide the outcome: a 4xx or a lost connection is ``retry``; a mailbox-level 5xx
at ``RCPT``/``DATA`` (550, 551, 553, or an enhanced ``5.1.x`` code) is a dead address; any other
5xx is ``failed``.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import hmac
import os
import re
import ssl
from base64 import b64decode, b64encode
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.utils import format_datetime, getaddresses, parseaddr
from html import unescape

from channels import mime, tracking
from channels.base import Envelope, Outcome

PROVIDER = "smtp"

# What may stand left of the "@" in a Message-ID (RFC 5322 dot-atom-text).
_ID_LEFT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
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
# html_to_text: what each tag does to the text, and the markup it looks for.
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"})
_LINES = frozenset({"br", "div", "tr", "blockquote", "hr"})
_HIDDEN = frozenset({"head", "script", "style", "title"})
_MARKUP = re.compile(
    r"<(?:"
    r"!--.*?(?:-->|\Z)"  # a comment
    r"|[!?][^>]*>"  # a declaration or a processing instruction
    r"|/(?P<end>[a-zA-Z][^\t\n\r\f />\x00]*)[^>]*>"
    r"|(?P<start>[a-zA-Z][^\t\n\r\f />\x00]*)(?P<attributes>(?:[^>\"']|\"[^\"]*\"|'[^']*')*)>"
    r")",
    re.DOTALL,
)
_HREF = re.compile(
    r"""(?:^|(?<=['"\s/]))href\s*=+\s*('[^']*'|"[^"]*"|(?!['"])[^>\s]*)""", re.IGNORECASE
)
_SELF_CLOSING = re.compile(r"""(?:^|['"\s])/\s*$""")
_BLANK_LINES = re.compile(r"\n{3,}")
# An address smtplib's quoteaddr would only put in angle brackets.
_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"]+")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
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
        address = Address(addr_spec=settings.from_address)
        self._from = mime.mailboxes("From", [(settings.from_name, address.addr_spec)])
        self._mail_from = f"MAIL FROM:<{address.addr_spec}>"
        self._domain = settings.message_id_domain or address.domain
        self._where = f"{settings.host}:{settings.port}"
        self._tls: ssl.SSLContext | None = None
        # The pool belongs to the event loop it is used in (see _pool).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._idle: list[_Connection] = []

    async def send(self, envelope: Envelope) -> Outcome:
        """Sends one envelope; never raises for what the relay or the network did."""
        try:
            data, recipient = self.message_bytes(envelope)
        except (ValueError, TypeError) as exc:
            return Outcome("failed", PROVIDER, f"cannot build the email: {exc}")
        async with self._pool():
            return await self._deliver(data, recipient, self.message_id(envelope.delivery_id))

    async def aclose(self) -> None:
        """Waits for messages in flight, then says ``QUIT`` on every pooled connection."""
        slots = self._pool()
        for _ in range(self.settings.pool_size):
            await slots.acquire()
        idle, self._idle = self._idle, []
        await asyncio.gather(*(connection.quit() for connection in idle))
        for _ in range(self.settings.pool_size):
            slots.release()  # a send after all would open a new connection, not wait forever

    def message_bytes(self, envelope: Envelope) -> tuple[bytes, str]:
        """The complete email for an envelope, as it goes on the wire, and its recipient.

        Returns:
            The message (before SMTP dot-stuffing) and the address for ``RCPT TO``.

        Raises:
            ValueError: the content lacks a subject or a body, sets a reserved header, or a
                header value or address cannot be written.
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
        delivery_id = envelope.delivery_id
        if not _ID_LEFT.fullmatch(delivery_id):
            raise ValueError(f"the delivery id {delivery_id!r} cannot be a Message-ID")
        to, recipient = _recipient(envelope.to)
        settings = self.settings
        tracked = bool(settings.tracking_base_url and settings.tracking_secret)

        # (lower-case name, field): content headers replace same-named ones the sender set.
        fields = [
            ("from", self._from),
            ("to", to),
            ("subject", mime.header("Subject", subject)),
            ("date", f"Date: {format_datetime(datetime.now(UTC))}\r\n"),
            ("message-id", f"Message-ID: {self.message_id(delivery_id)}\r\n"),
        ]
        if content.get("reply_to"):
            fields.append(("reply-to", mime.addresses("Reply-To", content["reply_to"])))
        unsubscribe = []
        if tracked:
            url = tracking.unsubscribe_url(
                settings.tracking_base_url, settings.tracking_secret, delivery_id
            )
            unsubscribe.append(f"<{url}>")
        if settings.unsubscribe_mailto:
            unsubscribe.append(f"<mailto:{settings.unsubscribe_mailto}?subject=unsubscribe>")
        if unsubscribe:
            fields.append(
                ("list-unsubscribe", mime.header("List-Unsubscribe", ", ".join(unsubscribe)))
            )
        if tracked:
            # RFC 8058 one-click needs the https URL to POST to, not just a mailto.
            fields.append(
                ("list-unsubscribe-post", "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
            )
        fields.append(("x-safar-delivery-id", f"X-Safar-Delivery-Id: {delivery_id}\r\n"))
        if envelope.campaign_id:
            fields.append(
                ("x-safar-campaign-id", mime.header("X-Safar-Campaign-Id", envelope.campaign_id))
            )
        if envelope.journey_id:
            fields.append(
                ("x-safar-journey-id", mime.header("X-Safar-Journey-Id", envelope.journey_id))
            )
        for name, value in (content.get("headers") or {}).items():
            key = name.lower()
            if key in _RESERVED:
                raise ValueError(f"content.headers may not set {name}")
            field = mime.header(name, str(value))
            fields = [kept for kept in fields if kept[0] != key]
            fields.append((key, field))

        if html and tracked:
            body_html = tracking.rewrite_links(
                html,
                base_url=settings.tracking_base_url,
                secret=settings.tracking_secret,
                delivery_id=delivery_id,
            )
        else:
            body_html = html or None
        headers = "".join(field for _, field in fields)
        return mime.message(headers, text or html_to_text(html), body_html), recipient

    def message_id(self, delivery_id: str) -> str:
        """The ``Message-ID`` of a delivery, the same on every attempt."""
        return f"<{delivery_id}@{self._domain}>"

    def _pool(self) -> asyncio.Semaphore:
        """This event loop's pool slots: one per connection, so one per transaction in flight.

        Connections belong to the loop that opened them; a sender used on another loop (a
        second ``asyncio.run``) starts a new pool.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._idle = loop, []
            self._slots = asyncio.Semaphore(self.settings.pool_size)
        return self._slots

    async def _deliver(self, data: bytes, recipient: str, message_id: str) -> Outcome:
        """Sends one message on a pooled connection or a new one (holding a pool slot)."""
        where = self._where
        connection = self._checkout()
        reused = connection is not None
        while True:
            if connection is None:
                try:
                    connection = await self._connect()
                except _SESSION_ERRORS as exc:
                    return Outcome(
                        "retry", PROVIDER, f"cannot connect to {where}: {_describe(exc)}"
                    )
            try:
                stage, code, reply = await self._transact(connection, recipient, data, reused)
                break
            except _Stale:
                # The server dropped the pooled connection; nothing of the message went on it.
                connection.close()
                connection, reused = None, False
            except _SESSION_ERRORS as exc:
                # The message may or may not have gone; a retry carries the same Message-ID.
                connection.close()
                return Outcome("retry", PROVIDER, f"connection to {where} lost: {_describe(exc)}")
            except BaseException:
                connection.close()  # cancelled mid-transaction: the session is in no known state
                raise
        sent = stage == "DATA" and code == 250
        keep = False
        try:
            # A refusal can leave the transaction open (RCPT refused after MAIL); RSET ends it
            # so the connection can carry the next message. 421: the server is closing it.
            keep = code != 421 and (sent or await connection.reset())
        finally:
            if keep:
                self._idle.append(connection)
            else:
                connection.close()
        if sent:
            return Outcome(
                "sent",
                PROVIDER,
                f"accepted: {code} {reply}",
                provider_message_id=message_id,
                response={"code": code, "message": reply},
            )
        return classify(stage, code, reply)

    def _checkout(self) -> _Connection | None:
        """An idle connection the server has not visibly closed, or ``None`` to open one."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed():
                return connection
            connection.close()
        return None

    async def _transact(
        self, connection: _Connection, to: str, data: bytes, reused: bool
    ) -> tuple[str, int, str]:
        """Runs ``MAIL``, ``RCPT`` and ``DATA``; with PIPELINING, all three in one round trip.

        Returns:
            The last stage run, its reply code and its reply on one line.

        Raises:
            _Stale: ``MAIL`` on a pooled connection found it dropped (relays close idle
                connections, often saying 421 first). Nothing of the message was sent, so a
                new connection can take it: no round trip per message to check connections.
            OSError: the connection broke or a reply timed out.
        """
        # With SIZE, a relay refuses an oversized message before it is transferred.
        mail = self._mail_from
        if "size" in connection.extensions:
            mail = f"{mail} SIZE={len(data)}"
        rcpt = f"RCPT TO:{_angle_address(to)}"
        pipelined = "pipelining" in connection.extensions
        connection.write(f"{mail}\r\n{rcpt}\r\nDATA\r\n" if pipelined else f"{mail}\r\n")
        try:
            code, reply = await connection.reply()
        except OSError:
            if reused:
                raise _Stale from None
            raise
        if reused and code == 421:
            raise _Stale
        if code != 250:
            if pipelined and code != 421:  # the replies to RCPT and DATA are still due
                await connection.reply()
                await connection.skip_data_reply()
            return "MAIL FROM", code, _text(reply)
        if not pipelined:
            connection.write(f"{rcpt}\r\n")
        code, reply = await connection.reply()
        if code not in (250, 251):
            if pipelined and code != 421:
                await connection.skip_data_reply()
            return "RCPT TO", code, _text(reply)
        if not pipelined:
            connection.write("DATA\r\n")
        code, reply = await connection.reply()
        if code == 354:
            connection.write(_dot_stuffed(data))
            code, reply = await connection.reply()
        return "DATA", code, _text(reply)

    async def _connect(self) -> _Connection:
        """A new session, greeted, with ``EHLO``, ``STARTTLS`` and ``AUTH`` as configured."""
        settings = self.settings
        async with asyncio.timeout(settings.timeout):
            reader, writer = await asyncio.open_connection(settings.host, settings.port)
        connection = _Connection(reader, writer, settings.timeout)
        try:
            code, reply = await connection.reply()
            if code != 220:
                raise _Refused(f"greeted with {code} {_text(reply)}")
            await self._hello(connection)
            if settings.starttls:
                if "starttls" not in connection.extensions:
                    raise _Refused("the server does not offer STARTTLS")
                await connection.expect("STARTTLS", 220)
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                async with asyncio.timeout(settings.timeout):
                    await writer.start_tls(self._tls, server_hostname=settings.host)
                await self._hello(connection)
            if settings.username is not None:
                await self._login(connection, settings.username, settings.password or "")
        except BaseException:
            connection.close()
            raise
        return connection

    async def _hello(self, connection: _Connection) -> None:
        """``EHLO`` (``HELO`` when refused), noting the extensions the server announces."""
        code, reply = await connection.command(f"EHLO {self._domain}")
        if code == 250:
            connection.extensions = _extensions(reply)
        else:
            await connection.expect(f"HELO {self._domain}", 250)
            connection.extensions = {}

    async def _login(self, connection: _Connection, user: str, password: str) -> None:
        """``AUTH`` with the first of CRAM-MD5, PLAIN and LOGIN the server offers that works.

        The same choice as ``smtplib``'s ``login``.
        """
        offered = connection.extensions.get("auth")
        if offered is None:
            raise _Refused("the server does not offer AUTH")
        mechanisms = [m for m in ("CRAM-MD5", "PLAIN", "LOGIN") if m in offered.upper().split()]
        if not mechanisms:
            raise _Refused(f"no AUTH mechanism in common; the server offers {offered}")
        for mechanism in mechanisms:
            code, reply = await _authenticate(connection, mechanism, user, password)
            if code in (235, 503):  # 503: already authenticated
                return
        raise _Refused(f"AUTH refused with {code} {_text(reply)}")


class _Connection:
    """One SMTP session: its streams, the extensions announced and the reply timeout."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.extensions: dict[str, str] = {}

    def write(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    async def reply(self) -> tuple[int, str]:
        """The next reply: its code (-1 when unreadable) and its lines' text.

        Raises:
            OSError: the server closed the connection, or no reply came in time.
        """
        lines = []
        async with asyncio.timeout(self.timeout):
            while True:
                try:
                    line = await self.reader.readline()
                except ValueError:  # longer than the stream's limit
                    raise ConnectionError("the server sent an overlong reply line") from None
                if not line.endswith(b"\n"):
                    raise ConnectionError("the server closed the connection")
                lines.append(line[4:].strip().decode("utf-8", "replace"))
                if line[3:4] != b"-":
                    break
        return (int(line[:3]) if line[:3].isdigit() else -1), "\n".join(lines)

    async def command(self, line: str) -> tuple[int, str]:
        self.write(f"{line}\r\n")
        return await self.reply()

    async def expect(self, line: str, code: int) -> None:
        """Sends a command of the session's setup; raises ``_Refused`` on another reply."""
        answer, reply = await self.command(line)
        if answer != code:
            raise _Refused(f"{line.split()[0]} refused with {answer} {_text(reply)}")

    async def skip_data_reply(self) -> None:
        """Reads the reply to a pipelined ``DATA`` whose transaction had already failed."""
        code, _ = await self.reply()
        if code == 354:  # DATA accepted without a recipient after all: end the empty message
            self.write(".\r\n")
            await self.reply()

    async def reset(self) -> bool:
        """Ends an open transaction with ``RSET``; ``False`` when the connection is no good."""
        try:
            return (await self.command("RSET"))[0] == 250
        except OSError:
            return False

    def closed(self) -> bool:
        """Whether the server has closed the connection, as far as has been read yet."""
        return self.reader.at_eof() or self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()

    async def quit(self) -> None:
        """Says ``QUIT``, then closes; a server that is already gone is no error."""
        with contextlib.suppress(OSError):
            await self.command("QUIT")
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class _Refused(Exception):
    """The server would not open a session (greeting, ``EHLO``, ``STARTTLS``, ``AUTH``)."""


class _Stale(Exception):
    """A pooled connection was found closed before anything of the message was sent on it."""


_SESSION_ERRORS = (OSError, _Refused)


async def _authenticate(
    connection: _Connection, mechanism: str, user: str, password: str
) -> tuple[int, str]:
    """One ``AUTH`` exchange; the server's last reply."""
    if mechanism == "PLAIN":
        credentials = "\0".join(("", user, password))
        return await connection.command(f"AUTH PLAIN {_base64(credentials)}")
    if mechanism == "LOGIN":
        code, reply = await connection.command(f"AUTH LOGIN {_base64(user)}")
        if code == 334:
            code, reply = await connection.command(_base64(password))
        return code, reply
    code, reply = await connection.command("AUTH CRAM-MD5")
    if code == 334:
        try:
            challenge = b64decode(reply)
        except binascii.Error:
            raise _Refused(f"the CRAM-MD5 challenge is not base64: {reply!r}") from None
        digest = hmac.new(password.encode(), challenge, "md5").hexdigest()
        code, reply = await connection.command(_base64(f"{user} {digest}"))
    return code, reply


def _base64(text: str) -> str:
    return b64encode(text.encode()).decode("ascii")


def _extensions(reply: str) -> dict[str, str]:
    """The extensions an ``EHLO`` reply announces: keyword (lower case) to parameters.

    Example:
        >>> _extensions("mx.example greets you\\nSIZE 35882577\\nPIPELINING\\nAUTH LOGIN PLAIN")
        {'size': '35882577', 'pipelining': '', 'auth': 'LOGIN PLAIN'}
    """
    extensions = {}
    for line in reply.split("\n")[1:]:
        keyword, _, parameters = line.partition(" ")
        extensions[keyword.lower()] = parameters.strip()
    return extensions


def _angle_address(address: str) -> str:
    """An address as ``MAIL FROM`` and ``RCPT TO`` take it, the way ``smtplib`` quotes it.

    Example:
        >>> _angle_address("ali@example.com"), _angle_address("Ali <ali@example.com>")
        ('<ali@example.com>', '<ali@example.com>')
    """
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    name, addr = parseaddr(address)
    if not (name or addr):
        return address if address.strip().startswith("<") else f"<{address}>"
    return f"<{addr}>"


def _dot_stuffed(message: bytes) -> bytes:
    """``DATA``'s content: a line starting with a dot gets another, and a lone dot ends it.

    Example:
        >>> _dot_stuffed(b".hidden\\r\\nseen\\r\\n")
        b'..hidden\\r\\nseen\\r\\n.\\r\\n'
    """
    if message.startswith(b".") or b"\n." in message:
        message = _LEADING_DOT.sub(b"..", message)
    return message + b".\r\n"


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
    after its label, so the text part is as usable as the HTML. Markup is found with one
    regular expression rather than ``html.parser`` (a third of the time), reading it the way
    ``HTMLParser`` does: ``<script>`` and ``<style>`` content is not markup, ``<br/>`` opens
    and closes, character references are decoded.

    Example:
        >>> html_to_text(
        ...     "<html><head><title>t</title></head><body><h1>سلام!</h1>"
        ...     "<p>تخفیف  ویژه\u200cی <b>امروز</b>:<br><a href='https://x.ir/?a=1&amp;b=2'>"
        ...     "خرید</a></p><ul><li>یک</li><li>دو</li></ul></body></html>"
        ... )
        'سلام!\\n\\nتخفیف ویژه\\u200cی امروز:\\nخرید (https://x.ir/?a=1&b=2)\\n\\n- یک\\n- دو'
        >>> html_to_text("<style>p{}</style><script>if (a<b) x='</p>'</script>a&nbsp;<br/>b")
        'a\\n\\nb'
    """
    pieces: list[str] = []
    links: list[tuple[str | None, int]] = []  # open <a>: its href and where its label starts
    hidden = position = 0
    while True:
        match = _MARKUP.search(html, position)
        text = html[position : match.start() if match else len(html)]
        if text and not hidden:
            pieces.append(_collapse_spaces(unescape(text)))
        if match is None:
            break
        position = match.end()
        tag = match["start"]
        if tag is not None:
            tag, attributes = tag.lower(), match["attributes"]
            if tag in _HIDDEN:
                hidden += 1
            elif tag in _PARAGRAPHS:
                pieces.append("\n\n")
            elif tag in _LINES:
                pieces.append("\n")
            elif tag == "li":
                pieces.append("\n- ")
            elif tag == "a":
                links.append((_href(attributes), len(pieces)))
            if tag in ("script", "style"):
                end = html.lower().find(f"</{tag}", position)
                position = len(html) if end < 0 else end
                continue
            if not _SELF_CLOSING.search(attributes):
                continue
        elif match["end"] is not None:
            tag = match["end"].lower()
        else:
            continue  # a comment or a declaration
        if tag in _HIDDEN:
            hidden = max(0, hidden - 1)
        elif tag in _PARAGRAPHS:
            pieces.append("\n\n")
        elif tag in _LINES:
            pieces.append("\n")
        elif tag == "a" and links:
            href, start = links.pop()
            label = "".join(pieces[start:]).strip()
            target = (href or "").strip()
            if target and not target.startswith("#") and target.removeprefix("mailto:") != label:
                pieces.append(f" ({target})")
    text = "\n".join(line.strip(" \t") for line in "".join(pieces).split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def _href(attributes: str) -> str | None:
    """The decoded ``href`` of a tag's attributes (the last, as ``dict(attrs)`` keeps)."""
    values = _HREF.findall(attributes)
    if not values:
        return None
    value = values[-1]
    if value.startswith(("'", '"')):
        value = value[1:-1]
    return unescape(value)


def _collapse_spaces(text: str) -> str:
    """Every run of whitespace as one space (``str.split`` is much faster than ``re.sub``)."""
    words = text.split()
    if not words:
        return " " if text else ""
    collapsed = " ".join(words)
    if text[0].isspace():
        collapsed = " " + collapsed
    if text[-1].isspace():
        collapsed += " "
    return collapsed


def _recipient(to: str) -> tuple[str, str]:
    """The ``To`` field for an envelope's address, and the address for ``RCPT TO``.

    A display name may be in any script; the address itself must be ASCII: an
    internationalized address needs SMTPUTF8 end to end, which this sender does not negotiate.

    Example:
        >>> _recipient("علی <ali@example.com>")
        ('To: =?utf-8?b?2LnZhNuM?= <ali@example.com>\\r\\n', 'ali@example.com')
    """
    if to.isascii():  # RCPT TO takes the address out of "Name <address>" itself
        return mime.addresses("To", to), to
    pairs = getaddresses([to])
    if len(pairs) != 1 or not pairs[0][1].isascii():
        raise ValueError(f"the address {to!r} is not ASCII (SMTPUTF8 is not supported)")
    return mime.mailboxes("To", pairs), pairs[0][1]


def _text(reply: str) -> str:
    """A reply's lines on one line, for ``detail``."""
    return " ".join(reply.split())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and (exc.errno or 0) > 0:
        # asyncio says "Connect call failed (host, port)" where the system says why.
        reason = os.strerror(exc.errno)
        return reason if exc.strerror in (None, reason) else f"{reason} ({exc.strerror})"
    return str(exc) or type(exc).__name__
