"""Insight builders ↔ specs: the Insights pages' widget values, as the JSON the engines read.

Pure functions over mappings, no Streamlit. A page keeps its builder's widget values in
session state under its prefix (``funnels_``, ``retention_``, ``trends_``);
``<kind>_state(spec)`` gives the values that show ``spec`` (a page writes them to session state
to open a saved insight) and ``<kind>_spec(state)`` reads them back into a spec.

A saved spec can hold more than a builder has widgets for: filters, exclusions, a time zone, a
step's own name, a date-time rather than a date. ``<kind>_state`` keeps the spec it showed
under ``<prefix>loaded``, and ``<kind>_spec`` takes a part from there verbatim for as long as
its widgets still show what they were loaded with, so opening and re-saving an insight never
loses what the builder cannot show.

Example:
    >>> spec = {"steps": [{"event": "Product Viewed", "where": [{"property": "price",
    ...         "op": "gt", "value": 100}]}, {"event": "Order Completed"}],
    ...         "from": "2026-01-01", "to": "2026-01-31"}
    >>> state = funnel_state(spec)
    >>> state["funnels_step_0"], state["funnels_period"]
    ('Product Viewed', (datetime.date(2026, 1, 1), datetime.date(2026, 1, 31)))
    >>> funnel_spec(state)["steps"] == spec["steps"]
    True
    >>> funnel_spec({**state, "funnels_step_0": "Home"})["steps"][0]
    {'event': 'Home'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from dashboards.lib.periods import picked_period
from safar.analytics.trends_spec import PROPERTY_MATHS

ANY_EVENT = "(any event)"
"""The option that stands for ``"event": null``: any behavioural event."""

MAX_STEPS = 8
MAX_SERIES = 5
MAX_INTERVALS = 60
"""What the builders offer; a saved spec beyond them still opens (its widget allows it)."""

FUNNEL = "funnels_"
RETENTION = "retention_"
TRENDS = "trends_"

COMMERCE_FUNNEL = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")
"""Segment's e-commerce spec: the funnel a new Funnels page opens with, when the events exist."""


def event_option(event: str | None) -> str:
    """The select option for a spec's event name.

    Example:
        >>> event_option(None), event_option("Signed Up")
        ('(any event)', 'Signed Up')
    """
    return ANY_EVENT if event is None else event


def event_value(option: str | None) -> str | None:
    """The spec's event name for a select option (the inverse of :func:`event_option`)."""
    return None if option in (None, ANY_EVENT) else option


def event_options(names: Iterable[str], chosen: Iterable[str | None] = ()) -> list[str]:
    """Options for an event select: the warehouse's names, any event, then chosen strays.

    A saved insight may name an event the warehouse has not seen (yet); it stays selectable.

    Example:
        >>> event_options(["Home", "Signed Up"], ["Legacy Event", "Home", None])
        ['Home', 'Signed Up', '(any event)', 'Legacy Event']
    """
    options = [*names, ANY_EVENT]
    known = set(options)
    for option in chosen:
        if option is not None and option not in known:
            options.append(option)
            known.add(option)
    return options


def default_steps(names: Sequence[str]) -> list[str]:
    """The steps of a new funnel: the e-commerce funnel's events present, else the top two.

    Example:
        >>> default_steps(["Home", "Product Viewed", "Product Added", "Order Completed"])
        ['Product Viewed', 'Product Added', 'Order Completed']
        >>> default_steps(["Home", "Signed Up", "Product Viewed"])
        ['Home', 'Signed Up']
    """
    present = [name for name in COMMERCE_FUNNEL if name in names]
    return present if len(present) >= 2 else list(names[:2])


def _date(value: Any) -> date | None:
    """The calendar date of a spec's ISO date or date-time (its own wall date), or None."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _period_state(spec: Mapping[str, Any]) -> tuple[date, ...]:
    """A ``from``/``to`` pair as a date-range widget value; () when either is missing."""
    start, end = _date(spec.get("from")), _date(spec.get("to"))
    return (start, end) if start and end else ()


def _period_spec(picked: Any) -> dict[str, str]:
    """A date-range widget value as ``from``/``to`` (bare dates: whole days); {} for none."""
    if not picked:
        return {}
    start, end = picked_period(picked, (None, None))
    return {"from": start.isoformat(), "to": end.isoformat()}


class _Loaded:
    """What a builder was last loaded with: the spec and the widget values that showed it."""

    def __init__(self, state: Mapping[str, Any], prefix: str) -> None:
        loaded = state.get(f"{prefix}loaded") or {}
        self.spec: Mapping[str, Any] = loaded.get("spec") or {}
        self._shown: Mapping[str, Any] = loaded.get("state") or {}
        self._state = state

    def unchanged(self, *keys: str) -> bool:
        """Whether every widget in ``keys`` still shows the value it was loaded with."""
        return all(k in self._shown and self._state.get(k) == self._shown[k] for k in keys)

    def extras(self, managed: set[str]) -> dict[str, Any]:
        """The loaded spec's parts that no widget manages."""
        return {k: v for k, v in self.spec.items() if k not in managed}


def _with_loaded(prefix: str, spec: Mapping[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    state[f"{prefix}loaded"] = {"spec": dict(spec), "state": dict(state)}
    return state


# --- Funnels ---------------------------------------------------------------------------------

_FUNNEL_MANAGED = {"steps", "order", "window", "from", "to", "breakdown"}


def funnel_state(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Session-state values that show the funnel ``spec`` in the Funnels builder."""
    p = FUNNEL
    steps = spec.get("steps") or []
    window = spec.get("window") or {}
    breakdown = spec.get("breakdown") or {}
    state: dict[str, Any] = {
        f"{p}n_steps": len(steps),
        **{f"{p}step_{i}": event_option(step.get("event")) for i, step in enumerate(steps)},
        f"{p}order": spec.get("order", "ordered"),
        f"{p}window_value": window.get("value", 14),
        f"{p}window_unit": window.get("unit", "day"),
        f"{p}period": _period_state(spec),
        f"{p}breakdown": (
            (breakdown.get("scope", "event"), breakdown["property"]) if breakdown else None
        ),
        f"{p}attribution": breakdown.get("attribution", "first_touch"),
        f"{p}breakdown_step": breakdown.get("step", 0),
    }
    return _with_loaded(p, spec, state)


def funnel_spec(state: Mapping[str, Any]) -> dict[str, Any]:
    """The funnel spec the Funnels builder's widget values describe."""
    p = FUNNEL
    loaded = _Loaded(state, p)
    spec = loaded.extras(_FUNNEL_MANAGED)
    saved_steps = loaded.spec.get("steps") or []
    steps = []
    for i in range(state[f"{p}n_steps"]):
        key = f"{p}step_{i}"
        if loaded.unchanged(key) and i < len(saved_steps):
            steps.append(saved_steps[i])
        else:
            steps.append({"event": event_value(state.get(key))})
    spec["steps"] = steps
    spec["order"] = state[f"{p}order"]
    spec["window"] = {"value": state[f"{p}window_value"], "unit": state[f"{p}window_unit"]}
    if loaded.unchanged(f"{p}period"):
        spec.update({k: loaded.spec[k] for k in ("from", "to") if k in loaded.spec})
    else:
        spec.update(_period_spec(state[f"{p}period"]))
    breakdown_keys = (f"{p}breakdown", f"{p}attribution", f"{p}breakdown_step")
    if loaded.unchanged(*breakdown_keys) and "breakdown" in loaded.spec:
        spec["breakdown"] = loaded.spec["breakdown"]
    elif state.get(f"{p}breakdown"):
        scope, prop = state[f"{p}breakdown"]
        attribution = state[f"{p}attribution"]
        spec["breakdown"] = {"property": prop, "scope": scope, "attribution": attribution}
        if attribution == "step":
            spec["breakdown"]["step"] = state[f"{p}breakdown_step"]
    return spec


def default_funnel(names: Sequence[str], period: tuple[date, date]) -> dict[str, Any]:
    """The funnel a new Funnels page shows: :func:`default_steps` over ``period``, 1-day window.

    Example:
        >>> default_funnel(["Signed Up", "Order Completed"], (date(2026, 1, 1), date(2026, 1, 31)))
        ... # doctest: +NORMALIZE_WHITESPACE
        {'steps': [{'event': 'Signed Up'}, {'event': 'Order Completed'}],
         'window': {'value': 1, 'unit': 'day'}, 'from': '2026-01-01', 'to': '2026-01-31'}
    """
    return {
        "steps": [{"event": name} for name in default_steps(names)],
        "window": {"value": 1, "unit": "day"},
        **_period_spec(period),
    }


# --- Retention -------------------------------------------------------------------------------

_RETENTION_MANAGED = {"target", "returning", "period", "intervals", "type", "cumulative", "to"}


def retention_state(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Session-state values that show the retention ``spec`` in the Retention builder."""
    p = RETENTION
    target = spec.get("target") or {"event": None}
    returning = spec.get("returning", target)
    state: dict[str, Any] = {
        f"{p}target": event_option(target.get("event")),
        f"{p}returning": event_option(returning.get("event")),
        f"{p}period": spec.get("period", "day"),
        f"{p}intervals": spec.get("intervals", 11),
        f"{p}type": spec.get("type", "recurring"),
        f"{p}cumulative": spec.get("cumulative", False),
        f"{p}to": _date(spec.get("to")),
    }
    return _with_loaded(p, spec, state)


def retention_uses_from(state: Mapping[str, Any]) -> bool:
    """Whether the loaded retention spec fixes its first period with ``from`` (not intervals)."""
    return "from" in _Loaded(state, RETENTION).spec


def retention_spec(state: Mapping[str, Any]) -> dict[str, Any]:
    """The retention spec the Retention builder's widget values describe."""
    p = RETENTION
    loaded = _Loaded(state, p)
    spec = loaded.extras(_RETENTION_MANAGED)
    for part in ("target", "returning"):
        if loaded.unchanged(f"{p}{part}") and part in loaded.spec:
            spec[part] = loaded.spec[part]
        else:
            spec[part] = {"event": event_value(state[f"{p}{part}"])}
    spec["period"] = state[f"{p}period"]
    if "from" not in spec:  # a saved first period wins over the (disabled) intervals widget
        spec["intervals"] = state[f"{p}intervals"]
    spec["type"] = state[f"{p}type"]
    spec["cumulative"] = state[f"{p}cumulative"]
    if loaded.unchanged(f"{p}to") and "to" in loaded.spec:
        spec["to"] = loaded.spec["to"]
    elif state.get(f"{p}to") is not None:
        spec["to"] = state[f"{p}to"].isoformat()
    return spec


def default_retention(names: Sequence[str], last_day: date) -> dict[str, Any]:
    """A new Retention page: people doing anything, coming back to do anything, by day.

    Example:
        >>> default_retention(["Home"], date(2026, 1, 31))["to"]
        '2026-01-31'
    """
    return {
        "target": {"event": None},
        "returning": {"event": None},
        "period": "day",
        "intervals": 14,
        "to": last_day.isoformat(),
    }


# --- Trends ----------------------------------------------------------------------------------

_TRENDS_MANAGED = {"series", "interval", "from", "to", "intervals", "breakdown"}


MATH_LABELS = {
    "total": "events",
    "unique_persons": "unique people",
    "dau": "daily active people",
    "wau": "weekly active people",
    "mau": "monthly active people",
    "sum": "sum",
    "avg": "average",
    "min": "minimum",
    "max": "maximum",
    "median": "median",
}
"""How the builder names each trends math."""


def series_name(event: str | None, math: str, prop: str | None = None) -> str:
    """A trends line's name: the event, and what is counted when that is not its events.

    Example:
        >>> series_name("Order Completed", "total"), series_name(None, "dau")
        ('Order Completed', 'any event · daily active people')
        >>> series_name("Order Completed", "sum", "revenue")
        'Order Completed · sum of revenue'
    """
    name = "any event" if event is None else event
    if math == "total":
        return name
    what = MATH_LABELS.get(math, math)
    return f"{name} · {what} of {prop}" if math in PROPERTY_MATHS else f"{name} · {what}"


def trends_state(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Session-state values that show the trends ``spec`` in the Events & Trends builder."""
    p = TRENDS
    series = spec.get("series") or []
    breakdown = spec.get("breakdown") or {}
    state: dict[str, Any] = {
        f"{p}n_series": len(series),
        f"{p}interval": spec.get("interval", "day"),
        f"{p}period": _period_state(spec),
        f"{p}breakdown": (
            (breakdown.get("scope", "event"), breakdown["property"]) if breakdown else None
        ),
    }
    for i, one in enumerate(series):
        state[f"{p}event_{i}"] = event_option(one.get("event"))
        state[f"{p}math_{i}"] = one.get("math", "total")
        state[f"{p}property_{i}"] = one.get("property")
    return _with_loaded(p, spec, state)


def trends_spec(state: Mapping[str, Any]) -> dict[str, Any]:
    """The trends spec the Events & Trends builder's widget values describe."""
    p = TRENDS
    loaded = _Loaded(state, p)
    spec = loaded.extras(_TRENDS_MANAGED)
    saved_series = loaded.spec.get("series") or []
    series = []
    for i in range(state[f"{p}n_series"]):
        keys = (f"{p}event_{i}", f"{p}math_{i}", f"{p}property_{i}")
        if loaded.unchanged(*keys) and i < len(saved_series):
            series.append(saved_series[i])
            continue
        event, math = event_value(state.get(keys[0])), state.get(keys[1], "total")
        one = {"event": event, "math": math}
        if math in PROPERTY_MATHS:
            one["property"] = state.get(keys[2])
        if math != "total":  # a total's name is its event, the parser's default
            one["name"] = series_name(event, math, one.get("property"))
        series.append(one)
    spec["series"] = series
    spec["interval"] = state[f"{p}interval"]
    if loaded.unchanged(f"{p}period"):
        spec.update({k: loaded.spec[k] for k in ("from", "to", "intervals") if k in loaded.spec})
    else:
        spec.update(_period_spec(state[f"{p}period"]))
    if loaded.unchanged(f"{p}breakdown") and "breakdown" in loaded.spec:
        spec["breakdown"] = loaded.spec["breakdown"]
    elif state.get(f"{p}breakdown"):
        scope, prop = state[f"{p}breakdown"]
        spec["breakdown"] = {"property": prop, "scope": scope}
    return spec


def default_trends(names: Sequence[str], period: tuple[date, date]) -> dict[str, Any]:
    """A new Events & Trends page: the most frequent event, counted per day over ``period``.

    Example:
        >>> default_trends(["Home"], (date(2026, 1, 1), date(2026, 1, 31)))["series"]
        [{'event': 'Home', 'math': 'total'}]
    """
    first = names[0] if names else None
    return {
        "series": [{"event": first, "math": "total"}],
        "interval": "day",
        **_period_spec(period),
    }
