"""SMS over HTTP: Kavenegar and Twilio, each through its own small ``httpx`` client.

Both providers take a form-encoded POST (UTF-8, so Persian text travels as is) and answer JSON;
each has a table that turns its error codes into an :class:`~channels.base.Outcome`, and a way
to learn a message's final state later: polling and a delivery callback.

Idempotency differs. Kavenegar's ``localid`` is a duplicate guard: a send repeating an earlier
``localid`` returns the earlier message instead of sending again, so ``delivery_id`` goes there
and a re-send after a crash costs nothing. Twilio's Messages API takes no idempotency key: a
process that dies after Twilio accepted a message but before the outbox recorded it sends it
again on retry. The dispatcher's outbox (record the attempt, send, record the outcome) narrows
that window to the crash itself; nothing here can close it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from channels.base import Envelope, Outcome, Status, StatusReport, parse_retry_after

log = logging.getLogger(__name__)

FinalStatus = Literal["delivered", "failed", "bounced"]

KAVENEGAR_POLL_BATCH = 500
"""Message ids per ``status.json`` call; Kavenegar documents 500 as the most one call takes."""


def _http_date(value: str | None) -> datetime | None:
    """An RFC 2822 date (HTTP headers, Twilio's ``date_updated``), or None if it is not one.

    Example:
        >>> _http_date("Thu, 30 Jul 2015 20:12:33 +0000")
        datetime.datetime(2015, 7, 30, 20, 12, 33, tzinfo=datetime.timezone.utc)
        >>> _http_date("yesterday") is None
        True
    """
    try:
        return parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None


def _body(response: httpx.Response) -> Any:
    """The response's JSON, or its text when it is not JSON (a proxy's HTML error page)."""
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def _transient(http_status: int) -> bool:
    return http_status in (408, 429) or http_status >= 500


def _network_outcome(provider: str, exc: httpx.HTTPError, secret: str) -> Outcome:
    # Kavenegar puts the API key in the URL path; keep it out of anything we store.
    words = str(exc).replace(secret, "***")
    detail = f"network error: {type(exc).__name__}" + (f": {words}" if words else "")
    return Outcome("retry", provider, detail)


class _HttpSender:
    """One connection pool per sender, and a gate that keeps at most its size in flight.

    Requests beyond the pool wait at the gate rather than in httpcore's pool, whose bookkeeping
    costs requests times connections on every change (a burst of 400 sends spent most of its
    time there), and whose wait would count against the timeout and turn a burst into retries.
    """

    def __init__(
        self, base_url: str, timeout: float, max_connections: int, auth: tuple[str, str] | None
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            auth=auth,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        self._gate = asyncio.Semaphore(max_connections)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self._gate:
            return await self._client.request(method, path, **kwargs)

    async def aclose(self) -> None:
        """Close the connection pool; the sender is not used afterwards."""
        await self._client.aclose()


# --- Kavenegar ---------------------------------------------------------------------------------

_KAVENEGAR_ERRORS: dict[int, tuple[Status, str]] = {
    400: ("failed", "missing or invalid parameters"),
    401: ("failed", "account inactive"),
    403: ("failed", "invalid API key"),
    409: ("retry", "server cannot answer now"),
    411: ("bounced", "invalid receptor"),
    412: ("failed", "invalid sender line"),
    # Retried, not failed: an operator tops the account up and every queued message then goes;
    # failing would drop a whole campaign over a billing lapse. The dispatcher's attempt limit
    # and queue TTL still end it if nobody does.
    418: ("retry", "insufficient credit"),
    422: ("failed", "invalid characters in the message"),
    429: ("retry", "too many requests"),
    451: ("retry", "too many calls from this IP"),
}

_KAVENEGAR_STATES: dict[int, tuple[FinalStatus | None, str]] = {
    1: (None, "queued"),
    2: (None, "scheduled"),
    4: (None, "sent to the operator"),
    5: (None, "sent to the operator"),
    6: ("failed", "failed"),
    10: ("delivered", "delivered"),
    11: ("failed", "undelivered"),
    13: ("failed", "canceled"),
    14: ("failed", "blocked by the recipient"),
    # Kavenegar does not know the id; polling it again will never tell more.
    100: ("failed", "unknown message id"),
}
_KAVENEGAR_OPTED_OUT = 14


def classify_kavenegar_error(code: int) -> tuple[Status, str]:
    """What a Kavenegar error code means for the message, and the reason in plain words.

    Kavenegar reports errors as an HTTP status equal to ``return.status``. Codes outside its
    table follow HTTP: 408, 429 and 5xx are temporary, other codes permanent.

    Args:
        code: ``return.status`` (or the HTTP status when the body is not Kavenegar's JSON).

    Returns:
        The outcome status and an English reason.

    Example:
        >>> classify_kavenegar_error(411)
        ('bounced', 'invalid receptor')
        >>> classify_kavenegar_error(418)
        ('retry', 'insufficient credit')
        >>> classify_kavenegar_error(503)
        ('retry', 'HTTP 503')
        >>> classify_kavenegar_error(413)
        ('failed', 'HTTP 413')
    """
    if code in _KAVENEGAR_ERRORS:
        return _KAVENEGAR_ERRORS[code]
    return ("retry" if _transient(code) else "failed"), f"HTTP {code}"


def kavenegar_report(
    message_id: str | int, state: int, statustext: str = "", at: datetime | None = None
) -> StatusReport | None:
    """A status report for a Kavenegar message state, or None while it is not final.

    Args:
        message_id: Kavenegar's ``messageid``.
        state: Kavenegar's message status code (1, 2, 4, 5 pending; 6, 10, 11, 13, 14, 100 final).
        statustext: Kavenegar's own words for the state, kept in the detail.
        at: when the state was learnt; now if not given (Kavenegar does not say).

    Returns:
        The report, or None for a pending or unknown state.

    Example:
        >>> kavenegar_report(8792343, 4) is None
        True
        >>> report = kavenegar_report(8792343, 14)
        >>> report.status, report.extra["opted_out"]
        ('failed', True)
    """
    final, words = _KAVENEGAR_STATES.get(state, (None, "unknown"))
    if final is None:
        return None
    extra: dict[str, Any] = {"provider_status": state}
    if state == _KAVENEGAR_OPTED_OUT:
        extra["opted_out"] = True
    detail = f"Kavenegar status {state}: {words}" + (f" ({statustext})" if statustext else "")
    return StatusReport("kavenegar", str(message_id), final, at or datetime.now(UTC), detail, extra)


def parse_kavenegar_callback(params: Mapping[str, str]) -> StatusReport | None:
    """Read Kavenegar's delivery callback (``messageid`` and ``status``, as form or query).

    Args:
        params: the callback's form or query fields.

    Returns:
        The report for a final state, None for a pending one.

    Raises:
        ValueError: ``messageid`` or a numeric ``status`` is missing: not Kavenegar's callback.

    Example:
        >>> parse_kavenegar_callback({"messageid": "8792343", "status": "10"}).status
        'delivered'
        >>> parse_kavenegar_callback({"messageid": "8792343", "status": "1"}) is None
        True
    """
    message_id, state = params.get("messageid", "").strip(), params.get("status", "").strip()
    if not message_id or not state.isdigit():
        raise ValueError(f"not a Kavenegar delivery callback: {dict(params)!r}")
    return kavenegar_report(message_id, int(state), params.get("statustext", ""))


@dataclass(frozen=True)
class KavenegarSettings:
    """How to reach Kavenegar.

    Attributes:
        api_key: the account's API key (it goes in the URL path, Kavenegar's scheme).
        sender: the line number to send from; None uses the account's default line.
        base_url: the API's root.
        timeout: seconds for connect, read and write each.
        max_connections: requests in flight at once; more wait their turn.
    """

    api_key: str
    sender: str | None = None
    base_url: str = "https://api.kavenegar.com"
    timeout: float = 10.0
    max_connections: int = 20


class KavenegarSender(_HttpSender):
    """Sends SMS through Kavenegar's REST API, with ``delivery_id`` as ``localid``."""

    channel = "sms"
    provider = "kavenegar"

    def __init__(self, settings: KavenegarSettings) -> None:
        self.settings = settings
        base_url = f"{settings.base_url.rstrip('/')}/v1/{settings.api_key}"
        super().__init__(base_url, settings.timeout, settings.max_connections, None)

    async def send(self, envelope: Envelope) -> Outcome:
        """Send one SMS; a repeated ``delivery_id`` returns the first send's message.

        Args:
            envelope: ``to`` is the receptor, ``content["text"]`` the message.

        Returns:
            ``sent`` (or already ``delivered``/``failed`` when a repeated ``localid`` finds a
            finished message), else what the error table says.
        """
        text = envelope.content.get("text")
        if not text:
            return Outcome("failed", self.provider, "the envelope has no SMS text")
        form = {"receptor": envelope.to, "message": text, "localid": envelope.delivery_id}
        if self.settings.sender:
            form["sender"] = self.settings.sender
        try:
            response = await self._request("POST", "/sms/send.json", data=form)
        except httpx.HTTPError as exc:
            return _network_outcome(self.provider, exc, self.settings.api_key)
        return self._outcome(response)

    def _outcome(self, response: httpx.Response) -> Outcome:
        body = _body(response)
        answer = {"status_code": response.status_code, "body": body}
        result = body.get("return") if isinstance(body, dict) else None
        result = result if isinstance(result, dict) else {}
        code = result.get("status")
        if response.status_code != 200 or code not in (200, None):
            code = code if isinstance(code, int) and code != 200 else response.status_code
            status, reason = classify_kavenegar_error(code)
            words = result.get("message") or str(body)[:200]
            return Outcome(
                status,
                self.provider,
                f"Kavenegar refused the message: {code} {reason} ({words})",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                address_dead=status == "bounced",
                response=answer,
            )
        entries = body.get("entries")
        if not isinstance(entries, list) or not entries or "messageid" not in entries[0]:
            # Safe to try again: the same localid cannot send twice.
            return Outcome(
                "retry", self.provider, "Kavenegar answered 200 without a message", response=answer
            )
        entry = entries[0]
        message_id = str(entry["messageid"])
        report = kavenegar_report(message_id, entry.get("status", 0), entry.get("statustext", ""))
        if report is None:
            words = entry.get("statustext")
            detail = f"Kavenegar accepted it as message {message_id}" + (
                f" ({words})" if words else ""
            )
            return Outcome("sent", self.provider, detail, message_id, response=answer)
        return Outcome(report.status, self.provider, report.detail, message_id, response=answer)

    async def poll(self, provider_message_ids: Sequence[str]) -> list[StatusReport]:
        """Ask Kavenegar for messages' states, :data:`KAVENEGAR_POLL_BATCH` ids per call.

        A batch Kavenegar does not answer is logged and skipped; its messages are asked about
        again on the next poll.

        Args:
            provider_message_ids: Kavenegar ``messageid`` values.

        Returns:
            Reports for the messages in a final state.
        """
        reports: list[StatusReport] = []
        for start in range(0, len(provider_message_ids), KAVENEGAR_POLL_BATCH):
            batch = provider_message_ids[start : start + KAVENEGAR_POLL_BATCH]
            try:
                response = await self._request(
                    "POST", "/sms/status.json", data={"messageid": ",".join(batch)}
                )
            except httpx.HTTPError as exc:
                log.warning("Kavenegar status poll failed: %s", type(exc).__name__)
                continue
            body = _body(response)
            entries = body.get("entries") if isinstance(body, dict) else None
            if response.status_code != 200 or not isinstance(entries, list):
                log.warning("Kavenegar status poll answered %s: %s", response.status_code, body)
                continue
            for entry in entries:
                if not isinstance(entry, dict) or "messageid" not in entry:
                    continue
                report = kavenegar_report(
                    entry["messageid"], entry.get("status", 0), entry.get("statustext", "")
                )
                if report is not None:
                    reports.append(report)
        return reports


# --- Twilio ------------------------------------------------------------------------------------

_TWILIO_ERRORS: dict[int, tuple[Status, str]] = {
    20003: ("failed", "authentication failed"),
    20429: ("retry", "too many requests"),
    21211: ("bounced", "invalid 'To' number"),
    21614: ("bounced", "'To' is not a mobile number"),
    21610: ("failed", "the recipient unsubscribed at the carrier (replied STOP)"),
}
_TWILIO_OPTED_OUT = 21610

_TWILIO_UNREACHABLE = {
    30003: "unreachable destination handset",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
}

_TWILIO_FINAL: dict[str, FinalStatus] = {
    "delivered": "delivered",
    "undelivered": "failed",
    "failed": "failed",
    # A scheduled message canceled before it went; it never will.
    "canceled": "failed",
}


def classify_twilio_error(code: int | None, http_status: int) -> tuple[Status, str]:
    """What a Twilio REST error means for the message, and the reason in plain words.

    Args:
        code: the error body's ``code``, if Twilio sent one.
        http_status: the response's HTTP status, for codes outside the table.

    Returns:
        The outcome status and an English reason.

    Example:
        >>> classify_twilio_error(21211, 400)
        ('bounced', "invalid 'To' number")
        >>> classify_twilio_error(None, 429)
        ('retry', 'HTTP 429')
        >>> classify_twilio_error(21606, 400)
        ('failed', 'HTTP 400')
    """
    if code in _TWILIO_ERRORS:
        return _TWILIO_ERRORS[code]
    return ("retry" if _transient(http_status) else "failed"), f"HTTP {http_status}"


def twilio_report(
    sid: str,
    message_status: str,
    error_code: int | None = None,
    at: datetime | None = None,
    error_message: str | None = None,
) -> StatusReport | None:
    """A status report for a Twilio message status, or None while it is not final.

    Args:
        sid: the message's ``sid``.
        message_status: Twilio's status (``queued``, ``sent``, ``delivered``, ``undelivered``…).
        error_code: Twilio's error code for an undelivered or failed message.
        at: when Twilio last updated the message; now if not given.
        error_message: Twilio's words for the error, when it gave any.

    Returns:
        The report; an unreachable, unknown or landline number (30003, 30005, 30006) is
        ``bounced``. None for a status that is not final.

    Example:
        >>> twilio_report("SM1", "undelivered", 30005).status
        'bounced'
        >>> twilio_report("SM1", "sent") is None
        True
    """
    final = _TWILIO_FINAL.get(message_status)
    if final is None:
        return None
    detail = f"Twilio status {message_status}"
    if error_code in _TWILIO_UNREACHABLE:
        final = "bounced"
        detail += f", error {error_code}: {_TWILIO_UNREACHABLE[error_code]}"
    elif error_code:
        detail += f", error {error_code}"
    if error_message:
        detail += f" ({error_message})"
    extra = {"provider_status": message_status, "error_code": error_code}
    return StatusReport("twilio", sid, final, at or datetime.now(UTC), detail, extra)


def parse_twilio_callback(params: Mapping[str, str]) -> StatusReport | None:
    """Read Twilio's status callback (``MessageSid``, ``MessageStatus``, ``ErrorCode``).

    Verify the request with :func:`verify_twilio_signature` first.

    Args:
        params: the callback's form fields.

    Returns:
        The report for a final status, None for an interim one.

    Raises:
        ValueError: ``MessageSid`` or ``MessageStatus`` is missing: not a status callback.

    Example:
        >>> parse_twilio_callback({"MessageSid": "SM1", "MessageStatus": "delivered"}).status
        'delivered'
    """
    sid, message_status = params.get("MessageSid"), params.get("MessageStatus")
    if not sid or not message_status:
        raise ValueError(f"not a Twilio status callback: {dict(params)!r}")
    error_code = params.get("ErrorCode", "")
    return twilio_report(sid, message_status, int(error_code) if error_code.isdigit() else None)


def verify_twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str], signature: str
) -> bool:
    """Whether ``X-Twilio-Signature`` proves a callback came from the account's Twilio.

    Twilio signs the full URL it called (scheme, host, path, query) followed by every POST
    field, sorted by name, as name and value concatenated: base64 of HMAC-SHA1 keyed with the
    auth token. ``url`` must be exactly what Twilio called, as a proxy in front may rewrite it.

    Args:
        auth_token: the account's auth token.
        url: the URL Twilio requested.
        params: the POST form fields (empty for a GET).
        signature: the ``X-Twilio-Signature`` header.

    Returns:
        True if the signature matches; compared in constant time.

    Example:
        >>> params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030",
        ...           "Digits": "1234", "From": "+12349013030", "To": "+18005551212"}
        >>> url = "https://mycompany.com/myapp.php?foo=1&bar=2"
        >>> verify_twilio_signature("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
        True
        >>> verify_twilio_signature("12345", url, {**params, "Digits": "1235"},
        ...                         "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
        False
    """
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(base64.b64encode(digest), signature.encode())


@dataclass(frozen=True)
class TwilioSettings:
    """How to reach Twilio.

    Attributes:
        account_sid: the account's SID (``AC…``), also the basic-auth user.
        auth_token: the account's auth token, the basic-auth password.
        from_number: the number to send from; or
        messaging_service_sid: a messaging service (``MG…``) that picks the number; used when
            both are set.
        status_callback_url: where Twilio posts status changes; None to rely on polling.
        base_url: the API's root.
        timeout: seconds for connect, read and write each.
        max_connections: requests in flight at once; more wait their turn.
    """

    account_sid: str
    auth_token: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    status_callback_url: str | None = None
    base_url: str = "https://api.twilio.com"
    timeout: float = 10.0
    max_connections: int = 20

    def __post_init__(self) -> None:
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("Twilio needs a from_number or a messaging_service_sid")


class TwilioSender(_HttpSender):
    """Sends SMS through Twilio's Messages API (no idempotency key: see the module docs)."""

    channel = "sms"
    provider = "twilio"

    def __init__(self, settings: TwilioSettings) -> None:
        self.settings = settings
        base_url = f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/{settings.account_sid}"
        auth = (settings.account_sid, settings.auth_token)
        super().__init__(base_url, settings.timeout, settings.max_connections, auth)

    async def send(self, envelope: Envelope) -> Outcome:
        """Send one SMS.

        Args:
            envelope: ``to`` is the E.164 number, ``content["text"]`` the body.

        Returns:
            ``sent`` with the message ``sid``, else what the error table says; a recipient who
            replied STOP is ``failed`` with ``response["opted_out"]`` set.
        """
        text = envelope.content.get("text")
        if not text:
            return Outcome("failed", self.provider, "the envelope has no SMS text")
        form = {"To": envelope.to, "Body": text}
        if self.settings.messaging_service_sid:
            form["MessagingServiceSid"] = self.settings.messaging_service_sid
        else:
            form["From"] = self.settings.from_number or ""
        if self.settings.status_callback_url:
            form["StatusCallback"] = self.settings.status_callback_url
        try:
            response = await self._request("POST", "/Messages.json", data=form)
        except httpx.HTTPError as exc:
            return _network_outcome(self.provider, exc, self.settings.auth_token)
        return self._outcome(response)

    def _outcome(self, response: httpx.Response) -> Outcome:
        body = _body(response)
        answer: dict[str, Any] = {"status_code": response.status_code, "body": body}
        fields = body if isinstance(body, dict) else {}
        if response.is_success:
            sid = fields.get("sid")
            report = twilio_report(sid, fields.get("status", ""), fields.get("error_code"))
            if report is not None:
                return Outcome(report.status, self.provider, report.detail, sid, response=answer)
            detail = f"Twilio accepted it as {sid} ({fields.get('status', 'no status')})"
            return Outcome("sent", self.provider, detail, sid, response=answer)
        code = fields.get("code")
        status, reason = classify_twilio_error(code, response.status_code)
        if code == _TWILIO_OPTED_OUT:
            answer["opted_out"] = True
        words = fields.get("message") or str(body)[:200]
        return Outcome(
            status,
            self.provider,
            f"Twilio refused the message: {code or response.status_code} {reason} ({words})",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            address_dead=status == "bounced",
            response=answer,
        )

    async def poll(self, sids: Sequence[str]) -> list[StatusReport]:
        """Fetch messages from Twilio, one request each, ``max_connections`` at a time.

        A message Twilio does not answer for is logged and skipped, to be asked about on the
        next poll; one Twilio says does not exist (404) is reported ``failed``.

        Args:
            sids: Twilio message ``sid`` values.

        Returns:
            Reports for the messages in a final state.
        """

        async def one(sid: str) -> StatusReport | None:
            try:
                response = await self._request("GET", f"/Messages/{sid}.json")
            except httpx.HTTPError as exc:
                log.warning("Twilio poll of %s failed: %s", sid, type(exc).__name__)
                return None
            body = _body(response)
            if response.status_code == 404:
                fields = body if isinstance(body, dict) else {}
                words = f"{fields.get('code', 404)} {fields.get('message', '')}".strip()
                detail = f"Twilio has no such message: {words}"
                return StatusReport(self.provider, sid, "failed", datetime.now(UTC), detail)
            if response.status_code != 200 or not isinstance(body, dict):
                log.warning("Twilio poll of %s answered %s: %s", sid, response.status_code, body)
                return None
            return twilio_report(
                sid,
                body.get("status", ""),
                body.get("error_code"),
                _http_date(body.get("date_updated")),
                body.get("error_message"),
            )

        return [report for report in await asyncio.gather(*map(one, sids)) if report]
