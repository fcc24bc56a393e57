"""The gateway's delivery endpoints, and the publisher of delivery events.

- ``GET /v1/t/o/{token}.gif`` — the open pixel (``Message Opened``);
- ``GET /v1/t/c/{token}`` — a click: ``Message Clicked``, then a redirect to the signed target;
- ``GET|POST /v1/unsubscribe/{token}`` — the preference page, and RFC 8058 one-click
  unsubscribe (``List-Unsubscribe=One-Click``);
- ``GET /v1/inbox`` and ``POST /v1/inbox/{delivery_id}/{impression|click|dismiss}`` — the
  in-app inbox for the web SDK and apps (write key as for tracking calls);
- ``POST /v1/callbacks/twilio`` (signed by Twilio) and ``GET|POST
  /v1/callbacks/kavenegar/{key}`` (Kavenegar signs nothing, so the URL carries a key derived
  from the workspace secret, :func:`callback_key`) — SMS delivery reports.

Every delivery event — these and the dispatcher's — is first stored in the app DB with the
change that caused it; :class:`EventPublisher` moves them into the gateway's write-ahead log
every second, so they reach the warehouse the way every SDK event does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from channels.base import StatusReport
from channels.sms import parse_kavenegar_callback, parse_twilio_callback, verify_twilio_signature
from channels.tracking import BadToken, TrackedLink, read_token
from safar.appdb.engine import dialect_insert
from safar.appdb.schema import subscriptions
from safar.delivery import inbox, outbox
from safar.delivery.events import (
    SOURCE_ID,
    mark_published,
    unpublished,
)
from safar.delivery.policy import ALL_MARKETING, TRANSACTIONAL
from safar.delivery.settings import load_config, tracking_secret
from safar.gateway.auth import key_from_headers
from safar.gateway.errors import ApiError, json_response
from safar.messages import normalize_batch

if TYPE_CHECKING:
    from safar.gateway.app import Gateway

log = logging.getLogger(__name__)

# The smallest transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {"Cache-Control": "no-store, private", "Access-Control-Allow-Origin": "*"}


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class EventPublisher:
    """Moves stored delivery events into the gateway's log, oldest first, every ``interval``."""

    def __init__(self, gateway: Gateway, interval: float = 1.0, batch: int = 5_000):
        self.gateway = gateway
        self.interval = interval
        self.batch = batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="delivery-event-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.publish()  # what arrived since the last tick

    async def _loop(self) -> None:
        while True:
            try:
                await self.publish()
            except Exception:  # the next tick tries again; the events wait in the app DB
                log.exception("publishing delivery events failed")
            await asyncio.sleep(self.interval)

    async def publish(self) -> int:
        """Publish everything waiting; how many events were published."""
        engine = self.gateway.engine
        published = 0
        while rows := await asyncio.to_thread(unpublished, engine, self.batch):
            now = _utcnow()
            good, rejected = normalize_batch(
                [message for _, message in rows], received_at=now, source_id=SOURCE_ID, ip=None
            )
            for index, reason in rejected:
                log.error("delivery event %s is invalid: %s", rows[index][0], reason)
            committer = self.gateway.committer
            assert committer is not None, "the gateway has not started"
            payload = b"".join(orjson.dumps(row) + b"\n" for row in good)
            await committer.commit(payload, len(good), b"")
            await asyncio.to_thread(mark_published, engine, [row_id for row_id, _ in rows], now)
            published += len(rows)
            if len(rows) < self.batch:
                break
        return published


def callback_key(secret: str, provider: str) -> str:
    """The key in a provider's callback URL, for providers that do not sign their callbacks.

    Example:
        >>> key = callback_key("s3cret", "kavenegar")
        >>> len(key), key == callback_key("another", "kavenegar")
        (32, False)
    """
    mac = hmac.new(secret.encode(), f"callback:{provider}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


class DeliveryEndpoints:
    """Request handlers; the link secret is read once, the settings on each page view."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.engine = gateway.engine
        self._secret: str | None = None

    @property
    def secret(self) -> str:
        if self._secret is None:
            self._secret = tracking_secret(self.engine)
        return self._secret

    def _link(self, token: str, kind: str) -> TrackedLink | None:
        try:
            return read_token(self.secret, token, kind=kind)  # type: ignore[arg-type]
        except BadToken as reason:
            log.info("refused a %s link: %s", kind, reason)
            return None

    def _event(self, delivery: str, event: str, properties: dict[str, Any]) -> bool:
        with self.engine.begin() as con:
            return outbox.add_engagement(con, delivery, event, _utcnow(), properties)

    async def open_pixel(self, request: Request) -> Response:
        # Always the image: a broken image in someone's mail is worse than a lost open.
        link = self._link(request.path_params["token"], "open")
        if link is not None:
            user_agent = request.headers.get("user-agent", "")
            await asyncio.to_thread(
                self._event, link.delivery_id, "Message Opened", {"user_agent": user_agent}
            )
        return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)

    async def click(self, request: Request) -> Response:
        link = self._link(request.path_params["token"], "click")
        if link is None or not link.target:
            return _page(
                "این پیوند معتبر نیست — This link is not valid",
                "<p>The link is damaged or was not made by this workspace, so it does not lead "
                "anywhere. Copy the address from the message again.</p>",
                status=400,
            )
        await asyncio.to_thread(
            self._event, link.delivery_id, "Message Clicked", {"url": link.target}
        )
        return RedirectResponse(link.target, status_code=302, headers=_NO_STORE)

    async def unsubscribe_page(self, request: Request) -> Response:
        link = self._link(request.path_params["token"], "unsubscribe")
        if link is None:
            return _invalid_unsubscribe()
        if request.method == "POST":
            form = await request.form()
            if form.get("List-Unsubscribe") == "One-Click":
                changed = await asyncio.to_thread(self._one_click, link.delivery_id)
                if changed is None:
                    return _invalid_unsubscribe()
                return Response("unsubscribed\n", media_type="text/plain", headers=_NO_STORE)
            keep = {str(value) for value in form.getlist("category")}
            everything = form.get("all") == "1"
            saved = await asyncio.to_thread(self._save, link.delivery_id, keep, everything)
            if saved is None:
                return _invalid_unsubscribe()
        state = await asyncio.to_thread(self._preferences, link.delivery_id)
        if state is None:
            return _invalid_unsubscribe()
        categories, off = state
        return _preference_page(categories, off, saved=request.method == "POST")

    def _person(self, delivery: str) -> tuple[str, str] | None:
        with self.engine.connect() as con:
            claimed = outbox.load(con, delivery)
        return None if claimed is None else (claimed.person_id, claimed.category)

    def _one_click(self, delivery: str) -> str | None:
        found = self._person(delivery)
        if found is None:
            return None
        person, category = found
        # One-click is "stop this kind of mail"; a transactional message has no list, so
        # it stops all marketing.
        target = ALL_MARKETING if category == TRANSACTIONAL else category
        self._write(person, {target}, set(), delivery, "one_click")
        return target

    def _save(self, delivery: str, keep: set[str], everything: bool) -> bool | None:
        found = self._person(delivery)
        if found is None:
            return None
        person, _ = found
        categories = set(load_config(self.engine).categories)
        off = categories - keep
        if everything:
            off, on = {ALL_MARKETING}, set()
        else:
            on = (keep & categories) | {ALL_MARKETING}
        self._write(person, off, on, delivery, "preference_page")
        return True

    def _write(self, person: str, off: set[str], on: set[str], delivery: str, source: str) -> None:
        now = _utcnow()
        with self.engine.begin() as con:
            if on:
                con.execute(
                    sa.delete(subscriptions).where(
                        subscriptions.c.person_id == person, subscriptions.c.category.in_(on)
                    )
                )
            for category in sorted(off):
                con.execute(
                    dialect_insert(con)(subscriptions).on_conflict_do_nothing(),
                    {
                        "person_id": person,
                        "category": category,
                        "unsubscribed_at": now,
                        "source": source,
                        "delivery_id": delivery,
                    },
                )

    def _preferences(self, delivery: str) -> tuple[list[str], set[str]] | None:
        found = self._person(delivery)
        if found is None:
            return None
        person, _ = found
        with self.engine.connect() as con:
            off = set(
                con.execute(
                    sa.select(subscriptions.c.category).where(subscriptions.c.person_id == person)
                ).scalars()
            )
        return list(load_config(self.engine).categories), off

    async def _ids(self, request: Request, body: dict[str, Any]) -> list[str]:
        key = key_from_headers(request.headers) or request.query_params.get("writeKey")
        await self.gateway.source_of(key)
        ids = [
            str(value)
            for name in ("userId", "anonymousId")
            if (value := body.get(name) or request.query_params.get(name))
        ]
        if not ids:
            raise ApiError(400, "invalid_request", "userId or anonymousId is required")
        return ids

    async def inbox_list(self, request: Request) -> Response:
        ids = await self._ids(request, {})
        messages = await asyncio.to_thread(inbox.fetch, self.engine, ids, _utcnow())
        return json_response({"messages": messages}, headers=_NO_STORE)

    async def inbox_react(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ("impression", "click", "dismiss"):
            raise ApiError(404, "not_found", f"unknown inbox action {action!r}")
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "invalid_json", f"body is not JSON: {exc}") from None
        if type(body) is not dict:
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        ids = await self._ids(request, body)
        found = await asyncio.to_thread(
            inbox.react,
            self.engine,
            request.path_params["delivery_id"],
            ids,
            action,
            _utcnow(),
            str(body.get("url") or ""),
        )
        if not found:
            raise ApiError(404, "not_found", "no such message in this person's inbox")
        return Response(status_code=204, headers=_NO_STORE)

    async def twilio_callback(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        options = await asyncio.to_thread(self._sms_options, "twilio")
        if options is None:
            raise ApiError(404, "not_found", "Twilio is not the configured SMS provider")
        url = options.get("status_callback_url") or str(request.url)
        signature = request.headers.get("x-twilio-signature", "")
        if not verify_twilio_signature(options.get("auth_token", ""), url, form, signature):
            raise ApiError(403, "forbidden", "the X-Twilio-Signature does not match")
        return await self._report(parse_twilio_callback, form)

    async def kavenegar_callback(self, request: Request) -> Response:
        if not hmac.compare_digest(
            request.path_params["key"], callback_key(self.secret, "kavenegar")
        ):
            raise ApiError(403, "forbidden", "unknown callback key")
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({key: str(value) for key, value in (await request.form()).items()})
        return await self._report(parse_kavenegar_callback, params)

    async def _report(
        self, parse: Callable[[dict[str, str]], StatusReport | None], params: dict[str, str]
    ) -> Response:
        try:
            report = parse(params)
        except ValueError as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None
        if report is not None:
            await asyncio.to_thread(outbox.apply_report, self.engine, report, _utcnow())
        return Response(status_code=204)

    def _sms_options(self, provider: str) -> dict[str, Any] | None:
        configured = load_config(self.engine).providers.get("sms")
        if configured is None or configured.provider != provider:
            return None
        return dict(configured.options)


def _invalid_unsubscribe() -> Response:
    return _page(
        "پیوند لغو اشتراک معتبر نیست — This unsubscribe link is not valid",
        "<p>The link is damaged or was not made by this workspace. Use the link in the latest "
        "message you received.</p>",
        status=400,
    )


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="fa" dir="rtl"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:Vazirmatn,Tahoma,sans-serif;max-width:36rem;margin:2rem auto;"
        "padding:0 1rem;line-height:1.7}label{display:block;margin:.4rem 0}"
        "button{margin:.6rem .3rem 0 0;padding:.4rem 1rem}.en{direction:ltr;text-align:left;"
        "color:#555}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_NO_STORE)


def _preference_page(categories: list[str], off: set[str], *, saved: bool) -> HTMLResponse:
    everything_off = ALL_MARKETING in off
    boxes = "".join(
        f'<label><input type="checkbox" name="category" value="{html.escape(c)}"'
        f"{'' if everything_off or c in off else ' checked'}> {html.escape(c)}</label>"
        for c in categories
    )
    notice = (
        '<p role="status">تنظیمات شما ذخیره شد. <span class="en">Your choices are saved.</span></p>'
        if saved
        else ""
    )
    state = (
        "<p>شما هیچ پیام تبلیغاتی دریافت نمی‌کنید. "
        '<span class="en">You receive no marketing messages.</span></p>'
        if everything_off
        else ""
    )
    body = (
        f"{notice}{state}"
        "<p>پیام‌هایی را که می‌خواهید دریافت کنید انتخاب کنید. "
        '<span class="en">Choose the messages you want to receive. Messages about your '
        "account and orders are always sent.</span></p>"
        f'<form method="post">{boxes}'
        '<button type="submit">ذخیره — Save</button>'
        '<button type="submit" name="all" value="1">لغو همه — Unsubscribe from all</button>'
        "</form>"
    )
    return _page("تنظیمات پیام‌ها — Message preferences", body)


def install(app: FastAPI, gateway: Gateway) -> EventPublisher:
    """Register the delivery endpoints on ``app``; returns the publisher for the lifespan."""
    endpoints = DeliveryEndpoints(gateway)
    routes: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str], str]] = [
        ("/v1/t/o/{token}.gif", endpoints.open_pixel, ["GET"], "open_pixel"),
        ("/v1/t/c/{token}", endpoints.click, ["GET"], "click_redirect"),
        ("/v1/unsubscribe/{token}", endpoints.unsubscribe_page, ["GET", "POST"], "unsubscribe"),
        ("/v1/inbox", endpoints.inbox_list, ["GET"], "inbox"),
        (
            "/v1/inbox/{delivery_id}/{action}",
            endpoints.inbox_react,
            ["POST"],
            "inbox_reaction",
        ),
        ("/v1/callbacks/twilio", endpoints.twilio_callback, ["POST"], "twilio_callback"),
        (
            "/v1/callbacks/kavenegar/{key}",
            endpoints.kavenegar_callback,
            ["GET", "POST"],
            "kavenegar_callback",
        ),
    ]
    for path, handler, methods, name in routes:
        app.add_api_route(
            path, handler, methods=methods, name=name, tags=["delivery"], response_model=None
        )
    return EventPublisher(gateway)
