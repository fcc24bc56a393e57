"""``safar gateway``: serve the gateway with uvicorn until interrupted."""

from __future__ import annotations

import uvicorn

from safar.config import SafarHome
from safar.gateway.app import create_app
from safar.gateway.settings import GatewaySettings


def serve(home: SafarHome, host: str, port: int, settings: GatewaySettings) -> None:
    """Run the gateway in this process; SIGINT/SIGTERM land every accepted event, then exit.

    One process, one event loop: the write-ahead log directory belongs to one gateway (a
    second one on the same home refuses to start). uvloop and httptools keep the per-request
    cost low, and the access log is off because at tens of thousands of events per second it
    would cost more than the requests.

    Raises:
        RuntimeError: start-up failed (another gateway holds the log directory, …).
    """
    config = uvicorn.Config(
        create_app(home, settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="info",
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
        # uvicorn would otherwise rewrite the client address from X-Forwarded-For whenever
        # the peer is 127.0.0.1; the gateway decides that itself (--trusted-proxy).
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise RuntimeError("the gateway did not start; the reason is logged above")
