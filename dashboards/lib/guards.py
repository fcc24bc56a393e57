"""What an Insights page needs before it can draw anything, or a message and a stop."""

from __future__ import annotations

from datetime import date

import streamlit as st

from dashboards.lib import queries


def stop_until_built(exc: queries.WarehouseNotReady, why: str = "") -> None:
    """Say that the warehouse is not built yet and how to build it, then stop the page."""
    st.info(
        f"**The warehouse is not built yet.** {why}Generate or ingest events, then run "
        f"`safar build` (or the `build_warehouse_job` in Dagster).\n\nDetails: {exc}",
        icon=":material/construction:",
    )
    st.stop()


def event_catalog(home: str) -> tuple[list[str], date, date]:
    """The warehouse's event names and first/last event day.

    Stops the page with a message saying what to do when the warehouse is not built or holds
    no events yet.
    """
    try:
        names = queries.load_event_names(home)
        first_day, last_day = queries.load_event_days(home)
    except queries.WarehouseNotReady as exc:
        stop_until_built(exc)
    if not names:
        st.info(f"The warehouse at `{home}` has no events yet.", icon=":material/hourglass:")
        st.stop()
    return names, first_day, last_day
