"""What a person sees: ``streamlit run`` on the demo warehouse, opened in headless Chromium.

Streamlit draws the page from messages on a websocket after the page has loaded, so
``chromium --screenshot`` alone captures an empty shell. The test therefore drives Chromium
through the DevTools protocol (with ``websockets``, which Streamlit already depends on): open
the page, wait until the tiles and charts are drawn, then take the screenshot.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); without it the test fails and
says so, rather than skipping.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from PIL import Image
from websockets.sync.client import ClientConnection, connect

from safar import warehouse
from safar.appdb import open_app_db
from safar.config import SafarHome, gateway_public_url
from safar.delivery.outbox import Delivery, delivery_id, enqueue
from safar.delivery.people import find_people
from safar.lake import LakeWriter
from safar.live import live_stats
from safar.segments.definitions import load_file_segments

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WINDOW = (1400, 1000)
# The page is drawn when the tiles and all four charts are there and Streamlit is not running.
PAGE_DRAWN_JS = """
(() => {
  const text = document.body ? document.body.innerText : "";
  const charts = document.querySelectorAll('[data-testid="stPlotlyChart"] .main-svg').length;
  const running = document.querySelector('[data-testid="stStatusWidget"]') !== null
    && /Running/.test(document.querySelector('[data-testid="stStatusWidget"]').innerText);
  return text.includes("Total users") && charts >= 4 && !running;
})()
"""

LIVE_DRAWN_JS = """
(() => {
  const text = document.body ? document.body.innerText : "";
  const charts = document.querySelectorAll('[data-testid="stPlotlyChart"] .main-svg').length;
  return text.includes("Active now") && text.includes("Top events") && charts >= 1;
})()
"""
METRICS_JS = """
(() => Object.fromEntries(
  [...document.querySelectorAll('[data-testid="stMetric"]')].map(m => [
    m.querySelector('[data-testid="stMetricLabel"]').innerText.trim(),
    m.querySelector('[data-testid="stMetricValue"]').innerText.trim(),
  ])
))()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout: float, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"nothing answered at {url} within {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def _serve_dashboard(
    home: SafarHome, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """``streamlit run`` the app on ``home`` at a free port, with ``env`` added; yields its URL."""
    port = _free_port()
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", "dashboards/streamlit_app.py",
                "--server.headless=true",
                "--server.address=127.0.0.1",
                f"--server.port={port}",
                "--server.fileWatcherType=none",
                "--browser.gatherUsageStats=false",
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "SAFAR_HOME": str(home.root), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        try:
            assert _wait_for(f"http://127.0.0.1:{port}/_stcore/health", 60, server) == "ok"
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"streamlit did not start: {exc}\n{log.read_text()}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        _stop(server)


@pytest.fixture(scope="module")
def dashboard_url(demo_home: SafarHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    with _serve_dashboard(demo_home, log) as url:
        yield url


class DevTools:
    """The few DevTools protocol calls the test needs, over one page's websocket."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events arrive in between; skip to our answer
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)[
            "result"
        ].get("value")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed for the browser test: apt-get install -y chromium")
    port = _free_port()
    chromium = subprocess.Popen(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        targets = json.loads(_wait_for(f"http://127.0.0.1:{port}/json/list", 30, chromium))
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            yield DevTools(ws)
    finally:
        _stop(chromium)


def _pin_viewport(browser: DevTools) -> None:
    # The window size includes the browser's own frame; pin the page's viewport exactly.
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        width=WINDOW[0],
        height=WINDOW[1],
        deviceScaleFactor=1,
        mobile=False,
    )


def test_overview_draws_tiles_and_charts_in_a_real_browser(
    dashboard_url: str, browser: DevTools, tmp_path: Path
) -> None:
    _pin_viewport(browser)
    browser.call("Page.navigate", url=dashboard_url)
    deadline = time.monotonic() + 60
    while not browser.evaluate(PAGE_DRAWN_JS):
        if time.monotonic() > deadline:
            text = browser.evaluate("document.body ? document.body.innerText : ''")
            pytest.fail(f"the overview was not drawn within 60 s; the page shows:\n{text}")
        time.sleep(0.5)
    time.sleep(1)  # let Plotly finish its transitions before the picture

    png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    shot = tmp_path / "overview.png"
    shot.write_bytes(png)

    text = browser.evaluate("document.body.innerText")
    for expected in ("Safar", "Overview", "Total users", "Known users", "Channel reachability"):
        assert expected in text
    assert browser.evaluate("""document.querySelector('[data-testid="stException"]') === null""")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == WINDOW
    # Four coloured charts and the tiles make thousands of colours; a blank page has a few.
    colours = image.getcolors(maxcolors=1_000_000)
    assert len(colours) > 500, f"screenshot looks empty: {shot}"
    dominant = max(count for count, _ in colours)
    assert dominant < 0.9 * WINDOW[0] * WINDOW[1], f"screenshot is mostly one colour: {shot}"


def _wait_until(browser: DevTools, expression: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not browser.evaluate(expression):
        if time.monotonic() > deadline:
            text = browser.evaluate("document.body ? document.body.innerText : ''")
            pytest.fail(f"{what} within {timeout:.0f} s; the page shows:\n{text}")
        time.sleep(0.5)


def _land_now(home: SafarHome, *events: tuple[str, str, str, float]) -> None:
    """Land ``(type, name, anonymous id, minutes ago)`` events, timed on the real clock."""
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {
            "message_id": f"{anonymous_id}-{now.timestamp()}-{i}",
            "type": kind,
            "event": name,
            "anonymous_id": anonymous_id,
            "context_page_url": f"https://shop.example/{name.lower()}" if kind == "page" else None,
            "timestamp": now - timedelta(minutes=minutes_ago),
            "received_at": now - timedelta(minutes=minutes_ago),
        }
        for i, (kind, name, anonymous_id, minutes_ago) in enumerate(events)
    ]
    assert LakeWriter(home).write(pl.DataFrame(rows, infer_schema_length=None)).rejected == 0


@pytest.fixture
def live_home(tmp_path: Path) -> SafarHome:
    """An hour of a small shop's traffic, up to now; no warehouse (the Live page needs none).

    Events are at least two minutes clear of the five-minute edge, so nobody enters or leaves
    "active now" while the test runs.
    """
    home = SafarHome(tmp_path / "live_home").ensure()
    pages = ("Home", "Category", "Product", "Cart")
    tracks = ("Product Viewed", "Added to Cart", "Searched")
    _land_now(
        home,
        *(("page", pages[i % 4], f"a{i % 7}", 0.5 + (i % 6) * 0.5) for i in range(30)),
        *(("track", tracks[i % 3], f"a{i % 5}", 1 + (i % 3) * 0.5) for i in range(12)),
        *(("page", pages[i % 4], f"b{i % 11}", 7 + i * 0.75) for i in range(70)),
        *(("track", tracks[i % 3], f"b{i % 11}", 7 + i * 0.4) for i in range(120)),
    )
    return home


def test_live_page_draws_and_refreshes_itself_in_a_real_browser(
    live_home: SafarHome, browser: DevTools, tmp_path: Path
) -> None:
    with _serve_dashboard(live_home, tmp_path / "streamlit.log") as url:
        _pin_viewport(browser)
        browser.call("Page.navigate", url=url + "live")
        _wait_until(browser, LIVE_DRAWN_JS, 60, "the Live page was not drawn")
        time.sleep(1)  # let Plotly finish its transitions before the picture

        png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        shot = tmp_path / "live.png"
        shot.write_bytes(png)
        expected = live_stats(live_home)
        metrics = browser.evaluate(METRICS_JS)
        assert expected.active_people == 7
        assert metrics["Active now"] == str(expected.active_people)
        assert metrics["Unknown"] == str(expected.unknown_people)
        text = browser.evaluate("document.body.innerText")
        for label in ("Live", "Events per minute", "Top pages and screens", "last event received"):
            assert label in text
        assert browser.evaluate(
            """document.querySelector('[data-testid="stException"]') === null"""
        )
        colours = Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1_000_000)
        assert len(colours) > 200, f"screenshot looks empty: {shot}"

        # Someone new arrives; the page shows them without a reload (st.fragment's timer).
        _land_now(live_home, ("page", "Home", "newcomer", 0))
        _wait_until(
            browser,
            f"({METRICS_JS})['Active now'] === '{expected.active_people + 1}'",
            30,
            "the Live page did not show the newcomer",
        )


SEGMENTS_DRAWN_JS = """
(() => {
  const text = document.body ? document.body.innerText : "";
  const table = document.querySelector('[data-testid="stDataFrame"] canvas') !== null;
  const running = document.querySelector('[data-testid="stStatusWidget"]') !== null
    && /Running/.test(document.querySelector('[data-testid="stStatusWidget"]').innerText);
  return text.includes("No segment has been evaluated") && table && !running;
})()
"""
GRID_TEXT_JS = """
(() => [...document.querySelectorAll('[data-testid="stDataFrame"] [role="gridcell"]')]
  .map(cell => cell.innerText.trim()))()
"""


def test_segments_list_draws_in_a_real_browser(
    dashboard_url: str, browser: DevTools, tmp_path: Path
) -> None:
    _pin_viewport(browser)
    browser.call("Page.navigate", url=dashboard_url + "segments")
    _wait_until(browser, SEGMENTS_DRAWN_JS, 60, "the Segments page was not drawn")
    time.sleep(1)

    png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    shot = tmp_path / "segments.png"
    shot.write_bytes(png)
    text = browser.evaluate("document.body.innerText")
    for expected in ("Engage", "Segments", "SQL segment", "Segment builder", "Upload a list"):
        assert expected in text
    # The grid draws on a canvas; its accessible cells carry the text a person reads.
    cells = browser.evaluate(GRID_TEXT_JS)
    names = [d.name for d in load_file_segments()]
    assert len(names) == 6 and set(names) <= set(cells), cells
    assert browser.evaluate("""document.querySelector('[data-testid="stException"]') === null""")
    colours = Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1_000_000)
    assert len(colours) > 100, f"screenshot looks empty: {shot}"


# --- Engage: the delivery pages ---------------------------------------------------------------

SUBJECT = "سفارش شما رسید"
NO_EXCEPTION_JS = """document.querySelector('[data-testid="stException"]') === null"""
# Streamlit draws st.iframe(html) as a frame whose srcdoc is that HTML: the email's own frame
# sits inside it, sandboxed.
SANDBOXED_EMAIL_JS = """
[...document.querySelectorAll('iframe')].some(f => (f.srcdoc || '').includes('sandbox=""'))
"""


def _drawn_js(*texts: str, also: str = "true") -> str:
    """True when the page shows every one of ``texts``, ``also`` holds and nothing runs."""
    wanted = json.dumps(list(texts), ensure_ascii=False)
    return f"""
(() => {{
  const text = document.body ? document.body.innerText : "";
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  const running = status !== null && /Running/.test(status.innerText);
  return {wanted}.every(t => text.includes(t)) && ({also}) && !running;
}})()
"""


@pytest.fixture(scope="module")
def engage_url(demo_home: SafarHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on the demo warehouse with an app DB of its own holding two queued messages,
    so the delivery pages write nothing into the shared demo home."""
    folder = tmp_path_factory.mktemp("engage")
    app_db_url = f"sqlite:///{folder / 'app.sqlite'}"
    engine = open_app_db(url=app_db_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    sms = Delivery(
        delivery_id("browser-test", "sms"),
        "sms",
        "p-reza",
        "+989121234567",
        "promotions",
        {"text": "کد تخفیف: SAFAR20"},
    )
    email = Delivery(
        delivery_id("browser-test", "email"),
        "email",
        "p-sara",
        "sara@example.com",
        "transactional",
        {"subject": SUBJECT, "html": "<p>سلام سارا</p>", "text": "سلام سارا"},
        user_id="u-sara",
    )
    enqueue(engine, [sms], now - timedelta(minutes=1))
    enqueue(engine, [email], now)  # the newest: the page opens it first
    engine.dispose()
    env = {"SAFAR_APP_DB_URL": app_db_url}
    with _serve_dashboard(demo_home, folder / "streamlit.log", env) as url:
        yield url


def _open_and_shoot(browser: DevTools, url: str, drawn: str, what: str, shot: Path) -> str:
    """Open ``url``, wait until ``drawn`` holds, save a screenshot; the page's text."""
    _pin_viewport(browser)
    browser.call("Page.navigate", url=url)
    _wait_until(browser, drawn, 60, f"{what} was not drawn")
    time.sleep(1)  # let charts and frames settle before the picture
    png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    shot.write_bytes(png)
    assert browser.evaluate(NO_EXCEPTION_JS), f"{what} shows an exception: {shot}"
    colours = Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1_000_000)
    assert len(colours) > 100, f"screenshot looks empty: {shot}"
    return browser.evaluate("document.body.innerText")


def test_delivery_settings_draws_in_a_real_browser(
    engage_url: str, browser: DevTools, tmp_path: Path
) -> None:
    text = _open_and_shoot(
        browser,
        engage_url + "delivery_settings",
        _drawn_js("Delivery settings", "Frequency caps", "/v1/unsubscribe/"),
        "the Delivery settings page",
        tmp_path / "delivery_settings.png",
    )
    for expected in ("Providers", "Quiet hours", "Throttles", "Retries", "Save"):
        assert expected in text
    assert f"{gateway_public_url()}/v1/unsubscribe/<token>" in text


def test_messages_draws_the_outbox_in_a_real_browser(
    engage_url: str, browser: DevTools, tmp_path: Path
) -> None:
    text = _open_and_shoot(
        browser,
        engage_url + "messages",
        _drawn_js(
            "Messages",
            "Waiting",
            SUBJECT,
            also="document.querySelector('[data-testid=\"stPlotlyChart\"] .main-svg') !== null",
        ),
        "the Messages page",
        tmp_path / "messages.png",
    )
    metrics = browser.evaluate(METRICS_JS)
    assert metrics["Messages"] == "2" and metrics["Waiting"] == "2"
    assert "To sara@example.com" in text  # the newest message, opened as the person sees it
    assert browser.evaluate(SANDBOXED_EMAIL_JS)


def test_message_preview_renders_a_real_person_in_a_real_browser(
    engage_url: str, demo_home: SafarHome, browser: DevTools, tmp_path: Path
) -> None:
    # The page starts with the most recently seen known person that email reaches.
    con = warehouse.connect(demo_home, read_only=True)
    try:
        person = next(p for p in find_people(con, "", 20) if p.addresses.get("email"))
    finally:
        con.close()
    greeting = f"{person.traits.get('first_name') or 'دوست'} عزیز"
    text = _open_and_shoot(
        browser,
        engage_url + "message_preview",
        _drawn_js("As they see it", f"To {person.addresses['email']}", greeting),
        "the Message preview page",
        tmp_path / "message_preview.png",
    )
    assert person.label in text
    assert "Triggering event" in text and "Not rendered" not in text
    assert browser.evaluate(SANDBOXED_EMAIL_JS)
