"""Insights → Funnels: how many people go through a sequence of steps, and who drops off."""

import streamlit as st

from dashboards.lib import charts, forms, guards, queries, results, saved
from dashboards.lib.periods import default_period
from safar.analytics.spec import ATTRIBUTIONS, ORDERS, UNITS

P = forms.FUNNEL
ORDER_LABELS = {
    "ordered": "In order",
    "strict": "In order, nothing between",
    "unordered": "Any order",
}
ATTRIBUTION_LABELS = {
    "first_touch": "First value seen",
    "last_touch": "Last value seen",
    "all_events": "Every value",
    "step": "Value at one step",
}

st.title("Funnels")
st.caption(
    "People who did the steps within the window, each step after the one before. "
    "A person counts once, through their attempt that got furthest."
)

home = queries.current_home()
names, first_day, last_day = guards.event_catalog(home)

saved.open_saved(home, "funnel", P, forms.funnel_state)
if f"{P}n_steps" not in st.session_state:
    fallback = default_period(first_day, last_day)
    st.session_state.update(forms.funnel_state(forms.default_funnel(names, fallback)))

# --- Builder ---------------------------------------------------------------------------------
with st.container(border=True):
    top = st.columns([1, 2, 1, 1, 2])
    # A saved funnel may have more steps than the builder offers; it can still show them.
    most = max(forms.MAX_STEPS, st.session_state[f"{P}n_steps"])
    top[0].number_input("Steps", min_value=1, max_value=most, key=f"{P}n_steps")
    top[1].selectbox("Order", ORDERS, format_func=ORDER_LABELS.get, key=f"{P}order")
    top[2].number_input("Window", min_value=1, key=f"{P}window_value")
    top[3].selectbox("Window unit", UNITS, key=f"{P}window_unit")
    top[4].date_input("Dates (empty: all)", key=f"{P}period")

    n_steps = st.session_state[f"{P}n_steps"]
    keys = [f"{P}step_{i}" for i in range(n_steps)]
    for key in keys:
        st.session_state.setdefault(key, names[0])
    options = forms.event_options(names, [st.session_state[key] for key in keys])
    per_row = 4
    for row in range(0, n_steps, per_row):
        columns = st.columns(per_row)
        for i in range(row, min(row + per_row, n_steps)):
            columns[i - row].selectbox(f"Step {i + 1}", options, key=keys[i])

    properties = queries.load_property_names(home)
    chosen = st.session_state.get(f"{P}breakdown")
    if chosen is not None and chosen not in properties:
        properties = [*properties, chosen]
    bottom = st.columns([2, 2, 1, 1])
    breakdown = bottom[0].selectbox(
        "Breakdown",
        [None, *properties],
        format_func=lambda o: "None" if o is None else f"{o[1]} ({o[0]})",
        placeholder="None",
        key=f"{P}breakdown",
    )
    if breakdown is not None:
        attribution = bottom[1].selectbox(
            "Attribution",
            ATTRIBUTIONS,
            format_func=ATTRIBUTION_LABELS.get,
            key=f"{P}attribution",
            help="Which value a person counts under when their steps carry several.",
        )
        if attribution == "step":
            if st.session_state.get(f"{P}breakdown_step", 0) >= n_steps:
                st.session_state[f"{P}breakdown_step"] = 0
            bottom[2].selectbox(
                "At step",
                range(n_steps),
                format_func=lambda i: str(i + 1),
                key=f"{P}breakdown_step",
            )

spec = forms.funnel_spec(st.session_state)
result = saved.run_and_offer_save(
    home, "funnel", P, spec, lambda: queries.load_funnel(home, spec, details=True)
)

# --- Results ---------------------------------------------------------------------------------
steps = results.funnel_steps_frame(result["steps"])
entered, completed = steps["count"][0], steps["count"][-1]
tiles = st.columns(4)
tiles[0].metric("Entered", f"{entered:,}", border=True, help="People who did step 1.")
tiles[1].metric("Completed", f"{completed:,}", border=True, help="People who did every step.")
tiles[2].metric(
    "Conversion",
    f"{steps['conversion_rate'][-1]:.1%}",
    border=True,
    help="Completed as a share of entered.",
)
if steps.height > 1 and entered:
    worst = steps.slice(1).sort("step_conversion_rate").row(0, named=True)
    tiles[3].metric(
        "Biggest drop-off",
        f"{1 - worst['step_conversion_rate']:.1%}",
        border=True,
        help=f"Lost before step {worst['step']} ({worst['name']}), of those at the step before.",
    )

st.plotly_chart(charts.build_funnel_figure(steps), key=f"{P}chart")
st.dataframe(results.funnel_table(steps), hide_index=True, key=f"{P}table")

if steps.height > 1:
    left, right = st.columns(2)
    left.plotly_chart(
        charts.build_time_to_convert_figure(
            results.time_to_convert_frame(result.get("time_to_convert") or {})
        ),
        key=f"{P}time_to_convert",
    )
    right.plotly_chart(
        charts.build_conversion_over_time_figure(
            results.conversion_over_time_frame(result.get("conversion_over_time") or [])
        ),
        key=f"{P}conversion_over_time",
    )

if "breakdown" in spec:
    prop = spec["breakdown"]["property"]
    st.subheader(f"By {prop}")
    long = results.funnel_breakdown_frame(result["breakdowns"])
    if long.is_empty():
        st.caption("Nobody entered the funnel, so there is nothing to break down.")
    else:
        st.plotly_chart(charts.build_funnel_breakdown_figure(long), key=f"{P}breakdown_chart")
        st.dataframe(
            results.funnel_breakdown_table(long), hide_index=True, key=f"{P}breakdown_table"
        )

st.subheader("People")
choices = results.people_choices(steps["name"].to_list())
persons = st.selectbox(
    "Who",
    list(choices),
    index=None,
    format_func=choices.get,
    placeholder="Pick a step to list who reached it or dropped off before it",
    key=f"{P}people",
)
if persons is not None:
    people = results.people_frame(queries.load_funnel(home, spec, persons)["persons"])
    st.caption(f"{people.height:,} people · {choices[persons]}")
    st.dataframe(people, hide_index=True, key=f"{P}people_table")
    kind = "step" if persons > 0 else "dropped-before-step"
    st.download_button(
        "Download CSV",
        people.write_csv(),
        file_name=f"funnel-{kind}-{abs(persons)}.csv",
        mime="text/csv",
        icon=":material/download:",
        key=f"{P}people_csv",
    )
