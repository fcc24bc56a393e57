"""The Message preview page as Streamlit runs it, on the demo warehouse's real people.

Expected values come from the warehouse itself (``dim_users``) and from the template filters
called directly, never from the page's own helpers, so a page that rendered the wrong person,
the wrong field or nothing at all fails.
"""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from page_helpers import assert_ok
from streamlit.testing.v1 import AppTest

from channels.templates import format_currency
from dashboards.lib import previews
from safar.config import SafarHome
from safar.warehouse import connect

P = "msgprev_"


@pytest.fixture(scope="module")
def warehouse(demo_home: SafarHome) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(demo_home, read_only=True)
    yield con
    con.close()


def _someone(con: duckdb.DuckDBPyConnection, where: str) -> dict[str, Any]:
    """The first known person (by id) of ``dim_users`` that ``where`` holds for."""
    cursor = con.execute(
        "select person_id, user_id, email, phone, first_name, name, revenue from dim_users "
        f"where is_known and first_name is not null and {where} order by person_id limit 1"
    )
    row = cursor.fetchone()
    assert row is not None, f"the demo warehouse has somebody with {where}"
    return dict(zip([c[0] for c in cursor.description], row, strict=True))


def _preview_for(open_page: Any, demo_home: SafarHome, person: dict[str, Any]) -> AppTest:
    app = open_page(demo_home.root, "message_preview.py")
    assert [t.value for t in app.main.title] == ["Message preview"]
    app.text_input(key=f"{P}search").input(person["email"]).run()
    app.selectbox(key=f"{P}person").select(person["person_id"]).run()
    assert_ok(app)
    return app


def _html(app: AppTest) -> list[str]:
    return [h.proto.body for h in app.get("html")]


def _under(app: AppTest, key: str) -> list[str]:
    """The messages shown right under the text area ``key`` (its field's problems)."""
    for column in app.columns:
        children = list(column.children.values())
        for i, child in enumerate(children):
            if getattr(child, "key", None) == key:
                return [e.value for e in children[i + 1].children.values()]
    raise AssertionError(f"no text area {key}")


def test_the_email_renders_for_a_real_person_from_the_warehouse(
    open_page: Any, demo_home: SafarHome, warehouse: duckdb.DuckDBPyConnection
) -> None:
    sara = _someone(warehouse, "email is not null and revenue > 0")
    app = _preview_for(open_page, demo_home, sara)
    app.text_area(key=f"{P}email_subject").input(
        "{{ user.first_name }}: {{ user.revenue | currency('IRT') }}"
    )
    app.text_area(key=f"{P}email_html").input('<p onclick="x()">{{ user.name }}</p>').run()
    assert_ok(app)

    (header, text_part) = _html(app)
    assert f"To {sara['email']}" in header
    assert f"{sara['first_name']}: {format_currency(sara['revenue'], 'IRT')}" in header
    assert sara["first_name"] in text_part  # the example text part, rendered for them
    (frame,) = app.get("iframe")
    assert 'sandbox=""' in frame.proto.srcdoc and "<p onclick" not in frame.proto.srcdoc
    assert f"&lt;p onclick=&quot;x()&quot;&gt;{sara['name']}&lt;/p&gt;" in frame.proto.srcdoc
    assert any(sara["email"] in c.value and "rendered at" in c.value for c in app.caption)
    assert not app.warning and not app.error


def test_a_missing_variable_is_shown_under_its_field_with_its_line(
    open_page: Any, demo_home: SafarHome, warehouse: duckdb.DuckDBPyConnection
) -> None:
    app = _preview_for(open_page, demo_home, _someone(warehouse, "email is not null"))
    app.text_area(key=f"{P}email_html").input("<p>سلام</p>\n\n<p>{{ user.favourite_colour }}</p>")
    app.text_area(key=f"{P}email_subject").input("Hi {% if user.name %}").run()
    assert_ok(app)

    assert _under(app, f"{P}email_html") == [
        "**HTML body, line 3** — 'user' has no attribute 'favourite_colour'"
    ]
    (subject_problem,) = _under(app, f"{P}email_subject")
    assert subject_problem.startswith("**Subject, line 1** — Unexpected end of template")
    assert _under(app, f"{P}email_text") == []
    assert any("Not rendered: 2 problems" in e.value for e in app.error)
    assert not app.get("iframe") and not _html(app)

    app.text_area(key=f"{P}email_subject").input("Hi").run()
    app.text_area(key=f"{P}email_html").input("<p>{{ user.favourite_colour | default('-') }}</p>")
    app.run()
    assert not app.error and len(app.get("iframe")) == 1


def test_the_event_is_json_and_becomes_the_event_variable(
    open_page: Any, demo_home: SafarHome, warehouse: duckdb.DuckDBPyConnection
) -> None:
    person = _someone(warehouse, "email is not null and phone is not null")
    app = _preview_for(open_page, demo_home, person)
    app.selectbox(key=f"{P}channel").select("sms").run()
    app.text_area(key=f"{P}sms_text").input(
        "{{ user.first_name }}: {{ event.name }} {{ event.properties.total | currency('IRT') }}"
    ).run()
    assert _under(app, f"{P}sms_text") == [
        "**Text, line 1** — 'event' is undefined: give a triggering event, or guard the use "
        "with `{% if event is defined %}`"
    ]

    app.text_area(key=f"{P}event").input('{"name": "Paid",\n "properties": {"total": }}').run()
    assert_ok(app)
    assert _under(app, f"{P}event") == [
        "The event is not JSON: Expecting value at line 2, column 26: "
        '\' "properties": {"total": }}\''
    ]
    assert any("the triggering event is not valid" in e.value for e in app.error)
    assert not _html(app)

    app.text_area(key=f"{P}event").input('{"properties": {}, "when": 1}').run()
    assert _under(app, f"{P}event") == [
        'The event has no "name"; it may have only "name", "properties", "timestamp", not "when"'
    ]

    app.text_area(key=f"{P}event").input('{"name": "Paid", "properties": {"total": 1250000}}')
    app.run()
    assert not app.error
    (bubble,) = _html(app)
    assert person["phone"] in bubble
    assert f"{person['first_name']}: Paid {format_currency(1250000, 'IRT')}" in bubble


def test_switching_channels_keeps_each_channels_fields(
    open_page: Any, demo_home: SafarHome, warehouse: duckdb.DuckDBPyConnection
) -> None:
    farhad = _someone(warehouse, "email is not null and phone is null")
    app = _preview_for(open_page, demo_home, farhad)
    app.text_area(key=f"{P}email_subject").input("Edited {{ user.first_name }}").run()
    assert not app.warning

    app.selectbox(key=f"{P}channel").select("sms").run()
    assert_ok(app)
    (warning,) = app.warning
    assert "has no phone number" in warning.value and farhad["email"] in warning.value
    (bubble,) = _html(app)  # rendered all the same
    assert farhad["first_name"] in bubble and 'dir="auto"' in bubble

    app.selectbox(key=f"{P}channel").select("push").run()
    app.selectbox(key=f"{P}push_layout").select("banner").run()
    assert_ok(app)
    assert any(
        "A send would fail:** a banner push needs an image URL" in w.value for w in app.warning
    )
    app.text_area(key=f"{P}push_image").input("https://cdn.shop.example/{{ user.user_id }}.png")
    app.run()
    (card,) = _html(app)
    assert f'src="https://cdn.shop.example/{farhad["user_id"]}.png"' in card
    assert "Banner layout" in card and farhad["first_name"] in card

    app.selectbox(key=f"{P}channel").select("webhook").run()
    assert_ok(app)
    codes = [c.value for c in app.code]
    assert codes[0] == "POST https://api.shop.example/hooks/safar"
    assert f'"user_id": "{farhad["user_id"]}"' in codes[1]  # the body, pretty-printed
    assert [j.value for j in app.json] == ['{"X-Source": "safar"}']

    app.selectbox(key=f"{P}channel").select("in_app").run()
    (card,) = _html(app)
    assert farhad["first_name"] in card and not app.warning

    app.selectbox(key=f"{P}channel").select("email").run()
    assert app.text_area(key=f"{P}email_subject").value == "Edited {{ user.first_name }}"
    assert f"Edited {farhad['first_name']}" in _html(app)[0]


def test_a_person_id_typed_in_full_finds_an_anonymous_person(
    open_page: Any, demo_home: SafarHome, warehouse: duckdb.DuckDBPyConnection
) -> None:
    (anonymous,) = warehouse.execute(
        "select person_id from dim_users where not is_known order by person_id limit 1"
    ).fetchone()
    app = open_page(demo_home.root, "message_preview.py")
    app.selectbox(key=f"{P}channel").select("in_app").run()
    app.text_input(key=f"{P}search").input(anonymous).run()
    assert_ok(app)

    assert app.selectbox(key=f"{P}person").value == anonymous
    app.text_area(key=f"{P}in_app_title").input("{{ user.person_id }}").run()
    (card,) = _html(app)
    assert anonymous in card and not app.warning


def test_a_search_that_finds_nobody_says_so(open_page: Any, demo_home: SafarHome) -> None:
    app = open_page(demo_home.root, "message_preview.py")
    app.text_input(key=f"{P}search").input("nobody-is-called-this").run()
    assert_ok(app)
    assert any("Nobody matches the search" in i.value for i in app.info)
    assert not _html(app)


def test_without_a_warehouse_the_page_says_how_to_build_one(open_page: Any, tmp_path: Path) -> None:
    app = open_page(tmp_path / "empty_home", "message_preview.py")

    (info,) = app.info
    assert "not built yet" in info.value and "safar build" in info.value
    assert not app.text_area and not app.get("html")
    assert not (tmp_path / "empty_home" / "lake").exists()


def test_doctests_pass() -> None:
    assert doctest.testmod(previews).failed == 0
