"""Settings → Install: the snippet for each source, with its write key and the gateway's URL."""

import streamlit as st

from dashboards.lib import queries
from safar.config import gateway_public_url
from safar.snippets import analytics_js_snippet, html_tag, safar_js_snippet

st.title("Install")
st.caption(
    "Put the snippet in every page's `<head>`; in the apps, point any Segment or RudderStack "
    "SDK at the gateway. See docs/sdk.md for the mobile contract."
)

home = queries.current_home()
sources = [s for s in queries.load_sources(home) if s.is_active]
if not sources:
    st.info(
        "**No sources yet.** Create one for each website, app or backend that sends events:\n\n"
        "```bash\nsafar sources add web\n```",
        icon=":material/key:",
    )
    st.stop()

left, right = st.columns([1, 2])
source = left.selectbox("Source", sources, format_func=lambda s: s.name, key="install_source")
gateway = right.text_input(
    "Gateway URL (as browsers and apps reach it)",
    value=gateway_public_url(),
    key="install_gateway_url",
).rstrip("/")

st.markdown(f"**Write key** of `{source.name}` (revoke with `safar sources revoke {source.name}`)")
st.code(source.write_key, language=None)

web, segment, server = st.tabs(["Website (safar.js)", "Segment analytics.js", "Server and apps"])
with web:
    st.code(html_tag(safar_js_snippet(source.write_key, gateway)), language="html")
    st.markdown(
        "Then `safar.identify(userId, traits)`, `safar.track(event, properties)`, "
        "`safar.page()`, and `safar.reset()` at sign-out."
    )
with segment:
    st.markdown(
        "Already on Segment? Serve `dist/umd/standalone.js` of `@segment/analytics-next` from "
        "your site and use this instead of Segment's snippet; nothing goes to Segment's CDN."
    )
    st.code(
        html_tag(analytics_js_snippet(source.write_key, gateway, "/js/analytics/standalone.js")),
        language="html",
    )
with server:
    st.code(
        "from segment.analytics.client import Client  # pip install segment-analytics-python\n"
        f'client = Client("{source.write_key}", host="{gateway}")\n'
        'client.track("42", "Order Completed", {"revenue": 35000000, "currency": "IRR"})',
        language="python",
    )
    st.code(
        f"curl -u {source.write_key}: {gateway}/v1/track -H 'Content-Type: application/json' \\\n"
        '  -d \'{"userId": "42", "event": "Signed Up"}\'',
        language="bash",
    )
