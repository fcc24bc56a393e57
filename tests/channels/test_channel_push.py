"""Push senders against local servers that speak FCM HTTP v1 and APNs (HTTP/2 over TLS).

The FCM server has its own OAuth2 token endpoint that verifies the service account's RS256
assertion; the APNs server is an ``h2`` state machine behind TLS with ALPN ``h2`` that verifies
the ES256 provider token. Both keep what they received and answer scripted errors per device
token, the way the real services answer per token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tls_helpers import self_signed, server_context

from channels.base import Envelope, Outcome, Sender
from channels.push import (
    ApnsSender,
    ApnsSettings,
    FcmSender,
    FcmSettings,
    apns_id,
    build_apns_payload,
    build_fcm_message,
)

PROJECT = "safar-test"
CLIENT_EMAIL = "push@safar-test.iam.gserviceaccount.com"
TEAM_ID = "TEAM123456"
KEY_ID = "KEY7890ABC"
BUNDLE = "app.safar.demo"
DEVICE = "a" * 64
# What Google's token endpoint expects, spelled out here rather than imported from the sender.
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, the signed bytes and the signature of a compact JWT."""
    header, claims, signature = token.split(".")
    return (
        json.loads(_unb64(header)),
        json.loads(_unb64(claims)),
        f"{header}.{claims}".encode(),
        _unb64(signature),
    )


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def send_all(sender: Sender, envelopes: list[Envelope]) -> list[Outcome]:
    try:
        return list(await asyncio.gather(*(sender.send(envelope) for envelope in envelopes)))
    finally:
        await sender.aclose()


def push(delivery_id: str = "d-1", to: str = DEVICE, **content: Any) -> Envelope:
    return Envelope(delivery_id, "push", to, content, person_id="p-1")


def free_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- FCM ------------------------------------------------------------------------------------


def fcm_error(
    code: int, status: str, message: str, error_code: str = "", field_name: str = ""
) -> dict[str, Any]:
    """A ``google.rpc.Status`` error body as FCM v1 returns it."""
    details: list[dict[str, Any]] = []
    if error_code:
        details.append(
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": error_code,
            }
        )
    if field_name:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field_name, "description": message}],
            }
        )
    return {"error": {"code": code, "message": message, "status": status, "details": details}}


@dataclass
class FakeFcm:
    """FCM HTTP v1 plus Google's OAuth2 token endpoint, on one local HTTP server."""

    public_key: rsa.RSAPublicKey
    url: str = ""
    expires_in: int = 3599
    token_requests: int = 0
    access_tokens: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)
    bearers: list[str] = field(default_factory=list)
    errors: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def revoke_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any], dict[str, str]]:
        refused = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if form.get("grant_type") != [JWT_BEARER_GRANT] or len(form.get("assertion", [])) != 1:
            return 400, {"error": "unsupported_grant_type"}, {}
        header, claims, signed, signature = _jwt_parts(form["assertion"][0])
        try:
            self.public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return 400, refused, {}
        now = time.time()
        if (
            header.get("alg") != "RS256"
            or claims.get("iss") != CLIENT_EMAIL
            or claims.get("scope") != FCM_SCOPE
            or claims.get("aud") != self.token_uri
            or not claims["iat"] - 60 <= now < claims["exp"] <= claims["iat"] + 3600
        ):
            return 400, {"error": "invalid_grant", "error_description": "Bad claims."}, {}
        with self.lock:
            self.token_requests += 1
            access_token = f"ya29.test-{self.token_requests}"
            self.access_tokens.add(access_token)
        return 200, {"access_token": access_token, "expires_in": self.expires_in}, {}

    def send(self, authorization: str, body: dict[str, Any]) -> tuple[int, dict, dict[str, str]]:
        bearer = authorization.removeprefix("Bearer ")
        if bearer not in self.access_tokens:
            message = "Request had invalid authentication credentials."
            return 401, fcm_error(401, "UNAUTHENTICATED", message), {}
        message = body["message"]
        for index, value in enumerate(message.get("data", {}).values()):
            if not isinstance(value, str):
                text = f"Invalid value at 'message.data[{index}].value' (TYPE_STRING), {value}"
                field_name = f"message.data[{index}].value"
                return 400, fcm_error(400, "INVALID_ARGUMENT", text, field_name=field_name), {}
        with self.lock:
            self.messages.append(message)
            self.bearers.append(bearer)
            number = len(self.messages)
        if message.get("token") in self.errors:
            return self.errors[message["token"]]
        return 200, {"name": f"projects/{PROJECT}/messages/{number}"}, {}


def _fcm_handler(fake: FakeFcm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes; Nagle would hold the body for the client's
        # delayed ACK, 40 ms a request.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/token":
                answer = fake.token(parse_qs(raw.decode()))
            elif self.path == f"/v1/projects/{PROJECT}/messages:send":
                answer = fake.send(self.headers.get("Authorization", ""), json.loads(raw))
            else:
                answer = 404, fcm_error(404, "NOT_FOUND", "Not found"), {}
            status, body, headers = answer
            payload = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _FcmHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # 100 clients connect at once; the default backlog of 5 would stall them in SYN retries.
    request_queue_size = 256


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fcm(rsa_key: rsa.RSAPrivateKey) -> Iterator[FakeFcm]:
    fake = FakeFcm(rsa_key.public_key())
    server = _FcmHttpServer(("127.0.0.1", 0), _fcm_handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def fcm_settings(fcm: FakeFcm, rsa_key: rsa.RSAPrivateKey, tls) -> FcmSettings:
    account = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "key-1",
        "private_key": _pem(rsa_key),
        "client_email": CLIENT_EMAIL,
        "token_uri": fcm.token_uri,
    }
    # The fake speaks plain HTTP; trusting only the test certificate spares loading the system's.
    verify = ssl.create_default_context(cadata=tls[2])
    return FcmSettings(service_account=account, base_url=fcm.url, timeout=5, verify=verify)


def fcm_send(settings: FcmSettings, *envelopes: Envelope) -> list[Outcome]:
    return run(send_all(FcmSender(settings), list(envelopes)))


def test_fcm_text_is_a_native_notification_with_flat_string_data(fcm, fcm_settings):
    envelope = Envelope(
        "d-1",
        "push",
        "fcm-token-1",
        {"title": "سلام", "body": "Welcome", "deep_link": "safar://home", "data": {"n": 3}},
        campaign_id="c-9",
        journey_id="j-4",
    )
    [outcome] = fcm_send(fcm_settings, envelope)
    assert outcome.status == "sent", outcome.detail
    assert outcome.provider_message_id == f"projects/{PROJECT}/messages/1"
    [message] = fcm.messages
    assert message["token"] == "fcm-token-1"
    assert message["notification"] == {"title": "سلام", "body": "Welcome"}
    assert message["data"] == {
        "n": "3",
        "layout": "text",
        "deep_link": "safar://home",
        "delivery_id": "d-1",
        "campaign_id": "c-9",
        "journey_id": "j-4",
    }
    assert message["android"] == {"priority": "high"}
    assert message["apns"]["headers"] == {"apns-push-type": "alert", "apns-priority": "10"}


def test_fcm_banner_carries_the_image_for_android_and_ios(fcm, fcm_settings):
    image = "https://cdn.example/sale.jpg"
    fcm_send(fcm_settings, push(to="t", layout="banner", title="Sale", image=image))
    [message] = fcm.messages
    assert message["notification"] == {"title": "Sale", "image": image}
    assert message["apns"]["fcm_options"] == {"image": image}
    assert message["apns"]["payload"]["aps"]["mutable-content"] == 1


def test_fcm_carousel_is_a_data_message_with_json_items(fcm, fcm_settings):
    items = [
        {"title": "Kish", "image": "https://cdn.example/kish.jpg", "deep_link": "safar://kish"},
        {"title": "Yazd", "body": "Old town", "image": "https://cdn.example/yazd.jpg"},
    ]
    [outcome] = fcm_send(
        fcm_settings, push(to="t", layout="carousel", title="Trips", body="Pick one", items=items)
    )
    assert outcome.status == "sent", outcome.detail
    [message] = fcm.messages
    assert "notification" not in message
    assert json.loads(message["data"]["items"]) == items
    assert message["data"]["category"] == "safar.carousel"
    assert (message["data"]["title"], message["data"]["body"]) == ("Trips", "Pick one")
    assert message["apns"]["payload"]["aps"] == {
        "alert": {"title": "Trips", "body": "Pick one"},
        "category": "safar.carousel",
        "mutable-content": 1,
    }


def test_fcm_rating_carries_its_category(fcm, fcm_settings):
    fcm_send(fcm_settings, push(to="t", layout="rating", title="How was it?"))
    fcm_send(fcm_settings, push(to="t", layout="rating", title="Rate", category="shop.stars"))
    first, second = fcm.messages
    assert first["data"]["category"] == "safar.rating"
    assert first["data"]["layout"] == "rating"
    assert "notification" not in first
    assert second["apns"]["payload"]["aps"]["category"] == "shop.stars"


def test_fcm_ttl_maps_to_android_ttl_and_apns_expiration(fcm, fcm_settings):
    envelope = replace(push(to="t", title="Hi"), ttl_seconds=3600)
    before = int(time.time())
    fcm_send(fcm_settings, envelope)
    [message] = fcm.messages
    assert message["android"]["ttl"] == "3600s"
    assert before + 3600 <= int(message["apns"]["headers"]["apns-expiration"]) <= before + 3605


def test_fcm_one_token_exchange_for_100_concurrent_sends(fcm, fcm_settings):
    envelopes = [push(f"d-{n}", to=f"token-{n}", title="Hi") for n in range(100)]
    outcomes = fcm_send(fcm_settings, *envelopes)
    assert {outcome.status for outcome in outcomes} == {"sent"}
    assert fcm.token_requests == 1
    assert set(fcm.bearers) == {"ya29.test-1"}
    assert sorted(m["data"]["delivery_id"] for m in fcm.messages) == sorted(
        f"d-{n}" for n in range(100)
    )


def test_fcm_token_close_to_expiry_is_not_reused(fcm, fcm_settings):
    fcm.expires_in = 30  # inside the refresh margin: every send needs a new token

    async def sequential() -> list[Outcome]:
        sender = FcmSender(fcm_settings)
        try:
            return [await sender.send(push(f"d-{n}", to="t", title="Hi")) for n in range(3)]
        finally:
            await sender.aclose()

    assert [outcome.status for outcome in run(sequential())] == ["sent"] * 3
    assert fcm.token_requests == 3


def test_fcm_unauthenticated_drops_the_token_and_retries_once(fcm, fcm_settings):
    async def scenario() -> Outcome:
        sender = FcmSender(fcm_settings)
        try:
            await sender.send(push("d-1", to="t", title="Hi"))
            fcm.revoke_tokens()
            return await sender.send(push("d-2", to="t", title="Hi"))
        finally:
            await sender.aclose()

    outcome = run(scenario())
    assert outcome.status == "sent", outcome.detail
    assert fcm.token_requests == 2
    assert fcm.bearers == ["ya29.test-1", "ya29.test-2"]


UNREGISTERED = (404, fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"))
BAD_TOKEN = fcm_error(
    400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
    "INVALID_ARGUMENT",
)  # fmt: skip
BAD_TTL = fcm_error(
    400, "INVALID_ARGUMENT", "Invalid value at 'message.android.ttl'",
    field_name="message.android.ttl",
)  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "status", "retry_after", "code"),
    [
        ((*UNREGISTERED, {}), "bounced", None, "UNREGISTERED"),
        ((400, BAD_TOKEN, {}), "bounced", None, "not a valid FCM registration token"),
        ((403, fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"), {}),
         "bounced", None, "SENDER_ID_MISMATCH"),
        ((400, BAD_TTL, {}), "failed", None, "message.android.ttl"),
        ((401, fcm_error(401, "UNAUTHENTICATED", "Auth error from APNS", "THIRD_PARTY_AUTH_ERROR"),
          {}), "failed", None, "THIRD_PARTY_AUTH_ERROR"),
        ((429, fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", "QUOTA_EXCEEDED"),
          {"Retry-After": "7"}), "retry", 7.0, "QUOTA_EXCEEDED"),
        ((503, fcm_error(503, "UNAVAILABLE", "The service is unavailable", "UNAVAILABLE"), {}),
         "retry", None, "UNAVAILABLE"),
        ((500, fcm_error(500, "INTERNAL", "Internal error", "INTERNAL"), {}),
         "retry", None, "INTERNAL"),
    ],
)  # fmt: skip
def test_fcm_errors_are_classified(fcm, fcm_settings, answer, status, retry_after, code):
    fcm.errors["doomed"] = answer
    [outcome] = fcm_send(fcm_settings, push(to="doomed", title="Hi"))
    assert outcome.status == status
    assert outcome.address_dead is (status == "bounced")
    assert outcome.retry_after == retry_after
    assert code in outcome.detail
    assert outcome.response is not None and outcome.response["status_code"] == answer[0]
    # Only an UNAUTHENTICATED without an FCM error code is worth a new token.
    assert fcm.token_requests == 1


def test_fcm_token_exchange_refused_for_a_wrong_key(fcm, fcm_settings):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = {**fcm_settings.service_account, "private_key": _pem(other_key)}
    [outcome] = fcm_send(replace(fcm_settings, service_account=account), push(title="Hi"))
    assert outcome.status == "failed"
    assert "invalid_grant" in outcome.detail
    assert fcm.messages == []


def test_fcm_unreachable_is_retry(fcm_settings):
    account = {**fcm_settings.service_account, "token_uri": f"http://127.0.0.1:{free_port()}/t"}
    [outcome] = fcm_send(replace(fcm_settings, service_account=account), push(title="Hi"))
    assert outcome.status == "retry"
    assert "could not reach fcm" in outcome.detail


def test_fcm_invalid_content_fails_without_calling_fcm(fcm, fcm_settings):
    [outcome] = fcm_send(fcm_settings, push(layout="poster", title="Hi"))
    assert outcome.status == "failed"
    assert "unknown push layout 'poster'" in outcome.detail
    assert (fcm.token_requests, fcm.messages) == (0, [])


# --- APNs -----------------------------------------------------------------------------------


@dataclass
class FakeApns:
    """APNs' provider API: checks the provider token and headers, keeps what it accepted."""

    public_key: ec.EllipticCurvePublicKey
    url: str = ""
    alpn: list[str | None] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    errors: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def expire_seen_tokens(self) -> None:
        self.expired.update(request["jwt"] for request in self.requests)

    def _token_problem(self, jwt: str) -> str:
        header, claims, signed, signature = _jwt_parts(jwt)
        if len(signature) != 64:  # ES256 in a JWT is raw r || s, 32 bytes each, never DER
            return "InvalidProviderToken"
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        try:
            self.public_key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return "InvalidProviderToken"
        if header != {"alg": "ES256", "kid": KEY_ID} or claims.get("iss") != TEAM_ID:
            return "InvalidProviderToken"
        if jwt in self.expired or time.time() - claims["iat"] > 3600:
            return "ExpiredProviderToken"
        return ""

    def handle(self, connection: int, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        """Status and JSON body (empty when accepted) for one request."""
        jwt = headers.get("authorization", "").removeprefix("bearer ")
        device = headers[":path"].removeprefix("/3/device/")
        problem = (
            ("MethodNotAllowed", 405)
            if headers[":method"] != "POST"
            else ("MissingProviderToken", 403)
            if not jwt
            else (self._token_problem(jwt), 403)
        )
        if problem[0]:
            self.refused.append((headers.get("apns-id", ""), problem[0]))
            return problem[1], {"reason": problem[0]}
        checks = {
            "TopicDisallowed": headers.get("apns-topic") == BUNDLE,
            "InvalidPushType": headers.get("apns-push-type") in ("alert", "background"),
            "BadPriority": headers.get("apns-priority") in ("5", "10"),
            "BadMessageId": str(uuid.UUID(headers.get("apns-id", "0" * 32))) == headers["apns-id"],
            "BadExpirationDate": headers.get("apns-expiration", "0").isdigit(),
            "PayloadTooLarge": len(body) <= 4096,
        }
        for reason, passed in checks.items():
            if not passed:
                return (413 if reason == "PayloadTooLarge" else 400), {"reason": reason}
        self.requests.append(
            {"connection": connection, "device": device, "jwt": jwt, "headers": headers,
             "payload": json.loads(body)}
        )  # fmt: skip
        return self.errors.get(device, (200, {}))


class _H2Server(asyncio.Protocol):
    """One client connection: h2's server state machine fed from a TLS transport."""

    def __init__(self, fake: FakeApns) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=config)
        self.fake = fake
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.fake.alpn.append(transport.get_extra_info("ssl_object").selected_alpn_protocol())
        self.index = len(self.fake.alpn) - 1
        self.h2.initiate_connection()
        # APNs allows up to 1,000 concurrent streams per connection.
        self.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
        self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.transport.write(self.h2.data_to_send())
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = (dict(event.headers), bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self.streams[event.stream_id][1].extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.respond(event.stream_id, *self.streams.pop(event.stream_id))
            elif isinstance(event, h2.events.StreamReset):
                self.streams.pop(event.stream_id, None)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.transport.close()
        self.transport.write(self.h2.data_to_send())

    def respond(self, stream_id: int, headers: dict[str, str], body: bytearray) -> None:
        status, answer = self.fake.handle(self.index, headers, bytes(body))
        response = [(":status", str(status)), ("apns-id", headers.get("apns-id", ""))]
        if not answer:
            self.h2.send_headers(stream_id, response, end_stream=True)
            return
        self.h2.send_headers(stream_id, [*response, ("content-type", "application/json")])
        self.h2.send_data(stream_id, json.dumps(answer).encode(), end_stream=True)


@pytest.fixture(scope="module")
def apns_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    return self_signed(tmp_path_factory.mktemp("apns_tls"))


@pytest.fixture
def apns(apns_key: ec.EllipticCurvePrivateKey, tls: tuple[Path, Path, str]) -> Iterator[FakeApns]:
    cert_file, key_file, _ = tls
    context = server_context(cert_file, key_file)
    context.set_alpn_protocols(["h2"])
    fake = FakeApns(apns_key.public_key())
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: _H2Server(fake), "127.0.0.1", 0, ssl=context)
    )
    fake.url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield fake
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


@pytest.fixture
def apns_settings(apns: FakeApns, apns_key, tls) -> ApnsSettings:
    return ApnsSettings(
        team_id=TEAM_ID,
        key_id=KEY_ID,
        private_key=_pem(apns_key),
        bundle_id=BUNDLE,
        base_url=apns.url,
        timeout=5,
        verify=ssl.create_default_context(cadata=tls[2]),
    )


def apns_send(settings: ApnsSettings, *envelopes: Envelope, **kwargs: Any) -> list[Outcome]:
    return run(send_all(ApnsSender(settings, **kwargs), list(envelopes)))


def test_apns_text_over_http2(apns, apns_settings):
    envelope = replace(push("d-1", title="سلام", body="Welcome"), campaign_id="c-9")
    [outcome] = apns_send(apns_settings, envelope)
    assert outcome.status == "sent", outcome.detail
    assert outcome.provider_message_id == apns_id("d-1")
    assert apns.alpn == ["h2"]
    [request] = apns.requests
    assert request["device"] == DEVICE
    assert {key: request["headers"].get(key) for key in ("apns-topic", "apns-push-type")} == {
        "apns-topic": BUNDLE,
        "apns-push-type": "alert",
    }
    assert request["headers"]["apns-priority"] == "10"
    assert "apns-expiration" not in request["headers"]
    assert request["payload"] == {
        "aps": {"alert": {"title": "سلام", "body": "Welcome"}},
        "layout": "text",
        "delivery_id": "d-1",
        "campaign_id": "c-9",
    }


def test_apns_banner_is_mutable_with_the_image_url(apns, apns_settings):
    image = "https://cdn.example/sale.jpg"
    apns_send(apns_settings, push(layout="banner", title="Sale", image=image))
    [request] = apns.requests
    assert request["payload"]["aps"]["mutable-content"] == 1
    assert request["payload"]["image"] == image


def test_apns_carousel_and_rating_carry_category_and_items(apns, apns_settings):
    items = [{"title": "Kish", "image": "https://cdn.example/k.jpg"}, {"title": "Yazd"}]
    apns_send(
        apns_settings,
        push("d-1", layout="carousel", title="Trips", items=items, data={"rank": [1, 2]}),
    )
    apns_send(apns_settings, push("d-2", layout="rating", body="Rate your trip"))
    carousel, rating = sorted(apns.requests, key=lambda request: request["payload"]["delivery_id"])
    assert carousel["payload"]["aps"] == {
        "alert": {"title": "Trips"},
        "category": "safar.carousel",
        "mutable-content": 1,
    }
    assert carousel["payload"]["items"] == items
    assert carousel["payload"]["rank"] == [1, 2]
    assert rating["payload"]["aps"] == {
        "alert": {"body": "Rate your trip"},
        "category": "safar.rating",
    }


def test_apns_silent_push_is_background_priority_5(apns, apns_settings):
    apns_send(apns_settings, push(data={"refresh": "inbox"}))
    [request] = apns.requests
    assert request["payload"]["aps"] == {"content-available": 1}
    assert (request["headers"]["apns-push-type"], request["headers"]["apns-priority"]) == (
        "background",
        "5",
    )


def test_apns_ttl_and_collapse_id(apns, apns_settings):
    envelope = replace(push(title="Hi", collapse_id="score"), ttl_seconds=600)
    before = int(time.time())
    apns_send(apns_settings, envelope, replace(envelope, delivery_id="d-2", ttl_seconds=0))
    first, second = sorted(apns.requests, key=lambda request: request["payload"]["delivery_id"])
    assert before + 600 <= int(first["headers"]["apns-expiration"]) <= before + 605
    assert second["headers"]["apns-expiration"] == "0"
    assert first["headers"]["apns-collapse-id"] == "score"


def test_apns_id_is_derived_from_the_delivery_id(apns, apns_settings):
    outcomes = apns_send(apns_settings, push("d-7", title="Hi"), push("d-8", title="Hi"))
    apns_send(apns_settings, push("d-7", title="Hi again"))
    sent_ids = [request["headers"]["apns-id"] for request in apns.requests]
    assert sorted(sent_ids) == sorted([apns_id("d-7"), apns_id("d-8"), apns_id("d-7")])
    assert apns_id("d-7") != apns_id("d-8")
    assert uuid.UUID(apns_id("d-7")).version == 5
    assert [outcome.provider_message_id for outcome in outcomes] == [apns_id("d-7"), apns_id("d-8")]


def test_apns_100_concurrent_sends_share_one_http2_connection(apns, apns_settings):
    envelopes = [push(f"d-{n}", to=f"{n:064x}", title="Hi") for n in range(100)]
    outcomes = apns_send(apns_settings, *envelopes)
    assert [outcome.status for outcome in outcomes] == ["sent"] * 100
    assert apns.alpn == ["h2"]
    assert {request["connection"] for request in apns.requests} == {0}
    received = sorted(request["headers"]["apns-id"] for request in apns.requests)
    assert received == sorted(apns_id(f"d-{n}") for n in range(100))
    assert len({request["jwt"] for request in apns.requests}) == 1


@pytest.mark.parametrize(
    ("answer", "status", "retry_after", "words"),
    [
        ((400, {"reason": "BadDeviceToken"}), "bounced", None, "BadDeviceToken"),
        ((400, {"reason": "DeviceTokenNotForTopic"}), "bounced", None, "DeviceTokenNotForTopic"),
        ((410, {"reason": "Unregistered", "timestamp": 1_700_000_000_000}), "bounced", None,
         "not been valid since 2023-11-14T22:13:20+00:00"),
        ((429, {"reason": "TooManyRequests"}), "retry", None, "TooManyRequests"),
        ((500, {"reason": "InternalServerError"}), "retry", None, "InternalServerError"),
        ((503, {"reason": "ServiceUnavailable"}), "retry", None, "ServiceUnavailable"),
        ((503, {"reason": "Shutdown"}), "retry", None, "Shutdown"),
        ((413, {"reason": "PayloadTooLarge"}), "failed", None, "PayloadTooLarge"),
        ((400, {"reason": "BadTopic"}), "failed", None, "APNs 400 BadTopic"),
    ],
)  # fmt: skip
def test_apns_errors_are_classified(apns, apns_settings, answer, status, retry_after, words):
    apns.errors[DEVICE] = answer
    [outcome] = apns_send(apns_settings, push(title="Hi"))
    assert outcome.status == status
    assert outcome.address_dead is (status == "bounced")
    assert outcome.retry_after == retry_after
    assert words in outcome.detail


def test_apns_payload_too_large_is_refused_by_the_server(apns, apns_settings):
    [outcome] = apns_send(apns_settings, push(title="Hi", body="x" * 5000))
    assert (outcome.status, outcome.detail) == ("failed", "APNs 413 PayloadTooLarge")


def test_apns_expired_provider_token_is_replaced_and_sent(apns, apns_settings):
    async def scenario() -> Outcome:
        sender = ApnsSender(apns_settings)
        try:
            await sender.send(push("d-1", title="Hi"))
            apns.expire_seen_tokens()
            return await sender.send(push("d-2", title="Hi"))
        finally:
            await sender.aclose()

    outcome = run(scenario())
    assert outcome.status == "sent", outcome.detail
    assert apns.refused == [(apns_id("d-2"), "ExpiredProviderToken")]
    first, second = apns.requests
    assert first["jwt"] != second["jwt"]


def test_apns_provider_token_is_reused_for_50_minutes(apns, apns_settings):
    now = [time.time() - 55 * 60]

    async def scenario() -> None:
        sender = ApnsSender(apns_settings, clock=lambda: now[0])
        try:
            for minutes in (0, 49, 2):
                now[0] += minutes * 60
                assert (await sender.send(push(f"d-{minutes}", title="Hi"))).status == "sent"
        finally:
            await sender.aclose()

    run(scenario())
    first, second, third = (request["jwt"] for request in apns.requests)
    assert first == second != third
    assert _jwt_parts(third)[1]["iat"] == int(now[0])


def test_apns_wrong_signing_key_is_failed(apns, apns_settings):
    settings = replace(apns_settings, private_key=_pem(ec.generate_private_key(ec.SECP256R1())))
    [outcome] = apns_send(settings, push(title="Hi"))
    assert (outcome.status, outcome.detail) == ("failed", "APNs 403 InvalidProviderToken")
    assert apns.requests == []


def test_apns_untrusted_or_unreachable_server_is_retry(apns_settings):
    closed = replace(apns_settings, base_url=f"https://127.0.0.1:{free_port()}")
    [unreachable] = apns_send(closed, push(title="Hi"))
    assert unreachable.status == "retry"
    [untrusted] = apns_send(replace(apns_settings, verify=True), push(title="Hi"))
    assert untrusted.status == "retry"
    assert "ConnectError" in untrusted.detail


# --- payload validation ---------------------------------------------------------------------

BUILDERS: list[Callable[[Envelope], Any]] = [build_fcm_message, build_apns_payload]


@pytest.mark.parametrize("build", BUILDERS)
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"layout": "poster", "title": "Hi"}, "unknown push layout 'poster'"),
        ({"layout": "banner", "title": "Hi"}, "a banner push needs an image URL"),
        ({"layout": "carousel", "title": "Hi", "items": [{"title": "one"}]}, "at least 2 items"),
        ({"layout": "carousel", "title": "Hi", "items": [{"title": "a"}, {}]}, "item 2 needs"),
        ({"layout": "rating"}, "a rating push needs a title or a body"),
        ({"title": "Hi", "data": {"delivery_id": "forged"}}, "'delivery_id' is reserved"),
        ({"title": "Hi", "data": {"google.c.a": "1"}}, "'google.c.a' is reserved"),
        ({"title": "Hi", "data": {"when": object()}}, "push data is not JSON"),
        ({"title": 5}, "push title must be a string"),
    ],
)
def test_invalid_content_is_refused_with_a_reason(build, content, reason):
    with pytest.raises(ValueError, match=reason):
        build(push(**content))


def test_apns_invalid_content_fails_without_calling_apns(apns, apns_settings):
    [outcome] = apns_send(apns_settings, push(layout="carousel", title="Hi", items=[]))
    assert outcome.status == "failed"
    assert (
        outcome.detail == "invalid push content: a carousel push needs a list of at least 2 items"
    )
    assert apns.requests == apns.refused == []


def test_senders_satisfy_the_protocol(fcm_settings, apns_settings):
    async def build() -> list[Any]:
        senders = [FcmSender(fcm_settings), ApnsSender(apns_settings)]
        for sender in senders:
            await sender.aclose()
        return senders

    fcm_sender, apns_sender = run(build())
    assert isinstance(fcm_sender, Sender) and isinstance(apns_sender, Sender)
    assert (fcm_sender.channel, fcm_sender.provider) == ("push", "fcm")
    assert (apns_sender.channel, apns_sender.provider) == ("push", "apns")
