"""The gateway: a Segment-compatible tracking API that lands events in the raw landing zone.

- :mod:`safar.gateway.app` — the HTTP API (FastAPI on uvicorn) and its request path;
- :mod:`safar.gateway.wal` — group-committed write-ahead log, flusher, crash recovery;
- :mod:`safar.gateway.auth`, :mod:`safar.gateway.body` — write keys; bodies within limits;
- :mod:`safar.gateway.openapi` — the documented request and response shapes;
- :mod:`safar.gateway.server` — ``safar gateway``: run it with uvicorn.

Message normalisation (Segment message → raw row) lives in :mod:`safar.messages`, shared
with bulk import. Senders' documentation: ``docs/sdk.md``.
"""

from __future__ import annotations

from safar.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings"]
