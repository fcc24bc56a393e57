"""A real gateway on a free loopback port for the whole module set (helpers in
``gateway_helpers``). Tests that crash or overload a gateway start their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_helpers import Gateway, add_key

from safar.config import SafarHome


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for the session.

    A short key TTL and flush interval keep tests that wait for revocation or for landing
    files quick; ``test_durability`` checks the default interval's promise on its own gateway.
    """
    home = SafarHome(Path(tmp_path_factory.mktemp("gateway_home"))).ensure()
    running = Gateway(home, ["--key-ttl", "0.3", "--flush-interval", "0.2"]).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def write_key(gateway: Gateway) -> str:
    return add_key(gateway.home, "web")


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        yield http
