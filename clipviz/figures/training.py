"""Charts of training runs: loss, gradient norms, per-layer norms, weights.

Each builder takes ``RunTrace``\\ s (a run's records plus how to draw it) and
returns a Plotly figure. Clipped runs are always blue and unclipped runs
vermillion (``style.run_colour``). Long runs are thinned to at most
``MAX_POINTS`` points per line, keeping each bucket's highest and lowest value
so spikes survive. ``uirevision`` keeps zoom and legend state across live
redraws.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from clipviz.figures.style import NEUTRAL, THRESHOLD, base_layout, run_colour

MAX_POINTS = 2000
HEATMAP_COLUMNS = 600


@dataclass(frozen=True)
class RunTrace:
    """One run, ready to draw."""

    label: str
    clipped: bool
    records: dict[str, np.ndarray]  # Trainer.records(): per-step arrays
    epochs: dict[str, np.ndarray] = field(default_factory=dict)  # Trainer.epoch_records()
    layer_names: tuple[str, ...] = ()
    clip_norm: float | None = None  # draw the threshold line when norm-clipping
    exploded_at: int | None = None
    loss_name: str = "MSE"

    @classmethod
    def from_trainer(cls, trainer, label: str | None = None, *, original_units: bool = False) -> RunTrace:
        cfg = trainer.config
        return cls(
            label=label or cfg.label(),
            clipped=cfg.clipped,
            records=trainer.records(),
            epochs=trainer.epoch_records(original_units=original_units),
            layer_names=trainer.layout.layer_names,
            clip_norm=cfg.clip_norm if cfg.uses_clip_norm else None,
            exploded_at=trainer.exploded_at,
            loss_name="cross-entropy" if trainer.data.kind == "classification" else "MSE",
        )


def finite_or_nan(values: np.ndarray) -> np.ndarray:
    """Plotly draws NaN as a gap; infinities would break its JSON."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


def thin(n: int, values: np.ndarray | None = None, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` of ``n`` points, keeping each bucket's extremes."""
    if n <= max_points:
        return np.arange(n)
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(int)
    if values is None:
        return np.unique(np.concatenate([edges[:-1], [n - 1]]))
    v = np.nan_to_num(np.asarray(values, dtype=float), nan=-np.inf, posinf=np.finfo(float).max)
    keep = [n - 1]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        chunk = v[lo:hi]
        keep += [lo + int(np.argmax(chunk)), lo + int(np.argmin(np.where(np.isinf(chunk), np.inf, chunk)))]
    return np.unique(keep)


def _line(trace: RunTrace, key: str, name: str, *, dash: str = "solid", width: float = 1.5, opacity=1.0):
    y = trace.records[key]
    idx = thin(len(y), y)
    return go.Scatter(
        x=trace.records["step"][idx],
        y=finite_or_nan(y[idx]),
        mode="lines",
        name=name,
        line={"color": run_colour(trace.clipped), "dash": dash, "width": width},
        opacity=opacity,
        hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>",
    )


def _mark_explosion(fig: go.Figure, trace: RunTrace, **where) -> None:
    if trace.exploded_at is None:
        return
    fig.add_vline(
        x=trace.exploded_at,
        line={"color": run_colour(trace.clipped), "dash": "dot", "width": 1.5},
        annotation={"text": f"exploded at step {trace.exploded_at}", "font": {"size": 12}},
        annotation_position="top left",
        **where,
    )


def _finish(fig: go.Figure, *, title: str, revision: str, height: int) -> go.Figure:
    base_layout(fig, title=title, height=height)
    fig.update_layout(uirevision=revision)
    return fig


def loss_figure(traces: list[RunTrace], *, revision: str = "loss", height: int = 340) -> go.Figure:
    """Training loss per step (thin line) and whole-set loss per epoch (markers), log y."""
    fig = go.Figure()
    multiple = len(traces) > 1
    for trace in traces:
        prefix = f"{trace.label}: " if multiple else ""
        fig.add_trace(_line(trace, "loss", f"{prefix}batch loss", width=1.0, opacity=0.55))
        if trace.epochs and len(trace.epochs.get("epoch", [])):
            bpe = _batches_per_epoch(trace)
            x = trace.epochs["epoch"] * bpe
            for key, name, dash, symbol in (
                ("train_loss", "train loss (epoch)", "solid", "circle"),
                ("test_loss", "test loss (epoch)", "dash", "diamond"),
            ):
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=finite_or_nan(trace.epochs[key]),
                        mode="lines+markers" if len(x) < 60 else "lines",
                        name=f"{prefix}{name}",
                        line={"color": run_colour(trace.clipped), "dash": dash, "width": 2.2},
                        marker={"symbol": symbol, "size": 6},
                        customdata=trace.epochs["epoch"],
                        hovertemplate=f"{prefix}{name}<br>epoch %{{customdata}}<br>%{{y:.4g}}<extra></extra>",
                    )
                )
        _mark_explosion(fig, trace)
    loss_name = traces[0].loss_name if traces else "MSE"
    fig.update_yaxes(type="log", title=f"loss ({loss_name}, log scale)", exponentformat="power")
    fig.update_xaxes(title="optimizer step")
    return _finish(fig, title="Loss", revision=revision, height=height)


def _batches_per_epoch(trace: RunTrace) -> float:
    epoch = trace.records.get("epoch")
    step = trace.records.get("step")
    if epoch is None or len(epoch) < 2 or epoch[1] == 0:
        return 1.0
    return float((step[1] - step[0]) / (epoch[1] - epoch[0]))


def grad_norm_figure(traces: list[RunTrace], *, revision: str = "grad", height: int = 340) -> go.Figure:
    """Global gradient norm per step before and after clipping, threshold line, clipped steps marked."""
    fig = go.Figure()
    multiple = len(traces) > 1
    for trace in traces:
        prefix = f"{trace.label}: " if multiple else ""
        fig.add_trace(_line(trace, "grad_norm", f"{prefix}norm before clipping", width=1.4))
        if trace.clipped and "grad_norm_after" in trace.records:
            fig.add_trace(_line(trace, "grad_norm_after", f"{prefix}norm after clipping", dash="dot", width=2.0))
            clipped = trace.records.get("clipped")
            if clipped is not None:
                where = np.nonzero(clipped > 0)[0]
                where = where[thin(len(where), max_points=400)] if len(where) else where
                fig.add_trace(
                    go.Scatter(
                        x=trace.records["step"][where],
                        y=finite_or_nan(trace.records["grad_norm"][where]),
                        mode="markers",
                        name=f"{prefix}clipped steps",
                        marker={"color": run_colour(trace.clipped), "size": 5, "symbol": "x-thin-open"},
                        hovertemplate="clipped at step %{x}<br>norm before %{y:.4g}<extra></extra>",
                    )
                )
        if trace.clip_norm is not None:
            fig.add_hline(
                y=trace.clip_norm,
                line={"color": THRESHOLD, "dash": "dash", "width": 1.5},
                annotation={"text": f"threshold c = {trace.clip_norm:g}", "font": {"size": 12}},
                annotation_position="bottom right",
            )
        _mark_explosion(fig, trace)
    fig.update_yaxes(type="log", title="gradient L2 norm (log scale)", exponentformat="power")
    fig.update_xaxes(title="optimizer step")
    return _finish(fig, title="Gradient norm", revision=revision, height=height)


def layer_norm_figure(trace: RunTrace, *, revision: str = "layers", height: int = 300) -> go.Figure:
    """Heatmap of log10 gradient norm, layer x step: where the gradient is largest."""
    norms = trace.records.get("layer_grad_norm")
    fig = go.Figure()
    if norms is not None and len(norms):
        n = norms.shape[0]
        idx = np.unique(np.linspace(0, n - 1, min(n, HEATMAP_COLUMNS)).astype(int))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(finite_or_nan(norms[idx]).T)
        z = np.where(np.isfinite(z), z, np.nan)
        fig.add_trace(
            go.Heatmap(
                x=trace.records["step"][idx],
                y=list(trace.layer_names),
                z=z,
                colorscale="Viridis",
                colorbar={"title": {"text": "log₁₀ ‖g‖"}, "thickness": 14},
                customdata=finite_or_nan(norms[idx]).T,
                hovertemplate="layer %{y}<br>step %{x}<br>gradient norm %{customdata:.4g}<extra></extra>",
            )
        )
    fig.update_xaxes(title="optimizer step")
    fig.update_yaxes(title="layer", autorange="reversed")
    return _finish(fig, title=f"Gradient norm per layer ({trace.label})", revision=revision, height=height)


def weights_figure(traces: list[RunTrace], *, revision: str = "weights", height: int = 320) -> go.Figure:
    """Weight norm and update-to-weight ratio per step, side by side, log y."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Weight norm ‖w‖", "Update size ‖Δw‖ / ‖w‖"),
        horizontal_spacing=0.12,
    )
    multiple = len(traces) > 1
    for trace in traces:
        prefix = f"{trace.label}: " if multiple else ""
        fig.add_trace(_line(trace, "weight_norm", f"{prefix}weight norm"), row=1, col=1)
        fig.add_trace(_line(trace, "update_ratio", f"{prefix}update / weight"), row=1, col=2)
    fig.add_hline(
        y=1e-3,
        line={"color": NEUTRAL, "dash": "dot", "width": 1},
        annotation={"text": "10⁻³, a common healthy size", "font": {"size": 11}},
        annotation_position="bottom right",
        row=1,
        col=2,
    )
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_yaxes(title="L2 norm (log scale)", row=1, col=1)
    fig.update_yaxes(title="ratio (log scale)", row=1, col=2)
    fig.update_xaxes(title="optimizer step")
    fig = _finish(fig, title=None, revision=revision, height=height)
    fig.update_layout(margin={"t": 60})
    return fig
