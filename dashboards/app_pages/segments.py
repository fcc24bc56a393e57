"""Engage → Segments: every segment with its size and trend; one in detail, previewed now."""

import json

import streamlit as st

from dashboards.lib import charts, queries, segment_ui
from dashboards.lib import segments as data
from dashboards.lib.segment_forms import (
    APP_ORIGIN,
    BUILDER,
    KIND_LABELS,
    LIST,
    SQL_EDITOR,
    defined_in,
    plain,
    segments_frame,
)
from safar.segments.builder import BuilderError, describe, parse_condition
from safar.segments.compile import CompileError
from safar.segments.definitions import DefinitionError
from safar.segments.sandbox import SandboxError

P = LIST
EDITORS = {
    "sql": (SQL_EDITOR, "app_pages/segments_sql.py"),
    "builder": (BUILDER, "app_pages/segments_builder.py"),
}

st.title("Segments")
st.caption(
    "Groups of people kept up to date from the warehouse: analysts' files in `segments_sql/` "
    "(in git) and segments made here. Each is re-evaluated after the micro-batches that change "
    "what it reads."
)

home = queries.current_home()
try:
    definitions = data.load_definitions(home)
except DefinitionError as exc:
    st.error(f"**The segments cannot be read.** {exc}", icon=":material/error:")
    st.stop()

links = st.columns(3)
links[0].page_link("app_pages/segments_sql.py", label="New SQL segment", icon=":material/code:")
links[1].page_link("app_pages/segments_builder.py", label="Build a segment", icon=":material/tune:")
links[2].page_link(
    "app_pages/segments_upload.py", label="Upload a list", icon=":material/upload_file:"
)


def _delete(slug: str) -> None:
    try:
        data.delete_app_segment(home, slug)
    except DefinitionError as exc:
        segment_ui.notify(P, "error", f"Not deleted: {exc}")
        return
    st.session_state[f"{P}selected"] = None
    segment_ui.notify(
        P, "success", f"Deleted “{slug}”. Its membership history stays in the warehouse."
    )


segment_ui.show_notice(P)
if not definitions:
    st.info(
        "No segments yet. Write one in SQL, build one, or upload a list.",
        icon=":material/groups:",
    )
    st.stop()

slugs = tuple(d.slug for d in definitions)
sizes = data.load_sizes(home)
histories = data.load_histories(home, slugs)
table = segments_frame(
    definitions, sizes, {slug: frame["size"].to_list() for slug, frame in histories.items()}
)
st.dataframe(
    table,
    hide_index=True,
    key=f"{P}table",
    column_order=(
        "Name",
        "Size",
        "7-day change",
        "Trend",
        "Last evaluated",
        "Kind",
        "Refresh",
        "Owner",
        "Defined in",
        "Slug",
    ),  # fmt: skip
    column_config={
        "Size": st.column_config.NumberColumn(format="localized"),
        "7-day change": st.column_config.NumberColumn(format="%+d"),
        "Last evaluated": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "Trend": st.column_config.LineChartColumn("Trend", y_min=0, width="small"),
        "Name": st.column_config.TextColumn(width="medium"),
    },
)
if not sizes:
    st.caption(
        "No segment has been evaluated on this warehouse yet: sizes appear after the next "
        "micro-batch, or `safar segment evaluate`."
    )

by_slug = {d.slug: d for d in definitions}
if st.session_state.get(f"{P}selected") not in by_slug:
    st.session_state[f"{P}selected"] = None
slug = st.selectbox(
    "Segment",
    slugs,
    index=None,
    format_func=lambda s: f"{by_slug[s].name} ({s})",
    placeholder="Pick a segment to see its definition, its size over time and a preview",
    key=f"{P}selected",
)
if slug is None:
    st.stop()

# --- One segment -----------------------------------------------------------------------------
definition = by_slug[slug]
st.header(plain(definition.name))
facts = [KIND_LABELS[definition.kind], f"refresh {definition.refresh_text}"]
if definition.owner:
    facts.append(f"owner {definition.owner}")
description = f"\n\n{plain(definition.description)}" if definition.description else ""
st.caption(plain(" · ".join(facts)) + description)

if definition.origin == APP_ORIGIN:
    buttons = st.columns([1, 1, 6])
    if definition.kind in EDITORS:
        prefix, page = EDITORS[definition.kind]
        if buttons[0].button("Edit", key=f"{P}edit", icon=":material/edit:"):
            segment_ui.request_open(prefix, slug)
            st.switch_page(page)
    with buttons[1].popover("Delete", icon=":material/delete:"):
        st.write(f"Delete “{definition.name}”? Its membership history stays in the warehouse.")
        st.button(
            "Delete segment", key=f"{P}delete", type="primary", on_click=_delete, args=(slug,)
        )
else:
    st.info(
        f"Defined in `{defined_in(definition)}` — edit it in git.",
        icon=":material/lock:",
    )

left, right = st.columns(2)
with left:
    st.subheader("Definition")
    if definition.kind == "sql":
        st.code(definition.sql, language="sql")
    elif definition.kind == "builder":
        try:
            st.markdown(plain(describe(parse_condition(definition.condition))))
        except BuilderError as exc:
            st.error(f"**This tree is not valid:** {exc}", icon=":material/error:")
        st.code(json.dumps(definition.condition, indent=2, ensure_ascii=False), language="json")
    else:
        listed = data.static_size(home, slug)
        st.markdown(f"A list of **{listed:,}** people, uploaded.")
with right:
    history = histories[slug]
    if history.is_empty():
        st.subheader("Size over time")
        st.caption("Not evaluated yet.")
    else:
        st.plotly_chart(charts.build_segment_size_figure(history), key=f"{P}size_chart")

st.subheader("Now")
try:
    if definition.kind == "static":
        st.metric("People", f"{listed:,}", border=True)
        sample = data.load_static_sample(home, slug)
        st.dataframe(sample, hide_index=True, key=f"{P}static_sample")
    else:
        with st.spinner("Counting…"):
            result = data.run_preview(home, definition)
        segment_ui.show_preview(result)
except queries.WarehouseNotReady as exc:
    st.info(f"**The warehouse is not built yet.** {exc}", icon=":material/construction:")
except (CompileError, SandboxError) as exc:
    st.error(f"**It cannot run now.** {exc}", icon=":material/error:")
