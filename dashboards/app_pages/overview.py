"""Overview: how many people there are, how active they are, and how many we can reach."""

import streamlit as st

from dashboards.lib import charts, guards, queries
from dashboards.lib.periods import default_period, picked_period

st.title("Overview")

home = queries.current_home()
try:
    first_day, last_day = queries.load_activity_bounds(home)
except queries.WarehouseNotReady as exc:
    guards.stop_until_built(exc)

if first_day is None:
    st.info(f"The warehouse at `{home}` has no activity yet.", icon=":material/hourglass:")
    st.stop()

fallback = default_period(first_day, last_day)
picker, _ = st.columns([1, 3])
start, end = picked_period(
    picker.date_input(
        "Period",
        value=fallback,
        min_value=first_day,
        max_value=last_day,
        key="overview_period",
    ),
    fallback,
)

totals = queries.load_user_totals(home, start, end)
active = queries.load_active_users_daily(home, start, end)
mau_day, mau = (active["activity_date"][-1], active["mau"][-1]) if active.height else (end, 0)

tiles = st.columns(5)
tiles[0].metric(
    "Total users", f"{totals.total_users:,}", border=True, help="Everyone seen, known or not."
)
tiles[1].metric(
    "Known users", f"{totals.known_users:,}", border=True, help="People with a user id."
)
tiles[2].metric(
    "Unknown users",
    f"{totals.unknown_users:,}",
    border=True,
    help="People seen only through an anonymous id.",
)
tiles[3].metric(
    "Sign-ups in period",
    f"{totals.signed_up_users:,}",
    border=True,
    help="People whose first identify with a user id (or `Signed Up`) falls in the period.",
)
tiles[4].metric(
    f"MAU on {mau_day:%b %d}",
    f"{mau:,}",
    border=True,
    help="People active in the 30 days up to that day.",
)

left, right = st.columns(2)
left.plotly_chart(charts.build_active_users_figure(active), key="overview_active_users")
right.plotly_chart(charts.build_known_unknown_figure(active), key="overview_known_unknown")

left, right = st.columns(2)
left.plotly_chart(
    charts.build_channel_reachability_figure(queries.load_channel_reachability(home)),
    key="overview_reachability",
)
left.caption("Known people only: a message needs somebody to address.")
right.plotly_chart(
    charts.build_installs_figure(queries.load_installs_daily(home, start, end)),
    key="overview_installs",
)
