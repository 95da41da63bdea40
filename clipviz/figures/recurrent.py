"""Charts of gradients through time in recurrent nets (the /recurrent page).

* ``hidden_grad_heatmap`` -- log10 ||dL/dh_t|| over time step t (x) and
  training step (y): where in the sequence the gradient is large, and how that
  changes as the net trains. Two nets drawn with the same colour range can be
  compared cell by cell.
* ``through_time_figure`` -- ||dL/dh_t|| against t, one line per curve (a net
  at one training step, or the RNN at one spectral radius), log y;
  ``step_curves_figure`` draws the two nets of a comparison at one step.
* ``bound_figure`` -- the measured ||dL/dh_t|| at initialisation against the
  upper bound sigma_max^(T-1-t) (Pascanu, Mikolov & Bengio 2013).
* ``truncation_figure`` -- test MSE over training for full and truncated
  backpropagation, with the mean-guess line and the "learned" line.
* ``loss_figure`` / ``grad_norm_figure`` / ``run_trace`` -- a ``NetRun`` (and its
  unclipped twin) through the app's shared training charts; the loss chart also
  draws the mean guess.
* ``digits_curves_figure`` / ``digits_lr_figure`` -- the digits chapter: test loss
  and accuracy per epoch over seeds (median and min-max band), and every seed's
  final accuracy against the learning rate; ``study_*_figure`` draw a
  ``clipviz.lessons.digits.Study``.

Run colours follow ``style``: clipped runs blue, unclipped vermillion. Curves
that are not runs (spectral radii) use the rest of the colour-blind-safe set.
Builders are pure: arrays in, figure out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from clipviz.figures import training
from clipviz.figures.style import (
    ACCENT,
    HEAT,
    NEUTRAL,
    THRESHOLD,
    base_layout,
    run_colour,
    run_symbol,
)

if TYPE_CHECKING:
    from clipviz.lessons.digits import Study
    from clipviz.lessons.recurrent import BoundProbe, NetRun, TruncationStudy

MAX_ROWS = 400  # training steps drawn in a heatmap (more are thinned evenly)
# Okabe-Ito colours other than the two reserved for clipped (blue) / unclipped (vermillion).
RADIUS_COLOURS = ["#56B4E9", "#009E73", "#E69F00", "#CC79A7", "#000000"]


def log10_or_nan(values: np.ndarray) -> np.ndarray:
    """log10 of positive finite values; NaN (drawn as a gap) for 0, inf and NaN."""
    values = np.asarray(values, dtype=float)
    good = np.isfinite(values) & (values > 0)
    out = np.full(values.shape, np.nan)
    out[good] = np.log10(values[good])
    return out


def shared_log_range(*arrays: np.ndarray, tail: float = 1.0) -> tuple[float, float] | None:
    """A common (low, high) of log10 over several arrays, so two heatmaps compare fairly.

    The range runs from the ``tail`` to the 100 - ``tail`` percentile of all the
    cells together: a few cells decades beyond the rest (an explosion's last
    steps) take the end colours instead of flattening everything else into one.
    """
    logs = [log10_or_nan(a) for a in arrays if np.asarray(a).size]
    finite = np.concatenate([v[np.isfinite(v)] for v in logs]) if logs else np.zeros(0)
    if not finite.size:
        return None
    low, high = (float(v) for v in np.percentile(finite, [tail, 100 - tail]))
    if high - low < 1:  # keep at least one decade so a flat map is not all one colour
        low, high = low - 0.5, high + 0.5
    return low, high


def hidden_grad_heatmap(
    hidden_grad_norm: np.ndarray,
    *,
    title: str,
    log_range: tuple[float, float] | None = None,
    exploded_at: int | None = None,
    tbptt: int = 0,
    height: int = 380,
) -> go.Figure:
    """Heatmap of log10 ||dL/dh_t||: time step t across, training step down.

    ``hidden_grad_norm`` is (steps, T) as recorded by the trainer. Cells
    without a gradient (before a truncation cut, or below float32's range)
    are left blank and say so on hover.
    """
    norms = np.asarray(hidden_grad_norm, dtype=float)
    steps, seq_len = norms.shape if norms.ndim == 2 else (0, 0)
    fig = go.Figure()
    if steps:
        rows = np.unique(np.linspace(0, steps - 1, min(steps, MAX_ROWS)).astype(int))
        z = log10_or_nan(norms[rows])
        low, high = log_range or shared_log_range(norms) or (-1.0, 1.0)
        fig.add_trace(
            go.Heatmap(
                x=np.arange(seq_len),
                y=rows + 1,
                z=z,
                zmin=low,
                zmax=high,
                colorscale=HEAT,
                customdata=np.where(np.isfinite(norms[rows]), norms[rows], np.nan),
                colorbar={"title": {"text": "log₁₀ ‖∂L/∂hₜ‖", "side": "right"}, "thickness": 14},
                hovertemplate=(
                    "time step t = %{x}<br>training step %{y}<br>"
                    "‖∂L/∂hₜ‖ = %{customdata:.3g}<extra></extra>"
                ),
                hoverongaps=False,
            )
        )
        if tbptt:
            cut = seq_len - tbptt - 0.5
            fig.add_vline(x=cut, line={"color": THRESHOLD, "dash": "dash", "width": 2})
            fig.add_annotation(
                x=0.0,
                xref="paper",
                y=1.0,
                yref="paper",
                yanchor="bottom",
                xanchor="left",
                showarrow=False,
                text=f"dashed line: truncation, only the last {tbptt} steps get a gradient",
                font={"size": 11, "color": THRESHOLD},
            )
        fig.update_xaxes(range=[-0.5, seq_len - 0.5])
        if exploded_at is not None:
            fig.add_hline(
                y=exploded_at,
                line={"color": ACCENT, "dash": "dot", "width": 2},
                annotation={"text": f"exploded at step {exploded_at}", "font": {"size": 12}},
                annotation_position="bottom left",
            )
    fig.update_xaxes(title="time step t in the sequence (the loss is read at the last one)")
    fig.update_yaxes(title="training step", autorange="reversed")
    base_layout(fig, title=title, height=height)
    fig.update_layout(plot_bgcolor="#f2f2f2")  # blank cells read as "no gradient"
    return fig


def through_time_figure(
    curves: Mapping[str, np.ndarray],
    *,
    title: str,
    colours: Mapping[str, str] | None = None,
    dashes: Mapping[str, str] | None = None,
    height: int = 360,
) -> go.Figure:
    """||dL/dh_t|| against time step t, one line per curve, log y.

    Zero or non-finite values are gaps. ``colours``/``dashes`` map a curve's
    name to its line style; by default curves take ``RADIUS_COLOURS`` in turn.
    """
    fig = go.Figure()
    for k, (name, norms) in enumerate(curves.items()):
        values = np.asarray(norms, dtype=float)
        shown = np.where(np.isfinite(values) & (values > 0), values, np.nan)
        colour = (colours or {}).get(name, RADIUS_COLOURS[k % len(RADIUS_COLOURS)])
        fig.add_trace(
            go.Scatter(
                x=np.arange(len(values)),
                y=shown,
                mode="lines",
                name=name,
                line={"color": colour, "width": 2.2, "dash": (dashes or {}).get(name, "solid")},
                hovertemplate=f"{name}<br>time step t = %{{x}}<br>‖∂L/∂hₜ‖ = %{{y:.3g}}<extra></extra>",
            )
        )
    fig.update_yaxes(title="‖∂L/∂hₜ‖ (log scale)", type="log", exponentformat="power")
    fig.update_xaxes(title="time step t (the loss is read at the last one)")
    base_layout(fig, title=title, height=height)
    # Below the plot: curve names are long and would collide with the title.
    fig.update_layout(
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0.0},
        margin={"b": 90},
    )
    return fig


def bound_figure(probe: BoundProbe, *, title: str, height: int = 360) -> go.Figure:
    """The measured ||dL/dh_t|| at initialisation (solid) against its upper bound (dashed).

    Both lines start from the same value at the last time step; read right to left.
    """
    t = np.arange(len(probe.measured))
    fig = go.Figure()
    bound_name = f"upper bound ‖∂L/∂h_T−1‖ · σ_max^(T−1−t), σ_max = {probe.sigma_max:.3g}"
    fig.add_trace(
        go.Scatter(
            x=t,
            y=np.where(probe.bound > 0, probe.bound, np.nan),
            mode="lines",
            name=bound_name,
            line={"color": THRESHOLD, "dash": "dash", "width": 2},
            hovertemplate="bound<br>time step t = %{x}<br>%{y:.3g}<extra></extra>",
        )
    )
    measured = np.where(np.isfinite(probe.measured) & (probe.measured > 0), probe.measured, np.nan)
    fig.add_trace(
        go.Scatter(
            x=t,
            y=measured,
            mode="lines",
            name="measured ‖∂L/∂hₜ‖",
            line={"color": ACCENT, "width": 2.4},
            hovertemplate="measured<br>time step t = %{x}<br>‖∂L/∂hₜ‖ = %{y:.3g}<extra></extra>",
        )
    )
    fig.update_yaxes(title="‖∂L/∂hₜ‖ (log scale)", type="log", exponentformat="power")
    fig.update_xaxes(title="time step t (the loss is read at the last one)")
    base_layout(fig, title=title, height=height)
    fig.update_layout(
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0.0},
        margin={"b": 90},
    )
    return fig


TRUNCATION_COLOURS = ["#000000", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]


def truncation_figure(study: TruncationStudy, *, height: int = 380) -> go.Figure:
    """Test MSE over training steps, one line per truncation length, log y, with the
    mean guess and half of it as reference lines."""
    fig = go.Figure()
    for k, run in enumerate(study.runs):
        fig.add_trace(
            go.Scatter(
                x=run.steps,
                y=run.test_loss,
                mode="lines+markers",
                marker={"size": 4},
                name=run.label,
                line={
                    "color": TRUNCATION_COLOURS[k % len(TRUNCATION_COLOURS)],
                    "width": 2.2,
                    "dash": "solid" if run.tbptt == 0 else ("dash" if k == 1 else "dot"),
                },
                hovertemplate=f"{run.label}<br>training step %{{x}}<br>"
                "test MSE = %{y:.4g}<extra></extra>",
            )
        )
    for level, text in (
        (study.mean_guess, f"always guessing the mean: {study.mean_guess:.3g}"),
        (study.learned_level, f"half of it: {study.learned_level:.3g}"),
    ):
        _log_level_line(fig, level, text)
    fig.update_yaxes(title="test MSE (log scale)", type="log", exponentformat="power")
    fig.update_xaxes(title="training step")
    cfg = study.config
    base_layout(
        fig,
        title=f"{cfg.network.upper()} on the adding problem, T = {cfg.seq_len}: test MSE",
        height=height,
    )
    fig.update_layout(
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0.0},
        margin={"b": 90},
    )
    return fig


def radius_colours(radii: list[float]) -> dict[str, str]:
    """Line colours for spectral-radius curves: cool below 1, warm above, grey at 1."""
    out = {}
    below = [r for r in radii if r < 1]
    above = [r for r in radii if r > 1]
    cool = ["#56B4E9", "#009E73"]
    warm = ["#E69F00", "#CC79A7", "#000000"]
    for i, r in enumerate(sorted(below, reverse=True)):
        out[radius_label(r)] = cool[min(i, len(cool) - 1)]
    for i, r in enumerate(sorted(above)):
        out[radius_label(r)] = warm[min(i, len(warm) - 1)]
    for r in radii:
        if math.isclose(r, 1.0):
            out[radius_label(r)] = NEUTRAL
    return out


def radius_label(radius: float) -> str:
    return f"RNN, ρ = {radius:g}"


def layer_figure(run: NetRun, *, height: int = 300) -> go.Figure:
    """The shared per-layer gradient-norm heatmap, with room for the layer names."""
    fig = training.layer_norm_figure(
        run_trace(run), revision=f"layers-{run.network}", height=height
    )
    fig.update_layout(margin={"l": 110})
    fig.update_yaxes(title=None)
    return fig


def step_curves_figure(runs: Sequence[NetRun], step: int, *, height: int = 360) -> go.Figure:
    """||dL/dh_t|| of each net at one training step (1-based): RNN solid, LSTM dashed.

    Colour says clipped (blue) or not (vermillion). A net that exploded before
    ``step`` has no curve; the legend says so.
    """
    curves, colours, dashes = {}, {}, {}
    for run in runs:
        if step <= run.steps:
            name = f"{run.name}, training step {step}"
            curves[name] = run.hidden_grad_norm[step - 1]
        else:
            name = f"{run.name}: exploded at step {run.exploded_at}, no step {step}"
            curves[name] = np.full(run.config.seq_len, np.nan)
        colours[name] = run_colour(run.config.clipped)
        dashes[name] = "solid" if run.network == "rnn" else "dash"
    return through_time_figure(
        curves,
        title=f"‖∂L/∂hₜ‖ across the sequence at training step {step}",
        colours=colours,
        dashes=dashes,
        height=height,
    )


def run_trace(run: NetRun, label: str | None = None) -> training.RunTrace:
    """A ``NetRun`` as the shared training charts take it."""
    return training.RunTrace.from_result(run.result, label or run.name)


def _with_twin(run: NetRun) -> list[training.RunTrace]:
    if run.twin is None:
        return [run_trace(run)]
    return [run_trace(run, "clipped"), run_trace(run.twin, "no clipping")]


def _legend_below(fig: go.Figure, title: str, entries: int) -> go.Figure:
    """Half-width charts: the legend goes under the plot, one entry a row, so that
    neither the plot nor the entry names get squeezed."""
    extra = 20 * entries
    fig.update_layout(
        title={"text": title},
        height=fig.layout.height + extra,
        legend={"orientation": "v", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0.0},
        margin={"b": 60 + extra},
    )
    return fig


def _log_level_line(fig: go.Figure, level: float, text: str, *, left: bool = False) -> None:
    """A dashed horizontal line at ``level`` on a log y axis, labelled just above it.

    The label is placed by hand: on a log axis an annotation's y is log10 of the
    value, and ``add_hline``'s own annotation lands at the wrong height there."""
    fig.add_hline(y=level, line={"color": NEUTRAL, "dash": "dash", "width": 1.5})
    fig.add_annotation(
        x=0 if left else 1,
        xref="paper",
        xanchor="left" if left else "right",
        y=math.log10(level),
        yanchor="bottom",
        text=text,
        showarrow=False,
        font={"size": 11, "color": "#555555"},
    )


def loss_figure(run: NetRun, *, height: int = 340) -> go.Figure:
    """The shared loss chart for one net, with its unclipped twin if it has one, and
    the test MSE of always guessing the mean as a dashed line (when it is known)."""
    fig = training.loss_figure(_with_twin(run), revision=f"loss-{run.network}", height=height)
    if math.isfinite(run.mean_guess):
        _log_level_line(fig, run.mean_guess, f"mean guess {run.mean_guess:.3g}", left=True)
    return _legend_below(fig, f"{run.name}: loss", len(fig.data))


def grad_norm_figure(run: NetRun, *, height: int = 340) -> go.Figure:
    """The shared gradient-norm chart for one net, with its unclipped twin if it has one."""
    fig = training.grad_norm_figure(_with_twin(run), revision=f"grad-{run.network}", height=height)
    return _legend_below(fig, f"{run.name}: gradient norm", len(fig.data))


# ---- the digits chapter: clip-by-value over several seeds ----------------------------

CHANCE_ACCURACY = 0.1  # guessing one of ten digits


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _mode_name(clipped: bool, clip_value: float | None = None) -> str:
    if not clipped:
        return "no clipping"
    return f"clip by value ±{clip_value:g}" if clip_value is not None else "clip by value"


def _band_traces(
    epochs: np.ndarray,
    values: np.ndarray,
    *,
    clipped: bool,
    name: str,
    scale: float,
    unit: str,
    axes: tuple[str, str],
    show_legend: bool,
) -> list[dict]:
    """A median line over a min-max band of per-seed curves (seeds x epochs)."""
    colour = run_colour(clipped)
    values = np.asarray(values, dtype=float) * scale
    with np.errstate(all="ignore"):
        low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        median = np.nanmedian(values, axis=0)
    x, y = axes
    group = name
    band = {
        "type": "scatter",
        "x": np.concatenate([epochs, epochs[::-1]]),
        "y": np.concatenate([high, low[::-1]]),
        "fill": "toself",
        "fillcolor": _rgba(colour, 0.18),
        "line": {"width": 0},
        "hoverinfo": "skip",
        "legendgroup": group,
        "showlegend": False,
        "xaxis": x,
        "yaxis": y,
    }
    line = {
        "type": "scatter",
        "x": epochs,
        "y": median,
        "mode": "lines+markers",
        "name": name,
        "legendgroup": group,
        "showlegend": show_legend,
        "line": {"color": colour, "width": 2.4},
        "marker": {"size": 6, "symbol": run_symbol(clipped)},
        "customdata": np.column_stack([low, high]),
        "hovertemplate": f"{name}<br>epoch %{{x}}<br>median %{{y:.4g}}{unit}"
        f"<br>min %{{customdata[0]:.4g}}{unit}, max %{{customdata[1]:.4g}}{unit}<extra></extra>",
        "xaxis": x,
        "yaxis": y,
    }
    return [band, line]


def digits_curves_figure(
    epochs: np.ndarray,
    curves: Mapping[bool, Mapping[str, np.ndarray]],
    *,
    clip_value: float,
    lr: float,
    height: int = 400,
) -> go.Figure:
    """Test loss and test accuracy per epoch over seeds, clipped (blue) vs unclipped.

    ``curves[clipped]`` holds per-seed arrays (seeds, epochs) under ``test_loss``
    and ``test_accuracy`` (a share in [0, 1]). Each is drawn as its median over
    the seeds on a band from the lowest to the highest seed.
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=("Test loss", "Test accuracy"),
    )
    data = []
    for clipped in (False, True):
        name = _mode_name(clipped, clip_value)
        for key, scale, unit, axes, legend in (
            ("test_loss", 1.0, "", ("x", "y"), True),
            ("test_accuracy", 100.0, "%", ("x2", "y2"), False),
        ):
            data += _band_traces(
                epochs,
                curves[clipped][key],
                clipped=clipped,
                name=name,
                scale=scale,
                unit=unit,
                axes=axes,
                show_legend=legend,
            )
    fig.add_traces([go.Scatter(**trace) for trace in data])
    base_layout(
        fig,
        title=f"Learning rate {lr:g}: median over seeds, band from lowest to highest",
        height=height,
    )
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="cross-entropy (nats)", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="share of test digits right (%)", row=1, col=2, range=[0, 100])
    fig.add_hline(
        y=100 * CHANCE_ACCURACY,
        line={"color": NEUTRAL, "dash": "dot", "width": 1},
        annotation_text="guessing",
        annotation_position="bottom right",
        row=1,
        col=2,
    )
    fig.update_layout(margin={"t": 90}, legend={"y": 1.12})
    return fig


def digits_lr_figure(
    lrs: Sequence[float],
    final_accuracy: Mapping[bool, Sequence[np.ndarray]],
    *,
    clip_value: float,
    fail_accuracy: float,
    height: int = 380,
) -> go.Figure:
    """Final test accuracy of every seed against the learning rate (log x), both modes.

    ``final_accuracy[clipped][i]`` holds the per-seed shares at ``lrs[i]``. Dots
    are seeds (the two modes nudged apart so they do not hide each other), lines
    join the medians; dotted lines mark guessing and the failure line.
    """
    fig = go.Figure()
    for clipped, nudge in ((False, 0.93), (True, 1.07)):
        name = _mode_name(clipped, clip_value)
        colour = run_colour(clipped)
        xs, ys, seeds = [], [], []
        for lr, values in zip(lrs, final_accuracy[clipped], strict=True):
            values = 100 * np.asarray(values, dtype=float)
            xs += [lr * nudge] * len(values)
            ys += list(values)
            seeds += list(range(len(values)))
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                name=f"{name}: one seed",
                legendgroup=name,
                marker={"color": colour, "size": 8, "opacity": 0.6, "symbol": run_symbol(clipped)},
                customdata=np.column_stack([seeds, np.asarray(xs) / nudge]),
                hovertemplate=f"{name}<br>learning rate %{{customdata[1]:g}}, seed "
                "%{customdata[0]}<br>final test accuracy %{y:.1f}%<extra></extra>",
            )
        )
        medians = [100 * float(np.median(v)) for v in final_accuracy[clipped]]
        fig.add_trace(
            go.Scatter(
                x=[lr * nudge for lr in lrs],
                y=medians,
                mode="lines",
                name=f"{name}: median",
                legendgroup=name,
                line={"color": colour, "width": 2.4, "dash": "solid" if clipped else "dash"},
                customdata=list(lrs),
                hovertemplate=f"{name}<br>learning rate %{{customdata:g}}<br>median "
                "%{y:.1f}%<extra></extra>",
            )
        )
    for level, text in ((fail_accuracy, "failed below this line"), (CHANCE_ACCURACY, "guessing")):
        fig.add_hline(
            y=100 * level,
            line={
                "color": THRESHOLD if level == fail_accuracy else NEUTRAL,
                "dash": "dot",
                "width": 1,
            },
            annotation_text=text,
            annotation_position="bottom left",
        )
    base_layout(fig, title="Final test accuracy at each learning rate", height=height)
    fig.update_xaxes(
        type="log",
        title_text="learning rate (log scale)",
        tickvals=list(lrs),
        ticktext=[f"{lr:g}" for lr in lrs],
    )
    fig.update_yaxes(title_text="share of test digits right (%)", range=[0, 100])
    fig.update_layout(margin={"t": 80}, legend={"y": 1.08})
    return fig


def study_curves_figure(study: Study, *, height: int = 400) -> go.Figure:
    """``digits_curves_figure`` of a digits study at the presets' learning rate."""
    from clipviz.lessons.digits import preset_config

    lr = study.base_lr
    curves = {
        mode == "value": {
            "test_loss": study.at(lr, mode).test_loss,
            "test_accuracy": study.at(lr, mode).test_accuracy,
        }
        for mode in ("none", "value")
    }
    epochs = study.at(lr, "none").epochs
    clip_value = preset_config("value").clip_value
    return digits_curves_figure(epochs, curves, clip_value=clip_value, lr=lr, height=height)


def study_lr_figure(study: Study, *, height: int = 380) -> go.Figure:
    """``digits_lr_figure`` of a digits study: every learning rate it ran."""
    from clipviz.lessons.digits import FAIL_ACCURACY, preset_config

    finals = {
        mode == "value": [study.at(lr, mode).final("test_accuracy") for lr in study.lrs]
        for mode in ("none", "value")
    }
    return digits_lr_figure(
        study.lrs,
        finals,
        clip_value=preset_config("value").clip_value,
        fail_accuracy=FAIL_ACCURACY,
        height=height,
    )
