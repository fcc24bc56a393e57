"""Engage → Segment builder: who is in it, said with conditions; Safar writes the query."""

import json
from typing import Any

import streamlit as st

from dashboards.lib import forms, queries, segment_ui
from dashboards.lib import segments as data
from dashboards.lib.segment_forms import (
    BUILDER,
    COUNT_LABELS,
    DEFAULT_FIELDS,
    JOINS,
    NO_PROPERTY,
    ONCE,
    OP_LABELS,
    PROPERTY_OPS,
    ROW_KIND_LABELS,
    ROW_KINDS,
    TIME_LABELS,
    FormCannotShow,
    builder_state,
    builder_tree,
    definition_from_state,
    error_excerpt,
    new_builder_state,
    new_row_state,
    plain,
    registry,
    row_key,
    value_widgets,
)
from safar.segments.builder import (
    CHANNELS,
    OPS,
    BuilderError,
    compile_condition,
    describe,
    parse_condition,
)
from safar.segments.definitions import DefinitionError

P = BUILDER
CHANNEL_LABELS = {"email": "Email", "sms": "SMS", "push": "Push", "web_push": "Web push"}
MODES = {"form": "Form", "json": "JSON"}

st.title("Segment builder")
st.caption(
    "Who is in the segment, as conditions on people's attributes, what they did, their devices, "
    "how they can be reached and other segments. Safar compiles it to one query over the "
    "warehouse and says it in plain English."
)

home = queries.current_home()
segment_ui.segment_catalog(home)
events = queries.load_event_names(home)
properties = [prop for scope, prop in queries.load_property_names(home) if scope == "event"]
try:
    segment_slugs = [d.slug for d in data.load_definitions(home)]
except DefinitionError:
    segment_slugs = []
state = st.session_state


def _to_state(definition) -> dict[str, Any]:
    """An opened builder segment: in the form when it can show it, else as JSON."""
    text = json.dumps(definition.condition, indent=2, ensure_ascii=False)
    try:
        return {**builder_state(definition.condition), f"{P}mode": "form", f"{P}json": text}
    except (BuilderError, FormCannotShow):
        return {f"{P}mode": "json", f"{P}json": text, f"{P}rows": []}


segment_ui.open_app_segment(home, P, "builder", _to_state)
if f"{P}mode" not in state:  # a new page, or one left and come back to (widgets are reset)
    state.update(new_builder_state(events[0] if events else None))
    state[f"{P}mode"] = "form"


def _switch_mode() -> None:
    """Form → JSON writes the form's tree as text; JSON → form shows the text, if it can."""
    if state[f"{P}mode"] == "json":
        tree = builder_tree(state) or {"all": []}
        state[f"{P}json"] = json.dumps(tree, indent=2, ensure_ascii=False)
        return
    try:
        tree = json.loads(state.get(f"{P}json") or "{}")
        shown = (
            {f"{P}join": next(iter(tree)), f"{P}rows": []}
            if tree in ({"all": []}, {"any": []})
            else builder_state(tree)
        )
    except (ValueError, StopIteration) as exc:  # not JSON, not valid, or beyond the form
        state[f"{P}mode"] = "json"
        segment_ui.notify(P, "warning", f"Kept as JSON: {exc}")
        return
    state.update(shown)


def _add_row() -> None:
    rows = state.get(f"{P}rows") or []
    row = max(rows, default=-1) + 1
    state.update(new_row_state(row, events[0] if events else None))
    state[f"{P}rows"] = [*rows, row]


def _remove_row(row: int) -> None:
    state[f"{P}rows"] = [r for r in state.get(f"{P}rows") or [] if r != row]


def _keep(key: str, options: list[Any] | tuple[Any, ...], default: Any = None) -> None:
    """Reset ``key`` to ``default`` (or the first option) when its value is not an option."""
    if state.get(key) not in options:
        state[key] = default if default in options else options[0]


def _value_inputs(row: int, ns: str, name: str, op: str, columns: list[Any]) -> None:
    field = registry(ns)[name]

    def key(suffix: str) -> str:
        return row_key(row, f"{ns}_{suffix}")

    for suffix, column in zip(value_widgets(name, field, op), columns, strict=False):
        label = "and" if suffix.endswith("_high") else "Value"
        if suffix in ("choice", "choices"):
            known = data.field_values(home, ns, name)
            current = state.get(key(suffix))
            chosen = current if isinstance(current, list) else [current]
            options = [*known, *(c for c in chosen if c is not None and c not in known)]
            widget = column.selectbox if suffix == "choice" else column.multiselect
            extra = {"index": None} if suffix == "choice" else {}
            widget(
                label,
                options,
                key=key(suffix),
                accept_new_options=not field.choices,
                placeholder="Pick or type a value",
                **extra,
            )
        elif suffix == "bool":
            state.setdefault(key(suffix), True)
            column.selectbox(
                label, (True, False), format_func=lambda v: str(v).lower(), key=key(suffix)
            )
        elif suffix in ("number", "number_high"):
            state.setdefault(key(suffix), 0.0)
            column.number_input(label, step=1.0, format="%g", key=key(suffix))
        elif suffix == "days":
            state.setdefault(key(suffix), 30)
            column.number_input("Days", min_value=1, step=1, key=key(suffix))
        elif suffix == "date":
            state.setdefault(key(suffix), None)
            column.date_input(label, key=key(suffix))
        elif suffix == "dates":
            state.setdefault(key(suffix), ())
            column.date_input("From – to", key=key(suffix))
        else:
            state.setdefault(key(suffix), "")
            column.text_input(label, key=key(suffix))


def _test_row(row: int, ns: str) -> None:
    fields = registry(ns)
    _keep(row_key(row, f"{ns}_name"), list(fields), DEFAULT_FIELDS[ns])
    columns = st.columns([2, 2, 2, 2])
    name = columns[0].selectbox(
        "Field", list(fields), format_func=lambda n: fields[n].label, key=row_key(row, f"{ns}_name")
    )
    ops = OPS[fields[name].kind]
    _keep(row_key(row, f"{ns}_op"), ops)
    op = columns[1].selectbox(
        "Operator", ops, format_func=OP_LABELS.get, key=row_key(row, f"{ns}_op")
    )
    _value_inputs(row, ns, name, op, columns[2:])


def _behaviour_row(row: int) -> None:
    top = st.columns([1, 3, 2, 1, 1])
    top[0].selectbox(
        "Did",
        (True, False),
        format_func=lambda did: "did" if did else "did not do",
        key=row_key(row, "did"),
    )
    options = forms.event_options(events, [state.get(row_key(row, "event"))])
    _keep(row_key(row, "event"), options)
    top[1].selectbox("Event", options, key=row_key(row, "event"))
    _keep(row_key(row, "count_op"), tuple(COUNT_LABELS), ONCE)
    count_op = top[2].selectbox(
        "How often", tuple(COUNT_LABELS), format_func=COUNT_LABELS.get, key=row_key(row, "count_op")
    )
    if count_op != ONCE:
        state.setdefault(row_key(row, "count"), 1)
        top[3].number_input("Times", min_value=0, step=1, key=row_key(row, "count"))
    if count_op == "between":
        state.setdefault(row_key(row, "count_high"), 2)
        top[4].number_input("and", min_value=0, step=1, key=row_key(row, "count_high"))
    bottom = st.columns([2, 2, 2, 1, 1])
    _keep(row_key(row, "time"), tuple(TIME_LABELS), "ever")
    time = bottom[0].selectbox(
        "When", tuple(TIME_LABELS), format_func=TIME_LABELS.get, key=row_key(row, "time")
    )
    if time == "last_days":
        state.setdefault(row_key(row, "last_days"), 30)
        bottom[1].number_input("Days", min_value=1, step=1, key=row_key(row, "last_days"))
    elif time == "dates":
        state.setdefault(row_key(row, "dates"), ())
        bottom[1].date_input("From – to", key=row_key(row, "dates"))
    prop_options = [NO_PROPERTY, *properties]
    _keep(row_key(row, "property"), prop_options, NO_PROPERTY)
    prop = bottom[2].selectbox(
        "Where the event's property",
        prop_options,
        format_func=lambda p: p or "(no filter)",
        key=row_key(row, "property"),
    )
    if prop:
        _keep(row_key(row, "property_op"), PROPERTY_OPS)
        op = bottom[3].selectbox(
            "Operator", PROPERTY_OPS, format_func=OP_LABELS.get, key=row_key(row, "property_op")
        )
        if op not in ("is_set", "is_not_set"):
            state.setdefault(row_key(row, "property_value"), "")
            bottom[4].text_input("Value", key=row_key(row, "property_value"))


def _row(row: int) -> None:
    with st.container(border=True):
        head = st.columns([3, 8, 1], vertical_alignment="bottom")
        _keep(row_key(row, "kind"), ROW_KINDS, "behaviour")
        kind = head[0].selectbox(
            "Condition", ROW_KINDS, format_func=ROW_KIND_LABELS.get, key=row_key(row, "kind")
        )
        head[2].button(
            "",
            key=row_key(row, "remove"),
            icon=":material/close:",
            help="Remove this condition",
            on_click=_remove_row,
            args=(row,),
        )
        if kind in ("attribute", "technology"):
            _test_row(row, kind)
        elif kind == "behaviour":
            _behaviour_row(row)
        elif kind == "reachable":
            _keep(row_key(row, "channel"), CHANNELS)
            head[1].selectbox(
                "Channel", CHANNELS, format_func=CHANNEL_LABELS.get, key=row_key(row, "channel")
            )
        else:
            options = [*segment_slugs]
            current = state.get(row_key(row, "segment"))
            if current and current not in options:
                options.append(current)
            head[1].selectbox(
                "Segment",
                options,
                index=None,
                placeholder="Pick a segment",
                key=row_key(row, "segment"),
            )


# --- The condition ---------------------------------------------------------------------------
segment_ui.details_form(P)
st.radio(
    "Edit as",
    tuple(MODES),
    format_func=MODES.get,
    horizontal=True,
    key=f"{P}mode",
    on_change=_switch_mode,
    help="The JSON tree can say more than the form: not, nesting, traits, first and last time.",
)
segment_ui.show_notice(P)

tree: Any = None
text = ""
written = False  # whether there is a tree to check (the form has rows, or the text is JSON)
if state[f"{P}mode"] == "form":
    st.radio(
        "People who match", tuple(JOINS), format_func=JOINS.get, horizontal=True, key=f"{P}join"
    )
    for row in list(state.get(f"{P}rows") or []):
        _row(row)
    st.button("Add a condition", key=f"{P}add", icon=":material/add:", on_click=_add_row)
    tree = builder_tree(state)
    written = tree is not None
    text = json.dumps(tree, indent=2, ensure_ascii=False) if written else ""
else:
    state.setdefault(f"{P}json", "")
    text = st.text_area("Condition tree (JSON)", key=f"{P}json", height=320)
    try:
        tree, written = json.loads(text), True
    except json.JSONDecodeError as exc:
        st.error(
            f"**Not JSON at line {exc.lineno}, column {exc.colno}:** {exc.msg}",
            icon=":material/error:",
        )
        if excerpt := error_excerpt(text, exc.lineno, exc.colno):
            st.code(excerpt, language=None)

parsed = None
if not written:
    if state[f"{P}mode"] == "form":
        st.info("Add a condition to say who is in the segment.", icon=":material/add:")
else:
    try:
        parsed = parse_condition(tree)
    except BuilderError as exc:
        message = str(exc).removeprefix(f"{exc.path}: ")
        st.error(f"**{exc.path or 'condition'}:** {plain(message)}", icon=":material/error:")

if parsed is not None:
    st.info(plain(describe(parsed)), icon=":material/record_voice_over:")
    with st.expander("The query and the JSON tree", icon=":material/code:"):
        query = compile_condition(parsed, now=data.now())
        st.code(query.sql("duckdb", pretty=True), language="sql")
        st.code(text, language="json")


def build():
    if state[f"{P}mode"] == "form":
        condition = builder_tree(state)
    else:
        condition = json.loads(state.get(f"{P}json") or "null")
    return definition_from_state(state, P, "builder", condition=condition)


def json_text() -> str:
    return state.get(f"{P}json") or "" if state[f"{P}mode"] == "json" else ""


segment_ui.actions(home, P, build, json_text, can_run=parsed is not None)
try:
    version = build().version if parsed is not None else None
except ValueError:
    version = None
segment_ui.show_outcome(P, version)
