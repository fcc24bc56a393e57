"""The people messages are rendered for and sent to, read from the warehouse.

A template's ``user`` is the person's row of ``dim_users`` (custom traits merged in, the
modelled columns winning), and a delivery's address comes from the same row or from
``dim_devices``: preview and send read people here, so a preview shows what a send will send.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

# dim_users columns that are bookkeeping, not traits a message would print.
_NOT_TRAITS = frozenset({"custom_attributes", "is_known"})
_PUSH_PREFIX = {"ios": "apns", "android": "fcm"}


@dataclass(frozen=True)
class Person:
    """One person as a message sees them.

    Attributes:
        person_id: the warehouse's person id.
        user_id: the known user id, or None for an anonymous person.
        traits: the template's ``user`` variables (``person_id`` included).
        addresses: where each channel reaches them: ``email``, ``sms`` (the phone),
            ``push`` (``apns:``/``fcm:`` and the newest active token), ``in_app`` (the
            person id); a channel without an address is absent.
        time_zone: their IANA zone, if the ``timezone`` trait names one.
    """

    person_id: str
    user_id: str | None
    traits: Mapping[str, Any]
    addresses: Mapping[str, str] = field(default_factory=dict)
    time_zone: str | None = None

    @property
    def label(self) -> str:
        """How a page lists them: name, then email or phone, then the id."""
        name = self.traits.get("name")
        contact = self.traits.get("email") or self.traits.get("phone")
        who = " · ".join(str(part) for part in (name, contact) if part)
        return f"{who} ({self.user_id or self.person_id})" if who else self.person_id


def _aware(value: Any) -> Any:
    # The lake's naive timestamps are UTC; templates format them in a zone, so say which.
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and not value.tzinfo else value


def _traits(row: Mapping[str, Any]) -> dict[str, Any]:
    custom = row.get("custom_attributes")
    try:
        extra = json.loads(custom) if isinstance(custom, str) else dict(custom or {})
    except json.JSONDecodeError:
        extra = {}
    traits = {key: value for key, value in extra.items() if isinstance(key, str)}
    traits.update({k: _aware(v) for k, v in row.items() if k not in _NOT_TRAITS})
    return traits


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description or ()]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def load_people(con: duckdb.DuckDBPyConnection, person_ids: Iterable[str]) -> dict[str, Person]:
    """The people with these ids (ids the warehouse does not know are left out).

    Args:
        con: a warehouse connection (:func:`safar.warehouse.connect`).
        person_ids: the people to load.

    Returns:
        Each found person by id.
    """
    ids = sorted(set(person_ids))
    if not ids:
        return {}
    users = _rows(con.execute("select * from dim_users where person_id in ?", [ids]))
    tokens = dict(
        con.execute(
            """
            select person_id, arg_max(platform || ':' || push_token, last_seen_at)
            from dim_devices
            where person_id in ? and push_token_state = 'active'
                and push_token is not null and platform in ('ios', 'android')
            group by person_id
            """,
            [ids],
        ).fetchall()
    )
    people = {}
    for row in users:
        person_id = row["person_id"]
        addresses = {"in_app": person_id}
        if row.get("email"):
            addresses["email"] = row["email"]
        if row.get("phone"):
            addresses["sms"] = row["phone"]
        if person_id in tokens:
            platform, _, token = tokens[person_id].partition(":")
            addresses["push"] = f"{_PUSH_PREFIX[platform]}:{token}"
        people[person_id] = Person(
            person_id=person_id,
            user_id=row.get("user_id"),
            traits=_traits(row),
            addresses=addresses,
            time_zone=row.get("timezone") or None,
        )
    return people


def find_people(con: duckdb.DuckDBPyConnection, text: str, limit: int = 20) -> list[Person]:
    """Known people whose user id, email, phone or name contains ``text`` (any case).

    An empty ``text`` lists the most recently seen known people, for a first pick.
    """
    needle = f"%{text.strip().lower()}%"
    ids = [
        person_id
        for (person_id,) in con.execute(
            """
            select person_id
            from dim_users
            where is_known and (
                ? = '%%'
                or lower(user_id) like ? or lower(email) like ?
                or lower(phone) like ? or lower(name) like ?
            )
            order by last_seen_at desc nulls last, person_id
            limit ?
            """,
            [needle, needle, needle, needle, needle, limit],
        ).fetchall()
    ]
    found = load_people(con, ids)
    return [found[person_id] for person_id in ids if person_id in found]


def reachable_people(
    con: duckdb.DuckDBPyConnection, channel: str, limit: int, *, exclude: Sequence[str] = ()
) -> list[str]:
    """Up to ``limit`` people ``dim_user_reachability`` says ``channel`` reaches, most active
    first; ``in_app`` reaches every known person."""
    source = (
        "select person_id from dim_users where is_known"
        if channel == "in_app"
        else "select person_id from dim_user_reachability where channel = ? "
        "and reason = 'reachable'"
    )
    params: list[Any] = [] if channel == "in_app" else [channel]
    return [
        person_id
        for (person_id,) in con.execute(
            f"""
            select reachable.person_id
            from ({source}) as reachable
            join dim_users using (person_id)
            where reachable.person_id not in (select unnest(?::varchar[]))
            order by dim_users.event_count desc, reachable.person_id
            limit ?
            """,
            [*params, list(exclude), limit],
        ).fetchall()
    ]
