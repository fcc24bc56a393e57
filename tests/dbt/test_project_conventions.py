"""Conventions of the dbt project that dbt-bouncer cannot express (STYLE.md)."""

from __future__ import annotations

from pathlib import Path

import yaml

from safar.config import DBT_PROJECT_DIR
from safar.contract import RAW_SCHEMA

MODELS = DBT_PROJECT_DIR / "models"


def properties() -> dict[str, dict]:
    found = {}
    for path in MODELS.rglob("_*__models.yml"):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            found[model["name"]] = model | {"_file": path}
    return found


def test_every_model_has_yaml_beside_it_with_its_grain():
    documented = properties()
    for sql in MODELS.rglob("*.sql"):
        model = documented.get(sql.stem)
        assert model is not None, f"{sql.name} has no entry in a _<dir>__models.yml"
        assert model["_file"].parent == sql.parent, f"{sql.name} documented elsewhere"
        assert model["description"].lower().startswith("one row per"), (
            f"{sql.stem}: the description must start with its grain ('One row per ...')"
        )


def test_source_columns_match_the_event_contract():
    sources = yaml.safe_load((MODELS / "staging" / "_safar__sources.yml").read_text())
    columns = [c["name"] for c in sources["sources"][0]["tables"][0]["columns"]]
    # read_parquet adds the landing file and the row's place in it.
    assert columns == [*RAW_SCHEMA.names, "filename", "file_row_number"]


def test_nothing_can_shadow_dbt_core():
    """A ``dbt`` package or ``dbt.py`` on sys.path would be merged into dbt-core."""
    root = DBT_PROJECT_DIR.parent
    assert not (DBT_PROJECT_DIR / "__init__.py").exists()
    for folder in (DBT_PROJECT_DIR, root / "tests"):
        assert not list(folder.rglob("dbt.py"))
    assert not (Path(__file__).parent / "__init__.py").exists()
