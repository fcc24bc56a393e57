"""The Segments pages as Streamlit runs them (``AppTest``), on a copy of the demo warehouse.

What a page shows is compared with the segment engine called directly: sizes with
``size_summaries``, previews with ``preview``, the builder's answer with SQL written by hand,
an upload with the people whose emails were uploaded. Saves go through the pages into a real
app DB. The demo home is read-only, so the segments are evaluated on a copy of it.
"""

from __future__ import annotations

import csv
import doctest
import io
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from page_helpers import assert_ok
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest
from warehouse_helpers import copy_home

import dashboards.lib.segment_forms as segment_forms_module
from dashboards.lib.segment_forms import FormCannotShow, builder_state, builder_tree
from safar.appdb.segments import get_segment, list_members, list_segments, save_segment
from safar.config import SafarHome
from safar.segments.builder import AllOf, parse_condition
from safar.segments.definitions import SegmentDefinition, load_file_segments
from safar.segments.evaluate import evaluate_segments
from safar.segments.membership import size_history, size_summaries
from safar.segments.preview import preview
from safar.segments.sandbox import load_catalog, manifest_path
from safar.warehouse import connect

LIST, SQL, BUILDER, UPLOAD = (
    "segments.py",
    "segments_sql.py",
    "segments_builder.py",
    "segments_upload.py",
)
FIXTURES = Path(__file__).resolve().parents[1] / "segments" / "fixtures" / "builder"
EVALUATED_AT = [datetime(2026, 1, day, 12) for day in (17, 24, 31)]


@pytest.fixture(autouse=True)
def _repository_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pages read the repository's ``segments_sql/``, the six demo segments."""
    monkeypatch.delenv("SAFAR_SEGMENTS_DIR", raising=False)


@pytest.fixture(scope="module")
def evaluated_home(demo_home: SafarHome, tmp_path_factory: pytest.TempPathFactory) -> SafarHome:
    """The demo warehouse with the six file segments evaluated three times, a week apart."""
    home = copy_home(demo_home, tmp_path_factory.mktemp("segments") / "home")
    for at in EVALUATED_AT:
        outcomes = evaluate_segments(
            home, load_file_segments(), as_of=at, batch_id=f"week-{at:%d}", force=True
        )
        assert {o.status for o in outcomes} == {"evaluated"}
    return home


@pytest.fixture(scope="module")
def warehouse(evaluated_home: SafarHome) -> Iterator[Any]:
    con = connect(evaluated_home, read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def catalog(evaluated_home: SafarHome, warehouse: Any) -> dict[str, dict[str, str]]:
    return load_catalog(warehouse, manifest_path(evaluated_home))


def _messages(app: AppTest, kind: str) -> list[str]:
    return [e.value for e in app.get(kind)]


def _metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def _count(text: str) -> int:
    return int(text.replace(",", ""))


# --- pure parts ------------------------------------------------------------------------------


def test_doctests_pass() -> None:
    assert doctest.testmod(segment_forms_module).failed == 0


JSON_ONLY = {
    "behaviour_where_count_absolute_dates": "two property filters on one event",
    "double_negation": "not",
    "first_time_in_last_days": "first_time",
    "last_time_between_dates": "last_time",
    "nested_any_in_all": "a group in a group",
    "not_all_de_morgan": "not",
    "not_any_with_nested_all": "not",
    "trait_date_after": "trait",
    "trait_eq": "trait",
    "trait_number_and_in": "trait",
}
"""Builder fixtures the form cannot show, and why; they are edited as JSON."""


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_the_form_shows_a_tree_exactly_or_not_at_all(path: Path) -> None:
    tree = json.loads(path.read_text())["condition"]
    if path.stem in JSON_ONLY:
        with pytest.raises(FormCannotShow):
            builder_state(tree)
        return
    parsed = parse_condition(tree)
    expected = parsed if next(iter(tree)) in ("all", "any") else AllOf((parsed,))
    assert parse_condition(builder_tree(builder_state(tree))) == expected


# --- the list --------------------------------------------------------------------------------


def test_the_list_shows_the_file_segments_with_their_evaluated_sizes(
    open_page, evaluated_home: SafarHome, warehouse: Any
) -> None:
    app = open_page(evaluated_home.root, LIST)

    assert [t.value for t in app.main.title] == ["Segments"]
    table = app.dataframe[0].value
    files = load_file_segments()
    assert len(files) == 6
    assert table["Slug"].tolist() == [d.slug for d in files]
    assert table["Defined in"].tolist() == [f"segments_sql/{d.slug}.sql" for d in files]
    assert table["Kind"].tolist() == ["SQL"] * 6
    sizes = size_summaries(warehouse)
    rows = {row["Slug"]: row for row in table.to_dict("records")}
    for d in files:
        summary = sizes[d.slug]
        assert rows[d.slug]["Size"] == summary.size
        assert rows[d.slug]["7-day change"] == summary.change_7d
        assert rows[d.slug]["Last evaluated"] == summary.evaluated_at
        assert list(rows[d.slug]["Trend"]) == [s for _, s in size_history(warehouse, d.slug)]
        assert rows[d.slug]["Owner"] == d.owner and rows[d.slug]["Refresh"] == d.refresh_text
    # Time-relative segments moved over the three weeks; the others did not.
    assert sizes["dormant-14d"].change_7d != 0
    assert sizes["repeat-buyers"].change_7d == 0


def test_a_file_segment_is_shown_read_only_with_its_chart_and_a_preview(
    open_page, evaluated_home: SafarHome, warehouse: Any, catalog: dict[str, Any]
) -> None:
    app = open_page(evaluated_home.root, LIST)

    app.selectbox(key="segments_selected").select("repeat-buyers").run()

    assert_ok(app)
    (definition,) = [d for d in load_file_segments() if d.slug == "repeat-buyers"]
    assert [h.value for h in app.header] == [definition.name]
    assert app.code[0].value == definition.sql.strip()
    (info,) = _messages(app, "info")
    assert "segments_sql/repeat-buyers.sql" in info and "edit it in git" in info
    assert not app.button  # no edit, no delete
    assert len(app.get("plotly_chart")) == 1
    direct = preview(evaluated_home, definition, catalog, as_of=datetime(2026, 1, 31, 12))
    metrics = _metrics(app)
    # Not time-relative: the preview now is the evaluated size.
    assert (
        _count(metrics["People"]) == direct.size == size_summaries(warehouse)[definition.slug].size
    )
    assert metrics["Time-relative"] == "No"
    shown = app.dataframe[1].value
    assert shown["person_id"].tolist() == [p["person_id"] for p in direct.sample]


def test_an_app_segment_can_be_deleted_from_the_list(
    open_page, evaluated_home: SafarHome, app_db: sa.Engine, catalog: dict[str, Any]
) -> None:
    save_segment(
        app_db,
        SegmentDefinition("mci", "MCI people", "sql", sql=_MCI, owner="ana"),
        catalog,
    )
    app = open_page(evaluated_home.root, LIST)
    assert "mci" in app.dataframe[0].value["Slug"].tolist()
    app.selectbox(key="segments_selected").select("mci").run()
    assert "Safar app" in app.dataframe[0].value["Defined in"].tolist()

    app.button(key="segments_delete").click().run()

    assert_ok(app)
    assert _messages(app, "success") == [
        "Deleted “mci”. Its membership history stays in the warehouse."
    ]
    assert "mci" not in app.dataframe[0].value["Slug"].tolist()
    assert get_segment(app_db, "mci") is None


# --- the SQL editor --------------------------------------------------------------------------

_MCI = "select person_id as user_id from dim_users where carrier = 'Hamrah-e Aval'"
_TYPO = "select person_id as user_id\nfrom dim_users\nwhere carier = 'Irancell'\n"
_GOOD = (
    "select person_id as user_id\nfrom dim_users\nwhere carrier = 'Irancell'\n"
    "  and order_count >= 1\n"
)


def _write(app: AppTest, sql: str) -> AppTest:
    app.text_area(key="segsql_sql").input(sql).run()
    return app


def test_a_bad_query_shows_the_sandbox_message_with_its_line_and_column(
    open_page, evaluated_home: SafarHome
) -> None:
    app = open_page(evaluated_home.root, SQL)
    _write(app, _TYPO)

    app.button(key="segsql_validate").click().run()

    assert_ok(app)
    (error,) = _messages(app, "error")
    assert error.startswith("**Not valid at line 3, column 7:** unknown column 'carier'")
    (excerpt,) = [c.value for c in app.code]
    assert excerpt == "3 | where carier = 'Irancell'\n  |       ^"

    # Fixing the query hides the stale message; validating again says it is valid.
    _write(app, _GOOD).button(key="segsql_validate").click().run()
    assert not app.error
    (ok,) = _messages(app, "success")
    assert ok.startswith("**Valid.** It reads dim_users.")


def test_a_good_query_previews_what_the_engine_counts(
    open_page, evaluated_home: SafarHome, catalog: dict[str, Any]
) -> None:
    app = open_page(evaluated_home.root, SQL)
    _write(app, _GOOD)

    app.button(key="segsql_preview").click().run()

    assert_ok(app)
    definition = SegmentDefinition("x", "x", "sql", sql=_GOOD)
    direct = preview(evaluated_home, definition, catalog, as_of=datetime(2026, 2, 1))
    metrics = _metrics(app)
    assert direct.size > 0
    assert _count(metrics["People"]) == direct.size
    assert metrics["Time-relative"] == "No"
    assert metrics["Took"].endswith(" s")
    assert app.dataframe[-1].value["person_id"].tolist() == [p["person_id"] for p in direct.sample]


def test_a_query_that_passes_the_checks_but_fails_to_run_says_so(
    open_page, evaluated_home: SafarHome
) -> None:
    app = open_page(evaluated_home.root, SQL)
    _write(app, "select cast(cast(email as integer) as varchar) as user_id from dim_users")

    app.button(key="segsql_validate").click().run()
    assert _messages(app, "success") == ["**Valid.** It reads dim_users."]
    app.button(key="segsql_preview").click().run()

    assert_ok(app)
    (error,) = _messages(app, "error")
    assert error.startswith("**It did not run:** DuckDB: Conversion Error")
    assert not app.metric


def test_saving_makes_an_app_segment_the_list_shows(
    open_page, evaluated_home: SafarHome, app_db: sa.Engine
) -> None:
    app = open_page(evaluated_home.root, SQL)
    app.text_input(key="segsql_name").input("Irancell buyers").run()
    assert app.text_input(key="segsql_slug").value == "irancell-buyers"  # from the name
    app.text_input(key="segsql_owner").input("sara")
    app.radio(key="segsql_refresh_mode").set_value("interval").run()
    app.number_input(key="segsql_refresh_every").set_value(6)
    app.selectbox(key="segsql_refresh_unit").select("h")
    _write(app, _GOOD)

    app.button(key="segsql_save").click().run()

    assert_ok(app)
    assert _messages(app, "success") == ["Saved “Irancell buyers” (irancell-buyers)."]
    saved = get_segment(app_db, "irancell-buyers")
    assert (saved.kind, saved.sql, saved.owner, saved.refresh_text) == ("sql", _GOOD, "sara", "6h")

    listing = open_page(evaluated_home.root, LIST)
    rows = {r["Slug"]: r for r in listing.dataframe[0].value.to_dict("records")}
    assert rows["irancell-buyers"]["Defined in"] == "Safar app"
    assert rows["irancell-buyers"]["Refresh"] == "6h"
    assert len(rows) == 7

    # Edit from the list: the editor opens with the saved segment in its form.
    listing.selectbox(key="segments_selected").select("irancell-buyers").run()
    listing.button(key="segments_edit").click().run()
    assert_ok(listing)
    assert [t.value for t in listing.main.title] == ["SQL segment"]
    assert listing.text_area(key="segsql_sql").value == _GOOD
    assert listing.text_input(key="segsql_name").value == "Irancell buyers"
    assert listing.number_input(key="segsql_refresh_every").value == 6


def test_saving_under_a_file_segments_slug_is_refused(
    open_page, evaluated_home: SafarHome, app_db: sa.Engine
) -> None:
    app = open_page(evaluated_home.root, SQL)
    app.text_input(key="segsql_name").input("Irancell users").run()
    assert app.text_input(key="segsql_slug").value == "irancell-users"
    _write(app, _GOOD)

    app.button(key="segsql_save").click().run()

    assert_ok(app)
    assert _messages(app, "error") == [
        "Not saved: slug: 'irancell-users' is defined in segments_sql/; change it there"
    ]
    assert list_segments(app_db) == []


def test_an_app_sql_segment_opens_from_the_sidebar(
    open_page, evaluated_home: SafarHome, app_db: sa.Engine, catalog: dict[str, Any]
) -> None:
    save_segment(app_db, SegmentDefinition("mci", "MCI people", "sql", sql=_MCI), catalog)
    app = open_page(evaluated_home.root, SQL)

    app.selectbox(key="segsql_open").select("mci").run()

    assert_ok(app)
    assert app.text_area(key="segsql_sql").value == _MCI
    assert app.text_input(key="segsql_slug").value == "mci"
    # Renaming an opened segment keeps its slug (it is the same segment).
    app.text_input(key="segsql_name").input("Hamrah-e Aval people").run()
    assert app.text_input(key="segsql_slug").value == "mci"

    app.button(key="segsql_new").click().run()

    assert_ok(app)
    assert app.selectbox(key="segsql_open").value is None
    assert app.text_input(key="segsql_name").value == ""
    assert app.text_area(key="segsql_sql").value.startswith("-- One query returning user_id")


# --- the builder -----------------------------------------------------------------------------

IRANCELL_REPEAT = {
    "all": [
        {"attribute": {"name": "carrier", "op": "eq", "value": "Irancell"}},
        {
            "behaviour": {
                "event": "Order Completed",
                "did": True,
                "count": {"op": "gte", "value": 2},
                "time": "ever",
            }
        },
    ]
}


def _shown_tree(app: AppTest) -> Any:
    (tree,) = [c.value for c in app.code if c.language == "json"]
    return json.loads(tree)


def test_the_builder_makes_the_tree_says_it_and_previews_the_hand_counted_people(
    open_page, evaluated_home: SafarHome, warehouse: Any, app_db: sa.Engine
) -> None:
    app = open_page(evaluated_home.root, BUILDER)
    assert _messages(app, "info") == ["Users who did Product Viewed"]  # a new page runs as is

    app.selectbox(key="segbuild_r0_kind").select("attribute").run()
    assert app.selectbox(key="segbuild_r0_attribute_name").value == "carrier"
    app.selectbox(key="segbuild_r0_attribute_op").select("eq")
    app.selectbox(key="segbuild_r0_attribute_choice").select("Irancell").run()
    app.button(key="segbuild_add").click().run()
    app.selectbox(key="segbuild_r1_event").select("Order Completed")
    app.selectbox(key="segbuild_r1_count_op").select("gte").run()
    app.number_input(key="segbuild_r1_count").set_value(2).run()

    assert_ok(app)
    assert _shown_tree(app) == IRANCELL_REPEAT
    assert _messages(app, "info") == [
        "Users whose carrier is Irancell and who did Order Completed at least 2 times"
    ]
    (sql,) = [c.value for c in app.code if c.language == "sql"]
    assert "dim_users.carrier = 'Irancell'" in sql

    app.button(key="segbuild_preview").click().run()

    assert_ok(app)
    (expected,) = warehouse.execute(
        """
        select count(*) from dim_users
        where carrier = 'Irancell'
          and person_id in (
              select person_id from fct_events
              where event_name = 'Order Completed' and type in ('track', 'page', 'screen')
              group by person_id
              having count(*) >= 2
          )
        """
    ).fetchone()
    assert expected > 0
    assert _count(_metrics(app)["People"]) == expected

    app.text_input(key="segbuild_name").input("Irancell repeat buyers").run()
    app.button(key="segbuild_save").click().run()
    assert _messages(app, "success") == ["Saved “Irancell repeat buyers” (irancell-repeat-buyers)."]
    assert get_segment(app_db, "irancell-repeat-buyers").condition == IRANCELL_REPEAT


def test_the_json_tree_is_checked_inline_and_kept_when_the_form_cannot_show_it(
    open_page, evaluated_home: SafarHome
) -> None:
    app = open_page(evaluated_home.root, BUILDER)
    app.radio(key="segbuild_mode").set_value("json").run()
    assert json.loads(app.text_area(key="segbuild_json").value) == _shown_tree(app)

    app.text_area(key="segbuild_json").input('{"all": [{"reachable": "fax"}]}').run()
    (error,) = _messages(app, "error")
    assert error == "**all[0].reachable:** must be one of email, sms, push, web_push, not 'fax'"
    assert app.button(key="segbuild_save").disabled

    app.text_area(key="segbuild_json").input('{"all": [{"reachable": "sms"},]}').run()
    (error,) = _messages(app, "error")
    assert error == "**Not JSON at line 1, column 31:** Expecting value"
    assert [c.value for c in app.code] == [
        '1 | {"all": [{"reachable": "sms"},]}\n  |                               ^'
    ]

    app.text_area(key="segbuild_json").input('{"not": {"reachable": "sms"}}').run()
    assert _messages(app, "info") == ["Users who are not reachable by SMS"]
    app.radio(key="segbuild_mode").set_value("form").run()
    assert_ok(app)
    assert app.radio(key="segbuild_mode").value == "json"
    (warning,) = _messages(app, "warning")
    assert warning.startswith("Kept as JSON: the form has no row for 'not'")

    app.text_area(key="segbuild_json").input(json.dumps(IRANCELL_REPEAT)).run()
    app.radio(key="segbuild_mode").set_value("form").run()
    assert_ok(app)
    assert app.selectbox(key="segbuild_r0_attribute_choice").value == "Irancell"
    assert app.number_input(key="segbuild_r1_count").value == 2
    assert _shown_tree(app) == IRANCELL_REPEAT


# --- uploads ---------------------------------------------------------------------------------


def test_an_uploaded_list_reports_its_matches_and_is_saved(
    open_page,
    evaluated_home: SafarHome,
    warehouse: Any,
    app_db: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    people = warehouse.execute(
        """
        select person_id, email from dim_users
        where email is not null
        qualify count(*) over (partition by lower(trim(email))) = 1
        order by person_id
        limit 4
        """
    ).fetchall()
    (taken,) = warehouse.execute(
        "select count(*) from dim_users where lower(email) = 'nobody@example.invalid'"
    ).fetchone()
    assert len(people) == 4 and taken == 0
    rows = [["Email", "Note"]]
    rows += [[f"  {email.upper()} ", "vip"] for _, email in people]
    rows += [["nobody@example.invalid", "unknown"], ["not-an-email", "typo"], ["", "blank"]]
    rows += [[people[0][1], "again"]]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)

    offered: list[bytes] = []
    load = MemoryMediaFileStorage.load_and_get_id

    def capture(self, data, mimetype, kind, filename=None):  # what the download button serves
        offered.append(data if isinstance(data, bytes) else data.encode())
        return load(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    app = open_page(evaluated_home.root, UPLOAD)
    app.file_uploader(key="segupload_file").upload("vip.csv", out.getvalue().encode(), "text/csv")
    app.run()

    assert_ok(app)
    assert _metrics(app) == {
        "Rows": "8",
        "Matched people": "4",
        "Rows that matched nobody": "4",
        "Matched by": "email",
    }
    unmatched = app.dataframe[0].value
    assert unmatched.values.tolist() == [
        [6, "nobody@example.invalid", "no user with this email"],
        [7, "not-an-email", "not an email address"],
        [8, "", "empty"],
        [9, people[0][1], "duplicate of line 2"],
    ]
    assert offered[-1].decode().splitlines() == [
        "line,value,reason",
        "6,nobody@example.invalid,no user with this email",
        "7,not-an-email,not an email address",
        "8,,empty",
        f"9,{people[0][1]},duplicate of line 2",
    ]

    app.text_input(key="segupload_name").input("VIP customers").run()
    app.button(key="segupload_save").click().run()

    assert_ok(app)
    assert _messages(app, "success") == ["Saved “VIP customers” (vip-customers): 4 people."]
    assert list_members(app_db, "vip-customers") == sorted(p for p, _ in people)

    listing = open_page(evaluated_home.root, LIST)
    listing.selectbox(key="segments_selected").select("vip-customers").run()
    assert_ok(listing)
    assert _metrics(listing)["People"] == "4"
    assert listing.dataframe[1].value["person_id"].tolist() == sorted(p for p, _ in people)


def test_a_file_the_list_cannot_use_says_why(open_page, evaluated_home: SafarHome) -> None:
    app = open_page(evaluated_home.root, UPLOAD)
    app.file_uploader(key="segupload_file").upload("x.csv", b"email,phone\na@x.com,+989121234567\n")
    app.run()

    (error,) = _messages(app, "error")
    assert "more than one column could be the key ('email', 'phone'); choose one" in error

    app.selectbox(key="segupload_column").select("phone").run()
    assert_ok(app)
    assert not app.error
    assert _metrics(app)["Matched by"] == "phone number"


# --- no warehouse ----------------------------------------------------------------------------


@pytest.mark.parametrize("page", [SQL, BUILDER, UPLOAD])
def test_an_unbuilt_warehouse_shows_a_message(open_page, tmp_path: Path, page: str) -> None:
    app = open_page(tmp_path / "empty_home", page)

    (info,) = _messages(app, "info")
    assert "not built yet" in info
    assert not (tmp_path / "empty_home" / "lake" / "catalog.sqlite").exists()


def test_the_list_of_an_unbuilt_warehouse_still_shows_the_files(open_page, tmp_path: Path) -> None:
    app = open_page(tmp_path / "empty_home", LIST)

    table = app.dataframe[0].value
    assert len(table) == 6 and table["Size"].isna().all()
    assert any("No segment has been evaluated" in c.value for c in app.caption)
    app.selectbox(key="segments_selected").select("repeat-buyers").run()
    assert_ok(app)
    (info,) = [i for i in _messages(app, "info") if "not built yet" in i]
    assert "safar build" in info


def test_an_app_builder_segment_opens_in_the_form_or_as_json(
    open_page, evaluated_home: SafarHome, app_db: sa.Engine, catalog: dict[str, Any]
) -> None:
    negated = {"not": {"reachable": "sms"}}
    for slug, tree in (("irancell-repeat", IRANCELL_REPEAT), ("no-sms", negated)):
        save_segment(app_db, SegmentDefinition(slug, slug, "builder", condition=tree), catalog)
    app = open_page(evaluated_home.root, BUILDER)

    app.selectbox(key="segbuild_open").select("irancell-repeat").run()
    assert_ok(app)
    assert app.radio(key="segbuild_mode").value == "form"
    assert _shown_tree(app) == IRANCELL_REPEAT

    app.selectbox(key="segbuild_open").select("no-sms").run()
    assert_ok(app)
    assert app.radio(key="segbuild_mode").value == "json"
    assert json.loads(app.text_area(key="segbuild_json").value) == negated
    assert _messages(app, "info") == ["Users who are not reachable by SMS"]

    listing = open_page(evaluated_home.root, LIST)
    listing.selectbox(key="segments_selected").select("no-sms").run()
    assert_ok(listing)
    assert "Users who are not reachable by SMS" in [m.value for m in listing.markdown]
    assert json.loads(listing.code[0].value) == negated
