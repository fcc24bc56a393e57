"""Web push: a notification to one browser subscription, through the push service it names.

A browser's ``PushSubscription`` names its push service (the ``endpoint``: FCM for Chrome,
Mozilla's autopush for Firefox, Apple's for Safari) and the keys to encrypt for. Each message is
encrypted for that browser alone (RFC 8291, ``aes128gcm``) and carries a VAPID token (RFC 8292)
signed with the key the browser bound the subscription to (its ``applicationServerKey``).

pywebpush encrypts (``WebPusher.encode``) and py_vapid signs the token; the request goes out on
our own ``httpx.AsyncClient``. pywebpush 2.x has an async path (``webpush_async``,
``WebPusher.send_async``), but it runs on aiohttp: a second HTTP stack beside the httpx every
other channel uses, a new ``ClientSession`` (a new TCP and TLS handshake) per message unless the
caller manages one, a VAPID token signed for every message, and answers above 202 raised as
exceptions to unpick. With httpx one pool of connections serves every push service (HTTP/2
where the service offers it, so concurrent messages share one connection), one token per push
service is reused for hours, and the answer is classified from its status, headers and body.
Encryption (an ECDH key pair per message, about 0.35 ms) runs on the event loop.

Web push takes no idempotency key. ``Topic`` replaces a message still queued under the same
topic, but push services limit how many topics a device may hold, so it stays the
notification's ``tag``; ``delivery_id`` travels in the payload instead, for the service worker
to report clicks with and to skip a delivery it has shown already.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException
from pywebpush import WebPusher

from channels.base import Envelope, Outcome, parse_retry_after

PROVIDER = "vapid"

MAX_ENCRYPTED_BYTES = 4096
"""The largest encrypted body every push service must take (RFC 8030; FCM and autopush stop
there). After the ``aes128gcm`` header, padding delimiter and tag it leaves 3,993 bytes of JSON."""

Urgency = Literal["very-low", "low", "normal", "high"]
URGENCIES: tuple[Urgency, ...] = ("very-low", "low", "normal", "high")

_TOKEN_LIFETIME = 12 * 3600
"""Seconds a VAPID token is valid; RFC 8292 allows at most 24 hours."""

_TOKEN_MARGIN = 3600
"""A token is signed again this long before it expires, so none expires in flight."""

_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class WebPushSettings:
    """How to reach browsers through their push services.

    There is no base URL to configure: every subscription names its own push service.

    Attributes:
        vapid_private_key: the VAPID P-256 private key, as PEM or as the base64url raw 32 bytes
            web-push tooling prints (see :func:`new_vapid_keys`).
        subject: whom push services contact about our traffic: a ``mailto:`` or ``https:`` URL.
        ttl_seconds: how long a push service keeps a message for an offline browser when the
            envelope does not say.
        urgency: the ``Urgency`` header; None sends none, which push services take as normal.
        timeout: seconds to wait for a push service.
    """

    vapid_private_key: str
    subject: str
    ttl_seconds: int = 86400
    urgency: Urgency | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.subject.startswith(("mailto:", "https://")):
            raise ValueError(
                f"the VAPID subject must be a mailto: or https: URL, not {self.subject!r}"
            )
        if self.urgency is not None and self.urgency not in URGENCIES:
            raise ValueError(f"urgency must be one of {', '.join(URGENCIES)}, not {self.urgency!r}")
        if self.ttl_seconds < 0:
            raise ValueError(f"ttl_seconds must not be negative, not {self.ttl_seconds}")


@dataclass(frozen=True)
class Subscription:
    """A browser's push subscription, checked: an http(s) endpoint, a P-256 key, an auth secret.

    Attributes:
        endpoint: the push resource URL to POST messages to.
        p256dh: the browser's ECDH public key, 65 bytes (an uncompressed P-256 point).
        auth: the browser's 16-byte authentication secret.
    """

    endpoint: str
    p256dh: bytes
    auth: bytes

    @property
    def origin(self) -> str:
        """The endpoint's origin: the push service, and the ``aud`` of its VAPID token."""
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc}".lower()


def _b64decode(text: str) -> bytes:
    """Base64url with or without padding (browsers omit it); the standard alphabet too."""
    text = text.rstrip("=").replace("+", "-").replace("/", "_")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_vapid_key(text: str) -> ec.EllipticCurvePrivateKey:
    """Read a VAPID private key given as PEM (PKCS#8 or SEC 1) or as base64url raw 32 bytes.

    Args:
        text: the key as stored in the settings.

    Returns:
        The P-256 private key.

    Raises:
        ValueError: the text is not a P-256 private key in either form.

    Example:
        >>> load_vapid_key("A" * 42 + "E").private_numbers().private_value
        1
    """
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
    else:
        raw = _b64decode(text)
        if len(raw) != 32:
            raise ValueError(f"a raw VAPID private key is 32 bytes, not {len(raw)}")
        key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("a VAPID key is an ECDSA P-256 key")
    return key


def vapid_public_key(private_key: str) -> str:
    """The public key browsers need as ``applicationServerKey``, from the settings' private key.

    Args:
        private_key: the VAPID private key, as :func:`load_vapid_key` reads it.

    Returns:
        The uncompressed P-256 point (65 bytes), base64url without padding.

    Example:
        >>> vapid_public_key("A" * 42 + "E")[:12]  # the private key 1: the public key is P-256's G
        'BGsX0fLhLEJH'
    """
    point = (
        load_vapid_key(private_key)
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return _b64encode(point)


def new_vapid_keys() -> tuple[str, str]:
    """A fresh VAPID key pair for the settings page, in the form web-push tooling prints.

    Returns:
        The private key (raw 32 bytes, base64url) for :class:`WebPushSettings`, and the public
        key (65 bytes, base64url) the web SDK passes to ``pushManager.subscribe`` as
        ``applicationServerKey``.

    Example:
        >>> private, public = new_vapid_keys()
        >>> len(_b64decode(private)), len(_b64decode(public)), public == vapid_public_key(private)
        (32, 65, True)
    """
    key = ec.generate_private_key(ec.SECP256R1())
    private = _b64encode(key.private_numbers().private_value.to_bytes(32, "big"))
    return private, vapid_public_key(private)


def parse_subscription(text: str) -> Subscription:
    """Check a ``PushSubscription`` JSON as the browser gives it.

    Args:
        text: ``{"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}``; other members (such
            as ``expirationTime``) are ignored.

    Returns:
        The subscription with its keys decoded.

    Raises:
        ValueError: what is wrong with it; such a subscription can never receive a message.

    Example:
        >>> parse_subscription('{"endpoint": "ftp://push.example/1", "keys": {}}')
        Traceback (most recent call last):
        ...
        ValueError: the endpoint is not an http(s) URL: 'ftp://push.example/1'
    """
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    endpoint = data.get("endpoint")
    if not isinstance(endpoint, str):
        raise ValueError("no endpoint")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname or "@" in parts.netloc:
        raise ValueError(f"the endpoint is not an http(s) URL: {endpoint!r}")
    keys = data.get("keys")
    if not isinstance(keys, dict):
        raise ValueError("no keys")
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    if not isinstance(p256dh, str) or not isinstance(auth, str):
        raise ValueError("keys.p256dh or keys.auth is missing")
    try:
        point, secret = _b64decode(p256dh), _b64decode(auth)
    except ValueError:
        raise ValueError("keys.p256dh or keys.auth is not base64url") from None
    if len(point) != 65:
        raise ValueError(f"keys.p256dh is {len(point)} bytes, not an uncompressed point (65)")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise ValueError("keys.p256dh is not a point on P-256") from None
    if len(secret) != 16:
        raise ValueError(f"keys.auth is {len(secret)} bytes, not 16")
    return Subscription(endpoint, point, secret)


def build_payload(envelope: Envelope) -> bytes:
    """The JSON the service worker receives: what to show, and the ids to report clicks with.

    Optional fields that are absent are left out, and text stays UTF-8 rather than ``\\u``
    escapes (a Persian letter is 2 bytes, not 6), to keep within the 4 KiB a push service takes.

    Args:
        envelope: content ``title``, ``body`` and optionally ``icon``, ``image``, ``url`` (the
            click target), ``tag`` and ``actions``.

    Returns:
        UTF-8 JSON with ``title``, ``body``, those of ``icon``, ``image``, ``url``, ``tag``,
        ``actions`` given, ``delivery_id``, and ``campaign_id``/``journey_id`` when set.

    Example:
        >>> content = {"title": "سلام", "body": "Hi", "url": "https://a.example/x"}
        >>> build_payload(Envelope("d1", "web_push", "{}", content, campaign_id="c1")).decode()
        '{"title":"سلام","body":"Hi","url":"https://a.example/x","delivery_id":"d1","campaign_id":"c1"}'
    """
    content = envelope.content
    payload = {
        "title": content.get("title", ""),
        "body": content.get("body", ""),
        **{key: content.get(key) for key in ("icon", "image", "url", "tag", "actions")},
        "delivery_id": envelope.delivery_id,
        "campaign_id": envelope.campaign_id,
        "journey_id": envelope.journey_id,
    }
    present = {key: value for key, value in payload.items() if value is not None}
    return json.dumps(present, ensure_ascii=False, separators=(",", ":")).encode()


def topic_for(tag: str) -> str:
    """The ``Topic`` header for a notification tag.

    RFC 8030 allows at most 32 characters of the base64url alphabet; any other tag becomes a
    digest of itself, so equal tags still replace each other at the push service.

    Example:
        >>> topic_for("order-42")
        'order-42'
        >>> topic_for("سفارش ۴۲")
        '9XNAs4nnjWbCfUf5HjpKZM4KMPEeVCyB'
    """
    if _TOPIC.fullmatch(tag):
        return tag
    return _b64encode(hashlib.sha256(tag.encode()).digest())[:32]


def _outcome(response: httpx.Response) -> Outcome:
    """What a push service's answer means for the message (RFC 8030 and the services' docs)."""
    code = response.status_code
    said = response.text.strip()[:500] or response.reason_phrase
    record = {"status_code": code, "headers": dict(response.headers), "body": response.text}
    if 200 <= code < 300:
        return Outcome(
            "sent",
            PROVIDER,
            f"the push service accepted it ({code})",
            provider_message_id=response.headers.get("Location"),
            response=record,
        )
    if code in (404, 410):
        detail = f"the subscription has expired or was unsubscribed ({code}: {said})"
        return Outcome("bounced", PROVIDER, detail, address_dead=True, response=record)
    if code in (408, 429) or code >= 500:
        return Outcome(
            "retry",
            PROVIDER,
            f"the push service is busy or failing ({code}: {said})",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            response=record,
        )
    if code == 413:
        detail = f"the push service refused the payload as too large ({code}: {said})"
    elif code in (401, 403):
        detail = (
            f"the push service refused our VAPID token ({code}: {said}); the subscription may "
            "belong to another VAPID key"
        )
    else:
        detail = f"the push service refused the request ({code}: {said})"
    return Outcome("failed", PROVIDER, detail, response=record)


class WebPushSender:
    """Sends web push notifications, encrypted per browser and signed with our VAPID key.

    Args:
        settings: the VAPID key and subject, and the message defaults.

    Raises:
        ValueError: the settings' private key is not a P-256 key.
    """

    channel = "web_push"
    provider = PROVIDER

    def __init__(self, settings: WebPushSettings) -> None:
        self.settings = settings
        # "no-strict": py_vapid's own subject check refuses https subjects with a path;
        # WebPushSettings checks the subject instead.
        self._vapid = Vapid02(load_vapid_key(settings.vapid_private_key), {"no-strict": True})
        self._tokens: dict[str, tuple[int, str]] = {}
        self._client = httpx.AsyncClient(timeout=settings.timeout, http2=True)

    def _authorization(self, audience: str) -> str:
        """The ``Authorization`` header for one push service, one token reused until near expiry.

        Raises:
            VapidException: py_vapid cannot sign for this audience (an IPv6 literal host).
        """
        now = time.time()
        expires, header = self._tokens.get(audience, (0, ""))
        if expires - now > _TOKEN_MARGIN:
            return header
        expires = int(now) + _TOKEN_LIFETIME
        claims = {"aud": audience, "exp": expires, "sub": self.settings.subject}
        header = self._vapid.sign(claims)["Authorization"]
        self._tokens[audience] = (expires, header)
        return header

    async def send(self, envelope: Envelope) -> Outcome:
        """Encrypt the envelope's notification for its subscription and post it.

        Args:
            envelope: ``to`` is the browser's ``PushSubscription`` JSON.

        Returns:
            ``sent`` with the push service's ``Location`` as the message id; ``bounced`` for a
            malformed or expired subscription; ``failed`` for an oversize payload or a refused
            request; ``retry`` for 408, 429, 5xx and network errors.
        """
        try:
            subscription = parse_subscription(envelope.to)
        except ValueError as error:
            detail = f"malformed push subscription: {error}"
            return Outcome("bounced", PROVIDER, detail, address_dead=True)

        payload = build_payload(envelope)
        keys = {"p256dh": _b64encode(subscription.p256dh), "auth": _b64encode(subscription.auth)}
        body = WebPusher({"endpoint": subscription.endpoint, "keys": keys}).encode(payload)["body"]
        if len(body) > MAX_ENCRYPTED_BYTES:
            detail = (
                f"the notification is {len(body)} bytes encrypted ({len(payload)} bytes of JSON); "
                f"push services take at most {MAX_ENCRYPTED_BYTES}: shorten the title or body"
            )
            return Outcome("failed", PROVIDER, detail)

        try:
            authorization = self._authorization(subscription.origin)
        except VapidException as error:
            detail = f"cannot sign a VAPID token for {subscription.origin}: {error}"
            return Outcome("failed", PROVIDER, detail)
        ttl = self.settings.ttl_seconds if envelope.ttl_seconds is None else envelope.ttl_seconds
        headers = {
            "Authorization": authorization,
            "TTL": str(max(0, ttl)),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        if self.settings.urgency:
            headers["Urgency"] = self.settings.urgency
        if tag := envelope.content.get("tag"):
            headers["Topic"] = topic_for(str(tag))

        try:
            response = await self._client.post(subscription.endpoint, content=body, headers=headers)
        except httpx.TransportError as error:
            detail = f"network error: {type(error).__name__}: {error}".rstrip(": ")
            return Outcome("retry", PROVIDER, detail)
        return _outcome(response)

    async def aclose(self) -> None:
        """Close the connections to the push services."""
        await self._client.aclose()
