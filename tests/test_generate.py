"""The demo data generator: what it writes must be valid, deterministic and realistic enough
for every warehouse model to have real work (docs/warehouse.md)."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from safar.config import SafarHome
from safar.contract import RAW_SCHEMA
from safar.generate import GenerateStats, events_per_user, generate, users_for_events

END = date(2025, 12, 31)  # the window then holds Black Friday and Yalda promotions
USERS, DAYS, SEED = 1500, 45, 7

# docs/warehouse.md: the traits and track events the demo data uses.
FULL_TRAITS = set(
    "email phone first_name last_name name city country carrier language timezone rfm_class"
    " order_count email_opt_in sms_opt_in push_opt_in created_at gender birth_year plan".split()
)
TRACK_EVENTS = {
    *("Signed Up", "Product Viewed", "Product Added", "Cart Viewed", "Checkout Started"),
    *("Order Completed", "Products Searched", "Application Installed", "Application Opened"),
    *("Application Uninstalled", "Push Notification Received", "Push Notification Tapped"),
    *("Email Unsubscribed", "SMS Unsubscribed"),
}
CARRIER_PREFIXES = {
    "Hamrah-e Aval": {*range(910, 920), *range(990, 995)},
    "Irancell": {901, 902, 903, 904, 905, 930, 933, 935, 936, 937, 938, 939},
    "Rightel": {920, 921, 922},
}


def _glob(home: SafarHome) -> str:
    return f"{home.raw_events}/date=*/part-*.parquet"


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> tuple[SafarHome, GenerateStats]:
    home = SafarHome(tmp_path_factory.mktemp("generated"))
    stats = generate(home, users=USERS, days=DAYS, seed=SEED, end=END, progress=False)
    return home, stats


@pytest.fixture(scope="module")
def con(lake) -> duckdb.DuckDBPyConnection:
    home, _ = lake
    con = duckdb.connect()
    con.sql("set TimeZone = 'UTC'")
    con.sql(f"create view ev as select *, filename as file from read_parquet('{_glob(home)}')")
    return con


def one(con: duckdb.DuckDBPyConnection, sql: str):
    return con.sql(sql).fetchone()[0]


def count(con: duckdb.DuckDBPyConnection, where: str) -> int:
    """Rows of the generated lake matching ``where``."""
    return one(con, f"select count(*) from ev where {where}")


def _content(home: SafarHome) -> list[tuple]:
    return duckdb.sql(
        f"select * from read_parquet('{_glob(home)}') order by message_id, received_at"
    ).fetchall()


# ---- the lake contract -------------------------------------------------------------------


def test_every_row_is_accepted_and_counted(lake, con):
    home, stats = lake
    assert stats.rejected == 0
    assert not list(home.rejected.glob("*"))
    assert stats.users == USERS
    assert stats.events == one(con, "select count(*) from ev") > 0
    assert stats.files == len(list(home.raw_events.glob("date=*/part-*.parquet")))


def test_files_conform_to_the_raw_schema(lake):
    home, _ = lake
    for path in home.raw_events.glob("date=*/part-*.parquet"):
        schema = pq.read_schema(path)
        assert schema.names == RAW_SCHEMA.names
        assert [f.type for f in schema] == [f.type for f in RAW_SCHEMA]


def test_partitions_hold_rows_received_that_day(con):
    assert count(con, "file not like '%/date=' || received_at::date || '/%'") == 0


def test_json_columns_are_objects_and_context_columns_match_the_json(con):
    assert count(con, "not json_valid(context)") == 0
    for column in ("properties", "traits"):
        bad = f"{column} is not null and json_type({column}) <> 'OBJECT'"
        assert count(con, bad) == 0
    pairs = {
        "context_device_id": "$.device.id",
        "context_device_type": "$.device.type",
        "context_device_model": "$.device.model",
        "context_device_token": "$.device.token",
        "context_os_name": "$.os.name",
        "context_app_version": "$.app.version",
        "context_timezone": "$.timezone",
        "context_locale": "$.locale",
        "context_ip": "$.ip",
        "context_page_url": "$.page.url",
    }
    for column, path in pairs.items():
        mismatch = f"{column} is distinct from json_extract_string(context, '{path}')"
        assert count(con, mismatch) == 0, column


def test_message_shapes(con):
    assert count(con, "type = 'track' and coalesce(event, '') = ''") == 0
    names = {r[0] for r in con.sql("select distinct event from ev where type = 'track'").fetchall()}
    assert names == TRACK_EVENTS
    # Pages on the web, screens in the apps; the server sends no page views.
    assert count(con, "type = 'page' and source_id <> 'src_web'") == 0
    assert count(con, "type = 'screen' and source_id = 'src_web'") == 0
    assert (
        count(con, "type = 'page' and context_page_url not like 'https://shop.safar.example/%'")
        == 0
    )
    pages = {r[0] for r in con.sql("select distinct event from ev where type = 'page'").fetchall()}
    assert {"Home", "Product", "Cart", "Checkout"} <= pages
    # Server messages carry a user id and no device; client messages an anonymous id.
    assert (
        count(
            con,
            "source_id = 'src_server' and (user_id is null or anonymous_id is not null"
            " or context_device_id is not null)",
        )
        == 0
    )
    assert count(con, "source_id <> 'src_server' and anonymous_id is null") == 0
    assert count(con, "source_id in ('src_ios', 'src_android') and context_device_id is null") == 0
    # Apps report ios/android; browsers their form factor.
    types = con.sql(
        "select source_id, list(distinct context_device_type order by context_device_type) "
        "from ev where source_id <> 'src_server' group by 1"
    ).fetchall()
    assert dict(types) == {
        "src_web": ["desktop", "mobile", "tablet"],
        "src_ios": ["ios"],
        "src_android": ["android"],
    }


# ---- determinism ---------------------------------------------------------------------------


def test_same_seed_same_rows_whatever_the_chunking(tmp_path):
    homes = [SafarHome(tmp_path / name) for name in ("a", "b", "c", "d")]
    args = {"users": 300, "days": 12, "end": END, "progress": False}
    generate(homes[0], seed=3, **args)
    generate(homes[1], seed=3, **args)
    generate(homes[2], seed=3, chunk_days=1, **args)
    generate(homes[3], seed=4, **args)
    first = _content(homes[0])
    assert first == _content(homes[1])
    assert first == _content(homes[2])
    other = _content(homes[3])
    assert {r[0] for r in first}.isdisjoint({r[0] for r in other})
    assert len(first) != len(other)


def test_users_for_events_inverts_the_volume(lake):
    _, stats = lake
    assert users_for_events(10_000_000, 90) == round(10_000_000 / events_per_user(90))
    assert events_per_user(30) < events_per_user(90) < events_per_user(365)
    assert 60 <= events_per_user(90) <= 120
    # The calibration holds for other sizes too (small samples are noisy).
    assert 0.7 < stats.events / USERS / events_per_user(DAYS) < 1.3


# ---- identity ------------------------------------------------------------------------------


def test_identify_carries_the_documented_traits(con):
    rows = con.sql("select traits from ev where type = 'identify'").fetchall()
    assert rows and all(r[0] is not None for r in rows)
    keys = [set(json.loads(r[0])) for r in rows]
    assert all(k <= FULL_TRAITS for k in keys)
    full = [k for k in keys if "first_name" in k]
    assert full and all(k == FULL_TRAITS for k in full)
    # Sign-ups identify an anonymous browser or install, with its user id, then Signed Up.
    assert (
        count(
            con,
            "type = 'identify' and source_id <> 'src_server'"
            " and (user_id is null or anonymous_id is null)",
        )
        == 0
    )
    assert count(con, "event = 'Signed Up'") > 50
    orphan = """
        select count(*) from ev s where s.event = 'Signed Up' and not exists (
          select 1 from ev i
          where i.type = 'identify' and i.user_id = s.user_id and i.anonymous_id = s.anonymous_id
            and i.timestamp between s.timestamp - interval 10 minute and s.timestamp
        )
    """
    assert one(con, orphan) == 0


def test_anonymous_visitors_and_multi_device_people(con):
    never_known = one(
        con,
        """
        select count(*) from (
          select anonymous_id from ev where anonymous_id is not null
          group by 1 having bool_and(user_id is null)
        ) a
        where anonymous_id not in (select previous_id from ev where previous_id is not null)
        """,
    )
    visitors = one(con, "select count(distinct coalesce(user_id, anonymous_id)) from ev")
    assert 0.25 < never_known / visitors < 0.7
    multi = one(
        con,
        """
        select count(*) from (
          select user_id from ev
          where user_id is not null and source_id <> 'src_server'
          group by 1 having count(distinct coalesce(context_device_id, anonymous_id)) >= 2
        )
        """,
    )
    assert multi > 20
    # Somebody browses on the web and in an app.
    both = "count(distinct case when source_id = 'src_web' then 1 else 2 end) = 2"
    assert (
        one(
            con,
            "select count(*) from (select user_id from ev where user_id is not null"
            f" and source_id <> 'src_server' group by 1 having {both})",
        )
        > 0
    )


def test_aliases_link_anonymous_and_legacy_ids(con):
    aliases = con.sql(
        "select previous_id, user_id, source_id from ev where type = 'alias'"
    ).fetchall()
    assert aliases and all(p and u and p != u for p, u, _ in aliases)
    sources = {s for _, _, s in aliases}
    assert {"src_server"} < sources  # legacy-id migration and client sign-up aliases
    # Legacy ids sent events before they were aliased.
    assert (
        count(
            con,
            "user_id in (select previous_id from ev"
            " where type = 'alias' and source_id = 'src_server')",
        )
        > 0
    )


# ---- commerce ------------------------------------------------------------------------------


def test_funnel_narrows_at_every_step(con):
    steps = [
        "Product Viewed",
        "Product Added",
        "Cart Viewed",
        "Checkout Started",
        "Order Completed",
    ]
    counts = [
        one(con, f"select count(distinct message_id) from ev where event = '{s}'") for s in steps
    ]
    assert all(a > b > 0 for a, b in zip(counts, counts[1:], strict=False)), counts
    assert count(con, "event = 'Products Searched'") > 0


def test_orders_are_in_rials_with_products(con):
    rows = con.sql(
        "select distinct properties, user_id from ev where event = 'Order Completed'"
    ).fetchall()
    revenues = []
    for text, user_id in rows:
        assert user_id  # no guest checkout
        order = json.loads(text)
        assert order["currency"] == "IRR" and order["order_id"].startswith("SF-")
        assert order["products"]
        for item in order["products"]:
            assert {"product_id", "name", "category", "price", "quantity"} <= set(item)
            assert item["category"] in {"mobile", "fashion", "home", "beauty", "books", "grocery"}
        subtotal = sum(i["price"] * i["quantity"] for i in order["products"])
        assert order["revenue"] == subtotal - order["discount"]
        revenues.append(order["revenue"])
    revenues.sort()
    median = revenues[len(revenues) // 2]
    assert 500_000 <= median <= 50_000_000
    # Some people buy again.
    repeat = """
        select count(*) from (
          select user_id from ev where event = 'Order Completed'
          group by 1 having count(distinct json_extract_string(properties, '$.order_id')) > 1
        )
    """
    assert one(con, repeat) > 0


# ---- people's traits ---------------------------------------------------------------------


def test_names_phones_and_carriers(con):
    traits = [
        json.loads(r[0])
        for r in con.sql(
            "select traits from ev where type = 'identify' and traits like '%first_name%'"
        ).fetchall()
    ]
    persian = re.compile("[\u0600-\u06ff]")
    assert any(persian.search(t["first_name"]) for t in traits)
    assert any(not persian.search(t["first_name"]) for t in traits)
    assert any(t["email"] is None for t in traits)
    assert any(t["phone"] is None for t in traits) or any(
        not t["phone"].startswith("+98") for t in traits if t["phone"]
    )
    iranian = [t for t in traits if t["phone"] and t["phone"].startswith("+98")]
    assert iranian
    for t in iranian:
        assert re.fullmatch(r"\+989\d{9}", t["phone"]), t["phone"]
        assert int(t["phone"][3:6]) in CARRIER_PREFIXES[t["carrier"]], t
    cities = {t["city"] for t in traits}
    assert {"Tehran", "Mashhad", "Isfahan"} <= cities


def test_traits_change_over_time(con):
    # Opt-outs: the track, then the trait turns false for a person who had it true.
    for event, trait in (
        ("Email Unsubscribed", "email_opt_in"),
        ("SMS Unsubscribed", "sms_opt_in"),
    ):
        assert count(con, f"event = '{event}'") > 0
        flipped = f"""
            select count(*) from (
              select user_id,
                     json_extract(traits, '$.{trait}')::boolean as value,
                     lag(value) over (partition by user_id order by timestamp) as before
              from ev where type = 'identify' and json_exists(traits, '$.{trait}')
            ) where before and not value
        """
        assert one(con, flipped) > 0, trait
    for trait in ("city", "rfm_class", "order_count"):
        changed = f"""
            select count(*) from (
              select user_id from ev
              where type = 'identify' and json_exists(traits, '$.{trait}')
              group by 1 having count(distinct json_extract_string(traits, '$.{trait}')) > 1
            )
        """
        assert one(con, changed) > 0, trait


# ---- devices and push -----------------------------------------------------------------------


def test_uninstalled_devices_stay_silent_until_reinstalled(con):
    uninstalls = count(con, "event = 'Application Uninstalled'")
    assert uninstalls > 0
    after = con.sql(
        """
        with gone as (
          select distinct context_device_id as device, anonymous_id as install, timestamp as gone_at
          from ev where event = 'Application Uninstalled'
        )
        select e.anonymous_id = g.install as same_install, e.event, e.timestamp, g.device
        from gone g join ev e on e.context_device_id = g.device and e.timestamp > g.gone_at
        order by g.device, e.timestamp
        """
    ).fetchall()
    assert not any(same for same, *_ in after)  # nothing more from the uninstalled install
    first_after = {}
    for _, event, _, device in after:
        first_after.setdefault(device, event)
    assert all(e == "Application Installed" for e in first_after.values())
    share = one(
        con,
        """
        select count(distinct context_device_id) filter (where event = 'Application Uninstalled')
               / count(distinct context_device_id)
        from ev where context_device_id is not null
        """,
    )
    assert 0.05 < share < 0.4


def test_push_tokens_and_campaigns(con):
    # APNs tokens are 64 hex digits; FCM registration tokens look like "<22>:APA91b<134>".
    shapes = {
        "src_ios": "[0-9a-f]{64}",
        "src_android": "[A-Za-z0-9_-]{22}:APA91b[A-Za-z0-9_-]{134}",
        "src_web": "[A-Za-z0-9_-]{22}:APA91b[A-Za-z0-9_-]{134}",
    }
    for source, shape in shapes.items():
        wrong = f"not regexp_full_match(context_device_token, '{shape}')"
        assert count(con, f"source_id = '{source}' and {wrong}") == 0, source
        # Some devices granted permission (or subscribed to web push), some did not.
        assert count(con, f"source_id = '{source}' and context_device_token is not null") > 0
        assert count(con, f"source_id = '{source}' and context_device_token is null") > 0
    assert count(con, "event = 'Push Notification Tapped'") > 0
    assert count(con, "event = 'Push Notification Received' and context_device_token is null") == 0


# ---- clocks --------------------------------------------------------------------------------


def test_timestamps_follow_segments_correction(con):
    bad = "timestamp <> received_at - (sent_at - original_timestamp)"
    assert count(con, f"sent_at is not null and {bad}") == 0
    assert count(con, "sent_at is null or original_timestamp is null") == 0
    assert count(con, "received_at < timestamp") == 0
    # Some device clocks are wrong: the original timestamp is off, the corrected one is not.
    skewed = "abs(epoch(original_timestamp) - epoch(timestamp)) > 60"
    assert count(con, skewed) > 0
    start = f"'{END.fromordinal(END.toordinal() - DAYS + 1)}'::timestamp"
    assert count(con, f"timestamp < {start}") == 0


def test_late_and_duplicate_deliveries(con):
    late = "received_at::date > timestamp::date and received_at - timestamp > interval 1 hour"
    assert count(con, late) > 0
    assert count(con, f"{late} and source_id in ('src_ios', 'src_android')") > 0
    dups = con.sql(
        """
        select message_id, count(*) as n, count(distinct file) as files,
               count(distinct (type, event, user_id, anonymous_id, timestamp, original_timestamp,
                               properties, traits, context)) as versions
        from ev group by 1 having count(*) > 1
        """
    ).fetchall()
    assert dups
    assert all(versions == 1 for *_, versions in dups)  # the same message, delivered again
    assert any(files > 1 for _, _, files, _ in dups)
    share = sum(n - 1 for _, n, _, _ in dups) / one(con, "select count(*) from ev")
    assert 0.001 < share < 0.01


def test_the_shop_grows(con):
    third = DAYS // 3
    signups = dict(
        con.sql(
            f"select (timestamp::date - '{END}'::date + {DAYS - 1}) // {third} as part, count(*)"
            " from ev where event = 'Signed Up' group by 1"
        ).fetchall()
    )
    assert signups[2] > signups[0]


def test_weekly_and_daily_rhythm(con):
    by_dow = dict(
        con.sql(
            "select dayname(timestamp + interval 210 minute), count(*) from ev "
            "where type in ('page', 'screen') group by 1"
        ).fetchall()
    )
    assert by_dow["Friday"] > by_dow["Monday"] and by_dow["Thursday"] > by_dow["Tuesday"]
    by_hour = dict(
        con.sql(
            "select hour(timestamp + interval 210 minute), count(*) from ev "
            "where type in ('page', 'screen') group by 1"
        ).fetchall()
    )
    assert by_hour[21] > 3 * by_hour[4]


def test_rejects_nonsense_sizes(tmp_path: Path):
    with pytest.raises(ValueError):
        generate(SafarHome(tmp_path), users=0, days=10, seed=1, progress=False)
