"""Which address becomes ``context.ip``: the peer, or ``X-Forwarded-For`` from trusted proxies."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gateway_helpers import Gateway, basic, new_id, wait_for_rows
from starlette.requests import Request

from safar.config import SafarHome
from safar.gateway.app import Gateway as GatewayState
from safar.gateway.settings import GatewaySettings, parse_networks


def _request(peer: str, forwarded: str | None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 50000), "headers": headers})


@pytest.fixture
def behind_proxy(tmp_path: Path) -> GatewayState:
    trusted = parse_networks(["10.0.0.0/8", "127.0.0.1"])
    return GatewayState(SafarHome(tmp_path), GatewaySettings(trusted_proxies=trusted))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.1.2.3", "203.0.113.7", "203.0.113.7"),
        (
            "10.1.2.3",
            "198.51.100.1, 203.0.113.7",
            "203.0.113.7",
        ),  # the left one is the client's say
        ("10.1.2.3", "203.0.113.7, 10.9.9.9", "203.0.113.7"),  # a second trusted hop is skipped
        ("10.1.2.3", "10.9.9.9", "10.1.2.3"),  # only proxies: the peer
        ("10.1.2.3", None, "10.1.2.3"),
        ("192.0.2.50", "203.0.113.7", "192.0.2.50"),  # an untrusted peer's header is ignored
        ("10.1.2.3", "garbage", "garbage"),
    ],
)
def test_forwarded_for_is_believed_from_trusted_proxies_only(
    behind_proxy: GatewayState, peer: str, forwarded: str | None, client: str
) -> None:
    assert behind_proxy.client_ip(_request(peer, forwarded)) == client


def test_forwarded_for_is_ignored_without_trusted_proxies(
    client: httpx.Client, write_key: str, gateway: Gateway
) -> None:
    message = {"userId": "u", "event": "E", "messageId": new_id()}
    headers = {**basic(write_key), "X-Forwarded-For": "203.0.113.7"}
    assert client.post("/v1/track", json=message, headers=headers).status_code == 200
    [row] = wait_for_rows(gateway.home, [message["messageId"]])
    assert row["context_ip"] == "127.0.0.1"
