"""Mobile push: Firebase Cloud Messaging (HTTP v1) and the Apple Push Notification service.

An envelope's ``content`` picks one of four layouts. ``text`` and ``banner`` are native
notifications the operating system draws itself; ``carousel`` and ``rating`` travel as data with
a category, and the app (an Android messaging service, an iOS notification content extension)
draws them. Every payload carries ``delivery_id`` and, when set, ``campaign_id`` and
``journey_id``, so a tap can be attributed to the message that caused it.

Content keys: ``layout`` (default ``text``), ``title``, ``body``, ``image`` (required by
``banner``), ``items`` (``carousel``: two or more ``{title, body, image, deep_link}``),
``deep_link``, ``category`` (defaults to ``safar.carousel`` / ``safar.rating`` for the layouts
the app draws), ``collapse_id`` and ``data`` (extra key/values for the app). A ``text`` push
with neither title nor body is a silent push: it wakes the app in the background, shows nothing.

The payload builders are pure and raise ``ValueError`` for content no device could show; the
senders turn that into a ``failed`` outcome without calling the provider.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from channels.base import Envelope, Outcome, parse_retry_after

LAYOUTS = ("text", "banner", "carousel", "rating")
APP_DRAWN_LAYOUTS = ("carousel", "rating")
DEFAULT_CATEGORIES = {"carousel": "safar.carousel", "rating": "safar.rating"}
ITEM_KEYS = ("title", "body", "image", "deep_link")

# Keys the payloads use themselves, plus those FCM refuses in ``data``; app data may not shadow
# them, so attribution and layout can be trusted on the device.
RESERVED_DATA_KEYS = frozenset(
    ("aps", "from", "notification", "message_type", "layout", "title", "body", "image")
    + ("items", "deep_link", "category", "delivery_id", "campaign_id", "journey_id")
)
RESERVED_DATA_PREFIXES = ("google.", "gcm.")

FCM_BASE_URL = "https://fcm.googleapis.com"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
FCM_DEAD_CODES = frozenset(("UNREGISTERED", "SENDER_ID_MISMATCH"))
FCM_RETRY_CODES = frozenset(("QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"))
# Refresh an access token this long before Google says it expires, so no request carries a token
# that expires in flight.
ACCESS_TOKEN_MARGIN = 60.0

APNS_BASE_URL = "https://api.push.apple.com"
APNS_SANDBOX_URL = "https://api.sandbox.push.apple.com"
# APNs refuses provider tokens older than an hour and throttles refreshes more often than every
# 20 minutes, so one token serves 50 minutes.
PROVIDER_TOKEN_LIFETIME = 50 * 60.0
APNS_ID_NAMESPACE = uuid.UUID("357bbf09-0f64-4dd7-82bf-915abf01106a")
APNS_DEAD_REASONS = frozenset(
    ("BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered", "ExpiredToken")
)
APNS_RETRY_REASONS = frozenset(
    ("TooManyRequests", "InternalServerError", "ServiceUnavailable", "Shutdown")
)


@dataclass(frozen=True)
class _Push:
    """Validated push content, shared by both platforms' payload builders."""

    layout: str
    title: str
    body: str
    image: str
    items: tuple[dict[str, str], ...]
    deep_link: str
    category: str
    collapse_id: str
    data: Mapping[str, Any]
    attribution: dict[str, str]

    @property
    def silent(self) -> bool:
        return not (self.title or self.body)


def _text(content: Mapping[str, Any], key: str) -> str:
    value = content.get(key) or ""
    if not isinstance(value, str):
        raise ValueError(f"push {key} must be a string, not {type(value).__name__}")
    return value


def _items(items: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(items, list | tuple) or len(items) < 2:
        raise ValueError("a carousel push needs a list of at least 2 items")
    cards = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, Mapping) or not item.get("title"):
            raise ValueError(f"carousel item {number} needs a title")
        cards.append({key: str(item[key]) for key in ITEM_KEYS if item.get(key)})
    return tuple(cards)


def _data(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError("push data must be a mapping of key to value")
    for key in data:
        if key in RESERVED_DATA_KEYS or str(key).startswith(RESERVED_DATA_PREFIXES):
            raise ValueError(f"push data key {key!r} is reserved")
    try:
        _compact_json(data)
    except (TypeError, ValueError) as error:
        raise ValueError(f"push data is not JSON: {error}") from None
    return data


def _parse(envelope: Envelope) -> _Push:
    content = envelope.content
    layout = content.get("layout") or "text"
    if layout not in LAYOUTS:
        raise ValueError(f"unknown push layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    title, body, image = _text(content, "title"), _text(content, "body"), _text(content, "image")
    if layout != "text" and not (title or body):
        raise ValueError(f"a {layout} push needs a title or a body")
    if layout == "banner" and not image:
        raise ValueError("a banner push needs an image URL")
    attribution = {"delivery_id": envelope.delivery_id}
    if envelope.campaign_id:
        attribution["campaign_id"] = envelope.campaign_id
    if envelope.journey_id:
        attribution["journey_id"] = envelope.journey_id
    return _Push(
        layout=layout,
        title=title,
        body=body,
        image=image,
        items=_items(content.get("items")) if layout == "carousel" else (),
        deep_link=_text(content, "deep_link"),
        category=_text(content, "category") or DEFAULT_CATEGORIES.get(layout, ""),
        collapse_id=_text(content, "collapse_id"),
        data=_data(content.get("data") or {}),
        attribution=attribution,
    )


def _compact_json(value: Any) -> str:
    # Raw UTF-8 rather than \\u escapes: Persian text takes a third of the bytes, and both
    # providers cap a payload at 4 KB.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _non_empty(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value}


def _custom_keys(push: _Push) -> dict[str, Any]:
    """The keys the app reads next to the notification, on both platforms."""
    return {
        **push.data,
        "layout": push.layout,
        **_non_empty(deep_link=push.deep_link, image=push.image, items=list(push.items)),
        **push.attribution,
    }


def _aps(push: _Push) -> dict[str, Any]:
    if push.silent:
        return {"content-available": 1}
    aps: dict[str, Any] = {"alert": _non_empty(title=push.title, body=push.body)}
    if push.category:
        aps["category"] = push.category
    if push.image or push.items:
        # Lets the app's notification service extension fetch the media before display.
        aps["mutable-content"] = 1
    return aps


def apns_id(delivery_id: str) -> str:
    """The ``apns-id`` of a delivery: the same UUID every time, so APNs echoes a known id.

    Example:
        >>> apns_id("d-1") == apns_id("d-1") != apns_id("d-2")
        True
        >>> apns_id("d-1")
        '2d9ef5a3-1025-5f98-9383-8f8213b59455'
    """
    return str(uuid.uuid5(APNS_ID_NAMESPACE, delivery_id))


def apns_expiration(ttl_seconds: int, now: float) -> str:
    """The ``apns-expiration`` header for a TTL: the epoch second the message stops mattering.

    A TTL of 0 becomes APNs' own ``0``: try the device once, never store the message.

    Example:
        >>> apns_expiration(3600, now=1_700_000_000.7)
        '1700003600'
        >>> apns_expiration(0, now=1_700_000_000)
        '0'
    """
    return "0" if ttl_seconds == 0 else str(int(now) + ttl_seconds)


def _apns_options(envelope: Envelope, push: _Push, now: float) -> dict[str, str]:
    """The APNs request headers that describe the message (not the connection or the app)."""
    headers = {
        "apns-push-type": "background" if push.silent else "alert",
        # APNs refuses priority 10 for a push that shows nothing.
        "apns-priority": "5" if push.silent else "10",
    }
    # Without a TTL the header is left out, so APNs stores the message under its own policy,
    # like FCM's default of four weeks; "0" would drop it for any device that is offline.
    if envelope.ttl_seconds is not None:
        headers["apns-expiration"] = apns_expiration(envelope.ttl_seconds, now)
    if push.collapse_id:
        headers["apns-collapse-id"] = push.collapse_id
    return headers


def build_fcm_message(envelope: Envelope, now: float | None = None) -> dict[str, Any]:
    """The FCM HTTP v1 ``message`` for an envelope.

    ``text`` and ``banner`` become a ``notification`` Android draws itself; ``carousel`` and
    ``rating`` are data messages the app draws, with an APNs alert and category for iOS devices
    reached through FCM. FCM takes only string values in ``data``, so anything else (the
    carousel's items, numbers in the app's data) is JSON-encoded.

    Args:
        envelope: the push envelope; ``to`` is the FCM registration token.
        now: the current epoch time, for ``apns-expiration``; defaults to the clock.

    Returns:
        The value of ``message`` in the ``messages:send`` request body.

    Raises:
        ValueError: the content cannot be shown (unknown layout, a banner without an image, a
            carousel with fewer than two items, a reserved data key).

    Example:
        >>> envelope = Envelope("d-1", "push", "fcm-token", {"title": "Hi", "body": "Welcome"},
        ...                     campaign_id="c-9", ttl_seconds=600)
        >>> message = build_fcm_message(envelope, now=1_700_000_000)
        >>> message["notification"], message["android"]
        ({'title': 'Hi', 'body': 'Welcome'}, {'priority': 'high', 'ttl': '600s'})
        >>> message["data"]
        {'layout': 'text', 'delivery_id': 'd-1', 'campaign_id': 'c-9'}
        >>> message["apns"]["headers"]["apns-expiration"]
        '1700000600'
        >>> build_fcm_message(Envelope("d-2", "push", "t", {"layout": "banner", "title": "Sale"}))
        Traceback (most recent call last):
        ...
        ValueError: a banner push needs an image URL
    """
    now = time.time() if now is None else now
    push = _parse(envelope)
    data = _custom_keys(push)
    if push.category:
        data["category"] = push.category
    if push.layout in APP_DRAWN_LAYOUTS:
        data.update(_non_empty(title=push.title, body=push.body))
    message: dict[str, Any] = {
        "token": envelope.to,
        "data": {
            key: value if isinstance(value, str) else _compact_json(value)
            for key, value in data.items()
        },
    }
    android: dict[str, Any] = {}
    if not push.silent:
        android["priority"] = "high"
        if push.layout not in APP_DRAWN_LAYOUTS:
            message["notification"] = _non_empty(title=push.title, body=push.body, image=push.image)
    if envelope.ttl_seconds is not None:
        android["ttl"] = f"{envelope.ttl_seconds}s"
    if push.collapse_id:
        android["collapse_key"] = push.collapse_id
    if android:
        message["android"] = android
    apns: dict[str, Any] = {
        "headers": _apns_options(envelope, push, now),
        "payload": {"aps": _aps(push)},
    }
    if push.image:
        apns["fcm_options"] = {"image": push.image}
    message["apns"] = apns
    return message


def build_apns_payload(envelope: Envelope) -> dict[str, Any]:
    """The APNs JSON payload for an envelope: ``aps`` plus the keys the app reads.

    A ``banner`` or ``carousel`` sets ``mutable-content`` so the app's notification service
    extension fetches the images (``image``, ``items``); ``carousel`` and ``rating`` set
    ``aps.category`` so its content extension draws them.

    Args:
        envelope: the push envelope; ``to`` is the APNs device token.

    Returns:
        The request body, before JSON encoding.

    Raises:
        ValueError: the content cannot be shown (see :func:`build_fcm_message`).

    Example:
        >>> build_apns_payload(Envelope("d-1", "push", "abc", {
        ...     "layout": "rating", "title": "How was your trip?", "deep_link": "safar://rate"}))
        ... # doctest: +NORMALIZE_WHITESPACE
        {'aps': {'alert': {'title': 'How was your trip?'}, 'category': 'safar.rating'},
         'layout': 'rating', 'deep_link': 'safar://rate', 'delivery_id': 'd-1'}
    """
    push = _parse(envelope)
    return {"aps": _aps(push), **_custom_keys(push)}


def apns_headers(envelope: Envelope, topic: str, now: float | None = None) -> dict[str, str]:
    """The APNs request headers for an envelope, all but ``authorization``.

    Args:
        envelope: the push envelope.
        topic: the app's bundle id (``apns-topic``).
        now: the current epoch time, for ``apns-expiration``; defaults to the clock.

    Returns:
        ``apns-topic``, ``apns-push-type``, ``apns-priority``, ``apns-id`` and, when the
        envelope asks for them, ``apns-expiration`` and ``apns-collapse-id``.

    Raises:
        ValueError: the content cannot be shown (see :func:`build_fcm_message`).

    Example:
        >>> apns_headers(Envelope("d-1", "push", "abc", {}), "app.safar", now=0)
        ... # doctest: +NORMALIZE_WHITESPACE
        {'apns-topic': 'app.safar', 'apns-id': '2d9ef5a3-1025-5f98-9383-8f8213b59455',
         'apns-push-type': 'background', 'apns-priority': '5'}
    """
    now = time.time() if now is None else now
    push = _parse(envelope)
    return {
        "apns-topic": topic,
        "apns-id": apns_id(envelope.delivery_id),
        **_apns_options(envelope, push, now),
    }


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _jwt_signing_input(header: Mapping[str, Any], claims: Mapping[str, Any]) -> bytes:
    encoded = (_b64url(_compact_json(part).encode()) for part in (header, claims))
    return ".".join(encoded).encode()


def _is_transient(status_code: int) -> bool:
    return status_code in (408, 429) or status_code >= 500


def _record(response: httpx.Response) -> dict[str, Any]:
    """What the provider answered, for :attr:`Outcome.response`."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return {"status_code": response.status_code, "headers": dict(response.headers), "body": body}


def _client(timeout: float, verify: ssl.SSLContext | str | bool) -> httpx.AsyncClient:
    """One HTTP/2-capable client per sender, so concurrent sends share connections."""
    if isinstance(verify, str):
        # httpx deprecates CA bundle paths; it takes a context instead.
        verify = ssl.create_default_context(cafile=verify)
    return httpx.AsyncClient(http2=True, timeout=timeout, verify=verify)


def _network_outcome(provider: str, error: httpx.TransportError) -> Outcome:
    return Outcome("retry", provider, f"could not reach {provider}: {type(error).__name__} {error}")


class _Refused(Exception):
    """A step before the send (the OAuth2 token exchange) was refused; carries the outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


@dataclass(frozen=True)
class FcmSettings:
    """How to reach FCM.

    Attributes:
        service_account: the Firebase service-account JSON as a dict: ``project_id``,
            ``client_email``, ``private_key`` (PEM), ``token_uri`` and optionally
            ``private_key_id``.
        base_url: the FCM API root.
        timeout: seconds for each HTTP request.
        verify: TLS verification: ``True``, an ``ssl.SSLContext`` or a CA bundle path.
    """

    service_account: Mapping[str, str]
    base_url: str = FCM_BASE_URL
    timeout: float = 10.0
    verify: ssl.SSLContext | str | bool = True


class _GoogleAccessToken:
    """A service account's OAuth2 access token, fetched once and shared until it nearly expires.

    The lock makes concurrent sends wait for one token exchange instead of each starting its own.
    """

    def __init__(
        self, account: Mapping[str, str], client: httpx.AsyncClient, clock: Callable[[], float]
    ) -> None:
        key = serialization.load_pem_private_key(account["private_key"].encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the service account's private_key is not an RSA key")
        self._key = key
        self._account = account
        self._token_uri = account.get("token_uri") or GOOGLE_TOKEN_URI
        self._client = client
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token = ""
        self._expires_at = 0.0

    async def get(self, stale: str = "") -> str:
        """The current token; ``stale`` is one the API refused, which must not be handed out."""
        async with self._lock:
            if self._token and self._token != stale and self._clock() < self._expires_at:
                return self._token
            self._token = ""
            now = self._clock()
            response = await self._client.post(
                self._token_uri,
                data={"grant_type": JWT_BEARER_GRANT, "assertion": self._assertion(now)},
            )
            record = _record(response)
            body = record["body"] if isinstance(record["body"], dict) else {}
            if response.status_code != 200 or not body.get("access_token"):
                reason = ": ".join(
                    str(body[key]) for key in ("error", "error_description") if body.get(key)
                )
                status = "retry" if _is_transient(response.status_code) else "failed"
                detail = (
                    f"Google OAuth2 token exchange refused ({response.status_code}): "
                    f"{reason or response.text[:200]}"
                )
                raise _Refused(Outcome(status, "fcm", detail, response=record))
            self._token = body["access_token"]
            lifetime = float(body.get("expires_in", 3600))
            self._expires_at = now + lifetime - ACCESS_TOKEN_MARGIN
            return self._token

    def _assertion(self, now: float) -> str:
        """The RS256-signed JWT that the token endpoint exchanges for an access token."""
        header = {"alg": "RS256", "typ": "JWT"}
        if self._account.get("private_key_id"):
            header["kid"] = self._account["private_key_id"]
        claims = {
            "iss": self._account["client_email"],
            "scope": FCM_SCOPE,
            "aud": self._token_uri,
            "iat": int(now),
            "exp": int(now) + 3600,
        }
        signing_input = _jwt_signing_input(header, claims)
        signature = self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{_b64url(signature)}"


def _fcm_error_code(error: Mapping[str, Any]) -> str:
    for detail in error.get("details") or ():
        if isinstance(detail, Mapping) and detail.get("@type") == FCM_ERROR_TYPE:
            return str(detail.get("errorCode") or "")
    return ""


def _fcm_token_rejected(error: Mapping[str, Any]) -> bool:
    """Whether an INVALID_ARGUMENT is about the registration token rather than the message.

    FCM names the bad field in a ``google.rpc.BadRequest`` detail when the message is at fault;
    for a malformed token it sends only its FCM error and says "registration token".
    """
    fields = [
        violation.get("field")
        for detail in error.get("details") or ()
        if isinstance(detail, Mapping) and detail.get("@type") == BAD_REQUEST_TYPE
        for violation in detail.get("fieldViolations") or ()
        if isinstance(violation, Mapping)
    ]
    if fields:
        return "message.token" in fields
    return "registration token" in str(error.get("message", "")).lower()


def _fcm_error(response: httpx.Response) -> tuple[dict[str, Any], Mapping[str, Any], str]:
    """The response record, its ``google.rpc.Status`` and the most specific error code."""
    record = _record(response)
    body = record["body"]
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, Mapping) else {}
    code = _fcm_error_code(error) or str(error.get("status") or response.status_code)
    return record, error, code


def _fcm_outcome(response: httpx.Response) -> Outcome:
    if response.status_code == 200:
        record = _record(response)
        name = record["body"].get("name") if isinstance(record["body"], dict) else None
        return Outcome("sent", "fcm", "accepted by FCM", provider_message_id=name, response=record)
    record, error, code = _fcm_error(response)
    message = error.get("message") or response.text[:200] or response.reason_phrase
    detail = f"FCM {response.status_code} {code}: {message}"
    if code in FCM_DEAD_CODES or (code == "INVALID_ARGUMENT" and _fcm_token_rejected(error)):
        return Outcome("bounced", "fcm", detail, address_dead=True, response=record)
    if code in FCM_RETRY_CODES or _is_transient(response.status_code):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return Outcome("retry", "fcm", detail, retry_after=retry_after, response=record)
    return Outcome("failed", "fcm", detail, response=record)


class FcmSender:
    """Sends push through Firebase Cloud Messaging's HTTP v1 API.

    Authenticates as a service account: a signed JWT is exchanged for an OAuth2 access token,
    which is cached and shared by concurrent sends until shortly before it expires; a 401 from
    FCM drops it and the send is tried once more with a fresh one.

    FCM v1 takes no idempotency key, so a message re-sent after a crash may arrive twice;
    ``delivery_id`` travels in ``data`` for the app to drop duplicates.

    Outcomes: UNREGISTERED, SENDER_ID_MISMATCH (the token belongs to another Firebase project,
    so it can never be reached through this one) and an INVALID_ARGUMENT about the token are
    ``bounced`` with ``address_dead``; QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL and any 408, 429 or
    5xx are ``retry``; THIRD_PARTY_AUTH_ERROR (FCM's APNs or web push credentials are wrong)
    and other refusals are ``failed``.
    """

    channel = "push"
    provider = "fcm"

    def __init__(self, settings: FcmSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._client = _client(settings.timeout, settings.verify)
        self._token = _GoogleAccessToken(settings.service_account, self._client, clock)
        project = settings.service_account["project_id"]
        self._url = f"{settings.base_url.rstrip('/')}/v1/projects/{project}/messages:send"

    async def send(self, envelope: Envelope) -> Outcome:
        """Send one envelope; never raises for provider or network failures."""
        try:
            message = build_fcm_message(envelope, now=self._clock())
        except ValueError as error:
            return Outcome("failed", self.provider, f"invalid push content: {error}")
        try:
            token = await self._token.get()
            response = await self._post(message, token)
            if response.status_code == 401 and _fcm_error(response)[2] != "THIRD_PARTY_AUTH_ERROR":
                response = await self._post(message, await self._token.get(stale=token))
        except _Refused as refused:
            return refused.outcome
        except httpx.TransportError as error:
            return _network_outcome(self.provider, error)
        return _fcm_outcome(response)

    async def _post(self, message: Mapping[str, Any], token: str) -> httpx.Response:
        return await self._client.post(
            self._url,
            content=_compact_json({"message": message}).encode(),
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()


@dataclass(frozen=True)
class ApnsSettings:
    """How to reach APNs with token-based (.p8 key) authentication.

    Attributes:
        team_id: the Apple developer team id (the provider token's issuer).
        key_id: the id of the .p8 signing key.
        private_key: the .p8 key, PEM (an ES256, P-256 key).
        bundle_id: the app's bundle id, sent as ``apns-topic``.
        base_url: :data:`APNS_BASE_URL`, or :data:`APNS_SANDBOX_URL` for development builds.
        timeout: seconds for each HTTP request.
        verify: TLS verification: ``True``, an ``ssl.SSLContext`` or a CA bundle path.
    """

    team_id: str
    key_id: str
    private_key: str
    bundle_id: str
    base_url: str = APNS_BASE_URL
    timeout: float = 10.0
    verify: ssl.SSLContext | str | bool = True


class _ProviderToken:
    """The APNs provider token: an ES256 JWT reused until it is 50 minutes old.

    Signing never awaits, so concurrent sends on one event loop cannot race to refresh it.
    """

    def __init__(self, settings: ApnsSettings, clock: Callable[[], float]) -> None:
        key = serialization.load_pem_private_key(settings.private_key.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the APNs private_key is not an elliptic-curve (.p8) key")
        self._key = key
        self._team_id = settings.team_id
        self._key_id = settings.key_id
        self._clock = clock
        self._token = ""
        self._issued_at = 0.0

    def get(self, stale: str = "") -> str:
        """The current token; ``stale`` is one APNs called expired, which must be replaced."""
        now = self._clock()
        if (
            not self._token
            or self._token == stale
            or now - self._issued_at >= (PROVIDER_TOKEN_LIFETIME)
        ):
            signing_input = _jwt_signing_input(
                {"alg": "ES256", "kid": self._key_id}, {"iss": self._team_id, "iat": int(now)}
            )
            r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            # A JWT carries the raw 64-byte r||s, not the DER that cryptography produces.
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
            self._token = f"{signing_input.decode()}.{_b64url(signature)}"
            self._issued_at = now
        return self._token


def _apns_reason(response: httpx.Response) -> tuple[dict[str, Any], Mapping[str, Any], str]:
    """The response record, its JSON body and APNs' ``reason``."""
    record = _record(response)
    body = record["body"] if isinstance(record["body"], dict) else {}
    return record, body, str(body.get("reason") or response.reason_phrase)


def _apns_outcome(response: httpx.Response, sent_id: str) -> Outcome:
    if response.status_code == 200:
        return Outcome(
            "sent",
            "apns",
            "accepted by APNs",
            provider_message_id=response.headers.get("apns-id", sent_id),
            response=_record(response),
        )
    record, body, reason = _apns_reason(response)
    detail = f"APNs {response.status_code} {reason}"
    if isinstance(body.get("timestamp"), int | float):
        since = datetime.fromtimestamp(body["timestamp"] / 1000, UTC).isoformat(timespec="seconds")
        detail += f"; the token has not been valid since {since}"
    if reason in APNS_DEAD_REASONS or response.status_code == 410:
        return Outcome("bounced", "apns", detail, address_dead=True, response=record)
    if reason in APNS_RETRY_REASONS or _is_transient(response.status_code):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return Outcome("retry", "apns", detail, retry_after=retry_after, response=record)
    return Outcome("failed", "apns", detail, response=record)


class ApnsSender:
    """Sends push straight to the Apple Push Notification service over HTTP/2.

    APNs speaks only HTTP/2; concurrent sends share one connection as parallel streams. The
    ``apns-id`` is derived from ``delivery_id`` (:func:`apns_id`), so APNs, its logs and its
    answers name the delivery; APNs does not deduplicate on it, so a re-sent message may still
    arrive twice.

    Outcomes: BadDeviceToken, DeviceTokenNotForTopic and Unregistered (410) are ``bounced`` with
    ``address_dead``; note that a sandbox token sent to the production endpoint (or the reverse)
    also reads BadDeviceToken, so a wrong ``base_url`` marks addresses dead. ExpiredProviderToken
    is answered by signing a new token and trying once more. TooManyRequests,
    InternalServerError, ServiceUnavailable, Shutdown and any 408, 429 or 5xx are ``retry``;
    PayloadTooLarge, BadTopic and other refusals are ``failed``.
    """

    channel = "push"
    provider = "apns"

    def __init__(self, settings: ApnsSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._token = _ProviderToken(settings, clock)
        self._client = _client(settings.timeout, settings.verify)
        self._base_url = settings.base_url.rstrip("/")

    async def send(self, envelope: Envelope) -> Outcome:
        """Send one envelope; never raises for provider or network failures."""
        try:
            payload = build_apns_payload(envelope)
            headers = apns_headers(envelope, self.settings.bundle_id, now=self._clock())
        except ValueError as error:
            return Outcome("failed", self.provider, f"invalid push content: {error}")
        # Quoted so a malformed token cannot reach another path; APNs calls it BadDeviceToken.
        url = f"{self._base_url}/3/device/{quote(envelope.to, safe='')}"
        body = _compact_json(payload).encode()
        try:
            token = self._token.get()
            response = await self._post(url, body, headers, token)
            if response.status_code == 403 and _apns_reason(response)[2] == "ExpiredProviderToken":
                response = await self._post(url, body, headers, self._token.get(stale=token))
        except httpx.TransportError as error:
            return _network_outcome(self.provider, error)
        return _apns_outcome(response, headers["apns-id"])

    async def _post(
        self, url: str, body: bytes, headers: Mapping[str, str], token: str
    ) -> httpx.Response:
        return await self._client.post(
            url,
            content=body,
            headers={
                **headers,
                "authorization": f"bearer {token}",
                "content-type": "application/json",
            },
        )

    async def aclose(self) -> None:
        """Close the HTTP/2 connection."""
        await self._client.aclose()
