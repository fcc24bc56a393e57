"""The Streamlit parts the Segments pages share: the guard, the details form, checks and saves.

The editors (SQL, builder, upload) all name a segment the same way, check it the same way and
show the same preview. Work happens in widget callbacks, as in :mod:`dashboards.lib.saved`:
each reads the page's widgets from session state when it runs (not values bound when the
button was drawn), and leaves what it found for the page to show: a notice, or the outcome of
a check tied to the definition it checked, so editing the query hides a stale answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
import streamlit as st

from dashboards.lib import guards, queries
from dashboards.lib import segments as data
from dashboards.lib.segment_forms import (
    REFRESH_UNITS,
    details_state,
    error_excerpt,
    plain,
    slugify,
    without_position,
)
from safar.appdb import segments as app_segments
from safar.segments.compile import CompileError
from safar.segments.definitions import SegmentDefinition
from safar.segments.preview import Preview
from safar.segments.sandbox import Catalog, SandboxError

Build = Callable[[], SegmentDefinition]
"""Reads the page's widgets into the definition they describe (may raise ValueError)."""
ToState = Callable[[SegmentDefinition], dict[str, Any]]


def segment_catalog(home: str) -> Catalog:
    """The warehouse catalog segments are checked against; stops the page when it is not built."""
    try:
        return data.catalog(home)
    except queries.WarehouseNotReady as exc:
        guards.stop_until_built(exc, "Segments are checked against its tables. ")


# --- notices and outcomes --------------------------------------------------------------------


def notify(prefix: str, level: str, text: str) -> None:
    """Keep a message for the page to show on this run (callbacks cannot draw)."""
    st.session_state[f"{prefix}notice"] = (level, text)


def show_notice(prefix: str) -> None:
    if notice := st.session_state.pop(f"{prefix}notice", None):
        level, text = notice
        getattr(st, level)(text)


@dataclass(frozen=True)
class Outcome:
    """What the last check found, for the definition with version ``version``."""

    version: str
    text: str
    preview: Preview | None = None
    time_relative: bool = False
    tables: tuple[str, ...] = ()
    problem: str | None = None
    line: int | None = None
    column: int | None = None
    ran: bool = False


def _problem(version: str, text: str, exc: CompileError | SandboxError) -> Outcome:
    """A definition that failed its checks (CompileError) or, checked, failed to run."""
    if isinstance(exc, CompileError):
        return Outcome(version, text, problem=exc.reason, line=exc.line, column=exc.column)
    return Outcome(version, text, problem=str(exc), ran=True)


def _validate(home: str, prefix: str, build: Build, text: Callable[[], str]) -> None:
    try:
        definition = build()
    except ValueError as exc:
        notify(prefix, "error", f"Not checked: {exc}")
        return
    try:
        compiled = data.check(home, definition)
    except CompileError as exc:
        st.session_state[f"{prefix}outcome"] = _problem(definition.version, text(), exc)
        return
    st.session_state[f"{prefix}outcome"] = Outcome(
        definition.version,
        text(),
        time_relative=compiled.time_relative,
        tables=tuple(sorted(compiled.tables)),
    )


def _preview(home: str, prefix: str, build: Build, text: Callable[[], str]) -> None:
    try:
        definition = build()
    except ValueError as exc:
        notify(prefix, "error", f"Not previewed: {exc}")
        return
    try:
        result = data.run_preview(home, definition)
    except (CompileError, SandboxError) as exc:
        st.session_state[f"{prefix}outcome"] = _problem(definition.version, text(), exc)
        return
    st.session_state[f"{prefix}outcome"] = Outcome(
        definition.version, text(), preview=result, time_relative=result.time_relative
    )


def _save(home: str, prefix: str, build: Build, text: Callable[[], str]) -> None:
    try:
        definition = build()
        existed = data.get_app_segment(home, definition.slug) is not None
        saved = data.save(home, definition)
    except CompileError as exc:
        st.session_state[f"{prefix}outcome"] = _problem(definition.version, text(), exc)
        notify(prefix, "error", "Not saved: it does not pass the checks (see below).")
        return
    except (ValueError, queries.WarehouseNotReady) as exc:  # DefinitionError among them
        notify(prefix, "error", f"Not saved: {exc}")
        return
    verb = "Updated" if existed else "Saved"
    notify(prefix, "success", f"{verb} “{saved.name}” ({saved.slug}).")
    st.session_state[f"{prefix}open"] = saved.slug


def actions(
    home: str, prefix: str, build: Build, text: Callable[[], str], *, can_run: bool = True
) -> None:
    """The Validate, Preview and Save buttons of an editor, side by side."""
    why = None if can_run else "Fix the definition first."
    buttons = st.columns([1, 1, 1, 5])
    args = (home, prefix, build, text)
    buttons[0].button(
        "Validate",
        key=f"{prefix}validate",
        icon=":material/rule:",
        on_click=_validate,
        args=args,
        disabled=not can_run,
        help=why,
    )
    buttons[1].button(
        "Preview",
        key=f"{prefix}preview",
        icon=":material/visibility:",
        on_click=_preview,
        args=args,
        disabled=not can_run,
        help=why,
    )
    buttons[2].button(
        "Save",
        key=f"{prefix}save",
        type="primary",
        icon=":material/save:",
        on_click=_save,
        args=args,
        disabled=not can_run,
        help=why,
    )


def show_problem(
    reason: str, line: int | None, column: int | None, text: str, *, ran: bool = False
) -> None:
    """A check that failed: the message with its line and column, and the line with a caret."""
    where = f" at line {line}, column {column}" if line is not None else ""
    title = "It did not run" if ran else f"Not valid{where}"
    st.error(f"**{title}:** {plain(without_position(reason))}", icon=":material/error:")
    excerpt = error_excerpt(text, line, column)
    if excerpt:
        st.code(excerpt, language=None)


def show_preview(result: Preview) -> None:
    """How many people a definition selects now, how long that took, and a sample."""
    tiles = st.columns(3)
    tiles[0].metric("People", f"{result.size:,}", border=True)
    tiles[1].metric(
        "Time-relative",
        "Yes" if result.time_relative else "No",
        border=True,
        help="Its members change as time passes, with no new event; it is re-checked often.",
    )
    tiles[2].metric("Took", f"{result.seconds:.2f} s", border=True)
    if result.description:
        st.caption(plain(result.description))
    if not result.sample:
        st.caption(f"Nobody matches as of {result.as_of:%Y-%m-%d %H:%M} UTC.")
        return
    st.caption(f"As of {result.as_of:%Y-%m-%d %H:%M} UTC · a stable sample of {len(result.sample)}")
    st.dataframe(pl.DataFrame(result.sample), hide_index=True)


def show_outcome(prefix: str, version: str | None) -> None:
    """The last check of this editor, if it was of the definition as it is now."""
    outcome: Outcome | None = st.session_state.get(f"{prefix}outcome")
    if outcome is None or outcome.version != version:
        return
    if outcome.problem is not None:
        show_problem(outcome.problem, outcome.line, outcome.column, outcome.text, ran=outcome.ran)
    elif outcome.preview is not None:
        show_preview(outcome.preview)
    else:
        relative = " It is time-relative: it is re-checked as time passes." * outcome.time_relative
        st.success(
            f"**Valid.** It reads {', '.join(outcome.tables) or 'no table'}.{relative}",
            icon=":material/check_circle:",
        )


# --- the details form ------------------------------------------------------------------------


def _name_changed(prefix: str) -> None:
    """The slug follows the name until someone edits the slug."""
    state = st.session_state
    slug, auto = state.get(f"{prefix}slug") or "", state.get(f"{prefix}slug_auto")
    if not slug or slug == auto:
        state[f"{prefix}slug"] = state[f"{prefix}slug_auto"] = slugify(state[f"{prefix}name"])


def details_form(prefix: str, *, refresh: bool = True) -> None:
    """Name, slug, description, owner and (not for lists) how often it is re-evaluated."""
    state = st.session_state
    for key, default in (("name", ""), ("slug", ""), ("slug_auto", ""), ("description", "")):
        state.setdefault(f"{prefix}{key}", default)
    state.setdefault(f"{prefix}owner", "")
    top = st.columns(2)
    top[0].text_input(
        "Name",
        key=f"{prefix}name",
        max_chars=app_segments.MAX_NAME_LENGTH,
        on_change=_name_changed,
        args=(prefix,),
    )
    top[1].text_input(
        "Slug",
        key=f"{prefix}slug",
        max_chars=63,
        help="Its id: lower-case letters, digits, - and _. It follows the name until you edit it.",
    )
    st.text_input("Description", key=f"{prefix}description")
    bottom = st.columns([2, 1, 1, 1]) if refresh else st.columns([2, 3])
    bottom[0].text_input("Owner", key=f"{prefix}owner")
    if not refresh:
        return
    state.setdefault(f"{prefix}refresh_mode", "live")
    state.setdefault(f"{prefix}refresh_every", 1)
    state.setdefault(f"{prefix}refresh_unit", "h")
    mode = bottom[1].radio(
        "Refresh",
        ("live", "interval"),
        format_func={"live": "Live", "interval": "Every"}.get,
        horizontal=True,
        key=f"{prefix}refresh_mode",
        help="Live: after every micro-batch that changed what it reads. Every: at most that "
        "often, for expensive queries.",
    )
    if mode == "interval":
        bottom[2].number_input("Every", min_value=1, step=1, key=f"{prefix}refresh_every")
        bottom[3].selectbox(
            "Unit", tuple(REFRESH_UNITS), format_func=REFRESH_UNITS.get, key=f"{prefix}refresh_unit"
        )


# --- opening app segments --------------------------------------------------------------------


def _open(home: str, prefix: str, to_state: ToState) -> None:
    slug = st.session_state.get(f"{prefix}open")
    if slug is None:
        return
    definition = data.get_app_segment(home, slug)
    if definition is None:
        st.session_state[f"{prefix}open"] = None
        notify(prefix, "warning", f"“{slug}” is gone; someone else deleted it.")
        return
    st.session_state.update(details_state(prefix, definition))
    st.session_state.update(to_state(definition))
    st.session_state.pop(f"{prefix}outcome", None)


def _new(prefix: str) -> None:
    for key in [k for k in st.session_state if str(k).startswith(prefix)]:
        del st.session_state[key]
    st.session_state[f"{prefix}open"] = None


def request_open(prefix: str, slug: str) -> None:
    """Ask the editor with ``prefix`` to open ``slug`` when it runs next (before a page switch)."""
    st.session_state[f"{prefix}open_request"] = slug


def open_app_segment(home: str, prefix: str, kind: str, to_state: ToState) -> None:
    """Sidebar: open an app segment of ``kind`` into the editor, or start a new one.

    Call it before the editor's widgets: opening writes their values.
    """
    if (slug := st.session_state.pop(f"{prefix}open_request", None)) is not None:
        st.session_state[f"{prefix}open"] = slug
        _open(home, prefix, to_state)
    saved = [d.slug for d in app_segments.list_segments(data.registry(home)) if d.kind == kind]
    if st.session_state.get(f"{prefix}open") not in saved:
        st.session_state[f"{prefix}open"] = None
    sidebar = st.sidebar
    sidebar.subheader("Segments made here")
    sidebar.selectbox(
        "Open",
        saved,
        index=None,
        placeholder="Pick one to edit" if saved else "None yet",
        disabled=not saved,
        key=f"{prefix}open",
        on_change=_open,
        args=(home, prefix, to_state),
    )
    sidebar.button(
        "New segment", key=f"{prefix}new", icon=":material/add:", on_click=_new, args=(prefix,)
    )
