"""The "call API / webhook" channel: send a journey step's rendered request to a customer's URL.

A marketer configures a journey step that calls the customer's API with a templated body; the
template renders ``Envelope.content`` (``method``, ``headers``, ``body``) and ``Envelope.to`` is
the URL. This module sends exactly that, signed the way Standard Webhooks
(https://www.standardwebhooks.com/) says, and keeps the answer in ``Outcome.response`` so a
later step can branch on it ("if the API said tier=gold …").

Every request carries ``webhook-id`` (the delivery id), ``webhook-timestamp`` (unix seconds),
``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` over ``"{id}.{timestamp}.{body}"``, when a
secret is configured) and ``Idempotency-Key`` (the delivery id again, for Stripe-style APIs),
so a re-send after a crash is applied once by a receiver that dedupes on either header.

The sender only classifies what happened; the durable dispatcher owns attempts and backoff.
Redirects are never followed: a 3xx is ``failed`` with its ``Location`` in the detail, because
silently re-sending a signed body to another host is how a request ends up somewhere nobody
configured. Cookies are never kept either, so one person's call cannot carry a session cookie
that another person's call set.

The client is aiohttp, not httpx as in the other channels, for its cost per call. On this
project's bench (``bench/delivery.py``: a local HTTP/1.1 sink, 20 connections, one core) a
plain httpx loop posted ~940 calls/s, most of its CPU spent in httpcore's connection-pool
bookkeeping, and this sender on httpx ~980/s, so the dispatcher sent ~750 webhooks/s; a plain
aiohttp loop posts ~9,500-13,500/s, this sender on it ~10,500-11,500/s and the dispatcher
~2,800-3,700/s. What that costs: calls are HTTP/1.1 only (httpx spoke HTTP/2 where a server
offered it), and proxy settings in the environment (``HTTPS_PROXY``) are not used.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import hashlib
import hmac
import json
import re
import secrets
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import certifi
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from channels.base import Envelope, Outcome, parse_retry_after

PROVIDER = "webhook"
SECRET_PREFIX = "whsec_"
METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")

MANAGED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "idempotency-key",
        "content-length",
        "transfer-encoding",
        "host",
    }
)
"""Headers the sender sets itself; a template's values for them are ignored (see
:meth:`WebhookSender.send`). The framing headers are here because a wrong ``Content-Length``
would cut off the very body the signature covers."""

KEPT_RESPONSE_HEADERS = (
    "content-type",
    "content-length",
    "location",
    "retry-after",
    "etag",
    "idempotent-replayed",
    "request-id",
    "x-request-id",
)
"""Response headers kept in ``Outcome.response``: the ones a later step or a person debugging
a call could use, not every header a load balancer adds."""

RETRY_STATUSES = frozenset({408, 425, 429})
DETAIL_QUOTE_CHARS = 200
WHOLE_CALL_TIMEOUTS = 3
"""A whole call (connect, send, answer) may take this many ``WebhookSettings.timeout``s: a
receiver that trickles its answer a byte at a time, or stops reading a large body, never
trips the per-wait timeouts, and would otherwise hold a connection forever."""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")
# A host as yarl hands it over (IDNA-encoded names, IPv6 without brackets, a zone as %25…):
# anything else, a space say, could only fail at DNS time as a retry that never succeeds.
_HOST = re.compile(r"[0-9A-Za-z.\-_:%]+")


class InvalidSignature(ValueError):
    """A webhook's Standard Webhooks signature does not check out; the message says why."""


def new_secret() -> str:
    """Make a new signing secret in the Standard Webhooks form ``whsec_<base64>``.

    32 random bytes: the spec asks for 24 to 64.

    Example:
        >>> secret = new_secret()
        >>> secret.startswith("whsec_"), len(decode_secret(secret))
        (True, 32)
    """
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret.

    The prefix is optional, as in the spec's reference libraries, so a receiver can paste the
    bare base64 too.

    Args:
        secret: ``whsec_`` followed by standard base64.

    Returns:
        The decoded key bytes.

    Raises:
        ValueError: the secret is not base64 or is empty.

    Example:
        >>> decode_secret("whsec_c2VjcmV0")
        b'secret'
        >>> decode_secret("whsec_not base64!")
        Traceback (most recent call last):
        ...
        ValueError: a webhook secret is whsec_ followed by base64; this one is not base64
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ValueError(
            "a webhook secret is whsec_ followed by base64; this one is not base64"
        ) from None
    if not key:
        raise ValueError("a webhook secret is whsec_ followed by base64; this one is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one message: ``v1,<base64 HMAC-SHA256>``.

    Args:
        secret: the ``whsec_`` secret.
        msg_id: the ``webhook-id``.
        timestamp: the ``webhook-timestamp``, unix seconds.
        body: the exact bytes sent.

    Returns:
        The signature, version-prefixed as the spec says.

    Example:
        The specification's published test vector:

        >>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        >>> sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
        'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
    """
    return _signature(decode_secret(secret), msg_id, timestamp, body)


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """:func:`sign` with the secret already decoded, as a sender does once, not per call."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> None:
    """Check a received webhook's Standard Webhooks signature, for customers and Safar alike.

    The header may hold several space-separated signatures (the sender signs with an old and a
    new secret while rotating); one matching ``v1`` signature is enough, and other versions
    are skipped. A timestamp further than ``tolerance_seconds`` from now, either way, is
    refused so a captured request cannot be replayed later.

    Args:
        secret: the ``whsec_`` secret shared with the sender.
        headers: the request's headers; names are matched case-insensitively.
        body: the raw request body, exactly as received.
        tolerance_seconds: how far the timestamp may be from ``now``.
        now: the current unix time; the clock when ``None``.

    Raises:
        InvalidSignature: a header is missing or malformed, the timestamp is out of tolerance,
            or no signature matches.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    missing = [
        name
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if not lower.get(name)
    ]
    if missing:
        raise InvalidSignature(f"missing header {', '.join(missing)}")
    stamp = lower["webhook-timestamp"].strip()
    if not stamp.isascii() or not stamp.isdigit():
        raise InvalidSignature(f"webhook-timestamp {stamp!r} is not unix seconds")
    age = (time.time() if now is None else now) - int(stamp)
    if age > tolerance_seconds:
        raise InvalidSignature(f"webhook-timestamp is {age:.0f} s old, over {tolerance_seconds:g}")
    if -age > tolerance_seconds:
        raise InvalidSignature(
            f"webhook-timestamp is {-age:.0f} s in the future, over {tolerance_seconds:g}"
        )
    raw = body.encode() if isinstance(body, str) else body
    expected = sign(secret, lower["webhook-id"], int(stamp), raw).encode()
    offered = [part for part in lower["webhook-signature"].split(" ") if part.startswith("v1,")]
    if not offered:
        raise InvalidSignature("webhook-signature has no v1 signature")
    # Compare every candidate in constant time so timing says nothing about which one is close.
    if not any([hmac.compare_digest(part.encode(), expected) for part in offered]):
        raise InvalidSignature(f"no matching signature among {len(offered)} v1 signature(s)")


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` is JSON: ``application/json`` or any ``+json`` type.

    Example:
        >>> is_json_media_type("application/json; charset=utf-8")
        True
        >>> is_json_media_type("application/problem+json")
        True
        >>> is_json_media_type("text/plain")
        False
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def json_error(text: str) -> str | None:
    """Where ``text`` stops being JSON, with the offending line; ``None`` when it is JSON.

    Templates break JSON in ways a marketer can only fix knowing the line and column (a
    trailing comma, a value that rendered empty), so the error quotes the line.

    Example:
        >>> json_error('{"tier": "gold"}') is None
        True
        >>> print(json_error('{"tier": "gold",\\n "points": }'))
        Expecting value at line 2, column 12: ' "points": }'
    """
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        line = text.split("\n")[exc.lineno - 1]
        excerpt = line[max(0, exc.colno - 41) : exc.colno + 39]
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}: {excerpt!r}"
    return None


def _header_problem(name: object, value: object) -> str | None:
    """Why a header cannot go out as is, or ``None`` when it can."""
    if not isinstance(name, str):
        return f"header name {name!r} must be a string, not {type(name).__name__}"
    if not isinstance(value, str):
        return f"header {name!r} must be a string, not {type(value).__name__}"
    if not _TOKEN.fullmatch(name):
        return f"header name {name!r} is not a valid HTTP header name"
    if not _FIELD_VALUE.fullmatch(value):
        return f"header {name!r} has a line break or non-ASCII character in its value"
    return None


@dataclass(frozen=True)
class WebhookSettings:
    """How the webhook channel sends.

    Attributes:
        secret: the ``whsec_<base64>`` signing secret (make one with :func:`new_secret`);
            without one no ``webhook-signature`` is sent.
        timeout: seconds allowed for connecting (DNS, TCP, TLS) and for each wait for
            response bytes; a whole call gets at most :data:`WHOLE_CALL_TIMEOUTS` times this.
        max_response_bytes: how much of a response body is kept in ``Outcome.response``; the
            rest is not read.
        user_agent: the ``User-Agent`` sent unless a step's template sets one.
        default_headers: headers sent with every call unless a step's template sets them.
        max_connections: calls in flight at most, across all hosts, each on its own
            connection; the rest wait their turn. Modest on purpose: it is polite to one
            customer's API. An idle connection is kept 15 s for the next call to its host, outside
            this count.
    """

    secret: str | None = None
    timeout: float = 10.0
    max_response_bytes: int = 64 * 1024
    user_agent: str = "Safar-Webhooks/0.1"
    default_headers: Mapping[str, str] = field(default_factory=dict)
    max_connections: int = 20

    def __post_init__(self) -> None:
        if self.secret is not None:
            decode_secret(self.secret)
        for name, value in self.default_headers.items():
            problem = _header_problem(name, value)
            if problem:
                raise ValueError(problem)
            if name.lower() in MANAGED_HEADERS:
                raise ValueError(f"header {name!r} is set by the sender, not by settings")


class _Unsendable(Exception):
    """The envelope cannot become a valid request; the message says why, for ``detail``."""


@dataclass(frozen=True)
class _Request:
    """A request ready to go but for its timestamp and signature, added as it leaves."""

    method: str
    url: URL
    headers: CIMultiDict[str]
    body: bytes


@dataclass(frozen=True)
class _Read:
    """A response body as far as it was read."""

    data: bytes
    truncated: bool
    cut_by: str = ""


class WebhookSender:
    """Calls customers' URLs with what a journey step's template rendered.

    Template headers named in :data:`MANAGED_HEADERS` (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``, ``Idempotency-Key`` and the framing headers) are ignored: the signed
    ones always win, so a template can neither forge a signature nor break idempotency. The
    ignored names are listed in the outcome's ``detail`` so the marketer sees why they did not
    arrive.

    A PUT, GET or DELETE whose kept-alive connection drops before any answer is sent once more
    on a new connection by aiohttp itself (RFC 9112 allows it for idempotent methods); it
    carries the same ``Idempotency-Key``, as every re-send does.
    """

    channel = "webhook"
    provider = PROVIDER

    def __init__(self, settings: WebhookSettings | None = None) -> None:
        self.settings = settings or WebhookSettings()
        self._key = decode_secret(self.settings.secret) if self.settings.secret else None
        # Made on first use: an aiohttp session belongs to the event loop it was made in, and
        # senders are often built before the loop that runs them.
        self._session: aiohttp.ClientSession | None = None
        # Calls past the pool's size wait here rather than in aiohttp's pool, so they are
        # signed as they leave and the timeouts time the call, not the queue before it.
        self._in_flight = asyncio.Semaphore(self.settings.max_connections)

    async def send(self, envelope: Envelope) -> Outcome:
        """Send one envelope to ``envelope.to``; never raises for what the network or the
        receiver did.

        Args:
            envelope: ``to`` is an http(s) URL; ``content`` has ``method`` (default POST),
                ``headers`` (names to strings) and ``body`` (JSON text, or a dict or list
                serialised here; a str body under a JSON content type must parse).

        Returns:
            ``sent`` for 2xx; ``retry`` for 408/425/429/5xx, timeouts and connection errors;
            ``bounced`` with ``address_dead`` for 410; ``failed`` for other 4xx, 3xx and an
            envelope that cannot become a request. ``response`` keeps whatever was answered.
        """
        try:
            request, ignored = self._build(envelope)
        except _Unsendable as exc:
            return Outcome("failed", PROVIDER, f"not sent: {exc}")
        note = (
            f"; ignored template headers that Safar sets itself: {', '.join(ignored)}"
            if ignored
            else ""
        )
        host = request.url.host
        session = self._session or self._open()
        async with self._in_flight:
            self._stamp(request, envelope.delivery_id)
            started = time.perf_counter()
            try:
                async with session.request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    data=request.body or None,
                    allow_redirects=False,
                ) as response:
                    read = await self._read(response)
            except aiohttp.ServerTimeoutError as exc:
                detail = f"no answer from {host} within {self.settings.timeout:g} s"
                return Outcome("retry", PROVIDER, f"{detail} ({type(exc).__name__}){note}")
            except TimeoutError as exc:
                whole = self.settings.timeout * WHOLE_CALL_TIMEOUTS
                detail = f"the call to {host} took over {whole:g} s in all"
                return Outcome("retry", PROVIDER, f"{detail} ({type(exc).__name__}){note}")
            except aiohttp.ClientError as exc:
                detail = f"could not reach {host}: {type(exc).__name__} {exc}".rstrip()
                return Outcome("retry", PROVIDER, detail + note)
            kept = self._kept(response, read, (time.perf_counter() - started) * 1000)
        if read.cut_by:
            note += f"; the response body was cut off ({read.cut_by})"
        return _classify(response, kept, envelope.delivery_id, note)

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    def _open(self) -> aiohttp.ClientSession:
        """The session and its pool, made in the running event loop."""
        timeout = self.settings.timeout
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.settings.max_connections,
                # The same CA bundle as httpx and the other channels, not whatever the
                # system's store holds (a slim container may have none).
                ssl=ssl.create_default_context(cafile=certifi.where()),
            ),
            timeout=aiohttp.ClientTimeout(
                total=timeout * WHOLE_CALL_TIMEOUTS, connect=timeout, sock_read=timeout
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    def _build(self, envelope: Envelope) -> tuple[_Request, list[str]]:
        """The request for an envelope, and the template headers it ignored."""
        try:
            url = URL(envelope.to)
        except ValueError as exc:
            raise _Unsendable(f"{envelope.to!r} is not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise _Unsendable(f"{envelope.to!r} is not an http:// or https:// URL")
        if not _HOST.fullmatch(url.raw_host):
            raise _Unsendable(f"{envelope.to!r} is not a URL: {url.host!r} is not a host name")
        content = envelope.content
        method = str(content.get("method") or "POST").upper()
        if method not in METHODS:
            raise _Unsendable(f"method {method} is not one of {', '.join(METHODS)}")
        template = content.get("headers") or {}
        if not isinstance(template, Mapping):
            raise _Unsendable(f"headers must be a mapping, not {type(template).__name__}")
        problem = _header_problem("webhook-id", envelope.delivery_id)
        if problem:
            raise _Unsendable(f"delivery id cannot be sent: {problem}")

        headers = CIMultiDict({"User-Agent": self.settings.user_agent})
        headers.update(self.settings.default_headers)
        ignored = []
        for name, value in template.items():
            problem = _header_problem(name, value)
            if problem:
                raise _Unsendable(problem)
            if name.lower() in MANAGED_HEADERS:
                ignored.append(name)
            else:
                headers[name] = value

        body = _encode_body(content.get("body"), headers)
        headers["webhook-id"] = envelope.delivery_id
        headers["Idempotency-Key"] = envelope.delivery_id
        return _Request(method, url, headers, body), ignored

    def _stamp(self, request: _Request, delivery_id: str) -> None:
        """Timestamp and sign a request as it leaves, not while it waited for a connection,
        so a long queue cannot push it past a receiver's tolerance."""
        timestamp = int(time.time())
        request.headers["webhook-timestamp"] = str(timestamp)
        if self._key:
            request.headers["webhook-signature"] = _signature(
                self._key, delivery_id, timestamp, request.body
            )

    async def _read(self, response: aiohttp.ClientResponse) -> _Read:
        """Read at most ``max_response_bytes`` of the body; a huge answer is not downloaded
        (the connection is closed rather than drained)."""
        limit = self.settings.max_response_bytes
        data = bytearray()
        try:
            async for chunk in response.content.iter_any():
                if len(data) + len(chunk) > limit:
                    data += chunk[: limit - len(data)]
                    return _Read(bytes(data), truncated=True)
                data += chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The status line already arrived, so it still decides the outcome.
            return _Read(bytes(data), truncated=True, cut_by=type(exc).__name__)
        return _Read(bytes(data), truncated=False)

    def _kept(
        self, response: aiohttp.ClientResponse, read: _Read, elapsed_ms: float
    ) -> dict[str, Any]:
        """What ``Outcome.response`` keeps of an answer, for later journey steps."""
        try:
            decoder = codecs.getincrementaldecoder(response.charset or "utf-8")
        except LookupError:
            decoder = codecs.getincrementaldecoder("utf-8")
        # Not final when truncated, so a character split at the cut is dropped, not mangled.
        text = decoder(errors="replace").decode(read.data, final=not read.truncated)
        body: Any = text
        if is_json_media_type(response.headers.get("content-type")) and not read.truncated:
            try:
                body = json.loads(text)
            except ValueError:
                pass
        return {
            "status": response.status,
            "headers": _kept_headers(response.headers),
            "body": body,
            "truncated": read.truncated,
            "elapsed_ms": round(elapsed_ms, 3),
        }


def _kept_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """The :data:`KEPT_RESPONSE_HEADERS` that were answered, a repeated one's values joined.

    Example:
        >>> answered = CIMultiDictProxy(CIMultiDict([("Content-Type", "text/plain"),
        ...     ("Date", "today"), ("ETag", '"a"'), ("etag", '"b"')]))
        >>> _kept_headers(answered)
        {'content-type': 'text/plain', 'etag': '"a", "b"'}
    """
    kept = {}
    for name in KEPT_RESPONSE_HEADERS:
        values = headers.getall(name, ())
        if values:
            kept[name] = ", ".join(values)
    return kept


def _encode_body(body: object, headers: CIMultiDict[str]) -> bytes:
    """The bytes to send for a template's body, setting a JSON ``Content-Type`` if none."""
    if body is None or body == "":
        return b""
    declared = headers.get("content-type")
    if isinstance(body, str):
        if declared is None or is_json_media_type(declared):
            error = json_error(body)
            if error:
                raise _Unsendable(f"the body is not valid JSON: {error}")
        data = body.encode()
    elif isinstance(body, dict | list):
        if declared is not None and not is_json_media_type(declared):
            raise _Unsendable(
                f"a dict or list body is sent as JSON, but Content-Type is {declared}"
            )
        try:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise _Unsendable(f"the body cannot be written as JSON: {exc}") from None
        data = data.encode()
    else:
        raise _Unsendable(
            f"the body must be JSON text, a dict or a list, not {type(body).__name__}"
        )
    if declared is None:
        headers["Content-Type"] = "application/json"
    return data


def _classify(
    response: aiohttp.ClientResponse, kept: Mapping[str, Any], delivery_id: str, note: str
) -> Outcome:
    """The outcome for an HTTP answer, quoting the receiver's own words when it failed."""
    code = response.status
    said = f"HTTP {code} {response.reason or ''}".rstrip()
    if 200 <= code < 300:
        return Outcome(
            "sent", PROVIDER, said + note, provider_message_id=delivery_id, response=kept
        )
    if 300 <= code < 400:
        location = response.headers.get("location")
        detail = f"{said}: redirect to {_redirect_target(response.url, location)}; "
        detail += "redirects are not followed, use the final URL"
        return Outcome("failed", PROVIDER, detail + note, response=kept)
    body = kept["body"]
    quoted = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    quoted = " ".join(quoted.split())[:DETAIL_QUOTE_CHARS]
    detail = f"{said}: {quoted}{note}" if quoted else said + note
    if code == 410:
        return Outcome("bounced", PROVIDER, detail, address_dead=True, response=kept)
    if code in RETRY_STATUSES or 500 <= code < 600:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return Outcome("retry", PROVIDER, detail, retry_after=retry_after, response=kept)
    return Outcome("failed", PROVIDER, detail, response=kept)


def _redirect_target(url: URL, location: str | None) -> str:
    """Where a redirect points, resolved against the called URL, for the outcome's detail.

    Example:
        >>> called = URL("https://api.shop.example/hooks/v1")
        >>> _redirect_target(called, "/hooks/v2"), _redirect_target(called, None)
        ('https://api.shop.example/hooks/v2', 'no Location')
        >>> _redirect_target(called, "http://[::1/oops")
        "'http://[::1/oops' (not a URL)"
    """
    if location is None:
        return "no Location"
    try:
        return str(url.join(URL(location)))
    except ValueError:
        return f"{location!r} (not a URL)"
