"""Saved insights on a real SQLite app DB built by the real migrations."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from safar.analytics.spec import SpecError
from safar.appdb import open_app_db, upgrade
from safar.appdb.engine import alembic_config, create_app_engine
from safar.appdb.insights import (
    InsightError,
    delete_insight,
    get_insight,
    list_insights,
    rename_insight,
    save_insight,
)
from safar.appdb.schema import saved_insights
from safar.appdb.sources import add_source, list_sources
from safar.config import SafarHome

FUNNEL = {
    "steps": [{"event": "Product Viewed"}, {"event": "Order Completed"}],
    "window": {"value": 7, "unit": "day"},
    "from": "2026-01-01",
    "to": "2026-01-31",
}
RETENTION = {"target": {"event": "Signed Up"}, "returning": {"event": None}, "to": "2026-01-31"}
TRENDS = {"series": [{"event": "Order Completed"}], "to": "2026-01-31", "intervals": 30}


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return open_app_db(SafarHome(tmp_path))


def _rows(engine: sa.Engine) -> int:
    with engine.connect() as con:
        return con.execute(sa.select(sa.func.count()).select_from(saved_insights)).scalar()


def test_a_saved_insight_comes_back_as_it_was_saved(engine: sa.Engine) -> None:
    spec = {**FUNNEL, "steps": [{"event": "مشاهده محصول", "name": "دیدن"}, {"event": None}]}

    saved = save_insight(engine, "funnel", "  قیف خرید ", spec, "from the home page")

    assert saved.name == "قیف خرید"
    assert (saved.kind, saved.spec, saved.description) == ("funnel", spec, "from the home page")
    assert saved.created_at == saved.updated_at
    assert get_insight(engine, "funnel", "قیف خرید") == saved
    assert get_insight(engine, "retention", "قیف خرید") is None
    assert get_insight(engine, "funnel", "something else") is None


def test_saving_under_a_taken_name_replaces_the_spec_and_keeps_the_identity(
    engine: sa.Engine,
) -> None:
    first = save_insight(engine, "funnel", "Checkout", FUNNEL, "v1")
    time.sleep(0.002)  # timestamps have microseconds; make "later" observable

    second = save_insight(engine, "funnel", "Checkout", {**FUNNEL, "order": "strict"})

    assert (second.id, second.created_at) == (first.id, first.created_at)
    assert second.updated_at > first.updated_at
    assert second.spec["order"] == "strict"
    assert second.description == "v1"  # None keeps the description
    assert save_insight(engine, "funnel", "Checkout", FUNNEL, "").description == ""
    assert _rows(engine) == 1


def test_names_are_unique_per_kind_and_listed_by_name(engine: sa.Engine) -> None:
    for name in ("checkout", "Activation", "browse"):
        save_insight(engine, "funnel", name, FUNNEL)
    save_insight(engine, "retention", "checkout", RETENTION)
    save_insight(engine, "trends", "checkout", TRENDS)

    assert [i.name for i in list_insights(engine, "funnel")] == [
        "Activation",
        "browse",
        "checkout",
    ]
    (retention,) = list_insights(engine, "retention")
    assert (retention.name, retention.spec) == ("checkout", RETENTION)
    assert [i.spec for i in list_insights(engine, "trends")] == [TRENDS]


@pytest.mark.parametrize(
    ("kind", "spec", "path"),
    [
        ("funnel", {"steps": []}, "steps"),
        ("funnel", {**FUNNEL, "window": {"value": 0}}, "window.value"),
        ("funnel", {**FUNNEL, "steps": [{"event": "a", "where": [{"op": "eq"}]}]}, "steps[0]"),
        ("retention", {"target": {"event": "a"}}, "to"),
        ("retention", {**RETENTION, "period": "year"}, "period"),
        ("retention", FUNNEL, "spec.steps"),  # a funnel is no retention spec
        ("trends", {**TRENDS, "intervals": None}, "from"),
        ("trends", {**TRENDS, "series": [{"event": "a", "math": "sum"}]}, "series[0].property"),
    ],
)
def test_a_spec_the_parser_rejects_is_not_stored(
    engine: sa.Engine, kind: str, spec: dict, path: str
) -> None:
    with pytest.raises(SpecError) as caught:
        save_insight(engine, kind, "broken", spec)

    assert caught.value.path.startswith(path)
    assert _rows(engine) == 0


def test_a_bad_spec_does_not_overwrite_a_good_one(engine: sa.Engine) -> None:
    save_insight(engine, "funnel", "Checkout", FUNNEL)

    with pytest.raises(SpecError):
        save_insight(engine, "funnel", "Checkout", {"steps": "Product Viewed"})

    assert get_insight(engine, "funnel", "Checkout").spec == FUNNEL


@pytest.mark.parametrize(
    ("kind", "name", "spec", "message"),
    [
        ("cohort", "x", FUNNEL, "unknown insight kind 'cohort'"),
        ("funnel", "   ", FUNNEL, "an insight needs a name"),
        ("funnel", "x" * 201, FUNNEL, "at most 200 characters"),
        ("funnel", "tab\there", FUNNEL, "control characters"),
        ("funnel", "x", {**FUNNEL, "to": object()}, "the spec is not JSON"),
    ],
)
def test_clear_errors(engine: sa.Engine, kind: str, name: str, spec: dict, message: str) -> None:
    with pytest.raises(InsightError, match=message):
        save_insight(engine, kind, name, spec)
    assert _rows(engine) == 0


def test_rename_keeps_the_spec_and_refuses_a_taken_name(engine: sa.Engine) -> None:
    saved = save_insight(engine, "funnel", "Checkout", FUNNEL, "the main one")
    save_insight(engine, "funnel", "Browse", FUNNEL)
    save_insight(engine, "retention", "Weekly", RETENTION)

    renamed = rename_insight(engine, "funnel", "Checkout", " Checkout (web) ")

    assert (renamed.id, renamed.name, renamed.spec) == (saved.id, "Checkout (web)", FUNNEL)
    assert renamed.description == "the main one"
    assert get_insight(engine, "funnel", "Checkout") is None
    assert get_insight(engine, "funnel", "Checkout (web)") == renamed
    with pytest.raises(InsightError, match="a saved funnel named 'Browse' already exists"):
        rename_insight(engine, "funnel", "Checkout (web)", "Browse")
    with pytest.raises(InsightError, match="no saved funnel named 'Checkout'"):
        rename_insight(engine, "funnel", "Checkout", "Anything")
    # the same name in another kind is no conflict
    assert rename_insight(engine, "retention", "Weekly", "Browse").name == "Browse"


def test_delete(engine: sa.Engine) -> None:
    save_insight(engine, "funnel", "Checkout", FUNNEL)
    save_insight(engine, "retention", "Checkout", RETENTION)

    delete_insight(engine, "funnel", "Checkout")

    assert list_insights(engine, "funnel") == []
    assert [i.name for i in list_insights(engine, "retention")] == ["Checkout"]
    with pytest.raises(InsightError, match="no saved funnel named 'Checkout'"):
        delete_insight(engine, "funnel", "Checkout")


def test_the_database_refuses_what_the_module_would_not_write(engine: sa.Engine) -> None:
    row = {"name": "x", "spec": "{}", "created_at": sa.func.now(), "updated_at": sa.func.now()}
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as con:
        con.execute(saved_insights.insert().values(kind="cohort", **row))
    with engine.begin() as con:
        con.execute(saved_insights.insert().values(kind="funnel", **row))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as con:
        con.execute(saved_insights.insert().values(kind="funnel", **row))


def test_the_migration_adds_the_table_to_an_existing_app_db_and_can_be_undone(
    tmp_path: Path,
) -> None:
    engine = create_app_engine(f"sqlite:///{tmp_path / 'app.sqlite'}")
    upgrade(engine, "0001")
    web = add_source(engine, "web")
    assert "saved_insights" not in sa.inspect(engine).get_table_names()

    upgrade(engine)

    assert list_sources(engine) == [web]
    save_insight(engine, "funnel", "Checkout", FUNNEL)
    with engine.begin() as con:
        command.downgrade(alembic_config(con), "0001")
    assert "saved_insights" not in sa.inspect(engine).get_table_names()
    assert list_sources(engine) == [web]
