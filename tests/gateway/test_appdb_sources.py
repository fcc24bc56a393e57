"""The app DB (migrations, SQLite settings) and `safar sources add|list|revoke`."""

from __future__ import annotations

from pathlib import Path

import pytest

from safar.appdb import open_app_db
from safar.appdb.sources import source_for_key
from safar.cli import main
from safar.config import SafarHome


def _run(home: Path, *argv: str) -> int:
    return main(["--home", str(home), *argv])


def test_add_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, "sources", "add", "web") == 0
    key = capsys.readouterr().out.strip()
    assert len(key) >= 32 and "\n" not in key
    engine = open_app_db(SafarHome(tmp_path))
    assert source_for_key(engine, key) == "src_web"

    assert _run(tmp_path, "sources", "add", "ios") == 0
    capsys.readouterr()
    assert _run(tmp_path, "sources", "list") == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["name", "id", "write"]
    assert listing[1].split()[:3] == ["web", "src_web", key]
    assert listing[1].endswith("-") and listing[2].startswith("ios")

    assert _run(tmp_path, "sources", "revoke", "web") == 0
    assert source_for_key(engine, key) is None
    capsys.readouterr()
    assert _run(tmp_path, "sources", "list") == 0
    assert not capsys.readouterr().out.splitlines()[1].endswith("-")


@pytest.mark.parametrize(
    ("setup", "argv", "message"),
    [
        (["web"], ["add", "web"], "a source named 'web' already exists"),
        (["web"], ["revoke", "ios"], "no source named 'ios'"),
        (["web", "-"], ["revoke", "web"], "source 'web' was already revoked"),
        ([], ["add", "Web Shop"], "invalid source name 'Web Shop'"),
        (["old", "-"], ["add", "old"], "a revoked source named 'old' already exists"),
    ],
)
def test_clear_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setup: list[str],
    argv: list[str],
    message: str,
) -> None:
    for name in setup:
        if name == "-":
            _run(tmp_path, "sources", "revoke", setup[0])
        else:
            _run(tmp_path, "sources", "add", name)
    capsys.readouterr()
    assert _run(tmp_path, "sources", *argv) == 1
    assert message in capsys.readouterr().err


def test_empty_list_says_how_to_add(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, "sources", "list") == 0
    assert "safar sources add NAME" in capsys.readouterr().err


def test_migrations_build_the_schema_the_code_queries(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from safar.appdb import upgrade
    from safar.appdb.schema import metadata

    engine = open_app_db(SafarHome(tmp_path))
    upgrade(engine)  # a second run changes nothing
    with engine.connect() as con:
        assert compare_metadata(MigrationContext.configure(con), metadata) == []
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert con.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
