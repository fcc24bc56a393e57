"""The OpenAPI description of the gateway: request and response shapes, as documentation.

The handlers read raw bodies and validate events in plain Python (``safar.messages``) for
speed, so these models are never used to parse a request; they only describe, for
``/openapi.json``, what the handlers accept and answer. The gateway's tests check responses
against the schemas here, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

Id = str | int


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Device(_Open):
    id: str | None = Field(None, description="Device id (IDFV, Android id). → context_device_id")
    type: str | None = Field(None, description="`ios`, `android`, … → context_device_type")
    model: str | None = Field(None, description="→ context_device_model")
    token: str | None = Field(
        None, description="Push token (APNs or FCM registration token). → context_device_token"
    )


class Os(_Open):
    name: str | None = Field(None, description="→ context_os_name")
    version: str | None = None


class App(_Open):
    name: str | None = None
    version: str | None = Field(None, description="→ context_app_version")
    build: str | None = None


class PageContext(_Open):
    url: str | None = Field(None, description="→ context_page_url")
    path: str | None = None
    title: str | None = None
    referrer: str | None = None


class Context(_Open):
    """Free-form; the gateway copies the documented fields into their own columns."""

    ip: str | None = Field(None, description="Set from the request when absent. → context_ip")
    locale: str | None = Field(None, description="→ context_locale")
    timezone: str | None = Field(None, description="→ context_timezone")
    userAgent: str | None = None
    device: Device | None = None
    os: Os | None = None
    app: App | None = None
    page: PageContext | None = None
    traits: dict[str, Any] | None = Field(
        None, description="The user's traits; identify and group fall back to them."
    )


class Message(_Open):
    """Fields every message may carry."""

    messageId: Id | None = Field(None, description="Dedupe key; generated when missing.")
    userId: Id | None = Field(None, description="userId or anonymousId is required.")
    anonymousId: Id | None = None
    timestamp: datetime | None = Field(
        None,
        description="When it happened, device clock (kept as original_timestamp; corrected "
        "with sentAt; clamped to receivedAt if later; before 2000-01-01 is rejected).",
    )
    originalTimestamp: datetime | None = Field(None, description="Used when timestamp is absent.")
    sentAt: datetime | None = Field(None, description="When the SDK sent it, device clock.")
    context: Context | None = None
    integrations: dict[str, Any] | None = None
    writeKey: str | None = Field(None, description="Write key, if not in a header.")


class Track(Message):
    type: Literal["track"] = "track"
    event: str = Field(description="The event name.")
    properties: dict[str, Any] | None = None


class Identify(Message):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] | None = Field(None, description="Needed when userId is absent.")


class Page(Message):
    type: Literal["page"] = "page"
    name: str | None = Field(None, description="Page name, stored as the event name.")
    category: str | None = Field(None, description="Stored in properties.category.")
    properties: dict[str, Any] | None = None


class Screen(Message):
    type: Literal["screen"] = "screen"
    name: str | None = Field(None, description="Screen name, stored as the event name.")
    properties: dict[str, Any] | None = None


class Group(Message):
    type: Literal["group"] = "group"
    groupId: Id
    traits: dict[str, Any] | None = None


class Alias(Message):
    type: Literal["alias"] = "alias"
    previousId: Id
    userId: Id


class Batch(_Open):
    """Up to 500 KB of messages; each needs its ``type``. Bad ones are rejected one by one."""

    batch: list[Track | Identify | Page | Screen | Group | Alias]
    sentAt: datetime | None = Field(None, description="Used for messages without their own.")
    context: Context | None = Field(None, description="Merged under each message's context.")
    writeKey: str | None = None


class EventError(BaseModel):
    index: int = Field(description="Position of the message (0 for single-message calls).")
    reason: str


class Accepted(BaseModel):
    """Segment's ``{"success": true}``, with what happened to each message."""

    success: Literal[True] = True
    accepted: int = Field(description="Messages stored (on disk when this is sent).")
    rejected: int = Field(description="Messages refused; each is in the rejected file.")
    errors: list[EventError] = Field(description="One entry per rejected message.")


class Error(BaseModel):
    """Any refused request; ``code`` is stable, ``message`` is for people."""

    success: Literal[False] = False
    code: str = Field(
        description="`invalid_json`, `invalid_request`, `invalid_event`, `event_too_large`, "
        "`request_too_large`, `invalid_gzip`, `unsupported_encoding`, `unauthorized`, "
        "`overloaded`, `unavailable`."
    )
    message: str
    limit: int | None = Field(None, description="The limit in bytes, for the *_too_large codes.")
    accepted: int | None = None
    rejected: int | None = None
    errors: list[EventError] | None = None


class SourceSettings(_Open):
    """analytics.js / mobile SDK settings: they send to ``integrations['Segment.io'].apiHost``."""

    integrations: dict[str, Any]
    plan: dict[str, Any]


MESSAGE_MODELS: dict[str, type[BaseModel]] = {
    "track": Track,
    "identify": Identify,
    "page": Page,
    "screen": Screen,
    "group": Group,
    "alias": Alias,
    "batch": Batch,
    "import": Batch,
}

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
_CORS = {"Access-Control-Allow-Origin": {"schema": {"type": "string"}}}

INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Accepted, "description": "Stored (durably) or rejected, message by message.",
          "headers": _CORS},
    400: {"model": Error, "description": "Invalid JSON, request or (single) message, or a "
          "limit passed (32 KB per message, 500 KB per request)."},
    401: {"model": Error, "description": "Missing, unknown or revoked write key."},
    415: {"model": Error, "description": "Content-Encoding other than gzip."},
    429: {"model": Error, "description": "The landing zone is behind; retry later.",
          "headers": _RETRY_AFTER},
    503: {"model": Error, "description": "Storage failed; nothing was stored. Retry later.",
          "headers": _RETRY_AFTER},
}  # fmt: skip

PREFLIGHT_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "CORS preflight: any origin may send."},
}

SETTINGS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": SourceSettings, "description": "Settings pointing the SDK at this gateway."},
    401: {"model": Error, "description": "Unknown or revoked write key."},
}

SECURITY = [{"basicAuth": []}, {"writeKeyHeader": []}, {}]


def request_body(kind: str) -> dict[str, Any]:
    """The ``requestBody`` of an ingest operation, for ``openapi_extra``."""
    schema = {"$ref": f"#/components/schemas/{MESSAGE_MODELS[kind].__name__}"}
    return {
        "requestBody": {
            "required": True,
            "description": "JSON, optionally with `Content-Encoding: gzip`. `text/plain` is "
            "read as JSON (browsers use it to avoid a preflight).",
            "content": {"application/json": {"schema": schema}, "text/plain": {"schema": schema}},
        },
        "security": SECURITY,
    }


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the message models and the write-key security schemes."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            models = [(model, "validation") for model in {*MESSAGE_MODELS.values()}]
            _, definitions = models_json_schema(models, ref_template="#/components/schemas/{model}")
            components = spec.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for name, schema in definitions.get("$defs", {}).items():
                schemas.setdefault(name, schema)
            # FastAPI documents a 422 for every route with a parameter; the gateway never
            # answers one (the only parameter is a free-form path segment), so drop it.
            for operations in spec["paths"].values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            components["securitySchemes"] = {
                "basicAuth": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "User name: the write key; password: empty.",
                },
                "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
            }
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
