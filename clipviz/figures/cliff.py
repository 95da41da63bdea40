"""Figures for the cliff page: the loss map with both descent paths, and per-step charts.

Pure functions of `clipviz.lessons.cliff` results (a `Surface`, `Path`s, a
`ThresholdSweep`). The unclipped path is always `UNCLIPPED` (vermillion), the
clipped one `CLIPPED` (blue), as everywhere in the app.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from clipviz.figures.style import CLIPPED, HEAT, THRESHOLD, UNCLIPPED, base_layout, run_symbol
from clipviz.lessons.cliff import Path, Surface, ThresholdSweep

LOG_LOSS_FLOOR = -4.0  # colour scale bottom: losses below 1e-4 all look like the valley floor
LOG_LOSS_CEILING = float(np.log10(0.49))  # the largest possible loss, (0 - 0.7)^2
UNCLIPPED_NAME = "no clipping"
HALO = "rgba(255,255,255,0.85)"


def clipped_name(path: Path) -> str:
    return f"clipped by norm (c = {path.threshold:g})"


def _segment_exit(
    inside: tuple[float, float], outside: tuple[float, float], view: tuple[float, ...]
) -> tuple[float, float]:
    """Where the segment from an inside point to an outside point crosses the view's edge."""
    (x0, y0), (x1, y1) = inside, outside
    w_lo, w_hi, b_lo, b_hi = view
    fraction = 1.0
    for start, end, lo, hi in ((x0, x1, w_lo, w_hi), (y0, y1, b_lo, b_hi)):
        if end > hi:
            fraction = min(fraction, (hi - start) / (end - start))
        elif end < lo:
            fraction = min(fraction, (lo - start) / (end - start))
    return x0 + fraction * (x1 - x0), y0 + fraction * (y1 - y0)


def _first_escape(path: Path, view: tuple[float, ...]) -> int | None:
    """Index of the first position outside the view (None if the path stays inside)."""
    w_lo, w_hi, b_lo, b_hi = view
    outside = ~((path.w >= w_lo) & (path.w <= w_hi) & (path.b >= b_lo) & (path.b <= b_hi))
    return int(np.argmax(outside)) if outside.any() else None


def _path_hover(path: Path) -> tuple[np.ndarray, str]:
    """Per-position hover data: step number, loss, gradient norm there (before clipping)."""
    norms = np.append(path.grad_norm, np.nan)[: path.w.size]
    customdata = np.column_stack([np.arange(path.w.size), path.loss, norms])
    template = (
        "after step %{customdata[0]}<br>w = %{x:.6g}<br>b = %{y:.6g}"
        "<br>loss = %{customdata[1]:.6g}<br>gradient norm = %{customdata[2]:.4g}<extra></extra>"
    )
    return customdata, template


def _add_halo(fig: go.Figure, path: Path, width: float) -> None:
    """A white band under a path keeps it readable on every colour of the map."""
    fig.add_trace(
        go.Scatter(
            x=path.w,
            y=path.b,
            mode="lines",
            line={"color": HALO, "width": width + 3},
            hoverinfo="skip",
            showlegend=False,
        )
    )


def _add_path(fig: go.Figure, path: Path, name: str, colour: str, width: float) -> None:
    customdata, template = _path_hover(path)
    fig.add_trace(
        go.Scatter(
            x=path.w,
            y=path.b,
            name=name,
            mode="lines+markers",
            line={"color": colour, "width": width},
            marker={
                "color": colour,
                "size": width + 3,
                "symbol": run_symbol(colour == CLIPPED),
                "line": {"color": "white", "width": 0.5},
            },
            customdata=customdata,
            hovertemplate=template,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=path.w[-1:],
            y=path.b[-1:],
            mode="markers",
            marker={
                "color": colour,
                "size": 13,
                "symbol": "x",
                "line": {"color": "white", "width": 1},
            },
            name=f"{name}: end",
            showlegend=False,
            hovertemplate=f"{name}: end<br>w = %{{x:.6g}}<br>b = %{{y:.6g}}<extra></extra>",
        )
    )


def _annotate_escape(fig: go.Figure, path: Path, colour: str, view: tuple[float, ...]) -> None:
    """Point at where a path leaves the map and say where it landed."""
    j = _first_escape(path, view)
    if j is None or j == 0:
        return
    edge_w, edge_b = _segment_exit((path.w[j - 1], path.b[j - 1]), (path.w[j], path.b[j]), view)
    w_lo, w_hi, b_lo, b_hi = view
    # Put the label inside the map, away from the edge it crosses.
    ax = -70 if edge_w > (w_lo + w_hi) / 2 else 70
    ay = 45 if edge_b > (b_lo + b_hi) / 2 else -45
    fig.add_annotation(
        x=edge_w,
        y=edge_b,
        ax=ax,
        ay=ay,
        text=f"step {j} jumped to<br>(w, b) = ({path.w[j]:.3g}, {path.b[j]:.3g})",
        showarrow=True,
        arrowhead=2,
        arrowside="start",
        arrowwidth=2,
        arrowcolor=colour,
        font={"color": colour, "size": 13},
        bgcolor="rgba(255,255,255,0.9)",
        bordercolor=colour,
    )


def surface_figure(
    surf: Surface,
    unclipped: Path,
    clipped: Path,
    wall_point: tuple[float, float] | None = None,
    height: int = 520,
) -> go.Figure:
    """The loss over (w, b) on a log colour scale, with both descent paths on top."""
    log_loss = np.log10(np.maximum(surf.loss, 1e-300))
    fig = go.Figure(
        go.Heatmap(
            x=surf.w,
            y=surf.b,
            z=log_loss.astype(np.float32),
            zmin=LOG_LOSS_FLOOR,
            zmax=LOG_LOSS_CEILING,
            colorscale=HEAT,
            # Only the loss for hover: the grid is far too coarse to catch the wall's
            # true gradient, and every extra array is sent on each slider move.
            customdata=surf.loss.astype(np.float32),
            hovertemplate="w = %{x:.4g}<br>b = %{y:.4g}<br>loss = %{customdata:.4g}<extra></extra>",
            colorbar={
                "title": {"text": "loss<br>(log scale)", "side": "top"},
                "tickvals": [-4, -3, -2, -1],
                "ticktext": ["≤ 0.0001", "0.001", "0.01", "0.1"],
                "thickness": 14,
            },
        )
    )
    view = (float(surf.w[0]), float(surf.w[-1]), float(surf.b[0]), float(surf.b[-1]))
    # Both halos first, so the clipped halo cannot hide the unclipped line where they overlap.
    _add_halo(fig, unclipped, width=4)
    _add_halo(fig, clipped, width=2)
    _add_path(fig, unclipped, UNCLIPPED_NAME, UNCLIPPED, width=4)
    _add_path(fig, clipped, clipped_name(clipped), CLIPPED, width=2)
    fig.add_trace(
        go.Scatter(
            x=unclipped.w[:1],
            y=unclipped.b[:1],
            mode="markers",
            name="start",
            marker={
                "color": "white",
                "size": 14,
                "symbol": "circle",
                "line": {"color": "black", "width": 2},
            },
            hovertemplate="start<br>w = %{x:.6g}<br>b = %{y:.6g}<extra></extra>",
        )
    )
    for path, colour in ((unclipped, UNCLIPPED), (clipped, CLIPPED)):
        _annotate_escape(fig, path, colour, view)
    if wall_point is not None:
        fig.add_annotation(
            x=wall_point[0],
            y=wall_point[1],
            ax=45,
            ay=-55,
            text="the cliff",
            showarrow=True,
            arrowhead=2,
            arrowcolor="white",
            font={"color": "white", "size": 14},
        )
    base_layout(fig, height=height)
    fig.update_xaxes(title_text="w (recurrent weight)", range=view[:2], constrain="domain")
    fig.update_yaxes(title_text="b (bias)", range=view[2:])
    fig.update_layout(showlegend=True, margin={"r": 10})
    return fig


def _positive_or_none(values: np.ndarray) -> list[float | None]:
    """Log axes cannot show 0 (or NaN); leave a gap there instead."""
    return [float(v) if np.isfinite(v) and v > 0 else None for v in values]


def steps_figure(unclipped: Path, clipped: Path, height: int = 520) -> go.Figure:
    """Per-step history of both paths: gradient norm (top) and loss (bottom), log scales."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.16,
        subplot_titles=("Gradient norm at each step, before clipping", "Loss after each step"),
    )
    for path, name, colour, width in (
        (unclipped, UNCLIPPED_NAME, UNCLIPPED, 3.5),
        (clipped, clipped_name(clipped), CLIPPED, 1.5),
    ):
        common = {"mode": "lines+markers", "line": {"color": colour, "width": width}}
        fig.add_trace(
            go.Scatter(
                x=np.arange(1, path.steps + 1),
                y=_positive_or_none(path.grad_norm),
                name=name,
                legendgroup=name,
                marker={"size": 5, "symbol": run_symbol(colour == CLIPPED)},
                hovertemplate="step %{x}<br>gradient norm = %{y:.4g}<extra>" + name + "</extra>",
                **common,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=np.arange(path.loss.size),
                y=_positive_or_none(path.loss),
                name=name,
                legendgroup=name,
                showlegend=False,
                marker={"size": 5, "symbol": run_symbol(colour == CLIPPED)},
                hovertemplate="after step %{x}<br>loss = %{y:.6g}<extra>" + name + "</extra>",
                **common,
            ),
            row=2,
            col=1,
        )
        zero_from = _zero_tail_start(path.grad_norm)
        if zero_from is not None:
            # Log axes cannot draw 0: say so where the line stops.
            fig.add_annotation(
                x=zero_from + 1,  # per-step arrays are numbered from step 1
                y=1,
                yref="y domain",
                yanchor="top",
                xanchor="left",
                text=f"gradient exactly 0 from step {zero_from + 1} on",
                showarrow=False,
                font={"color": colour, "size": 12},
                bgcolor="rgba(255,255,255,0.85)",
                row=1,
                col=1,
            )
    if clipped.threshold is not None:
        fig.add_hline(
            y=clipped.threshold,
            line={"color": THRESHOLD, "dash": "dash", "width": 1.5},
            annotation_text=f"threshold c = {clipped.threshold:g}",
            annotation_position="top left",
            annotation_font_color=THRESHOLD,
            row=1,
            col=1,
        )
    base_layout(fig, height=height)
    fig.update_xaxes(title_text="descent step", row=2, col=1)
    fig.update_yaxes(
        title_text="‖∇L‖",
        type="log",
        exponentformat="power",
        range=_log_range(unclipped.grad_norm, clipped.grad_norm, clipped.threshold or 1.0),
        row=1,
        col=1,
    )
    fig.update_yaxes(title_text="loss", type="log", exponentformat="power", row=2, col=1)
    fig.update_annotations(
        selector={"text": "Gradient norm at each step, before clipping"}, x=0, xanchor="left"
    )
    fig.update_annotations(selector={"text": "Loss after each step"}, x=0, xanchor="left")
    fig.update_layout(margin={"t": 70})
    return fig


def _log_range(*series: np.ndarray | float) -> list[float]:
    """log10 axis range over the positive finite values, with headroom for labels on top."""
    values = np.concatenate([np.atleast_1d(np.asarray(v, dtype=float)) for v in series])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return [-1.0, 1.0]
    low, high = np.log10(values.min()), np.log10(values.max())
    return [float(low - 0.3), float(high + 0.3 + 0.25 * max(high - low, 1.0))]


def _zero_tail_start(values: np.ndarray) -> int | None:
    """Index where a run of exact zeros reaching the end begins (None if it doesn't end in 0)."""
    if values.size == 0 or values[-1] != 0:
        return None
    nonzero = np.flatnonzero(values != 0)
    return int(nonzero[-1] + 1) if nonzero.size else 0


def threshold_sweep_figure(
    sweep: ThresholdSweep, unclipped: Path, current: float | None = None, height: int = 320
) -> go.Figure:
    """Lowest loss each clipped descent reached, against the threshold (both log)."""
    fig = go.Figure(
        go.Scatter(
            x=sweep.thresholds,
            y=_positive_or_none(sweep.lowest_loss),
            name="clipped by norm",
            mode="lines+markers",
            line={"color": CLIPPED, "width": 2},
            marker={"size": 8},
            customdata=np.column_stack([sweep.largest_step, sweep.clipped_fraction * 100]),
            hovertemplate="threshold c = %{x:g}<br>lowest loss = %{y:.4g}"
            "<br>largest step = %{customdata[0]:.3g}<br>steps clipped = %{customdata[1]:.0f}%"
            "<extra></extra>",
        )
    )
    no_clip_best = float(np.nanmin(unclipped.loss))
    fig.add_hline(
        y=no_clip_best,
        line={"color": UNCLIPPED, "dash": "dash", "width": 2},
        annotation_text=f"no clipping: {no_clip_best:.3g}",
        annotation_position="top right",
        annotation_font_color=UNCLIPPED,
    )
    if current is not None:
        fig.add_vline(x=current, line={"color": THRESHOLD, "dash": "dot", "width": 1})
    base_layout(fig, title="Lowest loss reached, for each threshold", height=height)
    fig.update_xaxes(title_text="clipping threshold c (log scale)", type="log")
    fig.update_yaxes(title_text="lowest loss (log scale)", type="log", exponentformat="power")
    fig.update_layout(showlegend=False)
    return fig


def surface_3d_figure(
    surf: Surface, unclipped: Path, clipped: Path, every: int = 3, height: int = 520
) -> go.Figure:
    """The loss as a 3-D landscape (linear height, so the wall stands up), paths on it."""
    w, b, L = surf.w[::every], surf.b[::every], surf.loss[::every, ::every]
    fig = go.Figure(
        go.Surface(
            x=w,
            y=b,
            z=L,
            colorscale=HEAT,
            showscale=False,
            opacity=0.9,
            hovertemplate="w = %{x:.4g}<br>b = %{y:.4g}<br>loss = %{z:.4g}<extra></extra>",
        )
    )
    view = (float(surf.w[0]), float(surf.w[-1]), float(surf.b[0]), float(surf.b[-1]))
    for path, name, colour in (
        (unclipped, UNCLIPPED_NAME, UNCLIPPED),
        (clipped, clipped_name(clipped), CLIPPED),
    ):
        j = _first_escape(path, view)
        end = path.w.size if j is None else j
        fig.add_trace(
            go.Scatter3d(
                x=path.w[:end],
                y=path.b[:end],
                z=path.loss[:end] + 0.005,  # float just above the surface
                customdata=path.loss[:end],
                name=name,
                mode="lines+markers",
                line={"color": colour, "width": 6},
                marker={"size": 3, "color": colour, "symbol": run_symbol(colour == CLIPPED)},
                hovertemplate="w = %{x:.6g}<br>b = %{y:.6g}<br>loss = %{customdata:.4g}<extra></extra>",
            )
        )
    base_layout(fig, height=height)
    fig.update_layout(
        scene={
            "xaxis_title": "w (recurrent weight)",
            "yaxis_title": "b (bias)",
            "zaxis_title": "loss",
            "camera": {"eye": {"x": 1.5, "y": 1.5, "z": 0.9}},
        },
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
    )
    return fig
