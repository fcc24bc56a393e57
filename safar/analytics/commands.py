"""``safar funnel | retention | trends | lifecycle | stickiness``: run a spec, print the result.

Each command reads ``--events PATH`` (JSONL of Segment messages or raw-contract Parquet) or,
without it, the warehouse of ``SAFAR_HOME``. JSON goes to stdout; ``--format table|csv``
prints the main rows instead (funnel steps, retention cohorts, one column per series). A bad
spec exits with 2 and one line on stderr naming the field.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import orjson

from safar.analytics.spec import SpecError
from safar.config import home_from_env

FORMATS = ("json", "table", "csv")
BAD_SPEC = 2


def load_spec(path: str, parse: Callable[[Any], Any]) -> Any:
    """Read and parse a spec file; errors name the file (and the field, via SpecError)."""
    try:
        raw = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise SpecError(path, "no such spec file") from None
    except orjson.JSONDecodeError as exc:
        raise SpecError(path, f"not JSON: {exc}") from None
    return parse(raw)


def open_source(events: str | None, home: str | None) -> duckdb.DuckDBPyConnection:
    """The analytics relations over ``events`` or, when None, the warehouse."""
    from safar.analytics.source import connect_file, connect_warehouse

    if events is not None:
        return connect_file(events)
    return connect_warehouse(home_from_env(home))


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> None:
    """Rows as CSV or as an aligned text table on stdout."""
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_result(result: dict[str, Any], fmt: str, table: Callable[[dict], tuple]) -> None:
    """JSON, or the rows ``table(result)`` returns as ``(columns, rows)``."""
    if fmt == "json":
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    print_rows(*table(result), fmt)


def _funnel_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    if "persons" in result:
        return ["person"], [[p] for p in result["persons"]]
    columns = ["breakdown", "step", "count", "conversion_rate", "average_s", "median_s"]
    rows = []
    groups = [(None, result["steps"])] + [(b["value"], b["steps"]) for b in result["breakdowns"]]
    for value, steps in groups:
        label = "" if value is None else json.dumps(value, ensure_ascii=False)
        for step in steps:
            rows.append(
                [
                    label,
                    step["name"],
                    step["count"],
                    step["conversion_rate"],
                    step["average_conversion_seconds"],
                    step["median_conversion_seconds"],
                ]
            )
    return columns, rows


def _retention_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    if "actors" in result:
        rows = [[a["person"], " ".join(map(str, a["appearances"]))] for a in result["actors"]]
        return ["person", "appearances"], rows
    width = max((len(c["values"]) for c in result["cohorts"]), default=1)
    columns = ["period_start", "size"] + [f"+{c}" for c in range(1, width)]
    return columns, [[c["period_start"], *c["values"]] for c in result["cohorts"]]


def _cmd_funnel(args: argparse.Namespace) -> int:
    from safar.analytics.funnel import run_funnel
    from safar.analytics.spec import parse_funnel_spec

    spec = load_spec(args.spec, parse_funnel_spec)
    if args.persons is not None and not 1 <= abs(args.persons) <= len(spec.steps):
        raise SpecError("--persons", f"must be 1..{len(spec.steps)} or its negative")
    con = open_source(args.events, args.home)
    try:
        result = run_funnel(con, spec, args.persons, details=args.details, over_time=args.over_time)
    finally:
        con.close()
    print_result(result, args.format, _funnel_table)
    return 0


def _cmd_retention(args: argparse.Namespace) -> int:
    from safar.analytics.retention import period_starts, run_retention
    from safar.analytics.retention_spec import parse_retention_spec

    spec = load_spec(args.spec, parse_retention_spec)
    rows = len(period_starts(spec))
    if args.actors is not None and not 0 <= args.actors < rows:
        raise SpecError("--actors", f"must be a cohort row 0..{rows - 1}")
    con = open_source(args.events, args.home)
    try:
        result = run_retention(con, spec, args.actors)
    finally:
        con.close()
    print_result(result, args.format, _retention_table)
    return 0


def _series_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """A ``{"series": [...]}`` result as one table: a column per line, a row per label.

    The last row holds each line's total.

    Example:
        >>> _series_table({"series": [{"name": "a", "breakdown_value": None, "labels": ["x"],
        ...                            "values": [2], "total": 2}]})
        (['label', 'a · (none)'], [['x', 2], ['total', 2]])
    """
    lines = result["series"]
    columns = ["label"]
    for line in lines:
        title = str(line.get("name", line.get("status")))
        if "breakdown_value" in line:
            value = line["breakdown_value"]
            shown = value if isinstance(value, str) else json.dumps(value)
            title = f"{title} · {'(none)' if value is None else shown}"
        columns.append(title)
    labels = lines[0]["labels"] if lines else []
    rows = [[label, *(line["values"][i] for line in lines)] for i, label in enumerate(labels)]
    rows.append(["total", *(line["total"] for line in lines)])
    return columns, rows


def _run_series_command(
    args: argparse.Namespace,
    parse: Callable[[Any], Any],
    run: Callable[[Any, Any], dict[str, Any]],
) -> int:
    """Parse ``--spec`` with ``parse``, ``run`` it on the source, print the result."""
    spec = load_spec(args.spec, parse)
    con = open_source(args.events, args.home)
    try:
        result = run(con, spec)
    finally:
        con.close()
    print_result(result, args.format, _series_table)
    return 0


def _cmd_trends(args: argparse.Namespace) -> int:
    from safar.analytics.trends import run_trends
    from safar.analytics.trends_spec import parse_trends_spec

    return _run_series_command(args, parse_trends_spec, run_trends)


def _cmd_lifecycle(args: argparse.Namespace) -> int:
    from safar.analytics.lifecycle import run_lifecycle
    from safar.analytics.trends_spec import parse_lifecycle_spec

    return _run_series_command(args, parse_lifecycle_spec, run_lifecycle)


def _cmd_stickiness(args: argparse.Namespace) -> int:
    from safar.analytics.stickiness import run_stickiness
    from safar.analytics.trends_spec import parse_stickiness_spec

    return _run_series_command(args, parse_stickiness_spec, run_stickiness)


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report a bad spec on one stderr line and exit with 2 (other errors: ``safar.cli``)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except SpecError as exc:
            print(f"safar {args.command}: bad spec: {exc}", file=sys.stderr)
            return BAD_SPEC

    return run


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """--spec, --events and --format, shared by every analytics command."""
    parser.add_argument("--spec", required=True, help="the spec, a JSON file")
    parser.add_argument(
        "--events",
        help="a JSONL file of Segment messages or a raw-contract Parquet file "
        "(default: the warehouse)",
    )
    parser.add_argument("--format", choices=FORMATS, default="json")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the analytics commands to the ``safar`` command line."""
    funnel = sub.add_parser("funnel", help="run a funnel spec")
    add_source_arguments(funnel)
    funnel.add_argument(
        "--persons",
        type=int,
        help="list the units that reached step N (1-based), or with -N those that dropped "
        "off before step N",
    )
    funnel.add_argument(
        "--details",
        action="store_true",
        help="add the time-to-convert histogram and conversion over time (JSON only)",
    )
    funnel.add_argument(
        "--over-time",
        choices=("day", "week"),
        default="day",
        help="with --details: conversion over time by entry day or week (Monday)",
    )
    funnel.set_defaults(func=guarded(_cmd_funnel))

    retention = sub.add_parser("retention", help="run a retention spec")
    add_source_arguments(retention)
    retention.add_argument(
        "--actors", type=int, help="list the members of cohort row ROW (0-based)"
    )
    retention.set_defaults(func=guarded(_cmd_retention))

    for name, command, summary in (
        ("trends", _cmd_trends, "run a trends spec (counts, people, DAU/WAU/MAU, sums)"),
        ("lifecycle", _cmd_lifecycle, "run a lifecycle spec (new, returning, dormant, ...)"),
        ("stickiness", _cmd_stickiness, "run a stickiness spec (people by active periods)"),
    ):
        analysis = sub.add_parser(name, help=summary)
        add_source_arguments(analysis)
        analysis.set_defaults(func=guarded(command))
