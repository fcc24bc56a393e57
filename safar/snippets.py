"""The install snippets the dashboard's Settings → Install page shows for a write key.

One place builds them, and the browser tests load exactly these strings into Chromium, so
what a customer copies is what is tested.
"""

from __future__ import annotations

import json


def _js(value: str) -> str:
    """A JavaScript string literal (JSON's is one, and escapes quotes and ``</script>``)."""
    return json.dumps(value).replace("</", "<\\/")


def safar_js_snippet(write_key: str, gateway_url: str, *, api_host: str | None = None) -> str:
    """The ``<script>`` body that loads ``/sdk/safar.js`` and records the first page view.

    Calls made before the SDK file arrives are queued by the stub and replayed in order.

    Args:
        write_key: the source's write key.
        gateway_url: the gateway's public base URL (serves the SDK file).
        api_host: where events go, if not the gateway that serves the file.

    Example:
        >>> snippet = safar_js_snippet("KEY", "https://events.example.ir/")
        >>> '"https://events.example.ir/sdk/safar.js"' in snippet
        True
        >>> 's.load("KEY",{apiHost:"https://events.example.ir"})' in snippet
        True
    """
    base = gateway_url.rstrip("/")
    host = (api_host or base).rstrip("/")
    return (
        "!function(){var s=window.safar=window.safar||[];if(s.initialized)return;"
        's.methods=["load","identify","track","page","reset","flush"];'
        "s.methods.forEach(function(m){s[m]=function(){"
        "s.push([m].concat([].slice.call(arguments)));return s}});"
        'var t=document.createElement("script");t.async=true;'
        f"t.src={_js(base + '/sdk/safar.js')};document.head.appendChild(t);"
        f"s.load({_js(write_key)},{{apiHost:{_js(host)}}});s.page()}}();"
    )


def analytics_js_snippet(write_key: str, gateway_url: str, standalone_url: str) -> str:
    """The ``<script>`` body that points Segment's analytics.js at the gateway, not its CDN.

    ``standalone_url`` is where the site serves ``dist/umd/standalone.js`` of the npm package
    ``@segment/analytics-next``; analytics.js then reads its settings from the gateway.

    Example:
        >>> "a._cdn=\\"https://e.ir\\"" in analytics_js_snippet("K", "https://e.ir", "/a.js")
        True
    """
    return (
        "var a=window.analytics=[];"
        '["identify","track","page","group","alias","reset","ready"].forEach(function(m){'
        "a[m]=function(){a.push([m].concat([].slice.call(arguments)));return a}});"
        f"a._writeKey={_js(write_key)};a._cdn={_js(gateway_url.rstrip('/'))};"
        'var t=document.createElement("script");t.async=true;'
        f"t.src={_js(standalone_url)};document.head.appendChild(t);a.page();"
    )


def html_tag(script_body: str) -> str:
    """Wrap a snippet in the ``<script>`` tag a customer pastes into every page's head."""
    return f"<script>\n{script_body}\n</script>"
