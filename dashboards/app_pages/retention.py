"""Insights → Retention: of the people who did something in a period, who came back later."""

import streamlit as st

from dashboards.lib import charts, forms, guards, queries, results, saved
from safar.analytics.retention_spec import PERIODS, TYPES

P = forms.RETENTION
TYPE_LABELS = {
    "recurring": "Every time they do it",
    "first_time": "The first time they do it",
}

st.title("Retention")
st.caption(
    "Each row is a cohort: the people who did the target event in that period. Each cell is "
    "the share of them who did the returning event that many periods later."
)

home = queries.current_home()
names, _, last_day = guards.event_catalog(home)

saved.open_saved(home, "retention", P, forms.retention_state)
if f"{P}target" not in st.session_state:
    st.session_state.update(forms.retention_state(forms.default_retention(names, last_day)))

# --- Builder ---------------------------------------------------------------------------------
with st.container(border=True):
    options = forms.event_options(
        names, [st.session_state[f"{P}target"], st.session_state[f"{P}returning"]]
    )
    top = st.columns(2)
    top[0].selectbox("Target event (joins a cohort)", options, key=f"{P}target")
    top[1].selectbox("Returning event (counts as back)", options, key=f"{P}returning")
    bottom = st.columns([1, 1, 2, 2, 1])
    bottom[0].selectbox("Period", PERIODS, key=f"{P}period")
    uses_from = forms.retention_uses_from(st.session_state)
    bottom[1].number_input(
        "Periods",
        min_value=1,
        max_value=max(forms.MAX_INTERVALS, st.session_state[f"{P}intervals"]),
        key=f"{P}intervals",
        disabled=uses_from,
        help="Set by the saved report's first period (`from`)." if uses_from else None,
    )
    bottom[2].selectbox("Cohort by", TYPES, format_func=TYPE_LABELS.get, key=f"{P}type")
    bottom[3].date_input("Last period includes", key=f"{P}to")
    bottom[4].checkbox(
        "Cumulative",
        key=f"{P}cumulative",
        help="Count someone as back in a period if they came back then or any time later.",
    )

spec = forms.retention_spec(st.session_state)
result = saved.run_and_offer_save(
    home, "retention", P, spec, lambda: queries.load_retention(home, spec)
)

# --- Results ---------------------------------------------------------------------------------
period = spec["period"]
long = results.retention_frame(result["cohorts"])
average = results.retention_average(long)
rates = dict(zip(average["offset"], average["rate"], strict=True))
last = max(rates, default=0)
tiles = st.columns(3)
tiles[0].metric(
    "People in cohorts",
    f"{int(average['size'][0]) if average.height else 0:,}",
    border=True,
    help="Cohort sizes added up; with recurring cohorts someone can be in several.",
)
# After one period, and after the longest any cohort has had (when that is longer).
shown = [o for o in dict.fromkeys((1, last)) if 1 <= o <= last]
for tile, offset in zip(tiles[1 : 1 + len(shown)], shown, strict=True):
    rate = rates.get(offset)
    tile.metric(
        f"Back after {offset} {period}{'s' if offset != 1 else ''}",
        "–" if rate is None else f"{rate:.1%}",
        border=True,
        help="Over the cohorts that have had that long, weighted by cohort size.",
    )

st.plotly_chart(charts.build_retention_figure(long, period), key=f"{P}heatmap")
st.dataframe(results.retention_table(long, period), hide_index=True, key=f"{P}table")

st.subheader("People")
starts = [results.period_label(c["period_start"], period) for c in result["cohorts"]]
cohorts = {
    row: f"{start} ({cohort['values'][0]:,} people)"
    for row, (start, cohort) in enumerate(zip(starts, result["cohorts"], strict=True))
}
row = st.selectbox(
    "Cohort",
    list(cohorts),
    index=None,
    format_func=cohorts.get,
    placeholder="Pick a cohort to list its people and when they came back",
    key=f"{P}people",
)
if row is not None:
    people = results.actors_frame(queries.load_retention(home, spec, row)["actors"], period)
    st.caption(f"{people.height:,} people in the cohort of {starts[row]}")
    st.dataframe(people, hide_index=True, key=f"{P}people_table")
    st.download_button(
        "Download CSV",
        people.write_csv(),
        file_name=f"retention-cohort-{starts[row].replace(' ', '-')}.csv",
        mime="text/csv",
        icon=":material/download:",
        key=f"{P}people_csv",
    )
