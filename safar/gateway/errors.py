"""The gateway's error responses: one exception type, one JSON shape.

The shape ``{"success": false, "code": ..., "message": ...}`` is what Segment's and
RudderStack's SDKs read from an error response (they log ``code`` and ``message``).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}


class ApiError(Exception):
    """A request the gateway refuses, with its HTTP status and a machine-readable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> Response:
        body = {"success": False, "code": self.code, "message": self.message, **self.extra}
        return json_response(body, self.status, self.headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**CORS_HEADERS, **headers} if headers else CORS_HEADERS,
    )


def too_large(what: str, limit: int) -> ApiError:
    """The 400 for a body or event over its limit; the message names the limit.

    Example:
        >>> too_large("request", 500 * 1024).message
        'request larger than 500 KB (the limit per request)'
    """
    code = "event_too_large" if what == "event" else "request_too_large"
    return ApiError(
        400, code, f"{what} larger than {limit // 1024} KB (the limit per {what})", limit=limit
    )
