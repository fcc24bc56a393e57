"""Engage → SQL segment: write the query, check it in the sandbox, preview it, save it."""

import polars as pl
import streamlit as st

from dashboards.lib import queries, segment_ui
from dashboards.lib.segment_forms import SQL_EDITOR, definition_from_state

P = SQL_EDITOR
STARTER = """-- One query returning user_id (the person id); it may read the marts listed below.
select person_id as user_id
from dim_users
where is_known
"""

st.title("SQL segment")
st.caption(
    "One SELECT returning `user_id`, over the dbt marts and `segment_membership`. The sandbox "
    "checks it before it runs: one query, known tables and columns, no files or settings. "
    "`now()` is the evaluation time, so a query that reads it is re-checked as time passes."
)

home = queries.current_home()
catalog = segment_ui.segment_catalog(home)
segment_ui.open_app_segment(home, P, "sql", lambda d: {f"{P}sql": d.sql})
st.session_state.setdefault(f"{P}sql", STARTER)

segment_ui.details_form(P)
st.text_area("Query", key=f"{P}sql", height=260)
with st.expander("Tables and columns a segment can read", icon=":material/table:"):
    readable = [
        {"Table": table, "Columns": ", ".join(f"{c} ({t.lower()})" for c, t in columns.items())}
        for table, columns in sorted(catalog.items())
    ]
    st.dataframe(pl.DataFrame(readable), hide_index=True, key=f"{P}catalog")


def build():
    return definition_from_state(st.session_state, P, "sql", sql=st.session_state[f"{P}sql"])


def text() -> str:
    return st.session_state[f"{P}sql"]


segment_ui.actions(home, P, build, text)
segment_ui.show_notice(P)
try:
    version = build().version
except ValueError:  # a refresh that is not an interval: the notice says so on Save
    version = None
segment_ui.show_outcome(P, version)
