"""A customer's webhook endpoint for delivery tests: verifies signatures, honours idempotency keys.

It checks the Standard Webhooks signature with its own code (not Safar's), and applies each
``Idempotency-Key`` once the way Stripe-style APIs do: a repeated key gets the stored answer
and is counted as a replay. Paths can be scripted to answer other statuses first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """What the endpoint saw; ``script[path]`` is a list of (status, headers) answered first."""

    def __init__(self, secret: str):
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.lock = threading.Lock()
        self.applied: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.bodies: dict[str, dict] = {}
        self.bad_signatures = 0
        self.script: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.url = ""

    def answer(self, path: str, key: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
        expected = base64.b64encode(
            hmac.new(self.key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        ).decode()
        offered = [s.partition(",")[2] for s in headers.get("webhook-signature", "").split()]
        with self.lock:
            self.requests[key] += 1
            if not any(hmac.compare_digest(expected, s) for s in offered):
                self.bad_signatures += 1
                return 401, {"error": "bad signature"}
            scripted = self.script.get(path)
            if scripted:
                status, extra = scripted.pop(0)
                return status, {"error": "scripted", **extra}
            if key not in self.applied:  # a replayed key is answered, not applied again
                self.applied[key] = 1
                self.bodies[key] = json.loads(body or b"null")
            return 200, {"ok": True, "tier": "gold"}


@contextmanager
def webhook_receiver(secret: str) -> Iterator[Receiver]:
    """Serve a :class:`Receiver` on a free port of 127.0.0.1 for the duration."""
    receiver = Receiver(secret)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("content-length", 0))
            body = self.rfile.read(length)
            if len(body) < length:  # the sender died mid-request: nothing arrived
                self.close_connection = True
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = receiver.answer(
                self.path, headers.get("idempotency-key", ""), body, headers
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            if status in (429, 503):
                self.send_header("retry-after", "120")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # The default backlog of 5 resets connections when a dispatcher opens dozens at once.
        request_queue_size = 256

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a killed dispatcher resets its connections; that is the test, not an error

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
