"""Incremental builds must equal a full refresh of the same landing zone, row for row.

Events land in shifted batches, each followed by an incremental ``safar build``: late files
received before the previous watermark (inside the lookback window), re-sent copies of
message_ids already loaded (which must lose: the copy received first wins), and a re-sent copy
received *earlier* than the loaded one (which must win). A second home gets a copy of the
same raw files and one full-refresh build; every mart must match in both directions.
"""

from __future__ import annotations

import random
import shutil
from datetime import datetime, timedelta

import pytest
from warehouse_helpers import MARTS, event, land, query, shop_story

from safar.build import build
from safar.config import SafarHome
from safar.warehouse import connect

START = datetime(2026, 1, 1)
DAYS = 12
# Batch k holds the events received before START + BATCH_ENDS[k] days.
BATCH_ENDS = (4, 7, 9, 99)


def batches() -> list[list[dict]]:
    rng = random.Random(7)
    rows = shop_story(seed=3, users=60, days=DAYS, start=START)
    by_batch: list[list[dict]] = [[] for _ in BATCH_ENDS]
    for row in rows:
        day = (row["received_at"] - START).days
        batch = next(i for i, end in enumerate(BATCH_ENDS) if day < end)
        # 5% arrive in the next batch although received earlier: late files within the
        # lookback window (the watermark has moved past their received_at by then).
        if batch + 1 < len(BATCH_ENDS) and rng.random() < 0.05:
            batch += 1
        by_batch[batch].append(row)
    # A client retry of already-loaded messages, received later: the first copy must win.
    for previous, later in ((0, 1), (1, 2), (2, 3)):
        for row in rng.sample(by_batch[previous], 15):
            retry = dict(
                row, event="Retried Copy", received_at=row["received_at"] + timedelta(hours=6)
            )
            retry["sent_at"] = retry["received_at"]
            by_batch[later].append(retry)
    # A copy received before the loaded one, landing late: it was first, so it must win.
    loaded = next(r for r in by_batch[2] if r["type"] == "page")
    by_batch[3].append(
        dict(loaded, event="Earlier Copy", received_at=loaded["received_at"] - timedelta(hours=1))
    )
    # An identify in the last batch that re-attributes an old anonymous history.
    by_batch[3].append(
        event(
            "identify",
            at=START + timedelta(days=DAYS - 1),
            anonymous_id="anon-web-1",
            user_id="late-signup",
        )
    )
    return by_batch


@pytest.fixture(scope="module")
def homes(make_home) -> tuple[SafarHome, SafarHome]:
    incremental = make_home("incremental")
    build(incremental, test=False)  # a fresh install: empty landing zone
    parts = batches()
    for number, rows in enumerate(parts, start=1):
        land(incremental, rows)
        build(incremental, test=number == len(parts))
    full = make_home("full_refresh")
    shutil.copytree(incremental.raw_events, full.raw_events, dirs_exist_ok=True)
    build(full, full_refresh=True)
    return incremental, full


def test_late_and_duplicate_copies_were_exercised(homes):
    incremental, _ = homes
    names = dict(
        query(incremental, "select event_name, count(*) from stg_safar__events group by 1")
    )
    assert "Retried Copy" not in names
    assert names.get("Earlier Copy") == 1


@pytest.mark.parametrize("model", ["stg_safar__events", *MARTS])
def test_incremental_build_equals_full_refresh(homes, model):
    incremental, full = homes
    con = connect(incremental, read_only=True)
    try:
        con.sql(
            f"attach 'ducklake:sqlite:{full.catalog}' as full_refresh "
            f"(data_path '{full.warehouse_data}/', read_only)"
        )
        total = con.sql(f"select count(*) from lake.main.{model}").fetchone()[0]
        only_incremental = con.sql(
            f"select count(*) from (select * from lake.main.{model} "
            f"except all select * from full_refresh.main.{model})"
        ).fetchone()[0]
        only_full = con.sql(
            f"select count(*) from (select * from full_refresh.main.{model} "
            f"except all select * from lake.main.{model})"
        ).fetchone()[0]
    finally:
        con.close()
    assert total > 0
    assert (only_incremental, only_full) == (0, 0)
