"""Pure Plotly figure builders: a DataFrame in, a figure out, no Streamlit.

Each ``build_<chart>_figure`` takes the frame its query in ``queries.py`` returns, so the
figures are tested on small hand-made frames.
"""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

CHANNEL_LABELS = {"email": "Email", "sms": "SMS", "push": "Push", "web_push": "Web push"}

# One colour per meaning, shared by every page, so "known" is always the same blue.
COLORS = {
    "dau": "#1f77b4",
    "wau": "#ff7f0e",
    "mau": "#2ca02c",
    "known": "#1f77b4",
    "unknown": "#aec7e8",
    "reachable": "#2ca02c",
    "installs": "#2ca02c",
    "uninstalls": "#d62728",
    "activity": "#1f77b4",
    "other": "#c7c7c7",
}


def _layout(fig: go.Figure, *, title: str, x_title: str, y_title: str) -> go.Figure:
    fig.update_layout(
        title={"text": title},
        xaxis_title=x_title,
        yaxis_title=y_title,
        hovermode="x unified",
        # "normal" keeps stacked traces in the order they were added (Plotly reverses them).
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "traceorder": "normal"},
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        height=360,
    )
    # Counts start at zero, so a small change never looks like a collapse.
    fig.update_yaxes(rangemode="tozero")
    return fig


def build_active_users_figure(df: pl.DataFrame) -> go.Figure:
    """DAU, WAU and MAU as three lines over ``activity_date``.

    Example:
        >>> from datetime import date
        >>> df = pl.DataFrame({"activity_date": [date(2026, 1, 1)], "dau": [1], "wau": [2],
        ...                    "mau": [3]})
        >>> [t.name for t in build_active_users_figure(df).data]
        ['DAU', 'WAU', 'MAU']
    """
    fig = go.Figure()
    for column in ("dau", "wau", "mau"):
        fig.add_trace(
            go.Scatter(
                x=df["activity_date"].to_list(),
                y=df[column].to_list(),
                mode="lines",
                name=column.upper(),
                line={"color": COLORS[column]},
            )
        )
    return _layout(fig, title="Active users", x_title="Date", y_title="Users")


def build_known_unknown_figure(df: pl.DataFrame) -> go.Figure:
    """Daily active people split into known (have a user id) and unknown, stacked."""
    fig = go.Figure()
    for column, name in (("dau_known", "Known"), ("dau_unknown", "Unknown")):
        fig.add_trace(
            go.Scatter(
                x=df["activity_date"].to_list(),
                y=df[column].to_list(),
                mode="lines",
                name=name,
                stackgroup="dau",
                line={"color": COLORS[name.lower()]},
            )
        )
    return _layout(fig, title="Daily active: known vs unknown", x_title="Date", y_title="Users")


def build_channel_reachability_figure(df: pl.DataFrame) -> go.Figure:
    """Share of known people each channel can reach, as bars on a 0–100 % axis."""
    labels = [CHANNEL_LABELS.get(c, c) for c in df["channel"].to_list()]
    pct = df["reachable_pct"].to_list()
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=pct,
            text=[f"{p:.1f}%" for p in pct],
            textposition="auto",
            customdata=list(zip(df["reachable_users"], df["total_users"], strict=True)),
            hovertemplate="%{x}: %{y:.1f}% (%{customdata[0]:,} of %{customdata[1]:,})"
            "<extra></extra>",
            name="Reachable",
            marker_color=COLORS["reachable"],
        )
    )
    fig.update_yaxes(range=[0, 100], ticksuffix="%")
    fig = _layout(fig, title="Channel reachability", x_title="Channel", y_title="Reachable")
    fig.update_layout(hovermode="closest", showlegend=False)
    return fig


def build_installs_figure(df: pl.DataFrame) -> go.Figure:
    """App installs and uninstalls per day as grouped bars."""
    fig = go.Figure()
    for column in ("installs", "uninstalls"):
        fig.add_trace(
            go.Bar(
                x=df["activity_date"].to_list(),
                y=df[column].to_list(),
                name=column.capitalize(),
                marker_color=COLORS[column],
            )
        )
    fig.update_layout(barmode="group")
    return _layout(fig, title="Installs and uninstalls", x_title="Date", y_title="Devices")


def build_events_per_minute_figure(df: pl.DataFrame) -> go.Figure:
    """Events landed per minute, stacked: what people did, and everything else.

    ``df`` is :attr:`safar.live.LiveStats.events_per_minute` (``minute``, ``events``,
    ``activity_events``). "Other" is identifies, the platform's own events (messages sent,
    segment changes) and other messages that are not someone using the product.

    Example:
        >>> from datetime import datetime
        >>> df = pl.DataFrame({"minute": [datetime(2026, 1, 1, 12, 0)], "events": [5],
        ...                    "activity_events": [3]})
        >>> [(t.name, list(t.y)) for t in build_events_per_minute_figure(df).data]
        [('People', [3]), ('Other', [2])]
    """
    minutes = df["minute"].to_list()
    fig = go.Figure()
    for name, values, color in (
        ("People", df["activity_events"], COLORS["activity"]),
        ("Other", df["events"] - df["activity_events"], COLORS["other"]),
    ):
        fig.add_trace(go.Bar(x=minutes, y=values.to_list(), name=name, marker_color=color))
    fig.update_layout(barmode="stack", bargap=0.1)
    return _layout(fig, title="Events per minute", x_title="Minute (UTC)", y_title="Events")
