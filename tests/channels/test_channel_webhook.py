"""The webhook channel against a real local receiver.

The receiver checks Standard Webhooks signatures with its own implementation of the spec
(hmac and base64 directly) and dedupes by ``Idempotency-Key`` the way Stripe does: the first
request with a key is applied and its answer stored; a replay gets the stored answer with
``Idempotent-Replayed: true``; the same key with different parameters is a 400
``idempotency_error``; the same key while the first is still running is a 409.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from tls_helpers import self_signed, server_context

from channels.base import Envelope, Outcome, Sender
from channels.webhook import (
    InvalidSignature,
    WebhookSender,
    WebhookSettings,
    decode_secret,
    new_secret,
    verify_signature,
)

SECRET = new_secret()
TOLERANCE = 300

Answer = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Received:
    """One request as it arrived on the wire."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _json(status: int, payload: Any, **headers: str) -> Answer:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(payload).encode()


class Receiver:
    """A customer's API: verifies signatures, dedupes by Idempotency-Key, answers by path."""

    def __init__(self, secret: str) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.lock = threading.Lock()
        self.connections = 0
        self.received: list[Received] = []
        self.applied: Counter[str] = Counter()
        self.stored: dict[str, tuple[tuple[str, str, bytes], Answer | None]] = {}
        self.orders = 0
        self.url = ""

    def requests_for(self, delivery_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.headers.get("idempotency-key") == delivery_id]

    def signature_problem(self, headers: dict[str, str], body: bytes) -> str | None:
        """The spec, implemented here independently of channels.webhook."""
        msg_id = headers.get("webhook-id")
        stamp = headers.get("webhook-timestamp")
        signatures = headers.get("webhook-signature")
        if not (msg_id and stamp and signatures):
            return "missing webhook-id, webhook-timestamp or webhook-signature"
        if abs(time.time() - int(stamp)) > TOLERANCE:
            return "timestamp out of tolerance"
        mac = hmac.new(self.key, msg_id.encode() + b"." + stamp.encode() + b"." + body, "sha256")
        expected = "v1," + base64.b64encode(mac.digest()).decode()
        if not any(hmac.compare_digest(s, expected) for s in signatures.split(" ")):
            return "no signature matches"
        return None

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        with self.lock:
            self.received.append(Received(method, path, headers, body))
        problem = self.signature_problem(headers, body)
        if problem:
            return _json(401, {"error": {"code": "bad_signature", "message": problem}})
        key = headers.get("idempotency-key")
        if not key:
            return _json(400, {"error": {"code": "no_key", "message": "Idempotency-Key needed"}})
        fingerprint = (method, path, body)
        with self.lock:
            stored = self.stored.get(key)
            if stored is None:
                self.stored[key] = (fingerprint, None)
                self.applied[key] += 1
        if stored is not None:
            first, answer = stored
            if first != fingerprint:
                return _json(
                    400,
                    {
                        "error": {
                            "type": "idempotency_error",
                            "message": "Keys for idempotent requests can only be used with the "
                            "same parameters they were first used with.",
                        }
                    },
                )
            if answer is None:
                return _json(409, {"error": {"type": "idempotency_error"}})
            status, answer_headers, payload = answer
            return status, {**answer_headers, "Idempotent-Replayed": "true"}, payload
        answer = self.route(path, headers, body)
        with self.lock:
            self.stored[key] = (fingerprint, answer)
        return answer

    def route(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        parts = urlsplit(path)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        if parts.path == "/ok":
            with self.lock:
                self.orders += 1
                order = self.orders
            return _json(200, {"tier": "gold", "order": order})
        if parts.path.startswith("/status/"):
            code = int(parts.path.rsplit("/", 1)[1])
            extra = {"Retry-After": query["retry_after"]} if "retry_after" in query else {}
            error = {"code": f"http_{code}", "message": f"the receiver said {code}"}
            return _json(code, {"error": error}, **extra)
        if parts.path == "/redirect":
            return 302, {"Location": query["to"], "Content-Type": "text/plain"}, b"moved"
        if parts.path == "/slow":
            time.sleep(float(query["seconds"]))
            return _json(200, {"slow": True})
        if parts.path == "/big":
            size = int(query["bytes"])
            if query["type"] == "json":
                return _json(200, {"pad": "x" * (size - 10)})
            return 200, {"Content-Type": "text/plain; charset=utf-8"}, ("é" * size).encode()
        if parts.path == "/text":
            return 200, {"Content-Type": "text/plain"}, b"accepted"
        if parts.path == "/cookie":
            return _json(200, {"cookie": headers.get("cookie")}, **{"Set-Cookie": "sid=s3cr3t"})
        return _json(404, {"error": {"code": "no_route"}})


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # a burst of new connections must not overflow the backlog
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected here, not an error."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable
    disable_nagle_algorithm = True  # headers and body go in two writes; don't stall the second
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.receiver.lock:
            self.server.receiver.connections += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/trickle":
            # A byte of the head every 0.1 s: no single wait is long, the whole answer is.
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n":
                self.wfile.write(bytes([byte]))
                time.sleep(0.1)
            self.close_connection = True
            return
        if self.path == "/cut":
            # Promise 100 bytes, send 9 and hang up: the status arrived, the body did not.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"accepted ")
            self.close_connection = True
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, answer_headers, payload = self.server.receiver.handle(
            self.command, self.path, headers, body
        )
        self.send_response(status)
        for name, value in answer_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


@contextmanager
def running_receiver(secret: str = SECRET, tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    receiver = Receiver(secret)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = receiver
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls else "http"
    receiver.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as started:
        yield started


def envelope(url: str, delivery_id: str | None = None, **content: Any) -> Envelope:
    content.setdefault("body", {"person": "p1", "event": "Order Completed"})
    return Envelope(
        delivery_id=delivery_id or f"dlv_{uuid.uuid4().hex}",
        channel="webhook",
        to=url,
        content=content,
        person_id="p1",
    )


def send(*envelopes: Envelope, settings: WebhookSettings | None = None) -> list[Outcome]:
    async def run() -> list[Outcome]:
        sender = WebhookSender(settings or WebhookSettings(secret=SECRET))
        try:
            return list(await asyncio.gather(*(sender.send(e) for e in envelopes)))
        finally:
            await sender.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("path", "status", "retry_after"),
    [
        ("/ok", "sent", None),
        ("/status/202", "sent", None),
        ("/status/408", "retry", None),
        ("/status/425", "retry", None),
        ("/status/429?retry_after=7", "retry", 7.0),
        ("/status/500", "retry", None),
        ("/status/503?retry_after=30", "retry", 30.0),
        ("/status/400", "failed", None),
        ("/status/404", "failed", None),
        ("/status/409", "failed", None),
        ("/status/422", "failed", None),
        ("/status/410", "bounced", None),
        ("/redirect?to=https://elsewhere.example/hook", "failed", None),
    ],
)
def test_classification(
    receiver: Receiver, path: str, status: str, retry_after: float | None
) -> None:
    sent = envelope(receiver.url + path)
    (outcome,) = send(sent)
    code = int(path.split("?")[0].rsplit("/", 1)[1]) if "/status/" in path else None
    code = code or (302 if path.startswith("/redirect") else 200)
    assert outcome.status == status, outcome.detail
    assert outcome.provider == "webhook"
    assert outcome.detail.startswith(f"HTTP {code}")
    assert outcome.retry_after == retry_after
    assert outcome.address_dead == (status == "bounced")
    assert outcome.provider_message_id == (sent.delivery_id if status == "sent" else None)
    assert outcome.response is not None and outcome.response["status"] == code
    assert len(receiver.requests_for(sent.delivery_id)) == 1


def test_retry_after_as_http_date(receiver: Receiver) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    (outcome,) = send(envelope(f"{receiver.url}/status/503?retry_after={quote(when)}"))
    assert outcome.status == "retry"
    assert outcome.retry_after is not None and 110 <= outcome.retry_after <= 120


def test_refusal_quotes_the_receivers_words(receiver: Receiver) -> None:
    (outcome,) = send(envelope(receiver.url + "/status/400"))
    assert outcome.status == "failed"
    assert "http_400" in outcome.detail and "the receiver said 400" in outcome.detail


def test_redirect_is_not_followed(receiver: Receiver) -> None:
    sent = envelope(receiver.url + "/redirect?to=/ok")
    (outcome,) = send(sent)
    assert outcome.status == "failed"
    assert f"redirect to {receiver.url}/ok" in outcome.detail
    assert outcome.response is not None and outcome.response["headers"]["location"] == "/ok"
    assert [r.path for r in receiver.requests_for(sent.delivery_id)] == ["/redirect?to=/ok"]


def test_slow_answer_is_retry(receiver: Receiver) -> None:
    started = time.perf_counter()
    (outcome,) = send(
        envelope(receiver.url + "/slow?seconds=2"),
        settings=WebhookSettings(secret=SECRET, timeout=0.3),
    )
    assert outcome.status == "retry"
    assert "within 0.3 s" in outcome.detail and "SocketTimeoutError" in outcome.detail
    assert outcome.response is None
    assert time.perf_counter() - started < 1.5


def test_whole_call_is_limited(receiver: Receiver) -> None:
    started = time.perf_counter()
    (outcome,) = send(
        envelope(receiver.url + "/trickle"), settings=WebhookSettings(secret=SECRET, timeout=0.2)
    )
    assert outcome.status == "retry"
    assert "took over 0.6 s in all (TimeoutError)" in outcome.detail
    assert time.perf_counter() - started < 1.5


def test_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    with running_receiver(tls=server_context(*self_signed(tmp_path)[:2])) as receiver:
        (outcome,) = send(envelope(receiver.url + "/ok"))
        assert receiver.url.startswith("https://")
        assert outcome.status == "retry"
        assert "ClientConnectorCertificateError" in outcome.detail
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.detail
        assert receiver.received == []


def test_refused_connection_is_retry() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (outcome,) = send(envelope(f"http://127.0.0.1:{port}/hook"))
    assert outcome.status == "retry"
    assert "could not reach 127.0.0.1: ClientConnectorError" in outcome.detail


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "mailto:ops@example.com",
        "http:///hook",
        "hook",
        "",
        "http://exa mple.com/hook",
        "http://[::1/hook",
    ],
)
def test_only_http_urls_are_called(receiver: Receiver, url: str) -> None:
    sent = envelope(url)
    (outcome,) = send(sent)
    assert outcome.status == "failed"
    assert outcome.detail.startswith("not sent:") and "http" in outcome.detail
    assert receiver.requests_for(sent.delivery_id) == []


def test_unknown_method_is_failed(receiver: Receiver) -> None:
    (outcome,) = send(envelope(receiver.url + "/ok", method="TRACE"))
    assert outcome.status == "failed"
    assert "method TRACE is not one of POST, PUT, PATCH, GET, DELETE" in outcome.detail


def test_broken_json_says_where(receiver: Receiver) -> None:
    body = '{\n  "tier": "gold",\n  "points": ,\n  "name": "Sara"\n}'
    sent = envelope(receiver.url + "/ok", body=body)
    (outcome,) = send(sent)
    assert outcome.status == "failed"
    assert "not valid JSON: Expecting value at line 3, column 13" in outcome.detail
    assert "'  \"points\": ,'" in outcome.detail
    assert receiver.requests_for(sent.delivery_id) == []


def test_body_that_cannot_be_json_is_failed(receiver: Receiver) -> None:
    (outcome,) = send(envelope(receiver.url + "/ok", body={"at": datetime.now(UTC)}))
    assert outcome.status == "failed"
    assert "cannot be written as JSON" in outcome.detail and "datetime" in outcome.detail
    (outcome,) = send(
        envelope(receiver.url + "/ok", body={"a": 1}, headers={"Content-Type": "text/plain"})
    )
    assert outcome.status == "failed"
    assert "Content-Type is text/plain" in outcome.detail


def test_rendered_json_text_is_sent_byte_for_byte(receiver: Receiver) -> None:
    body = '{ "name": "سارا",\n  "points": 12 }'
    sent = envelope(receiver.url + "/ok", body=body, method="put")
    assert send(sent)[0].status == "sent"
    (got,) = receiver.requests_for(sent.delivery_id)
    assert got.method == "PUT"
    assert got.body == body.encode()
    assert got.headers["content-type"] == "application/json"


def test_dict_body_is_serialised_as_json(receiver: Receiver) -> None:
    body = {"name": "سارا", "points": 12, "tags": ["vip"]}
    sent = envelope(receiver.url + "/ok", body=body)
    assert send(sent)[0].status == "sent"
    (got,) = receiver.requests_for(sent.delivery_id)
    assert got.method == "POST"
    assert json.loads(got.body) == body
    assert got.headers["content-type"] == "application/json"


def test_non_json_content_type_is_sent_as_is(receiver: Receiver) -> None:
    body = "name=Sara&points={not json"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    sent = envelope(receiver.url + "/ok", body=body, headers=headers)
    assert send(sent)[0].status == "sent"
    (got,) = receiver.requests_for(sent.delivery_id)
    assert got.body == body.encode()
    assert got.headers["content-type"] == "application/x-www-form-urlencoded"


def test_get_without_body(receiver: Receiver) -> None:
    sent = envelope(receiver.url + "/ok?person=p1", method="GET", body=None)
    assert send(sent)[0].status == "sent"
    (got,) = receiver.requests_for(sent.delivery_id)
    assert (got.method, got.body) == ("GET", b"")
    assert "content-type" not in got.headers


def test_template_cannot_override_signed_headers(receiver: Receiver) -> None:
    headers = {
        "Idempotency-Key": "forged",
        "webhook-signature": "v1,Zm9yZ2Vk",
        "Webhook-Id": "forged",
        "Content-Length": "3",
        "X-Tenant": "acme",
        "User-Agent": "acme-journeys",
    }
    sent = envelope(receiver.url + "/ok", headers=headers)
    (outcome,) = send(sent)
    assert outcome.status == "sent", outcome.detail  # the receiver's own check passed
    (got,) = receiver.requests_for(sent.delivery_id)
    assert got.headers["webhook-id"] == sent.delivery_id
    assert got.headers["x-tenant"] == "acme"
    assert got.headers["user-agent"] == "acme-journeys"
    assert "Zm9yZ2Vk" not in got.headers["webhook-signature"]
    assert "Idempotency-Key, webhook-signature, Webhook-Id, Content-Length" in outcome.detail


def test_header_injection_is_refused(receiver: Receiver) -> None:
    sent = envelope(receiver.url + "/ok", headers={"X-Note": "hi\r\nX-Admin: yes"})
    (outcome,) = send(sent)
    assert outcome.status == "failed"
    assert "'X-Note' has a line break" in outcome.detail
    assert receiver.requests_for(sent.delivery_id) == []


def test_kept_response(receiver: Receiver) -> None:
    (outcome,) = send(envelope(receiver.url + "/ok"))
    response = outcome.response
    assert response is not None
    assert set(response) == {"status", "headers", "body", "truncated", "elapsed_ms"}
    assert response["status"] == 200
    assert response["body"]["tier"] == "gold"
    assert response["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in response["headers"])
    assert "date" not in response["headers"]
    assert response["truncated"] is False
    assert response["elapsed_ms"] > 0
    (outcome,) = send(envelope(receiver.url + "/text"))
    assert outcome.response is not None and outcome.response["body"] == "accepted"


def test_kept_response_is_capped(receiver: Receiver) -> None:
    capped = WebhookSettings(secret=SECRET, max_response_bytes=1024)
    small, large = send(
        envelope(receiver.url + "/big?type=json&bytes=1000"),
        envelope(receiver.url + "/big?type=json&bytes=200000"),
        settings=capped,
    )
    assert small.response is not None and large.response is not None
    assert small.response["truncated"] is False and small.response["body"]["pad"].startswith("x")
    assert large.status == "sent"
    assert large.response["truncated"] is True
    assert isinstance(large.response["body"], str)  # cut JSON cannot parse; the text is kept
    assert len(large.response["body"].encode()) == 1024
    assert large.response["body"].startswith('{"pad": "xxx')


def test_connection_left_with_an_unread_body_is_not_reused(receiver: Receiver) -> None:
    one_connection = WebhookSettings(secret=SECRET, max_response_bytes=1024, max_connections=1)

    async def run() -> list[Outcome]:
        sender = WebhookSender(one_connection)
        try:
            big = await sender.send(envelope(receiver.url + "/big?type=json&bytes=200000"))
            return [big, await sender.send(envelope(receiver.url + "/ok"))]
        finally:
            await sender.aclose()

    big, small = asyncio.run(run())
    assert big.response is not None and big.response["truncated"] is True
    assert small.status == "sent", small.detail
    assert small.response is not None and small.response["body"]["tier"] == "gold"


def test_cap_does_not_split_a_character(receiver: Receiver) -> None:
    (outcome,) = send(
        envelope(receiver.url + "/big?type=text&bytes=3000"),
        settings=WebhookSettings(secret=SECRET, max_response_bytes=1023),
    )
    assert outcome.response is not None
    assert outcome.response["body"] == "é" * 511


def test_body_cut_off_after_the_status_still_counts_the_status(receiver: Receiver) -> None:
    (outcome,) = send(envelope(receiver.url + "/cut"))
    assert outcome.status == "sent"
    assert "the response body was cut off (ClientPayloadError)" in outcome.detail
    assert outcome.response is not None
    assert outcome.response["truncated"] is True and outcome.response["body"] == "accepted "


def test_replay_is_answered_from_the_store_not_applied_again(receiver: Receiver) -> None:
    sent = envelope(receiver.url + "/ok", body={"a": 1, "b": [1, 2]})
    first, again = send(sent)[0], send(sent)[0]
    assert first.status == again.status == "sent"
    assert first.response is not None and again.response is not None
    assert again.response["headers"]["idempotent-replayed"] == "true"
    assert again.response["body"] == first.response["body"]
    assert receiver.applied[sent.delivery_id] == 1
    one, two = receiver.requests_for(sent.delivery_id)
    assert one.body == two.body
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == sent.delivery_id


def test_same_key_with_other_body_is_refused_by_the_receiver(receiver: Receiver) -> None:
    first = envelope(receiver.url + "/ok", body={"a": 1})
    second = envelope(receiver.url + "/ok", delivery_id=first.delivery_id, body={"a": 2})
    assert send(first)[0].status == "sent"
    (outcome,) = send(second)
    assert outcome.status == "failed"
    assert "idempotency_error" in outcome.detail
    assert receiver.applied[first.delivery_id] == 1


def test_cookies_are_not_carried_between_calls(receiver: Receiver) -> None:
    first, second = envelope(receiver.url + "/cookie"), envelope(receiver.url + "/cookie")

    async def run() -> list[Outcome]:
        sender = WebhookSender(WebhookSettings(secret=SECRET))
        try:
            return [await sender.send(first), await sender.send(second)]
        finally:
            await sender.aclose()

    outcomes = asyncio.run(run())
    assert [o.status for o in outcomes] == ["sent", "sent"]
    assert outcomes[1].response is not None and outcomes[1].response["body"]["cookie"] is None


def test_unsigned_sender_is_rejected_by_a_verifying_receiver(receiver: Receiver) -> None:
    sent = envelope(receiver.url + "/ok")
    (outcome,) = send(sent, settings=WebhookSettings())
    assert outcome.status == "failed"
    assert "bad_signature" in outcome.detail and "missing" in outcome.detail
    (got,) = receiver.requests_for(sent.delivery_id)
    assert "webhook-signature" not in got.headers
    assert got.headers["webhook-id"] == sent.delivery_id


@pytest.fixture(scope="module")
def signed(receiver: Receiver) -> Received:
    """One request as the sender signed it and the receiver got it."""
    sent = envelope(receiver.url + "/ok", body={"person": "p1", "tier": "gold"})
    assert send(sent)[0].status == "sent"
    (got,) = receiver.requests_for(sent.delivery_id)
    return got


def test_verify_signature_accepts_what_the_sender_signed(signed: Received) -> None:
    verify_signature(SECRET, signed.headers, signed.body)
    verify_signature(SECRET, {k.upper(): v for k, v in signed.headers.items()}, signed.body)
    verify_signature(SECRET.removeprefix("whsec_"), signed.headers, signed.body.decode())


def test_verify_signature_rejects_a_tampered_body(signed: Received) -> None:
    tampered = signed.body.replace(b"gold", b"plat")
    with pytest.raises(InvalidSignature, match="no matching signature"):
        verify_signature(SECRET, signed.headers, tampered)


def test_verify_signature_rejects_another_secret(signed: Received) -> None:
    with pytest.raises(InvalidSignature, match="no matching signature"):
        verify_signature(new_secret(), signed.headers, signed.body)


def test_verify_signature_rejects_stale_and_future_timestamps(signed: Received) -> None:
    stamp = int(signed.headers["webhook-timestamp"])
    verify_signature(SECRET, signed.headers, signed.body, now=stamp + TOLERANCE)
    with pytest.raises(InvalidSignature, match="301 s old, over 300"):
        verify_signature(SECRET, signed.headers, signed.body, now=stamp + TOLERANCE + 1)
    with pytest.raises(InvalidSignature, match="in the future"):
        verify_signature(SECRET, signed.headers, signed.body, now=stamp - TOLERANCE - 1)
    with pytest.raises(InvalidSignature, match="not unix seconds"):
        verify_signature(SECRET, {**signed.headers, "webhook-timestamp": "soon"}, signed.body)


def test_verify_signature_names_a_missing_header(signed: Received) -> None:
    headers = {k: v for k, v in signed.headers.items() if k != "webhook-signature"}
    with pytest.raises(InvalidSignature, match="missing header webhook-signature"):
        verify_signature(SECRET, headers, signed.body)


def test_verify_signature_with_several_signatures(signed: Received) -> None:
    real = signed.headers["webhook-signature"]
    other = base64.b64encode(b"\0" * 32).decode()
    rotating = {**signed.headers, "webhook-signature": f"v1,{other} v1a,{other} {real}"}
    verify_signature(SECRET, rotating, signed.body)
    wrong = {**signed.headers, "webhook-signature": f"v1,{other} v2,{real[3:]}"}
    with pytest.raises(InvalidSignature, match="among 1 v1 signature"):
        verify_signature(SECRET, wrong, signed.body)
    only_other_versions = {**signed.headers, "webhook-signature": f"v1a,{real[3:]}"}
    with pytest.raises(InvalidSignature, match="no v1 signature"):
        verify_signature(SECRET, only_other_versions, signed.body)


def test_500_concurrent_sends_are_applied_once_over_few_connections() -> None:
    with running_receiver() as receiver:
        envelopes = [envelope(receiver.url + "/ok", body={"n": n}) for n in range(500)]
        resent = envelopes[::5]
        settings = WebhookSettings(secret=SECRET)

        async def run() -> tuple[list[Outcome], list[Outcome]]:
            sender = WebhookSender(settings)
            try:
                first = await asyncio.gather(*(sender.send(e) for e in envelopes))
                # Re-sent, as after a crash before the outbox recorded the first outcomes.
                again = await asyncio.gather(*(sender.send(e) for e in resent))
                return list(first), list(again)
            finally:
                await sender.aclose()

        first, again = asyncio.run(run())
        assert [o.status for o in first + again] == ["sent"] * 600
        assert [o.provider_message_id for o in first] == [e.delivery_id for e in envelopes]
        assert all(o.response and o.response["headers"]["idempotent-replayed"] for o in again)
        assert [o.response["body"] for o in first[::5] if o.response] == [
            o.response["body"] for o in again if o.response
        ]
        assert len(receiver.received) == 600
        assert receiver.applied == Counter({e.delivery_id: 1 for e in envelopes})
        assert receiver.orders == 500
        assert receiver.connections <= settings.max_connections < 500


def test_secrets_and_settings() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(decode_secret(secret)) == 32
    assert new_secret() != secret
    with pytest.raises(ValueError, match="not base64"):
        WebhookSettings(secret="whsec_not-base64!")
    with pytest.raises(ValueError, match="set by the sender"):
        WebhookSettings(default_headers={"Idempotency-Key": "fixed"})
    sender = WebhookSender()
    assert isinstance(sender, Sender)
    asyncio.run(sender.aclose())
