"""DuckDB connections to the DuckLake warehouse, with extensions loaded from local wheels.

Nothing here downloads: the ``ducklake`` and ``sqlite_scanner`` extensions are installed from
the ``duckdb-extension-*`` PyPI wheels into a project-local directory, and DuckDB's automatic
extension download is switched off so a missing extension fails loudly instead of hanging on
a network that is not there.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import duckdb_extensions

from safar.config import SafarHome, extension_directory

EXTENSIONS = ("ducklake", "sqlite_scanner")
LAKE_ALIAS = "lake"


def duckdb_config(ext_dir: Path | None = None) -> dict[str, str | bool]:
    """Connection settings shared by every Safar DuckDB connection (and the dbt profile)."""
    return {
        "extension_directory": str(ext_dir or extension_directory()),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
    }


def install_extensions(ext_dir: Path | None = None) -> list[Path]:
    """Copy the wheel-shipped extensions into the project-local extension directory.

    Returns:
        The installed extension files.
    """
    ext_dir = ext_dir or extension_directory()
    ext_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config=duckdb_config(ext_dir))
    try:
        for name in EXTENSIONS:
            duckdb_extensions.import_extension(name, force_install=True, con=con)
        rows = con.sql(
            "select install_path from duckdb_extensions() where extension_name in ?",
            params=[list(EXTENSIONS)],
        ).fetchall()
    finally:
        con.close()
    return [Path(r[0]) for r in rows]


def lake_attach_sql(home: SafarHome, *, read_only: bool = False) -> str:
    """The ATTACH statement for the DuckLake warehouse of ``home``."""
    options = [f"DATA_PATH '{home.warehouse_data}/'"]
    if read_only:
        options.append("READ_ONLY")
    return f"ATTACH 'ducklake:sqlite:{home.catalog}' AS {LAKE_ALIAS} ({', '.join(options)})"


def connect(home: SafarHome, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the warehouse attached as ``lake`` and in use.

    Many processes may hold one at once: DuckLake keeps its catalog in SQLite and gives each
    reader a consistent snapshot while ``safar build`` writes.
    """
    if not home.catalog.exists() and read_only:
        raise FileNotFoundError(
            f"no warehouse at {home.catalog}: run `safar build` first (SAFAR_HOME={home.root})"
        )
    home.ensure()
    con = duckdb.connect(config=duckdb_config())
    try:
        # Naive timestamps in the lake are UTC; keep every session's clock there too.
        con.sql("SET TimeZone = 'UTC'")
        con.sql(lake_attach_sql(home, read_only=read_only))
        con.sql(f"USE {LAKE_ALIAS}")
    except Exception:
        con.close()
        raise
    return con
