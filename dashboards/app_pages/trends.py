"""Insights → Events & Trends: how often events happen, and to how many people, over time."""

import streamlit as st

from dashboards.lib import charts, forms, guards, queries, results, saved
from dashboards.lib.periods import default_period
from safar.analytics.retention_spec import PERIODS
from safar.analytics.trends_spec import MATHS, PROPERTY_MATHS

P = forms.TRENDS

st.title("Events & Trends")
st.caption("One line per series: a number per period, from the events that match it.")

home = queries.current_home()
names, first_day, last_day = guards.event_catalog(home)

saved.open_saved(home, "trends", P, forms.trends_state)
if f"{P}n_series" not in st.session_state:
    fallback = default_period(first_day, last_day)
    st.session_state.update(forms.trends_state(forms.default_trends(names, fallback)))

# --- Builder ---------------------------------------------------------------------------------
properties = queries.load_property_names(home)
event_properties = [prop for scope, prop in properties if scope == "event"]
with st.container(border=True):
    top = st.columns([1, 1, 2, 2])
    most = max(forms.MAX_SERIES, st.session_state[f"{P}n_series"])
    top[0].number_input("Series", min_value=1, max_value=most, key=f"{P}n_series")
    top[1].selectbox("Interval", PERIODS, key=f"{P}interval")
    top[2].date_input("Dates", key=f"{P}period")
    chosen = st.session_state.get(f"{P}breakdown")
    breakdowns = [*properties, chosen] if chosen and chosen not in properties else properties
    top[3].selectbox(
        "Breakdown",
        [None, *breakdowns],
        format_func=lambda o: "None" if o is None else f"{o[1]} ({o[0]})",
        placeholder="None",
        key=f"{P}breakdown",
    )

    n_series = st.session_state[f"{P}n_series"]
    for i in range(n_series):
        event_key, math_key, property_key = (f"{P}event_{i}", f"{P}math_{i}", f"{P}property_{i}")
        st.session_state.setdefault(event_key, names[0])
        st.session_state.setdefault(math_key, "total")
        row = st.columns([3, 2, 2])
        row[0].selectbox(
            f"Series {i + 1}",
            forms.event_options(names, [st.session_state[event_key]]),
            key=event_key,
        )
        row[1].selectbox(
            "Counted as",
            MATHS,
            format_func=lambda m: forms.MATH_LABELS[m].capitalize(),
            key=math_key,
        )
        if st.session_state[math_key] in PROPERTY_MATHS:
            current = st.session_state.get(property_key)
            strays = [] if current is None or current in event_properties else [current]
            row[2].selectbox(
                "Of property",
                [*event_properties, *strays],
                index=None,
                placeholder="Pick a numeric property",
                key=property_key,
            )

spec = forms.trends_spec(st.session_state)
result = saved.run_and_offer_save(home, "trends", P, spec, lambda: queries.load_trends(home, spec))

# --- Results ---------------------------------------------------------------------------------
lines = result["series"]
st.plotly_chart(charts.build_trends_figure(results.trends_frame(lines)), key=f"{P}chart")
st.dataframe(
    results.trends_totals(lines),
    hide_index=True,
    key=f"{P}totals",
    column_config={"Total": st.column_config.NumberColumn(format="localized")},
)
st.caption(
    "Totals are over the whole range: events and sums add up, unique and active people are "
    "counted once."
)
