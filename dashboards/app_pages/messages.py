"""Engage → Messages: what was delivered, to whom, what the provider said, and how it looked."""

from functools import partial

import polars as pl
import streamlit as st

from channels.base import CHANNELS
from dashboards.lib import delivery, message_view, queries
from dashboards.lib.delivery import MESSAGES as P
from safar.appdb.schema import DELIVERY_STATES

st.title("Messages")
st.caption(
    "One row per delivery in the outbox: what it said, where it went, and what the provider "
    "answered. Open one to see it as the person saw it."
)

home = queries.current_home()
counts = delivery.load_message_counts(home)
if counts.height == 0:
    st.info(
        "**No messages yet.** Campaigns and journeys put messages in the outbox and "
        "`safar dispatch` sends them; `make demo` sends a few through local test servers.",
        icon=":material/outbox:",
    )
    st.stop()

tiles = st.columns(len(delivery.TILES))
for tile, (label, value) in zip(tiles, delivery.state_totals(counts).items(), strict=True):
    tile.metric(label, f"{value:,}", border=True)
st.plotly_chart(delivery.build_message_counts_figure(counts), key=f"{P}counts")

# --- filters and the table --------------------------------------------------------------------

present = set(counts["channel"].to_list())
top = st.columns([2, 3])
channels = top[0].multiselect(
    "Channel",
    [c for c in CHANNELS if c in present],
    key=f"{P}channels",
    format_func=lambda c: delivery.CHANNEL_LABELS.get(c, c),
    placeholder="All channels",
)
states = top[1].multiselect(
    "State",
    DELIVERY_STATES,
    key=f"{P}states",
    format_func=delivery.STATE_LABELS.get,
    placeholder="All states",
)
bottom = st.columns(3)
source = bottom[0].text_input("Campaign or journey id", key=f"{P}source")
person = bottom[1].text_input("Person", key=f"{P}person", help="A person id or a user id.")
text = bottom[2].text_input(
    "Search",
    key=f"{P}text",
    help="Words of the content (any language), an address, a provider's words or an id.",
)

found = delivery.load_messages(home, tuple(channels), tuple(states), source, person, text)
if found.height == 0:
    st.info("No message matches these filters.", icon=":material/filter_alt_off:")
    st.stop()
ids = found["delivery_id"].to_list()


def _picked(ids: list[str]) -> None:
    """A row picked in the table opens that message below."""
    rows = st.session_state[f"{P}table"].selection.rows
    if rows:
        st.session_state[f"{P}open"] = ids[rows[0]]


table = found.select(
    pl.col("created_at").alias("Created (UTC)"),
    pl.col("channel").replace(delivery.CHANNEL_LABELS).alias("Channel"),
    pl.col("state").replace(delivery.STATE_LABELS).alias("State"),
    pl.col("summary").alias("Message"),
    pl.col("person_id").alias("Person"),
    pl.col("address").alias("To"),
    pl.col("campaign_id").alias("Campaign"),
    pl.col("journey_id").alias("Journey"),
    pl.col("attempts").alias("Attempts"),
    pl.col("provider").alias("Provider"),
    pl.col("detail").alias("Detail"),
)
st.dataframe(
    table,
    hide_index=True,
    key=f"{P}table",
    on_select=partial(_picked, ids),
    selection_mode="single-row",
)
if found.height == delivery.MAX_ROWS:
    st.caption(f"The newest {delivery.MAX_ROWS:,}; narrow the filters to see older ones.")

# --- one message ------------------------------------------------------------------------------

if st.session_state.get(f"{P}open") not in ids:
    st.session_state[f"{P}open"] = ids[0]
labels = dict(zip(ids, found["summary"].to_list(), strict=True))
channel_of = dict(zip(ids, found["channel"].to_list(), strict=True))
chosen = st.selectbox(
    "Open a message",
    ids,
    key=f"{P}open",
    format_func=lambda i: (
        f"{delivery.CHANNEL_LABELS.get(channel_of[i], channel_of[i])} · "
        f"{labels[i] or '(no text)'} · {i}"
    ),
)
detail = delivery.load_message_detail(home, chosen)
if detail is None:  # gone between the list and now (a test DB reset); nothing to show
    st.stop()
row, content = detail.row, detail.content

tiles = st.columns(4)
tiles[0].metric("State", delivery.STATE_LABELS.get(row["state"], row["state"]), border=True)
tiles[1].metric("Channel", delivery.CHANNEL_LABELS.get(row["channel"], row["channel"]), border=True)
tiles[2].metric("Attempts", row["attempts"], border=True)
tiles[3].metric("Provider", row["provider"] or "—", border=True)
if row["detail"]:
    st.caption(f"**What happened:** {row['detail']}")

facts = {
    "Delivery id": row["delivery_id"],
    "To": row["address"],
    "Person": row["person_id"],
    "User id": row["user_id"],
    "Category": row["category"],
    "Campaign": row["campaign_id"],
    "Journey": row["journey_id"],
    "Provider message id": row["provider_message_id"],
    "Created (UTC)": row["created_at"],
    "Sent (UTC)": row["sent_at"],
    "Due from (UTC)": row["not_before"],
    "Expires (UTC)": row["expires_at"],
    "Re-sent after a crash": "yes" if row["in_doubt"] else None,
}
if detail.inbox is not None:
    for label, column in (
        ("Seen", "seen_at"),
        ("Clicked", "clicked_at"),
        ("Dismissed", "dismissed_at"),
    ):
        facts[f"{label} (UTC)"] = detail.inbox[column]
shown, history, answer = st.tabs(
    ["As the person sees it", "Details and history", "Provider's answer"]
)

with shown:
    message_view.show_message(
        row["channel"], content, row["address"] or "", content_label="Stored content (JSON)"
    )

with history:
    st.dataframe(
        pl.DataFrame(
            {"": list(facts), "Value": [None if v is None else str(v) for v in facts.values()]}
        ).filter(pl.col("Value").is_not_null()),
        hide_index=True,
    )
    if detail.history.height:
        st.dataframe(detail.history, hide_index=True)
    else:
        st.caption("No delivery events yet.")

with answer:
    if detail.response is None:
        st.caption("The provider's answer is kept for webhooks; there is none for this message.")
    else:
        st.json(detail.response)
