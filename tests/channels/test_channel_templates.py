"""Message templates, golden-style: what each field renders to, and the exact problem (field, line,
message) when it cannot — Persian text, Jalali dates, money, RTL, the sandbox and the limits."""

from __future__ import annotations

import json
import locale
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal

import jdatetime
import pytest

from channels.templates import (
    Problem,
    TemplateError,
    build_context,
    compile_templates,
    direction,
    preview,
    render,
)

ALI = {"person_id": "p-17", "first_name": "علی", "city": "Tabriz", "balance": 1250000}
NOW = datetime(2026, 3, 20, 23, 0, tzinfo=UTC)  # 02:30 on 1 Farvardin 1405 in Tehran
ORDER = {
    "name": "Order Completed",
    "timestamp": "2026-03-01T08:15:00Z",
    "properties": {"order_id": "A-1042", "total": 48500000, "coupon": None},
}
JOURNEY = {
    "id": "j1",
    "name": "Welcome",
    "steps": {"check_credit": {"status": 200, "body": {"credit": 150000, "tier": "gold"}}},
}


def _render(fields, person=ALI, event=None, journey=None):
    return preview(fields, person, event=event, journey=journey, now=NOW)


def _problems(fields, person=ALI, event=None, journey=None) -> list[Problem]:
    with pytest.raises(TemplateError) as caught:
        _render(fields, person, event, journey)
    return caught.value.problems


@pytest.mark.parametrize(
    ("source", "person", "expected"),
    [
        ("سلام {{ user.first_name }}، خوش آمدید", ALI, "سلام علی، خوش آمدید"),
        ('سلام {{ user.first_name | default("دوست") }}', {"person_id": "p1"}, "سلام دوست"),
        ('سلام {{ user.first_name | default("دوست") }}', {"first_name": None}, "سلام دوست"),
        ('{{ user.address.city | default("تهران") }}', ALI, "تهران"),
        ("{{ user.items }}/{{ user['first_name'] }}", {"items": 3, "first_name": "Sara"}, "3/Sara"),
        ("{{ user.person_id }}", ALI, "p-17"),
        (
            "{% if user.city == 'Tabriz' %}\nسلام تبریز!\n{% endif %}\nبه‌روز",
            ALI,
            "سلام تبریز!\nبه‌روز",
        ),
        (
            "{% for k in user | sort %}{{ k }} {% endfor %}",
            ALI,
            "balance city first_name person_id ",
        ),
        ("{{ now | date('%Y-%m-%d %H:%M') }}", ALI, "2026-03-20 23:00"),
        ("line\n", ALI, "line\n"),
    ],
    ids=[
        "persian-greeting",
        "default-missing-trait",
        "default-null-trait",
        "default-missing-parent",
        "keys-before-methods",
        "person-id",
        "block-tags-leave-no-blank-lines",
        "loop-over-profile",
        "now",
        "trailing-newline-kept",
    ],
)
def test_text_renders(source: str, person: dict, expected: str) -> None:
    assert _render({"text": source}, person) == {"text": expected}


def test_event_and_journey_step_outputs() -> None:
    fields = {
        "title": "سفارش {{ event.properties.order_id }} ثبت شد",
        "body": "{{ journey.steps.check_credit.body.tier }}: {{ event.properties.total | number }}",
    }
    assert _render(fields, event=ORDER, journey=JOURNEY) == {
        "title": "سفارش A-1042 ثبت شد",
        "body": "gold: 48,500,000",
    }


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'2026-03-21' | jalali", "۱۴۰۵/۰۱/۰۱"),
        ("'2026-03-21' | jalali('%d %B %Y')", "۰۱ فروردین ۱۴۰۵"),
        ("'2026-03-21' | jalali('%A %d %B', digits='latin')", "شنبه 01 فروردین"),
        ("'2026-03-01T08:15:00Z' | jalali('%Y/%m/%d %B')", "۱۴۰۴/۱۲/۱۰ اسفند"),
        ("'2025-03-20' | jalali('%d %B %Y', digits='latin')", "30 اسفند 1403"),
        ("'2026-03-20T23:00:00Z' | jalali(digits='latin')", "1405/01/01"),
        ("'2026-03-20T23:00:00Z' | jalali(tz='UTC', digits='latin')", "1404/12/29"),
        ("'2026-03-20T23:00:00Z' | date", "2026-03-20"),
        ("'2026-03-20T23:00:00Z' | date('%Y-%m-%d %H:%M', tz='Asia/Tehran')", "2026-03-21 02:30"),
        ("'2026-03-20T23:00:00' | date('%d', tz='Asia/Tehran')", "21"),
        ("'2026-03-20' | date('%d', tz='Asia/Tehran')", "20"),
        ("1774047600 | date('%Y-%m-%d %H:%M', tz='Asia/Tehran')", "2026-03-21 02:30"),
        ("now | jalali('%Y/%m/%d %H:%M', digits='latin')", "1405/01/01 02:30"),
        ("1250000 | currency", "۱٬۲۵۰٬۰۰۰ ریال"),
        ("1250000 | currency('IRR', digits='latin')", "1,250,000 ریال"),
        ("1250000 | currency('IRT')", "۱۲۵٬۰۰۰ تومان"),
        ("1250005 | currency('toman', digits='latin')", "125,001 تومان"),
        ("1234.5 | currency('USD')", "$1,234.50"),
        ("-0.5 | currency('usd')", "-$0.50"),
        ("'99.999' | currency('EUR')", "€100.00"),
        ("1234567.891 | number(decimals=2)", "1,234,567.89"),
        ("1234567.891 | number(digits='fa', decimals=1)", "۱٬۲۳۴٬۵۶۷٫۹"),
        ("'کد ۱۲ و ٣٤ و 56' | fa_digits", "کد ۱۲ و ۳۴ و ۵۶"),
        ("user.balance | fa_digits", "۱۲۵۰۰۰۰"),
        ("'سلام Ali' | direction", "rtl"),
    ],
)
def test_filters(expression: str, expected: str) -> None:
    assert _render({"text": "{{ " + expression + " }}"}) == {"text": expected}


def test_jalali_names_do_not_touch_process_or_thread_locale() -> None:
    before = locale.setlocale(locale.LC_ALL)
    fields = compile_templates({"text": "{{ user.day | jalali('%B') }}"})
    days = [date(2026, month, 1) for month in range(1, 13)] * 20

    def month_name(day: date) -> str:
        return render(fields, build_context({"day": day}))["text"]

    with ThreadPoolExecutor(8) as pool:
        names = list(pool.map(month_name, days))
    expected = [jdatetime.date.fromgregorian(date=d, locale="fa_IR").strftime("%B") for d in days]
    assert names == expected
    assert "اسفند" in names and "دی" in names
    assert locale.setlocale(locale.LC_ALL) == before
    assert jdatetime.get_locale() is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"subject": "سلام {{ user.last_name }}"},
            [Problem("subject", 1, "'user' has no attribute 'last_name'")],
        ),
        (
            {"text": "سلام\n\n{{ user.first_name }} {{ user.address.city }}"},
            [Problem("text", 3, "'user' has no attribute 'address'")],
        ),
        (
            {"text": "{{ user.nickname }}"},
            [Problem("text", 1, "'user.nickname' is null")],
        ),
        (
            {"subject": "{{ event.name }}", "text": "ok", "html": "<p>{{ journey.id }}</p>"},
            [
                Problem("subject", 1, "'event' is undefined"),
                Problem("html", 1, "'journey' is undefined"),
            ],
        ),
        (
            {"text": "{% if user.vip %}VIP{% endif %}"},
            [Problem("text", 1, "'user' has no attribute 'vip'")],
        ),
        (
            {"text": "{{ user.first_name | date }}"},
            [Problem("text", 1, "cannot read 'علی' as a date")],
        ),
        (
            {"text": "{{ now | date(tz='Asia/Esfahan') }}"},
            [Problem("text", 1, "unknown time zone 'Asia/Esfahan'")],
        ),
        (
            {"text": "{{ 5 | currency('GBP') }}"},
            [Problem("text", 1, "currency 'GBP' is not one of IRR, IRT (toman), USD, EUR")],
        ),
        (
            {"text": "{{ 5 | number(digits='ar') }}"},
            [Problem("text", 1, "digits must be 'fa' or 'latin', not 'ar'")],
        ),
    ],
    ids=[
        "missing-trait",
        "missing-parent-on-line-3",
        "null-trait",
        "no-event-or-journey-in-a-campaign",
        "condition-on-missing-trait",
        "not-a-date",
        "unknown-zone",
        "unknown-currency",
        "bad-digits",
    ],
)
def test_render_problems(fields: dict, expected: list[Problem]) -> None:
    assert _problems(fields, person={**ALI, "nickname": None}) == expected


def test_error_text_names_field_line_and_variable() -> None:
    with pytest.raises(TemplateError) as caught:
        _render({"subject": "{{ user.first_name }}"}, person={"person_id": "p1"})
    assert str(caught.value) == "subject, line 1: 'user' has no attribute 'first_name'"
    assert isinstance(caught.value, ValueError)


def test_syntax_errors_of_every_field_with_lines() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_templates(
            {
                "subject": "سلام {{ user.first_name }",
                "text": "ok",
                "html": "<p>\n{% if user.vip %}\nVIP</p>",
                "body": "{{ user.x | no_such_filter }}",
            }
        )
    problems = caught.value.problems
    assert [(p.field, p.line) for p in problems] == [("subject", 1), ("html", 3), ("body", 1)]
    assert problems[0].message == "unexpected '}'"
    assert "'endif'" in problems[1].message
    assert problems[2].message == "No filter named 'no_such_filter'."


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("{{ ''.__class__.__mro__ }}", "'__class__' of 'str'"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "'__class__' of 'str'"),
        ("{{ user.items.__self__ }}", "'__self__' of 'method'"),
        ("{{ now.__reduce__() }}", "'__reduce__' of 'datetime'"),
        ("{{ [1, 2].append(3) }}", "'append' of 'list'"),
        ("{{ cycler.__init__.__globals__ }}", "'__init__' of 'type'"),
    ],
)
def test_sandbox_refuses_escapes(source: str, refused: str) -> None:
    [problem] = _problems({"text": source})
    assert problem.field == "text" and problem.line == 1
    assert problem.message.startswith("refused by the sandbox: access to attribute " + refused)


def test_template_cannot_change_its_data() -> None:
    person = {"person_id": "p1", "tags": ["a"]}
    [problem] = _problems({"text": "{{ user.tags.append('b') }}"}, person=person)
    assert "'append' of 'list' object is unsafe" in problem.message
    assert person["tags"] == ["a"]


def test_autoescape_in_html_not_in_text() -> None:
    person = {"first_name": "<b>Ali</b> & co"}
    fields = {
        "html": "<p>{{ user.first_name }}</p>",
        "footer_html": "{{ user.first_name }}",
        "text": "{{ user.first_name }}",
        "subject": "{{ user.first_name }}",
    }
    assert _render(fields, person) == {
        "html": "<p>&lt;b&gt;Ali&lt;/b&gt; &amp; co</p>",
        "footer_html": "&lt;b&gt;Ali&lt;/b&gt; &amp; co",
        "text": "<b>Ali</b> & co",
        "subject": "<b>Ali</b> & co",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("سلام علی", "rtl"),
        ("  ۱۲ سفارش", "rtl"),
        ("مرحبا", "rtl"),
        ("שלום", "rtl"),
        ("Hello علی", "ltr"),
        ("۱۲۳ 456", "ltr"),
        ("", "ltr"),
    ],
)
def test_direction(text: str, expected: str) -> None:
    assert direction(text) == expected


PERSIAN_DOC = """<!doctype html>
<html lang="fa">
<head><title>Safar</title><style>p { color: red }</style></head>
<body style="margin:0">
<p>سلام {{ user.first_name }}</p>
</body>
</html>"""


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>سلام {{ user.first_name }}</p>", '<div dir="rtl"><p>سلام علی</p></div>'),
        (
            PERSIAN_DOC,
            PERSIAN_DOC.replace('<html lang="fa">', '<html dir="rtl" lang="fa">')
            .replace('<body style="margin:0">', '<body dir="rtl" style="margin:0"><div dir="rtl">')
            .replace("{{ user.first_name }}</p>\n</body>", "علی</p>\n</div></body>"),
        ),
        (
            '<html><body dir="rtl"><p>سلام</p></body></html>',
            '<html><body dir="rtl"><p>سلام</p></body></html>',
        ),
        (
            '<table dir="rtl"><tr><td>سلام</td></tr></table>',
            '<table dir="rtl"><tr><td>سلام</td></tr></table>',
        ),
        ('<div dir="ltr">سلام</div>', '<div dir="ltr">سلام</div>'),
        ("<p>Hello {{ user.first_name }}</p>", "<p>Hello علی</p>"),
        ("<p>Safar: سلام</p>", "<p>Safar: سلام</p>"),
        ("<style>p{}</style><p>&#1587;&#1604;&#1575;&#1605;</p>", None),
    ],
    ids=[
        "fragment",
        "document",
        "author-set-body",
        "author-set-wrapper",
        "author-chose-ltr",
        "english",
        "first-strong-is-latin",
        "entities-and-style",
    ],
)
def test_html_direction(html: str, expected: str | None) -> None:
    if expected is None:
        expected = f'<div dir="rtl">{html}</div>'
    assert _render({"html": html})["html"] == expected


def test_plain_text_is_left_as_written() -> None:
    text = "سلام {{ user.first_name }}، کد: ABC-123"
    rendered = _render({"text": text, "title": text, "subject": text})
    assert set(rendered.values()) == {"سلام علی، کد: ABC-123"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "{% for i in range(30000) %}{{ user.first_name }} خوش آمدید {% endfor %}",
            Problem("text", None, "output is larger than 256 KiB"),
        ),
        (
            "{{ 'س' * 140000 }}",
            Problem("text", None, "output is larger than 256 KiB"),
        ),
        (
            "{% for i in range(1000) %}\n{% for j in range(1000) %}{% endfor %}{% endfor %}",
            Problem(
                "text",
                2,
                "loops went past 100,000 steps (each loop iteration and each number range() "
                "makes counts)",
            ),
        ),
        (
            "{% set s = 'x' * 1000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
            Problem(
                "text",
                1,
                "loops went past 100,000 steps (each loop iteration and each number range() "
                "makes counts)",
            ),
        ),
        (
            "{{ range(10 ** 30) | length }}",
            Problem(
                "text",
                1,
                "loops went past 100,000 steps (each loop iteration and each number range() "
                "makes counts)",
            ),
        ),
        (
            "{{ 'x' * 1000000000 }}",
            Problem("text", 1, "'*' would repeat a value past 262,144 items"),
        ),
        ("{{ 7 ** 1000000 }}", Problem("text", 1, "'**' would make a number past 100,000 bits")),
        (
            "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
            Problem("text", 1, "nested too deeply (a macro calling itself?)"),
        ),
    ],
    ids=[
        "output",
        "output-counts-bytes",
        "nested-loops",
        "loops-over-data",
        "huge-range",
        "repeat",
        "power",
        "recursion",
    ],
)
def test_runaway_templates_stop(source: str, expected: Problem) -> None:
    assert _problems({"text": source}) == [expected]


def test_within_limits_renders() -> None:
    fields = {
        "text": "{{ 'x' * 200000 }}",
        "title": "{% for i in range(40000) %}{% endfor %}{{ 2 ** 64 }}",
    }
    rendered = _render(fields)
    assert len(rendered["text"]) == 200000
    assert rendered["title"] == str(2**64)


def test_webhook_body_stays_valid_json() -> None:
    person = {
        "person_id": "p-9",
        "first_name": 'Sara "the boss" O\'Neil',
        "bio": "line one\nخط دوم <script> & \\ back",
    }
    fields = {
        "body": """{
  "person": {{ user.person_id | tojson }},
  "name": {{ user.first_name | tojson }},
  "bio": {{ user.bio | tojson }},
  "order": {{ event.properties | tojson }},
  "at": {{ now | tojson }}
}""",
        "headers": '{"X-Safar-Person": {{ user.person_id | tojson }}}',
    }
    rendered = _render(fields, person, event=ORDER)
    assert json.loads(rendered["body"]) == {
        "person": "p-9",
        "name": 'Sara "the boss" O\'Neil',
        "bio": "line one\nخط دوم <script> & \\ back",
        "order": {"coupon": None, "order_id": "A-1042", "total": 48500000},
        "at": "2026-03-20T23:00:00+00:00",
    }
    assert json.loads(rendered["headers"]) == {"X-Safar-Person": "p-9"}
    assert "خط دوم" in rendered["body"]  # Persian stays readable, not \u-escaped


def test_variables_are_top_level_names() -> None:
    compiled = compile_templates(
        {
            "subject": "{{ user.first_name }} {{ event.properties.total | currency }}",
            "text": "{% set n = 3 %}{% for i in range(n) %}{{ i }}{% endfor %}{{ now | jalali }}",
            "html": "{% if false %}{{ journey.steps.a.body }}{% endif %}",
        }
    )
    assert compiled.variables() == {"user", "event", "now", "journey"}


def test_compiled_once_rendered_per_person() -> None:
    compiled = compile_templates({"text": '{{ user.first_name | default("دوست") }}'})
    people = [{"person_id": f"p{i}", "first_name": f"نفر {i}"} for i in range(3)] + [{}]
    rendered = [render(compiled, build_context(person))["text"] for person in people]
    assert rendered == ["نفر 0", "نفر 1", "نفر 2", "دوست"]


def test_preview_builds_the_context_send_uses() -> None:
    fields = {"text": "{{ user.person_id }} {{ event.name }} {{ journey.name }} {{ now | date }}"}
    context = build_context(ALI, ORDER, JOURNEY, NOW)
    assert preview(fields, ALI, ORDER, JOURNEY, NOW) == render(fields, context)
    assert render(fields, context) == {"text": "p-17 Order Completed Welcome 2026-03-20"}
    campaign = build_context(ALI, now=datetime(2026, 3, 20, 23, 0))
    assert set(campaign) == {"user", "now"} and campaign["now"] == NOW


def test_a_null_given_to_tojson_names_the_variable() -> None:
    body = '{"email": {{ user.email | tojson }}}'
    with pytest.raises(TemplateError) as caught:
        preview({"body": body}, {"person_id": "p1", "email": None})
    assert str(caught.value) == "body, line 1: 'user.email' is null"
    fallback = '{"email": {{ user.email | default(none) | tojson }}}'
    assert preview({"body": fallback}, {"person_id": "p1", "email": None}) == {
        "body": '{"email": null}'
    }


def test_tojson_writes_warehouse_decimals_as_numbers() -> None:
    person = {"person_id": "p1", "revenue": Decimal("945000.00"), "score": Decimal("2.5")}
    out = preview({"body": "{{ [user.revenue, user.score] | tojson }}"}, person)
    assert out == {"body": "[945000, 2.5]"}
