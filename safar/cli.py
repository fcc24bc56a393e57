"""The ``safar`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import date

from safar.config import home_from_env
from safar.demo import DEMO_DAYS, DEMO_SEED, DEMO_USERS


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
    from safar.warehouse import connect

    con = connect(home_from_env(args.home), read_only=True)
    try:
        con.sql(args.query).show(max_rows=args.max_rows)
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


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


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
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"safar {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
