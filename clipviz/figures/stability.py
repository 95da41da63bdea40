"""Stability-map heatmaps: learning rate x clip threshold (or an adaptive rule's own
setting), and learning rate x target scale.

Pure functions from ``clipviz.engine.sweep`` results to Plotly figures. Every panel
of a figure shares one colour axis (log10 of the loss), so colours compare
across panels. Cells that diverged are drawn in one flat grey outside the
colour scale; the scale tops out at the starting loss, so every run that
ended no lower than it began wears the top colour. An invisible square
marker sits on every cell to carry the hover text and to make cells
clickable (Plotly selects scatter points, not heatmap cells); its
``customdata`` is ``[clip_mode, row, col]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from clipviz.engine.sweep import ClipMap, SweepResult, TargetMap, TargetSweepResult, log_edges
from clipviz.figures.style import ACCENT, HEAT, base_layout

DIVERGED = "#B8B8B8"  # flat grey: no loss to colour
LAB_MARKER = "#FFFFFF"  # the learner's Lab run: a white star with a dark outline
PANEL_TITLES = {
    "none": "no clipping",
    "norm": "clip by norm: ‖g‖ ≤ c",
    "value": "clip by value: |gᵢ| ≤ c",
    "autoclip": "AutoClip: a percentile",
    "agc": "AGC: ‖Gᵢ‖ ≤ λ‖Wᵢ‖",
    "zclip": "ZClip: z-score spikes",
}
# The y axis of an adaptive rule's map: the setting its rows vary.
ROW_TITLES = {
    "autoclip": "percentile p",
    "agc": "λ (clip factor)",
    "zclip": "z threshold",
}
ROW_SYMBOLS = {"autoclip": "p", "agc": "λ", "zclip": "z"}
ROW_TICKS = {"zclip": (0.5, 1, 2, 4, 8)}  # less than two decades: powers of ten are too few
STATUS_TEXT = {
    "trained": "trained",
    "no_progress": "no progress (ended no lower than it started)",
    "diverged": "diverged",
}


@dataclass(frozen=True)
class Marker:
    """A point to mark on a map: the learner's Lab run, say."""

    clip_mode: str
    x: float  # learning rate
    y: float | None  # threshold or target std (None: anywhere on a 'none' panel)
    label: str


@dataclass(frozen=True)
class Cell:
    """A selected cell: which panel, row and column."""

    clip_mode: str
    row: int
    col: int


def cell_from_selection(points: list[dict]) -> Cell | None:
    """The cell a Plotly selection picked (its first point), or None."""
    for point in points or []:
        data = point.get("customdata")
        if isinstance(data, list | tuple) and len(data) == 3:
            try:
                return Cell(str(data[0]), int(data[1]), int(data[2]))
            except (TypeError, ValueError):
                continue
    return None


def _in_panel(selected: Cell | None, clip_mode: str, rows: int, cols: int) -> bool:
    return (
        selected is not None
        and selected.clip_mode == clip_mode
        and 0 <= selected.row < rows
        and 0 <= selected.col < cols
    )


def fmt_number(value: float) -> str:
    """Readable numbers: 0.0123, 5.08, 27.4, 20,356, 3.2e+07."""
    if not math.isfinite(value):
        return "NaN"
    if value >= 1e6 or (0 < value < 1e-3):
        return f"{value:.3g}"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _power_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """Colour-bar ticks at powers of ten between two log10 values."""
    values = list(range(math.ceil(low), math.floor(high) + 1))
    step = max(1, math.ceil(len(values) / 7))
    values = values[::step]
    return [float(v) for v in values], [fmt_number(10.0**v) for v in values]


def _colour_range(arrays: list[np.ndarray], top: float) -> tuple[float, float]:
    finite = np.concatenate([a[np.isfinite(a) & (a > 0)].ravel() for a in arrays])
    low = float(np.log10(finite.min())) if finite.size else math.log10(top) - 4
    high = math.log10(top)
    if low >= high - 0.5:
        low = high - 1.0
    return low, high


def _panel(
    fig: go.Figure,
    col: int,
    *,
    x_centres: np.ndarray,
    y_centres: np.ndarray,
    y_edges: np.ndarray,
    z_log: np.ndarray,
    diverged: np.ndarray,
    hover: np.ndarray,
    custom: np.ndarray,
    marker_size: float,
) -> None:
    """One heatmap panel: colour, the grey diverged layer, the hover/click markers."""
    x_edges = log_edges(x_centres)
    fig.add_trace(
        go.Heatmap(
            x=x_edges,
            y=y_edges,
            z=np.where(diverged, np.nan, z_log),
            coloraxis="coloraxis",
            hoverinfo="skip",
            showlegend=False,
        ),
        row=1,
        col=col,
    )
    if diverged.any():
        fig.add_trace(
            go.Heatmap(
                x=x_edges,
                y=y_edges,
                z=np.where(diverged, 1.0, np.nan),
                colorscale=[[0, DIVERGED], [1, DIVERGED]],
                showscale=False,
                hoverinfo="skip",
                showlegend=False,
            ),
            row=1,
            col=col,
        )
    xs, ys = np.meshgrid(x_centres, y_centres)
    fig.add_trace(
        go.Scatter(
            x=xs.ravel(),
            y=ys.ravel(),
            mode="markers",
            marker={"symbol": "square", "size": marker_size, "color": "rgba(0,0,0,0)"},
            selected={"marker": {"opacity": 0}},
            unselected={"marker": {"opacity": 0}},
            text=hover.ravel(),
            customdata=custom.reshape(-1, 3),
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
            name="cells",
        ),
        row=1,
        col=col,
    )


def _legend_entries(fig: go.Figure, *, any_diverged: bool, marked: bool, selected: bool) -> None:
    """Legend-only traces explaining the grey cells and the markers."""

    def entry(name: str, marker: dict) -> None:
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="markers", marker=marker, name=name, hoverinfo="skip"
            ),
            row=1,
            col=1,
        )

    if any_diverged:
        entry("diverged (NaN or Inf)", {"symbol": "square", "size": 12, "color": DIVERGED})
    if marked:
        entry("your Lab run", _lab_marker_style())
    if selected:
        fig.add_trace(
            go.Scatter(x=[None], y=[None], mode="lines", line=SELECTED_LINE, name="selected cell"),
            row=1,
            col=1,
        )


def _lab_marker_style() -> dict:
    return {
        "symbol": "star",
        "size": 17,
        "color": LAB_MARKER,
        "line": {"color": "#222222", "width": 1.5},
    }


SELECTED_LINE = {"color": ACCENT, "width": 3}


def _outline(fig: go.Figure, col: int, x: tuple[float, float], y: tuple[float, float]) -> None:
    """A rectangle drawn as a line trace (data coordinates work on log axes)."""
    fig.add_trace(
        go.Scatter(
            x=[x[0], x[1], x[1], x[0], x[0]],
            y=[y[0], y[0], y[1], y[1], y[0]],
            mode="lines",
            line=SELECTED_LINE,
            hoverinfo="skip",
            showlegend=False,
        ),
        row=1,
        col=col,
    )


def _reference_line(fig: go.Figure, col: int, x: tuple[float, float], y: float, text: str) -> None:
    """A dotted horizontal line across a panel, labelled at its left end."""
    fig.add_trace(
        go.Scatter(
            x=[x[0], x[1]],
            y=[y, y],
            mode="lines+text",
            line={"color": "#222222", "width": 1, "dash": "dot"},
            text=[f"  {text}", ""],
            textposition="top right",
            textfont={"size": 11, "color": "#222222", "shadow": "0px 0px 3px white"},
            hoverinfo="skip",
            showlegend=False,
        ),
        row=1,
        col=col,
    )


def _marker_size(n_cols: int, n_panels: int, width_px: float = 1150) -> float:
    return max(6.0, min(40.0, 0.9 * width_px / n_panels / n_cols))


def _add_point(fig: go.Figure, col: int, x: float, y: float, marker: dict, text: str) -> None:
    fig.add_trace(
        go.Scatter(
            x=[x],
            y=[y],
            mode="markers",
            marker=marker,
            hovertemplate=f"{text}<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=col,
    )


def _finish(
    fig: go.Figure,
    *,
    n_panels: int,
    x_range: np.ndarray,
    y_range: np.ndarray,
    y_title: str,
    colour_low: float,
    colour_high: float,
    colour_title: str,
    top_label: str,
    height: int,
) -> go.Figure:
    ticks, labels = _power_ticks(colour_low, colour_high)
    if colour_high - ticks[-1] > 0.4:
        ticks.append(colour_high)
        labels.append(top_label)
    else:
        labels[-1] = top_label
    base_layout(fig, height=height)
    fig.update_layout(
        coloraxis={
            "colorscale": HEAT,
            "cmin": colour_low,
            "cmax": colour_high,
            "colorbar": {
                "title": {"text": colour_title, "side": "top"},
                "tickvals": ticks,
                "ticktext": labels,
                "thickness": 14,
                "len": 0.9,
            },
        },
        margin={"l": 70, "r": 10, "t": 60, "b": 55},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.09, "xanchor": "left", "x": 0.0},
        hovermode="closest",
        clickmode="event+select",
        dragmode=False,
        plot_bgcolor="white",
    )
    x_lo, x_hi = np.log10(x_range[0]), np.log10(x_range[-1])
    y_lo, y_hi = np.log10(y_range[0]), np.log10(y_range[-1])
    for col in range(1, n_panels + 1):
        fig.update_xaxes(
            type="log",
            dtick=1,
            exponentformat="power",
            range=[x_lo, x_hi],
            title_text="learning rate",
            showgrid=False,
            ticks="outside",
            row=1,
            col=col,
        )
        fig.update_yaxes(
            type="log",
            dtick=1,
            exponentformat="power",
            range=[y_lo, y_hi],
            showgrid=False,
            ticks="outside",
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    fig.update_annotations(font_size=14)
    return fig


# ---- learning rate x clip threshold ------------------------------------------------


def _clip_hover(m: ClipMap, row: int, col: int) -> str:
    lines = [f"lr {m.lrs[col]:.4g}"]
    if m.thresholds is None:
        lines.append("no clipping (threshold not used)")
    elif m.clip_mode in ROW_SYMBOLS:
        lines.append(f"{m.clip_mode}: {ROW_SYMBOLS[m.clip_mode]} = {m.thresholds[row]:.4g}")
    else:
        lines.append(f"clip {m.clip_mode} c = {m.thresholds[row]:.4g}")
    status = str(m.status[row, col])
    if status == "diverged":
        step = int(m.exploded_at[row, col])
        lines.append(f"diverged at step {step}" if step else "diverged (final weights not finite)")
    else:
        lines.append(
            f"final train MSE {fmt_number(float(m.final_loss[row, col]))}"
            f" (test {fmt_number(float(m.final_test_loss[row, col]))})"
        )
        lines.append(STATUS_TEXT[status])
    return "<br>".join(lines)


def clip_maps_figure(
    result: SweepResult,
    *,
    marker: Marker | None = None,
    selected: Cell | None = None,
    height: int = 400,
) -> go.Figure:
    """One heatmap per clip mode, side by side: lr (x) x threshold (y), colour = final loss.

    The ``none`` panel has one row stretched over the threshold axis: without
    clipping there is no threshold, so every row would be the same run.
    """
    maps = list(result.maps.values())
    thresholds = result.spec.thresholds
    thresholds = next((m.thresholds for m in maps if m.thresholds is not None), thresholds)
    y_edges = log_edges(thresholds)
    fig = make_subplots(
        rows=1,
        cols=len(maps),
        shared_yaxes=True,
        horizontal_spacing=0.035,
        subplot_titles=[PANEL_TITLES.get(m.clip_mode, m.clip_mode) for m in maps],
    )
    top = maps[0].initial_loss
    low, high = _colour_range([m.final_loss for m in maps], top)
    size = _marker_size(len(maps[0].lrs), len(maps))
    for col, m in enumerate(maps, start=1):
        rows = m.final_loss.shape[0]
        if m.thresholds is None:  # one row: draw it over the whole threshold span
            panel_edges = np.array([y_edges[0], y_edges[-1]])
            hover_rows, y_centres = np.zeros(len(thresholds), dtype=int), thresholds
        else:
            panel_edges = y_edges
            hover_rows, y_centres = np.arange(rows), m.thresholds
        hover = np.array(
            [[_clip_hover(m, r, c) for c in range(len(m.lrs))] for r in hover_rows], dtype=object
        )
        custom = np.array(
            [[[m.clip_mode, int(r), c] for c in range(len(m.lrs))] for r in hover_rows],
            dtype=object,
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            z_log = np.log10(np.clip(m.final_loss, 10**low, None))
        _panel(
            fig,
            col,
            x_centres=m.lrs,
            y_centres=y_centres,
            y_edges=panel_edges,
            z_log=np.minimum(z_log, high),
            diverged=m.diverged,
            hover=hover,
            custom=custom,
            marker_size=size,
        )
        if marker is not None and marker.clip_mode == m.clip_mode:
            y = marker.y if marker.y is not None else float(np.sqrt(y_edges[0] * y_edges[-1]))
            _add_point(fig, col, marker.x, y, _lab_marker_style(), marker.label)
        if _in_panel(selected, m.clip_mode, rows, len(m.lrs)):
            x_edges = log_edges(m.lrs)[selected.col : selected.col + 2]
            y_span = panel_edges[selected.row : selected.row + 2]
            _outline(fig, col, tuple(x_edges), tuple(y_span))
    _legend_entries(
        fig,
        any_diverged=any(m.diverged.any() for m in maps),
        marked=marker is not None and marker.clip_mode in result.maps,
        selected=selected is not None,
    )
    return _finish(
        fig,
        n_panels=len(maps),
        x_range=log_edges(maps[0].lrs),
        y_range=y_edges,
        y_title="clip threshold c",
        colour_low=low,
        colour_high=high,
        colour_title="final train MSE",
        top_label=f"≥ start ({fmt_number(top)})",
        height=height,
    )


def adaptive_maps_figure(
    result: SweepResult,
    *,
    marker: Marker | None = None,
    selected: Cell | None = None,
    height: int = 400,
) -> go.Figure:
    """One heatmap per adaptive rule: lr (x) x the rule's own setting (y), colour = final loss.

    Each panel has its own y axis (a percentile, a factor lambda, a z-score),
    all share the colour axis with ``clip_maps_figure``'s convention.
    """
    maps = [m for m in result.maps.values() if m.clip_mode in ROW_TITLES]
    if not maps:
        raise ValueError("the sweep has no adaptive rule's map")
    fig = make_subplots(
        rows=1,
        cols=len(maps),
        horizontal_spacing=0.1,  # each panel has its own y axis and title
        subplot_titles=[PANEL_TITLES[m.clip_mode] for m in maps],
    )
    top = maps[0].initial_loss
    low, high = _colour_range([m.final_loss for m in maps], top)
    size = _marker_size(len(maps[0].lrs), len(maps))
    y_edges = {}
    for col, m in enumerate(maps, start=1):
        rows = m.final_loss.shape[0]
        y_edges[col] = log_edges(m.thresholds)
        hover = np.array(
            [[_clip_hover(m, r, c) for c in range(len(m.lrs))] for r in range(rows)], dtype=object
        )
        custom = np.array(
            [[[m.clip_mode, r, c] for c in range(len(m.lrs))] for r in range(rows)], dtype=object
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            z_log = np.log10(np.clip(m.final_loss, 10**low, None))
        _panel(
            fig,
            col,
            x_centres=m.lrs,
            y_centres=m.thresholds,
            y_edges=y_edges[col],
            z_log=np.minimum(z_log, high),
            diverged=m.diverged,
            hover=hover,
            custom=custom,
            marker_size=size,
        )
        if marker is not None and marker.clip_mode == m.clip_mode and marker.y is not None:
            _add_point(fig, col, marker.x, marker.y, _lab_marker_style(), marker.label)
        if _in_panel(selected, m.clip_mode, rows, len(m.lrs)):
            x_edges = log_edges(m.lrs)[selected.col : selected.col + 2]
            y_span = y_edges[col][selected.row : selected.row + 2]
            _outline(fig, col, tuple(x_edges), tuple(y_span))
    _legend_entries(
        fig,
        any_diverged=any(m.diverged.any() for m in maps),
        marked=marker is not None and any(marker.clip_mode == m.clip_mode for m in maps),
        selected=selected is not None,
    )
    fig = _finish(
        fig,
        n_panels=len(maps),
        x_range=log_edges(maps[0].lrs),
        y_range=y_edges[1],
        y_title=ROW_TITLES[maps[0].clip_mode],
        colour_low=low,
        colour_high=high,
        colour_title="final train MSE",
        top_label=f"≥ start ({fmt_number(top)})",
        height=height,
    )
    for col, m in enumerate(maps, start=1):  # each rule's own axis
        ticks = [
            v for v in ROW_TICKS.get(m.clip_mode, ()) if m.thresholds[0] <= v <= m.thresholds[-1]
        ]
        fig.update_yaxes(
            range=list(np.log10(y_edges[col][[0, -1]])),
            title_text=ROW_TITLES[m.clip_mode],
            title_standoff=4,
            row=1,
            col=col,
            **({"tickvals": ticks, "ticktext": [f"{v:g}" for v in ticks]} if ticks else {}),
        )
    return fig


# ---- learning rate x target scale --------------------------------------------------


def _target_hover(m: TargetMap, row: int, col: int, raw_std: float) -> str:
    lines = [
        f"lr {m.lrs[col]:.4g}",
        f"target std {m.target_stds[row]:.4g} (tutorial target × {m.multipliers[row]:.3g})",
    ]
    lines.append(
        "no clipping" if m.threshold is None else f"clip {m.clip_mode} c = {m.threshold:g}"
    )
    status = str(m.status[row, col])
    if status == "diverged":
        step = int(m.exploded_at[row, col])
        lines.append(f"diverged at step {step}" if step else "diverged (final weights not finite)")
    else:
        lines.append(f"final / initial train loss {fmt_number(float(m.loss_ratio[row, col]))}")
        lines.append(STATUS_TEXT[status])
    return "<br>".join(lines)


def target_maps_figure(
    result: TargetSweepResult,
    *,
    marker: Marker | None = None,
    selected: Cell | None = None,
    height: int = 400,
) -> go.Figure:
    """lr (x) x target standard deviation (y), one panel per clipping setting.

    Colour: final over initial training loss (1 = no progress), which
    compares rows whose MSEs differ by the square of their scale. Dotted
    lines mark the standardized target (std 1) and the unscaled tutorial
    target.
    """
    maps = list(result.maps.values())
    titles = [
        PANEL_TITLES["none"]
        if m.threshold is None
        else f"clip by {m.clip_mode}, c = {m.threshold:g}"
        for m in maps
    ]
    fig = make_subplots(
        rows=1, cols=len(maps), shared_yaxes=True, horizontal_spacing=0.035, subplot_titles=titles
    )
    low, high = _colour_range([m.loss_ratio for m in maps], 1.0)
    size = _marker_size(len(maps[0].lrs), len(maps))
    stds = maps[0].target_stds
    y_edges = log_edges(stds)
    for col, m in enumerate(maps, start=1):
        n_rows, n_cols = m.loss_ratio.shape
        hover = np.array(
            [
                [_target_hover(m, r, c, result.raw_target_std) for c in range(n_cols)]
                for r in range(n_rows)
            ],
            dtype=object,
        )
        custom = np.array(
            [[[m.clip_mode, r, c] for c in range(n_cols)] for r in range(n_rows)], dtype=object
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            z_log = np.log10(np.clip(m.loss_ratio, 10**low, None))
        _panel(
            fig,
            col,
            x_centres=m.lrs,
            y_centres=m.target_stds,
            y_edges=y_edges,
            z_log=np.minimum(z_log, high),
            diverged=m.status == "diverged",
            hover=hover,
            custom=custom,
            marker_size=size,
        )
        x_span = log_edges(m.lrs)[[0, -1]]
        for value, name in ((1.0, "standardized"), (result.raw_target_std, "tutorial target")):
            if y_edges[0] < value < y_edges[-1]:
                _reference_line(fig, col, tuple(x_span), value, name if col == 1 else "")
        if marker is not None and marker.clip_mode == m.clip_mode and marker.y is not None:
            _add_point(fig, col, marker.x, marker.y, _lab_marker_style(), marker.label)
        if _in_panel(selected, m.clip_mode, n_rows, n_cols):
            x_edges = log_edges(m.lrs)[selected.col : selected.col + 2]
            y_span = y_edges[selected.row : selected.row + 2]
            _outline(fig, col, tuple(x_edges), tuple(y_span))
    _legend_entries(
        fig,
        any_diverged=any((m.status == "diverged").any() for m in maps),
        marked=marker is not None and marker.clip_mode in result.maps,
        selected=selected is not None,
    )
    return _finish(
        fig,
        n_panels=len(maps),
        x_range=log_edges(maps[0].lrs),
        y_range=y_edges,
        y_title="target standard deviation",
        colour_low=low,
        colour_high=high,
        colour_title="final ÷ initial train loss",
        top_label="≥ 1 (no progress)",
        height=height,
    )
