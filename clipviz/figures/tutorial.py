"""Charts only the tutorial page draws: the target's spread, the signs of an explosion
on one timeline, and the extension grid as box plots.

Pure builders from plain arrays and ``clipviz.lessons.story`` results to Plotly figures.
Run charts shared with the Lab (loss, gradient norm) stay in ``training``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from clipviz.figures.style import ACCENT, TEST, THRESHOLD, TRAIN, base_layout, run_colour
from clipviz.figures.training import RunTrace, finite_or_nan
from clipviz.lessons.diagnose import Finding
from clipviz.lessons.story import ChapterRun, Panel


def target_figure(y_train: np.ndarray, y_test: np.ndarray, *, height: int = 360) -> go.Figure:
    """Histogram of the target (train and test rows stacked) above their box plots, one x axis."""
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.04
    )
    both = np.concatenate([y_train, y_test])
    edges = np.histogram_bin_edges(both, bins=30)
    size = float(edges[1] - edges[0])
    for values, name, colour in ((y_train, "train rows", TRAIN), (y_test, "test rows", TEST)):
        fig.add_trace(
            go.Histogram(
                x=values,
                name=name,
                legendgroup=name,
                marker={"color": colour, "line": {"color": "white", "width": 0.5}},
                xbins={"start": float(edges[0]), "end": float(edges[-1]), "size": size},
                hovertemplate=f"{name}<br>y in %{{x}}<br>%{{y}} examples<extra></extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Box(
                x=values,
                name=name,
                legendgroup=name,
                showlegend=False,
                marker={"color": colour, "size": 3},
                line={"width": 1.5},
                boxpoints="outliers",
                hoverinfo="x",
            ),
            row=2,
            col=1,
        )
    fig.update_layout(barmode="stack", bargap=0.04)
    fig.add_vline(x=0, line={"color": THRESHOLD, "dash": "dot", "width": 1})
    fig.update_yaxes(title="examples", row=1, col=1)
    fig.update_yaxes(showticklabels=True, row=2, col=1)
    fig.update_xaxes(title="target y (original units)", row=2, col=1)
    base_layout(fig, title="The target: histogram and box plot", height=height)
    return fig


SIGN_SHORT = {
    "no_progress": "no progress",
    "loss_swings": "loss jumps",
    "loss_nan": "loss NaN",
    "weights_grow": "weights grow",
    "weights_nan": "weights NaN",
    "grads_above_one": "gradients > 1",
}


def signs_timeline_figure(
    trace: RunTrace, findings: Sequence[Finding], *, height: int = 460
) -> go.Figure:
    """Loss, gradient norm and weight norm on one step axis, each sign marked where it first shows."""
    rows = [
        ("loss", "loss (MSE)"),
        ("grad_norm", "gradient norm"),
        ("weight_norm", "weight norm"),
    ]
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    colour = run_colour(trace.clipped)
    steps = trace.records["step"]
    for r, (key, name) in enumerate(rows, start=1):
        values = trace.records.get(key)
        if values is None:
            continue
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=finite_or_nan(values),
                mode="lines+markers",
                name=name,
                showlegend=False,
                line={"color": colour, "width": 2},
                marker={"size": 6},
                hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>",
            ),
            row=r,
            col=1,
        )
        fig.update_yaxes(
            type="log", title={"text": name, "font": {"size": 12}}, exponentformat="power", row=r
        )
    # Paper-high shapes (the x axes are shared), set in one layout update: far
    # cheaper than add_vline/add_annotation, which re-validate the figure each call.
    seen: dict[int, list[str]] = {}
    for finding in findings:
        seen.setdefault(finding.step, []).append(SIGN_SHORT.get(finding.key, finding.key))
    shapes, annotations = [], []
    for i, (step, names) in enumerate(sorted(seen.items())):
        shapes.append(
            {
                "type": "line",
                "x0": step,
                "x1": step,
                "xref": "x",
                "y0": 0,
                "y1": 1,
                "yref": "paper",
                "line": {"color": ACCENT, "dash": "dash", "width": 1.5},
            }
        )
        annotations.append(
            {
                "x": step,
                "y": 1.0,
                "xref": "x",
                "yref": "paper",
                "yanchor": "bottom",
                "text": f"{', '.join(names)}<br>step {step}",
                "showarrow": False,
                "font": {"size": 11, "color": "#333333"},
                "bgcolor": "rgba(255,255,255,0.85)",
                "yshift": 4 + 26 * (i % 2),
            }
        )
    if trace.exploded_at is not None:
        shapes.append(
            {
                "type": "rect",
                "x0": trace.exploded_at - 0.5,
                "x1": trace.exploded_at + 0.5,
                "xref": "x",
                "y0": 0,
                "y1": 1,
                "yref": "paper",
                "fillcolor": colour,
                "opacity": 0.15,
                "line": {"width": 0},
                "layer": "below",
            }
        )
    fig.update_layout(shapes=shapes, annotations=annotations)
    fig.update_xaxes(
        title="optimizer step", row=len(rows), col=1, dtick=1 if len(steps) <= 30 else None
    )
    base_layout(fig, height=height)
    fig.update_layout(margin={"t": 80, "l": 80}, showlegend=False)
    return fig


def chapter_trace(run: ChapterRun) -> RunTrace:
    """A chapter's run as the training charts draw it: MSE in the target's own units,
    the units the tutorial prints its numbers in."""
    return RunTrace.from_result(run.result, original_units=True)


def extension_figure(panels: Sequence[Panel], *, height: int = 420) -> go.Figure:
    """Box plots of final test MSE per setting, one panel per group, shared log y.

    Every seed is drawn as a point over its box. Runs that exploded have no MSE;
    their count is written above the box instead. The tutorial's published
    number is a star where it ran that setting.
    """
    widths = [max(1, len(p.boxes)) for p in panels]
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        shared_yaxes=True,
        column_widths=widths,
        horizontal_spacing=0.03,
        subplot_titles=[p.title for p in panels],
    )
    all_values = [
        v
        for p in panels
        for b in p.boxes
        for v in b.values
        if v is not None and np.isfinite(v) and v > 0
    ]
    all_values += [b.published for p in panels for b in p.boxes if b.published]
    # Where "n/N exploded" is written: the middle of the log axis, in the empty column.
    middle = float(np.sqrt(min(all_values) * max(all_values))) if all_values else 1.0
    published_shown = False
    for c, panel in enumerate(panels, start=1):
        for box in panel.boxes:
            values = np.asarray(box.values, dtype=float)
            finite = np.isfinite(values)
            colour = run_colour(box.clipped)
            fig.add_trace(
                go.Box(
                    x=[box.label] * int(finite.sum()),
                    y=values[finite],
                    name=box.label,
                    marker={"color": colour, "size": 6},
                    line={"color": colour, "width": 1.5},
                    fillcolor="rgba(0,0,0,0)",
                    boxpoints="all",
                    jitter=0.35,
                    pointpos=0,
                    customdata=np.asarray(box.seeds)[finite],
                    hovertemplate=f"{box.label}<br>seed %{{customdata}}<br>test MSE %{{y:.4g}}<extra></extra>",
                    showlegend=False,
                ),
                row=1,
                col=c,
            )
            exploded = int((~finite).sum())
            if exploded:
                fig.add_trace(
                    go.Scatter(
                        x=[box.label],
                        y=[middle],
                        mode="text",
                        text=[f"{exploded}/{len(values)}<br>exploded"],
                        textfont={"color": colour, "size": 12},
                        textposition="middle center",
                        cliponaxis=False,
                        hovertemplate=f"{box.label}: {exploded} of {len(values)} runs exploded (no MSE)<extra></extra>",
                        showlegend=False,
                    ),
                    row=1,
                    col=c,
                )
            if box.published is not None:
                fig.add_trace(
                    go.Scatter(
                        x=[box.label],
                        y=[box.published],
                        mode="markers",
                        name="published (Keras 2.2, one run)",
                        marker={
                            "symbol": "star",
                            "size": 14,
                            "color": "white",
                            "line": {"color": "#222222", "width": 1.5},
                        },
                        hovertemplate=f"{box.label}<br>published test MSE %{{y:.5g}}<extra></extra>",
                        showlegend=not published_shown,
                    ),
                    row=1,
                    col=c,
                )
                published_shown = True
    fig.update_yaxes(type="log", exponentformat="power", gridcolor="#eeeeee")
    fig.update_yaxes(title="final test MSE (log scale)", row=1, col=1)
    fig.update_xaxes(type="category", tickangle=0, tickfont={"size": 12})
    base_layout(fig, height=height)
    fig.update_layout(
        margin={"t": 60, "b": 70},
        legend={"orientation": "h", "yanchor": "top", "y": -0.16, "xanchor": "right", "x": 1.0},
    )
    for annotation in fig.layout.annotations:  # subplot titles
        annotation.font = {"size": 13, "color": "#333333"}
    return fig
