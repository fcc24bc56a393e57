"""Reading a request body within its limits: size, gzip (bomb-proof), JSON."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from safar.gateway.errors import ApiError, too_large


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it is known to be over ``limit`` bytes.

    Raises:
        ApiError: 400 when the body is larger than ``limit`` or the client went away.
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large("request", limit)
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large("request", limit)
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody will read the answer, but this is the client's doing, not a server error.
        raise ApiError(400, "invalid_request", "the client left before sending its body") from None
    return b"".join(chunks)


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress a gzip body (all members), stopping as soon as it passes ``limit`` bytes.

    A small body can inflate to gigabytes (a gzip bomb); decompressing with a cap means the
    gateway never holds more than ``limit`` + 1 bytes of it.

    Raises:
        ApiError: 400 when the data is not gzip or inflates past ``limit``.

    Example:
        >>> import gzip
        >>> gunzip(gzip.compress(b"{}") + gzip.compress(b" "), 100)
        b'{} '
        >>> gunzip(gzip.compress(b"0" * 5000), 1024)  # 5 KB from a 40-byte body
        Traceback (most recent call last):
        ...
        safar.gateway.errors.ApiError: request larger than 1 KB (the limit per request)
    """
    out = []
    total = 0
    while data:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(data, limit + 1 - total)
        except zlib.error as exc:
            raise ApiError(400, "invalid_gzip", f"body is not valid gzip: {exc}") from None
        total += len(chunk)
        if total > limit:
            raise too_large("request", limit)
        if not inflater.eof:
            raise ApiError(400, "invalid_gzip", "gzip body is truncated")
        out.append(chunk)
        data = inflater.unused_data
    return b"".join(out)


def decode_body(request: Request, raw: bytes, limit: int) -> bytes:
    """The body after ``Content-Encoding``; any ``Content-Type`` is read as JSON.

    Browsers send ``text/plain`` to avoid a CORS preflight, so the type is not checked.

    Raises:
        ApiError: 415 for an encoding other than gzip or identity, 400 for bad gzip.
    """
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding in ("gzip", "x-gzip"):
        return gunzip(raw, limit)
    raise ApiError(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported")


def parse_json(body: bytes) -> Any:
    """Parse a JSON body.

    Raises:
        ApiError: 400 with the parser's reason.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
