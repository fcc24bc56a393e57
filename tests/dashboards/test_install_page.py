"""Settings → Install as Streamlit runs it: each source's key in the snippet the SDK test loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from safar.appdb import open_app_db
from safar.appdb.sources import add_source, revoke_source
from safar.config import SafarHome
from safar.snippets import html_tag, safar_js_snippet

APP = Path(__file__).resolve().parents[2] / "dashboards" / "streamlit_app.py"


def _install_page(monkeypatch: pytest.MonkeyPatch, home: Path, url: str) -> AppTest:
    monkeypatch.setenv("SAFAR_HOME", str(home))
    monkeypatch.setenv("SAFAR_GATEWAY_URL", url)
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    app.switch_page("app_pages/install.py").run()
    assert not app.exception, [e.message for e in app.exception]
    assert [t.value for t in app.main.title] == ["Install"]
    return app


def test_snippet_names_the_chosen_source_key_and_the_public_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = SafarHome(tmp_path).ensure()
    engine = open_app_db(home)
    web = add_source(engine, "web")
    app_source = add_source(engine, "android")
    revoke_source(engine, add_source(engine, "old-site").name)

    app = _install_page(monkeypatch, home.root, "https://events.example.ir/")

    # Revoked sources are not offered; the newest comes first.
    assert app.selectbox(key="install_source").options == ["android", "web"]
    app.selectbox(key="install_source").select(web).run()
    codes = [c.value for c in app.code]
    assert codes[0] == web.write_key
    assert html_tag(safar_js_snippet(web.write_key, "https://events.example.ir")) in codes
    assert all(app_source.write_key not in c for c in codes)
    assert any(f'Client("{web.write_key}", host="https://events.example.ir")' in c for c in codes)


def test_changing_the_gateway_url_rewrites_every_snippet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = SafarHome(tmp_path).ensure()
    source = add_source(open_app_db(home), "web")
    app = _install_page(monkeypatch, home.root, "http://127.0.0.1:8080")

    app.text_input(key="install_gateway_url").input("https://t.example.ir").run()

    codes = [c.value for c in app.code]
    assert html_tag(safar_js_snippet(source.write_key, "https://t.example.ir")) in codes
    assert not any("127.0.0.1:8080" in c for c in codes)


def test_without_sources_the_page_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _install_page(monkeypatch, tmp_path, "http://127.0.0.1:8080")
    assert "safar sources add web" in app.info[0].value
    assert not app.code
