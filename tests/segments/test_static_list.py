"""Static segment lists: parsing rules row by row, and matching on the real demo warehouse."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator

import duckdb
import pytest

from safar.config import SafarHome
from safar.segments import static_list as sl
from safar.segments.static_list import (
    ListRow,
    MatchReport,
    StaticListError,
    Unmatched,
    match_static_list,
    normalize_email,
    normalize_phone,
    parse_static_list,
)
from safar.warehouse import connect

# --- parsing ---------------------------------------------------------------------------------

# (header, a value, kind, key)
HEADER_KINDS = [
    ("user_id", "u1", "user_id", "u1"),
    ("ID", "u1", "user_id", "u1"),
    (" Person_ID ", "u1", "user_id", "u1"),
    ("customer_id", " 42 ", "user_id", "42"),
    ("user id", "u1", "user_id", "u1"),
    ("Email", "Sara@X.com", "email", "sara@x.com"),
    ("E-Mail", "sara@x.com", "email", "sara@x.com"),
    ("email_address", "sara@x.com", "email", "sara@x.com"),
    ("Email Address", "sara@x.com", "email", "sara@x.com"),
    ("phone", "09121234567", "phone", "+989121234567"),
    ("MOBILE", "09121234567", "phone", "+989121234567"),
    ("phone_number", "+905351234567", "phone", "+905351234567"),
    ("Phone Number", "+905351234567", "phone", "+905351234567"),
    ("msisdn", "989121234567", "phone", "+989121234567"),
]


@pytest.mark.parametrize(("header", "value", "kind", "key"), HEADER_KINDS)
def test_the_header_names_the_kind(header: str, value: str, kind: str, key: str) -> None:
    lst = parse_static_list(f"name,{header}\nSara,{value}\n")
    assert (lst.kind, lst.column, lst.keys) == (kind, header.strip(), [key])


# (text, delimiter, keys): the delimiter that appears most in the header line wins.
DELIMITED = [
    ("name,email\nSara,s@x.com\n", ",", ["s@x.com"]),
    ("name;email\nAhmadi, Sara;s@x.com\n", ";", ["s@x.com"]),
    ("name\temail\nAhmadi; Sara, Dr\ts@x.com\n", "\t", ["s@x.com"]),
    ('name,email\n"Ahmadi, Sara",s@x.com\n', ",", ["s@x.com"]),
    ("email\ns@x.com\nt@x.com\n", ",", ["s@x.com", "t@x.com"]),
    ("a;b;email\n1;2;s@x.com,y\n", ";", ["s@x.com,y"]),
]


@pytest.mark.parametrize(("text", "delimiter", "keys"), DELIMITED)
def test_the_delimiter_is_sniffed_from_the_header(text: str, delimiter: str, keys: list) -> None:
    lst = parse_static_list(text, kind="user_id")
    assert (lst.delimiter, lst.keys) == (delimiter, keys)


@pytest.mark.parametrize(
    "data",
    [
        codecs.BOM_UTF8 + b"email\ns@x.com\n",
        "\ufeffemail\ns@x.com\n",
        b"email\r\ns@x.com\r\n",
        "email\ts\n s@x.com\t1\n".encode("utf-16"),  # Excel's "Unicode text": BOM + UTF-16
    ],
    ids=["utf8-bom-bytes", "bom-str", "crlf", "utf16-bom"],
)
def test_a_bom_and_line_endings_are_tolerated(data: bytes | str) -> None:
    lst = parse_static_list(data)
    assert (lst.column, lst.kind, lst.keys) == ("email", "email", ["s@x.com"])


# (written, key, problem)
PHONES = [
    ("+989357553971", "+989357553971", None),
    ("09357553971", "+989357553971", None),
    ("0935 755 3971", "+989357553971", None),
    ("0935-755-3971", "+989357553971", None),
    ("(0935) 755.3971", "+989357553971", None),
    ("989357553971", "+989357553971", None),
    ("00989357553971", "+989357553971", None),
    ("+98 (0)935 755 3971", "+989357553971", None),
    ("+98 0935 755 3971", "+989357553971", None),
    ("۰۹۳۵۷۵۵۳۹۷۱", "+989357553971", None),
    ("٠٩٣٥٧٥٥٣٩٧١", "+989357553971", None),
    ("\u200e+98 935 755 3971\u200f", "+989357553971", None),
    (" +1 (416) 216-5674 ", "+14162165674", None),
    ("0044 20 7946 0958", "+442079460958", None),
    ("+90 535 825 9676", "+905358259676", None),
    ("(416) 216-5674", None, "no country code"),
    ("9357553971", None, "no country code"),
    ("0212345678", None, "no country code"),
    ("12345", None, "no country code"),
    ("+12345", None, "not a phone number"),
    ("+1234567890123456", None, "not a phone number"),
    ("+98 935 abc", None, "not a phone number"),
    ("9.89357553971E+11", None, "not a phone number"),
    ("0935+7553971", None, "not a phone number"),
    ("", None, "empty"),
    ("   ", None, "empty"),
]


@pytest.mark.parametrize(("written", "key", "problem"), PHONES)
def test_phone_normalisation(written: str, key: str | None, problem: str | None) -> None:
    assert normalize_phone(written) == (key, problem)


# (written, key, problem)
EMAILS = [
    ("sara@example.com", "sara@example.com", None),
    ("  Sara.Ahmadi+news@Mail.Example.CO.ir ", "sara.ahmadi+news@mail.example.co.ir", None),
    ("sara\u200c@example.com", "sara@example.com", None),
    ("sara@localhost", None, "not an email address"),
    ("sara@example.", None, "not an email address"),
    ("sara@@example.com", None, "not an email address"),
    ("sara ahmadi@example.com", None, "not an email address"),
    ("Sara <sara@example.com>", None, "not an email address"),
    ("@example.com", None, "not an email address"),
    ("sara", None, "not an email address"),
    ("", None, "empty"),
]


@pytest.mark.parametrize(("written", "key", "problem"), EMAILS)
def test_email_normalisation(written: str, key: str | None, problem: str | None) -> None:
    assert normalize_email(written) == (key, problem)


def test_rows_keep_their_physical_line_raw_value_and_problem() -> None:
    text = (
        "note,email\r\n"  # 1
        "first,Sara@X.com\r\n"  # 2
        "\r\n"  # 3: blank lines are skipped
        '"two\nlines",bad-address\r\n'  # 4-5: the row starts on line 4
        "empty,\r\n"  # 6
        "short\r\n"  # 7: a row without the column is empty too
        ",,\r\n"  # 8: only delimiters: blank
        "again, sara@x.com \r\n"  # 9
        "other,ali@x.com\r\n"  # 10
    )
    lst = parse_static_list(text)
    assert lst.rows == [
        ListRow(2, "Sara@X.com", "sara@x.com", None),
        ListRow(4, "bad-address", None, "not an email address"),
        ListRow(6, "", None, "empty"),
        ListRow(7, "", None, "empty"),
        ListRow(9, " sara@x.com ", None, "duplicate of line 2"),
        ListRow(10, "ali@x.com", "ali@x.com", None),
    ]
    assert lst.keys == ["sara@x.com", "ali@x.com"]
    assert [r.line for r in lst.problems] == [4, 6, 7, 9]


def test_duplicates_are_found_after_normalisation() -> None:
    lst = parse_static_list("mobile\n09121234567\n+98 912 123 4567\n00989121234567\n0912\n")
    assert [(r.line, r.key, r.problem) for r in lst.rows] == [
        (2, "+989121234567", None),
        (3, None, "duplicate of line 2"),
        (4, None, "duplicate of line 2"),
        (5, None, "no country code"),
    ]


def test_user_ids_are_trimmed_and_otherwise_exact() -> None:
    lst = parse_static_list("user_id\n U-1 \nu-1\n\u200eکاربر\u200c۱\u200f\nU-1\n")
    assert [(r.key, r.problem) for r in lst.rows] == [
        ("U-1", None),
        ("u-1", None),
        ("کاربر\u200c۱", None),  # the ZWNJ inside is part of the Persian word
        (None, "duplicate of line 2"),
    ]


# A single column with a header that does not name a kind: (text, kind).
DETECTED = [
    ("contact\nsara@x.com\nALI@X.COM\n", "email"),
    ("contact\nsara@x.com\nnot an address@\n", "email"),
    ("contact\n0912 123 4567\n+90 535 825 9676\n", "phone"),
    ("contact\n۰۹۱۲۱۲۳۴۵۶۷\n", "phone"),
    ("contact\n0912 123 4567\n416 216 5674\n", "phone"),
    ("contact\n1234567\n7654321\n", "user_id"),  # numbers without a country: ids
    ("contact\nsara@x.com\n09121234567\n", "user_id"),
    ("contact\nu1\n\n", "user_id"),
]


@pytest.mark.parametrize(("text", "kind"), DETECTED)
def test_an_unknown_single_column_is_read_by_its_values(text: str, kind: str) -> None:
    assert parse_static_list(text).kind == kind


def test_column_and_kind_can_be_chosen() -> None:
    text = "email,phone,contact\na@x.com,09121234567,b@y.com\n"
    assert parse_static_list(text, column="Phone").keys == ["+989121234567"]
    assert parse_static_list(text, column="email").keys == ["a@x.com"]
    chosen = parse_static_list(text, column="contact")
    assert (chosen.column, chosen.kind, chosen.keys) == ("contact", "email", ["b@y.com"])
    forced = parse_static_list("email\na@x.com\n", kind="user_id")
    assert (forced.kind, forced.keys) == ("user_id", ["a@x.com"])


# (data, message, line)
ERRORS = [
    (b"", "the file is empty", None),
    ("\n  \n\n", "the file is empty", None),
    (",,\n , \n", "the file is empty", None),
    ("email\n", "no rows below the header", 1),
    ("\n\nemail\n\n", "no rows below the header", 3),
    (
        b"email\na@x.com\n\xff\xfe@x.com\n",
        "not UTF-8 text (byte 0xff); save the file as CSV UTF-8",
        3,
    ),
    (b"email\nsara\xe9@x.com\n", "not UTF-8 text (byte 0xe9)", 2),
    (
        "name,city\nSara,Tabriz\n",
        "no column to match on; name one of user_id, id, person_id, customer_id, email, e-mail,"
        " email_address, phone, mobile, phone_number, msisdn (the header has 'name', 'city')",
        1,
    ),
    (
        "id,Email,mobile\n1,a@x.com,0912\n",
        "more than one column could be the key ('id', 'Email', 'mobile'); choose one",
        1,
    ),
    ("email,EMAIL\na@x.com,b@x.com\n", "more than one column could be the key", 1),
    (
        "sara@x.com\nali@x.com\n",
        "the first line is a value ('sara@x.com'), not a header; add a first line naming the"
        " column, such as email, phone or user_id",
        1,
    ),
    ("+98 912 123 4567\n09121234568\n", "the first line is a value ('+98 912 123 4567')", 1),
    ("email\n" + "x" * 200_000 + "\n", "not readable as CSV: field larger than field limit", 2),
]


@pytest.mark.parametrize(("data", "message", "line"), ERRORS)
def test_unusable_files_are_refused_with_what_and_where(
    data: bytes | str, message: str, line: int | None
) -> None:
    with pytest.raises(StaticListError) as caught:
        parse_static_list(data)
    assert caught.value.line == line
    assert caught.value.reason.startswith(message)
    where = f"line {line}: " if line is not None else ""
    assert str(caught.value) == where + caught.value.reason


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("phone", "line 1: no column 'phone'; the header has 'email', 'name', 'email'"),
        ("email", "line 1: column 'email' appears 2 times"),
    ],
)
def test_a_chosen_column_must_exist_once(column: str, message: str) -> None:
    with pytest.raises(StaticListError, match=message):
        parse_static_list("email,name,email\na@x.com,Sara,b@x.com\n", column=column)


def test_too_many_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sl, "MAX_ROWS", 3)
    assert len(parse_static_list("id\n1\n2\n\n3\n").rows) == 3
    with pytest.raises(StaticListError) as caught:
        parse_static_list("id\n1\n2\n\n3\n4\n5\n")
    assert str(caught.value) == "line 6: more than 3 rows; split the list"


def test_the_real_limit_is_a_million() -> None:
    assert sl.MAX_ROWS == 1_000_000


def test_unmatched_csv_is_downloadable_and_spreadsheet_safe() -> None:
    report = MatchReport(
        "phone",
        [],
        0,
        [
            Unmatched(2, "+989000000000", "no user with this phone"),
            Unmatched(3, '=HYPERLINK("http://x")', "not a phone number"),
            Unmatched(4, "+cmd|' /C calc'!A0", "not a phone number"),
            Unmatched(5, "a, b", "duplicate of line 2"),
        ],
    )
    text = report.unmatched_csv()
    assert list(csv.reader(io.StringIO(text))) == [
        ["line", "value", "reason"],
        ["2", "+989000000000", "no user with this phone"],
        ["3", '\'=HYPERLINK("http://x")', "not a phone number"],
        ["4", "'+cmd|' /C calc'!A0", "not a phone number"],
        ["5", "a, b", "duplicate of line 2"],
    ]


# --- matching on the demo warehouse ----------------------------------------------------------


@pytest.fixture(scope="module")
def con(demo_home: SafarHome) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(demo_home, read_only=True)
    yield connection
    connection.close()


def _absent(con: duckdb.DuckDBPyConnection, column: str, value: str) -> str:
    """``value``, after checking that no row of dim_users has it (so "unknown" really is)."""
    count = con.sql(f"select count(*) from dim_users where {column} = ?", params=[value]).fetchone()
    assert count == (0,)
    return value


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def test_emails_match_on_the_warehouse(con: duckdb.DuckDBPyConnection) -> None:
    people = con.sql(
        "select person_id, email from dim_users where email is not null order by person_id limit 3"
    ).fetchall()
    (p1, e1), (p2, e2), (p3, e3) = people
    unknown = _absent(con, "lower(email)", "nobody.here@example.com")
    text = _csv(
        [
            ["name", "Email Address"],  # 1
            ["first", e1],  # 2
            ["shouting", f"  {e2.upper()} "],  # 3
            ["unknown", unknown],  # 4
            ["malformed", "not-an-email"],  # 5
            ["again", e1.upper()],  # 6
            ["empty", ""],  # 7
            ["third", e3],  # 8
        ]
    )
    report = match_static_list(con, parse_static_list(text.encode()))
    assert report.kind == "email"
    assert report.person_ids == sorted([p1, p2, p3])
    assert report.matched_rows == 3
    assert report.unmatched == [
        Unmatched(4, unknown, "no user with this email"),
        Unmatched(5, "not-an-email", "not an email address"),
        Unmatched(6, e1.upper(), "duplicate of line 2"),
        Unmatched(7, "", "empty"),
    ]
    assert report.unmatched_csv().splitlines()[1:] == [
        f"4,{unknown},no user with this email",
        "5,not-an-email,not an email address",
        f"6,{e1.upper()},duplicate of line 2",
        "7,,empty",
    ]


def test_phones_match_on_the_warehouse_however_written(con: duckdb.DuckDBPyConnection) -> None:
    iranian = con.sql(
        "select person_id, phone from dim_users where phone like '+989%' order by person_id limit 3"
    ).fetchall()
    (p1, ph1), (p2, ph2), (p3, ph3) = iranian
    foreign_person, foreign_phone = con.sql(
        "select person_id, phone from dim_users where phone not like '+98%' order by person_id "
        "limit 1"
    ).fetchone()
    national = "0" + ph1.removeprefix("+98")  # 09xxxxxxxxx
    spaced = f"{ph2[:3]} {ph2[3:6]} {ph2[6:9]} {ph2[9:]}"
    unknown = _absent(con, "phone", "+15550000000")
    text = _csv(
        [
            ["mobile"],  # 1
            [national],  # 2
            [spaced],  # 3
            ["00" + ph3.removeprefix("+")],  # 4
            [foreign_phone],  # 5
            [unknown],  # 6
            ["4162165674"],  # 7
            ["call me"],  # 8
            [ph1],  # 9
        ]
    )
    report = match_static_list(con, parse_static_list(text))
    assert report.kind == "phone"
    assert report.person_ids == sorted([p1, p2, p3, foreign_person])
    assert report.matched_rows == 4
    assert report.unmatched == [
        Unmatched(6, unknown, "no user with this phone"),
        Unmatched(7, "4162165674", "no country code"),
        Unmatched(8, "call me", "not a phone number"),
        Unmatched(9, ph1, "duplicate of line 2"),
    ]


def test_user_ids_match_user_id_or_person_id(con: duckdb.DuckDBPyConnection) -> None:
    known = [
        r[0]
        for r in con.sql(
            "select user_id from dim_users where user_id is not null order by user_id limit 2"
        ).fetchall()
    ]
    anonymous = con.sql(
        "select person_id from dim_users where user_id is null order by person_id limit 1"
    ).fetchone()[0]
    unknown = _absent(con, "person_id", "no-such-user")
    text = _csv(
        [
            ["customer_id", "note"],  # 1
            [f" {known[0]} ", "padded"],  # 2
            [anonymous, "anonymous, by person id"],  # 3
            [unknown, "nobody"],  # 4
            [known[1], "second"],  # 5
            ["", "forgot the id"],  # 6
            [known[0], "again"],  # 7
        ]
    )
    report = match_static_list(con, parse_static_list(text))
    assert report.kind == "user_id"
    assert report.person_ids == sorted([known[0], known[1], anonymous])
    assert report.matched_rows == 3
    assert report.unmatched == [
        Unmatched(4, unknown, "no user with this id"),
        Unmatched(6, "", "empty"),
        Unmatched(7, known[0], "duplicate of line 2"),
    ]


def test_every_person_in_one_list(con: duckdb.DuckDBPyConnection) -> None:
    everyone = [r[0] for r in con.sql("select person_id from dim_users").fetchall()]
    strangers = [f"stranger-{i}" for i in range(1000)]
    report = match_static_list(con, parse_static_list("\n".join(["id", *everyone, *strangers])))
    assert report.person_ids == sorted(everyone)
    assert report.matched_rows == len(everyone) == 2000
    assert [u.line for u in report.unmatched] == list(range(2002, 3002))
    # The keys were registered for the one query only (a registered relation is a temp view).
    leftover = "select count(*) from duckdb_views() where view_name like 'static_list_keys%'"
    assert con.sql(leftover).fetchone() == (0,)


def test_a_list_without_usable_rows_runs_no_query(con: duckdb.DuckDBPyConnection) -> None:
    report = match_static_list(con, parse_static_list("email\nnope\n\nnope\n"))
    assert report == MatchReport(
        "email",
        [],
        0,
        [
            Unmatched(2, "nope", "not an email address"),
            Unmatched(4, "nope", "not an email address"),
        ],
    )


# --- ambiguity: a hand-built dim_users (the same query as on the warehouse) ------------------


@pytest.fixture
def shared() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.sql(
        "create table dim_users (person_id varchar, user_id varchar, email varchar, phone varchar)"
    )
    connection.sql(
        """
        insert into dim_users values
            ('p1', 'p1', 'family@x.com', '0912 123 4567'),
            ('p2', 'p2', ' Family@X.com ', '+989121234567'),
            ('p3', 'p3', 'FAMILY@x.com', '+90 535 825 9676'),
            ('p4', 'p4', 'solo@x.com', '00905358259676'),
            ('p5', 'p5', 'other@x.com', '989351112233'),
            ('p6', null, null, '+98 (0)936 111 2233'),
            ('p7', 'p4x', null, null),
            ('p4x', null, null, null)
        """
    )
    yield connection
    connection.close()


@pytest.mark.parametrize(
    ("text", "person_ids", "unmatched"),
    [
        (
            "email\nfamily@x.com\nsolo@x.com\nother@X.com\n",
            ["p4", "p5"],
            [Unmatched(2, "family@x.com", "matches 3 people")],
        ),
        (
            "phone\n+989121234567\n+905358259676\n09351112233\n+989361112233\n",
            ["p5", "p6"],
            [
                Unmatched(2, "+989121234567", "matches 2 people"),
                Unmatched(3, "+905358259676", "matches 2 people"),
            ],
        ),
        # p7's user id is p4x, which is also the person id of an anonymous p4x.
        ("user_id\np4x\np1\np6\n", ["p1", "p6"], [Unmatched(2, "p4x", "matches 2 people")]),
    ],
    ids=["email", "phone", "user_id"],
)
def test_a_key_matching_several_people_selects_none(
    shared: duckdb.DuckDBPyConnection, text: str, person_ids: list, unmatched: list
) -> None:
    report = match_static_list(shared, parse_static_list(text))
    assert report.person_ids == person_ids
    assert report.unmatched == unmatched
    assert report.matched_rows == len(parse_static_list(text).rows) - len(unmatched)
