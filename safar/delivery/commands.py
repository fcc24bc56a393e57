"""``safar dispatch`` and ``safar delivery settings | status``.

- ``dispatch`` runs the dispatcher: it sends the outbox's due deliveries until stopped (or,
  with ``--until-idle``, until nothing is due). Delivery events are published by the gateway;
  with ``--publish`` (no gateway running) the dispatcher lands them itself.
- ``delivery settings show`` prints the stored settings; ``delivery settings set FILE`` checks
  a JSON file and stores it, or lists every problem with where it is.
- ``delivery status`` counts the outbox's rows by state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from safar.appdb import open_app_db
from safar.config import home_from_env
from safar.delivery import outbox
from safar.delivery.settings import ConfigError, load_config, save_config


def _cmd_dispatch(args: argparse.Namespace) -> int:
    from safar.delivery.run import dispatch

    total = dispatch(
        home_from_env(args.home),
        until_idle=args.until_idle,
        publish=args.publish,
        batch_size=args.batch_size,
        stop_on_signals=True,
        log=lambda line: print(line, file=sys.stderr),
    )
    print(f"dispatched: {total}")
    return 0


def _cmd_settings(args: argparse.Namespace) -> int:
    engine = open_app_db(home_from_env(args.home))
    if args.settings_command == "show":
        print(json.dumps(dict(load_config(engine).raw), indent=2, ensure_ascii=False))
        return 0
    path = Path(args.file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        print(f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}", file=sys.stderr)
        return 1
    if not isinstance(data, dict):
        print(f"{path}: the settings must be a JSON object", file=sys.stderr)
        return 1
    from safar.delivery.providers import build_senders

    try:
        save_config(engine, data)
        build_senders(load_config(engine), engine)
    except ConfigError as error:
        for where, what in error.problems:
            print(f"{path}: {where}: {what}", file=sys.stderr)
        return 1
    print(f"saved the delivery settings from {path}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    engine = open_app_db(home_from_env(args.home))
    counts = outbox.counts(engine)
    for state in ("queued", "sending", "sent", "delivered", "failed", "bounced", "dropped"):
        print(f"{state:<10} {counts.get(state, 0)}")
    return 0


def _cmd_sinks(args: argparse.Namespace) -> int:
    from safar.delivery.local_sinks import serve_sinks

    home = home_from_env(args.home)
    secret = os.environ.get("SAFAR_SINK_WEBHOOK_SECRET")  # not argv: ps shows that to anyone
    asyncio.run(serve_sinks(home, args.smtp_port, args.http_port, webhook_secret=secret))
    return 0


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1 … 65535): {text!r}")
    return int(text)


def _batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be 1 … 10000, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``safar dispatch`` and ``safar delivery …`` to the CLI."""
    dispatch = sub.add_parser("dispatch", help="send the outbox's due messages")
    dispatch.add_argument("--until-idle", action="store_true", help="stop when nothing is due")
    dispatch.add_argument("--batch-size", type=_batch_size, help="deliveries claimed at once")
    dispatch.add_argument(
        "--publish",
        action="store_true",
        help="land delivery events in the lake directly (when no gateway runs)",
    )
    dispatch.set_defaults(func=_cmd_dispatch)

    delivery = sub.add_parser("delivery", help="delivery settings and outbox status")
    cmds = delivery.add_subparsers(dest="delivery_command", required=True)
    settings = cmds.add_parser("settings", help="show or set the delivery settings")
    settings_cmds = settings.add_subparsers(dest="settings_command", required=True)
    settings_cmds.add_parser("show", help="print the stored settings as JSON")
    put = settings_cmds.add_parser("set", help="check and store settings from a JSON file")
    put.add_argument("file", metavar="FILE")
    settings.set_defaults(func=_cmd_settings)
    status = cmds.add_parser("status", help="count the outbox's deliveries by state")
    status.set_defaults(func=_cmd_status)
    sinks = cmds.add_parser(
        "sinks", help="serve local SMTP, Kavenegar, FCM and webhook endpoints (demo mode)"
    )
    sinks.add_argument("--smtp-port", type=_port, required=True)
    sinks.add_argument("--http-port", type=_port, required=True)
    sinks.set_defaults(func=_cmd_sinks)
