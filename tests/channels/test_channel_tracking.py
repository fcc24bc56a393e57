"""Signed tracking links: tokens read back, forgeries are refused, HTML rewriting is exact."""

from __future__ import annotations

import pytest

from channels.tracking import (
    BadToken,
    TrackedLink,
    click_url,
    make_token,
    open_pixel_url,
    read_token,
    rewrite_links,
    unsubscribe_url,
)

BASE = "https://t.safar.example"
SECRET = "workspace-secret"


def _token(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".gif")


def test_each_kind_reads_back() -> None:
    target = "https://shop.example/سبد?q=کفش&page=2#top"
    click = click_url(BASE + "/", SECRET, "dlv-1", target)
    assert click.startswith(f"{BASE}/v1/t/c/")
    assert read_token(SECRET, _token(click), kind="click") == TrackedLink("click", "dlv-1", target)

    pixel = open_pixel_url(BASE, SECRET, "dlv-1")
    assert pixel.startswith(f"{BASE}/v1/t/o/") and pixel.endswith(".gif")
    assert read_token(SECRET, _token(pixel), kind="open") == TrackedLink("open", "dlv-1")

    unsubscribe = unsubscribe_url(BASE, SECRET, "dlv-1")
    assert unsubscribe.startswith(f"{BASE}/v1/unsubscribe/")
    assert read_token(SECRET, _token(unsubscribe)) == TrackedLink("unsubscribe", "dlv-1")


def test_tokens_are_deterministic_and_url_safe() -> None:
    first = make_token(SECRET, "click", "dlv-1", "https://example.com/?a=1&b=2")
    assert first == make_token(SECRET, "click", "dlv-1", "https://example.com/?a=1&b=2")
    assert first != make_token(SECRET, "click", "dlv-2", "https://example.com/?a=1&b=2")
    assert set(first) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def test_tampered_and_foreign_tokens_are_refused() -> None:
    token = make_token(SECRET, "click", "dlv-1", "https://example.com/")
    payload, signature = token.split(".")
    # Pointing the redirect elsewhere means a new payload, which the old MAC does not fit.
    evil = make_token("attacker", "click", "dlv-1", "https://evil.example/").split(".")[0]
    for forged in (f"{evil}.{signature}", f"{_flip(payload, 3)}.{signature}"):
        with pytest.raises(BadToken, match="bad signature"):
            read_token(SECRET, forged)
    with pytest.raises(BadToken, match="bad signature"):
        read_token(SECRET, f"{payload}.{_flip(signature, 0)}")
    with pytest.raises(BadToken, match="bad signature"):
        read_token("another-workspace", token)


def test_a_token_of_another_kind_is_refused() -> None:
    # Someone's open pixel must not unsubscribe them, nor a click token serve as either.
    pixel = make_token(SECRET, "open", "dlv-1")
    with pytest.raises(BadToken, match="wrong kind: a token for open where one for unsubscribe"):
        read_token(SECRET, pixel, kind="unsubscribe")
    click = make_token(SECRET, "click", "dlv-1", "https://example.com/")
    with pytest.raises(BadToken, match="wrong kind"):
        read_token(SECRET, click, kind="open")


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a b.c", "WyJvIiwiZDEiXQ.", "!!.??"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(BadToken, match="malformed|bad signature"):
        read_token(SECRET, token)


def test_click_links_only_redirect_to_the_web() -> None:
    with pytest.raises(ValueError, match="http"):
        click_url(BASE, SECRET, "dlv-1", "javascript:alert(1)")


def test_rewrite_links_changes_only_web_hrefs_and_adds_the_pixel() -> None:
    unsubscribe = unsubscribe_url(BASE, SECRET, "dlv-1")
    tracked = click_url(BASE, SECRET, "dlv-0", "https://already.example/")
    source = (
        "<!DOCTYPE html>\n<html><body dir='rtl'>\n"
        '<p>سلام علی، <a href="https://shop.example/a?x=1&amp;y=۲" style="color:red">خرید</a>،\n'
        "<A class='b' HREF='HTTP://example.com/B'>دوم</A> "
        '<a title="x > y" href=https://example.com/c>سوم</a></p>\n'
        '<a href="mailto:hi@example.com">ایمیل</a> <a href="tel:+98912">تلفن</a> '
        '<a href="#top">بالا</a> <a name="x">بی‌پیوند</a>\n'
        f'<a href="{unsubscribe}">لغو عضویت</a> <a href="{tracked}">قبلی</a>\n'
        '<!-- <a href="https://comment.example/">no</a> -->\n'
        "<script>var s = '<a href=\"https://script.example/\">';</script>\n"
        "</BODY></html>"
    )
    pixel = open_pixel_url(BASE, SECRET, "dlv-1")
    expected = (
        source.replace(
            '"https://shop.example/a?x=1&amp;y=۲"',
            f'"{click_url(BASE, SECRET, "dlv-1", "https://shop.example/a?x=1&y=۲")}"',
        )
        .replace(
            "'HTTP://example.com/B'",
            f'"{click_url(BASE, SECRET, "dlv-1", "HTTP://example.com/B")}"',
        )
        .replace(
            "href=https://example.com/c>",
            f'href="{click_url(BASE, SECRET, "dlv-1", "https://example.com/c")}">',
        )
        .replace(
            "</BODY>", f'<img src="{pixel}" alt="" width="1" height="1" style="border:0"></BODY>'
        )
    )
    assert rewrite_links(source, base_url=BASE, secret=SECRET, delivery_id="dlv-1") == expected


def test_rewrite_links_without_a_body_tag_appends_the_pixel() -> None:
    source = "<p>سلام\r\n<a href='https://example.com/'>x</a></p>"
    out = rewrite_links(source, base_url=BASE, secret=SECRET, delivery_id="dlv-1")
    assert out.startswith('<p>سلام\r\n<a href="' + BASE + "/v1/t/c/")
    assert out.endswith(
        f'</a></p><img src="{open_pixel_url(BASE, SECRET, "dlv-1")}" alt="" '
        'width="1" height="1" style="border:0">'
    )
