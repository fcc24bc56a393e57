"""``safar segment list | validate | preview | evaluate | upload`` through ``safar.cli.main``.

On copies of the demo warehouse (2,000 people, data to 2026-01-31): one copy shared by the
commands that only read it, a fresh copy for each test that evaluates or uploads (those write
the lake, the landing zone and the app DB). Segment folders of the tests' own go through
``SAFAR_SEGMENTS_DIR``; without it the repository's ``segments_sql/`` is used.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from warehouse_helpers import copy_home

from safar.cli import main
from safar.config import PROJECT_ROOT, SafarHome
from safar.segments.membership import SOURCE_ID, members_at
from safar.warehouse import connect

AS_OF = "2026-01-31T23:59:59"
AS_OF_TIME = datetime(2026, 1, 31, 23, 59, 59)
DEMO_SLUGS = [
    "android-app-users",
    "cart-abandoners-24h",
    "dormant-14d",
    "high-value-rfm",
    "irancell-users",
    "repeat-buyers",
]


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SAFAR_SEGMENTS_DIR", "SAFAR_APP_DB_URL", "SAFAR_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def shared_home(demo_home: SafarHome, tmp_path_factory: pytest.TempPathFactory) -> SafarHome:
    """For commands that only read the warehouse (preview by slug creates the app DB)."""
    return copy_home(demo_home, tmp_path_factory.mktemp("segment_cli") / "home")


@pytest.fixture
def home(demo_home: SafarHome, tmp_path: Path) -> SafarHome:
    """A copy of its own, for a test that evaluates or uploads."""
    return copy_home(demo_home, tmp_path / "home")


def segment(capsys: pytest.CaptureFixture[str], home: SafarHome, *argv: str) -> tuple:
    """Run ``safar --home HOME segment ARGV…``: exit code, stdout, stderr."""
    code = main(["--home", str(home.root), "segment", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def query(home: SafarHome, sql: str, params: list | None = None) -> list[tuple]:
    con = connect(home, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def count(home: SafarHome, sql: str, params: list | None = None) -> int:
    ((value,),) = query(home, sql, params)
    return value


_ROW = re.compile(
    r"^\s*(?P<slug>\S+)\s+(?P<status>evaluated|skipped|failed)\s+(?P<size>\d*)\s+"
    r"(?P<entered>\d+)\s+(?P<exited>\d+)\s+(?P<seconds>[\d.]+)\s+(?P<why>.*?)\s*$"
)


def outcomes(out: str) -> dict[str, dict]:
    """The rows of ``safar segment evaluate``'s table, by slug."""
    lines = out.splitlines()
    assert lines[0].split() == ["segment", "status", "size", "entered", "exited", "seconds", "why"]
    rows = {}
    for line in lines[1:]:
        match = _ROW.match(line)
        assert match, line
        row = match.groupdict()
        row["size"] = int(row["size"]) if row["size"] else None
        row["entered"], row["exited"] = int(row["entered"]), int(row["exited"])
        rows[row.pop("slug")] = row
    return rows


def write_segments(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# --- validate -----------------------------------------------------------------------------------


def test_validate_all_passes_on_the_repository_segments(capsys, shared_home: SafarHome) -> None:
    code, out, err = segment(capsys, shared_home, "validate", "--all")

    assert code == 0, err
    lines = out.splitlines()
    assert lines[-1] == "6 of 6 segment file(s) valid"
    assert [line.split()[1] for line in lines[:-1]] == [
        f"segments_sql/{slug}.sql" for slug in DEMO_SLUGS
    ]
    assert "ok segments_sql/dormant-14d.sql (dormant-14d, sql, time-relative)" in lines
    assert "ok segments_sql/irancell-users.sql (irancell-users, sql)" in lines


# (the query, then line:column: message as validate prints it after the file name)
BAD_SQL = [
    (
        "select person_id as user_id\nfrom dim_users\nwhere plan = 1\n",
        "3:7: unknown column 'plan'",
    ),
    ("select person_id as user_id\nfrom orders\n", "2:6: unknown table 'orders'; segments read"),
    (
        "select person_id as user_id\nfrom read_csv('/etc/passwd')\n",
        "2:6: table function read_csv() is not allowed",
    ),
    (
        "select person_id as user_id\nfrom dim_users\nwhere getenv('HOME') is not null\n",
        "3:7: function getenv() is not allowed in a segment",
    ),
    (
        "select person_id as user_id from dim_users;\ndrop table dim_users\n",
        "2:1: 2 statements: a segment is exactly one query",
    ),
    (
        "select person_id, email\nfrom dim_users\n",
        "1:1: a segment returns exactly one column named user_id, not: person_id, email",
    ),
    ("select person_id as user_id\nfrom dim_users\nwhere\n", "3:5: not valid SQL"),
]


@pytest.mark.parametrize(("sql", "expected"), BAD_SQL, ids=[e.split(":")[2] for _, e in BAD_SQL])
def test_validate_prints_file_line_column_message(
    capsys, shared_home: SafarHome, tmp_path: Path, sql: str, expected: str
) -> None:
    folder = write_segments(tmp_path, {"broken.yml": "name: Broken\n", "broken.sql": sql})

    code, out, err = segment(capsys, shared_home, "validate", str(folder / "broken.sql"))

    assert code == 1
    (line,) = err.splitlines()
    assert line.startswith(f"{folder}/broken.sql:{expected}")
    assert out.splitlines() == ["0 of 1 segment file(s) valid"]


def test_validate_reports_every_file_of_a_mix(
    capsys, shared_home: SafarHome, tmp_path: Path
) -> None:
    folder = write_segments(
        tmp_path / "segments",
        {
            "rightel.yml": "name: Rightel\nrefresh: 6h\n",
            "rightel.sql": "select person_id as user_id from dim_users where carrier = 'Rightel'",
            "bad-column.yml": "name: Bad column\n",
            "bad-column.sql": "select person_id as user_id\nfrom dim_users\nwhere plan = 1\n",
            "builder.yml": (
                "name: Active this week\ncondition:\n"
                "  behaviour: {event: Application Opened, time: {last_days: 7}}\n"
            ),
            "bad-builder.yml": (
                "name: Bad builder\ncondition:\n  attribute: {name: shoe_size, op: eq, value: 1}\n"
            ),
            "bad-yaml.yml": "name: Bad\n  owner: crm\n",
            "draft.sql": "select person_id as user_id from dim_users where is_known",
        },
    )
    files = ["rightel.yml", "bad-column.sql", "builder.yml", "bad-builder.yml", "bad-yaml.yml"]
    files += ["draft.sql", "missing.sql"]

    code, out, err = segment(capsys, shared_home, "validate", *[str(folder / f) for f in files])

    assert code == 1
    assert out.splitlines() == [
        f"ok {folder}/rightel.sql (rightel, sql)",
        f"ok {folder}/builder.yml (builder, builder, time-relative)",
        f"ok {folder}/draft.sql (draft, sql)",  # a lone .sql named by hand is a draft
        "3 of 7 segment file(s) valid",
    ]
    problems = err.splitlines()
    assert len(problems) == 4
    assert problems[0].startswith(f"{folder}/bad-column.sql:3:7: unknown column 'plan'")
    assert problems[1].startswith(
        f"{folder}/bad-builder.yml: condition.attribute.name: unknown name 'shoe_size'"
    )
    assert problems[2] == (
        f"{folder}/bad-yaml.yml: not valid YAML at line 2, column 8:"
        " mapping values are not allowed here"
    )
    assert problems[3] == f"{folder}/missing.sql: no such file"


def test_validate_all_reads_safar_segments_dir_and_refuses_a_lone_sql(
    capsys, shared_home: SafarHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``validate --all`` fails for a folder that every other command refuses to load."""
    folder = write_segments(
        tmp_path / "segments",
        {
            "known.yml": "name: Known people\n",
            "known.sql": "select person_id as user_id from dim_users where is_known",
            "draft.sql": "select person_id as user_id from dim_users",
        },
    )
    monkeypatch.setenv("SAFAR_SEGMENTS_DIR", str(folder))

    code, out, err = segment(capsys, shared_home, "validate", "--all")

    assert code == 1
    assert out.splitlines() == [
        f"ok {folder}/known.sql (known, sql)",
        "1 of 2 segment file(s) valid",
    ]
    assert err.splitlines() == [f"{folder}/draft.sql: no draft.yml beside it"]
    code, _, err = segment(capsys, shared_home, "list")
    assert code == 1
    assert err.strip() == f"safar segment: error: {folder}/draft.sql: no draft.yml beside it"

    (folder / "draft.sql").unlink()
    code, out, _ = segment(capsys, shared_home, "validate", "--all")
    assert (code, out.splitlines()[-1]) == (0, "1 of 1 segment file(s) valid")


def test_validate_needs_files_or_all(capsys, shared_home: SafarHome) -> None:
    assert segment(capsys, shared_home, "validate")[0] == 2
    code, _, err = segment(capsys, shared_home, "validate", "--all", "x.sql")
    assert code == 2 and "give FILE… or --all" in err


# --- preview ------------------------------------------------------------------------------------

# Hand-written counts of each segment at a given time, straight on the warehouse.
HAND_COUNTS = [
    ("irancell-users", AS_OF, "select count(*) from dim_users where carrier = 'Irancell'"),
    ("repeat-buyers", AS_OF, "select count(*) from dim_users where order_count > 1"),
    (
        "dormant-14d",
        AS_OF,
        "select count(*) from dim_users where user_id is not null"
        " and last_seen_at < timestamp '2026-01-17 23:59:59'",
    ),
    (
        # The clock is pinned: ten days earlier, far fewer people were dormant.
        "dormant-14d",
        "2026-01-21T23:59:59",
        "select count(*) from dim_users where user_id is not null"
        " and last_seen_at < timestamp '2026-01-07 23:59:59'",
    ),
    (
        # An offset is converted to UTC: 03:29:59 in Tehran is 23:59:59 UTC the day before.
        "cart-abandoners-24h",
        "2026-02-01T03:29:59+03:30",
        """select count(*) from (
            select person_id, max(occurred_at) as added_at from fct_events
            where event_name = 'Product Added'
              and occurred_at between timestamp '2026-01-30 23:59:59'
                                  and timestamp '2026-01-31 23:59:59'
            group by person_id
        ) as carts
        where not exists (
            select 1 from fct_events as o
            where o.person_id = carts.person_id and o.event_name = 'Order Completed'
              and o.occurred_at >= carts.added_at
        )""",
    ),
]


@pytest.mark.parametrize(
    ("slug", "as_of", "hand_sql"), HAND_COUNTS, ids=[f"{s}@{a}" for s, a, _ in HAND_COUNTS]
)
def test_preview_json_counts_what_a_hand_written_query_counts(
    capsys, shared_home: SafarHome, slug: str, as_of: str, hand_sql: str
) -> None:
    code, out, err = segment(
        capsys, shared_home, "preview", slug, "--as-of", as_of, "--sample", "5", "--format", "json"
    )

    assert code == 0, err
    body = json.loads(out)
    assert body["slug"] == slug
    assert body["size"] == count(shared_home, hand_sql) > 0
    assert datetime.fromisoformat(body["as_of"]).tzinfo is None  # naive UTC
    sample = body["sample"]
    assert 0 < len(sample) <= 5
    assert len({p["person_id"] for p in sample}) == len(sample)
    sql = (PROJECT_ROOT / "segments_sql" / f"{slug}.sql").read_text()
    pinned = sql.replace("now()", f"timestamp '{datetime.fromisoformat(body['as_of'])}'")
    members = {r[0] for r in query(shared_home, pinned)}
    assert {p["person_id"] for p in sample} <= members
    assert all(p["user_id"] is None or p["user_id"] == p["person_id"] for p in sample)


def test_preview_shows_the_same_sample_each_time(capsys, shared_home: SafarHome) -> None:
    argv = ["preview", "repeat-buyers", "--as-of", AS_OF, "--sample", "4", "--format", "json"]
    first = json.loads(segment(capsys, shared_home, *argv)[1])
    second = json.loads(segment(capsys, shared_home, *argv)[1])

    assert first["sample"] == second["sample"] and len(first["sample"]) == 4

    none = json.loads(
        segment(capsys, shared_home, *argv[:4], "--sample", "0", "--format", "json")[1]
    )
    assert (none["size"], none["sample"]) == (first["size"], [])


def test_preview_a_file_and_as_a_table(capsys, shared_home: SafarHome) -> None:
    path = PROJECT_ROOT / "segments_sql" / "irancell-users.yml"
    code, out, err = segment(capsys, shared_home, "preview", str(path), "--as-of", AS_OF)

    assert code == 0, err
    size = count(shared_home, "select count(*) from dim_users where carrier = 'Irancell'")
    lines = out.splitlines()
    assert lines[0] == f"Irancell users (irancell-users): {size:,} people at {AS_OF_TIME}"
    assert lines[1].startswith("People whose carrier trait is Irancell")
    assert lines[2].split() == [
        "person_id",
        "user_id",
        "name",
        "email",
        "phone",
        "carrier",
        "last_seen_at",
    ]
    assert len(lines) == 3 + 10 + 1 and re.fullmatch(r"\(\d+\.\d\d s\)", lines[-1])
    assert all("Irancell" in line for line in lines[3:-1])


def test_preview_refuses_unknown_segments_and_bad_sample_sizes(
    capsys, shared_home: SafarHome
) -> None:
    code, _, err = segment(capsys, shared_home, "preview", "nobody-segment")
    assert code == 1
    assert err.strip() == (
        "safar segment: error: no segment 'nobody-segment'; segments: " + ", ".join(DEMO_SLUGS)
    )
    with pytest.raises(SystemExit) as caught:
        segment(capsys, shared_home, "preview", "repeat-buyers", "--sample", "-1")
    assert caught.value.code == 2
    assert "--sample: must be 0 or more, got -1" in capsys.readouterr().err


# --- evaluate and list --------------------------------------------------------------------------


def _landed_segment_events(home: SafarHome) -> pl.DataFrame:
    files = sorted(home.raw_events.glob("date=*/part-*.parquet"))
    frame = pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")
    return frame.filter(pl.col("source_id") == SOURCE_ID)


def test_evaluate_once_per_batch_force_and_list(
    capsys, home: SafarHome, demo_home: SafarHome
) -> None:
    previews = {
        slug: json.loads(
            segment(capsys, home, "preview", slug, "--as-of", AS_OF, "--format", "json")[1]
        )["size"]
        for slug in DEMO_SLUGS
    }

    code, out, err = segment(capsys, home, "evaluate", "--as-of", AS_OF, "--batch-id", "b1")

    assert code == 0, err
    first = outcomes(out)
    assert sorted(first) == DEMO_SLUGS
    for slug, row in first.items():
        assert (row["status"], row["why"]) == ("evaluated", "never evaluated")
        assert row["size"] == row["entered"] == previews[slug] > 0 and row["exited"] == 0
    landed = _landed_segment_events(home)
    assert landed.height == sum(previews.values())
    assert set(landed["event"]) == {"Segment Entered"}
    con = connect(home, read_only=True)
    try:
        assert len(members_at(con, "irancell-users", AS_OF_TIME)) == previews["irancell-users"]
    finally:
        con.close()

    # The same batch again: nothing runs, nothing is landed.
    code, out, _ = segment(capsys, home, "evaluate", "--as-of", AS_OF, "--batch-id", "b1")
    assert code == 0
    assert {(r["status"], r["why"]) for r in outcomes(out).values()} == {
        ("skipped", "batch b1 was already evaluated")
    }
    assert _landed_segment_events(home).height == landed.height

    # A new batch a second later: nothing any segment reads changed.
    later = "2026-01-31T23:59:59.500000"
    code, out, _ = segment(capsys, home, "evaluate", "--as-of", later, "--batch-id", "b2")
    assert {(r["status"], r["why"]) for r in outcomes(out).values()} == {
        ("skipped", "nothing it reads changed")
    }

    # Forced, in a new batch: every segment runs again and finds the same people.
    code, out, _ = segment(
        capsys, home, "evaluate", "--as-of", "2026-02-01T00:00:00", "--batch-id", "b3", "--force"
    )
    assert code == 0
    forced = outcomes(out)
    assert {slug: (r["status"], r["why"]) for slug, r in forced.items()} == dict.fromkeys(
        DEMO_SLUGS, ("evaluated", "forced")
    )
    assert {slug: (r["size"], r["entered"], r["exited"]) for slug, r in forced.items()} == {
        slug: (size, 0, 0) for slug, size in previews.items()
    }
    assert count(home, "select count(*) from segment_evaluations") == 2 * len(DEMO_SLUGS)

    code, out, err = segment(capsys, home, "list", "--format", "json")
    assert code == 0, err
    listed = {row["slug"]: row for row in json.loads(out)}
    assert sorted(listed) == DEMO_SLUGS
    for slug, row in listed.items():
        assert (row["size"], row["evaluated_at"], row["change_7d"]) == (
            previews[slug],
            "2026-02-01 00:00:00",
            None,
        )
        assert row["defined_in"] == f"segments_sql/{slug}.sql"
    assert listed["dormant-14d"]["refresh"] == "1h"

    # Everything was written to the copy, never to the shared demo warehouse.
    assert count(demo_home, "select count(*) from segment_evaluations") == 0


def test_evaluate_only_the_named_segments_and_refuse_unknown_ones(capsys, home: SafarHome) -> None:
    code, out, _ = segment(
        capsys, home, "evaluate", "repeat-buyers", "irancell-users", "--as-of", AS_OF
    )
    assert code == 0
    assert sorted(outcomes(out)) == ["irancell-users", "repeat-buyers"]

    code, out, err = segment(capsys, home, "evaluate", "repeat-buyers", "no-such-segment")
    assert (code, out) == (1, "")
    assert err.strip() == "safar segment: error: no segment 'no-such-segment'"


def test_list_before_any_evaluation_shows_no_sizes(capsys, shared_home: SafarHome) -> None:
    code, out, _ = segment(capsys, shared_home, "list", "--format", "json")

    assert code == 0
    rows = json.loads(out)
    assert [r["slug"] for r in rows] == DEMO_SLUGS
    assert {(r["size"], r["evaluated_at"]) for r in rows} == {(None, None)}
    code, out, _ = segment(capsys, shared_home, "list")
    assert out.splitlines()[0].split()[:3] == ["slug", "name", "kind"]
    assert len(out.splitlines()) == 1 + len(DEMO_SLUGS)


def test_evaluate_reports_a_failing_segment_and_exits_1(
    capsys, home: SafarHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_segments(
        tmp_path / "segments",
        {
            "ok.yml": "name: OK\n",
            "ok.sql": "select person_id as user_id from dim_users where carrier = 'Rightel'",
            "broken.yml": "name: Broken\n",
            "broken.sql": "select person_id as user_id from dim_users where plan = 1",
        },
    )
    monkeypatch.setenv("SAFAR_SEGMENTS_DIR", str(folder))

    code, out, _ = segment(capsys, home, "evaluate", "--as-of", AS_OF, "--batch-id", "b1")

    assert code == 1
    rows = outcomes(out)
    assert rows["broken"]["status"] == "failed"
    assert rows["broken"]["why"].startswith("line 1, column 50: unknown column 'plan'")
    rightel = count(home, "select count(*) from dim_users where carrier = 'Rightel'")
    assert (rows["ok"]["status"], rows["ok"]["size"]) == ("evaluated", rightel)


# --- upload -------------------------------------------------------------------------------------


def _known_emails(home: SafarHome, n: int) -> list[tuple[str, str]]:
    """(person_id, email) of ``n`` people whose email is theirs alone."""
    return query(
        home,
        """select min(person_id), min(email) from dim_users where email is not null
        group by lower(trim(email)) having count(*) = 1 order by 1 limit ?""",
        [n],
    )


def test_upload_a_list_then_evaluate_it(capsys, home: SafarHome, tmp_path: Path) -> None:
    people = _known_emails(home, 4)
    csv = tmp_path / "vip.csv"
    rows = ["Email", *(email for _, email in people[:3])]
    rows += [f"  {people[3][1].upper()} ", "nobody@example.invalid", "not-an-email", people[0][1]]
    csv.write_text("\n".join(rows) + "\n")
    unmatched = tmp_path / "unmatched.csv"

    code, out, err = segment(
        capsys, home, "upload", str(csv), "--slug", "vip", "--name", "VIP list", "--owner", "crm"
    )

    assert code == 0, err
    assert out.splitlines() == [
        "saved vip: 4 people from 4 matched row(s) by email; 3 row(s) matched nobody",
        "  line 6: 'nobody@example.invalid': no user with this email",
        "  line 7: 'not-an-email': not an email address",
        f"  line 8: '{people[0][1]}': duplicate of line 2",
    ]

    # Uploading again with --unmatched writes the report instead (and replaces the list).
    code, out, _ = segment(
        capsys,
        home,
        "upload",
        str(csv),
        "--slug",
        "vip",
        "--name",
        "VIP list",
        "--unmatched",
        str(unmatched),
    )
    assert code == 0
    assert out.splitlines()[1] == f"unmatched rows written to {unmatched}"
    assert unmatched.read_text().splitlines() == [
        "line,value,reason",
        "6,nobody@example.invalid,no user with this email",
        "7,not-an-email,not an email address",
        f"8,{people[0][1]},duplicate of line 2",
    ]

    code, out, err = segment(capsys, home, "evaluate", "--as-of", AS_OF, "--batch-id", "b1")
    assert code == 0, err
    vip = outcomes(out)["vip"]
    assert (vip["status"], vip["size"], vip["entered"]) == ("evaluated", 4, 4)
    con = connect(home, read_only=True)
    try:
        assert members_at(con, "vip", AS_OF_TIME) == sorted(p for p, _ in people)
    finally:
        con.close()
    listed = {
        r["slug"]: r for r in json.loads(segment(capsys, home, "list", "--format", "json")[1])
    }
    assert (listed["vip"]["kind"], listed["vip"]["size"], listed["vip"]["defined_in"]) == (
        "static",
        4,
        "app",
    )
    assert (listed["vip"]["name"], listed["vip"]["owner"]) == ("VIP list", "")

    # A new list under the same slug is a new definition: the next batch picks it up.
    csv.write_text(f"email\n{people[0][1]}\n")
    assert segment(capsys, home, "upload", str(csv), "--slug", "vip", "--name", "VIP")[0] == 0
    code, out, _ = segment(
        capsys, home, "evaluate", "vip", "--as-of", "2026-02-01T00:00:00", "--batch-id", "b2"
    )
    vip = outcomes(out)["vip"]
    assert (vip["status"], vip["why"]) == ("evaluated", "its definition changed")
    assert (vip["size"], vip["entered"], vip["exited"]) == (1, 0, 3)


def test_upload_refuses_a_file_slug(capsys, home: SafarHome, tmp_path: Path) -> None:
    csv = tmp_path / "list.csv"
    csv.write_text("email\n" + _known_emails(home, 1)[0][1] + "\n")

    code, out, err = segment(
        capsys, home, "upload", str(csv), "--slug", "irancell-users", "--name", "Mine"
    )

    assert (code, out) == (1, "")
    assert err.strip() == (
        "safar segment: error: slug: 'irancell-users' is defined in segments_sql/; change it there"
    )
