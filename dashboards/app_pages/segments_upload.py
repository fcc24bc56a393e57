"""Engage → Upload a list: specific people, from a CSV of user ids, emails or phones."""

from pathlib import Path

import streamlit as st

from dashboards.lib import queries, segment_ui
from dashboards.lib import segments as data
from dashboards.lib.segment_forms import UPLOAD, csv_columns
from safar.segments.static_list import StaticListError

P = UPLOAD
AUTO = ""
KINDS = {AUTO: "(detect)", "user_id": "User ids", "email": "Emails", "phone": "Phone numbers"}
KIND_NOUNS = {"user_id": "user id", "email": "email", "phone": "phone number"}

st.title("Upload a list")
st.caption(
    "Specific people: a CSV with a header row and one user id, email or phone number a line "
    "(other columns are ignored). Emails are matched in any case, phones in any common "
    "writing (`0912…`, `+98 912…`, Persian digits). A key that matches several people selects "
    "nobody."
)

home = queries.current_home()
segment_ui.segment_catalog(home)


def _uploaded() -> bytes | None:
    file = st.session_state.get(f"{P}file")
    return None if file is None else file.getvalue()


def _choices() -> tuple[str | None, str | None]:
    return st.session_state.get(f"{P}column") or None, st.session_state.get(f"{P}kind") or None


def _save() -> None:
    content = _uploaded()
    if content is None:
        segment_ui.notify(P, "error", "Not saved: upload a file first.")
        return
    state = st.session_state
    try:
        _, report = data.match_upload(home, content, *_choices())
        saved = data.save_list(
            home,
            report,
            slug=(state.get(f"{P}slug") or "").strip(),
            name=state.get(f"{P}name") or "",
            description=state.get(f"{P}description") or "",
            owner=state.get(f"{P}owner") or "",
        )
    except (ValueError, queries.WarehouseNotReady) as exc:  # DefinitionError, StaticListError
        segment_ui.notify(P, "error", f"Not saved: {exc}")
        return
    people = len(report.person_ids)
    noun = "person" if people == 1 else "people"
    segment_ui.notify(P, "success", f"Saved “{saved.name}” ({saved.slug}): {people:,} {noun}.")


uploaded = st.file_uploader(
    "CSV file", type=["csv", "txt", "tsv"], key=f"{P}file", help="UTF-8 (or Excel's UTF-16)."
)
if uploaded is None:
    st.stop()

content = uploaded.getvalue()
columns = [AUTO, *csv_columns(content)]
if st.session_state.get(f"{P}column") not in columns:
    st.session_state[f"{P}column"] = AUTO
choose = st.columns(2)
choose[0].selectbox(
    "Match on column",
    columns,
    format_func=lambda c: c or "(the one the header names)",
    key=f"{P}column",
)
choose[1].selectbox("The values are", tuple(KINDS), format_func=KINDS.get, key=f"{P}kind")

try:
    parsed, report = data.match_upload(home, content, *_choices())
except StaticListError as exc:
    st.error(f"**This file cannot be used.** {exc}", icon=":material/error:")
    st.stop()

tiles = st.columns(4)
tiles[0].metric("Rows", f"{len(parsed.rows):,}", border=True)
tiles[1].metric("Matched people", f"{len(report.person_ids):,}", border=True)
tiles[2].metric("Rows that matched nobody", f"{len(report.unmatched):,}", border=True)
tiles[3].metric("Matched by", KIND_NOUNS[report.kind], border=True)
st.caption(f"Keys from the column “{parsed.column}”, read as {KIND_NOUNS[report.kind]}s.")

if report.unmatched:
    st.subheader("Rows that matched nobody")
    st.dataframe(data.unmatched_frame(report), hide_index=True, key=f"{P}unmatched")
    st.download_button(
        "Download these rows",
        report.unmatched_csv(),
        file_name=f"{Path(uploaded.name).stem}-unmatched.csv",
        mime="text/csv",
        icon=":material/download:",
        key=f"{P}unmatched_csv",
    )
else:
    st.success("Every row matched one person.", icon=":material/check_circle:")

st.subheader("Save as a segment")
segment_ui.details_form(P, refresh=False)
st.button(
    "Save list",
    key=f"{P}save",
    type="primary",
    icon=":material/save:",
    on_click=_save,
    disabled=not report.person_ids,
    help=None if report.person_ids else "Nobody matched: there is nobody to save.",
)
st.caption("Saving under the slug of a list made here replaces its people.")
segment_ui.show_notice(P)
