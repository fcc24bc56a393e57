"""Browser SDKs against a running gateway, in headless Debian Chromium driven by Playwright.

Two SDKs: Safar's own ``/sdk/safar.js`` (served by the gateway) and Segment's analytics.js
(``@segment/analytics-next`` from npm, installed under ``tests/js`` by ``make``), which is
pointed at the gateway by its ``_cdn`` setting so it loads its settings from
``/v1/projects/{writeKey}/settings`` instead of Segment's CDN.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_helpers import Gateway, lake_rows, wait_for
from playwright.sync_api import Browser, Page, sync_playwright

from safar.snippets import analytics_js_snippet, safar_js_snippet

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ANALYTICS_UMD = (
    Path(__file__).resolve().parents[1] / "js/node_modules/@segment/analytics-next/dist/umd"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A plain static web server for the test pages (a customer's site), on its own port."""
    root = tmp_path_factory.mktemp("site")
    if not ANALYTICS_UMD.exists():
        pytest.fail(f"{ANALYTICS_UMD} is missing: run `make setup` (npm install in tests/js)")
    shutil.copytree(ANALYTICS_UMD, root / "umd")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # keep pytest output clean
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="fa-IR", timezone_id="Asia/Tehran")
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == [], errors


def _safar_page(
    site: tuple[str, Path], name: str, gateway_url: str, key: str, body: str, api_host: str = ""
) -> str:
    """Write a page with the install snippet the dashboard shows, then ``body``'s script.

    The SDK file always comes from the gateway; events go to ``api_host`` (default: the same).
    """
    base, root = site
    snippet = safar_js_snippet(key, gateway_url, api_host=api_host or None)
    (root / name).write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>فروشگاه سفر</title>"
        f"<script>{snippet}</script></head><body><h1>Shop</h1><script>{body}</script>"
        f"</body></html>",
        encoding="utf-8",
    )
    return f"{base}/{name}"


def _rows_for(gateway: Gateway, anonymous_id: str, count: int) -> list[dict]:
    def landed() -> list[dict] | None:
        rows = lake_rows(gateway.home, "anonymous_id = ?", [anonymous_id])
        return rows if len(rows) >= count else None

    return wait_for(landed, timeout=20)


def test_safar_js_sends_page_identify_and_track(
    gateway: Gateway, write_key: str, site: tuple[str, Path], page: Page
) -> None:
    url = _safar_page(
        site,
        "basic.html",
        gateway.url,
        write_key,
        "safar.identify('u-web-1', {email: 'sara@example.com', name: 'سارا محمدی'});"
        "safar.track('Product Viewed', {product_id: 'p-42', price: 12500000});",
    )
    page.goto(url)
    page.wait_for_function("window.safar && window.safar.initialized === true")
    anonymous_id = page.evaluate("safar.user().anonymousId")
    page.evaluate("safar.flush()")

    rows = {r["type"]: r for r in _rows_for(gateway, anonymous_id, 3)}
    assert set(rows) == {"page", "identify", "track"}
    assert rows["page"]["context_page_url"] == url
    assert rows["identify"]["user_id"] == "u-web-1"
    assert json.loads(rows["identify"]["traits"])["name"] == "سارا محمدی"
    track = rows["track"]
    assert track["event"] == "Product Viewed" and track["user_id"] == "u-web-1"
    assert json.loads(track["properties"]) == {"product_id": "p-42", "price": 12500000}
    assert track["context_locale"] == "fa-IR" and track["context_timezone"] == "Asia/Tehran"
    context = json.loads(track["context"])
    assert context["library"]["name"] == "safar.js" and "Chrome" in context["userAgent"]
    assert track["source_id"] == rows["page"]["source_id"]


def test_safar_js_keeps_its_anonymous_id_and_reset_starts_a_new_one(
    gateway: Gateway, write_key: str, site: tuple[str, Path], page: Page
) -> None:
    url = _safar_page(site, "persist.html", gateway.url, write_key, "")
    page.goto(url)
    page.wait_for_function("window.safar && window.safar.initialized === true")
    first = page.evaluate("safar.user().anonymousId")
    page.reload()
    page.wait_for_function("window.safar && window.safar.initialized === true")
    assert page.evaluate("safar.user().anonymousId") == first
    page.evaluate("safar.reset()")
    assert page.evaluate("safar.user().anonymousId") != first


def test_safar_js_sends_with_a_beacon_when_the_page_is_left(
    gateway: Gateway, write_key: str, site: tuple[str, Path], page: Page
) -> None:
    url = _safar_page(site, "leave.html", gateway.url, write_key, "")
    page.goto(url)
    page.wait_for_function("window.safar && window.safar.initialized === true")
    anonymous_id = page.evaluate("safar.user().anonymousId")
    # Queued, not yet sent (the batch timer has a second to go) when the page goes away.
    page.evaluate("safar.track('Checkout Started', {step: 1}); safar.queued()")
    page.goto("about:blank")

    rows = _rows_for(gateway, anonymous_id, 2)
    assert "Checkout Started" in {r["event"] for r in rows}


def test_safar_js_keeps_events_while_the_gateway_is_unreachable_and_retries(
    gateway: Gateway, write_key: str, site: tuple[str, Path], page: Page
) -> None:
    # First the page talks to a port nothing listens on: the events stay queued in storage.
    dead = _safar_page(
        site, "offline.html", gateway.url, write_key, "", api_host="http://127.0.0.1:9"
    )
    page.goto(dead)
    page.wait_for_function("window.safar && window.safar.initialized === true")
    anonymous_id = page.evaluate("safar.user().anonymousId")
    page.evaluate("safar.track('Cart Viewed', {items: 2}); safar.flush()")
    page.wait_for_timeout(500)
    assert page.evaluate("safar.queued()") >= 2  # the page view and the track

    # The same site with the gateway reachable sends what was kept, then the new page view.
    live = _safar_page(site, "online.html", gateway.url, write_key, "")
    page.goto(live)
    page.wait_for_function("window.safar && window.safar.initialized === true")
    rows = _rows_for(gateway, anonymous_id, 3)
    assert {"Cart Viewed"} <= {r["event"] for r in rows}
    assert len({r["message_id"] for r in rows}) == len(rows)


def test_segment_analytics_js_sends_to_the_gateway_with_no_cdn(
    gateway: Gateway, write_key: str, site: tuple[str, Path], page: Page
) -> None:
    base, root = site
    (root / "segment.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Segment</title><script>"
        + analytics_js_snippet(write_key, gateway.url, "/umd/standalone.js")
        + "</script></head><body>"
        "<script>analytics.ready(function () { window.segmentReady = true; });"
        "analytics.identify('u-seg-1', {plan: 'gold', city: 'اصفهان'});"
        "analytics.track('Order Completed', {order_id: 'o-9', revenue: 35000000});"
        "analytics.page('Checkout');</script></body></html>",
        encoding="utf-8",
    )
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{base}/segment.html")
    page.wait_for_function("window.segmentReady === true", timeout=20_000)
    anonymous_id = page.evaluate("analytics.user().anonymousId()")

    landed = _rows_for(gateway, anonymous_id, 4)  # the snippet's page view, then the script's
    rows = {r["type"]: r for r in landed}
    assert set(rows) == {"identify", "track", "page"}
    assert "Checkout" in {r["event"] for r in landed if r["type"] == "page"}
    assert rows["identify"]["user_id"] == "u-seg-1"
    assert json.loads(rows["identify"]["traits"])["city"] == "اصفهان"
    assert rows["track"]["event"] == "Order Completed"
    assert json.loads(rows["track"]["properties"])["revenue"] == 35000000
    assert json.loads(rows["page"]["context"])["library"]["name"] == "analytics.js"
    # Nothing went anywhere but this machine: settings and events both came to the gateway.
    assert all(u.startswith(("http://127.0.0.1", "about:", "data:")) for u in requests), requests
    assert any("/v1/projects/" in u and u.endswith("/settings") for u in requests)
