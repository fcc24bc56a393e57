"""Where Safar keeps its files: the one place that reads the environment.

Every other module takes a :class:`SafarHome` (or paths derived from it) as an argument, so
tests point the whole system at a temporary directory by building one, never by patching
``os.environ`` inside modules.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"


@dataclass(frozen=True)
class SafarHome:
    """The directory tree under ``SAFAR_HOME``.

    Example:
        >>> home = SafarHome(Path("/srv/safar"))
        >>> str(home.raw_events)
        '/srv/safar/lake/raw/events'
        >>> str(home.catalog)
        '/srv/safar/lake/catalog.sqlite'
    """

    root: Path

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def raw_events(self) -> Path:
        """Append-only landing zone: ``date=YYYY-MM-DD/part-<id>.parquet``."""
        return self.lake / "raw" / "events"

    @property
    def rejected(self) -> Path:
        """Rows that failed validation, one JSONL file per write, each line with its reason."""
        return self.lake / "rejected"

    @property
    def quarantine(self) -> Path:
        """Landing files that could not be read, moved aside with a ``.reason.json`` beside them."""
        return self.lake / "quarantine"

    @property
    def catalog(self) -> Path:
        """The DuckLake catalog (SQLite)."""
        return self.lake / "catalog.sqlite"

    @property
    def warehouse_data(self) -> Path:
        """DuckLake's Parquet data files."""
        return self.lake / "data"

    @property
    def import_ledger(self) -> Path:
        """One JSON file per completed bulk import (by file hash): what the lake already holds."""
        return self.lake / "imports"

    @property
    def gateway_wal(self) -> Path:
        """The gateway's write-ahead log segments, waiting to become landing files."""
        return self.lake / "gateway_wal"

    @property
    def app_db(self) -> Path:
        return self.root / "app.sqlite"

    @property
    def dbt_target(self) -> Path:
        """dbt's target/ and logs/ live under the home so one checkout can serve many homes."""
        return self.root / "dbt"

    def ensure(self) -> SafarHome:
        for path in (self.raw_events, self.rejected, self.quarantine, self.warehouse_data):
            path.mkdir(parents=True, exist_ok=True)
        return self


def home_from_env(override: str | Path | None = None) -> SafarHome:
    """The home named by ``override``, else ``$SAFAR_HOME``, else ``./data``."""
    raw = override or os.environ.get("SAFAR_HOME") or "data"
    return SafarHome(Path(raw).expanduser().resolve())


def segments_directory() -> Path:
    """Where the analysts' segment files are: ``$SAFAR_SEGMENTS_DIR``, else ``segments_sql/``.

    A deployment keeps its segments in its own repository; tests point at a folder of their own.
    """
    raw = os.environ.get("SAFAR_SEGMENTS_DIR")
    return Path(raw).expanduser().resolve() if raw else PROJECT_ROOT / "segments_sql"


def app_db_url(home: SafarHome) -> str:
    """The app DB's SQLAlchemy URL: ``$SAFAR_APP_DB_URL`` (e.g. Postgres), else the home's SQLite.

    Example:
        >>> import os
        >>> "SAFAR_APP_DB_URL" in os.environ or app_db_url(SafarHome(Path("/srv/s"))) == (
        ...     "sqlite:////srv/s/app.sqlite"
        ... )
        True
    """
    return os.environ.get("SAFAR_APP_DB_URL") or f"sqlite:///{home.app_db}"


def gateway_public_url() -> str:
    """The gateway's address as browsers and apps reach it (``$SAFAR_GATEWAY_URL``).

    The default is where ``safar gateway`` listens out of the box; behind a load balancer or
    TLS terminator, set the public URL so the install snippets name it.
    """
    return os.environ.get("SAFAR_GATEWAY_URL", "http://127.0.0.1:8080").rstrip("/")


def extension_directory() -> Path:
    """Project-local DuckDB extension directory, inside the virtual environment.

    The extensions come from PyPI wheels (``duckdb-extension-*``), so they belong with the
    installed packages rather than with any one data directory.
    """
    raw = os.environ.get("SAFAR_DUCKDB_EXTENSIONS")
    return Path(raw) if raw else Path(sys.prefix) / "share" / "safar" / "duckdb_extensions"
