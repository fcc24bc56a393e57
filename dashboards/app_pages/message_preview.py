"""Engage → Message preview: a message's templates rendered for one person, as a send renders them.

Nothing is sent or stored. The fields render with :func:`channels.templates.preview` and the
person's profile from the warehouse (:mod:`safar.delivery.people`), the two things a send
renders with, and the result is drawn the way the Messages page draws a sent message.
"""

from datetime import UTC, datetime
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from channels.base import CHANNELS
from channels.push import LAYOUTS
from channels.webhook import METHODS
from dashboards.lib import delivery, guards, message_view, previews, queries
from dashboards.lib.previews import PREVIEW as P

st.title("Message preview")
st.caption(
    "Write a message and see it as one person would: rendered with their profile from the "
    "warehouse, exactly as a send renders it. Nothing is sent. Templates are Jinja2: "
    "`{{ user.first_name }}`, `{{ now | jalali('%d %B') }}`, `{{ user.revenue | "
    "currency('IRT') }}`, and `event` when a triggering event is given."
)

home = queries.current_home()
try:
    people = previews.search_people(home, st.session_state.get(f"{P}search", ""))
except queries.WarehouseNotReady as exc:
    guards.stop_until_built(exc, "The preview renders a message with a person's profile from it. ")

# Every channel's fields stay as written while another channel is shown: a value set here
# outlives its widget, which Streamlit would otherwise forget when it is not drawn.
for key, value in previews.preview_state().items():
    st.session_state[key] = st.session_state.get(key, value)


# --- channel and person -----------------------------------------------------------------------

top = st.columns([2, 3, 4])
channel = top[0].selectbox(
    "Channel", CHANNELS, key=f"{P}channel", format_func=lambda c: delivery.CHANNEL_LABELS[c]
)
top[1].text_input(
    "Find a person",
    key=f"{P}search",
    placeholder="A name, email, phone, user id or person id",
    help="Known people whose user id, email, phone or name contains it; a person id typed in "
    "full finds anyone. Empty: the most recently seen.",
)
by_id = {person.person_id: person for person in people}
if st.session_state.get(f"{P}person") not in by_id and people:
    # Someone the channel reaches makes the better first example.
    reached = [p for p in people if previews.missing_address(channel, p) is None]
    st.session_state[f"{P}person"] = (reached or people)[0].person_id
elif not people:
    st.session_state.pop(f"{P}person", None)
person_id = top[2].selectbox(
    "Person",
    list(by_id),
    key=f"{P}person",
    format_func=lambda i: by_id[i].label,
    placeholder="Nobody matches the search",
)
person = by_id.get(person_id) if person_id is not None else None
if person is not None and (missing := previews.missing_address(channel, person)):
    st.warning(missing, icon=":material/location_off:")

# --- the template -----------------------------------------------------------------------------

edit, shown = st.columns(2, gap="large")
with edit:
    st.subheader("Template")
    layout, method, url = "text", "POST", ""
    if channel == "push":
        layout = st.selectbox(
            "Layout",
            LAYOUTS,
            key=f"{P}push_layout",
            help="Text and banner are drawn by the phone; carousel and rating by the app.",
        )
    if channel == "webhook":
        left, right = st.columns([1, 3])
        method = left.selectbox("Method", METHODS, key=f"{P}webhook_method")
        url = right.text_input("URL", key=f"{P}webhook_url", help="Where the call goes.")
    fields = previews.template_fields(channel, layout)
    labels = {field.name: field.label for field in fields}
    slots: dict[str, DeltaGenerator] = {}
    for field in fields:
        st.text_area(
            field.label,
            key=previews.template_key(channel, field.name),
            height=field.height,
            help=field.help or None,
        )
        slots[field.name] = st.container()

    st.subheader("Triggering event")
    st.text_area(
        "Event (JSON)",
        key=f"{P}event",
        height=110,
        placeholder=previews.EVENT_EXAMPLE,
        help="Optional: the event that triggers the message, as the `event` variable "
        "(`event.name`, `event.properties.total`, `event.timestamp`). Empty: no event, as a "
        "campaign has none.",
    )
    event_slot = st.container()


# --- the message as they see it ---------------------------------------------------------------

with shown:
    st.subheader("As they see it")
    now = datetime.now(UTC)
    event, event_problem = previews.parse_event(st.session_state[f"{P}event"], now)
    if event_problem:
        event_slot.error(event_problem, icon=":material/error:")
    if person is None:
        st.info("Nobody matches the search: find a person to preview the message for.")
        st.stop()
    st.caption(f"For **{person.label}**, rendered at {now:%Y-%m-%d %H:%M} UTC.")
    if event_problem:
        st.error("**Not rendered:** the triggering event is not valid; see below it.")
        st.stop()
    sources = {f.name: st.session_state[previews.template_key(channel, f.name)] for f in fields}
    rendered, problems = previews.render_preview(sources, person.traits, event, now)
    content: dict[str, Any] = {}
    if not problems:
        content, problems = previews.preview_content(
            channel, rendered, layout=layout, method=method
        )
    for problem in problems:
        slots[problem.field].error(
            previews.template_problem_text(problem, labels[problem.field], event is not None),
            icon=":material/error:",
        )
    if problems:
        st.error(
            f"**Not rendered: {len(problems)} problem{'s' * (len(problems) != 1)}**, each shown "
            "under its field.",
            icon=":material/error:",
        )
        st.stop()
    address = url if channel == "webhook" else person.addresses.get(channel, "")
    for problem in previews.send_problems(channel, content, address):
        st.warning(f"**A send would fail:** {problem}.", icon=":material/block:")
    message_view.show_message(
        channel, content, address, content_label="Content the sender gets (JSON)"
    )
