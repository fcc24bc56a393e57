"""Local stand-ins for the providers, so the demo sends real messages that stay on the machine.

One process serves an SMTP server (aiosmtpd) and an HTTP server that speaks the parts of
Kavenegar (send, with ``localid`` idempotency, and status polls), FCM HTTP v1 (its OAuth2
token endpoint and ``messages:send``) and a webhook receiver that checks the Standard Webhooks
signature. Every message that arrives is recorded in ``<home>/delivery/local_sinks.sqlite``
with its idempotency key, so anyone can see what a provider would have received — and a
test can check that each delivery arrived once.

The senders talk to these exactly as to the real providers; only their base URLs differ.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sqlite3
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from safar.config import SafarHome

FCM_PROJECT = "safar-demo"
WEBHOOK_PATH = "/webhook/orders"
KAVENEGAR_API_KEY = "demo-key"
_SCHEMA = """
create table if not exists received (
    id integer primary key,
    received_at real not null,
    channel text not null,
    provider text not null,
    idempotency_key text,
    recipient text not null,
    summary text not null,
    payload text not null
)
"""


def store_path(home: SafarHome) -> Path:
    return home.root / "delivery" / "local_sinks.sqlite"


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=30)
    con.execute("pragma journal_mode = wal")  # readers (received()) read while the sink writes
    con.execute(_SCHEMA)
    return con


@dataclass(frozen=True)
class Received:
    """One message a local sink received."""

    received_at: float
    channel: str
    provider: str
    idempotency_key: str | None
    recipient: str
    summary: str
    payload: str


def received(home: SafarHome, limit: int | None = None) -> list[Received]:
    """What the local sinks received, newest first (nothing when they never ran)."""
    path = store_path(home)
    if not path.exists():
        return []
    with closing(_open(path)) as con:
        rows = con.execute(
            "select received_at, channel, provider, idempotency_key, recipient, summary, payload"
            " from received order by id desc limit ?",
            (-1 if limit is None else limit,),
        ).fetchall()
    return [Received(*row) for row in rows]


class _Recorder:
    """Writes what arrives; one connection, used from the sink's event loop only."""

    def __init__(self, path: Path) -> None:
        self.con = _open(path)

    def add(
        self,
        channel: str,
        provider: str,
        key: str | None,
        recipient: str,
        summary: str,
        payload: Any,
    ) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        with self.con:
            self.con.execute(
                "insert into received (received_at, channel, provider, idempotency_key,"
                " recipient, summary, payload) values (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), channel, provider, key, recipient, summary[:200], text),
            )


class _SmtpHandler:
    """aiosmtpd's handler: record each message, once per recipient."""

    def __init__(self, recorder: _Recorder) -> None:
        self.recorder = recorder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        message = message_from_bytes(raw, policy=policy.default)
        key = str(message.get("Message-ID", "")).strip("<>").split("@")[0] or None
        for recipient in envelope.rcpt_tos:
            self.recorder.add(
                "email", "smtp", key, recipient, str(message.get("Subject", "")), raw.decode()
            )
        return "250 Message accepted for delivery"


class _Kavenegar:
    """Kavenegar's send and status calls; a repeated ``localid`` returns the first message."""

    def __init__(self, recorder: _Recorder) -> None:
        self.recorder = recorder
        self.ids = itertools.count(int(time.time()) * 1000)
        self.by_localid: dict[str, dict[str, Any]] = {}
        self.sent: set[int] = set()

    def send(self, form: Mapping[str, str]) -> dict[str, Any]:
        receptor, text, localid = form.get("receptor"), form.get("message"), form.get("localid")
        if not receptor or not text:
            return {"return": {"status": 411, "message": "receptor and message are required"}}
        if localid and localid in self.by_localid:
            return {
                "return": {"status": 200, "message": "تایید شد"},
                "entries": [self.by_localid[localid]],
            }
        message_id = next(self.ids)
        entry = {
            "messageid": message_id,
            "message": text,
            "status": 1,
            "statustext": "در صف ارسال",
            "sender": "10004346",
            "receptor": receptor,
            "date": int(time.time()),
            "cost": 120,
        }
        if localid:
            self.by_localid[localid] = entry
        self.sent.add(message_id)
        self.recorder.add("sms", "kavenegar", localid, receptor, text, form)
        return {"return": {"status": 200, "message": "تایید شد"}, "entries": [entry]}

    def status(self, form: Mapping[str, str]) -> dict[str, Any]:
        # A local "operator" delivers at once: every message sent here reports delivered (10).
        entries = []
        for text in (form.get("messageid") or "").split(","):
            message_id = int(text) if text.strip().isdigit() else -1
            if message_id in self.sent:
                entries.append({"messageid": message_id, "status": 10, "statustext": "رسیده"})
            else:
                entries.append({"messageid": message_id, "status": 100, "statustext": "نامعتبر"})
        return {"return": {"status": 200, "message": "تایید شد"}, "entries": entries}


def _app(recorder: _Recorder, webhook_secret: str | None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from channels.webhook import InvalidSignature, verify_signature

    kavenegar = _Kavenegar(recorder)
    fcm_count = itertools.count(1)

    def refused_key(request: Request) -> JSONResponse | None:
        if request.path_params["api_key"] == KAVENEGAR_API_KEY:
            return None
        answer = {"return": {"status": 403, "message": "کد شناسائی API-Key معتبر نمی‌باشد"}}
        return JSONResponse(answer, status_code=403)

    async def kavenegar_send(request: Request) -> JSONResponse:
        if refused := refused_key(request):
            return refused
        answer = kavenegar.send(dict(await request.form()))
        return JSONResponse(answer, status_code=answer["return"]["status"])

    async def kavenegar_status(request: Request) -> JSONResponse:
        if refused := refused_key(request):
            return refused
        return JSONResponse(kavenegar.status(dict(await request.form())))

    async def fcm_token(request: Request) -> JSONResponse:
        form = await request.form()
        if not form.get("assertion"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        return JSONResponse({"access_token": "ya29.local-sink", "expires_in": 3599})

    async def fcm_send(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != "Bearer ya29.local-sink":
            error = {"code": 401, "message": "invalid credentials", "status": "UNAUTHENTICATED"}
            return JSONResponse({"error": error}, status_code=401)
        message = (await request.json())["message"]
        note = message.get("notification") or {}
        summary = " — ".join(str(note[k]) for k in ("title", "body") if note.get(k))
        key = (message.get("data") or {}).get("delivery_id")
        recorder.add("push", "fcm", key, message.get("token", ""), summary, message)
        name = f"projects/{FCM_PROJECT}/messages/{next(fcm_count)}"
        return JSONResponse({"name": name})

    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        if webhook_secret:
            try:
                verify_signature(webhook_secret, request.headers, body)
            except InvalidSignature as refused:
                return JSONResponse({"error": str(refused)}, status_code=401)
        key = request.headers.get("idempotency-key")
        recorder.add(
            "webhook", "webhook", key, str(request.url), body.decode()[:200], body.decode()
        )
        return JSONResponse({"ok": True, "idempotency_key": key})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/kavenegar/v1/{api_key}/sms/send.json", kavenegar_send, methods=["POST"]),
            Route("/kavenegar/v1/{api_key}/sms/status.json", kavenegar_status, methods=["POST"]),
            Route("/fcm/token", fcm_token, methods=["POST"]),
            Route(f"/fcm/v1/projects/{FCM_PROJECT}/messages:send", fcm_send, methods=["POST"]),
            Route(WEBHOOK_PATH, webhook, methods=["POST"]),
        ]
    )


async def serve_sinks(
    home: SafarHome, smtp_port: int, http_port: int, webhook_secret: str | None = None
) -> None:
    """Serve the SMTP and HTTP sinks on 127.0.0.1 until SIGTERM or SIGINT."""
    import uvicorn
    from aiosmtpd.smtp import SMTP

    recorder = _Recorder(store_path(home))
    loop = asyncio.get_running_loop()
    handler = _SmtpHandler(recorder)
    smtp = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.localhost", loop=loop), "127.0.0.1", smtp_port
    )
    config = uvicorn.Config(
        _app(recorder, webhook_secret),
        host="127.0.0.1",
        port=http_port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
    try:
        await server.serve()
    finally:
        smtp.close()
        await smtp.wait_closed()
