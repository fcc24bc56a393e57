"""Live: who is here now and what they do, read from the landing zone every few seconds."""

import streamlit as st

from dashboards.lib import charts, queries
from safar.live import ACTIVE_WINDOW, TOP_WINDOW, describe_age

# The promise is a lag of at most 5 s behind the gateway: its 1 s flush, the 2 s cache of
# queries.load_live_stats and this refresh period add up to that.
REFRESH_SECONDS = 2

ACTIVE_MINUTES = int(ACTIVE_WINDOW.total_seconds() // 60)
TOP_MINUTES = int(TOP_WINDOW.total_seconds() // 60)

st.title("Live")
home = queries.current_home()


# Only this part reruns on the timer, so the title does not flicker.
@st.fragment(run_every=REFRESH_SECONDS)
def live_panel() -> None:
    # Checked on every tick, so the page comes alive by itself when the first event lands.
    if not queries.has_landed_events(home):
        st.info(
            f"**No events have landed yet** in `{home}`. Send some to the gateway, import a "
            "file or generate demo data; this page refreshes itself every "
            f"{REFRESH_SECONDS} s.",
            icon=":material/sensors_off:",
        )
        return

    stats = queries.load_live_stats(home)
    last = (
        f"last event received {describe_age(stats.now - stats.last_received_at)}"
        if stats.last_received_at
        else "nothing received today or yesterday"
    )
    identities = "warehouse and landing zone" if stats.used_warehouse else "landing zone only"
    st.caption(
        f"As of {stats.now:%H:%M:%S} UTC · {last} · identities from the {identities} · "
        f"refreshes every {REFRESH_SECONDS} s"
    )
    if stats.unreadable_files:
        st.warning(
            f"{len(stats.unreadable_files)} landing file(s) could not be read and were left "
            "out; their paths are in the dashboard's log.",
            icon=":material/warning:",
        )

    tiles = st.columns(5)
    tiles[0].metric(
        "Active now",
        f"{stats.active_people:,}",
        border=True,
        help=f"People who did something in the last {ACTIVE_MINUTES} minutes "
        "(tracked events, page and screen views; not the platform's own messages).",
    )
    tiles[1].metric(
        "Known",
        f"{stats.known_people:,}",
        border=True,
        help="Active people with a user id (signed in, or identified before).",
    )
    tiles[2].metric(
        "Unknown",
        f"{stats.unknown_people:,}",
        border=True,
        help="Active people seen only through an anonymous id.",
    )
    tiles[3].metric(
        "New today",
        f"{stats.new_people:,}",
        border=True,
        help="Active people first seen today (UTC).",
    )
    tiles[4].metric(
        "Returning",
        f"{stats.returning_people:,}",
        border=True,
        help="Active people seen before today (UTC).",
    )

    st.plotly_chart(
        charts.build_events_per_minute_figure(stats.events_per_minute),
        key="live_events_per_minute",
    )

    left, right = st.columns(2)
    left.subheader("Top events")
    left.caption(f"Tracked events in the last {TOP_MINUTES} minutes.")
    if stats.top_events.is_empty():
        left.caption("Nothing tracked in that time.")
    else:
        left.dataframe(
            stats.top_events,
            hide_index=True,
            key="live_top_events",
            column_config={"event": "Event", "events": "Events", "people": "People"},
        )
    right.subheader("Top pages and screens")
    right.caption(f"Views in the last {TOP_MINUTES} minutes, by page name, else URL path.")
    if stats.top_pages.is_empty():
        right.caption("No views in that time.")
    else:
        right.dataframe(
            stats.top_pages,
            hide_index=True,
            key="live_top_pages",
            column_config={"page": "Page", "views": "Views", "people": "People"},
        )


live_panel()
