"""One dispatcher run for a home: settings, senders, crash recovery, then send what is due.

``safar dispatch``, the demo and Dagster's dispatch sensor all run the dispatcher through
:func:`dispatch`, so they recover, track links and publish alike.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import Callable

from safar.appdb import open_app_db
from safar.config import SafarHome, gateway_public_url
from safar.delivery import outbox
from safar.delivery.dispatcher import BatchReport, Dispatcher, dispatcher_lock, utcnow
from safar.delivery.events import LakeSink
from safar.delivery.settings import load_config, tracking_secret


def dispatch(
    home: SafarHome,
    *,
    until_idle: bool,
    publish: bool = False,
    batch_size: int | None = None,
    budget_seconds: float | None = None,
    stop_on_signals: bool = False,
    gateway_url: str | None = None,
    log: Callable[[str], None] = print,
) -> BatchReport:
    """Run the dispatcher of ``home`` until idle, until ``budget_seconds`` pass, or until stopped.

    Args:
        home: the Safar home whose outbox to send.
        until_idle: stop when nothing is due (else keep polling the outbox).
        publish: land delivery events in the lake directly (no gateway is running).
        batch_size: deliveries claimed at once; the settings' size when None.
        budget_seconds: stop after the batch running when this much time has passed.
        stop_on_signals: SIGINT and SIGTERM stop it after the current batch.
        gateway_url: where tracking links point; :func:`gateway_public_url` when None.
        log: where to say what recovery did.

    Returns:
        The run's totals.

    Raises:
        DispatcherBusy: another dispatcher runs for this home.
        ConfigError: the stored provider settings cannot make a sender.
    """
    from safar.delivery.providers import build_senders  # the channels' libraries load slowly

    engine = open_app_db(home)
    try:
        config = load_config(engine)
        if batch_size:
            config = dataclasses.replace(
                config, dispatch=dataclasses.replace(config.dispatch, batch_size=batch_size)
            )
        tracking = {
            "tracking_base_url": gateway_url or gateway_public_url(),
            "tracking_secret": tracking_secret(engine),
        }
        with dispatcher_lock(home):
            recovered = outbox.recover(engine, utcnow())
            if recovered:
                log(
                    f"{recovered} deliveries were in flight when the last dispatcher stopped; "
                    "they are re-sent with the same delivery id"
                )
            senders = build_senders(config, engine, tracking=tracking)
            dispatcher = Dispatcher(engine, senders, config.dispatch)
            sink = LakeSink(home) if publish else None
            return asyncio.run(_run(dispatcher, sink, until_idle, budget_seconds, stop_on_signals))
    finally:
        engine.dispose()


async def _run(
    dispatcher: Dispatcher,
    sink: LakeSink | None,
    until_idle: bool,
    budget_seconds: float | None,
    stop_on_signals: bool,
) -> BatchReport:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if stop_on_signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    if budget_seconds is not None:
        loop.call_later(budget_seconds, stop.set)
    try:
        return await dispatcher.run(sink=sink, until_idle=until_idle, stop=stop)
    finally:
        await dispatcher.aclose()
