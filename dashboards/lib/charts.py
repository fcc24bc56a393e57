"""Pure Plotly figure builders: a DataFrame in, a figure out, no Streamlit.

Each ``build_<chart>_figure`` takes the frame its query in ``queries.py`` returns, so the
figures are tested on small hand-made frames.
"""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from dashboards.lib.results import format_duration, period_label

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
    "converted": "#1f77b4",
    "dropped": "#d9d9d9",
    "conversion": "#2ca02c",
    "segment": "#9467bd",
}

# Heatmap scale for retention: white (nobody back) to the product's blue.
RETENTION_SCALE = [[0.0, "#f7fbff"], [0.5, "#6baed6"], [1.0, "#08306b"]]


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


def _step_labels(df: pl.DataFrame) -> list[str]:
    return [f"{step}. {name}" for step, name in zip(df["step"], df["name"], strict=True)]


def build_funnel_figure(df: pl.DataFrame) -> go.Figure:
    """A funnel as bars: the people at each step, with the share of the first step on the bar.

    ``df`` is :func:`dashboards.lib.results.funnel_steps_frame`. Each bar stacks those who
    dropped off since the previous step in grey, so a bar's full height is the step before.

    Example:
        >>> df = pl.DataFrame({"step": [1, 2], "name": ["Viewed", "Bought"], "count": [10, 4],
        ...     "conversion_rate": [1.0, 0.4], "step_conversion_rate": [1.0, 0.4],
        ...     "dropped": [0, 6]})
        >>> fig = build_funnel_figure(df)
        >>> [(t.name, list(t.y)) for t in fig.data], list(fig.data[0].text)
        ([('Converted', [10, 4]), ('Dropped off', [0, 6])], ['10 · 100.0%', '4 · 40.0%'])
    """
    labels = _step_labels(df)
    counts = df["count"].to_list()
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=labels,
            y=counts,
            name="Converted",
            text=[f"{c:,} · {r:.1%}" for c, r in zip(counts, df["conversion_rate"], strict=True)],
            textposition="auto",
            customdata=df["step_conversion_rate"].to_list(),
            hovertemplate="%{x}: %{y:,} people, %{customdata:.1%} of the previous step"
            "<extra></extra>",
            marker_color=COLORS["converted"],
        )
    )
    fig.add_trace(
        go.Bar(
            x=labels,
            y=df["dropped"].to_list(),
            name="Dropped off",
            hovertemplate="%{x}: %{y:,} dropped off since the previous step<extra></extra>",
            marker_color=COLORS["dropped"],
        )
    )
    fig.update_layout(barmode="stack")
    fig = _layout(fig, title="Funnel", x_title="Step", y_title="People")
    fig.update_layout(hovermode="closest")
    return fig


def build_funnel_breakdown_figure(df: pl.DataFrame, top: int = 10) -> go.Figure:
    """Conversion from the first step, per breakdown value, as grouped bars per step.

    ``df`` is :func:`dashboards.lib.results.funnel_breakdown_frame`; only the first ``top``
    values (the engine puts the largest first) are drawn.

    Example:
        >>> df = pl.DataFrame({"value": ["web", "web", "ios", "ios"], "step": [1, 2, 1, 2],
        ...     "name": ["a", "b", "a", "b"], "count": [5, 2, 4, 3],
        ...     "conversion_rate": [1.0, 0.4, 1.0, 0.75]})
        >>> [(t.name, list(t.y)) for t in build_funnel_breakdown_figure(df).data]
        [('web', [100.0, 40.0]), ('ios', [100.0, 75.0])]
    """
    fig = go.Figure()
    values = df["value"].unique(maintain_order=True).head(top).to_list()
    for value in values:
        rows = df.filter(pl.col("value") == value).sort("step")
        fig.add_trace(
            go.Bar(
                x=_step_labels(rows),
                y=[r * 100 for r in rows["conversion_rate"]],
                name=value,
                customdata=rows["count"].to_list(),
                hovertemplate=f"{value}: %{{y:.1f}}% (%{{customdata:,}} people)<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 100], ticksuffix="%")
    fig = _layout(fig, title="Conversion by breakdown", x_title="Step", y_title="Of first step")
    fig.update_layout(hovermode="closest")
    return fig


def build_time_to_convert_figure(df: pl.DataFrame) -> go.Figure:
    """How long converting from the first to the last step took, as a histogram.

    ``df`` is :func:`dashboards.lib.results.time_to_convert_frame`; a bar is labelled with where
    its bin starts, its hover with the whole bin.

    Example:
        >>> df = pl.DataFrame({"seconds_from": [0.0], "seconds_to": [60.0], "count": [3],
        ...                    "label": ["0s – 1m"]})
        >>> [(list(t.x), list(t.y)) for t in build_time_to_convert_figure(df).data]
        [(['0s'], [3])]
    """
    fig = go.Figure(
        go.Bar(
            x=[format_duration(s) for s in df["seconds_from"]],
            y=df["count"].to_list(),
            name="People",
            customdata=df["label"].to_list(),
            hovertemplate="%{customdata}: %{y:,} people<extra></extra>",
            marker_color=COLORS["converted"],
        )
    )
    fig.update_layout(bargap=0.05, showlegend=False)
    fig = _layout(
        fig, title="Time to convert", x_title="First to last step (from)", y_title="People"
    )
    fig.update_layout(hovermode="closest")
    return fig


def build_conversion_over_time_figure(df: pl.DataFrame) -> go.Figure:
    """The share of people entering in each period who converted, as a line.

    ``df`` is :func:`dashboards.lib.results.conversion_over_time_frame`.

    Example:
        >>> from datetime import datetime
        >>> df = pl.DataFrame({"period_start": [datetime(2026, 1, 1)], "entered": [4],
        ...                    "converted": [1], "conversion_rate": [0.25]})
        >>> list(build_conversion_over_time_figure(df).data[0].y)
        [25.0]
    """
    fig = go.Figure(
        go.Scatter(
            x=df["period_start"].to_list(),
            y=[r * 100 for r in df["conversion_rate"]],
            mode="lines+markers",
            name="Conversion",
            customdata=list(zip(df["converted"], df["entered"], strict=True)),
            hovertemplate="%{x|%b %d}: %{y:.1f}% (%{customdata[0]:,} of %{customdata[1]:,})"
            "<extra></extra>",
            line={"color": COLORS["conversion"]},
        )
    )
    fig.update_yaxes(ticksuffix="%")
    fig = _layout(fig, title="Conversion over time", x_title="Entered", y_title="Converted")
    fig.update_layout(showlegend=False)
    return fig


def build_retention_figure(df: pl.DataFrame, period: str = "day") -> go.Figure:
    """Retention as a heatmap: a row per cohort, a column per period after, labelled in %.

    ``df`` is :func:`dashboards.lib.results.retention_frame`; the first cohort is on top and
    each row is labelled with its size.

    Example:
        >>> from datetime import datetime
        >>> df = pl.DataFrame({"period_start": [datetime(2026, 1, 1)] * 2, "offset": [0, 1],
        ...     "size": [4, 4], "count": [4, 1], "rate": [1.0, 0.25]})
        >>> heat = build_retention_figure(df).data[0]
        >>> list(heat.x), list(heat.y), [list(r) for r in heat.z], [list(r) for r in heat.text]
        (['Day 0', 'Day 1'], ['2026-01-01 (4)'], [[100.0, 25.0]], [['100%', '25%']])
    """
    offsets = list(range(int(df["offset"].max()) + 1)) if df.height else []
    rows, labels, texts = [], [], []
    for (start,), group in df.group_by("period_start", maintain_order=True):
        rates = dict(zip(group["offset"], group["rate"], strict=True))
        labels.append(f"{period_label(start, period)} ({int(group['size'][0]):,})")
        row = [None if rates.get(o) is None else rates[o] * 100 for o in offsets]
        rows.append(row)
        texts.append(["" if r is None else f"{r:.0f}%" for r in row])
    fig = go.Figure(
        go.Heatmap(
            z=rows,
            x=[f"{period.capitalize()} {o}" for o in offsets],
            y=labels,
            text=texts,
            texttemplate="%{text}",
            zmin=0,
            zmax=100,
            colorscale=RETENTION_SCALE,
            colorbar={"ticksuffix": "%"},
            hovertemplate="%{y}, %{x}: %{z:.1f}% back<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    fig = _layout(fig, title="Retention", x_title="Periods after", y_title="Cohort (people)")
    fig.update_yaxes(autorange="reversed", rangemode="normal", type="category")
    fig.update_xaxes(type="category")
    fig.update_layout(hovermode="closest", height=max(360, 28 * len(labels) + 120))
    return fig


def build_trends_figure(df: pl.DataFrame) -> go.Figure:
    """One line per series (and breakdown value) over the periods.

    ``df`` is :func:`dashboards.lib.results.trends_frame`.

    Example:
        >>> from datetime import datetime
        >>> df = pl.DataFrame({"line": ["a", "a", "b"], "value": [1.0, 2.0, 5.0],
        ...     "period_start": [datetime(2026, 1, 1), datetime(2026, 1, 2), datetime(2026, 1, 1)]})
        >>> [(t.name, list(t.y)) for t in build_trends_figure(df).data]
        [('a', [1.0, 2.0]), ('b', [5.0])]
    """
    fig = go.Figure()
    for (line,), rows in df.group_by("line", maintain_order=True):
        fig.add_trace(
            go.Scatter(
                x=rows["period_start"].to_list(),
                y=rows["value"].to_list(),
                mode="lines+markers",
                name=line,
            )
        )
    return _layout(fig, title="Trends", x_title="Period", y_title="Value")


def build_segment_size_figure(df: pl.DataFrame) -> go.Figure:
    """A segment's size after each evaluation (``evaluated_at``, ``size``), as steps.

    Sizes hold between evaluations, so the line steps rather than slopes.

    Example:
        >>> from datetime import datetime
        >>> df = pl.DataFrame({"evaluated_at": [datetime(2026, 1, 1), datetime(2026, 1, 8)],
        ...                    "size": [12, 30]})
        >>> fig = build_segment_size_figure(df)
        >>> list(fig.data[0].y), fig.data[0].line.shape
        ([12, 30], 'hv')
    """
    fig = go.Figure(
        go.Scatter(
            x=df["evaluated_at"].to_list(),
            y=df["size"].to_list(),
            mode="lines+markers",
            name="People",
            line={"color": COLORS["segment"], "shape": "hv"},
        )
    )
    fig = _layout(fig, title="Size over time", x_title="Evaluated at (UTC)", y_title="People")
    fig.update_layout(showlegend=False, height=300)
    return fig
