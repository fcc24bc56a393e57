"""The six demo segments in ``segments_sql/`` against rules written again, in polars.

Each segment is run through the sandbox on the demo warehouse (2,000 people, data to
2026-01-31) with the clock pinned, and compared with an independent computation: the raw
rows of ``fct_events`` read into polars (identify traits and order properties parsed in
Python), never the segment's SQL or the marts' derived columns. So a wrong segment query, a
wrong mart column it relies on, or a wrong pinning of the clock shows up as a difference.

The demo must also show something: every segment has members, and not everyone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import polars as pl
import pytest
import yaml
from warehouse_helpers import DEMO_END

from safar.config import DBT_PROJECT_DIR, PROJECT_ROOT, SafarHome
from safar.segments.compile import compile_segment
from safar.segments.definitions import SegmentDefinition, load_file_segments
from safar.segments.preview import preview
from safar.segments.sandbox import load_catalog, locked_connection, manifest_path, run
from safar.warehouse import connect

AS_OF = datetime.combine(DEMO_END, datetime.max.time()).replace(microsecond=0)  # 23:59:59
INACTIVE = frozenset(
    yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"][
        "inactive_event_names"
    ]
)
"""Events that do not mean a person did something (the platform's own, and lifecycle ones)."""


@dataclass(frozen=True)
class Raw:
    """The demo's events as plain rows, and what identify traits and orders say."""

    events: pl.DataFrame  # message_id, person_id, user_id, type, event_name, occurred_at, ...
    traits: pl.DataFrame  # person_id, attribute, value, occurred_at, received_at, message_id
    orders: pl.DataFrame  # person_id, order_id, revenue, occurred_at

    def trait(self, name: str) -> pl.DataFrame:
        """Each person's latest value of ``name`` (an explicit null counts as a value)."""
        return (
            self.traits.filter(pl.col("attribute") == name)
            .sort("occurred_at", "received_at", "message_id")
            .group_by("person_id")
            .agg(pl.col("value").last())
        )

    @property
    def people(self) -> set[str]:
        return set(self.events["person_id"])

    @property
    def active(self) -> pl.DataFrame:
        """Events a person performed: track, page and screen, minus the inactive names."""
        return self.events.filter(
            pl.col("type").is_in(["track", "page", "screen"])
            & ~pl.col("event_name").is_in(list(INACTIVE))
        )


@pytest.fixture(scope="module")
def raw(demo_home: SafarHome) -> Raw:
    con = connect(demo_home, read_only=True)
    try:
        events = con.sql(
            """select message_id, person_id, user_id, type, event_name, occurred_at,
                      received_at, device_id, platform
            from fct_events"""
        ).pl()
        identifies = con.sql(
            """select person_id, occurred_at, received_at, message_id, traits from fct_events
            where type = 'identify' and traits is not null"""
        ).fetchall()
        completed = con.sql(
            """select person_id, message_id, occurred_at, properties from fct_events
            where type = 'track' and event_name = 'Order Completed'"""
        ).fetchall()
    finally:
        con.close()
    traits = [
        (person, attribute, None if value is None else str(value), at, received, message)
        for person, at, received, message, text in identifies
        for attribute, value in json.loads(text).items()
    ]
    orders = []
    for person, message, at, text in completed:
        properties = json.loads(text) if text else {}
        order_id = properties.get("order_id")
        revenue = properties.get("revenue")
        orders.append(
            (
                person,
                message if order_id is None else str(order_id),
                None if revenue is None else float(revenue),
                at,
            )
        )
    return Raw(
        events=events,
        traits=pl.DataFrame(
            traits,
            schema=["person_id", "attribute", "value", "occurred_at", "received_at", "message_id"],
            orient="row",
        ),
        orders=pl.DataFrame(
            orders, schema=["person_id", "order_id", "revenue", "occurred_at"], orient="row"
        ),
    )


# --- the rules, written again --------------------------------------------------------------------


def irancell_users(raw: Raw, as_of: datetime) -> set[str]:
    """The latest carrier trait is Irancell."""
    carrier = raw.trait("carrier")
    return set(carrier.filter(pl.col("value") == "Irancell")["person_id"])


def _order_counts(raw: Raw) -> pl.DataFrame:
    """Completed orders per person: distinct order ids seen, or the order_count trait if more
    (the trait counts orders from before the events the lake holds)."""
    seen = raw.orders.group_by("person_id").agg(pl.col("order_id").n_unique().alias("seen"))
    trait = raw.trait("order_count").select(
        "person_id", pl.col("value").cast(pl.Int64, strict=False).alias("told")
    )
    return seen.join(trait, on="person_id", how="full", coalesce=True).select(
        "person_id",
        pl.max_horizontal(pl.col("seen").fill_null(0), pl.col("told").fill_null(0)).alias("orders"),
    )


def repeat_buyers(raw: Raw, as_of: datetime) -> set[str]:
    """At least two completed orders."""
    counts = _order_counts(raw)
    return set(counts.filter(pl.col("orders") >= 2)["person_id"])


def cart_abandoners(raw: Raw, as_of: datetime) -> set[str]:
    """Added to the cart in the 24 hours up to ``as_of``, and no order since the last add."""
    added = (
        raw.events.filter(
            (pl.col("event_name") == "Product Added")
            & pl.col("occurred_at").is_between(as_of - timedelta(hours=24), as_of)
        )
        .group_by("person_id")
        .agg(pl.col("occurred_at").max().alias("added_at"))
    )
    ordered = added.join(
        raw.orders.select("person_id", pl.col("occurred_at").alias("ordered_at")), on="person_id"
    ).filter(pl.col("ordered_at").is_between(pl.col("added_at"), as_of))
    return set(added["person_id"]) - set(ordered["person_id"])


def dormant_14d(raw: Raw, as_of: datetime) -> set[str]:
    """Known people whose last activity is more than 14 days before ``as_of``.

    Activity is the last thing they did (an active event); someone who never did anything
    is as recent as their last event of any kind (a sign-up on the server, say).
    """
    known = set(raw.events.filter(pl.col("user_id").is_not_null())["person_id"])
    until = pl.col("occurred_at") <= as_of
    active = raw.active.filter(until).group_by("person_id").agg(pl.col("occurred_at").max())
    anything = raw.events.filter(until).group_by("person_id").agg(pl.col("occurred_at").max())
    last = anything.join(active, on="person_id", how="left", suffix="_active").select(
        "person_id", pl.coalesce("occurred_at_active", "occurred_at").alias("last_seen")
    )
    dormant = last.filter(pl.col("last_seen") < as_of - timedelta(days=14))
    return known & set(dormant["person_id"])


def _android_devices(raw: Raw) -> pl.DataFrame:
    """Android devices, their owner (whoever used it last), last uninstall and last activity."""
    on_device = raw.events.filter(pl.col("device_id").is_not_null()).sort(
        "occurred_at", "message_id"
    )
    devices = on_device.group_by("device_id").agg(
        pl.col("person_id").last(), pl.col("platform").last()
    )
    uninstalled = (
        on_device.filter(pl.col("event_name") == "Application Uninstalled")
        .group_by("device_id")
        .agg(pl.col("occurred_at").max().alias("uninstalled_at"))
    )
    active = (
        raw.active.filter(pl.col("device_id").is_not_null())
        .group_by("device_id")
        .agg(pl.col("occurred_at").max().alias("active_at"))
    )
    return (
        devices.filter(pl.col("platform") == "android")
        .join(uninstalled, on="device_id", how="left")
        .join(active, on="device_id", how="left")
    )


def android_app_users(raw: Raw, as_of: datetime) -> set[str]:
    """Someone with an Android device whose app is installed: never uninstalled, or used
    again (reinstalled) after the last uninstall."""
    devices = _android_devices(raw).filter(
        pl.col("uninstalled_at").is_null() | (pl.col("active_at") > pl.col("uninstalled_at"))
    )
    return set(devices["person_id"])


def high_value_rfm(raw: Raw, as_of: datetime) -> set[str]:
    """RFM champions and loyal customers, and the top 5% of buyers by revenue."""
    rfm = raw.trait("rfm_class")
    classes = set(rfm.filter(pl.col("value").is_in(["champions", "loyal"]))["person_id"])
    buyers = (
        raw.orders.group_by("person_id")
        .agg(pl.col("revenue").sum())
        .filter(pl.col("revenue") > 0)
        .with_columns(
            # percent rank: (rank - 1) / (n - 1), ties sharing the lowest rank
            ((pl.col("revenue").rank("min") - 1) / (pl.len() - 1)).alias("revenue_rank")
        )
    )
    return classes | set(buyers.filter(pl.col("revenue_rank") >= 0.95)["person_id"])


RULES: list = [
    pytest.param("irancell-users", irancell_users, id="irancell-users"),
    pytest.param("repeat-buyers", repeat_buyers, id="repeat-buyers"),
    pytest.param("cart-abandoners-24h", cart_abandoners, id="cart-abandoners-24h"),
    pytest.param("dormant-14d", dormant_14d, id="dormant-14d"),
    pytest.param(
        "android-app-users",
        android_app_users,
        id="android-app-users",
    ),
    pytest.param("high-value-rfm", high_value_rfm, id="high-value-rfm"),
]
Rule = Callable[[Raw, datetime], set[str]]


# --- running the segments ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_segments() -> dict[str, SegmentDefinition]:
    return {d.slug: d for d in load_file_segments(PROJECT_ROOT / "segments_sql")}


@pytest.fixture(scope="module")
def catalog(demo_home: SafarHome) -> dict:
    con = connect(demo_home, read_only=True)
    try:
        return load_catalog(con, manifest_path(demo_home))
    finally:
        con.close()


@pytest.fixture(scope="module")
def sandbox(demo_home: SafarHome) -> Iterator[duckdb.DuckDBPyConnection]:
    con = locked_connection(demo_home)
    yield con
    con.close()


@pytest.fixture(scope="module")
def members(
    demo_segments: dict[str, SegmentDefinition],
    catalog: dict,
    sandbox: duckdb.DuckDBPyConnection,
) -> Callable[[str, datetime], set[str]]:
    """The members of a demo segment at a time, as the evaluator finds them."""

    def find(slug: str, as_of: datetime) -> set[str]:
        compiled = compile_segment(demo_segments[slug], catalog, as_of=as_of)
        return set(run(sandbox, compiled.query))

    return find


def test_the_six_demo_segments_are_all_here(demo_segments: dict) -> None:
    assert sorted(demo_segments) == sorted(p.values[0] for p in RULES)


@pytest.mark.parametrize(("slug", "rule"), RULES)
def test_a_demo_segment_finds_what_the_rule_says(
    members: Callable, raw: Raw, slug: str, rule: Rule
) -> None:
    found = members(slug, AS_OF)
    expected = rule(raw, AS_OF)

    assert found == expected, (
        f"{slug}: {len(found)} found, {len(expected)} by the rule;"
        f" only found: {sorted(found - expected)[:5]}, only by the rule:"
        f" {sorted(expected - found)[:5]}"
    )


@pytest.mark.parametrize("slug", [p.values[0] for p in RULES])
def test_a_demo_segment_shows_someone_but_not_everyone(
    members: Callable, raw: Raw, slug: str
) -> None:
    assert 0 < len(members(slug, AS_OF)) < len(raw.people)


@pytest.mark.parametrize("slug", [p.values[0] for p in RULES])
def test_the_preview_counts_the_members(
    demo_home: SafarHome, demo_segments: dict, catalog: dict, members: Callable, slug: str
) -> None:
    shown = preview(demo_home, demo_segments[slug], catalog, as_of=AS_OF, sample=5)

    everyone = members(slug, AS_OF)
    assert shown.size == len(everyone)
    assert len(shown.sample) == min(5, len(everyone))
    assert {p["person_id"] for p in shown.sample} <= everyone


def test_time_relative_demo_segments_move_with_the_clock(members: Callable, raw: Raw) -> None:
    # Ten days earlier, fewer people had been away for 14 days.
    earlier = AS_OF - timedelta(days=10)
    assert len(members("dormant-14d", earlier)) < len(members("dormant-14d", AS_OF))
    # A day and a half later, the last day's carts are more than 24 hours old.
    assert members("cart-abandoners-24h", AS_OF + timedelta(hours=36)) == set()
    assert cart_abandoners(raw, AS_OF + timedelta(hours=36)) == set()


def test_cart_abandoners_at_a_past_time(members: Callable, raw: Raw) -> None:
    as_of = datetime(2026, 1, 25, 12, 0)
    assert members("cart-abandoners-24h", as_of) == cart_abandoners(raw, as_of)
