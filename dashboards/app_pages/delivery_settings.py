"""Engage → Delivery settings: providers, quiet hours, caps, throttles, categories, retries.

The whole document is saved at once, and only when it has no problem: each problem is shown
in the section it is about and listed by the Save button. A test send tries one channel's
provider as the form has it now, saved or not.
"""

import json
import zoneinfo
from typing import Any

import polars as pl
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from channels.base import CHANNELS
from dashboards.lib import delivery, queries
from dashboards.lib.delivery import SETTINGS as P
from safar.config import gateway_public_url
from safar.delivery.providers import PROVIDERS
from safar.delivery.settings import (
    DEFAULT_CATEGORIES,
    PERIODS,
    ConfigError,
    save_config,
    tracking_secret,
)

st.title("Delivery settings")
st.caption(
    "Which provider sends each channel, and the rules every message passes before it goes: "
    "quiet hours, how often one person may be messaged, how fast a channel may send, and how "
    "often a failed send is retried. `safar dispatch` reads them when it starts: restart it "
    "after saving."
)

home = queries.current_home()
engine = queries.app_db(home)
stored, stored_problems = delivery.stored_settings(engine)
for key, value in delivery.settings_state(stored).items():
    st.session_state.setdefault(key, value)

if stored_problems:
    st.warning(
        "**The stored settings have problems** (they were set outside this page); the form "
        "shows what it can. Saving replaces them.\n\n"
        + "\n".join(f"- {delivery.describe_problem(w, p)}" for w, p in stored_problems),
        icon=":material/warning:",
    )

# Where each section's problems go, by delivery.problem_section.
slots: dict[str, DeltaGenerator] = {}


def _reset() -> None:
    """Show the stored settings again: every widget starts over from them."""
    for key in [k for k in st.session_state if str(k).startswith(P)]:
        if key != f"{P}notice":
            del st.session_state[key]


def _option(channel: str, provider: str, field: delivery.OptionField, stored_value: Any) -> None:
    key = delivery.field_key(channel, provider, field.name)
    st.session_state.setdefault(key, delivery.field_state(field, stored_value))
    label = delivery.field_label(field.name) + (" *" if field.required else "")
    kept = stored_value is not None and field.kind in delivery.SECRET_KINDS
    placeholder = "Stored; type a new one to replace it" if kept else None
    if field.kind == "secret":
        st.text_input(label, key=key, type="password", help=field.help, placeholder=placeholder)
    elif field.kind in ("secret_text", "secret_json", "json"):
        st.text_area(label, key=key, height=110, help=field.help, placeholder=placeholder)
    elif field.kind in ("int", "float"):
        step = 1 if field.kind == "int" else 1.0
        st.number_input(label, key=key, step=step, help=field.help)
    elif field.kind == "bool":
        st.checkbox(label, key=key, help=field.help)
    elif field.kind == "choice":
        options = [delivery.NONE] * field.optional + list(field.choices)
        st.selectbox(label, options, key=key, help=field.help)
    else:
        st.text_input(label, key=key, help=field.help)
    if kept and field.optional:
        st.checkbox(
            f"Remove the stored {delivery.field_label(field.name).lower()}", key=f"{key}_clear"
        )


def _options(channel: str, provider: str) -> None:
    """The provider's option fields: the required ones, then the rest folded away."""
    kept = delivery.stored_options(stored, channel, provider)
    fields = delivery.option_fields(PROVIDERS[provider].settings)
    for field in (f for f in fields if f.required):
        _option(channel, provider, field, kept.get(field.name))
    with st.expander(f"More {provider} options"):
        for field in (f for f in fields if not f.required):
            _option(channel, provider, field, kept.get(field.name))


def _test_send(channel: str) -> None:
    """An address, a button, and what the provider said about one test message."""
    result_key = f"{P}{channel}_test_result"
    item, _ = delivery.provider_document(st.session_state, channel, stored)
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    address = left.text_input(
        "Send a test to",
        key=f"{P}{channel}_test_to",
        placeholder=delivery.ADDRESS_HINTS[channel],
        help="One test message goes straight to the provider: no outbox row, no event, no "
        "policy. It uses the fields above as they are now, saved or not.",
    )
    clicked = right.button(
        "Send a test",
        key=f"{P}{channel}_test",
        icon=":material/send:",
        disabled=item is None or not address.strip(),
        help=None if item is not None else "Choose a provider first.",
    )
    if clicked:
        item, problems = delivery.provider_document(st.session_state, channel, stored)
        result: tuple[str, object] = ("problems", problems)
        if not problems and item is not None:
            tracking = {
                "tracking_base_url": gateway_public_url(),
                "tracking_secret": tracking_secret(engine),
            }
            try:
                with st.spinner(f"Sending a test through {item['provider']}…"):
                    outcome = delivery.send_test(engine, channel, item, address, tracking)
                result = ("outcome", outcome)
            except ConfigError as error:
                result = ("problems", error.problems)
        st.session_state[result_key] = result
    if (result := st.session_state.get(result_key)) is None:
        return
    kind, value = result
    if kind == "problems":
        st.error(
            "**Not sent:** the provider cannot be made from these fields.\n\n"
            + "\n".join(f"- {delivery.describe_problem(w, p)}" for w, p in value),
            icon=":material/error:",
        )
    elif value.status in ("sent", "delivered"):
        st.success(delivery.outcome_text(value), icon=":material/check_circle:")
    elif value.status == "retry":
        st.warning(delivery.outcome_text(value), icon=":material/schedule:")
    else:
        st.error(delivery.outcome_text(value), icon=":material/error:")


def _provider_tab(channel: str) -> None:
    slots[f"providers.{channel}"] = st.container()
    if channel == "in_app":
        st.info(
            "In-app messages go to each person's inbox in the app DB; the web SDK and the apps "
            "fetch them from the gateway (`/v1/inbox`). No provider is needed.",
            icon=":material/inbox:",
        )
        return
    if channel == "push":
        st.caption(
            "A device token `apns:<token>` goes to APNs, `fcm:<token>` (or a bare token) to "
            "Firebase Cloud Messaging. Switch on the platforms your apps use."
        )
        for platform, name in (
            ("fcm", "Firebase Cloud Messaging (Android)"),
            ("apns", "APNs (iOS)"),
        ):
            if st.toggle(name, key=f"{P}push_{platform}_on"):
                _options("push", platform)
    else:
        choices = ["", *delivery.channel_providers(channel)]
        provider = st.selectbox(
            "Provider",
            choices,
            key=f"{P}{channel}_provider",
            format_func=lambda name: name or "(none: this channel does not send)",
        )
        if provider:
            _options(channel, provider)
    st.divider()
    _test_send(channel)


# --- workspace --------------------------------------------------------------------------------

st.subheader("Workspace")
slots["workspace"] = st.container()
zones = sorted(zoneinfo.available_timezones() | {st.session_state[f"{P}time_zone"]})
left, right = st.columns(2)
left.selectbox(
    "Time zone",
    zones,
    key=f"{P}time_zone",
    help="Quiet hours and caps are counted in a person's own zone when it is known, else in "
    "this one.",
)
right.selectbox(
    "Weeks start on",
    range(7),
    key=f"{P}week_starts_on",
    format_func=lambda day: delivery.WEEKDAYS[day],
    help="Where a weekly cap's week begins (Saturday in Iran).",
)

# --- providers --------------------------------------------------------------------------------

st.subheader("Providers")
tabs = st.tabs([delivery.CHANNEL_LABELS[c] for c in CHANNELS])
for tab, channel in zip(tabs, CHANNELS, strict=True):
    with tab:
        _provider_tab(channel)

# --- policies ---------------------------------------------------------------------------------

st.subheader("Quiet hours")
slots["dnd"] = st.container()
st.toggle(
    "No marketing messages at night",
    key=f"{P}dnd_on",
    help="Transactional messages (receipts, codes) are never held back.",
)
if st.session_state[f"{P}dnd_on"]:
    start, end, action = st.columns(3)
    start.time_input("From", key=f"{P}dnd_start", step=300)
    end.time_input("Until", key=f"{P}dnd_end", step=300, help="Before From: over midnight.")
    action.radio(
        "A message due in quiet hours is",
        ("queue", "drop"),
        key=f"{P}dnd_action",
        format_func={"queue": "sent when they end", "drop": "dropped"}.get,
    )

channel_cell = st.column_config.SelectboxColumn(
    "Channel", options=[delivery.ALL_CHANNELS, *CHANNELS], help="Empty: all channels."
)
st.subheader("Frequency caps")
slots["caps"] = st.container()
st.caption(
    "At most *count* marketing messages to one person per calendar day, week or month, on one "
    "channel or on all of them together."
)
caps_rows = st.data_editor(
    pl.DataFrame(st.session_state[f"{P}caps_rows"], schema=delivery.CAP_COLUMNS, orient="row"),
    key=f"{P}caps",
    num_rows="dynamic",
    hide_index=True,
    column_order=("count", "period", "channel"),
    column_config={
        "count": st.column_config.NumberColumn("Count", step=1, format="%d"),
        "period": st.column_config.SelectboxColumn("Per", options=list(PERIODS)),
        "channel": channel_cell,
    },
)
st.subheader("Minimum gaps")
slots["min_gaps"] = st.container()
st.caption("At least this many minutes between two marketing messages to one person.")
gap_rows = st.data_editor(
    pl.DataFrame(st.session_state[f"{P}min_gaps_rows"], schema=delivery.GAP_COLUMNS, orient="row"),
    key=f"{P}min_gaps",
    num_rows="dynamic",
    hide_index=True,
    column_order=("minutes", "channel"),
    column_config={
        "minutes": st.column_config.NumberColumn("Minutes", step=1, format="%d"),
        "channel": channel_cell,
    },
)

st.subheader("Throttles")
slots["throttles"] = st.container()
st.caption("Messages per minute a channel sends at most, for every person together; 0: no limit.")
for column, channel in zip(st.columns(len(CHANNELS)), CHANNELS, strict=True):
    column.number_input(
        delivery.CHANNEL_LABELS[channel], min_value=0, step=1, key=f"{P}throttle_{channel}"
    )

st.subheader("Categories and unsubscribing")
slots["categories"] = st.container()
known = [*DEFAULT_CATEGORIES]
known += [c for c in st.session_state[f"{P}categories"] if c not in known]
st.multiselect(
    "Marketing categories",
    known,
    key=f"{P}categories",
    accept_new_options=True,
    help="People can unsubscribe from each one on the preference page. Transactional messages "
    "have no category and cannot be unsubscribed from.",
)
st.markdown(
    "Every marketing email carries a link to the **preference page**, which the gateway serves "
    "(with RFC 8058 one-click unsubscribe for mail clients):"
)
st.code(delivery.unsubscribe_pattern(gateway_public_url()), language=None)
st.caption(
    "The token is signed with this workspace's secret and names the delivery, so the page "
    "knows whom it is for. The gateway's public URL comes from `SAFAR_GATEWAY_URL`."
)

st.subheader("Retries")
slots["retries"] = st.container()
st.number_input(
    "Attempts per message at most",
    min_value=1,
    step=1,
    key=f"{P}max_attempts",
    help="A temporary failure (a timeout, a 503, a busy mailbox) is retried with growing waits "
    "until this many attempts; then the message is failed.",
)

# --- save -------------------------------------------------------------------------------------

values = st.session_state.to_dict() | {
    f"{P}caps_rows": caps_rows.to_dicts(),
    f"{P}min_gaps_rows": gap_rows.to_dicts(),
}
document, form_problems = delivery.settings_document(values, stored)
fingerprint = json.dumps(document, sort_keys=True, ensure_ascii=False)

st.divider()
save, discard, _ = st.columns([1, 1, 4])
if save.button("Save", key=f"{P}save", type="primary", icon=":material/save:"):
    problems = form_problems + [
        p for p in delivery.check_document(engine, document) if p not in form_problems
    ]
    if not problems:
        try:
            save_config(engine, document)
        except ConfigError as error:  # checked above; a change of rules still lands here
            problems = error.problems
    if problems:
        st.session_state[f"{P}outcome"] = (fingerprint, problems)
    else:
        _reset()
        st.session_state[f"{P}notice"] = (
            "success",
            "Saved. Restart `safar dispatch` so it sends with these settings.",
        )
        st.rerun()
discard.button("Discard changes", key=f"{P}discard", icon=":material/undo:", on_click=_reset)

if notice := st.session_state.pop(f"{P}notice", None):
    level, text = notice
    getattr(st, level)(text, icon=":material/check_circle:")
outcome = st.session_state.get(f"{P}outcome")
if outcome is not None and outcome[0] == fingerprint:
    problems = outcome[1]
    st.error(
        f"**Not saved: {len(problems)} problem{'s' * (len(problems) != 1)}.** Nothing was "
        "stored.\n\n" + "\n".join(f"- {delivery.describe_problem(w, p)}" for w, p in problems),
        icon=":material/error:",
    )
    for where, what in problems:
        slot = slots.get(delivery.problem_section(where))
        if slot is not None:
            slot.error(delivery.describe_problem(where, what), icon=":material/error:")
