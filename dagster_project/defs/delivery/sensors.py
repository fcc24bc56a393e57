"""``dispatch_sensor``: sends the outbox's due messages in place, every few seconds.

An event should reach its message within 10 s (ARCHITECTURE §6), and a run launch alone costs
15–20 s on 2 cores, so the sensor runs the dispatcher itself: every tick that finds a due
delivery sends until nothing is due or ``budget_seconds`` pass (well inside the sensor's 60 s
limit; the next tick goes on). Once a minute it also runs with nothing due, to ask SMS
providers for delivery reports. Delivery events are published by the gateway's log.
"""

import time
from datetime import UTC, datetime

import dagster as dg

from dagster_project.defs.resources import SafarResource
from safar.appdb import open_app_db
from safar.delivery.dispatcher import DispatcherBusy
from safar.delivery.outbox import has_due
from safar.delivery.run import dispatch
from safar.delivery.settings import ConfigError

BUDGET_SECONDS = 40.0
POLL_EVERY_SECONDS = 60.0


@dg.sensor(
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends the outbox's due messages through the channels' providers.",
)
def dispatch_sensor(context: dg.SensorEvaluationContext, safar: SafarResource) -> dg.SkipReason:
    home = safar.safar_home()
    engine = open_app_db(home)
    try:
        due = has_due(engine, datetime.now(UTC).replace(tzinfo=None))
    finally:
        engine.dispose()
    last_poll = float(context.cursor or 0)
    if not due and time.time() - last_poll < POLL_EVERY_SECONDS:
        return dg.SkipReason("nothing is due")
    try:
        total = dispatch(
            home, until_idle=True, budget_seconds=BUDGET_SECONDS, log=context.log.warning
        )
    except DispatcherBusy as busy:
        return dg.SkipReason(str(busy))
    except ConfigError as error:
        context.log.error(f"the delivery settings cannot make a sender: {error}")
        return dg.SkipReason(f"delivery settings have problems: {error}")
    context.update_cursor(str(time.time()))
    return dg.SkipReason(f"dispatched: {total}")
