"""The segment SQL sandbox: check a query with sqlglot, then run it on a locked-down DuckDB.

Analysts write segments as one query returning ``user_id`` (the person id). Before anything
runs, :func:`validate` parses it with sqlglot (DuckDB dialect) and accepts only

- exactly one statement, and that a query (SELECT, UNION/INTERSECT/EXCEPT, CTEs);
- relations of the catalog (the dbt marts, resolved from the manifest, and Safar's
  ``segment_membership``) or the query's own CTEs and subqueries: no table functions
  (``read_csv``, ``glob``, ``query``, ``range`` …), no file paths, no other catalogs;
- columns those relations have (sqlglot resolves every reference against the catalog);
- no function that reads files, the environment or settings;
- exactly one output column, named ``user_id``.

Each rejection is a :class:`SandboxError` naming the offending construct and its line and
column. :func:`run` executes the SQL sqlglot regenerates from the checked tree (so what runs is
what was checked) on a fresh read-only warehouse connection with external access disabled,
the configuration locked, a memory limit and a timeout.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError
from sqlglot.optimizer.qualify import qualify
from sqlglot.tokens import TokenType

from safar.config import SafarHome

OUTPUT_COLUMN = "user_id"
MEMBERSHIP = "segment_membership"
MEMBERSHIP_COLUMNS = {
    "segment_id": "VARCHAR",
    "person_id": "VARCHAR",
    "entered_at": "TIMESTAMP",
    "exited_at": "TIMESTAMP",
}
"""Safar's own table of segment membership history; current members have no ``exited_at``."""

ALLOWED_CATALOGS = frozenset({"lake"})
ALLOWED_SCHEMAS = frozenset({"main"})

DENIED_FUNCTIONS = frozenset(
    {
        "getenv",
        "current_setting",
        "read_csv",
        "read_csv_auto",
        "read_json",
        "read_json_auto",
        "read_json_objects",
        "read_ndjson",
        "read_parquet",
        "parquet_scan",
        "read_text",
        "read_blob",
        "glob",
        "query",
        "query_table",
        "sqlite_scan",
        "sqlite_attach",
        "postgres_scan",
        "iceberg_scan",
        "delta_scan",
        "ducklake_snapshots",
        "ducklake_table_info",
        "enable_logging",
        "setseed",
    }
)
"""Functions that touch files, other databases, the environment or the session (lower case)."""

DEFAULT_MEMORY_LIMIT = "2GB"
_MEMORY = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)")
DEFAULT_TIMEOUT_SECONDS = 30.0


class SandboxError(ValueError):
    """A query the sandbox refuses; the message says what and where (line, column)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"{where}{message}")
        self.line = line
        self.column = column
        self.reason = message


Catalog = Mapping[str, Mapping[str, str]]
"""Allowed relation → column → DuckDB type (sqlglot's schema shape)."""


def _position(sql: str, node: exp.Expression | None) -> tuple[int | None, int | None]:
    """1-based line and column of ``node`` in ``sql``, from sqlglot's token metadata."""
    while node is not None:
        for candidate in (node, node.args.get("this")):
            meta = getattr(candidate, "meta", None) or {}
            if "start" in meta:
                start = meta["start"]
                line = sql.count("\n", 0, start) + 1
                return line, start - (sql.rfind("\n", 0, start) + 1) + 1
        node = node.parent
    return None, None


def _reject(sql: str, node: exp.Expression | None, message: str) -> SandboxError:
    return SandboxError(message, *_position(sql, node))


def _offset_position(sql: str, offset: int) -> tuple[int, int]:
    line = sql.count("\n", 0, offset) + 1
    return line, offset - (sql.rfind("\n", 0, offset) + 1) + 1


def _statement_name(statement: exp.Expression) -> str:
    if isinstance(statement, exp.Command):
        return str(statement.this).upper()
    names = {
        exp.Create: "CREATE",
        exp.Drop: "DROP",
        exp.Alter: "ALTER",
        exp.Insert: "INSERT",
        exp.Update: "UPDATE",
        exp.Delete: "DELETE",
        exp.Merge: "MERGE",
        exp.Copy: "COPY",
        exp.Attach: "ATTACH",
        exp.Detach: "DETACH",
        exp.Install: "INSTALL",
        exp.Pragma: "PRAGMA",
        exp.Set: "SET",
        exp.Use: "USE",
        exp.Describe: "DESCRIBE",
        exp.Summarize: "SUMMARIZE",
        exp.Pivot: "PIVOT",
    }
    for kind, name in names.items():
        if isinstance(statement, kind):
            return name
    return type(statement).__name__.upper()


def _split(sql: str) -> list[exp.Expression]:
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        description = first.get("description", str(exc))
        line, column = first.get("line"), first.get("col")
        raise SandboxError(f"not valid SQL: {description}", line, column) from None
    if not statements:
        raise SandboxError("empty: write one SELECT returning user_id")
    if len(statements) > 1:
        tokens = sqlglot.tokenize(sql, read="duckdb")
        semicolon = next(t for t in tokens if t.token_type == TokenType.SEMICOLON)
        later = next((t for t in tokens if t.start > semicolon.start), semicolon)
        line, column = _offset_position(sql, later.start)
        raise SandboxError(
            f"{len(statements)} statements: a segment is exactly one query", line, column
        )
    return statements


def _check_tables(sql: str, query: exp.Query, catalog: Catalog) -> None:
    ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    for table in query.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            name = table.this.sql("duckdb") if table.this is not None else "?"
            if isinstance(table.this, exp.Literal):
                raise _reject(sql, table, f"reading a file ({name}) is not allowed")
            function = _function_name(table.this) if isinstance(table.this, exp.Func) else name
            raise _reject(sql, table.this, f"table function {function}() is not allowed")
        catalog_name, schema_name = table.catalog.lower(), table.db.lower()
        if catalog_name and catalog_name not in ALLOWED_CATALOGS:
            raise _reject(sql, table.args["catalog"], f"catalog {table.catalog!r} is not allowed")
        # Two parts (``lake.dim_users``) may name the catalog as well as the schema.
        schemas = ALLOWED_SCHEMAS if catalog_name else ALLOWED_SCHEMAS | ALLOWED_CATALOGS
        if schema_name and schema_name not in schemas:
            raise _reject(sql, table.args["db"], f"schema {table.db!r} is not allowed")
        name = table.name.lower()
        if not (catalog_name or schema_name) and name in ctes:
            continue
        if name not in catalog:
            allowed = ", ".join(sorted(catalog))
            raise _reject(sql, table, f"unknown table {table.name!r}; segments read {allowed}")


def _function_name(function: exp.Func) -> str:
    if isinstance(function, exp.Anonymous):
        return str(function.this).lower()
    return function.sql_name().lower()


def _check_functions(sql: str, query: exp.Query) -> None:
    for function in query.find_all(exp.Func):
        name = _function_name(function)
        if name in DENIED_FUNCTIONS or name.startswith(("read_", "pragma_", "duckdb_")):
            raise _reject(sql, function, f"function {name}() is not allowed in a segment")


def _unqualified(query: exp.Query) -> exp.Query:
    """The query with ``lake.`` / ``lake.main.`` prefixes dropped (the catalog is flat)."""
    query = query.copy()
    for table in query.find_all(exp.Table):
        table.set("catalog", None)
        table.set("db", None)
    return query


def validate(sql: str, catalog: Catalog) -> exp.Query:
    """Check a segment query; return the checked tree, or raise :class:`SandboxError`.

    Args:
        sql: the analyst's query.
        catalog: the relations and columns segments may read (see :func:`load_catalog`).

    Example:
        >>> catalog = {"dim_users": {"person_id": "VARCHAR", "carrier": "VARCHAR"}}
        >>> validate("select person_id as user_id from dim_users", catalog).sql("duckdb")
        'SELECT person_id AS user_id FROM dim_users'
        >>> try:
        ...     validate("select person_id as user_id from dim_users;\\ndrop table x", catalog)
        ... except SandboxError as error:
        ...     print(error)
        line 2, column 1: 2 statements: a segment is exactly one query
    """
    (statement,) = _split(sql)
    if not isinstance(statement, exp.Query):
        name = _statement_name(statement)
        raise SandboxError(
            f"{name} is not allowed: a segment is one SELECT (UNION and WITH are fine)", 1, 1
        )
    _check_tables(sql, statement, catalog)
    _check_functions(sql, statement)
    checked = _unqualified(statement)
    schema = {name: dict(columns) for name, columns in catalog.items()}
    try:
        resolved = qualify(
            checked.copy(),
            schema=schema,
            dialect="duckdb",
            validate_qualify_columns=True,
            quote_identifiers=False,
        )
    except OptimizeError as exc:
        raise _unknown_column(sql, statement, str(exc)) from None
    outputs = resolved.named_selects
    if outputs != [OUTPUT_COLUMN]:
        shown = ", ".join(outputs) if len(outputs) <= 6 else f"{len(outputs)} columns"
        raise SandboxError(
            f"a segment returns exactly one column named {OUTPUT_COLUMN}, not: {shown}", 1, 1
        )
    return checked


def _unknown_column(sql: str, query: exp.Query, message: str) -> SandboxError:
    """Turn sqlglot's resolution error into one naming the column and where it is."""
    quoted = message.split("'")
    name = quoted[1] if len(quoted) > 2 else None
    if name is not None:
        for column in query.find_all(exp.Column):
            if column.name == name.split(".")[-1]:
                return _reject(sql, column, f"unknown column {name!r} ({message})")
    return SandboxError(message)


def manifest_path(home: SafarHome) -> Path:
    """The newest dbt manifest of ``home``: from ``safar build`` or from Dagster's parse."""
    candidates = [
        home.dbt_target / "target" / "manifest.json",
        home.dbt_target / "dagster" / "manifest" / "manifest.json",
    ]
    present = [p for p in candidates if p.exists()]
    return max(present, key=lambda p: p.stat().st_mtime) if present else candidates[0]


def load_catalog(con: duckdb.DuckDBPyConnection, manifest: Path) -> dict[str, dict[str, str]]:
    """The relations segments may read: the dbt marts in ``manifest`` with their columns.

    Columns come from the warehouse itself (the manifest documents only some), so the catalog
    is exactly what a query can see. ``segment_membership`` is always allowed.

    Raises:
        FileNotFoundError: there is no manifest (run ``safar build`` first).
    """
    if not manifest.exists():
        raise FileNotFoundError(f"no dbt manifest at {manifest}: run `safar build` first")
    nodes = json.loads(manifest.read_text())["nodes"].values()
    marts = sorted(
        n["alias"] or n["name"]
        for n in nodes
        if n["resource_type"] == "model" and len(n["fqn"]) > 2 and n["fqn"][1] == "marts"
    )
    rows = con.execute(
        "select table_name, column_name, data_type from information_schema.columns"
        " where table_catalog = 'lake' and table_schema = 'main' and table_name in ?"
        " order by table_name, ordinal_position",
        [marts],
    ).fetchall()
    catalog: dict[str, dict[str, str]] = {}
    for table, column, kind in rows:
        catalog.setdefault(table, {})[column] = kind
    catalog[MEMBERSHIP] = dict(MEMBERSHIP_COLUMNS)
    return catalog


def read_catalog(home: SafarHome, manifest: Path | None = None) -> dict[str, dict[str, str]]:
    """:func:`load_catalog` on a read-only connection of its own to ``home``'s warehouse.

    Raises:
        FileNotFoundError: there is no warehouse or no manifest (run ``safar build`` first).
    """
    from safar.warehouse import connect

    if not home.catalog.exists():
        raise FileNotFoundError(f"no warehouse at {home.catalog}: run `safar build` first")
    con = connect(home, read_only=True)
    try:
        return load_catalog(con, manifest or manifest_path(home))
    finally:
        con.close()


@dataclass(frozen=True)
class Limits:
    """What one segment query may use."""

    memory_limit: str = DEFAULT_MEMORY_LIMIT
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    threads: int = 2


def locked_connection(home: SafarHome, limits: Limits = Limits()) -> duckdb.DuckDBPyConnection:
    """A read-only warehouse connection that can no longer reach files, settings or the net.

    Only the warehouse's own data directory stays readable, which the validator already keeps
    queries from naming.
    """
    from safar.warehouse import connect

    if not _MEMORY.fullmatch(limits.memory_limit):
        raise ValueError(f"memory_limit: not a size like 2GB: {limits.memory_limit!r}")
    con = connect(home, read_only=True)
    con.execute(f"SET memory_limit = '{limits.memory_limit}'")
    # DuckLake reads its Parquet files at query time: that directory, and nothing else.
    data = str(home.warehouse_data).replace("'", "''")
    con.execute(f"SET allowed_directories = ['{data}/']")
    con.execute(f"SET threads = {int(limits.threads)}")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def execute(
    con: duckdb.DuckDBPyConnection, query: exp.Query, limits: Limits = Limits()
) -> list[tuple]:
    """Run a query built around a validated one on a :func:`locked_connection`; its rows.

    Raises:
        SandboxError: the query ran longer than the timeout or failed in DuckDB.
    """
    sql = query.sql("duckdb")
    stopped = threading.Event()

    def stop() -> None:
        stopped.set()
        con.interrupt()

    timer = threading.Timer(limits.timeout_seconds, stop)
    timer.start()
    try:
        return con.execute(sql).fetchall()
    except duckdb.Error as exc:
        # DuckDB reports an interrupt in more than one way; the flag says what happened.
        if stopped.is_set():
            raise SandboxError(
                f"the query ran longer than {limits.timeout_seconds:g} s and was stopped"
            ) from None
        raise SandboxError(f"DuckDB: {exc}") from None
    finally:
        timer.cancel()


def run(con: duckdb.DuckDBPyConnection, query: exp.Query, limits: Limits = Limits()) -> list[str]:
    """Run a validated query on a :func:`locked_connection`; the person ids, sorted.

    Raises:
        SandboxError: the query ran longer than the timeout or failed in DuckDB.
    """
    rows = execute(con, query, limits)
    return sorted({str(r[0]) for r in rows if r[0] is not None})
