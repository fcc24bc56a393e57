"""Demo mode end to end: the local sinks, the demo's providers and campaign, and Dagster's
dispatch sensor sending it — every delivery reaches its sink exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_string, policy
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from channels.webhook import new_secret
from dagster_project.defs.delivery.sensors import dispatch_sensor
from dagster_project.defs.resources import SafarResource
from safar.appdb import open_app_db
from safar.appdb.schema import inbox
from safar.config import SafarHome
from safar.delivery import outbox
from safar.delivery.demo import (
    configure_demo_providers,
    demo_deliveries,
    demo_providers,
    webhook_url,
)
from safar.delivery.local_sinks import received
from safar.delivery.settings import load_config, save_config

PER_CHANNEL = {"email": 12, "sms": 8, "push": 5, "in_app": 4, "webhook": 6}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[tuple[SafarHome, int, int, str]]:
    """A home whose app DB sends to local sinks served by ``safar delivery sinks``."""
    home = SafarHome(tmp_path / "home").ensure()
    smtp_port, http_port, secret = _free_port(), _free_port(), new_secret()
    proc = subprocess.Popen(
        [sys.executable, "-m", "safar.cli", "--home", str(home.root), "delivery", "sinks"]
        + ["--smtp-port", str(smtp_port), "--http-port", str(http_port)],
        env={**os.environ, "SAFAR_SINK_WEBHOOK_SECRET": secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read().decode()) from None
                time.sleep(0.2)
        yield home, smtp_port, http_port, secret
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _tick(home: SafarHome, cursor: str | None = None) -> tuple[str, str | None]:
    context = dg.build_sensor_context(
        cursor=cursor, resources={"safar": SafarResource(home=str(home.root))}
    )
    result = dispatch_sensor(context)
    assert isinstance(result, dg.SkipReason)
    return result.skip_message or "", context.cursor


def test_the_demo_campaign_reaches_each_sink_once_through_the_sensor(
    sinks: tuple[SafarHome, int, int, str], demo_home: SafarHome
) -> None:
    home, smtp_port, http_port, secret = sinks
    engine = open_app_db(home)
    assert configure_demo_providers(engine, demo_providers(smtp_port, http_port, secret))
    now = datetime.now(UTC).replace(tzinfo=None)
    deliveries = demo_deliveries(demo_home, webhook_url(http_port), now, PER_CHANNEL)
    assert Counter(d.channel for d in deliveries) == PER_CHANNEL
    assert len({d.person_id for d in deliveries}) == len(deliveries)  # one channel each
    queued = outbox.enqueue(engine, deliveries, now)
    assert len(queued) == len(deliveries)

    message, cursor = _tick(home)

    assert message.startswith(f"dispatched: {len(deliveries)} claimed"), message
    assert outbox.counts(engine) == {"sent": len(deliveries)}
    got = received(home)
    by_channel = Counter(r.channel for r in got)
    assert by_channel == {c: n for c, n in PER_CHANNEL.items() if c != "in_app"}
    # Each provider got the delivery id as its idempotency key, once.
    sent_ids = {d.delivery_id for d in deliveries if d.channel != "in_app"}
    assert sorted(r.idempotency_key for r in got) == sorted(sent_ids)
    with engine.connect() as con:
        assert con.execute(sa.select(sa.func.count()).select_from(inbox)).scalar() == 4

    # The email the sink got is the person's rendered Persian welcome, with tracking.
    email = next(r for r in got if r.channel == "email")
    parsed = message_from_string(email.payload, policy=policy.default)
    assert "خوش آمدید" in str(parsed["Subject"]) and parsed["List-Unsubscribe"]
    html = parsed.get_body(("html",)).get_content()
    assert 'dir="rtl"' in html and "/v1/t/c/" in html
    hook = json.loads(next(r for r in got if r.channel == "webhook").payload)
    assert hook["coupon"] == "SAFAR20" and hook["event"] == "welcome_offer"

    # Queueing the campaign again adds nothing; a tick right after finds nothing to do.
    assert outbox.enqueue(engine, deliveries, now) == []
    message, cursor = _tick(home, cursor)
    assert message == "nothing is due"
    # Once a minute a tick asks the SMS provider for reports: every SMS was delivered.
    message, _ = _tick(home, str(time.time() - 61))
    assert outbox.counts(engine) == {"sent": len(deliveries) - 8, "delivered": 8}
    assert len(received(home)) == len(got)


def test_the_demo_keeps_a_workspaces_own_providers(
    sinks: tuple[SafarHome, int, int, str],
) -> None:
    home, smtp_port, http_port, secret = sinks
    engine = open_app_db(home)
    assert configure_demo_providers(engine, demo_providers(smtp_port, http_port, secret))
    # A later demo with new ports repoints the providers it set itself.
    assert configure_demo_providers(engine, demo_providers(smtp_port + 1, http_port, secret))
    assert load_config(engine).providers["email"].options["port"] == smtp_port + 1

    own = {"provider": "webhook", "options": {"secret": new_secret()}}
    save_config(engine, {**load_config(engine).raw, "providers": {"webhook": own}})

    assert not configure_demo_providers(engine, demo_providers(smtp_port, http_port, secret))
    assert dict(load_config(engine).raw["providers"]) == {"webhook": own}
