"""Segment files: ``segments_sql/<slug>.yml`` with a ``<slug>.sql`` or a builder ``condition``.

Table-driven: each good folder and what it loads as, each bad one and the exact message,
which names the file as people write it (relative to the project, where the files live).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from safar.segments import definitions
from safar.segments.definitions import (
    DefinitionError,
    SegmentDefinition,
    format_refresh,
    load_file_segment,
    load_file_segments,
    merge_segments,
)

CONDITION = {"trait": {"name": "carrier", "op": "eq", "value": "Irancell"}}
SQL = "select person_id as user_id\nfrom dim_users\nwhere carrier = 'Irancell'\n"
SLUG_RULE = (
    "is not a slug (lower-case letters, digits, - and _, at most 63, starting with a letter"
    " or digit)"
)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``segments_sql/`` inside a project rooted at ``tmp_path``."""
    monkeypatch.setattr(definitions, "PROJECT_ROOT", tmp_path.resolve())
    path = tmp_path / "segments_sql"
    path.mkdir()
    return path


def write(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content, encoding="utf-8")


# --- good files --------------------------------------------------------------------------------


def test_a_sql_segment_with_all_its_metadata(folder: Path) -> None:
    write(
        folder,
        {
            "irancell-users.yml": (
                "name: Irancell users\n"
                "description: >-\n  People on Irancell,\n  for the bundle offer.\n"
                "owner: growth@safar.example\n"
                "refresh: 6h\n"
            ),
            "irancell-users.sql": SQL,
        },
    )

    loaded = load_file_segment(folder / "irancell-users.yml")

    assert loaded == SegmentDefinition(
        slug="irancell-users",
        name="Irancell users",
        kind="sql",
        description="People on Irancell, for the bundle offer.",
        owner="growth@safar.example",
        refresh=timedelta(hours=6),
        sql=SQL,
        origin="segments_sql/irancell-users.sql",
    )
    assert loaded.refresh_text == "6h"


def test_a_builder_segment_lives_in_the_yml_alone(folder: Path) -> None:
    write(folder, {"on-irancell.yml": "name: On Irancell\ncondition:\n" + _yaml(CONDITION)})

    loaded = load_file_segment(folder / "on-irancell.yml")

    assert (loaded.kind, loaded.condition, loaded.sql) == ("builder", CONDITION, None)
    assert (loaded.slug, loaded.name, loaded.description, loaded.owner) == (
        "on-irancell",
        "On Irancell",
        "",
        "",
    )
    assert loaded.refresh is None  # no refresh: live
    assert loaded.origin == "segments_sql/on-irancell.yml"


def _yaml(condition: dict) -> str:
    (key, body), *_ = condition.items()
    fields = "".join(f"    {k}: {v}\n" for k, v in body.items())
    return f"  {key}:\n{fields}"


@pytest.mark.parametrize(
    ("written", "refresh", "text"),
    [
        (None, None, "live"),
        ("live", None, "live"),
        ("15m", timedelta(minutes=15), "15m"),
        ("90m", timedelta(minutes=90), "90m"),
        ("6h", timedelta(hours=6), "6h"),
        ("24h", timedelta(days=1), "1d"),
        ("1d", timedelta(days=1), "1d"),
        ("'6 h'", timedelta(hours=6), "6h"),
        ("' 2d '", timedelta(days=2), "2d"),
        ("1m", timedelta(minutes=1), "1m"),
    ],
)
def test_refresh_is_live_or_an_interval(
    folder: Path, written: str | None, refresh: timedelta | None, text: str
) -> None:
    line = "" if written is None else f"refresh: {written}\n"
    write(folder, {"s.yml": f"name: S\n{line}", "s.sql": SQL})

    loaded = load_file_segment(folder / "s.yml")

    assert (loaded.refresh, loaded.refresh_text, format_refresh(loaded.refresh)) == (
        refresh,
        text,
        text,
    )


def test_persian_text_and_a_byte_order_mark_are_fine(folder: Path) -> None:
    write(
        folder,
        {
            "irancell.yml": "\ufeffname: کاربران ایرانسل\nowner: رضا\n",
            "irancell.sql": "\ufeff-- کاربران ایرانسل\n" + SQL,
        },
    )

    loaded = load_file_segment(folder / "irancell.yml")

    assert (loaded.name, loaded.owner) == ("کاربران ایرانسل", "رضا")
    assert loaded.sql == "-- کاربران ایرانسل\n" + SQL


def test_a_folder_loads_sorted_by_slug(folder: Path) -> None:
    write(
        folder,
        {
            "zeta.yml": "name: Zeta\n",
            "zeta.sql": SQL,
            "alpha.yml": "name: Alpha\ncondition:\n" + _yaml(CONDITION),
            "mid_1.yml": "name: Mid\nrefresh: 1d\n",
            "mid_1.sql": SQL,
            "notes.txt": "not a segment",
        },
    )

    loaded = load_file_segments(folder)

    assert [(d.slug, d.kind) for d in loaded] == [
        ("alpha", "builder"),
        ("mid_1", "sql"),
        ("zeta", "sql"),
    ]


def test_the_folder_comes_from_safar_segments_dir(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(folder, {"only.yml": "name: Only\n", "only.sql": SQL})
    monkeypatch.setenv("SAFAR_SEGMENTS_DIR", str(folder))

    assert [d.slug for d in load_file_segments()] == ["only"]

    monkeypatch.setenv("SAFAR_SEGMENTS_DIR", str(folder / "missing"))
    assert load_file_segments() == []


def test_the_repository_ships_six_demo_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAFAR_SEGMENTS_DIR", raising=False)

    loaded = {d.slug: d for d in load_file_segments()}

    assert {slug: (d.kind, d.refresh_text) for slug, d in loaded.items()} == {
        "android-app-users": ("sql", "live"),
        "cart-abandoners-24h": ("sql", "live"),
        "dormant-14d": ("sql", "1h"),
        "high-value-rfm": ("sql", "1d"),
        "irancell-users": ("sql", "live"),
        "repeat-buyers": ("sql", "live"),
    }
    assert all(d.name and d.description and d.owner for d in loaded.values())
    assert loaded["repeat-buyers"].origin == "segments_sql/repeat-buyers.sql"


# --- bad files ---------------------------------------------------------------------------------

# (files, the yml to load, the exact message). Every message starts with the file to fix.
BAD_FILES = [
    pytest.param(
        {"Repeat Buyers.yml": "name: x\n", "Repeat Buyers.sql": SQL},
        "Repeat Buyers.yml",
        f"segments_sql/Repeat Buyers.yml: file name: 'Repeat Buyers' {SLUG_RULE}",
        id="slug-with-space-and-capitals",
    ),
    pytest.param(
        {"-vip.yml": "name: x\n", "-vip.sql": SQL},
        "-vip.yml",
        f"segments_sql/-vip.yml: file name: '-vip' {SLUG_RULE}",
        id="slug-starting-with-dash",
    ),
    pytest.param(
        {"vip.v2.yml": "name: x\n", "vip.v2.sql": SQL},
        "vip.v2.yml",
        f"segments_sql/vip.v2.yml: file name: 'vip.v2' {SLUG_RULE}",
        id="slug-with-dot",
    ),
    pytest.param(
        {f"{'a' * 64}.yml": "name: x\n", f"{'a' * 64}.sql": SQL},
        f"{'a' * 64}.yml",
        f"segments_sql/{'a' * 64}.yml: file name: '{'a' * 64}' {SLUG_RULE}",
        id="slug-too-long",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\n  owner: crm\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: not valid YAML at line 2, column 8:"
        " mapping values are not allowed here",
        id="yaml-bad-indentation",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\ndescription: [unclosed\nowner: crm\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: not valid YAML at line 3, column 6:"
        " while parsing a flow sequence: expected ',' or ']', but got ':'",
        id="yaml-unclosed-list",
    ),
    pytest.param(
        {"vip.yml": 'name: "VIP\n', "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: not valid YAML at line 2, column 1:"
        " while scanning a quoted scalar: found unexpected end of stream",
        id="yaml-unclosed-quote",
    ),
    pytest.param(
        # Saved by Windows in its Persian code page (cp1256), as Notepad used to.
        {"vip.yml": "name: VIP\nowner: رضا\n".encode("cp1256"), "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: not UTF-8 text (byte 0xd1 on line 2); save the file as UTF-8",
        id="yml-not-utf8",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\n", "vip.sql": (SQL + "-- کاربران\n").encode("cp1256")},
        "vip.yml",
        "segments_sql/vip.sql: not UTF-8 text (byte 0x98 on line 4); save the file as UTF-8",
        id="sql-not-utf8",
    ),
    pytest.param(
        {"vip.yml": "- name\n- owner\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: must be a mapping with name, description, owner, refresh",
        id="a-list",
    ),
    pytest.param(
        {"vip.yml": "", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: must be a mapping with name, description, owner, refresh",
        id="empty-yml",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\ntags: [crm]\nlabels: x\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: unknown key 'labels'; a segment file has name, description,"
        " owner, refresh, condition",
        id="unknown-key",
    ),
    pytest.param(
        {"vip.yml": "description: Very important\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: name is missing",
        id="missing-name",
    ),
    pytest.param(
        {"vip.yml": "name: '   '\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: name must be a non-empty text",
        id="blank-name",
    ),
    pytest.param(
        {"vip.yml": "name: 42\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: name must be a non-empty text",
        id="name-not-text",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\nowner: [a, b]\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: owner must be a non-empty text",
        id="owner-not-text",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\ncondition:\n" + _yaml(CONDITION), "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: give the query in vip.sql or a builder tree under condition,"
        " exactly one of them",
        id="both-sql-and-condition",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\n"},
        "vip.yml",
        "segments_sql/vip.yml: give the query in vip.sql or a builder tree under condition,"
        " exactly one of them",
        id="neither",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\ncondition:\n"},
        "vip.yml",
        "segments_sql/vip.yml: give the query in vip.sql or a builder tree under condition,"
        " exactly one of them",
        id="empty-condition",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\ncondition: [carrier, Irancell]\n"},
        "vip.yml",
        "segments_sql/vip.yml: condition must be a mapping (a builder tree)",
        id="condition-not-a-mapping",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\n", "vip.sql": "\n   \n\t\n"},
        "vip.yml",
        "segments_sql/vip.sql: empty; write one SELECT returning user_id",
        id="empty-sql",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\nrefresh: 30s\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: refresh: '30s' is not live or an interval like 15m, 6h or 1d",
        id="refresh-seconds",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\nrefresh: 15\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: refresh: 15 is not live or an interval like 15m, 6h or 1d",
        id="refresh-a-number",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\nrefresh: 0m\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: refresh: at least 1m",
        id="refresh-zero",
    ),
    pytest.param(
        {"vip.yml": "name: VIP\nrefresh: hourly\n", "vip.sql": SQL},
        "vip.yml",
        "segments_sql/vip.yml: refresh: 'hourly' is not live or an interval like 15m, 6h or 1d",
        id="refresh-a-word",
    ),
]


@pytest.mark.parametrize(("files", "yml", "message"), BAD_FILES)
def test_a_bad_file_is_refused_with_a_message_naming_it(
    folder: Path, files: dict, yml: str, message: str
) -> None:
    write(folder, files)

    with pytest.raises(DefinitionError) as caught:
        load_file_segment(folder / yml)
    assert str(caught.value) == message

    # The folder refuses it the same way (nothing is half-loaded).
    with pytest.raises(DefinitionError) as caught:
        load_file_segments(folder)
    assert str(caught.value) == message


def test_a_sql_file_without_its_yml_is_refused(folder: Path) -> None:
    write(folder, {"good.yml": "name: Good\n", "good.sql": SQL, "draft.sql": SQL})

    with pytest.raises(DefinitionError) as caught:
        load_file_segments(folder)

    assert str(caught.value) == "segments_sql/draft.sql: no draft.yml beside it"


def test_outside_the_project_the_message_names_the_full_path(tmp_path: Path) -> None:
    (tmp_path / "vip.yml").write_text("name: VIP\n")

    with pytest.raises(DefinitionError) as caught:
        load_file_segment(tmp_path / "vip.yml")

    assert str(caught.value).startswith(f"{tmp_path}/vip.yml: give the query in vip.sql")


# --- one list from files and the app ------------------------------------------------------------


def test_a_slug_in_a_file_and_in_the_app_is_refused(folder: Path) -> None:
    write(folder, {"vip.yml": "name: VIP\n", "vip.sql": SQL})
    write(folder, {"other.yml": "name: Other\n", "other.sql": SQL})
    files = load_file_segments(folder)
    app = [
        SegmentDefinition(slug="beta", name="Beta", kind="static", list_digest="d"),
        SegmentDefinition(slug="vip", name="VIP (app)", kind="sql", sql=SQL),
    ]

    with pytest.raises(DefinitionError) as caught:
        merge_segments(files, app)

    assert str(caught.value) == "segment 'vip' is defined twice: segments_sql/vip.sql and app"
    assert [d.slug for d in merge_segments(files, app[:1])] == ["beta", "other", "vip"]


# --- version -----------------------------------------------------------------------------------


def _sql_segment(**changes: object) -> SegmentDefinition:
    fields: dict = {"slug": "vip", "name": "VIP", "kind": "sql", "sql": SQL}
    fields.update(changes)
    return SegmentDefinition(**fields)


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "Very important people"},
        {"description": "for the spring campaign"},
        {"owner": "crm@safar.example"},
        {"refresh": timedelta(hours=6)},
        {"origin": "segments_sql/vip.sql"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_the_version_ignores_what_does_not_decide_members(changes: dict) -> None:
    assert _sql_segment(**changes).version == _sql_segment().version


@pytest.mark.parametrize(
    "changes",
    [
        {"sql": SQL.replace("Irancell", "Rightel")},
        {"sql": SQL + "  and is_known\n"},
        {"kind": "builder", "sql": None, "condition": CONDITION},
        {"kind": "static", "sql": None, "list_digest": "abc"},
    ],
    ids=["other-value", "extra-condition", "builder", "static"],
)
def test_the_version_changes_with_what_decides_members(changes: dict) -> None:
    assert _sql_segment(**changes).version != _sql_segment().version


def test_the_version_follows_the_files(folder: Path) -> None:
    write(folder, {"vip.yml": "name: VIP\n", "vip.sql": SQL})
    before = load_file_segment(folder / "vip.yml").version

    write(folder, {"vip.yml": "name: V.I.P.\ndescription: renamed\nowner: crm\nrefresh: 1d\n"})
    assert load_file_segment(folder / "vip.yml").version == before

    write(folder, {"vip.sql": SQL.replace("Irancell", "Rightel")})
    assert load_file_segment(folder / "vip.yml").version != before


def test_a_builder_version_does_not_depend_on_key_order() -> None:
    tree = {"all": [CONDITION, {"reachable": "sms"}]}
    swapped = {"trait": {"value": "Irancell", "op": "eq", "name": "carrier"}}
    reordered = {"all": [swapped, {"reachable": "sms"}]}
    changed = {"all": [CONDITION, {"reachable": "email"}]}

    def builder(condition: dict) -> SegmentDefinition:
        return SegmentDefinition(slug="b", name="B", kind="builder", condition=condition)

    assert builder(tree).version == builder(reordered).version
    assert builder(tree).version != builder(changed).version
    assert len(builder(tree).version) == 16


def test_a_static_list_version_follows_its_members_digest() -> None:
    def static(digest: str) -> SegmentDefinition:
        return SegmentDefinition(slug="s", name="S", kind="static", list_digest=digest)

    assert static("aaaa").version == static("aaaa").version
    assert static("aaaa").version != static("bbbb").version
