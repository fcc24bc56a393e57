"""Static segment lists ("specific users"): a CSV of user ids, emails or phones → people.

A marketer uploads a file with one key per row. :func:`parse_static_list` reads it and
normalises every row; :func:`match_static_list` finds the people in the warehouse mart
``dim_users`` with one join and reports the rows that found nobody, with a reason and their line.

The file:

- UTF-8 text (a BOM is fine; a UTF-16 file with its BOM, as Excel's "Unicode text" saves it, is
  read too), with a **header row**. The delimiter is whichever of ``,`` ``;`` and tab appears
  most in the header line (none: a single column).
- The key column is chosen by its header (trimmed, any case, spaces read as ``_``):
  ``user_id``/``id``/``person_id``/``customer_id`` hold user ids, ``email``/``e-mail``/
  ``email_address`` emails and ``phone``/``mobile``/``phone_number``/``msisdn`` phones.
  ``column=`` names the column instead. A single column with another header (or the chosen one)
  is read as emails when every value has an ``@``, as phones when every value is shaped like
  a phone number and at least one has a country code or the Iranian ``09`` prefix, and as user
  ids otherwise; ``kind=`` overrides that.
- Blank lines are skipped. Line numbers are physical lines of the file (the header is line 1),
  so a marketer can find a row in the editor they used.

Normalisation, so the same person written two ways is one key (see :func:`normalize_email`,
:func:`normalize_phone`): user ids are trimmed and otherwise exact; emails are trimmed and
lower-cased and must look like ``local@domain.tld``; phones become E.164 (``+`` and digits),
as ``dim_users`` stores them. A row that cannot be a key keeps its reason (``empty``,
``not an email address``, ``no country code`` …) and a key seen before is ``duplicate of line N``.

Matching: user ids match ``dim_users.user_id`` or ``dim_users.person_id`` (so anonymous people
can be listed by their person id), emails match ``lower(trim(email))`` and phones match the
stored phone normalised by the same rules in SQL. A key that matches more than one person is
ambiguous and selects nobody: a static list names people, and guessing would message someone
the marketer did not mean.

Example:
    >>> lst = parse_static_list("Email\\nSara@Example.com\\nnot-an-email\\nsara@example.com\\n")
    >>> lst.kind, lst.keys
    ('email', ['sara@example.com'])
    >>> [(r.line, r.problem) for r in lst.rows if r.problem]
    [(3, 'not an email address'), (4, 'duplicate of line 2')]
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import pyarrow as pa

Kind = Literal["user_id", "email", "phone"]

MAX_ROWS = 1_000_000
"""Rows a list may have; more is refused (split the list, or write a segment in SQL)."""

HEADERS: dict[str, Kind] = {
    "user_id": "user_id",
    "id": "user_id",
    "person_id": "user_id",
    "customer_id": "user_id",
    "email": "email",
    "e-mail": "email",
    "email_address": "email",
    "phone": "phone",
    "mobile": "phone",
    "phone_number": "phone",
    "msisdn": "phone",
}
"""Header (normalised by :func:`_header_name`) → the kind of key its column holds."""

DELIMITERS = (",", ";", "\t")

_NOUN: dict[str, str] = {"user_id": "id", "email": "email", "phone": "phone"}

# Characters that copy-paste from chat apps and Persian documents leaves around numbers and
# addresses: zero-width (non-)joiners, direction marks and embeddings, the BOM.
_INVISIBLE = (
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
)
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]")
# Persian (U+06F0…) and Arabic-Indic (U+0660…) digits, as a phone keyboard in Iran types them.
_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
_PHONE = re.compile(r"\+?\d+")
_PHONE_SHAPE = re.compile(r"\+?[\d\s\-().]{7,}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_IRAN_NATIONAL = re.compile(r"09\d{9}")
_IRAN_NO_PLUS = re.compile(r"989\d{9}")
_E164_DIGITS = range(7, 16)


class StaticListError(ValueError):
    """A file that cannot be used as a list at all; the message says what and where (line)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{message}")
        self.line = line
        self.reason = message


@dataclass(frozen=True)
class ListRow:
    """One data row: ``key`` normalised, or ``problem`` saying why the row has no usable key."""

    line: int
    raw: str
    key: str | None
    problem: str | None


@dataclass(frozen=True)
class StaticList:
    """A parsed list: what its keys are, which column they came from, and every row."""

    kind: Kind
    column: str
    delimiter: str
    rows: list[ListRow]

    @property
    def keys(self) -> list[str]:
        """The distinct usable keys, in file order (duplicates are already rows with a problem)."""
        return [r.key for r in self.rows if r.key is not None and r.problem is None]

    @property
    def problems(self) -> list[ListRow]:
        """Rows without a usable key, in file order."""
        return [r for r in self.rows if r.problem is not None]


@dataclass(frozen=True)
class Unmatched:
    """A row that selected nobody, and why."""

    line: int
    raw: str
    reason: str


@dataclass(frozen=True)
class MatchReport:
    """What a list matched: the people, how many rows found exactly one, and the rest."""

    kind: Kind
    person_ids: list[str]
    matched_rows: int
    unmatched: list[Unmatched] = field(default_factory=list)

    def unmatched_csv(self) -> str:
        """The unmatched rows as CSV (``line,value,reason``), for the marketer to download.

        A value that a spreadsheet would run as a formula gets a leading ``'``; phone numbers
        (``+98…``) are left alone.

        Example:
            >>> report = MatchReport("email", [], 0, [Unmatched(2, "=1+1", "not an email address")])
            >>> print(report.unmatched_csv(), end="")
            line,value,reason
            2,'=1+1,not an email address
        """
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["line", "value", "reason"])
        for row in self.unmatched:
            writer.writerow([row.line, _spreadsheet_safe(row.raw), row.reason])
        return out.getvalue()


def _spreadsheet_safe(value: str) -> str:
    # Excel and LibreOffice evaluate a cell starting with = + - @ (or a tab/CR before one).
    if value[:1] in ("=", "@", "\t", "\r") or (
        value[:1] in ("+", "-") and not _PHONE_SHAPE.fullmatch(value)
    ):
        return "'" + value
    return value


def _strip(value: str) -> str:
    """Trimmed of whitespace and invisible marks at both ends (inside, a ZWNJ may be meant)."""
    return value.strip().strip(_INVISIBLE).strip()


def normalize_email(value: str) -> tuple[str | None, str | None]:
    """``(key, None)`` for a usable email address, else ``(None, problem)``.

    Trimmed and lower-cased; checked loosely (``local@domain.tld``): the warehouse decides
    whether anyone has it.

    Example:
        >>> normalize_email("  Sara.Ahmadi@Gmail.COM ")
        ('sara.ahmadi@gmail.com', None)
        >>> normalize_email("sara@localhost")
        (None, 'not an email address')
    """
    # An address cannot contain invisible marks, so they are pasting debris wherever they are.
    email = _INVISIBLE_RE.sub("", value).strip().lower()
    if not email:
        return None, "empty"
    if not _EMAIL.fullmatch(email):
        return None, "not an email address"
    return email, None


def normalize_phone(value: str) -> tuple[str | None, str | None]:
    """``(key, None)`` with the number in E.164 (``+`` and 7–15 digits), else ``(None, problem)``.

    Persian and Arabic digits become ASCII; spaces, dashes, dots and parentheses go, and so does
    a trunk ``(0)`` written after the country code. ``00`` is the international prefix, so it
    becomes ``+``. Iranian numbers are also read without one: ``09xxxxxxxxx`` (national form)
    and ``989xxxxxxxxx`` (country code without the ``+``), and ``+98 0…`` loses the 0 that
    people type out of habit. Any other number without a country code is a problem, since
    guessing the country would match the wrong person.

    Example:
        >>> normalize_phone("0935 755 3971")
        ('+989357553971', None)
        >>> normalize_phone("۰۹۳۵۷۵۵۳۹۷۱")
        ('+989357553971', None)
        >>> normalize_phone("(416) 216-5674")
        (None, 'no country code')
    """
    phone = _INVISIBLE_RE.sub("", value).strip().translate(_DIGITS)
    if not phone:
        return None, "empty"
    phone = _PHONE_SEPARATORS.sub("", phone.replace("(0)", ""))
    if not _PHONE.fullmatch(phone):
        return None, "not a phone number"
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    elif _IRAN_NATIONAL.fullmatch(phone):
        phone = "+98" + phone[1:]
    elif _IRAN_NO_PLUS.fullmatch(phone):
        phone = "+" + phone
    elif not phone.startswith("+"):
        return None, "no country code"
    if phone.startswith("+980"):
        phone = "+98" + phone[4:]
    if len(phone) - 1 not in _E164_DIGITS:
        return None, "not a phone number"
    return phone, None


def normalize_user_id(value: str) -> tuple[str | None, str | None]:
    """``(key, None)`` with the id trimmed (ids are otherwise exact), else ``(None, "empty")``."""
    user_id = _strip(value)
    return (user_id, None) if user_id else (None, "empty")


NORMALIZERS = {"user_id": normalize_user_id, "email": normalize_email, "phone": normalize_phone}


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise StaticListError("not valid UTF-16 text (it starts with a UTF-16 BOM)") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise StaticListError(
            f"not UTF-8 text (byte 0x{byte}); save the file as CSV UTF-8", line
        ) from None


def _header_name(name: str) -> str:
    """How a header is compared: trimmed, lower case, runs of spaces as ``_``.

    Example:
        >>> _header_name("  Phone Number ")
        'phone_number'
    """
    return "_".join(_strip(name).lower().split())


def _sniff_delimiter(header_line: str) -> str:
    """The one of ``,`` ``;`` tab that appears most in the header line; ``,`` when none does.

    Example:
        >>> _sniff_delimiter("email;name"), _sniff_delimiter("id\\tname"), _sniff_delimiter("id")
        (';', '\\t', ',')
    """
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties go to the earlier one
    return best if counts[best] else ","


def _detect_kind(values: list[str]) -> Kind:
    """The kind of keys in a column whose header does not say: from the values themselves.

    Emails are recognised by an ``@`` in every value. Phones need the shape of a number in
    every value and, in at least one, a country code or the Iranian national prefix: a column
    of plain numbers is more likely ids than phones without their country.

    Example:
        >>> _detect_kind(["a@x.com", "b@y"]), _detect_kind(["0912 123 4567", "+905351234567"])
        ('email', 'phone')
        >>> _detect_kind(["1234567", "7654321"])
        'user_id'
    """
    present = [v for v in (_strip(v) for v in values) if v]
    if not present:
        return "user_id"
    if all("@" in v for v in present):
        return "email"
    digits = [v.translate(_DIGITS) for v in present]
    if all(_PHONE_SHAPE.fullmatch(v) for v in digits) and any(
        normalize_phone(v)[0] is not None for v in digits
    ):
        return "phone"
    return "user_id"


def _read_rows(text: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """Non-blank CSV records with the physical line each starts on; the header is the first."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[tuple[int, list[str]]] = []
    line = 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            # The header is not a row; the limit is checked as rows come, not after reading all.
            if len(records) > MAX_ROWS:
                raise StaticListError(f"more than {MAX_ROWS:,} rows; split the list", start)
            records.append((start, record))
    except csv.Error as exc:
        raise StaticListError(f"not readable as CSV: {exc}", line) from None
    return records


def _choose_column(
    header: list[str], header_line: int, column: str | None
) -> tuple[int, Kind | None]:
    """The index of the key column and its kind from the header (``None``: decide by values)."""
    names = [_header_name(h) for h in header]
    listed = ", ".join(repr(_strip(h)) for h in header)
    if column is not None:
        wanted = _header_name(column)
        found = [i for i, n in enumerate(names) if n == wanted]
        if not found:
            raise StaticListError(f"no column {column!r}; the header has {listed}", header_line)
        if len(found) > 1:
            raise StaticListError(f"column {column!r} appears {len(found)} times", header_line)
        return found[0], HEADERS.get(wanted)
    candidates = [i for i, n in enumerate(names) if n in HEADERS]
    if len(candidates) == 1:
        return candidates[0], HEADERS[names[candidates[0]]]
    if len(candidates) > 1:
        several = ", ".join(repr(_strip(header[i])) for i in candidates)
        raise StaticListError(
            f"more than one column could be the key ({several}); choose one", header_line
        )
    if len([n for n in names if n]) == 1:
        only = next(i for i, n in enumerate(names) if n)
        if "@" in header[only] or normalize_phone(header[only])[0] is not None:
            # A list pasted without its header: the first person would be silently dropped.
            raise StaticListError(
                f"the first line is a value ({_strip(header[only])!r}), not a header; add a "
                "first line naming the column, such as email, phone or user_id",
                header_line,
            )
        return only, None
    expected = ", ".join(HEADERS)
    raise StaticListError(
        f"no column to match on; name one of {expected} (the header has {listed})", header_line
    )


def parse_static_list(
    data: bytes | str, *, column: str | None = None, kind: Kind | None = None
) -> StaticList:
    """Read an uploaded list: choose the key column and kind, normalise and check every row.

    Args:
        data: The file's bytes (UTF-8, BOM allowed) or its text.
        column: The header of the key column; by default the one column whose header names a
            kind of key (see :data:`HEADERS`), or the only column.
        kind: What the keys are; by default from the header, else from the values.

    Raises:
        StaticListError: The file cannot be used at all (empty, not UTF-8, no key column or
            several and none chosen, more than :data:`MAX_ROWS` rows).

    Example:
        >>> lst = parse_static_list(b"\\xef\\xbb\\xbfmobile;name\\n0935 755 3971;Sara\\n;Ali\\n")
        >>> lst.kind, lst.column, lst.delimiter
        ('phone', 'mobile', ';')
        >>> [(r.line, r.key, r.problem) for r in lst.rows]
        [(2, '+989357553971', None), (3, None, 'empty')]
    """
    text = _decode(data)
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise StaticListError("the file is empty; expected a header row and one value a line")
    delimiter = _sniff_delimiter(first)
    records = _read_rows(text, delimiter)
    if not records:  # only delimiters and spaces
        raise StaticListError("the file is empty; expected a header row and one value a line")
    (header_line, header), body = records[0], records[1:]
    if not body:
        raise StaticListError("no rows below the header", header_line)
    index, header_kind = _choose_column(header, header_line, column)
    values = [record[index] if index < len(record) else "" for _, record in body]
    chosen: Kind = kind or header_kind or _detect_kind(values)
    normalize = NORMALIZERS[chosen]
    seen: dict[str, int] = {}
    rows: list[ListRow] = []
    for (line, _), raw in zip(body, values, strict=True):
        key, problem = normalize(raw)
        if key is not None and key in seen:
            key, problem = None, f"duplicate of line {seen[key]}"
        elif key is not None:
            seen[key] = line
        rows.append(ListRow(line=line, raw=raw, key=key, problem=problem))
    return StaticList(kind=chosen, column=_strip(header[index]), delimiter=delimiter, rows=rows)


# What a stored phone becomes before it is compared: normalize_phone's rewriting in SQL (its
# checks are not needed: a malformed stored value can only fail to equal a valid key).
_PHONE_SQL = r"""
with_plus as (
    select
        person_id,
        regexp_replace(
            regexp_replace(
                translate(
                    replace(phone, '(0)', ''), '۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩', '01234567890123456789'
                ),
                '[\s\-().\x{200B}-\x{200F}\x{202A}-\x{202E}\x{2066}-\x{2069}\x{FEFF}]', '', 'g'
            ),
            '^00', '+'
        ) as phone
    from dim_users
    where phone is not null
),
people as (
    select
        person_id,
        case
            when regexp_full_match(phone, '09\d{9}') then '+98' || phone[2:]
            when regexp_full_match(phone, '989\d{9}') then '+' || phone
            when phone like '+980%' then '+98' || phone[5:]
            else phone
        end as key
    from with_plus
)"""

_PEOPLE_SQL: dict[str, str] = {
    # Known people have user_id = person_id; listing by person id reaches anonymous ones too.
    "user_id": """
people as (
    select person_id, user_id as key from dim_users where user_id is not null
    union
    select person_id, person_id as key from dim_users
)""",
    "email": """
people as (
    select person_id, lower(trim(email)) as key from dim_users where email is not null
)""",
    "phone": _PHONE_SQL,
}


def match_sql(kind: Kind, keys_relation: str) -> str:
    """The one query that matches the registered keys: per key, how many people and which.

    ``keys_relation`` is a relation with one ``key`` column. Keys that match nobody are absent.
    """
    return f"""
with
{_PEOPLE_SQL[kind].strip()},
matches as (
    select distinct keys.key, people.person_id
    from {keys_relation} as keys
    inner join people on people.key = keys.key
)
select key, count(*) as people, min(person_id) as person_id
from matches
group by key
"""


def match_static_list(con: duckdb.DuckDBPyConnection, static_list: StaticList) -> MatchReport:
    """Find the people of ``static_list`` in ``dim_users`` with one join, and say who is missing.

    Args:
        con: A connection to the warehouse where ``dim_users`` resolves unqualified (as
            :func:`safar.warehouse.connect` gives, read-only is enough).
        static_list: From :func:`parse_static_list`.

    Returns:
        The matched person ids (sorted, distinct), how many rows matched exactly one person, and
        every other row, in file order, with its reason: the parsing problem, ``no user with
        this email`` (``id``, ``phone``), or ``matches N people``.
    """
    keys = static_list.keys
    found: dict[str, tuple[int, str]] = {}
    if keys:
        # The keys go in as one Arrow relation and are joined once: never a query per row.
        name = f"static_list_keys_{secrets.token_hex(6)}"
        con.register(name, pa.table({"key": pa.array(keys, pa.string())}))
        try:
            result = con.sql(match_sql(static_list.kind, name)).fetchall()
        finally:
            con.unregister(name)
        found = {key: (people, person_id) for key, people, person_id in result}
    noun = _NOUN[static_list.kind]
    person_ids: set[str] = set()
    matched = 0
    unmatched: list[Unmatched] = []
    for row in static_list.rows:
        if row.problem is not None or row.key is None:
            unmatched.append(Unmatched(row.line, row.raw, row.problem or "empty"))
            continue
        people, person_id = found.get(row.key, (0, ""))
        if people == 1:
            matched += 1
            person_ids.add(person_id)
        elif people == 0:
            unmatched.append(Unmatched(row.line, row.raw, f"no user with this {noun}"))
        else:
            unmatched.append(Unmatched(row.line, row.raw, f"matches {people} people"))
    return MatchReport(
        kind=static_list.kind,
        person_ids=sorted(person_ids),
        matched_rows=matched,
        unmatched=unmatched,
    )
