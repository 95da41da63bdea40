"""Charts of your own run's gradient-norm log (``/your_run``): pure functions of a diagnosis.

* ``norm_figure``: the gradient norm over the steps on a log axis, ZClip's
  spike line (moving mean + z standard deviations) and the spikes it flags,
  the first step of each sign found, the explosion; the loss below when the
  log has one.
* ``distribution_figure``: how often each size of norm occurred (a histogram
  over log-spaced bins, drawn as steps because bars cannot be log-wide), with
  the suggested thresholds as dashed lines.

The norm is drawn in the clipped-run colour when the log shows clipping and
in the unclipped colour otherwise, as everywhere in clipviz.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from clipviz.figures.style import ACCENT, NEUTRAL, THRESHOLD, base_layout, run_colour
from clipviz.figures.training import finite_or_nan, thin
from clipviz.lessons.yourrun import RunDiagnosis

HIST_BINS = 40


def shows_clipping(diagnosis: RunDiagnosis) -> bool:
    """Whether the log says some step was clipped (a 'clipped' column, or after < before)."""
    extra = diagnosis.log.extra
    if "clipped" in extra and np.nansum(extra["clipped"]) > 0:
        return True
    after = extra.get("grad_norm_after")
    if after is None:
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.any(after < diagnosis.log.grad_norm))


def norm_figure(diagnosis: RunDiagnosis, *, height: int = 520) -> go.Figure:
    """The norm over steps (log axis), spikes, signs and the explosion; the loss below."""
    log = diagnosis.log
    has_loss = log.loss is not None
    rows = 2 if has_loss else 1
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        row_heights=[0.68, 0.32] if has_loss else [1.0],
    )
    steps = log.step
    keep = thin(steps.size, log.grad_norm)
    colour = run_colour(shows_clipping(diagnosis))
    norm_name = f"gradient norm ({log.mapping.grad_norm})"
    fig.add_trace(
        go.Scattergl(
            x=steps[keep],
            y=finite_or_nan(log.grad_norm[keep]),
            mode="lines",
            line={"color": colour, "width": 1.4},
            name="gradient norm",
            hovertemplate="step %{x}<br>norm %{y:.6g}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    threshold = log.extra.get("clip_threshold")
    if threshold is not None and np.isfinite(threshold).any():
        fig.add_trace(
            go.Scattergl(
                x=steps[keep],
                y=finite_or_nan(threshold[keep]),
                mode="lines",
                line={"color": THRESHOLD, "width": 1.5, "dash": "dash"},
                name="your clip threshold",
                hovertemplate="step %{x}<br>clip threshold %{y:.6g}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    spikes = diagnosis.spikes
    line = spikes.mean + spikes.rule.z * spikes.std
    shown = keep[np.isfinite(line[keep])]
    if shown.size:
        fig.add_trace(
            go.Scattergl(
                x=steps[shown],
                y=line[shown],
                mode="lines",
                line={"color": NEUTRAL, "width": 1, "dash": "dot"},
                name=f"spike line: moving mean + {spikes.rule.z:g} std (ZClip)",
                hovertemplate="step %{x}<br>spike above %{y:.6g}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    if spikes.steps:
        at = np.searchsorted(steps, spikes.steps)
        fig.add_trace(
            go.Scattergl(
                x=steps[at],
                y=log.grad_norm[at],
                mode="markers",
                marker={"color": ACCENT, "size": 8, "symbol": "circle-open", "line": {"width": 2}},
                name=f"spike ({len(spikes.steps)})",
                customdata=spikes.z[at],
                hovertemplate="spike at step %{x}<br>norm %{y:.6g}<br>z-score %{customdata:.2f}"
                "<extra></extra>",
            ),
            row=1,
            col=1,
        )
    # Each sign's first step: a dashed line, numbered as the page lists the signs.
    # Signs often come in a burst at the end of a run, so the numbers are stacked.
    for number, finding in enumerate(diagnosis.findings, start=1):
        fig.add_vline(
            x=finding.step,
            line={"color": THRESHOLD, "width": 1, "dash": "dash"},
            row=1,
            col=1,
        )
        fig.add_annotation(
            x=finding.step,
            y=1.0,
            xref="x",
            yref="y domain",
            text=f"<b>{number}</b>",
            showarrow=False,
            xanchor="right",
            yanchor="top",
            yshift=-16 * (number - 1),
            font={"size": 11, "color": THRESHOLD},
            hovertext=f"sign {number} from step {finding.step}: {finding.sign.title}",
        )
    if diagnosis.exploded_at is not None:
        fig.add_vline(
            x=diagnosis.exploded_at,
            line={"color": run_colour(False), "width": 2},
            row=1,
            col=1,
        )
        fig.add_annotation(
            x=diagnosis.exploded_at,
            y=0.0,
            xref="x",
            yref="y domain",
            text=f"not finite from step {diagnosis.exploded_at}",
            showarrow=False,
            xanchor="right",
            yanchor="bottom",
            xshift=-4,
            font={"size": 11, "color": run_colour(False)},
            bgcolor="rgba(255,255,255,0.8)",
        )
    fig.update_yaxes(
        type="log", title_text="gradient norm (L2)", exponentformat="power", row=1, col=1
    )
    if has_loss:
        loss = finite_or_nan(log.loss)
        positive = loss[np.isfinite(loss)]
        loss_keep = thin(steps.size, log.loss)
        fig.add_trace(
            go.Scattergl(
                x=steps[loss_keep],
                y=loss[loss_keep],
                mode="lines",
                line={"color": NEUTRAL, "width": 1.2},
                name="loss" if log.mapping.loss == "loss" else f"loss ({log.mapping.loss})",
                hovertemplate="step %{x}<br>loss %{y:.6g}<extra></extra>",
            ),
            row=2,
            col=1,
        )
        log_loss = positive.size > 0 and bool((positive > 0).all())
        fig.update_yaxes(
            type="log" if log_loss else "linear",
            title_text="loss",
            exponentformat="power",
            row=2,
            col=1,
        )
    step_name = log.mapping.step
    fig.update_xaxes(
        title_text="step" if step_name.lower() == "step" else f"step ({step_name})", row=rows, col=1
    )
    base_layout(fig, height=height)
    fig.update_layout(hovermode="closest", uirevision=norm_name)
    return fig


def log_bins(norms: np.ndarray, bins: int = HIST_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(edges, counts) of the positive finite norms over log-spaced bins."""
    values = norms[np.isfinite(norms) & (norms > 0)]
    if values.size == 0:
        return np.array([1.0, 10.0]), np.array([0])
    low, high = math.log10(values.min()), math.log10(values.max())
    if high - low < 1e-9:  # every norm the same: one bin around it
        low, high = low - 0.05, high + 0.05
    edges = np.logspace(low, high, bins + 1)
    counts, _ = np.histogram(values, bins=edges)
    return edges, counts


def distribution_figure(diagnosis: RunDiagnosis, *, height: int = 340) -> go.Figure:
    """How often each size of norm occurred, with the suggested thresholds."""
    edges, counts = log_bins(diagnosis.log.grad_norm)
    colour = run_colour(shows_clipping(diagnosis))
    # A step outline: each bin's count held from its left edge to its right.
    x = np.repeat(edges, 2)[1:-1]
    y = np.repeat(counts, 2)
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            mode="lines",
            line={"color": colour, "width": 1.5},
            fill="tozeroy",
            name="steps",
            customdata=np.repeat(np.stack([edges[:-1], edges[1:]], axis=1), 2, axis=0),
            hovertemplate="norm %{customdata[0]:.4g} to %{customdata[1]:.4g}<br>%{y} steps"
            "<extra></extra>",
        )
    )
    for i, t in enumerate(diagnosis.thresholds):
        fig.add_vline(x=t.threshold, line={"color": THRESHOLD, "width": 1, "dash": "dash"})
        fig.add_annotation(
            # On a log axis an annotation's x is the exponent.
            x=math.log10(t.threshold) if t.threshold > 0 else 0.0,
            y=1.0,
            xref="x",
            yref="y domain",
            text=f"p{t.percentile:g}",
            showarrow=False,
            xanchor="left",
            yanchor="top",
            yshift=-14 * (i % 3),  # neighbouring percentiles often sit close together
            font={"size": 11, "color": THRESHOLD},
            hovertext=f"{t.percentile:g}th percentile: {t.threshold:.4g}, "
            f"clips {t.clipped_fraction:.1%} of the steps",
        )
    base_layout(fig, height=height)
    fig.update_xaxes(type="log", title_text="gradient norm (L2), log scale", exponentformat="power")
    fig.update_yaxes(title_text="steps", rangemode="tozero")
    fig.update_layout(showlegend=False, margin={"t": 40})
    return fig
