"""Exactly once under SIGKILL: a 5,000-message send, the dispatcher killed 20 times mid-send.

Every delivery must reach the customer's endpoint and be applied there once; a delivery may be
*requested* twice only if a kill left it in doubt (the outbox then marks it ``in_doubt``), and
the re-send carries the same idempotency key. The warehouse gets one ``Message Sent`` per
delivery.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import sqlalchemy as sa
from webhook_receiver import webhook_receiver

from channels.webhook import new_secret
from safar.appdb import open_app_db
from safar.appdb.schema import outbox as outbox_table
from safar.config import SafarHome
from safar.delivery import outbox
from safar.delivery.outbox import Delivery, delivery_id, enqueue
from safar.delivery.settings import save_config

MESSAGES = 5_000
KILLS = 20


def _sent(engine: sa.Engine) -> int:
    return outbox.counts(engine).get("sent", 0)


def test_sigkill_twenty_times_during_a_send_delivers_each_message_once(tmp_path: Path) -> None:
    home = SafarHome(tmp_path / "home")
    engine = open_app_db(home)
    secret = new_secret()
    save_config(
        engine, {"providers": {"webhook": {"provider": "webhook", "options": {"secret": secret}}}}
    )
    rng = random.Random(20261123)
    env = {**os.environ, "SAFAR_HOME": str(home.root)}
    env.pop("SAFAR_APP_DB_URL", None)
    command = [
        sys.executable,
        "-m",
        "safar.cli",
        "dispatch",
        "--until-idle",
        "--publish",
        "--batch-size",
        "100",
    ]

    with webhook_receiver(secret) as receiver:
        now = datetime.now(UTC).replace(tzinfo=None)
        deliveries = [
            Delivery(
                delivery_id("crash-test", str(i)),
                "webhook",
                f"person-{i % 700}",
                f"{receiver.url}/orders",
                "transactional",
                {"body": {"n": i, "text": "سفارش شما ارسال شد"}},
                user_id=f"user-{i % 700}",
            )
            for i in range(MESSAGES)
        ]
        assert len(enqueue(engine, deliveries, now)) == MESSAGES

        kills = 0
        while kills < KILLS:
            requested = sum(receiver.requests.values())
            # Let this run record some batches (0 to 3), then kill it a moment later: inside a
            # send, a record, a claim or the publishing of events, wherever it happens to be.
            target = _sent(engine) + rng.randint(0, 300)
            process = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            deadline = time.monotonic() + 60
            while process.poll() is None and (
                sum(receiver.requests.values()) <= requested or _sent(engine) < target
            ):
                assert time.monotonic() < deadline, "the dispatcher made no progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.15))
            if process.poll() is not None:
                break  # it finished everything before the kill
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            assert _sent(engine) < MESSAGES or kills == KILLS

        assert kills == KILLS, f"the send finished after only {kills} kills; make it longer"
        for _ in range(5):
            final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
            assert final.returncode == 0, final.stderr
            if _sent(engine) == MESSAGES:
                break
            # A temporary network error is retried after a backoff: let that time pass.
            with engine.begin() as con:
                con.execute(
                    sa.update(outbox_table)
                    .where(outbox_table.c.state == "queued")
                    .values(not_before=datetime(2000, 1, 1))
                )

        with engine.connect() as con:
            rows = con.execute(
                sa.select(outbox_table.c.delivery_id, outbox_table.c.state, outbox_table.c.in_doubt)
            ).all()
        states = {state for _, state, _ in rows}
        in_doubt = {d for d, _, doubt in rows if doubt}
        with engine.connect() as con:
            unsent = con.execute(
                sa.select(
                    outbox_table.c.state, outbox_table.c.attempts, outbox_table.c.detail
                ).where(outbox_table.c.state != "sent")
            ).all()
        assert states == {"sent"}, unsent

        ids = {d.delivery_id for d in deliveries}
        assert set(receiver.applied) == ids, "some deliveries never arrived"
        assert set(receiver.applied.values()) == {1}
        assert receiver.bad_signatures == 0
        for d in deliveries[:50]:
            assert receiver.bodies[d.delivery_id] == dict(d.content["body"])
        resent = {key for key, n in receiver.requests.items() if n > 1}
        # Only deliveries a kill left in doubt were sent again, each with the same key.
        assert resent <= in_doubt
        assert in_doubt, "no kill landed inside a batch; the test did not test anything"

    parquet = str(home.raw_events / "**" / "*.parquet")
    sent_events = duckdb.sql(
        f"""select json_extract_string(properties, '$.delivery_id') as delivery_id,
                   count(distinct message_id) as ids
            from read_parquet('{parquet}', hive_partitioning = false)
            where event = 'Message Sent' group by 1"""
    ).fetchall()
    assert len(sent_events) == MESSAGES
    assert {ids for _, ids in sent_events} == {1}
    queued = duckdb.sql(
        f"""select count(distinct message_id)
            from read_parquet('{parquet}', hive_partitioning = false)
            where event = 'Message Queued'"""
    ).fetchone()
    assert queued == (MESSAGES,)
    print(json.dumps({"kills": kills, "in_doubt": len(in_doubt), "resent": len(resent)}))
