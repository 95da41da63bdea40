"""The rule race's chart: every clipping rule's loss and gradient norm, overlaid."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from clipviz.figures.style import SEQUENCE, UNCLIPPED, base_layout
from clipviz.figures.training import finite_or_nan, thin
from clipviz.lessons.race import RaceEntry

# No clipping keeps the app's unclipped colour; each rule its own colour and dash,
# so the lines stay apart without colour too.
STYLES = {
    "none": (UNCLIPPED, "solid"),
    "norm": (SEQUENCE[0], "solid"),
    "value": (SEQUENCE[2], "dash"),
    "autoclip": (SEQUENCE[3], "dot"),
    "agc": (SEQUENCE[4], "dashdot"),
    "zclip": (SEQUENCE[5], "longdash"),
}


def race_figure(entries: Sequence[RaceEntry], *, height: int = 420) -> go.Figure:
    """Two panels on one step axis: batch loss, and the gradient norm before clipping."""
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.09,
        subplot_titles=("Batch loss", "Gradient norm before clipping"),
    )
    for entry in entries:
        colour, dash = STYLES.get(entry.mode, (SEQUENCE[1], "solid"))
        records = entry.result.records
        for col, key, axis in ((1, "loss", "loss"), (2, "grad_norm", "‖g‖")):
            values = entry.result.to_original_mse(records[key]) if key == "loss" else records[key]
            idx = thin(len(values), values)
            fig.add_trace(
                go.Scatter(
                    x=records["step"][idx],
                    y=finite_or_nan(values[idx]),
                    mode="lines",
                    name=f"{entry.mode}: {entry.outcome}",
                    legendgroup=entry.mode,
                    showlegend=col == 1,
                    line={"color": colour, "dash": dash, "width": 1.6},
                    hovertemplate=f"{entry.mode}<br>step %{{x}}<br>{axis} %{{y:.4g}}"
                    "<extra></extra>",
                ),
                row=1,
                col=col,
            )
        if entry.result.exploded_at is not None:
            fig.add_vline(
                x=entry.result.exploded_at, line={"color": colour, "dash": "dot", "width": 1}
            )
    loss_name = "cross-entropy" if entries and entries[0].result.kind == "classification" else "MSE"
    base_layout(fig, height=height)
    fig.update_layout(
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0.0},
        margin={"b": 110},
    )
    fig.update_xaxes(title_text="optimizer step")
    fig.update_yaxes(
        type="log", row=1, col=1, title_text=f"{loss_name} (log scale)", exponentformat="power"
    )
    fig.update_yaxes(
        type="log", row=1, col=2, title_text="‖g‖, L2 norm (log scale)", exponentformat="power"
    )
    return fig
