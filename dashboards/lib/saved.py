"""The saved-insights sidebar of the Insights pages: open, save, rename and delete.

Each page calls :func:`open_saved` before its builder and :func:`run_and_offer_save` after it. The
work happens in widget callbacks, which Streamlit runs before the page's script: opening an
insight writes the builder's widget values (``to_state(spec)``, see ``dashboards.lib.forms``)
before the builder's widgets are drawn, which is the only time Streamlit lets a page set them.
Insights are read uncached from the app DB (``queries.app_db``), so a save shows at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import streamlit as st

from dashboards.lib import queries
from safar.analytics.spec import SpecError
from safar.appdb import insights

ToState = Callable[[dict[str, Any]], dict[str, Any]]

LABELS = {"funnel": "funnel", "retention": "retention report", "trends": "trend"}


def _notify(prefix: str, level: str, text: str) -> None:
    """Keep a message for the sidebar to show on this run (callbacks cannot draw)."""
    st.session_state[f"{prefix}notice"] = (level, text)


def _open(home: str, kind: str, prefix: str, to_state: ToState) -> None:
    name = st.session_state.get(f"{prefix}saved")
    if name is None:
        return
    insight = insights.get_insight(queries.app_db(home), kind, name)
    if insight is None:
        st.session_state[f"{prefix}saved"] = None
        _notify(prefix, "warning", f"“{name}” is gone; someone else deleted it.")
        return
    st.session_state.update(to_state(insight.spec))
    st.session_state[f"{prefix}save_name"] = insight.name
    st.session_state[f"{prefix}save_description"] = insight.description


def _save(home: str, kind: str, prefix: str, spec: dict[str, Any]) -> None:
    name = st.session_state.get(f"{prefix}save_name") or ""
    description = st.session_state.get(f"{prefix}save_description") or ""
    try:
        saved = insights.save_insight(queries.app_db(home), kind, name, spec, description)
    except (SpecError, insights.InsightError) as exc:
        _notify(prefix, "error", f"Not saved: {exc}")
        return
    st.session_state[f"{prefix}saved"] = saved.name
    st.session_state[f"{prefix}save_name"] = saved.name
    replaced = saved.updated_at != saved.created_at
    _notify(prefix, "success", f"{'Updated' if replaced else 'Saved'} “{saved.name}”.")


def _rename(home: str, kind: str, prefix: str, name: str) -> None:
    new_name = st.session_state.get(f"{prefix}rename_to_{name}") or ""
    try:
        renamed = insights.rename_insight(queries.app_db(home), kind, name, new_name)
    except insights.InsightError as exc:
        _notify(prefix, "error", f"Not renamed: {exc}")
        return
    st.session_state[f"{prefix}saved"] = renamed.name
    st.session_state[f"{prefix}save_name"] = renamed.name
    _notify(prefix, "success", f"Renamed “{name}” to “{renamed.name}”.")


def _delete(home: str, kind: str, prefix: str, name: str) -> None:
    try:
        insights.delete_insight(queries.app_db(home), kind, name)
    except insights.InsightError as exc:
        _notify(prefix, "error", f"Not deleted: {exc}")
        return
    st.session_state[f"{prefix}saved"] = None
    _notify(prefix, "success", f"Deleted “{name}”.")


def open_saved(home: str, kind: str, prefix: str, to_state: ToState) -> None:
    """Sidebar: pick a saved insight of ``kind`` to open; rename or delete the open one."""
    label = LABELS[kind]
    saved = {i.name: i for i in insights.list_insights(queries.app_db(home), kind)}
    if st.session_state.get(f"{prefix}saved") not in saved:
        st.session_state[f"{prefix}saved"] = None
    sidebar = st.sidebar
    sidebar.subheader(f"Saved {label}s")
    name = sidebar.selectbox(
        f"Open a saved {label}",
        list(saved),
        index=None,
        placeholder="Pick one" if saved else f"No saved {label}s yet",
        disabled=not saved,
        key=f"{prefix}saved",
        on_change=_open,
        args=(home, kind, prefix, to_state),
    )
    if notice := st.session_state.pop(f"{prefix}notice", None):
        level, text = notice
        getattr(sidebar, level)(text)
    if name is None:
        return
    insight = saved[name]
    updated = f"Updated {insight.updated_at:%Y-%m-%d %H:%M} UTC"
    sidebar.caption(f"{insight.description}\n\n{updated}" if insight.description else updated)
    with sidebar.expander(f"Rename or delete “{name}”"):
        # One field per insight, so opening another does not keep this one's typing.
        st.text_input("New name", value=name, key=f"{prefix}rename_to_{name}")
        left, right = st.columns(2)
        left.button(
            "Rename", key=f"{prefix}rename", on_click=_rename, args=(home, kind, prefix, name)
        )
        right.button(
            "Delete",
            key=f"{prefix}delete",
            type="secondary",
            icon=":material/delete:",
            on_click=_delete,
            args=(home, kind, prefix, name),
        )


def save_current(home: str, kind: str, prefix: str, spec: dict[str, Any] | None) -> None:
    """Sidebar: save the builder's ``spec`` under a name (None: nothing runnable to save).

    Saving under the name of a saved insight replaces it; a new name makes a copy.
    """
    label = LABELS[kind]
    sidebar = st.sidebar
    sidebar.subheader(f"Save this {label}")
    sidebar.text_input("Name", key=f"{prefix}save_name", max_chars=insights.MAX_NAME_LENGTH)
    sidebar.text_area("Description", key=f"{prefix}save_description", height=68)
    sidebar.button(
        "Save",
        key=f"{prefix}save",
        type="primary",
        icon=":material/save:",
        disabled=spec is None,
        help=None if spec is not None else f"Fix the {label} first: it cannot run as it is.",
        on_click=_save,
        args=(home, kind, prefix, spec),
    )


def run_and_offer_save(
    home: str, kind: str, prefix: str, spec: dict[str, Any], run: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Show ``spec``, ``run`` it and offer to save it; stop the page when it cannot run."""
    with st.expander("Spec (JSON)", icon=":material/data_object:"):
        st.code(json.dumps(spec, indent=2, ensure_ascii=False), language="json")
    try:
        result = run()
    except ValueError as exc:  # SpecError, or a spec the engine cannot run
        st.error(f"**This {LABELS[kind]} cannot run.** {exc}", icon=":material/error:")
        save_current(home, kind, prefix, None)
        st.stop()
    save_current(home, kind, prefix, spec)
    return result
