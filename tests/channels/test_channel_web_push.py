"""Web push against a local push service that checks VAPID and decrypts like a real one.

The push service verifies each VAPID token with ``cryptography`` alone (ES256 with the token's
``k`` key, ``aud`` its own origin, ``exp`` within 24 hours, ``sub`` present) and that ``k`` is
the key the subscription was made with, requires ``TTL``, refuses bodies over 4096 bytes, and
decrypts the ``aes128gcm`` body with the browser's private key and auth secret, as the browser
would. Each subscription can be told what to answer instead (410, 404, 429, 413, 500).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from py_vapid import Vapid02
from pywebpush import WebPusher

from channels.base import Envelope, Outcome, Sender
from channels.web_push import (
    WebPushSender,
    WebPushSettings,
    build_payload,
    load_vapid_key,
    new_vapid_keys,
    vapid_public_key,
)

SUBJECT = "mailto:ops@safar.example"
PRIVATE, PUBLIC = new_vapid_keys()


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the push service ----------------------------------------------------------------------------


@dataclass
class Browser:
    """One subscription, as ``PushManager.subscribe`` makes it: its own key pair and secret."""

    endpoint: str
    application_server_key: str
    answer: int = 201
    answer_headers: dict[str, str] = field(default_factory=dict)
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def subscription(self) -> str:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        keys = {"p256dh": b64e(point), "auth": b64e(self.auth)}
        return json.dumps({"endpoint": self.endpoint, "expirationTime": None, "keys": keys})


@dataclass
class Received:
    token: str
    headers: dict[str, str]
    payload: dict[str, Any]


def verify_vapid(authorization: str, audience: str) -> str:
    """Check an RFC 8292 ``Authorization`` header and return its public key ``k``.

    Raises:
        ValueError, KeyError or InvalidSignature: the token does not hold.
    """
    scheme, _, params = authorization.partition(" ")
    if scheme.lower() != "vapid":
        raise ValueError(f"scheme {scheme!r} is not vapid")
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    token, key = fields["t"], fields["k"]
    head, claims_part, signature = token.split(".")
    if json.loads(b64d(head)).get("alg") != "ES256":
        raise ValueError("alg is not ES256")
    raw = b64d(signature)
    if len(raw) != 64:
        raise ValueError("an ES256 signature is 64 bytes")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(key))
    public.verify(
        encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
        f"{head}.{claims_part}".encode(),
        ec.ECDSA(hashes.SHA256()),
    )
    claims = json.loads(b64d(claims_part))
    if claims.get("aud") != audience:
        raise ValueError(f"aud {claims.get('aud')!r} is not {audience!r}")
    if not time.time() < claims["exp"] <= time.time() + 24 * 3600:
        raise ValueError("exp is not within the next 24 hours")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        raise ValueError("sub is missing")
    return key


class PushService(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), PushHandler)
        self.origin = f"http://127.0.0.1:{self.server_port}"
        self.browsers: dict[str, Browser] = {}
        self.received: list[Received] = []
        self.requests = 0
        self.lock = threading.Lock()

    def subscribe(
        self, application_server_key: str = PUBLIC, answer: int = 201, **answer_headers: str
    ) -> Browser:
        token = uuid.uuid4().hex
        browser = Browser(f"{self.origin}/push/{token}", application_server_key, answer)
        browser.answer_headers.update(answer_headers)
        self.browsers[token] = browser
        return browser


class PushHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the sender's connection reuse is exercised
    server: PushService

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def answer(self, code: int, message: str = "", **headers: str) -> None:
        body = json.dumps({"code": code, "message": message}).encode() if message else b""
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.requests += 1
        token = self.path.removeprefix("/push/")
        browser = self.server.browsers.get(token)
        if browser is None:
            return self.answer(404, "no such subscription")
        try:
            key = verify_vapid(self.headers.get("Authorization", ""), self.server.origin)
        except (ValueError, KeyError, InvalidSignature) as error:
            return self.answer(401, f"invalid VAPID token: {error or type(error).__name__}")
        if key != browser.application_server_key:
            return self.answer(403, "VAPID key does not match the subscription's key")
        if not re.fullmatch(r"\d+", self.headers.get("TTL", "")):
            return self.answer(400, "missing TTL header")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", self.headers.get("Topic", "topic")):
            return self.answer(400, "invalid Topic header")
        if self.headers.get("Content-Encoding") != "aes128gcm":
            return self.answer(400, "Content-Encoding must be aes128gcm")
        if len(body) > 4096:
            return self.answer(413, "payload too large")
        if browser.answer != 201:
            return self.answer(
                browser.answer, f"answering {browser.answer}", **browser.answer_headers
            )
        try:
            plain = http_ece.decrypt(
                body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm"
            )
        except http_ece.ECEException as error:
            return self.answer(400, f"cannot decrypt: {error}")
        headers = {name.lower(): value for name, value in self.headers.items()}
        with self.server.lock:
            self.server.received.append(Received(token, headers, json.loads(plain)))
        self.answer(201, Location=f"{self.server.origin}/m/{token}")


@pytest.fixture
def push_service() -> Iterator[PushService]:
    server = PushService()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


# --- helpers -------------------------------------------------------------------------------------


def settings(**overrides: Any) -> WebPushSettings:
    return WebPushSettings(**{"vapid_private_key": PRIVATE, "subject": SUBJECT, **overrides})


def envelope(to: str, delivery_id: str = "d-1", **fields: Any) -> Envelope:
    content = fields.pop("content", {"title": "Hello", "body": "World"})
    return Envelope(delivery_id, "web_push", to, content, person_id="p-1", **fields)


def send(envelopes: list[Envelope], config: WebPushSettings | None = None) -> list[Outcome]:
    async def run() -> list[Outcome]:
        sender = WebPushSender(config or settings())
        try:
            return await asyncio.gather(*(sender.send(e) for e in envelopes))
        finally:
            await sender.aclose()

    return asyncio.run(run())


# --- tests ---------------------------------------------------------------------------------------


def test_round_trip_persian_payload(push_service: PushService) -> None:
    browser = push_service.subscribe()
    content = {
        "title": "سفارش شما ارسال شد",
        "body": "بسته‌ی شما امروز به دستتان می‌رسد 📦",
        "icon": "https://shop.example/icon.png",
        "image": "https://shop.example/box.jpg",
        "url": "https://shop.example/orders/42",
        "tag": "order-42",
        "actions": [{"action": "track", "title": "پیگیری"}],
    }
    message = envelope(browser.subscription, "d-42", content=content, campaign_id="c-7")

    [outcome] = send([message], settings(urgency="high"))

    assert outcome.status == "sent", outcome.detail
    [received] = push_service.received
    assert outcome.provider_message_id == f"{push_service.origin}/m/{received.token}"
    assert received.payload == {
        **content,
        "delivery_id": "d-42",
        "campaign_id": "c-7",
    }
    assert received.headers["topic"] == "order-42"
    assert received.headers["urgency"] == "high"
    assert received.headers["ttl"] == "86400"


@pytest.mark.parametrize(
    ("default", "per_envelope", "expected"),
    [(86400, None, "86400"), (3600, None, "3600"), (3600, 60, "60"), (3600, 0, "0")],
)
def test_ttl_always_sent(
    push_service: PushService, default: int, per_envelope: int | None, expected: str
) -> None:
    browser = push_service.subscribe()

    [outcome] = send(
        [envelope(browser.subscription, ttl_seconds=per_envelope)], settings(ttl_seconds=default)
    )

    assert outcome.status == "sent", outcome.detail
    assert push_service.received[0].headers["ttl"] == expected
    assert "urgency" not in push_service.received[0].headers


def test_long_tag_becomes_a_valid_topic(push_service: PushService) -> None:
    browser = push_service.subscribe()
    content = {"title": "t", "body": "b", "tag": "سفارش شماره ۴۲ برای مشتری ویژه"}

    [first, second] = send(
        [envelope(browser.subscription, "d-1", content=content)] * 2,
    )

    assert first.status == second.status == "sent", first.detail
    topics = {received.headers["topic"] for received in push_service.received}
    assert len(topics) == 1 and len(topics.pop()) == 32


@pytest.mark.parametrize("form", ["raw", "pkcs8", "sec1"])
def test_vapid_key_forms_are_accepted(push_service: PushService, form: str) -> None:
    key = load_vapid_key(PRIVATE)
    formats = {"pkcs8": serialization.PrivateFormat.PKCS8}
    formats["sec1"] = serialization.PrivateFormat.TraditionalOpenSSL
    text = (
        PRIVATE
        if form == "raw"
        else key.private_bytes(
            serialization.Encoding.PEM, formats[form], serialization.NoEncryption()
        ).decode()
    )
    assert vapid_public_key(text) == PUBLIC
    browser = push_service.subscribe()

    [outcome] = send([envelope(browser.subscription)], settings(vapid_private_key=text))

    assert outcome.status == "sent", outcome.detail
    assert len(push_service.received) == 1


def test_https_subject_with_a_path_is_accepted(push_service: PushService) -> None:
    browser = push_service.subscribe()

    [outcome] = send(
        [envelope(browser.subscription)], settings(subject="https://safar.example/contact")
    )

    assert outcome.status == "sent", outcome.detail


def test_wrong_vapid_key_is_refused(push_service: PushService) -> None:
    other_private, other_public = new_vapid_keys()
    browser = push_service.subscribe(application_server_key=other_public)

    [outcome] = send([envelope(browser.subscription)])

    assert outcome.status == "failed"
    assert not outcome.address_dead
    assert "403" in outcome.detail and "does not match" in outcome.detail
    assert push_service.received == []

    [outcome] = send([envelope(browser.subscription)], settings(vapid_private_key=other_private))
    assert outcome.status == "sent", outcome.detail


def sign(claims: dict[str, Any], key: str = PRIVATE) -> str:
    vapid = Vapid02(load_vapid_key(key), {"no-strict": True})
    return vapid.sign(claims)["Authorization"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("none", 201),
        ("no ttl", 400),
        ("tampered claims", 401),
        ("expired", 401),
        ("exp beyond 24 h", 401),
        ("wrong aud", 401),
        ("k of another key", 401),
    ],
)
def test_push_service_checks_what_it_should(
    push_service: PushService, change: str, code: int
) -> None:
    """The test service refuses what a real one refuses, so the tests above can fail."""
    browser = push_service.subscribe()
    now = int(time.time())
    claims = {"aud": push_service.origin, "exp": now + 3600, "sub": SUBJECT}
    if change == "expired":
        claims["exp"] = now - 10
    if change == "exp beyond 24 h":
        claims["exp"] = now + 25 * 3600
    if change == "wrong aud":
        claims["aud"] = "https://fcm.googleapis.com"
    authorization = sign(claims)
    if change == "tampered claims":
        head, _, rest = authorization.partition("t=")
        jwt, _, key = rest.partition(",")
        header, _, signature = jwt.split(".")
        forged = b64e(json.dumps({**claims, "sub": "mailto:x@evil.example"}).encode())
        authorization = f"{head}t={header}.{forged}.{signature},{key}"
    if change == "k of another key":
        authorization = re.sub(r"k=.*", f"k={new_vapid_keys()[1]}", authorization)
    keys = json.loads(browser.subscription)
    body = WebPusher(keys).encode(b'{"title":"x"}')["body"]
    headers = {"Authorization": authorization, "Content-Encoding": "aes128gcm"}
    if change != "no ttl":
        headers["TTL"] = "60"

    response = httpx.post(browser.endpoint, content=body, headers=headers)

    assert response.status_code == code, response.text


@pytest.mark.parametrize("code", [404, 410])
def test_gone_subscription_bounces(push_service: PushService, code: int) -> None:
    browser = push_service.subscribe(answer=code)

    [outcome] = send([envelope(browser.subscription)])

    assert outcome.status == "bounced"
    assert outcome.address_dead
    assert str(code) in outcome.detail and f"answering {code}" in outcome.detail


def test_unknown_subscription_bounces(push_service: PushService) -> None:
    browser = push_service.subscribe()
    del push_service.browsers[browser.endpoint.rsplit("/", 1)[1]]

    [outcome] = send([envelope(browser.subscription)])

    assert (outcome.status, outcome.address_dead) == ("bounced", True)
    assert "no such subscription" in outcome.detail


@pytest.mark.parametrize(
    ("code", "retry_after", "expected"),
    [(429, "7", 7.0), (500, None, None), (503, "http-date", 120.0)],
)
def test_busy_push_service_is_retried(
    push_service: PushService, code: int, retry_after: str | None, expected: float | None
) -> None:
    if retry_after == "http-date":
        retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    headers = {"Retry-After": retry_after} if retry_after else {}
    browser = push_service.subscribe(answer=code, **headers)

    [outcome] = send([envelope(browser.subscription)])

    assert outcome.status == "retry"
    assert not outcome.address_dead
    if expected is None:
        assert outcome.retry_after is None
    else:
        assert outcome.retry_after == pytest.approx(expected, abs=2)
    assert outcome.response is not None and outcome.response["status_code"] == code


def test_413_fails(push_service: PushService) -> None:
    browser = push_service.subscribe(answer=413)

    [outcome] = send([envelope(browser.subscription)])

    assert outcome.status == "failed"
    assert "too large" in outcome.detail and "413" in outcome.detail


def test_network_error_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    browser = Browser(f"http://127.0.0.1:{port}/push/x", PUBLIC)

    [outcome] = send([envelope(browser.subscription)])

    assert outcome.status == "retry"
    assert "ConnectError" in outcome.detail


def test_unsignable_audience_fails() -> None:
    browser = Browser("http://[::1]:9/push/x", PUBLIC)

    [outcome] = send([envelope(browser.subscription)])

    assert outcome.status == "failed"
    assert "cannot sign a VAPID token for http://[::1]:9" in outcome.detail


def _subscription(**keys: Any) -> str:
    good = json.loads(Browser("https://push.example/1", PUBLIC).subscription)["keys"]
    return json.dumps({"endpoint": "ENDPOINT", "keys": {**good, **keys}})


@pytest.mark.parametrize(
    ("to", "reason"),
    [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({"keys": {}}), "no endpoint"),
        (_subscription().replace("ENDPOINT", "ftp://push.example/1"), "not an http(s) URL"),
        (json.dumps({"endpoint": "https://push.example/1"}), "no keys"),
        (_subscription(auth=None), "missing"),
        (_subscription(p256dh="!!!"), "not base64url"),
        (_subscription(p256dh=b64e(b"\x04" * 33)), "not an uncompressed point"),
        (_subscription(p256dh=b64e(b"\x04" + b"\x01" * 64)), "not a point on P-256"),
        (_subscription(auth=b64e(b"12345678")), "8 bytes, not 16"),
    ],
)
def test_malformed_subscription_bounces(push_service: PushService, to: str, reason: str) -> None:
    to = to.replace("ENDPOINT", push_service.subscribe().endpoint)

    [outcome] = send([envelope(to)])

    assert (outcome.status, outcome.address_dead) == ("bounced", True)
    assert outcome.detail.startswith("malformed push subscription: ")
    assert reason in outcome.detail
    assert push_service.requests == 0


def test_payload_limit_is_exact(push_service: PushService) -> None:
    """3,993 bytes of JSON encrypt to exactly 4,096 and go; one byte more fails unsent."""
    browser = push_service.subscribe()
    bare = len(build_payload(envelope(browser.subscription, content={"title": "t", "body": ""})))
    fits = {"title": "t", "body": "ب" * ((3993 - bare) // 2) + "x" * ((3993 - bare) % 2)}
    too_big = {**fits, "body": fits["body"] + "x"}
    assert len(build_payload(envelope(browser.subscription, content=fits))) == 3993

    [sent] = send([envelope(browser.subscription, content=fits)])
    assert sent.status == "sent", sent.detail
    assert push_service.received[0].payload["body"] == fits["body"]

    [refused] = send([envelope(browser.subscription, content=too_big)])
    assert refused.status == "failed"
    assert "4097 bytes encrypted (3994 bytes of JSON)" in refused.detail
    assert push_service.requests == 1


def test_hundred_concurrent_sends_each_arrive_once(push_service: PushService) -> None:
    browsers = [push_service.subscribe() for _ in range(100)]
    envelopes = [
        envelope(browser.subscription, f"d-{i}", content={"title": f"#{i}", "body": "سلام"})
        for i, browser in enumerate(browsers)
    ]

    outcomes = send(envelopes)

    assert [outcome.status for outcome in outcomes] == ["sent"] * 100
    assert push_service.requests == 100
    by_token = {received.token: received.payload for received in push_service.received}
    assert len(by_token) == len(push_service.received) == 100
    # One VAPID token serves every message to the same push service.
    assert len({received.headers["authorization"] for received in push_service.received}) == 1
    for i, browser in enumerate(browsers):
        payload = by_token[browser.endpoint.rsplit("/", 1)[1]]
        assert (payload["delivery_id"], payload["title"]) == (f"d-{i}", f"#{i}")


def test_sender_speaks_the_protocol() -> None:
    async def check() -> None:
        sender = WebPushSender(settings())
        assert isinstance(sender, Sender)
        assert (sender.channel, sender.provider) == ("web_push", "vapid")
        await sender.aclose()

    asyncio.run(check())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"subject": "ops@safar.example"}, "mailto: or https:"),
        ({"urgency": "urgent"}, "urgency must be one of"),
        ({"ttl_seconds": -1}, "must not be negative"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(**overrides)


@pytest.mark.parametrize("key", ["", "c2hvcnQ", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END"])
def test_bad_vapid_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError):
        WebPushSender(settings(vapid_private_key=key))
