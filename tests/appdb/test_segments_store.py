"""Segments made in the app, on a real SQLite app DB built by the real migrations.

SQL and builder segments are compiled against a small catalog before they are stored, so one
that cannot run is never saved; static lists store their members and a digest of them.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from safar.appdb import open_app_db, upgrade
from safar.appdb.engine import alembic_config, create_app_engine
from safar.appdb.insights import list_insights, save_insight
from safar.appdb.schema import segment_list_members, segments
from safar.appdb.segments import (
    delete_segment,
    get_segment,
    list_digest,
    list_members,
    list_segments,
    save_segment,
    save_static_list,
)
from safar.config import SafarHome
from safar.segments.compile import CompileError
from safar.segments.definitions import DefinitionError, SegmentDefinition
from safar.segments.registry import file_slugs, load_segments, static_members
from safar.segments.sandbox import MEMBERSHIP_COLUMNS

CATALOG = {
    "dim_users": {"person_id": "VARCHAR", "carrier": "VARCHAR", "custom_attributes": "VARCHAR"},
    "segment_membership": dict(MEMBERSHIP_COLUMNS),
}
IRANCELL_SQL = "select person_id as user_id from dim_users where carrier = 'Irancell'"
IRANCELL = SegmentDefinition(
    slug="irancell",
    name="  Irancell users ",
    kind="sql",
    description=" for the bundle offer ",
    owner="growth@safar.example",
    refresh=timedelta(hours=6),
    sql=IRANCELL_SQL,
)
TREE = {
    "all": [
        {"attribute": {"name": "carrier", "op": "eq", "value": "Irancell"}},
        {"segment": "irancell"},
    ]
}
BUILDER = SegmentDefinition(
    slug="irancell-vip", name="Irancell VIPs", kind="builder", condition=TREE
)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return open_app_db(SafarHome(tmp_path))


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as con:
        return con.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def _timestamps(engine: sa.Engine, slug: str) -> tuple:
    with engine.connect() as con:
        return con.execute(
            sa.select(segments.c.created_at, segments.c.updated_at).where(segments.c.slug == slug)
        ).one()


# --- saving and reading back -------------------------------------------------------------------


def test_a_sql_segment_comes_back_as_it_was_saved(engine: sa.Engine) -> None:
    saved = save_segment(engine, IRANCELL, CATALOG)

    assert saved == SegmentDefinition(
        slug="irancell",
        name="Irancell users",
        kind="sql",
        description="for the bundle offer",
        owner="growth@safar.example",
        refresh=timedelta(hours=6),
        sql=IRANCELL_SQL,
        origin="app",
    )
    assert saved.version == IRANCELL.version  # trimming the name changes no member
    assert get_segment(engine, "irancell") == saved
    assert list_segments(engine) == [saved]
    assert get_segment(engine, "nobody") is None


def test_a_builder_segment_keeps_its_tree_and_version(engine: sa.Engine) -> None:
    saved = save_segment(engine, BUILDER, CATALOG)

    assert (saved.kind, saved.condition, saved.sql) == ("builder", TREE, None)
    assert saved.refresh is None and saved.refresh_text == "live"
    assert saved.version == BUILDER.version
    with engine.connect() as con:
        stored = con.execute(sa.select(segments.c.definition)).scalar()
    assert stored.startswith('{"all": [{"attribute"')  # JSON, keys sorted


def test_a_static_list_stores_its_distinct_members(engine: sa.Engine) -> None:
    saved = save_static_list(
        engine, "beta", " Beta testers ", ["p2", "p1", "p2", "p3"], description="from the form"
    )

    assert (saved.kind, saved.name, saved.sql, saved.condition) == (
        "static",
        "Beta testers",
        None,
        None,
    )
    assert saved.list_digest == list_digest(["p1", "p2", "p3"])
    assert list_members(engine, "beta") == ["p1", "p2", "p3"]
    assert static_members(engine)("beta") == ["p1", "p2", "p3"]
    assert get_segment(engine, "beta") == saved


def test_segments_are_listed_by_slug(engine: sa.Engine) -> None:
    save_static_list(engine, "zeta", "Zeta", ["p1"])
    save_segment(engine, BUILDER, CATALOG)
    save_segment(engine, IRANCELL, CATALOG)

    assert [(s.slug, s.kind) for s in list_segments(engine)] == [
        ("irancell", "sql"),
        ("irancell-vip", "builder"),
        ("zeta", "static"),
    ]


def test_saving_a_slug_again_replaces_it_and_keeps_its_creation_time(engine: sa.Engine) -> None:
    first = save_segment(engine, IRANCELL, CATALOG)
    created, _ = _timestamps(engine, "irancell")
    time.sleep(0.002)

    rightel = IRANCELL_SQL.replace("Irancell", "Rightel")
    second = save_segment(
        engine,
        SegmentDefinition(slug="irancell", name="Now Rightel", kind="sql", sql=rightel),
        CATALOG,
    )

    assert (second.name, second.sql, second.refresh, second.owner) == (
        "Now Rightel",
        rightel,
        None,
        "",
    )
    assert second.version != first.version
    assert _count(engine, segments) == 1
    created_again, updated = _timestamps(engine, "irancell")
    assert created_again == created and updated > created


def test_replacing_a_static_list_replaces_its_members_and_digest(engine: sa.Engine) -> None:
    first = save_static_list(engine, "beta", "Beta", ["p1", "p2", "p3"])

    same = save_static_list(engine, "beta", "Beta (renamed)", ["p3", "p1", "p2", "p1"])
    assert same.list_digest == first.list_digest and same.version == first.version

    second = save_static_list(engine, "beta", "Beta", ["p4", "p2"])
    assert list_members(engine, "beta") == ["p2", "p4"]
    assert second.list_digest == list_digest(["p2", "p4"]) != first.list_digest
    assert second.version != first.version

    emptied = save_static_list(engine, "beta", "Beta", [])
    assert list_members(engine, "beta") == []
    assert emptied.list_digest not in (first.list_digest, second.list_digest)
    assert _count(engine, segment_list_members) == 0


def test_lists_do_not_share_members(engine: sa.Engine) -> None:
    save_static_list(engine, "a", "A", ["p1", "p2"])
    save_static_list(engine, "b", "B", ["p2", "p3"])
    save_static_list(engine, "a", "A", ["p9"])

    assert (list_members(engine, "a"), list_members(engine, "b")) == (["p9"], ["p2", "p3"])


def test_delete(engine: sa.Engine) -> None:
    save_static_list(engine, "beta", "Beta", ["p1", "p2"])
    save_segment(engine, IRANCELL, CATALOG)

    delete_segment(engine, "beta")

    assert [s.slug for s in list_segments(engine)] == ["irancell"]
    assert list_members(engine, "beta") == [] and _count(engine, segment_list_members) == 0
    with pytest.raises(DefinitionError, match="no segment 'beta' was made in the app"):
        delete_segment(engine, "beta")


# --- what is refused -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("select person_id as user_id from dim_users where plan = 'gold'", "unknown column 'plan'"),
        ("select person_id as user_id from fct_events", "unknown table 'fct_events'"),
        ("select person_id from dim_users", "exactly one column named user_id, not: person_id"),
        ("select person_id as user_id from read_csv('/etc/passwd')", "read_csv"),
        ("delete from dim_users", "DELETE is not allowed"),
        ("select person_id as user_id from dim_users; select 1", "2 statements"),
        ("   ", "empty"),
    ],
)
def test_a_sql_segment_that_fails_the_sandbox_is_not_stored(
    engine: sa.Engine, sql: str, message: str
) -> None:
    broken = SegmentDefinition(slug="broken", name="Broken", kind="sql", sql=sql)

    with pytest.raises(CompileError) as caught:
        save_segment(engine, broken, CATALOG)

    assert message in caught.value.reason and caught.value.slug == "broken"
    assert _count(engine, segments) == 0


def test_a_bad_definition_does_not_overwrite_a_good_one(engine: sa.Engine) -> None:
    good = save_segment(engine, IRANCELL, CATALOG)
    bad = SegmentDefinition(slug="irancell", name="X", kind="sql", sql="select 1 as user_id;;drop")

    with pytest.raises(CompileError):
        save_segment(engine, bad, CATALOG)

    assert get_segment(engine, "irancell") == good


def test_an_invalid_builder_tree_is_not_stored(engine: sa.Engine) -> None:
    tree = {"attribute": {"name": "shoe_size", "op": "eq", "value": 42}}
    broken = SegmentDefinition(slug="broken", name="Broken", kind="builder", condition=tree)

    with pytest.raises(CompileError) as caught:
        save_segment(engine, broken, CATALOG)

    assert caught.value.reason.startswith("condition.attribute.name: unknown name 'shoe_size'")
    assert _count(engine, segments) == 0


def test_a_builder_tree_reading_columns_the_catalog_lacks_is_not_stored(
    engine: sa.Engine,
) -> None:
    tree = {"attribute": {"name": "city", "op": "eq", "value": "Tehran"}}  # no city in CATALOG
    broken = SegmentDefinition(slug="broken", name="Broken", kind="builder", condition=tree)

    with pytest.raises(CompileError, match="the builder's query fails the sandbox"):
        save_segment(engine, broken, CATALOG)
    assert _count(engine, segments) == 0


def test_a_file_slug_is_refused(engine: sa.Engine) -> None:
    reserved = frozenset({"irancell", "repeat-buyers"})
    message = "slug: 'irancell' is defined in segments_sql/; change it there"

    with pytest.raises(DefinitionError) as caught:
        save_segment(engine, IRANCELL, CATALOG, reserved=reserved)
    assert str(caught.value) == message
    with pytest.raises(DefinitionError) as caught:
        save_static_list(engine, "irancell", "Irancell", ["p1"], reserved=reserved)
    assert str(caught.value) == message

    assert _count(engine, segments) == 0 and _count(engine, segment_list_members) == 0


@pytest.mark.parametrize(
    ("slug", "name", "message"),
    [
        ("Bad Slug", "Name", "slug: 'Bad Slug' is not a slug"),
        ("", "Name", "slug: '' is not a slug"),
        ("ok", "   ", "name: a segment needs a name"),
        ("ok", "x" * 201, "name: at most 200 printable characters"),
        ("ok", "tab\there", "name: at most 200 printable characters"),
    ],
)
def test_bad_slugs_and_names(engine: sa.Engine, slug: str, name: str, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        save_static_list(engine, slug, name, ["p1"])
    definition = SegmentDefinition(slug=slug, name=name, kind="sql", sql=IRANCELL_SQL)
    with pytest.raises(DefinitionError, match=message):
        save_segment(engine, definition, CATALOG)
    assert _count(engine, segments) == 0


def test_a_static_list_is_saved_with_save_static_list(engine: sa.Engine) -> None:
    static = SegmentDefinition(slug="beta", name="Beta", kind="static", list_digest="x")

    with pytest.raises(DefinitionError, match="kind: save a static list with save_static_list"):
        save_segment(engine, static, CATALOG)


def test_the_database_refuses_an_unknown_kind(engine: sa.Engine) -> None:
    row = {"slug": "x", "name": "X", "created_at": sa.func.now(), "updated_at": sa.func.now()}
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as con:
        con.execute(segments.insert().values(kind="cohort", **row))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as con:
        con.execute(segment_list_members.insert().values(slug="nowhere", person_id="p1"))


# --- the registry: files and the app as one list -------------------------------------------------


def test_the_registry_merges_files_and_app_segments(engine: sa.Engine, tmp_path: Path) -> None:
    folder = tmp_path / "segments_sql"
    folder.mkdir()
    (folder / "irancell.yml").write_text("name: Irancell users\n")
    (folder / "irancell.sql").write_text(IRANCELL_SQL)
    save_segment(engine, BUILDER, CATALOG, reserved=file_slugs(folder))
    save_static_list(engine, "beta", "Beta", ["p1"], reserved=file_slugs(folder))

    assert file_slugs(folder) == {"irancell"}
    assert [(d.slug, d.origin) for d in load_segments(engine, folder)] == [
        ("beta", "app"),
        ("irancell", f"{folder}/irancell.sql"),
        ("irancell-vip", "app"),
    ]
    with pytest.raises(DefinitionError, match="'irancell' is defined in segments_sql/"):
        save_segment(engine, IRANCELL, CATALOG, reserved=file_slugs(folder))

    # A file added later with an app segment's slug: the list names both places.
    (folder / "beta.yml").write_text("name: Beta\n")
    (folder / "beta.sql").write_text(IRANCELL_SQL)
    with pytest.raises(DefinitionError) as caught:
        load_segments(engine, folder)
    assert str(caught.value) == f"segment 'beta' is defined twice: {folder}/beta.sql and app"


# --- migration 0003 ----------------------------------------------------------------------------


def test_the_migration_adds_the_tables_to_an_existing_app_db_and_can_be_undone(
    tmp_path: Path,
) -> None:
    funnel = {"steps": [{"event": "Product Viewed"}, {"event": "Order Completed"}]}
    engine = create_app_engine(f"sqlite:///{tmp_path / 'app.sqlite'}")
    upgrade(engine, "0002")
    save_insight(engine, "funnel", "Checkout", funnel)
    assert "segments" not in sa.inspect(engine).get_table_names()

    upgrade(engine)

    tables = set(sa.inspect(engine).get_table_names())
    assert {"segments", "segment_list_members", "saved_insights", "sources"} <= tables
    assert [i.name for i in list_insights(engine, "funnel")] == ["Checkout"]
    save_static_list(engine, "beta", "Beta", ["p1", "p2"])
    save_segment(engine, IRANCELL, CATALOG)
    assert [s.slug for s in list_segments(engine)] == ["beta", "irancell"]

    with engine.begin() as con:
        command.downgrade(alembic_config(con), "0002")
    tables = set(sa.inspect(engine).get_table_names())
    assert not {"segments", "segment_list_members"} & tables
    assert [i.name for i in list_insights(engine, "funnel")] == ["Checkout"]

    upgrade(engine)  # and up again, empty
    assert list_segments(engine) == []
