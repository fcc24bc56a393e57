"""SMS senders against local servers that speak Kavenegar's and Twilio's protocols: error tables,
Persian text, Kavenegar's ``localid`` duplicate guard, polling to final states, callbacks and
their signatures, and 200 concurrent sends arriving exactly once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import count
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import uvicorn

from channels.base import Envelope, Outcome, Sender
from channels.sms import (
    KavenegarSender,
    KavenegarSettings,
    TwilioSender,
    TwilioSettings,
    parse_kavenegar_callback,
    parse_twilio_callback,
    verify_twilio_signature,
)

PERSIAN = "سلام علی، کد ورود شما ۴۸۲۱۹۳ است. «سفر»"

# A reply: HTTP status, extra headers, and a JSON-able body (or a str, sent as HTML).
Reply = tuple[int, dict[str, str], Any]
App = Callable[[str, str, Mapping[str, str], dict[str, str]], Reply]
T = TypeVar("T")


# --- a local HTTP server that hands each request to a fake ------------------------------------


class _Asgi:
    """Adapts a fake (a plain function of method, target, headers and form) to ASGI.

    The fake runs in a worker thread, so one that sleeps holds up only its own request.
    """

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        raw, more = b"", True
        while more:
            message = await receive()
            raw, more = raw + message.get("body", b""), message.get("more_body", False)
        headers = httpx.Headers(scope["headers"])
        query = scope["query_string"].decode("ascii")
        target = scope["path"] + (f"?{query}" if query else "")
        fields = query  # a POST's fields are in its body, and Twilio signs only those
        if scope["method"] == "POST":
            if headers.get("Content-Type") != "application/x-www-form-urlencoded":
                await self._reply(send, 415, {}, {"error": "form encoding expected"})
                return
            fields = raw.decode("ascii")
        # strict UTF-8: text sent in any other encoding is refused, not mangled
        form = dict(parse_qsl(fields, keep_blank_values=True, errors="strict"))
        reply = await asyncio.to_thread(self.app, scope["method"], target, headers, form)
        await self._reply(send, *reply)

    @staticmethod
    async def _reply(send: Callable, status: int, headers: dict[str, str], body: Any) -> None:
        is_html = isinstance(body, str)
        data = (body if is_html else json.dumps(body, ensure_ascii=False)).encode()
        kind = "text/html" if is_html else "application/json"
        fields = {**headers, "Content-Type": f"{kind}; charset=utf-8"}
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in fields.items()],
            }
        )
        await send({"type": "http.response.body", "body": data})


@contextmanager
def _serving(app: App) -> Iterator[str]:
    """Serve ``app`` on a free loopback port under uvicorn, in a thread, for the block.

    One event loop serves every connection: a thread per connection (``ThreadingHTTPServer``)
    starves the client's event loop of the GIL once 100 connections are open.
    """
    config = uvicorn.Config(_Asgi(app), host="127.0.0.1", port=0, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the fake server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()


class _Switch:
    """What a module-wide server hands requests to: the fake each test puts in, fresh."""

    app: App

    def __call__(self, method: str, target: str, headers: Mapping[str, str], form: dict) -> Reply:
        return self.app(method, target, headers, form)


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(make: Callable[[], Sender], job: Callable[[Any], Awaitable[T]]) -> T:
    """Build a sender inside one event loop, run ``job`` with it, and close it."""

    async def go() -> T:
        sender = make()
        try:
            return await job(sender)
        finally:
            await sender.aclose()

    return asyncio.run(go())


def _sms(to: str, text: str = PERSIAN, delivery_id: str | None = None) -> Envelope:
    return Envelope(delivery_id or uuid.uuid4().hex, "sms", to, {"text": text}, "ali")


def _send_all(envelopes: list[Envelope]) -> Callable[[Any], Awaitable[list[Outcome]]]:
    async def job(sender: Any) -> list[Outcome]:
        return list(await asyncio.gather(*(sender.send(e) for e in envelopes)))

    return job


# --- a Kavenegar-speaking server ---------------------------------------------------------------

KAVENEGAR_WORDS = {
    400: "پارامترها ناقص هستند",
    401: "حساب کاربری غیرفعال شده است",
    403: "کد شناسائی API-Key معتبر نمی‌باشد",
    404: "متد نامشخص است",
    411: "دریافت کننده نامعتبر است",
    412: "ارسال کننده نامعتبر است",
    418: "اعتبار حساب شما کافی نیست",
    422: "داده ها به دلیل وجود کاراکتر نامناسب قابل پردازش نیست",
    429: "تعداد درخواست بیش از حد مجاز است",
    500: "خطای داخلی سرور",
    503: "سرویس در دسترس نیست",
}
KAVENEGAR_STATE_WORDS = {1: "در صف ارسال", 4: "ارسال به مخابرات", 10: "رسیده به گیرنده"}
RECEPTOR = re.compile(r"(\+98|0098|98|0)?9\d{9}")


class FakeKavenegar:
    """Kavenegar's ``sms/send`` and ``sms/status`` over an in-memory store.

    ``forced`` maps a receptor to an error code (or ``"html502"``/``"slow"``) the server answers
    with instead of sending.
    """

    api_key = "6D4F-KEY"
    lines = ("10004346",)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[int, dict[str, Any]] = {}
        self.by_localid: dict[str, int] = {}
        self.sends = 0
        self.status_batches: list[int] = []
        self.forced: dict[str, int | str] = {}
        self._ids = count(8792343)

    def __call__(self, method: str, target: str, headers: Mapping[str, str], form: dict) -> Reply:
        match = re.fullmatch(r"/v1/([^/]+)/sms/(send|status)\.json", urlsplit(target).path)
        if not match:
            return self._error(404)
        if match[1] != self.api_key:
            return self._error(403)
        return self._send(form) if match[2] == "send" else self._status(form)

    def _error(self, code: int, headers: dict[str, str] | None = None) -> Reply:
        return code, headers or {}, {"return": {"status": code, "message": KAVENEGAR_WORDS[code]}}

    def _send(self, form: dict[str, str]) -> Reply:
        receptor, message = form.get("receptor", ""), form.get("message", "")
        forced = self.forced.get(receptor)
        if forced == "html502":
            return 502, {}, "<html><body>502 Bad Gateway</body></html>"
        if forced == "slow":
            time.sleep(0.6)
        elif isinstance(forced, int):
            return self._error(forced, {"Retry-After": "7"} if forced == 429 else None)
        if not receptor or not message:
            return self._error(400)
        if not RECEPTOR.fullmatch(receptor):
            return self._error(411)
        if form.get("sender", self.lines[0]) not in self.lines:
            return self._error(412)
        with self.lock:
            self.sends += 1
            localid = form.get("localid")
            if localid in self.by_localid:
                entry = self.messages[self.by_localid[localid]]
            else:
                entry = {
                    "messageid": next(self._ids),
                    "message": message,
                    "status": 1,
                    "statustext": KAVENEGAR_STATE_WORDS[1],
                    "sender": form.get("sender", self.lines[0]),
                    "receptor": receptor,
                    "date": int(time.time()),
                    "cost": 120,
                    "localid": localid,
                }
                self.messages[entry["messageid"]] = entry
                if localid:
                    self.by_localid[localid] = entry["messageid"]
            shown = {key: value for key, value in entry.items() if key != "localid"}
        return 200, {}, {"return": {"status": 200, "message": "تایید شد"}, "entries": [shown]}

    def _status(self, form: dict[str, str]) -> Reply:
        ids = form.get("messageid", "").split(",")
        if len(ids) > 500:
            return self._error(400)
        self.status_batches.append(len(ids))
        entries = []
        for raw in ids:
            entry = self.messages.get(int(raw)) if raw.isdigit() else None
            state = entry["status"] if entry else 100
            words = entry["statustext"] if entry else "شناسه پیامک نامعتبر است"
            entries.append(
                {"messageid": int(raw) if entry else raw, "status": state, "statustext": words}
            )
        return 200, {}, {"return": {"status": 200, "message": "تایید شد"}, "entries": entries}

    def set_state(self, message_id: str, state: int, words: str = "") -> None:
        entry = self.messages[int(message_id)]
        entry["status"], entry["statustext"] = state, words or KAVENEGAR_STATE_WORDS.get(state, "")


@pytest.fixture(scope="module")
def kavenegar_server() -> Iterator[tuple[_Switch, str]]:
    switch = _Switch()
    with _serving(switch) as url:
        yield switch, url


@pytest.fixture
def kavenegar(kavenegar_server) -> tuple[FakeKavenegar, KavenegarSettings]:
    """A fresh Kavenegar store behind the module's server, and settings that reach it."""
    switch, url = kavenegar_server
    switch.app = fake = FakeKavenegar()
    return fake, KavenegarSettings(fake.api_key, fake.lines[0], base_url=url, timeout=5)


def test_kavenegar_sends_persian_text_with_delivery_id_as_localid(kavenegar):
    fake, settings = kavenegar
    envelope = _sms("+989121234567")
    [outcome] = _run(lambda: KavenegarSender(settings), _send_all([envelope]))

    assert (outcome.status, outcome.provider) == ("sent", "kavenegar")
    stored = fake.messages[int(outcome.provider_message_id)]
    assert stored["message"] == PERSIAN  # UTF-8 form encoding, decoded strictly by the server
    assert (stored["localid"], stored["receptor"], stored["sender"]) == (
        envelope.delivery_id,
        "+989121234567",
        "10004346",
    )
    assert outcome.response["body"]["entries"][0]["message"] == PERSIAN
    assert "در صف ارسال" in outcome.detail


def test_kavenegar_resend_with_the_same_delivery_id_sends_nothing_new(kavenegar):
    fake, settings = kavenegar
    envelope = _sms("09121234567", delivery_id="d-1")
    # the second time from a fresh sender, as after a crash and restart
    outcomes = _run(lambda: KavenegarSender(settings), _send_all([envelope]))
    outcomes += _run(lambda: KavenegarSender(settings), _send_all([envelope]))

    assert [o.status for o in outcomes] == ["sent", "sent"]
    assert outcomes[0].provider_message_id == outcomes[1].provider_message_id
    assert (fake.sends, len(fake.messages)) == (2, 1)

    # A re-send after the message already reached the phone says so instead of "sent".
    fake.set_state(outcomes[0].provider_message_id, 10)
    [late] = _run(lambda: KavenegarSender(settings), _send_all([_sms("09121234567", "x", "d-1")]))
    assert (late.status, late.provider_message_id) == ("delivered", outcomes[0].provider_message_id)
    assert len(fake.messages) == 1

    [other] = _run(lambda: KavenegarSender(settings), _send_all([_sms("09121234567")]))
    assert other.provider_message_id != outcomes[0].provider_message_id


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (400, "failed"),
        (401, "failed"),
        (403, "failed"),
        (411, "bounced"),
        (412, "failed"),
        (418, "retry"),
        (422, "failed"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_kavenegar_error_codes(kavenegar, code, status):
    fake, settings = kavenegar
    fake.forced["09120000000"] = code
    [outcome] = _run(lambda: KavenegarSender(settings), _send_all([_sms("09120000000")]))

    assert outcome.status == status
    assert outcome.address_dead is (status == "bounced")
    assert str(code) in outcome.detail and KAVENEGAR_WORDS[code] in outcome.detail
    assert outcome.retry_after == (7.0 if code == 429 else None)
    assert outcome.provider_message_id is None and not fake.messages


def test_kavenegar_refusals_from_the_servers_own_checks(kavenegar):
    fake, settings = kavenegar
    bad_key = KavenegarSettings("stolen", settings.sender, settings.base_url)
    bad_line = KavenegarSettings(settings.api_key, "3000111", settings.base_url)
    [key] = _run(lambda: KavenegarSender(bad_key), _send_all([_sms("09121234567")]))
    [line] = _run(lambda: KavenegarSender(bad_line), _send_all([_sms("09121234567")]))
    [dead, empty] = _run(
        lambda: KavenegarSender(settings), _send_all([_sms("12345"), _sms("09121234567", "")])
    )

    assert key.status == "failed" and "403" in key.detail
    assert line.status == "failed" and "412" in line.detail
    assert dead.status == "bounced" and dead.address_dead and "411" in dead.detail
    assert empty.status == "failed" and fake.sends == 0  # no text: refused before any request


def test_kavenegar_network_failures_are_retried(kavenegar):
    fake, settings = kavenegar
    fake.forced["09120000001"], fake.forced["09120000002"] = "html502", "slow"
    quick = KavenegarSettings(settings.api_key, settings.sender, settings.base_url, timeout=0.2)
    proxy, slow = _run(
        lambda: KavenegarSender(quick), _send_all([_sms("09120000001"), _sms("09120000002")])
    )
    gone = KavenegarSettings(
        settings.api_key, settings.sender, f"http://127.0.0.1:{_unused_port()}"
    )
    [refused] = _run(lambda: KavenegarSender(gone), _send_all([_sms("09121234567")]))

    assert proxy.status == "retry" and "502" in proxy.detail and "Bad Gateway" in proxy.detail
    assert slow.status == "retry" and "ReadTimeout" in slow.detail
    assert refused.status == "retry" and "ConnectError" in refused.detail
    assert all(settings.api_key not in o.detail for o in (proxy, slow, refused))


def test_kavenegar_poll_reports_final_states_in_batches_of_500(kavenegar):
    fake, settings = kavenegar
    envelopes = [_sms(f"0912000{i:04}") for i in range(5)]
    outcomes = _run(lambda: KavenegarSender(settings), _send_all(envelopes))
    queued, at_operator, delivered, undelivered, blocked = [o.provider_message_id for o in outcomes]
    fake.set_state(at_operator, 4)
    fake.set_state(delivered, 10)
    fake.set_state(undelivered, 11, "نرسیده به گیرنده")
    fake.set_state(blocked, 14, "بلاک شده توسط گیرنده")
    unknown = [str(1_000_000_000 + i) for i in range(1195)]

    reports = _run(
        lambda: KavenegarSender(settings),
        lambda s: s.poll([queued, at_operator, delivered, undelivered, blocked, *unknown]),
    )

    assert fake.status_batches == [500, 500, 200]
    by_id = {r.provider_message_id: r for r in reports}
    assert queued not in by_id and at_operator not in by_id
    assert by_id[delivered].status == "delivered"
    assert by_id[undelivered].status == "failed" and "نرسیده به گیرنده" in by_id[undelivered].detail
    assert by_id[blocked].status == "failed" and by_id[blocked].extra["opted_out"] is True
    assert {by_id[i].status for i in unknown} == {"failed"}
    assert len(reports) == 3 + len(unknown)
    assert all(r.provider == "kavenegar" and r.at.tzinfo is not None for r in reports)


@pytest.mark.parametrize(
    ("state", "expected"),
    [("1", None), ("2", None), ("4", None), ("5", None), ("6", "failed"), ("10", "delivered")]
    + [("11", "failed"), ("13", "failed"), ("14", "failed"), ("100", "failed")],
)
def test_kavenegar_callback(state, expected):
    report = parse_kavenegar_callback({"messageid": "8792343", "status": state})
    assert (report and report.status) == expected
    if report:
        assert report.provider_message_id == "8792343"
        assert report.extra.get("opted_out", False) is (state == "14")


def test_kavenegar_callback_rejects_what_is_not_one():
    for params in ({}, {"messageid": "1"}, {"messageid": "1", "status": "delivered"}):
        with pytest.raises(ValueError):
            parse_kavenegar_callback(params)


def test_kavenegar_200_concurrent_sends_arrive_exactly_once(kavenegar):
    fake, settings = kavenegar
    envelopes = [_sms(f"0912{i:07}", f"پیام شماره {i}", f"delivery-{i}") for i in range(200)]
    # every delivery twice at once, as two dispatcher workers racing after a crash would
    outcomes = _run(lambda: KavenegarSender(settings), _send_all(envelopes + envelopes))

    assert {o.status for o in outcomes} == {"sent"}
    assert [o.provider_message_id for o in outcomes[:200]] == [
        o.provider_message_id for o in outcomes[200:]
    ]
    assert (fake.sends, len(fake.messages)) == (400, 200)
    assert sorted(m["localid"] for m in fake.messages.values()) == sorted(
        e.delivery_id for e in envelopes
    )
    assert {m["receptor"]: m["message"] for m in fake.messages.values()} == {
        e.to: e.content["text"] for e in envelopes
    }


# --- a Twilio-speaking server ------------------------------------------------------------------


def _twilio_sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's documented algorithm, written out here apart from the code under test."""
    signed = url
    for name in sorted(params):
        signed += name + params[name]
    mac = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _twilio_error(http_status: int, code: int, message: str) -> Reply:
    more = f"https://www.twilio.com/docs/errors/{code}"
    body = {"code": code, "message": message, "more_info": more, "status": http_status}
    # Twilio asks a throttled or overloaded client to wait.
    return http_status, {"Retry-After": "3"} if http_status >= 429 else {}, body


TWILIO_FORCED: dict[str, tuple[int, int | None, str]] = {
    "+15005550009": (400, 21614, "'To' number is not a valid mobile number"),
    "+15005550004": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "+15005550429": (429, 20429, "Too Many Requests"),
    "+15005550430": (429, None, ""),
    "+15005550500": (500, None, ""),
    "+15005550503": (503, 20500, "Internal Server Error"),
}


class FakeTwilio:
    """Twilio's Messages resource (create and fetch) over an in-memory store, with signed
    status callbacks to each message's ``StatusCallback``."""

    account_sid = "AC" + "a" * 32
    auth_token = "twilio-auth-token"
    numbers = ("+15017122661",)
    service_sid = "MG" + "b" * 32

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[str, dict[str, Any]] = {}
        self.forms: list[dict[str, str]] = []

    def __call__(self, method: str, target: str, headers: Mapping[str, str], form: dict) -> Reply:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if headers.get("Authorization") != f"Basic {expected}":
            return _twilio_error(401, 20003, "Authenticate")
        root = f"/2010-04-01/Accounts/{self.account_sid}/Messages"
        path = urlsplit(target).path
        if method == "POST" and path == f"{root}.json":
            return self._create(form)
        match = re.fullmatch(rf"{root}/(SM\w+)\.json", path)
        if method == "GET" and match and match[1] in self.messages:
            return 200, {}, self._resource(self.messages[match[1]])
        return _twilio_error(404, 20404, f"The requested resource {path} was not found")

    def _create(self, form: dict[str, str]) -> Reply:
        to, body = form.get("To", ""), form.get("Body", "")
        if to in TWILIO_FORCED:
            status, code, message = TWILIO_FORCED[to]
            if code is None:
                return status, {"Retry-After": "3"}, "<html>Service Unavailable</html>"
            return _twilio_error(status, code, message)
        if not re.fullmatch(r"\+[1-9]\d{6,14}", to):
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not body:
            return _twilio_error(400, 21602, "Message body is required.")
        service = form.get("MessagingServiceSid")
        if service is None and form.get("From") is None:
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if service not in (None, self.service_sid) or form.get("From", self.numbers[0]) not in (
            self.numbers
        ):
            return _twilio_error(400, 21606, "The From phone number is not a valid sender.")
        message = {
            "sid": "SM" + uuid.uuid4().hex,
            "to": to,
            "from": form.get("From"),
            "messaging_service_sid": service,
            "body": body,
            "status": "accepted" if service else "queued",
            "error_code": None,
            "error_message": None,
            "updated": datetime.now(UTC).replace(microsecond=0),
            "callback": form.get("StatusCallback"),
        }
        with self.lock:
            self.forms.append(form)
            self.messages[message["sid"]] = message
        return 201, {}, self._resource(message)

    def _resource(self, message: dict[str, Any]) -> dict[str, Any]:
        resource = {key: value for key, value in message.items() if key not in ("updated",)}
        resource["account_sid"] = self.account_sid
        resource["date_updated"] = format_datetime(message["updated"])
        return resource

    def advance(self, sid: str, status: str, error_code: int | None = None) -> None:
        """Move a message on, and tell its ``StatusCallback`` as Twilio would: signed."""
        message = self.messages[sid]
        message["status"], message["error_code"] = status, error_code
        message["updated"] += timedelta(seconds=5)
        if message["callback"]:
            params = {
                "AccountSid": self.account_sid,
                "MessageSid": sid,
                "SmsSid": sid,
                "MessageStatus": status,
                "SmsStatus": status,
                "To": message["to"],
                "From": message["from"] or self.numbers[0],
                "ApiVersion": "2010-04-01",
            }
            if error_code:
                params["ErrorCode"] = str(error_code)
            signature = _twilio_sign(self.auth_token, message["callback"], params)
            httpx.post(message["callback"], data=params, headers={"X-Twilio-Signature": signature})


class CallbackReceiver:
    """Our side of Twilio's status callback: records what arrived, answers 204."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[tuple[str, dict[str, str], str]] = []

    def __call__(self, method: str, target: str, headers: Mapping[str, str], form: dict) -> Reply:
        self.received.append((self.url + target, form, headers.get("X-Twilio-Signature", "")))
        return 204, {}, ""


@pytest.fixture(scope="module")
def twilio_server() -> Iterator[tuple[_Switch, str]]:
    switch = _Switch()
    with _serving(switch) as url:
        yield switch, url


@pytest.fixture
def twilio(twilio_server) -> tuple[FakeTwilio, TwilioSettings]:
    """A fresh Twilio store behind the module's server, and settings that reach it."""
    switch, url = twilio_server
    switch.app = fake = FakeTwilio()
    settings = TwilioSettings(fake.account_sid, fake.auth_token, fake.numbers[0], base_url=url)
    return fake, settings


def test_twilio_sends_with_basic_auth_and_twilio_form(twilio):
    fake, settings = twilio
    [outcome] = _run(lambda: TwilioSender(settings), _send_all([_sms("+14155550100")]))

    assert (outcome.status, outcome.provider) == ("sent", "twilio")
    assert outcome.provider_message_id in fake.messages
    assert fake.forms == [{"To": "+14155550100", "From": "+15017122661", "Body": PERSIAN}]
    assert outcome.response["status_code"] == 201
    assert outcome.response["body"]["body"] == PERSIAN and "queued" in outcome.detail


def test_twilio_sends_through_a_messaging_service_with_status_callback(twilio):
    fake, settings = twilio
    service = TwilioSettings(
        fake.account_sid,
        fake.auth_token,
        messaging_service_sid=fake.service_sid,
        status_callback_url="https://safar.example/hooks/twilio",
        base_url=settings.base_url,
    )
    [outcome] = _run(lambda: TwilioSender(service), _send_all([_sms("+14155550100", "hi")]))

    assert outcome.status == "sent" and "accepted" in outcome.detail
    assert fake.forms == [
        {
            "To": "+14155550100",
            "Body": "hi",
            "MessagingServiceSid": fake.service_sid,
            "StatusCallback": "https://safar.example/hooks/twilio",
        }
    ]


def test_twilio_settings_need_a_sender():
    with pytest.raises(ValueError):
        TwilioSettings("AC1", "token")


@pytest.mark.parametrize(
    ("to", "status", "code"),
    [
        ("not-a-number", "bounced", "21211"),
        ("+15005550009", "bounced", "21614"),
        ("+15005550004", "failed", "21610"),
        ("+15005550429", "retry", "20429"),
        ("+15005550430", "retry", "429"),
        ("+15005550500", "retry", "500"),
        ("+15005550503", "retry", "20500"),
    ],
)
def test_twilio_error_codes(twilio, to, status, code):
    fake, settings = twilio
    [outcome] = _run(lambda: TwilioSender(settings), _send_all([_sms(to)]))

    assert (outcome.status, outcome.address_dead) == (status, status == "bounced")
    assert code in outcome.detail and outcome.provider_message_id is None
    assert outcome.retry_after == (3.0 if status == "retry" else None)
    assert bool(outcome.response.get("opted_out")) is (code == "21610")
    if code == "21610":
        assert "unsubscribed at the carrier" in outcome.detail
    assert not fake.messages


def test_twilio_refuses_wrong_credentials_and_sender(twilio):
    fake, settings = twilio
    wrong_token = TwilioSettings(
        fake.account_sid, "guess", fake.numbers[0], base_url=settings.base_url
    )
    wrong_from = TwilioSettings(
        fake.account_sid, fake.auth_token, "+15550001111", base_url=settings.base_url
    )
    [auth] = _run(lambda: TwilioSender(wrong_token), _send_all([_sms("+14155550100")]))
    [line] = _run(lambda: TwilioSender(wrong_from), _send_all([_sms("+14155550100")]))

    assert auth.status == "failed" and "20003" in auth.detail
    assert auth.response["status_code"] == 401
    assert line.status == "failed" and "21606" in line.detail
    assert fake.auth_token not in auth.detail and not fake.messages


def test_twilio_poll_reports_final_states(twilio):
    fake, settings = twilio
    envelopes = [_sms(f"+1415555{i:04}") for i in range(5)]
    outcomes = _run(lambda: TwilioSender(settings), _send_all(envelopes))
    queued, delivered, unreachable, filtered, landline = [o.provider_message_id for o in outcomes]
    fake.advance(delivered, "delivered")
    fake.advance(unreachable, "undelivered", 30003)
    fake.advance(filtered, "failed", 30007)
    fake.advance(landline, "undelivered", 30006)
    fake.advance(queued, "sent")
    missing = "SM" + "0" * 32

    reports = _run(
        lambda: TwilioSender(settings),
        lambda s: s.poll([queued, delivered, unreachable, filtered, landline, missing]),
    )

    by_sid = {r.provider_message_id: r for r in reports}
    assert set(by_sid) == {delivered, unreachable, filtered, landline, missing}
    assert {sid: r.status for sid, r in by_sid.items()} == {
        delivered: "delivered",
        unreachable: "bounced",
        filtered: "failed",
        landline: "bounced",
        missing: "failed",
    }
    assert by_sid[filtered].extra["error_code"] == 30007 and "30007" in by_sid[filtered].detail
    assert by_sid[delivered].at == fake.messages[delivered]["updated"]
    assert "20404" in by_sid[missing].detail


def test_twilio_status_callback_is_signed_and_parsed():
    fake, receiver = FakeTwilio(), CallbackReceiver()
    with _serving(fake) as api, _serving(receiver) as ours:
        receiver.url = ours
        callback = f"{ours}/hooks/twilio?workspace=acme"
        settings = TwilioSettings(
            fake.account_sid,
            fake.auth_token,
            fake.numbers[0],
            status_callback_url=callback,
            base_url=api,
        )
        envelopes = [_sms("+14155550100"), _sms("+14155550101")]
        sent = _run(lambda: TwilioSender(settings), _send_all(envelopes))
        fake.advance(sent[0].provider_message_id, "sent")
        fake.advance(sent[0].provider_message_id, "delivered")
        fake.advance(sent[1].provider_message_id, "undelivered", 30005)

    assert [url for url, _, _ in receiver.received] == [callback] * 3
    for url, params, signature in receiver.received:
        assert verify_twilio_signature(fake.auth_token, url, params, signature)
        assert not verify_twilio_signature("other-token", url, params, signature)
        assert not verify_twilio_signature(
            fake.auth_token, url.replace("acme", "evil"), params, signature
        )
        assert not verify_twilio_signature(
            fake.auth_token, url, {**params, "MessageStatus": "delivered!"}, signature
        )
    interim, delivered, bounced = [parse_twilio_callback(p) for _, p, _ in receiver.received]
    assert interim is None
    assert (delivered.status, delivered.provider_message_id) == (
        "delivered",
        sent[0].provider_message_id,
    )
    assert (bounced.status, bounced.extra["error_code"]) == ("bounced", 30005)


def test_twilio_signature_follows_the_documented_example():
    # Twilio's published example: its token, URL and parameters, and the signature it shows.
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert _twilio_sign("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert verify_twilio_signature("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not verify_twilio_signature("12345", url, params, "")
    assert not verify_twilio_signature("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ")
    persian = {"Body": PERSIAN, "MessageSid": "SM1"}
    assert verify_twilio_signature("t", url, persian, _twilio_sign("t", url, persian))


@pytest.mark.parametrize(
    ("status", "error_code", "expected"),
    [
        ("queued", None, None),
        ("sending", None, None),
        ("sent", None, None),
        ("delivered", None, "delivered"),
        ("undelivered", "30003", "bounced"),
        ("undelivered", "30005", "bounced"),
        ("failed", "30006", "bounced"),
        ("undelivered", "30008", "failed"),
        ("failed", "30007", "failed"),
        ("canceled", None, "failed"),
    ],
)
def test_twilio_callback_statuses(status, error_code, expected):
    params = {"MessageSid": "SM1", "MessageStatus": status}
    if error_code:
        params["ErrorCode"] = error_code
    report = parse_twilio_callback(params)
    assert (report and report.status) == expected
    if report and error_code:
        assert error_code in report.detail


def test_twilio_callback_rejects_what_is_not_one():
    for params in ({}, {"MessageSid": "SM1"}, {"MessageStatus": "delivered"}):
        with pytest.raises(ValueError):
            parse_twilio_callback(params)


def test_twilio_200_concurrent_sends_arrive_exactly_once(twilio):
    fake, settings = twilio
    envelopes = [_sms(f"+1415{i:07}", f"پیام {i}") for i in range(200)]
    outcomes = _run(lambda: TwilioSender(settings), _send_all(envelopes))

    assert {o.status for o in outcomes} == {"sent"}
    assert len({o.provider_message_id for o in outcomes}) == 200 == len(fake.messages)
    assert {m["to"]: m["body"] for m in fake.messages.values()} == {
        e.to: e.content["text"] for e in envelopes
    }
    assert [fake.messages[o.provider_message_id]["to"] for o in outcomes] == [
        e.to for e in envelopes
    ]


def test_senders_speak_the_sender_protocol():
    kavenegar = KavenegarSender(KavenegarSettings("key"))
    twilio = TwilioSender(TwilioSettings("AC1", "token", "+15017122661"))
    for sender in (kavenegar, twilio):
        assert isinstance(sender, Sender) and sender.channel == "sms"
        asyncio.run(sender.aclose())
    assert (kavenegar.provider, twilio.provider) == ("kavenegar", "twilio")
