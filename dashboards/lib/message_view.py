"""How a message looks to its person, drawn the same on the Messages and Message preview pages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import streamlit as st

from dashboards.lib import delivery


def show_message(
    channel: str, content: Mapping[str, Any], address: str, *, content_label: str
) -> None:
    """Draw ``content`` as ``channel`` shows it to the person at ``address``.

    Args:
        channel: the message's channel.
        content: the rendered content, as its sender gets it.
        address: where it goes (email, phone, token, URL).
        content_label: the title of the expander with the raw content as JSON.
    """
    if channel == "email":
        st.html(delivery.email_header_html(str(content.get("subject") or ""), address))
        if content.get("html"):
            st.iframe(
                delivery.sandboxed_html(str(content["html"])),
                height=520,
                alt="The email's HTML part, in a sandbox: no scripts, forms or navigation",
            )
        if content.get("text"):
            with st.expander("Text part", expanded=not content.get("html")):
                st.html(delivery.text_html(str(content["text"])))
    elif channel == "sms":
        st.html(delivery.sms_bubble_html(str(content.get("text") or ""), address))
        st.caption(f"{len(str(content.get('text') or '')):,} characters")
    elif channel in ("push", "web_push", "in_app"):
        st.html(delivery.notification_html(content, kind=channel))
    elif channel == "webhook":
        st.code(f"{str(content.get('method') or 'POST').upper()} {address}", language=None)
        if content.get("headers"):
            st.json(content["headers"])
        body = content.get("body")
        if body is not None:
            text = body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False)
            st.code(text, language="json")
    with st.expander(content_label, icon=":material/data_object:"):
        st.code(json.dumps(content, indent=2, ensure_ascii=False), language="json")
