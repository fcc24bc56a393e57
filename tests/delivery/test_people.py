"""Loading people for templates and sends from the warehouse (the demo warehouse)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import duckdb
import pytest

from channels.templates import preview
from safar.config import SafarHome
from safar.delivery.people import find_people, load_people, reachable_people
from safar.warehouse import connect


@pytest.fixture(scope="module")
def con(demo_home: SafarHome) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(demo_home, read_only=True)
    yield connection
    connection.close()


def test_traits_and_addresses_come_from_the_marts(con: duckdb.DuckDBPyConnection) -> None:
    person_id, email, phone = con.execute(
        "select person_id, email, phone from dim_users "
        "where is_known and email is not null and phone is not null limit 1"
    ).fetchone()
    person = load_people(con, [person_id, "nobody-has-this-id"])[person_id]

    assert set(load_people(con, [person_id, "nobody-has-this-id"])) == {person_id}
    assert person.addresses["email"] == email and person.addresses["sms"] == phone
    assert person.addresses["in_app"] == person_id
    assert person.traits["person_id"] == person_id and "custom_attributes" not in person.traits
    seen = person.traits["last_seen_at"]
    assert isinstance(seen, datetime) and seen.tzinfo is not None  # formats in any zone
    assert email in person.label


def test_push_address_is_the_newest_active_token_with_its_platform(
    con: duckdb.DuckDBPyConnection,
) -> None:
    rows = con.execute(
        "select person_id, platform, push_token from dim_devices "
        "where push_token_state = 'active' and platform in ('ios', 'android') "
        "qualify row_number() over (partition by person_id order by last_seen_at desc) = 1 "
        "limit 20"
    ).fetchall()
    assert rows, "the demo warehouse has app devices with push tokens"
    people = load_people(con, [row[0] for row in rows])
    for person_id, platform, token in rows:
        prefix = {"ios": "apns", "android": "fcm"}[platform]
        assert people[person_id].addresses["push"] == f"{prefix}:{token}"


def test_reachable_people_are_reachable_and_exclusions_hold(
    con: duckdb.DuckDBPyConnection,
) -> None:
    first = reachable_people(con, "email", 5)
    more = reachable_people(con, "email", 5, exclude=first)
    assert len(first) == 5 and len(more) == 5 and not set(first) & set(more)
    reasons = dict(
        con.execute(
            "select person_id, reason from dim_user_reachability "
            "where channel = 'email' and person_id in ?",
            [first + more],
        ).fetchall()
    )
    assert set(reasons.values()) == {"reachable"}
    assert all(p.addresses.get("email") for p in load_people(con, first).values())


def test_find_people_matches_any_contact_field(con: duckdb.DuckDBPyConnection) -> None:
    person_id, email = con.execute(
        "select person_id, email from dim_users where is_known and email is not null limit 1"
    ).fetchone()
    assert person_id in [p.person_id for p in find_people(con, email.upper())]
    assert len(find_people(con, "", limit=7)) == 7
    assert find_people(con, "no such person anywhere") == []


def test_a_preview_renders_with_a_loaded_person(con: duckdb.DuckDBPyConnection) -> None:
    person = find_people(con, "", limit=1)[0]
    out = preview(
        {"text": "{{ user.person_id }} {{ user.last_seen_at | date('%Y') }}"}, person.traits
    )
    assert out["text"].startswith(person.person_id + " 20")
