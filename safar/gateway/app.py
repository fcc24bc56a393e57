"""The gateway's HTTP API: Segment's Tracking API, answered from the local write-ahead log.

Per request: refuse early when overloaded, read the body within its limit (gunzip with a
cap), parse it with orjson, find the source of the write key (cached), normalise each
message with :mod:`safar.messages`, then wait for the group commit. Nothing on that path
builds a validation model per event: at 100 events per request that would cost more than
everything else together.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from safar.appdb import open_app_db
from safar.config import SafarHome
from safar.gateway import delivery, openapi
from safar.gateway.auth import WriteKeys, key_from_body, key_from_headers
from safar.gateway.body import decode_body, parse_json, read_body
from safar.gateway.errors import ApiError, json_response, too_large
from safar.gateway.settings import GatewaySettings
from safar.gateway.wal import (
    Backlog,
    GroupCommitter,
    SegmentFlusher,
    SegmentWriter,
    acquire_lock,
    recover,
)
from safar.messages import Row, normalize_batch, normalize_message

SDK_FILE = Path(__file__).resolve().parent.parent / "sdk" / "safar.js"

log = logging.getLogger(__name__)

# One registry of the ingest endpoints: the type each implies (None: a batch) and its paths,
# the long ones of the HTTP API and the short ones analytics.js uses.
INGEST_ROUTES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "track": ("track", ("/v1/track", "/v1/t")),
    "identify": ("identify", ("/v1/identify", "/v1/i")),
    "page": ("page", ("/v1/page", "/v1/p")),
    "screen": ("screen", ("/v1/screen", "/v1/s")),
    "group": ("group", ("/v1/group", "/v1/g")),
    "alias": ("alias", ("/v1/alias", "/v1/a")),
    "batch": (None, ("/v1/batch", "/v1/b")),
    "import": (None, ("/v1/import",)),
}

_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Max-Age": "86400",
}
_ALLOWED_HEADERS = "Content-Type, Content-Encoding, Authorization, X-Write-Key"


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _encode_rows(rows: list[Row]) -> bytes:
    if not rows:
        return b""
    return b"\n".join(map(orjson.dumps, rows)) + b"\n"


def _rejected_line(
    message: Any, reason: str, index: int, received_at: datetime, source_id: str
) -> bytes:
    record = {
        "reason": reason,
        "index": index,
        "received_at": received_at,
        "source_id": source_id,
        "message": message,
    }
    try:
        return orjson.dumps(record) + b"\n"
    except orjson.JSONEncodeError:  # nested too deep to write back out
        record["message"] = repr(message)[:4096]
        return orjson.dumps(record) + b"\n"


class Gateway:
    """The gateway's state: write keys, the group committer and the flusher of one home."""

    def __init__(self, home: SafarHome, settings: GatewaySettings, engine: sa.Engine | None = None):
        self.home = home.ensure()
        self.settings = settings
        self.engine = engine or open_app_db(home)
        self.keys = WriteKeys(self.engine, settings.key_ttl_seconds)
        self.backlog = Backlog()
        self.flusher = SegmentFlusher(self.home, self.backlog)
        self.writer = SegmentWriter(
            self.home,
            max_age=settings.flush_interval_seconds,
            max_bytes=settings.segment_max_bytes,
            on_close=self.flusher.submit,
        )
        self.committer: GroupCommitter | None = None
        self._lock_fd: int | None = None

    async def start(self) -> None:
        """Take the log directory, land what a previous run left, then accept requests."""
        self._lock_fd = acquire_lock(self.home.gateway_wal)
        recovered = await asyncio.to_thread(recover, self.home)
        if recovered:
            log.info("recovered %d landing files from the write-ahead log", len(recovered))
        self.flusher.start()
        self.committer = GroupCommitter(self.writer, self.backlog)
        self.committer.start()

    async def stop(self) -> None:
        """Commit and land everything accepted, then let go of the log directory."""
        if self.committer is not None:
            await self.committer.stop()
        await asyncio.to_thread(self.flusher.stop)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---------------------------------------------------------------------------- helpers

    def client_ip(self, request: Request) -> str | None:
        """The client's address: the TCP peer, or ``X-Forwarded-For`` behind trusted proxies.

        ``X-Forwarded-For`` is read right to left and the first address that is not a
        trusted proxy wins, so a client cannot smuggle in an address of its choosing.
        """
        peer = request.client.host if request.client else None
        trusted = self.settings.trusted_proxies
        if not trusted or peer is None or not self._is_trusted(peer):
            return peer
        forwarded = request.headers.get("x-forwarded-for")
        if not forwarded:
            return peer
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not self._is_trusted(hop):
                return hop
        return peer

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.settings.trusted_proxies)

    async def source_of(self, key: str | None) -> str:
        """The source id of ``key``.

        Raises:
            ApiError: 401 when the key is missing, unknown or revoked.
        """
        source_id = await self.keys.source_for(key)
        if source_id is None:
            message = "missing write key" if not key else "unknown or revoked write key"
            raise ApiError(401, "unauthorized", message)
        return source_id

    # ---------------------------------------------------------------------------- endpoints

    async def ingest(self, request: Request, message_type: str | None) -> Response:
        """One ingest request (a single message when ``message_type`` is set, else a batch)."""
        received_at = _utcnow()
        settings = self.settings
        if self.backlog.value >= settings.max_pending_events:
            raise ApiError(
                429,
                "overloaded",
                "the gateway is behind on landing events; retry later",
                headers={"Retry-After": "1"},
            )
        header_key = key_from_headers(request.headers)
        # With the key in a header, a bad one is refused before the body is read.
        source_id = await self.source_of(header_key) if header_key else None
        raw = await read_body(request, settings.max_request_bytes)
        body = decode_body(request, raw, settings.max_request_bytes)
        if message_type is not None and len(body) > settings.max_event_bytes:
            raise too_large("event", settings.max_event_bytes)
        payload = parse_json(body)
        if source_id is None:
            source_id = await self.source_of(key_from_body(payload))
        ip = self.client_ip(request)

        if message_type is None:
            if type(payload) is not dict or type(payload.get("batch")) is not list:
                raise ApiError(
                    400, "invalid_request", 'body must be an object with a "batch" array'
                )
            batch_context = payload.get("context")
            if batch_context is not None and type(batch_context) is not dict:
                raise ApiError(400, "invalid_request", "context must be a JSON object")
            messages = payload["batch"]
            rows, rejected = normalize_batch(
                messages,
                received_at=received_at,
                source_id=source_id,
                ip=ip,
                sent_at=payload.get("sentAt") if type(payload.get("sentAt")) is str else None,
                context=batch_context,
                max_event_bytes=settings.max_event_bytes,
            )
        else:
            messages = [payload]
            result = normalize_message(
                payload,
                received_at=received_at,
                source_id=source_id,
                ip=ip,
                message_type=message_type,
            )
            rows, rejected = ([result], []) if type(result) is dict else ([], [(0, result)])

        rejected_lines = b"".join(
            _rejected_line(messages[i], reason, i, received_at, source_id) for i, reason in rejected
        )
        assert self.committer is not None, "the gateway has not started"
        try:
            await self.committer.commit(_encode_rows(rows), len(rows), rejected_lines)
        except OSError as exc:
            raise ApiError(
                503, "unavailable", f"could not store events: {exc}", headers={"Retry-After": "5"}
            ) from None

        errors = [{"index": i, "reason": reason} for i, reason in rejected]
        if message_type is not None and rejected:
            raise ApiError(
                400,
                "invalid_event",
                rejected[0][1],
                accepted=0,
                rejected=1,
                errors=errors,
            )
        return json_response(
            {"success": True, "accepted": len(rows), "rejected": len(rejected), "errors": errors}
        )

    async def source_settings(self, request: Request, write_key: str) -> Response:
        """Segment-style settings that point analytics.js (or a mobile SDK) at this gateway."""
        await self.source_of(write_key)
        headers = request.headers
        host = headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        scheme = request.url.scheme
        peer = request.client.host if request.client else None
        if self.settings.trusted_proxies and peer and self._is_trusted(peer):
            host = headers.get("x-forwarded-host", host).split(",")[0].strip()
            scheme = headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
        return json_response(
            {
                "integrations": {
                    "Segment.io": {
                        "apiKey": write_key,
                        "apiHost": f"{host}/v1",
                        "protocol": scheme,
                        "unbundledIntegrations": [],
                        "addBundledMetadata": True,
                        "maybeBundledConfigIds": {},
                    }
                },
                "plan": {
                    "track": {"__default": {"enabled": True, "integrations": {}}},
                    "identify": {"__default": {"enabled": True}},
                    "group": {"__default": {"enabled": True}},
                },
                "edgeFunction": {},
                "analyticsNextEnabled": True,
                "middlewareSettings": {},
                "enabledMiddleware": {},
                # analytics.js reports its own metrics to Segment unless this is 0.
                "metrics": {"sampleRate": 0},
                "legacyVideoPluginsEnabled": False,
                "remotePlugins": [],
            }
        )


def _preflight(request: Request) -> Response:
    requested = request.headers.get("access-control-request-headers")
    return Response(
        status_code=204,
        headers={
            **_PREFLIGHT_HEADERS,
            "Access-Control-Allow-Headers": requested or _ALLOWED_HEADERS,
        },
    )


def _ingest_endpoint(
    gateway: Gateway, message_type: str | None
) -> Callable[[Request], Awaitable[Response]]:
    async def ingest(request: Request) -> Response:
        return await gateway.ingest(request, message_type)

    return ingest


class _IngestFastPath:
    """ASGI middleware: POSTs to the ingest paths go straight to the gateway.

    The ingest routes stay registered (they are what ``/openapi.json`` documents, and they
    answer identically), but at hundreds of requests per second the router's matching and
    FastAPI's per-request dependency machinery cost more than a tenth of the request, so the
    hottest path skips them. Errors other than :class:`ApiError` still reach Starlette's
    error middleware, which sits outside this one.
    """

    def __init__(self, app: ASGIApp, gateway: Gateway):
        self.app = app
        self.gateway = gateway
        self.paths = {
            path: message_type for message_type, paths in INGEST_ROUTES.values() for path in paths
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            try:
                response = await self.gateway.ingest(
                    Request(scope, receive), self.paths[scope["path"]]
                )
            except ApiError as error:
                response = error.response()
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error.response()


def create_app(
    home: SafarHome,
    settings: GatewaySettings | None = None,
    *,
    engine: sa.Engine | None = None,
) -> FastAPI:
    """The gateway as an ASGI app; its lifespan recovers the log and runs the flusher."""
    gateway = Gateway(home, settings or GatewaySettings(), engine)
    publisher: delivery.EventPublisher | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        assert publisher is not None
        publisher.start()
        try:
            yield
        finally:
            await publisher.stop()
            await gateway.stop()

    app = FastAPI(
        title="Safar gateway",
        version="1",
        description="Segment-compatible tracking API. A 2xx means the events are on disk; "
        "they reach the landing zone as Parquet within about a second.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads its assets from a CDN; /openapi.json is enough
        redoc_url=None,
    )
    app.state.gateway = gateway

    app.add_exception_handler(ApiError, _api_error)
    app.add_middleware(_IngestFastPath, gateway=gateway)

    for kind, (message_type, paths) in INGEST_ROUTES.items():
        handler = _ingest_endpoint(gateway, message_type)
        for path in paths:
            short = len(path) <= len("/v1/b")
            app.add_api_route(
                path,
                handler,
                methods=["POST"],
                name=f"{kind}{'_short' if short else ''}",
                summary=f"{kind.capitalize()}{' (analytics.js short path)' if short else ''}",
                tags=["tracking"],
                responses=openapi.INGEST_RESPONSES,
                openapi_extra=openapi.request_body(kind),
                response_model=None,
            )
            app.add_api_route(
                path,
                _preflight,
                methods=["OPTIONS"],
                name=f"{kind}_preflight{'_short' if short else ''}",
                summary="CORS preflight",
                tags=["cors"],
                status_code=204,
                responses=openapi.PREFLIGHT_RESPONSES,
                response_model=None,
            )

    async def settings_endpoint(request: Request, writeKey: str) -> Response:  # noqa: N803
        return await gateway.source_settings(request, writeKey)

    app.add_api_route(
        "/v1/projects/{writeKey}/settings",
        settings_endpoint,
        methods=["GET"],
        name="source_settings",
        summary="SDK settings (analytics.js loads them instead of Segment's CDN)",
        tags=["sdk"],
        responses=openapi.SETTINGS_RESPONSES,
        response_model=None,
    )
    app.add_api_route(
        "/v1/projects/{writeKey}/settings",
        _preflight,
        methods=["OPTIONS"],
        name="source_settings_preflight",
        tags=["cors"],
        status_code=204,
        responses=openapi.PREFLIGHT_RESPONSES,
        response_model=None,
    )

    sdk_source = SDK_FILE.read_bytes()

    async def web_sdk() -> Response:
        # Short cache: pages pick up a new SDK within minutes, yet most loads are cache hits.
        return Response(
            sdk_source,
            media_type="application/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
        )

    app.add_api_route(
        "/sdk/safar.js",
        web_sdk,
        methods=["GET"],
        name="web_sdk",
        summary="Safar's first-party web SDK (plain JavaScript)",
        tags=["sdk"],
        response_model=None,
    )

    async def health() -> Response:
        return json_response({"ok": True, "backlog": gateway.backlog.value})

    app.add_api_route("/health", health, methods=["GET"], tags=["ops"], response_model=None)
    publisher = delivery.install(app, gateway)
    for path in ("/v1/inbox", "/v1/inbox/{delivery_id}/{action}"):
        app.add_api_route(
            path,
            _preflight,
            methods=["OPTIONS"],
            tags=["cors"],
            status_code=204,
            response_model=None,
        )
    openapi.install(app)
    return app
