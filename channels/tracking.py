"""Signed links for opens, clicks and unsubscribes, and an email's HTML rewritten to use them.

The gateway serves three routes under its public base URL: the open pixel
``GET /v1/t/o/{token}.gif``, the click redirect ``GET /v1/t/c/{token}`` and the unsubscribe
page ``GET|POST /v1/unsubscribe/{token}`` (``POST`` is RFC 8058 one-click). A token names the
kind of link, the delivery and, for a click, the target URL, and carries an HMAC-SHA256 of all
three under the workspace's secret: nobody can turn the click route into an open redirect, move
a click token to the unsubscribe route, or unsubscribe someone else by editing an id.

A token is ``{payload}.{mac}``: ``payload`` is the base64url JSON array ``[kind, delivery_id]``
(``[kind, delivery_id, target]`` for clicks) and ``mac`` the first 128 bits of the HMAC, in
base64url, both without padding. Tokens are deterministic: the same link in a re-sent email is
the same URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

Kind = Literal["open", "click", "unsubscribe"]

_CODES: dict[str, str] = {"open": "o", "click": "c", "unsubscribe": "u"}
_KINDS: dict[str, Kind] = {"o": "open", "c": "click", "u": "unsubscribe"}
# Mixed into every MAC so these tokens never collide with other uses of the workspace secret.
_DOMAIN = b"safar.tracking.v1\x00"
_MAC_BYTES = 16
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_HTTP = re.compile(r"https?://", re.IGNORECASE)
_TAG_NAME = re.compile(r"<[^\s/>]+")
_ATTRIBUTE = re.compile(
    r"""[\s/]*(?P<name>[^\s/>][^\s/=>]*)(?:\s*=\s*(?P<value>"[^"]*"|'[^']*'|[^\s>]*))?"""
)


class BadToken(ValueError):
    """A token that is malformed, not signed with the secret, or of another kind of link."""


@dataclass(frozen=True)
class TrackedLink:
    """What a valid token says.

    Attributes:
        kind: ``open``, ``click`` or ``unsubscribe``.
        delivery_id: the delivery the link was sent in.
        target: where a click goes; ``None`` for the other kinds.
    """

    kind: Kind
    delivery_id: str
    target: str | None = None


def open_pixel_url(base_url: str, secret: str | bytes, delivery_id: str) -> str:
    """The URL of the 1×1 GIF that records an open.

    Example:
        >>> open_pixel_url("https://t.example.com/", "s3cret", "d1")
        'https://t.example.com/v1/t/o/WyJvIiwiZDEiXQ.OFFRBdmEdKBt5vvJWYaVNA.gif'
    """
    return f"{base_url.rstrip('/')}/v1/t/o/{make_token(secret, 'open', delivery_id)}.gif"


def click_url(base_url: str, secret: str | bytes, delivery_id: str, target: str) -> str:
    """The URL that records a click and redirects to ``target``.

    Args:
        base_url: the gateway's public URL.
        secret: the workspace's tracking secret.
        delivery_id: the delivery the link is sent in.
        target: an http(s) URL; anything else (``javascript:``…) is refused, so a signed link
            can only ever redirect to the web.

    Example:
        >>> url = click_url("https://t.example.com", "s3cret", "d1", "https://example.com/a?b=1")
        >>> read_token("s3cret", url.rsplit("/", 1)[1], kind="click").target
        'https://example.com/a?b=1'
    """
    if not _HTTP.match(target):
        raise ValueError(f"a click link must point to an http(s) URL, not {target!r}")
    return f"{base_url.rstrip('/')}/v1/t/c/{make_token(secret, 'click', delivery_id, target)}"


def unsubscribe_url(base_url: str, secret: str | bytes, delivery_id: str) -> str:
    """The URL of the unsubscribe page (``GET``) and of RFC 8058 one-click unsubscribe (``POST``).

    Example:
        >>> unsubscribe_url("https://t.example.com", "s3cret", "d1").rsplit("/", 2)[1]
        'unsubscribe'
    """
    return f"{base_url.rstrip('/')}/v1/unsubscribe/{make_token(secret, 'unsubscribe', delivery_id)}"


def make_token(secret: str | bytes, kind: Kind, delivery_id: str, target: str | None = None) -> str:
    """Signs a link: the path segment the gateway's tracking routes take.

    Example:
        >>> make_token("s3cret", "unsubscribe", "d1")
        'WyJ1IiwiZDEiXQ.CNK0HtHd0gX6dkY3pAh6uQ'
    """
    if (kind == "click") != (target is not None):
        raise ValueError("a click token needs a target, and only a click token has one")
    fields = [_CODES[kind], delivery_id] + ([target] if target is not None else [])
    payload = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
    return f"{_encode(payload)}.{_encode(_mac(secret, payload))}"


def read_token(secret: str | bytes, token: str, *, kind: Kind | None = None) -> TrackedLink:
    """Verifies a token and says what it links.

    Args:
        secret: the workspace's tracking secret.
        token: the path segment from the URL (without the pixel's ``.gif``).
        kind: the kind the route serves; a token of another kind is refused.

    Returns:
        The link the token was made for.

    Raises:
        BadToken: the token is malformed, its signature does not match, or it is of another
            kind.

    Example:
        >>> read_token("s3cret", "WyJ1IiwiZDEiXQ.CNK0HtHd0gX6dkY3pAh6uQ")
        TrackedLink(kind='unsubscribe', delivery_id='d1', target=None)
        >>> read_token("other", "WyJ1IiwiZDEiXQ.CNK0HtHd0gX6dkY3pAh6uQ")
        Traceback (most recent call last):
        ...
        channels.tracking.BadToken: bad signature: the token was not made with this secret
    """
    encoded, dot, signature = token.partition(".")
    if not dot or not _B64URL.fullmatch(encoded) or not _B64URL.fullmatch(signature):
        raise BadToken("malformed token: expected two base64url parts joined by a dot")
    try:
        payload, mac = _decode(encoded), _decode(signature)
    except (binascii.Error, ValueError) as exc:
        raise BadToken(f"malformed token: {exc}") from None
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise BadToken("bad signature: the token was not made with this secret")
    # Only a payload this module signed gets here, so a shape error means a format change.
    try:
        fields = json.loads(payload)
        code, delivery_id, *rest = fields
        link = TrackedLink(_KINDS[code], delivery_id, *rest)
    except (ValueError, TypeError, KeyError) as exc:
        raise BadToken(f"malformed token payload: {exc}") from None
    if kind is not None and link.kind != kind:
        raise BadToken(f"wrong kind: a token for {link.kind} where one for {kind} was expected")
    return link


def rewrite_links(html_text: str, *, base_url: str, secret: str | bytes, delivery_id: str) -> str:
    """Routes an email's web links through the click tracker and adds the open pixel.

    Every ``<a>`` whose ``href`` is an http(s) URL gets a signed click link instead; ``mailto:``,
    ``tel:``, ``#anchors`` and links to the unsubscribe page (or already tracked) stay. Only the
    ``href`` values change: other attributes, comments, scripts and text keep their bytes. The
    1×1 pixel goes just before ``</body>``, or at the end without a body tag.

    Args:
        html_text: the rendered HTML.
        base_url: the gateway's public URL.
        secret: the workspace's tracking secret.
        delivery_id: the delivery the email is sent in.

    Returns:
        The HTML with tracked links.

    Example:
        >>> out = rewrite_links(
        ...     "<p>سلام <A HREF='https://example.com/?a=1&amp;b=2' class=x>بخوانید</A></p>",
        ...     base_url="https://t.example.com", secret="s3cret", delivery_id="d1")
        >>> out.startswith('<p>سلام <A HREF="https://t.example.com/v1/t/c/')
        True
        >>> token = out.split("/v1/t/c/")[1].split('"')[0]
        >>> read_token("s3cret", token).target
        'https://example.com/?a=1&b=2'
        >>> out.split('"', 2)[2].split("/v1/t/o/")[0]
        ' class=x>بخوانید</A></p><img src="https://t.example.com'
    """
    base = base_url.rstrip("/")
    keep = (f"{base}/v1/unsubscribe/", f"{base}/v1/t/c/")
    scanner = _LinkScanner(html_text)
    edits: list[tuple[int, int, str]] = []
    for start, end, raw in scanner.hrefs:
        target = html.unescape(raw).strip()
        if _HTTP.match(target) and not target.startswith(keep):
            new = click_url(base, secret, delivery_id, target)
            edits.append((start, end, f'"{html.escape(new)}"'))
    pixel = html.escape(open_pixel_url(base, secret, delivery_id))
    at = len(html_text) if scanner.body_end is None else scanner.body_end
    edits.append((at, at, f'<img src="{pixel}" alt="" width="1" height="1" style="border:0">'))

    pieces, done = [], 0
    for start, end, replacement in sorted(edits, key=lambda edit: edit[0]):
        pieces += [html_text[done:start], replacement]
        done = end
    pieces.append(html_text[done:])
    return "".join(pieces)


class _LinkScanner(HTMLParser):
    """Finds where each ``<a href>`` value and the last ``</body>`` sit in the source.

    ``HTMLParser`` decides what is a tag (not text, a comment or inside ``<script>``); its
    ``getpos`` and raw start-tag text locate the tag, and only that tag's attributes are
    tokenized here, to get the value's exact span.
    """

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[tuple[int, int, str]] = []
        self.body_end: int | None = None
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.feed(source)
        self.close()

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        start, text = self._offset(), self.get_starttag_text() or ""
        match = _TAG_NAME.match(text)
        position = match.end() if match else len(text)
        while attribute := _ATTRIBUTE.match(text, position):
            position = attribute.end()
            if attribute["name"].lower() == "href":
                value = attribute["value"]
                if value:
                    quoted = value[0] in "\"'"
                    raw = value[1:-1] if quoted else value
                    begin, end = attribute.span("value")
                    self.hrefs.append((start + begin, start + end, raw))
                return  # a browser uses the first href only

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()


def _mac(secret: str | bytes, payload: bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the tracking secret is empty")
    return hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
