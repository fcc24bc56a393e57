"""``safar segment list | validate | preview | evaluate | upload``.

- ``validate FILE…`` / ``validate --all`` checks segment files (the yml and the query, through
  the sandbox, against the built warehouse) and prints ``file:line:column: message`` for each
  problem, as compilers do; exit 1 if any.
- ``preview SLUG|FILE`` counts the members now (or ``--as-of``) and shows a sample.
- ``evaluate [SLUG…]`` runs a micro-batch evaluation by hand (the Dagster job does it after
  every ingest batch) and prints what changed.
- ``upload CSV --slug --name`` stores a static list and reports the rows that matched nobody.
- ``list`` shows every segment with its size, last evaluation and 7-day trend.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safar.config import SafarHome, home_from_env, segments_directory
from safar.segments.compile import CompileError, compile_segment, naive_utc
from safar.segments.definitions import (
    DefinitionError,
    SegmentDefinition,
    load_file_segment,
    read_segment_file,
    shown_path,
)
from safar.segments.sandbox import read_catalog

FORMATS = ("table", "json")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    return naive_utc(moment)


def _sample_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if size < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {size}")
    return size


def _file_definition(path: Path, *, drafts: bool = True) -> SegmentDefinition:
    """The segment of a ``.yml`` or ``.sql`` file; a lone ``.sql`` is checked as a draft.

    With ``drafts=False`` (the whole folder) a lone ``.sql`` is an error, as it is to
    :func:`safar.segments.definitions.load_file_segments`, which every other command uses.
    """
    if not path.exists():
        raise DefinitionError(f"{path}: no such file")
    yml = path.with_suffix(".yml")
    if path.suffix == ".sql" and not yml.exists():
        if not drafts:
            raise DefinitionError(f"{shown_path(path)}: no {yml.name} beside it")
        return SegmentDefinition(
            slug=path.stem,
            name=path.stem,
            kind="sql",
            sql=read_segment_file(path),
            origin=str(path),
        )
    if path.suffix not in (".sql", ".yml"):
        raise DefinitionError(f"{path}: a segment file ends in .sql or .yml")
    return load_file_segment(yml)


def _segments(home: SafarHome) -> tuple[list[SegmentDefinition], Any]:
    from safar.appdb import open_app_db
    from safar.segments.registry import load_segments

    engine = open_app_db(home)
    return load_segments(engine), engine


def _find(home: SafarHome, name: str) -> SegmentDefinition:
    path = Path(name)
    if path.suffix in (".sql", ".yml"):
        return _file_definition(path)
    definitions, _ = _segments(home)
    for definition in definitions:
        if definition.slug == name:
            return definition
    known = ", ".join(d.slug for d in definitions) or "none yet"
    raise DefinitionError(f"no segment {name!r}; segments: {known}")


def _cmd_validate(args: argparse.Namespace) -> int:
    home = home_from_env(args.home)
    if args.all == bool(args.files):
        print("safar segment validate: give FILE… or --all", file=sys.stderr)
        return 2
    folder = segments_directory()
    paths = sorted(folder.glob("*.yml")) if args.all else [Path(f) for f in args.files]
    if args.all:
        drafts = sorted(folder.glob("*.sql"))
        paths += [p for p in drafts if not p.with_suffix(".yml").exists()]
    catalog = read_catalog(home)
    failures = 0
    for path in paths:
        try:
            definition = _file_definition(path, drafts=not args.all)
            compiled = compile_segment(definition, catalog, as_of=_now())
        except DefinitionError as exc:
            failures += 1
            print(f"{exc}", file=sys.stderr)
            continue
        except CompileError as exc:
            failures += 1
            where = definition.origin
            if exc.line is not None:
                where += f":{exc.line}:{exc.column}"
            reason = exc.reason.split(": ", 1)[1] if exc.line is not None else exc.reason
            print(f"{where}: {reason}", file=sys.stderr)
            continue
        relative = ", time-relative" if compiled.time_relative else ""
        print(f"ok {definition.origin} ({definition.slug}, {definition.kind}{relative})")
    print(f"{len(paths) - failures} of {len(paths)} segment file(s) valid")
    return 1 if failures else 0


def _cmd_preview(args: argparse.Namespace) -> int:
    from safar.segments.preview import preview

    home = home_from_env(args.home)
    definition = _find(home, args.segment)
    if not home.catalog.exists():
        raise FileNotFoundError(f"no warehouse at {home.catalog}: run `safar build` first")
    result = preview(home, definition, as_of=args.as_of or _now(), sample=args.sample)
    if args.format == "json":
        body = {
            "slug": result.slug,
            "as_of": result.as_of.isoformat(),
            "size": result.size,
            "time_relative": result.time_relative,
            "seconds": round(result.seconds, 3),
            "sample": result.sample,
        }
        print(json.dumps(body, default=str, ensure_ascii=False, indent=2))
        return 0
    print(f"{definition.name} ({definition.slug}): {result.size:,} people at {result.as_of}")
    if result.description:
        print(result.description)
    from safar.analytics.commands import print_rows

    if result.sample:
        columns = list(result.sample[0])
        print_rows(columns, [[p[c] for c in columns] for p in result.sample], "table")
    print(f"({result.seconds:.2f} s)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from safar.segments.evaluate import evaluate_segments
    from safar.segments.registry import static_members

    home = home_from_env(args.home)
    definitions, engine = _segments(home)
    if args.slugs:
        unknown = sorted(set(args.slugs) - {d.slug for d in definitions})
        if unknown:
            raise DefinitionError(f"no segment {unknown[0]!r}")
        definitions = [d for d in definitions if d.slug in args.slugs]
    as_of = args.as_of or _now()
    batch_id = args.batch_id or f"cli-{as_of.isoformat()}"
    outcomes = evaluate_segments(
        home,
        definitions,
        as_of=as_of,
        batch_id=batch_id,
        static_members=static_members(engine),
        force=args.force,
    )
    from safar.analytics.commands import print_rows

    rows = [
        [o.slug, o.status, o.size, o.entered, o.exited, f"{o.seconds:.2f}", o.reason]
        for o in outcomes
    ]
    print_rows(["segment", "status", "size", "entered", "exited", "seconds", "why"], rows, "table")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _cmd_upload(args: argparse.Namespace) -> int:
    from safar.appdb import open_app_db
    from safar.appdb.segments import save_static_list
    from safar.segments.registry import file_slugs
    from safar.segments.static_list import match_static_list, parse_static_list
    from safar.warehouse import connect

    home = home_from_env(args.home)
    parsed = parse_static_list(Path(args.csv).read_bytes(), column=args.column)
    con = connect(home, read_only=True)
    try:
        report = match_static_list(con, parsed)
    finally:
        con.close()
    saved = save_static_list(
        open_app_db(home),
        args.slug,
        args.name,
        report.person_ids,
        description=args.description or "",
        owner=args.owner or "",
        reserved=file_slugs(),
    )
    print(
        f"saved {saved.slug}: {len(report.person_ids):,} people from {report.matched_rows:,}"
        f" matched row(s) by {report.kind}; {len(report.unmatched):,} row(s) matched nobody"
    )
    if report.unmatched:
        if args.unmatched:
            Path(args.unmatched).write_text(report.unmatched_csv())
            print(f"unmatched rows written to {args.unmatched}")
        else:
            for row in report.unmatched[:20]:
                print(f"  line {row.line}: {row.raw!r}: {row.reason}")
            if len(report.unmatched) > 20:
                print(f"  … {len(report.unmatched) - 20} more (use --unmatched FILE)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from safar.warehouse import connect

    home = home_from_env(args.home)
    definitions, _ = _segments(home)
    from safar.segments.membership import SizeSummary, size_summaries

    sizes: dict[str, SizeSummary] = {}
    if home.catalog.exists():
        con = connect(home, read_only=True)
        try:
            sizes = size_summaries(con)
        finally:
            con.close()
    rows = []
    for d in definitions:
        summary = sizes.get(d.slug, SizeSummary())
        rows.append(
            {
                "slug": d.slug,
                "name": d.name,
                "kind": d.kind,
                "refresh": d.refresh_text,
                "owner": d.owner,
                "size": summary.size,
                "change_7d": summary.change_7d,
                "evaluated_at": (
                    summary.evaluated_at.isoformat(sep=" ") if summary.evaluated_at else None
                ),
                "defined_in": d.origin,
            }
        )
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    from safar.analytics.commands import print_rows

    columns = list(rows[0]) if rows else ["slug"]
    print_rows(columns, [[r[c] for c in columns] for r in rows], "table")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``safar segment …`` to the CLI."""
    seg = sub.add_parser("segment", help="validate, preview, evaluate and list segments")
    cmds = seg.add_subparsers(dest="segment_command", required=True)

    lst = cmds.add_parser("list", help="every segment with its size and 7-day trend")
    lst.add_argument("--format", choices=FORMATS, default="table")
    lst.set_defaults(func=_cmd_list)

    val = cmds.add_parser("validate", help="check segment files through the sandbox")
    val.add_argument("files", nargs="*", metavar="FILE", help="a .sql or .yml segment file")
    val.add_argument(
        "--all", action="store_true", help="every file in segments_sql/ ($SAFAR_SEGMENTS_DIR)"
    )
    val.set_defaults(func=_cmd_validate)

    pre = cmds.add_parser("preview", help="count a segment's members and show a sample")
    pre.add_argument("segment", metavar="SLUG|FILE")
    pre.add_argument("--sample", type=_sample_size, default=10, help="people to show")
    pre.add_argument("--as-of", type=_instant, help="evaluate at this time (default: now)")
    pre.add_argument("--format", choices=FORMATS, default="table")
    pre.set_defaults(func=_cmd_preview)

    ev = cmds.add_parser("evaluate", help="evaluate the due segments now (one micro-batch)")
    ev.add_argument("slugs", nargs="*", metavar="SLUG", help="only these (default: all)")
    ev.add_argument("--as-of", type=_instant, help="evaluation time (default: now)")
    ev.add_argument("--batch-id", help="names the batch; a batch is evaluated once")
    ev.add_argument("--force", action="store_true", help="evaluate even if nothing changed")
    ev.set_defaults(func=_cmd_evaluate)

    up = cmds.add_parser("upload", help="store a CSV of user ids, emails or phones as a list")
    up.add_argument("csv", metavar="CSV")
    up.add_argument("--slug", required=True)
    up.add_argument("--name", required=True)
    up.add_argument("--column", help="the column to match on (default: guessed from the header)")
    up.add_argument("--description")
    up.add_argument("--owner")
    up.add_argument("--unmatched", metavar="FILE", help="write the unmatched rows here as CSV")
    up.set_defaults(func=_cmd_upload)
