"""The ``safar`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import date

from safar import importer
from safar.analytics import commands as analytics_commands
from safar.config import home_from_env
from safar.delivery import commands as delivery_commands
from safar.demo import DEMO_DAYS, DEMO_SEED, DEMO_USERS
from safar.segments import commands as segment_commands


def _cmd_extensions(args: argparse.Namespace) -> int:
    from safar.warehouse import install_extensions

    for path in install_extensions():
        print(f"installed {path}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from safar.generate import generate

    home = home_from_env(args.home)
    stats = generate(
        home,
        users=args.users,
        days=args.days,
        seed=args.seed,
        end=args.end,
        progress=not args.quiet,
    )
    print(
        f"wrote {stats.events:,} events for {stats.users:,} users in {stats.files:,} files "
        f"to {home.raw_events} in {stats.seconds:.1f} s ({stats.rejected} rejected)"
    )
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from safar.build import build

    home = home_from_env(args.home)
    result = build(
        home,
        full_refresh=args.full_refresh,
        select=args.select,
        test=not args.no_test,
    )
    for path in result.quarantined:
        print(f"quarantined {path} (reason beside it)", file=sys.stderr)
    print(f"built {result.nodes} dbt nodes in {result.seconds:.1f} s into {home.catalog}")
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from safar.warehouse import connect

    con = connect(home_from_env(args.home), read_only=True)
    try:
        con.sql(args.query).show(max_rows=args.max_rows)
    except duckdb.Error as exc:
        # An analyst's typo: DuckDB's message already says what and where (LINE 1: … ^).
        print(f"safar sql: {exc}", file=sys.stderr)
        return 1
    finally:
        con.close()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from safar.demo import run_demo

    return run_demo(
        home_from_env(args.home),
        users=args.users,
        days=args.days,
        seed=args.seed,
        serve_apps=not args.no_serve,
    )


def _cmd_sources(args: argparse.Namespace) -> int:
    from safar.appdb import open_app_db
    from safar.appdb.sources import add_source, list_sources, revoke_source

    engine = open_app_db(home_from_env(args.home))
    if args.action == "add":
        source = add_source(engine, args.name)
        # The key alone on stdout, so `KEY=$(safar sources add web)` works.
        print(f"created source {source.name!r} ({source.id}); its write key:", file=sys.stderr)
        print(source.write_key)
    elif args.action == "revoke":
        source = revoke_source(engine, args.name)
        print(f"revoked source {source.name!r}; its key stops working within seconds")
    else:
        rows = [
            (
                s.name,
                s.id,
                s.write_key,
                f"{s.created_at:%Y-%m-%d %H:%M:%S}",
                f"{s.revoked_at:%Y-%m-%d %H:%M:%S}" if s.revoked_at else "-",
            )
            for s in list_sources(engine)
        ]
        if not rows:
            print("no sources yet; add one with: safar sources add NAME", file=sys.stderr)
            return 0
        header = ("name", "id", "write key", "created (UTC)", "revoked (UTC)")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            print("  ".join(cells).rstrip())
    return 0


def _cmd_gateway(args: argparse.Namespace) -> int:
    from safar.gateway.server import serve
    from safar.gateway.settings import GatewaySettings, parse_networks

    settings = GatewaySettings(
        key_ttl_seconds=args.key_ttl,
        flush_interval_seconds=args.flush_interval,
        max_pending_events=args.max_pending,
        trusted_proxies=parse_networks(args.trusted_proxy),
    )
    serve(home_from_env(args.home), args.host, args.port, settings)
    return 0


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safar", description=__doc__)
    parser.add_argument("--home", help="data directory (default: $SAFAR_HOME or ./data)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    ext = sub.add_parser("extensions", help="manage the local DuckDB extensions")
    ext_sub = ext.add_subparsers(dest="action", required=True)
    ext_sub.add_parser("install", help="install the extension wheels into the local directory")
    ext.set_defaults(func=_cmd_extensions)

    gen = sub.add_parser("generate", help="write realistic demo events into the landing zone")
    gen.add_argument("--users", type=_positive, default=DEMO_USERS)
    gen.add_argument("--days", type=_positive, default=DEMO_DAYS)
    gen.add_argument("--seed", type=int, default=DEMO_SEED)
    gen.add_argument("--end", type=_parse_date, help="last day of data (default: today, UTC)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_cmd_generate)

    bld = sub.add_parser("build", help="build the warehouse from the landing zone with dbt")
    bld.add_argument("--full-refresh", action="store_true", help="rebuild incremental models")
    bld.add_argument("--select", help="dbt node selection")
    bld.add_argument("--no-test", action="store_true", help="run models without their tests")
    bld.set_defaults(func=_cmd_build)

    sql = sub.add_parser("sql", help="run a read-only query against the warehouse")
    sql.add_argument("query")
    sql.add_argument("--max-rows", type=int, default=40)
    sql.set_defaults(func=_cmd_sql)

    src = sub.add_parser("sources", help="manage event sources and their write keys")
    src_sub = src.add_subparsers(dest="action", required=True)
    src_add = src_sub.add_parser("add", help="add a source; prints its new write key")
    src_add.add_argument("name", help="e.g. web, ios, android, backend")
    src_sub.add_parser("list", help="list sources with their keys")
    src_revoke = src_sub.add_parser("revoke", help="revoke a source's write key")
    src_revoke.add_argument("name")
    src.set_defaults(func=_cmd_sources)

    gw = sub.add_parser("gateway", help="run the Segment-compatible tracking API")
    gw.add_argument("--host", default="127.0.0.1")
    gw.add_argument("--port", type=_positive, default=8080)
    gw.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDRESS[/BITS]",
        help="believe X-Forwarded-For from this proxy (repeatable)",
    )
    gw.add_argument(
        "--key-ttl", type=_positive_float, default=5.0, help="seconds a key lookup is cached"
    )
    gw.add_argument(
        "--flush-interval",
        type=_positive_float,
        default=1.0,
        help="seconds before accepted events are turned into a landing file",
    )
    gw.add_argument(
        "--max-pending",
        type=_positive,
        default=1_000_000,
        help="events accepted but not landed, past which requests get 429",
    )
    gw.set_defaults(func=_cmd_gateway)

    importer.register(sub)
    analytics_commands.register(sub)
    segment_commands.register(sub)
    delivery_commands.register(sub)

    demo = sub.add_parser("demo", help="generate, build and serve the demo")
    demo.add_argument("--users", type=_positive, default=DEMO_USERS, help="only for a new lake")
    demo.add_argument("--days", type=_positive, default=DEMO_DAYS, help="only for a new lake")
    demo.add_argument("--seed", type=int, default=DEMO_SEED, help="only for a new lake")
    demo.add_argument("--no-serve", action="store_true", help="build only; start no servers")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # httpx logs every request at INFO: a line per message sent
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"safar {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
