"""The dbt project as Dagster sees it, with a manifest that exists and matches the sources.

``@dbt_assets`` needs ``manifest.json`` when the code location is *imported*, so a fresh clone
(CI, a new machine) must be able to produce one offline with no data in the home: ``dbt parse``
reads only the project files and renders the profile, it never opens the warehouse. It runs
only when the manifest is missing or older than a file of the project, so loading definitions
costs nothing in the usual case, and partial parsing keeps it quick when it does run.

Both the manifest and the per-run dbt target folder live under ``$SAFAR_HOME/dbt/`` (as for
``safar build``) rather than in the repository's ``dbt/`` folder.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from filelock import FileLock

from safar.build import dbt_environment
from safar.config import DBT_PROJECT_DIR, SafarHome, home_from_env

# Folders dbt writes into, or fills from packages: they are outputs, never sources.
_GENERATED_DIRS = frozenset({"target", "logs", "dbt_packages"})

# The dbt that belongs to this interpreter's dbt-core, found even when the virtual environment
# is not activated (`.venv/bin/dg ...` leaves `.venv/bin` off PATH).
_VENV_DBT = Path(sys.executable).parent / "dbt"
DBT_EXECUTABLE = str(_VENV_DBT) if _VENV_DBT.exists() else "dbt"


def manifest_dir(home: SafarHome) -> Path:
    """Where Dagster keeps the parsed manifest of the dbt project."""
    return home.dbt_target / "dagster" / "manifest"


def run_target_dir(home: SafarHome) -> Path:
    """dbt's target folder for Dagster runs.

    One fixed folder (not dagster-dbt's default of one new folder per invocation) so dbt's
    partial parse carries over from one micro-batch to the next and nothing piles up on disk;
    runs that write the warehouse are serialized by the ``warehouse`` pool, so they never
    share it at the same time.
    """
    return home.dbt_target / "dagster" / "run"


def project_source_paths(project_dir: Path) -> Iterator[Path]:
    """Every file and folder of the dbt project that a parse reads (generated folders skipped).

    Folders are included because deleting a model changes only its folder's modification time.
    """
    for path in project_dir.iterdir():
        if path.name.startswith(".") or path.name in _GENERATED_DIRS:
            continue
        yield path
        if path.is_dir():
            yield from (p for p in path.rglob("*") if not p.name.startswith("."))


def manifest_is_stale(manifest_path: Path, project_dir: Path) -> bool:
    """Whether ``manifest_path`` is missing or older than any source of the dbt project.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "models").mkdir()
        >>> manifest_is_stale(root / "target" / "manifest.json", root)
        True
    """
    if not manifest_path.exists():
        return True
    built = manifest_path.stat().st_mtime
    return any(path.stat().st_mtime > built for path in project_source_paths(project_dir))


def load_dbt_project(home: SafarHome, project_dir: Path = DBT_PROJECT_DIR) -> DbtProject:
    """The dbt project, parsed into ``manifest_dir(home)`` first if the manifest is stale.

    Args:
        home: The home whose dbt folder holds the manifest; its data need not exist.
        project_dir: The dbt project (the repository's ``dbt/`` folder).

    Returns:
        A project whose ``manifest_path`` points at a current manifest.
    """
    project = DbtProject(project_dir=project_dir, target_path=manifest_dir(home))
    if manifest_is_stale(project.manifest_path, project.project_dir):
        parse_project(project, home)
    return project


def parse_project(project: DbtProject, home: SafarHome) -> None:
    """Run ``dbt parse`` into the project's target path, once across concurrent processes.

    The webserver's code server, the daemon and each run worker import the definitions; the
    first to find the manifest stale parses while the others wait on the lock and then find it
    current.
    """
    project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(project.manifest_path.with_suffix(".lock"), timeout=300):
        if not manifest_is_stale(project.manifest_path, project.project_dir):
            return
        # The profile reads SAFAR_HOME and SAFAR_DUCKDB_EXTENSIONS even to parse.
        with dbt_environment(home):
            DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE).cli(
                ["parse", "--quiet"], target_path=project.target_path
            ).wait()


dbt_project = load_dbt_project(home_from_env())
