"""Identity rules of docs/warehouse.md end to end, on a hand-written story.

alice browses anonymously, signs in, then installs the iOS app and signs in there too; bob's
ids are merged by an alias chain (bob_old -> bob_mid -> bob); carol and dave share one
browser (identified as carol first); a visitor never signs in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from warehouse_helpers import event, land, query

from safar.build import build
from safar.config import SafarHome

T0 = datetime(2026, 1, 5, 10, 0)
MIN = timedelta(minutes=1)
WEB = {"context_page_url": "https://shop.example/"}
IOS = {"context_device_type": "ios", "context_os_name": "iOS", "context_device_id": "dev-alice"}


def story() -> list[dict]:
    return [
        # alice, anonymous on the web, then identified.
        event("page", at=T0, event="Home", anonymous_id="anon-a1", **WEB),
        event("page", at=T0 + 5 * MIN, event="Product", anonymous_id="anon-a1", **WEB),
        event(
            "identify",
            at=T0 + 10 * MIN,
            anonymous_id="anon-a1",
            user_id="alice",
            traits={"email": "alice@example.com", "email_opt_in": True, "rfm_class": "new"},
            **WEB,
        ),
        event(
            "track",
            at=T0 + 11 * MIN,
            event="Product Viewed",
            user_id="alice",
            anonymous_id="anon-a1",
            **WEB,
        ),
        # alice's second device: the iOS app, identified as alice too.
        event(
            "track", at=T0 + 60 * MIN, event="Application Installed", anonymous_id="anon-a2", **IOS
        ),
        event(
            "identify",
            at=T0 + 61 * MIN,
            anonymous_id="anon-a2",
            user_id="alice",
            traits={"phone": "+989121234567"},
            context_device_token="tok-1",
            **IOS,
        ),
        # bob: a browser identified as bob_old, then bob_old -> bob_mid -> bob.
        event("page", at=T0, event="Home", anonymous_id="anon-b1", **WEB),
        event("identify", at=T0 + MIN, anonymous_id="anon-b1", user_id="bob_old", **WEB),
        event("alias", at=T0 + 2 * MIN, user_id="bob_mid", previous_id="bob_old"),
        event("alias", at=T0 + 3 * MIN, user_id="bob", previous_id="bob_mid"),
        event("track", at=T0 + 4 * MIN, event="Signed Up", user_id="bob"),
        # a shared browser: carol signs in first, dave later.
        event("page", at=T0, event="Home", anonymous_id="anon-s1", **WEB),
        event("identify", at=T0 + MIN, anonymous_id="anon-s1", user_id="carol", **WEB),
        event("identify", at=T0 + 90 * MIN, anonymous_id="anon-s1", user_id="dave", **WEB),
        event(
            "page", at=T0 + 91 * MIN, event="Cart", anonymous_id="anon-s1", user_id="dave", **WEB
        ),
        event("page", at=T0 + 120 * MIN, event="Home", anonymous_id="anon-s1", **WEB),
        # somebody who never signs in.
        event("page", at=T0, event="Home", anonymous_id="anon-x", **WEB),
    ]


@pytest.fixture(scope="module")
def home(make_home) -> SafarHome:
    home = make_home("identity")
    land(home, story())
    build(home)
    return home


def test_every_distinct_id_resolves_to_its_person(home):
    rows = dict(query(home, "select distinct_id, person_id from dim_person_distinct_ids"))
    assert rows == {
        "anon-a1": "alice",
        "anon-a2": "alice",
        "alice": "alice",
        "anon-b1": "bob",
        "bob_old": "bob",
        "bob_mid": "bob",
        "bob": "bob",
        "anon-s1": "carol",
        "carol": "carol",
        "dave": "dave",
        "anon-x": "anon-x",
    }


def test_identified_ids_are_the_user_ids(home):
    identified = {
        r[0]
        for r in query(
            home, "select distinct_id from dim_person_distinct_ids where is_identified_id"
        )
    }
    assert identified == {"alice", "bob_old", "bob_mid", "bob", "carol", "dave"}


def test_events_before_identify_belong_to_the_person_retroactively(home):
    rows = query(
        home,
        "select anonymous_id, user_id, event_name, person_id from fct_events "
        "where anonymous_id in ('anon-a1', 'anon-b1', 'anon-s1') and user_id is null",
    )
    by_anonymous = {(a, e): p for a, _, e, p in rows}
    assert by_anonymous[("anon-a1", "Home")] == "alice"
    assert by_anonymous[("anon-a1", "Product")] == "alice"
    assert by_anonymous[("anon-b1", "Home")] == "bob"
    # the shared browser's anonymous events stay with the first user it was identified as
    assert {p for (a, _), p in by_anonymous.items() if a == "anon-s1"} == {"carol"}
    dave = query(home, "select person_id from fct_events where event_name = 'Cart'")
    assert dave == [("dave",)]


def test_known_people_have_a_user_id(home):
    rows = {r[0]: r[1:] for r in query(home, "select person_id, is_known, user_id from dim_users")}
    assert rows == {
        "alice": (True, "alice"),
        "bob": (True, "bob"),
        "carol": (True, "carol"),
        "dave": (True, "dave"),
        "anon-x": (False, None),
    }


def test_profile_merges_traits_and_devices_across_ids(home):
    email, phone, device_count, signed_up = query(
        home,
        "select email, phone, device_count, signed_up_at from dim_users where person_id = 'alice'",
    )[0]
    assert (email, phone, device_count) == ("alice@example.com", "+989121234567", 2)
    assert signed_up == T0 + 10 * MIN
    reach = dict(
        query(home, "select channel, reason from dim_user_reachability where person_id = 'alice'")
    )
    assert reach == {
        "email": "reachable",
        "sms": "reachable",
        "push": "reachable",
        "web_push": "no_web_push_subscription",
    }
