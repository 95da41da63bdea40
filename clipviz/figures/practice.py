"""Figures for the practice page: pure functions of ``clipviz.lessons.practice`` results.

* ``returned_norm_figure``: what ``clip_grad_norm_`` returns against the norm after it;
* ``keras_figure``: each tensor's norm after PyTorch's, Keras ``global_clipnorm``'s and
  Keras ``clipnorm``'s clipping;
* ``amp_figure``: loss scale, the norm the clip sees and the norm applied, per step,
  for both orders of ``unscale_`` and the clip, skipped steps shaded;
* ``accumulation_figure``: transformers#986's two vectors and both accumulated updates;
* ``warmup_figure``: a warm-up run's norms with its percentiles, and the share of steps
  each threshold would clip.

Colours: both ways of each case clip, so the page's own pair is ``WRONG`` (orange) and
``RIGHT`` (the app's clipped blue); a gradient before clipping wears ``UNCLIPPED``, as
everywhere in the app; Keras's per-tensor rule wears the worked examples' ``PER_TENSOR``.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from clipviz.figures.style import (
    ACCENT,
    CLIPPED,
    NEUTRAL,
    SEQUENCE,
    THRESHOLD,
    UNCLIPPED,
    base_layout,
)
from clipviz.lessons.practice import (
    AccumulationResult,
    AmpResult,
    KerasResult,
    ReturnedNormResult,
    WarmupResult,
)

WRONG = ACCENT
RIGHT = CLIPPED
BEFORE = UNCLIPPED
PER_TENSOR = SEQUENCE[3]  # reddish purple, as on the worked examples page


def _threshold(fig: go.Figure, c: float, *, log: bool, axis: str = "") -> None:
    """A dashed line at ``c`` across one panel (axes ``x{axis}``/``y{axis}``), labelled.

    Shapes are added directly (``add_hline`` costs many times more); a shape takes
    data units on a log axis, an annotation takes their log10.
    """
    fig.add_shape(
        type="line",
        xref=f"x{axis} domain",
        yref=f"y{axis}",
        x0=0,
        x1=1,
        y0=c,
        y1=c,
        line={"color": THRESHOLD, "dash": "dash", "width": 1},
    )
    fig.add_annotation(
        xref=f"x{axis} domain",
        yref=f"y{axis}",
        x=0.0,
        y=math.log10(c) if log else c,
        text=f"c = {c:g}",
        showarrow=False,
        xanchor="left",
        yanchor="bottom",
        font={"color": THRESHOLD, "size": 12},
    )


def returned_norm_figure(result: ReturnedNormResult, *, height: int = 300) -> go.Figure:
    """Per step: the value ``clip_grad_norm_`` returned and the norm measured after it."""
    steps = list(range(len(result.norm_after)))
    fig = go.Figure()
    fig.add_scatter(
        x=steps,
        y=list(result.logged_wrong),
        mode="lines+markers",
        name="returned by clip_grad_norm_ (the norm before clipping)",
        line={"color": BEFORE},
        hovertemplate="step %{x}: returned %{y:.6g}<extra></extra>",
    )
    fig.add_scatter(
        x=steps,
        y=list(result.norm_after),
        mode="lines+markers",
        name="measured after clipping",
        line={"color": RIGHT},
        hovertemplate="step %{x}: after %{y:.9g}<extra></extra>",
    )
    _threshold(fig, result.threshold, log=True)
    fig.update_xaxes(title="training step")
    fig.update_yaxes(title="gradient norm ‖g‖ (log scale)", type="log", dtick=1)
    return base_layout(fig, height=height)


def keras_figure(result: KerasResult, *, height: int = 380) -> go.Figure:
    """Grouped bars: each tensor's gradient norm before, and after each rule (log scale)."""
    # line breaks instead of slanted labels; the legend goes below the bars
    names = [n.replace(" (", "<br>(") for n in result.names] + ["all four<br>together"]
    series = [
        ("before clipping", result.norms_before, result.total_before, BEFORE),
        (
            "PyTorch clip_grad_norm_ = Keras global_clipnorm",
            result.norms_global,
            result.total_global,
            RIGHT,
        ),
        (
            "Keras clipnorm (each tensor)",
            result.norms_per_tensor,
            result.total_per_tensor,
            PER_TENSOR,
        ),
    ]
    fig = go.Figure()
    for label, norms, total, colour in series:
        values = list(norms) + [total]
        fig.add_bar(
            x=names,
            y=values,
            name=label,
            marker={"color": colour},
            customdata=[repr(float(v)) for v in values],
            hovertemplate="%{x}: ‖g‖ = %{customdata}<extra>" + label + "</extra>",
        )
    _threshold(fig, result.threshold, log=True)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="gradient norm (log scale)", type="log", dtick=1)
    base_layout(fig, height=height)
    fig.update_layout(
        legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.22, "yanchor": "top"},
        margin={"b": 110},
    )
    return fig


def amp_figure(result: AmpResult, *, height: int = 520) -> go.Figure:
    """Three panels over the steps: the loss scale S, the norm the clip saw, the norm applied."""
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            "loss scale S (GradScaler)",
            "norm clip_grad_norm_ saw (and compared with c)",
            "norm of the gradient the optimizer applied (true units)",
        ),
    )
    steps = list(range(len(result.right.scale)))
    runs = (
        ("clip, then unscale (wrong)", result.wrong, WRONG, "dot"),
        ("unscale_, then clip (right)", result.right, RIGHT, "solid"),
    )
    fig.add_scatter(
        x=steps,
        y=list(result.right.scale),
        mode="lines+markers",
        name="S (the same in both runs)" if result.right.scale == result.wrong.scale else "S",
        line={"color": NEUTRAL, "shape": "hv"},
        hovertemplate="step %{x}: S = %{y:,.0f}<extra></extra>",
        row=1,
        col=1,
    )
    for label, run, colour, dash in runs:
        for row, values, what in ((2, run.seen_norm, "saw"), (3, run.applied_norm, "applied")):
            shown = [v if math.isfinite(v) else None for v in values]
            fig.add_scatter(
                x=steps,
                y=shown,
                mode="lines+markers",
                name=label,
                legendgroup=label,
                showlegend=row == 2,
                line={"color": colour, "dash": dash},
                connectgaps=False,
                hovertemplate="step %{x}: " + what + " %{y:.6g}<extra>" + label + "</extra>",
                row=row,
                col=1,
            )
    for row in (2, 3):
        _threshold(fig, result.threshold, log=True, axis=str(row))
    for i, skipped in enumerate(result.right.skipped):
        if skipped:
            fig.add_shape(
                type="rect",
                xref="x",
                yref="paper",
                x0=i - 0.5,
                x1=i + 0.5,
                y0=0,
                y1=1,
                fillcolor=NEUTRAL,
                opacity=0.18,
                line_width=0,
                layer="below",
            )
    for row in (1, 2, 3):
        fig.update_yaxes(type="log", dtick=1, row=row, col=1)
    fig.update_yaxes(title="S", row=1, col=1)
    fig.update_yaxes(title="‖g‖", row=2, col=1)
    fig.update_yaxes(title="‖g‖", row=3, col=1)
    fig.update_xaxes(title="training step (grey: skipped, the scaler found inf/NaN)", row=3, col=1)
    base_layout(fig, height=height)
    # the legend under the chart: above it, it would cover the first panel's title
    fig.update_layout(
        legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.14, "yanchor": "top"},
        margin={"b": 90},
    )
    return fig


def accumulation_figure(result: AccumulationResult, *, height: int = 460) -> go.Figure:
    """transformers#986's example in the plane: two micro-gradients, their sum, both updates."""
    c = result.threshold
    (g1, g2) = result.example_grads
    total = (g1[0] + g2[0], g1[1] + g2[1])
    arrows = [
        ("g₁, g₂ (the two micro-batches)", g1, NEUTRAL, "dot"),
        (None, g2, NEUTRAL, "dot"),
        ("g₁ + g₂ (accumulated)", total, BEFORE, "dash"),
        ("clipped once, after the loop (right)", result.example_right, RIGHT, "solid"),
        ("clipped inside the loop (wrong)", result.example_wrong, WRONG, "solid"),
    ]
    fig = go.Figure()
    theta = np.linspace(-0.1, math.pi / 2 + 0.1, 91)  # the arc where the vectors lie
    fig.add_scatter(
        x=(c * np.cos(theta)).tolist(),
        y=(c * np.sin(theta)).tolist(),
        mode="lines",
        name=f"‖g‖ = c = {c:g}",
        line={"color": THRESHOLD, "dash": "dash", "width": 1},
        hoverinfo="skip",
    )
    for label, (x, y), colour, dash in arrows:
        name = label or "g₂"
        fig.add_scatter(
            x=[0, x],
            y=[0, y],
            mode="lines+markers",
            name=name,
            showlegend=label is not None,
            legendgroup="micro" if colour == NEUTRAL else name,
            line={"color": colour, "dash": dash, "width": 3 if dash == "solid" else 2},
            marker={"size": [0, 10], "symbol": "arrow", "angleref": "previous", "color": colour},
            hovertemplate=(
                f"{name}<br>({x:.6g}, {y:.6g}), length {math.hypot(x, y):.6g}<extra></extra>"
            ),
        )
    fig.update_xaxes(title="component 1", range=[-0.15, 2.15], zeroline=False)
    fig.update_yaxes(
        title="component 2", range=[-0.15, 2.15], zeroline=False, scaleanchor="x", scaleratio=1
    )
    base_layout(fig, height=height)
    fig.update_layout(
        legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.18, "yanchor": "top"},
        margin={"b": 120, "r": 10},
    )
    return fig


def warmup_figure(result: WarmupResult, chosen_percentile: int, *, height: int = 340) -> go.Figure:
    """Left: the warm-up's norm per step and the percentile thresholds. Right: the share
    of the warm-up's steps a threshold would have clipped, for every threshold."""
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.6, 0.4],
        horizontal_spacing=0.1,
        subplot_titles=("gradient norm of the warm-up, per step", "steps a threshold would clip"),
    )
    steps = list(range(len(result.norms)))
    fig.add_scatter(
        x=steps,
        y=list(result.norms),
        mode="lines",
        name="warm-up, no clipping",
        line={"color": BEFORE},
        hovertemplate="step %{x}: ‖g‖ = %{y:.6g}<extra></extra>",
        row=1,
        col=1,
    )
    for choice in result.choices:
        chosen = choice.percentile == chosen_percentile
        fig.add_shape(
            type="line",
            xref="x",
            yref="y",
            x0=0,
            x1=len(steps) - 1,
            y0=choice.threshold,
            y1=choice.threshold,
            line={
                "color": RIGHT if chosen else THRESHOLD,
                "dash": "solid" if chosen else "dot",
                "width": 2 if chosen else 1,
            },
        )
    # A label for the chosen line only: neighbouring percentiles lie too close for one each.
    chosen_choice = next(c for c in result.choices if c.percentile == chosen_percentile)
    fig.add_annotation(
        x=len(steps) - 1,
        y=chosen_choice.threshold,
        xref="x",
        yref="y",
        text=f"p{chosen_percentile}: c = {chosen_choice.threshold:.3g}",
        showarrow=False,
        xanchor="right",
        yanchor="bottom",
        font={"color": RIGHT},
    )
    norms = np.sort(np.asarray(result.norms))
    thresholds = np.linspace(0.0, norms[-1] * 1.1, 300)
    share = [(norms > t).mean() * 100 for t in thresholds]
    fig.add_scatter(
        x=thresholds.tolist(),
        y=share,
        mode="lines",
        name="share of steps clipped",
        line={"color": THRESHOLD},
        hovertemplate="c = %{x:.4g}: %{y:.1f}% of steps clipped<extra></extra>",
        row=1,
        col=2,
    )
    fig.add_scatter(
        x=[c.threshold for c in result.choices],
        y=[c.clipped_fraction * 100 for c in result.choices],
        mode="markers+text",
        text=[f"p{c.percentile}" for c in result.choices],
        textposition="top right",
        name="the percentiles",
        marker={
            "color": [
                RIGHT if c.percentile == chosen_percentile else NEUTRAL for c in result.choices
            ],
            "size": 10,
        },
        hovertemplate="c = %{x:.6g}: %{y:.1f}% of steps clipped<extra></extra>",
        row=1,
        col=2,
    )
    # linear axes: a healthy run's norms span about one decade
    fig.update_yaxes(title="gradient norm ‖g‖", rangemode="tozero", row=1, col=1)
    fig.update_xaxes(title="warm-up step", row=1, col=1)
    fig.update_xaxes(title="threshold c", rangemode="tozero", row=1, col=2)
    fig.update_yaxes(title="steps clipped (%)", range=[-3, 103], row=1, col=2)
    base_layout(fig, height=height)
    fig.update_layout(showlegend=False)  # the panel titles say what each line is
    return fig
