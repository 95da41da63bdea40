"""Charts of training runs: loss, gradient norms, per-layer norms, weights.

Each builder takes ``RunTrace``\\ s (a run's records plus how to draw it) and
returns a Plotly figure. Clipped runs are always blue and unclipped runs
vermillion (``style.run_colour``); a comparison run drawn in the same colour
as the primary run is drawn fainter. Long runs are thinned to at most
``MAX_POINTS`` points per line, keeping each bucket's highest and lowest
value so spikes survive. ``uirevision`` keeps zoom and legend state across
redraws.

There is one builder per chart (``loss_figure``, ``grad_norm_figure``,
``layer_norm_figure``, ``weights_figure``) and ``lab_figure``, which draws
the same panels in one figure on a shared step axis: the Training Lab
redraws it several times a second, and in the browser one figure costs far
less to redraw than four. All are assembled from the same panel functions,
as plain dicts wrapped without Plotly's validation (which costs more than
the drawing); the dicts use only attributes Plotly documents, and their axis
margins are fixed because plotly.js's ``automargin`` redraws a figure until
its labels fit, doubling the cost of every redraw.

A ``RunTrace`` with a ``stride`` is *streamed* (the Training Lab's live chart,
``clipviz.app.stream``): the figure of a run's first steps and the figures of
the steps after them, built one slice at a time, add up to the figure of the
whole run. So every trace exists from step 0 (empty until there is data) and
carries a ``uid``; no thinning depends on how many steps there are so far.
Runs up to ``STREAM_STEPS`` steps keep every point (stride 1); a longer run
keeps the highest and lowest value of each block of ``stride`` steps, blocks
counted from step 1, so a slice that starts on a block boundary thins the way
the whole run would. Clipped-step markers keep the first clipped step of each
block of ``marker_block`` steps (about ``MAX_MARKERS`` a run); a slice carries
the steps since its first marker block began as context (``drawn_from``), so
it marks what the whole run would. The per-layer heatmap keeps each block's
largest norm per layer.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from clipviz.engine.result import RunResult
from clipviz.figures.style import HEAT, NEUTRAL, THRESHOLD, layout_spec, run_colour, run_symbol

MAX_POINTS = 2000
HEATMAP_COLUMNS = 600
MAX_MARKERS = 150
STREAM_STEPS = 10_000  # a streamed run keeps every step up to this length (see stream_stride)
FAINT = 0.5  # opacity factor of a secondary run drawn in the primary's colour


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
    clip_value: float | None = None  # draw max |g_i| and its threshold when value-clipping
    batches_per_epoch: int | None = None  # where the epoch losses sit on the step axis
    secondary: bool = False  # a comparison run: drawn fainter when colours coincide
    adaptive: bool = False  # its threshold changes from step to step (AutoClip, ZClip)
    classifies: bool = False  # its epochs carry an accuracy (the digits)
    skips: bool = False  # skip_nonfinite: steps whose loss or gradient was not finite are skipped
    stride: int | None = None  # None: thinned to MAX_POINTS; an int: streamed (module docstring)
    planned_steps: int | None = None  # the run's length when it ends normally
    drawn_from: int = 0  # a streamed slice: records up to this step are context, not drawn

    @classmethod
    def from_result(
        cls,
        result: RunResult,
        label: str | None = None,
        *,
        original_units: bool = False,
        secondary: bool = False,
        start: int = 0,
        stride: int | None = None,
    ) -> RunTrace:
        """A run's result, ready to draw. ``original_units`` shows a regression's MSE
        (per step and per epoch) in the target's own units instead of the trained ones.

        ``start``: only the records from step ``start + 1`` on. ``stride`` streams
        the trace (module docstring): a slice after ``start`` also holds the steps
        since the start of its marker block, as context (``drawn_from``), and only
        the epochs that end after ``start``.
        """
        cfg = result.config
        records, epochs = result.records, result.epochs
        if start > 0:
            context = start
            if stride is not None:
                context = start - start % marker_block(result.total_steps, stride)
            keep = records["step"] > context
            records = {key: values[keep] for key, values in records.items()}
            ended_after = np.asarray(epochs["epoch"]) * result.batches_per_epoch > start
            epochs = {key: np.asarray(values)[ended_after] for key, values in epochs.items()}
        if original_units and result.kind == "regression":
            records = {**records, "loss": result.to_original_mse(records["loss"])}
            epochs = {
                **epochs,
                "train_loss": result.to_original_mse(epochs["train_loss"]),
                "test_loss": result.to_original_mse(epochs["test_loss"]),
            }
        return cls(
            label=label or cfg.label(),
            clipped=cfg.clipped,
            records=records,
            epochs=epochs,
            layer_names=result.layer_names,
            clip_norm=cfg.clip_norm if cfg.uses_clip_norm else None,
            exploded_at=result.exploded_at,
            loss_name="cross-entropy" if result.kind == "classification" else "MSE",
            clip_value=cfg.clip_value if cfg.uses_clip_value else None,
            batches_per_epoch=result.batches_per_epoch,
            secondary=secondary,
            adaptive=cfg.clip_mode in ("autoclip", "zclip"),
            classifies=result.kind == "classification",
            skips=bool(cfg.skip_nonfinite),
            stride=stride,
            planned_steps=result.total_steps,
            drawn_from=start if stride is not None else 0,
        )

    @property
    def steps(self) -> int:
        return len(self.records.get("step", ()))

    @property
    def streamed(self) -> bool:
        return self.stride is not None


def marker_block(planned_steps: int, stride: int) -> int:
    """Steps per block of the clipped-step markers of a streamed run: about MAX_MARKERS a run."""
    per = max(1, math.ceil(planned_steps / MAX_MARKERS))
    return max(stride, math.ceil(per / stride) * stride)  # a whole number of point blocks


def streamed_slice(trace: RunTrace, start: int) -> RunTrace:
    """What ``RunTrace.from_result(..., start=start)`` gives, cut from a whole streamed trace."""
    context = start - start % marker_block(trace.planned_steps or trace.steps, trace.stride or 1)
    steps = trace.records["step"]
    keep = steps > context
    epochs = trace.epochs
    if epochs and trace.batches_per_epoch:
        ended_after = np.asarray(epochs["epoch"]) * trace.batches_per_epoch > start
        epochs = {key: np.asarray(values)[ended_after] for key, values in epochs.items()}
    return dataclasses.replace(
        trace,
        records={key: values[keep] for key, values in trace.records.items()},
        epochs=epochs,
        drawn_from=start,
    )


def stream_stride(total_steps: int, kept: int = STREAM_STEPS) -> int:
    """Steps per block of a streamed run of ``total_steps``: 1 (every step) up to ``kept``."""
    return max(1, math.ceil(total_steps / kept))


def finite_or_nan(values: np.ndarray) -> np.ndarray:
    """Plotly draws NaN as a gap; infinities would break its JSON."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


def thin(n: int, values: np.ndarray | None = None, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` of ``n`` points, keeping each bucket's extremes.

    The points are cut into ``max_points / 2`` equal buckets; from each the
    highest and the lowest finite value are kept (so a spike is never thinned
    away), plus the last point. Without ``values``, each bucket's first point.
    """
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(int)
    starts, stops = edges[:-1], edges[1:]
    if values is None:
        return np.unique(np.concatenate([starts, [n - 1]]))
    v = np.asarray(values, dtype=float)
    width = int((stops - starts).max())
    cols = starts[:, None] + np.arange(width)[None, :]
    inside = cols < stops[:, None]
    block = v[np.minimum(cols, n - 1)]
    finite = np.isfinite(block) & inside
    # A bucket with no finite value keeps its first point (a gap in the line).
    highest = np.argmax(np.where(finite, block, -np.inf), axis=1)
    lowest = np.argmin(np.where(finite, block, np.inf), axis=1)
    keep = np.concatenate([starts + highest, starts + lowest, [n - 1]])
    return np.unique(keep)


def block_extremes(steps: np.ndarray, values: np.ndarray, stride: int) -> np.ndarray:
    """Indices of the highest and lowest finite value in each block of ``stride`` steps.

    Blocks are counted from step 1 (steps 1..stride, stride+1..2*stride, ...),
    whatever the first step in ``steps``, so thinning a run slice by slice
    gives the same points as thinning it whole, as long as each slice starts
    on a block boundary. A block with no finite value keeps its first point
    (a gap in the line). Every index with ``stride`` 1.
    """
    n = len(steps)
    if stride <= 1 or n == 0:
        return np.arange(n)
    offset = int(steps[0] - 1) % stride
    padded = np.full(offset + n + (-(offset + n)) % stride, np.nan)
    padded[offset : offset + n] = np.asarray(values, dtype=float)
    block = padded.reshape(-1, stride)
    finite = np.isfinite(block)
    highest = np.argmax(np.where(finite, block, -np.inf), axis=1)
    lowest = np.argmin(np.where(finite, block, np.inf), axis=1)
    first = np.maximum(0, offset - np.arange(len(block)) * stride)  # first real point per row
    none = ~finite.any(axis=1)
    highest[none] = lowest[none] = first[none]
    rows = np.arange(len(block)) * stride - offset
    keep = np.concatenate([rows + highest, rows + lowest])
    return np.unique(keep[(keep >= 0) & (keep < n)])


def _drawn(trace: RunTrace, idx: np.ndarray) -> np.ndarray:
    """``idx`` without the points of a streamed slice's context (steps up to ``drawn_from``)."""
    if not trace.drawn_from or not len(idx):
        return idx
    return idx[trace.records["step"][idx] > trace.drawn_from]


def _point_indices(trace: RunTrace, y: np.ndarray) -> np.ndarray:
    if trace.streamed:
        return _drawn(trace, block_extremes(trace.records["step"], y, trace.stride))
    return thin(len(y), y)


def _marker_indices(trace: RunTrace, where: np.ndarray) -> np.ndarray:
    """Which clipped steps get a marker: at most about ``MAX_MARKERS`` per run."""
    if not trace.streamed:
        return where[thin(len(where), max_points=MAX_MARKERS)]
    # Streamed: the first clipped step of each marker block; a slice holds its
    # first block from the block's start (context), so it marks what the whole run would.
    block = marker_block(trace.planned_steps or trace.steps, trace.stride)
    blocks = (trace.records["step"][where] - 1) // block
    return _drawn(trace, where[np.unique(blocks, return_index=True)[1]])


def _heatmap_columns(trace: RunTrace, norms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(steps, norms per column) of the per-layer heatmap: thinned, or per block when streamed."""
    steps = trace.records["step"]
    if not trace.streamed:
        n = norms.shape[0]
        idx = np.unique(np.linspace(0, n - 1, min(n, HEATMAP_COLUMNS)).astype(int))
        return steps[idx], finite_or_nan(norms[idx])
    stride = trace.stride
    if trace.drawn_from:
        new = steps > trace.drawn_from  # the context's blocks were sent already
        steps, norms = steps[new], norms[new]
    if stride <= 1 or not len(steps):
        return steps, finite_or_nan(norms)
    blocks = (steps - 1) // stride
    starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]])
    values = finite_or_nan(norms)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN block stays NaN
        largest = np.stack([np.nanmax(part, axis=0) for part in np.split(values, starts[1:])])
    return steps[starts], largest


# ---- plain-dict building blocks ------------------------------------------


@dataclass(frozen=True)
class _Axes:
    """Where a panel draws: its axis ids ('x', 'y2', ...)."""

    x: str = "x"
    y: str = "y"

    @property
    def xd(self) -> str:
        return f"{self.x} domain"

    @property
    def yd(self) -> str:
        return f"{self.y} domain"


SINGLE = _Axes()


@dataclass
class _Panel:
    """Traces, shapes and annotations of one panel."""

    data: list[dict] = field(default_factory=list)
    shapes: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)

    def add(self, other: _Panel) -> _Panel:
        self.data += other.data
        self.shapes += other.shapes
        self.notes += other.notes
        return self


def _figure(data: list[dict], layout: dict) -> go.Figure:
    return go.Figure(data=data, layout=layout, _validate=False)


def _opacity(trace: RunTrace, shared_colour: bool, base: float = 1.0) -> float:
    return base * FAINT if trace.secondary and shared_colour else base


def _shared_colour(traces: list[RunTrace]) -> bool:
    return len({t.clipped for t in traces}) < len(traces)


def trace_uid(run: int, series: str) -> str:
    """A trace's stable identity (run number and series) for the live chart's updates.

    plotly.js builds CSS class names from uids, so a uid is letters, digits and
    dashes only; the checksum keeps two names apart that differ only in symbols.
    """
    slug = re.sub(r"[^A-Za-z0-9]+", "-", series).strip("-")
    return f"run{run}-{slug}-{zlib.crc32(series.encode()) & 0xFFFF:04x}"


class _Names:
    """Legend names: prefixed by the run in separate charts, or one entry per style.

    In ``lab_figure`` the runs are told apart by colour (explained on the
    page), so each style appears once in the legend and one click on it
    hides that series for every run.
    """

    def __init__(self, traces: list[RunTrace], *, per_style: bool):
        self.per_style = per_style
        self.multiple = len(traces) > 1
        self.index = {id(trace): i for i, trace in enumerate(traces)}

    def __call__(self, trace: RunTrace, name: str) -> dict:
        uid = {"uid": trace_uid(self.index.get(id(trace), 0), name)}
        if self.per_style:
            return {
                "name": name,
                "legendgroup": name,
                "showlegend": trace is not None and not trace.secondary,
                "hovername": f"{trace.label}: {name}" if self.multiple else name,
                **uid,
            }
        full = f"{trace.label}: {name}" if self.multiple else name
        return {"name": full, "hovername": full, **uid}


def _series(
    trace: RunTrace,
    key: str,
    names: dict,
    ax: _Axes,
    *,
    dash: str = "solid",
    width: float = 1.5,
    opacity: float = 1.0,
    colour: str | None = None,
) -> dict:
    y = trace.records[key]
    idx = _point_indices(trace, y)
    hover = names.pop("hovername")
    # The twin's lines also carry a few markers (its clip state's shape), so the two
    # runs of a chart differ by more than colour.
    marks = (
        {"mode": "lines+markers", "marker": {"symbol": run_symbol(trace.clipped), "size": 6,
                                             "maxdisplayed": 30}}
        if trace.secondary
        else {"mode": "lines"}
    )  # fmt: skip
    return {
        "type": "scatter",
        "x": trace.records["step"][idx],
        "y": finite_or_nan(y[idx]),
        **marks,
        **names,
        "line": {"color": colour or run_colour(trace.clipped), "dash": dash, "width": width},
        "opacity": opacity,
        "xaxis": ax.x,
        "yaxis": ax.y,
        "hovertemplate": f"{hover}<br>step %{{x}}<br>%{{y:.6g}}<extra></extra>",
    }


def _skip_marks(trace: RunTrace, ax: _Axes, names: _Names, opacity: float) -> dict:
    """Triangles along the top of the gradient-norm data at each skipped step (its own
    norm was not finite, so it has no point of its own on a log axis)."""
    records = trace.records
    where = np.nonzero(np.nan_to_num(records["skipped"]) > 0)[0]
    norms = records["grad_norm"]
    if trace.streamed:
        # Streamed, a mark cannot wait for the run's top: it sits at the largest finite
        # norm of its marker block up to it, which a slice holds as context (module
        # docstring), so slices mark what the whole run would.
        where = _marker_indices(trace, where)
        y = np.array([_block_top(trace, i) for i in where], dtype=float)
    else:
        where = where[thin(len(where), max_points=MAX_MARKERS)]
        finite = norms[np.isfinite(norms)]
        y = np.full(len(where), float(finite.max()) if finite.size else 1.0)
    entry = names(trace, "skipped steps (not finite)")
    entry.pop("hovername")
    return {
        "type": "scatter",
        "x": records["step"][where],
        "y": y,
        "mode": "markers",
        **entry,
        "marker": {"color": NEUTRAL, "size": 8, "symbol": "triangle-down"},
        "opacity": opacity,
        "xaxis": ax.x,
        "yaxis": ax.y,
        "hovertemplate": "step %{x} skipped: its loss or gradient was not finite<extra></extra>",
    }


def _block_top(trace: RunTrace, index: int) -> float:
    """The largest finite gradient norm of a streamed skip mark's marker block up to it
    (else the rule's threshold at the step, else 1)."""
    steps, norms = trace.records["step"], trace.records["grad_norm"]
    block = marker_block(trace.planned_steps or trace.steps, trace.stride or 1)
    first = (int(steps[index]) - 1) // block * block + 1
    part = norms[(steps >= first) & (steps <= steps[index])]
    part = part[np.isfinite(part)]
    if part.size:
        return float(part.max())
    threshold = trace.records.get("clip_threshold")
    if threshold is not None and np.isfinite(threshold[index]):
        return float(threshold[index])
    return 1.0


def _explosion_marks(trace: RunTrace, ax: _Axes, *, label: bool = True) -> _Panel:
    """A dotted vertical line (and a label) at the step where ``trace`` exploded."""
    panel = _Panel()
    if trace.exploded_at is None:
        return panel
    colour = run_colour(trace.clipped)
    panel.shapes.append(
        {
            "type": "line",
            "xref": ax.x,
            "yref": ax.yd,
            "x0": trace.exploded_at,
            "x1": trace.exploded_at,
            "y0": 0,
            "y1": 1,
            "line": {"color": colour, "dash": "dot", "width": 1.5},
        }
    )
    if label:
        panel.notes.append(
            {
                "text": f"exploded at step {trace.exploded_at}",
                "xref": ax.x,
                "yref": ax.yd,
                "x": trace.exploded_at,
                "y": 1,
                "xanchor": "left",
                "yanchor": "top",
                "showarrow": False,
                "font": {"size": 12, "color": colour},
            }
        )
    return panel


def _hline(y: float, text: str, ax: _Axes, *, dash: str = "dash", colour=THRESHOLD, size=12):
    """A horizontal reference line at ``y`` on a log axis, labelled at its right end."""
    panel = _Panel()
    panel.shapes.append(
        {
            "type": "line",
            "xref": ax.xd,
            "yref": ax.y,
            "x0": 0,
            "x1": 1,
            "y0": y,
            "y1": y,
            "line": {"color": colour, "dash": dash, "width": 1.5 if colour == THRESHOLD else 1},
        }
    )
    panel.notes.append(
        {
            "text": text,
            "xref": ax.xd,
            "yref": ax.y,
            "x": 1,
            "y": math.log10(y),  # plotly.js places annotations on a log axis by log10
            "xanchor": "right",
            "yanchor": "bottom",
            "showarrow": False,
            "font": {"size": size, "color": colour},
        }
    )
    return panel


def _no_steps(traces: list[RunTrace]) -> bool:
    """No run has taken a step yet. A streamed slice after step ``drawn_from`` > 0
    belongs to a run that has (its slice is empty when that run stopped early, such
    as the Lab's run that exploded while its twin goes on)."""
    return not any(t.steps or t.drawn_from for t in traces)


def _empty_note(traces: list[RunTrace], ax: _Axes) -> _Panel:
    panel = _Panel()
    if _no_steps(traces):
        panel.notes.append(
            {
                "text": "No steps yet: press Play or Step",
                "xref": ax.xd,
                "yref": ax.yd,
                "x": 0.5,
                "y": 0.5,
                "showarrow": False,
                "font": {"size": 14, "color": NEUTRAL},
            }
        )
    return panel


def _title(text: str, ax: _Axes) -> dict:
    """A panel title above its top-left corner (for figures holding several panels)."""
    return {
        "text": f"<b>{text}</b>",
        "xref": ax.xd,
        "yref": ax.yd,
        "x": 0,
        "y": 1,
        "xanchor": "left",
        "yanchor": "bottom",
        "yshift": 6,
        "showarrow": False,
        "font": {"size": 15},
    }


def _log_axis(title: str, **extra) -> dict:
    return {
        "type": "log",
        "title": {"text": title, "standoff": 8},
        "exponentformat": "power",
        "automargin": False,
        **extra,
    }


def _step_axis(**extra) -> dict:
    return {
        "title": {"text": "optimizer step", "standoff": 6},
        "rangemode": "tozero",
        "automargin": False,
        **extra,
    }


def _layout(*, title: str | None, revision: str, height: int, panel: _Panel, **axes) -> dict:
    layout = layout_spec(title=title, height=height, template=False)
    layout.update(uirevision=revision, shapes=panel.shapes, annotations=panel.notes, **axes)
    layout["margin"] = {**layout["margin"], "l": 78}
    return layout


def _batches_per_epoch(trace: RunTrace) -> float:
    if trace.batches_per_epoch:
        return float(trace.batches_per_epoch)
    epoch = trace.records.get("epoch")
    step = trace.records.get("step")
    if epoch is None or len(epoch) < 2 or epoch[1] == 0:
        return 1.0
    return float((step[1] - step[0]) / (epoch[1] - epoch[0]))


# ---- panels --------------------------------------------------------------------


def _loss_panel(traces: list[RunTrace], ax: _Axes, names: _Names) -> _Panel:
    panel = _Panel()
    shared = _shared_colour(traces)
    for trace in traces:
        if trace.steps or trace.streamed:
            panel.data.append(
                _series(
                    trace,
                    "loss",
                    names(trace, "batch loss"),
                    ax,
                    width=1.0,
                    opacity=_opacity(trace, shared, 0.55),
                )
            )
        if trace.streamed or (trace.epochs and len(trace.epochs.get("epoch", []))):
            epoch = np.asarray(trace.epochs.get("epoch", ()), dtype=float)
            x = epoch * _batches_per_epoch(trace)
            few = _few_epochs(trace, x)
            for key, name, dash, symbol in (
                ("train_loss", "train loss (epoch)", "solid", "circle"),
                ("test_loss", "test loss (epoch)", "dash", "diamond"),
            ):
                entry = names(trace, name)
                hover = entry.pop("hovername")
                panel.data.append(
                    {
                        "type": "scatter",
                        "x": x,
                        "y": finite_or_nan(trace.epochs.get(key, ())),
                        "mode": "lines+markers" if few else "lines",
                        **entry,
                        "line": {"color": run_colour(trace.clipped), "dash": dash, "width": 2.2},
                        "marker": {"symbol": symbol, "size": 6},
                        "opacity": _opacity(trace, shared),
                        "customdata": epoch,
                        "xaxis": ax.x,
                        "yaxis": ax.y,
                        "hovertemplate": f"{hover}<br>epoch %{{customdata}} (step %{{x}})"
                        "<br>%{y:.6g}<extra></extra>",
                    }
                )
        panel.add(_explosion_marks(trace, ax))
    return panel.add(_empty_note(traces, ax))


def _few_epochs(trace: RunTrace, x: np.ndarray) -> bool:
    """Whether the epoch lines carry markers (under 60 epochs). Streamed, the run's
    planned length decides, so the style does not change as the epochs arrive."""
    if trace.streamed:
        return (trace.planned_steps or 0) < 60 * _batches_per_epoch(trace)
    return len(x) < 60


def has_accuracy(traces: list[RunTrace]) -> bool:
    """True when a run classifies (the digits): its epochs carry an accuracy."""
    return any(
        (t.streamed and t.classifies) or len(t.epochs.get("test_accuracy", ())) for t in traces
    )


def _accuracy_panel(traces: list[RunTrace], ax: _Axes, names: _Names) -> _Panel:
    """Train and test accuracy per epoch (%), for runs that classify.

    Drawn over the loss panel on its own right-hand axis (``ax.y``), in the
    runs' colours, thinner than the losses and with open markers, so a rising
    accuracy line is told apart from a falling loss line.
    """
    panel = _Panel()
    shared = _shared_colour(traces)
    for trace in traces:
        epochs = trace.epochs
        if not (trace.streamed and trace.classifies) and not len(epochs.get("test_accuracy", ())):
            continue
        epoch = np.asarray(epochs.get("epoch", ()), dtype=float)
        x = epoch * _batches_per_epoch(trace)
        few = _few_epochs(trace, x)
        for key, name, dash, symbol in (
            ("train_accuracy", "train accuracy (epoch, %)", "dot", "square-open"),
            ("test_accuracy", "test accuracy (epoch, %)", "dashdot", "triangle-up-open"),
        ):
            entry = names(trace, name)
            hover = entry.pop("hovername")
            panel.data.append(
                {
                    "type": "scatter",
                    "x": x,
                    "y": 100 * finite_or_nan(np.asarray(epochs.get(key, ()), dtype=float)),
                    "mode": "lines+markers" if few else "lines",
                    **entry,
                    "line": {"color": run_colour(trace.clipped), "dash": dash, "width": 1.6},
                    "marker": {"symbol": symbol, "size": 7},
                    "opacity": _opacity(trace, shared),
                    "customdata": epoch,
                    "xaxis": ax.x,
                    "yaxis": ax.y,
                    "hovertemplate": f"{hover}<br>epoch %{{customdata}} (step %{{x}})"
                    "<br>%{y:.2f}%<extra></extra>",
                }
            )
    return panel


def _accuracy_axis(overlaying: str, anchor: str) -> dict:
    """The right-hand accuracy axis over a loss panel: 0 to 100%."""
    return {
        "title": {"text": "accuracy (%)", "standoff": 4},
        "overlaying": overlaying,
        "anchor": anchor,
        "side": "right",
        "range": [0, 100],
        "ticksuffix": "%",
        "showgrid": False,
        "automargin": False,
    }


def _grad_panel(traces: list[RunTrace], ax: _Axes, names: _Names, *, label=True) -> _Panel:
    panel = _Panel()
    shared = _shared_colour(traces)
    drawn: set[tuple[str, float]] = set()
    for trace in traces:
        opacity = _opacity(trace, shared)
        records = trace.records
        if trace.steps or trace.streamed:
            panel.data.append(
                _series(
                    trace, "grad_norm", names(trace, "‖g‖ before clipping"), ax, opacity=opacity
                )
            )
            if trace.clipped and "grad_norm_after" in records:
                panel.data.append(
                    _series(
                        trace,
                        "grad_norm_after",
                        names(trace, "‖g‖ after clipping"),
                        ax,
                        dash="dot",
                        width=2.0,
                        opacity=opacity,
                    )
                )
            if trace.clip_value is not None and "max_abs_grad" in records:
                panel.data.append(
                    _series(
                        trace,
                        "max_abs_grad",
                        names(trace, "largest |gᵢ| before clipping"),
                        ax,
                        dash="dashdot",
                        width=1.2,
                        opacity=opacity,
                    )
                )
            if trace.adaptive and "clip_threshold" in records:
                # An adaptive rule's threshold moves: draw the one it used at each step.
                panel.data.append(
                    _series(
                        trace,
                        "clip_threshold",
                        names(trace, "threshold the rule used"),
                        ax,
                        dash="dash",
                        width=1.4,
                        colour=THRESHOLD,
                        opacity=opacity,
                    )
                )
            skipped = records.get("skipped")
            # Streamed, every trace exists from the start (the browser appends to it).
            if skipped is not None and (
                (trace.streamed and trace.skips) or np.nan_to_num(skipped).any()
            ):
                panel.data.append(_skip_marks(trace, ax, names, opacity))
            clipped = records.get("clipped")
            if trace.clipped and clipped is not None:
                where = np.nonzero(np.nan_to_num(clipped) > 0)[0]
                if len(where) or trace.streamed:
                    where = _marker_indices(trace, where)
                    entry = names(trace, "clipped steps")
                    entry.pop("hovername")
                    colour = run_colour(trace.clipped)
                    panel.data.append(
                        {
                            "type": "scatter",
                            "x": records["step"][where],
                            "y": finite_or_nan(records["grad_norm"][where]),
                            "mode": "markers",
                            **entry,
                            "marker": {
                                "color": colour,
                                "size": 6,
                                "symbol": "x-thin-open",
                                "line": {"width": 1.5, "color": colour},
                            },
                            "opacity": opacity,
                            "xaxis": ax.x,
                            "yaxis": ax.y,
                            "hovertemplate": "clipped at step %{x}<br>‖g‖ before %{y:.6g}"
                            "<extra></extra>",
                        }
                    )
        for kind, value, text in (
            ("norm", trace.clip_norm, "norm threshold c = {:g}"),
            ("value", trace.clip_value, "value threshold c = {:g} (per component)"),
        ):
            if value is not None and (kind, value) not in drawn:
                drawn.add((kind, value))
                panel.add(
                    _hline(value, text.format(value), ax, dash="dash" if kind == "norm" else "dot")
                )
        panel.add(_explosion_marks(trace, ax, label=label))
    return panel.add(_empty_note(traces, ax))


def _layer_panel(trace: RunTrace, ax: _Axes, colorbar: dict) -> _Panel:
    panel = _Panel()
    norms = trace.records.get("layer_grad_norm")
    if norms is None and trace.streamed:
        norms = np.zeros((0, len(trace.layer_names)))
    if norms is not None and (len(norms) or trace.streamed):
        steps, columns = _heatmap_columns(trace, norms)
        values = columns.T  # layers x steps: a streamed update appends to every row
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(values)
        z = np.where(np.isfinite(z), z, np.nan)
        panel.data.append(
            {
                "type": "heatmap",
                "uid": "layers",
                "x": steps,
                "y": list(trace.layer_names),
                "z": z,
                "colorscale": HEAT,
                "colorbar": {"title": {"text": "log₁₀ ‖g‖"}, "thickness": 12, **colorbar},
                "customdata": values,
                "xaxis": ax.x,
                "yaxis": ax.y,
                "hovertemplate": "layer %{y}<br>step %{x}<br>gradient norm %{customdata:.6g}"
                "<extra></extra>",
            }
        )
    panel.add(_explosion_marks(trace, ax, label=False))
    return panel.add(_empty_note([trace], ax))


def _layer_axis(trace: RunTrace, *, title: str = "layer", **extra) -> dict:
    return {
        "title": {"text": title, "standoff": 8},
        "autorange": "reversed",
        "type": "category",
        "categoryorder": "array",
        "categoryarray": list(trace.layer_names),
        "automargin": False,
        **extra,
    }


def _weights_panels(
    traces: list[RunTrace], norm_ax: _Axes, ratio_ax: _Axes, names: _Names
) -> _Panel:
    panel = _Panel()
    shared = _shared_colour(traces)
    for trace in traces:
        if not (trace.steps or trace.streamed):
            continue
        opacity = _opacity(trace, shared)
        panel.data.append(
            _series(trace, "weight_norm", names(trace, "weight norm"), norm_ax, opacity=opacity)
        )
        panel.data.append(
            _series(
                trace, "update_ratio", names(trace, "update / weight"), ratio_ax, opacity=opacity
            )
        )
        panel.add(_explosion_marks(trace, norm_ax, label=False))
        panel.add(_explosion_marks(trace, ratio_ax, label=False))
    panel.add(
        _hline(1e-3, "10⁻³, a common healthy size", ratio_ax, dash="dot", colour=NEUTRAL, size=11)
    )
    return panel.add(_empty_note(traces, norm_ax))


# ---- the charts -------------------------------------------------------------------


def loss_figure(traces: list[RunTrace], *, revision: str = "loss", height: int = 340) -> go.Figure:
    """Training loss per step (thin line) and whole-set loss per epoch (markers), log y.

    For runs that classify, train and test accuracy per epoch on a right-hand axis (%).
    """
    names = _Names(traces, per_style=False)
    panel = _loss_panel(traces, SINGLE, names)
    accuracy = has_accuracy(traces)
    axes = {}
    if accuracy:
        panel.add(_accuracy_panel(traces, _Axes("x", "y2"), names))
        axes["yaxis2"] = _accuracy_axis("y", "x")
    loss_name = traces[0].loss_name if traces else "MSE"
    layout = _layout(
        title="Loss and accuracy" if accuracy else "Loss",
        revision=revision,
        height=height,
        panel=panel,
        xaxis=_step_axis(),
        yaxis=_log_axis(f"{loss_name} (log scale)"),
        **axes,
    )
    if accuracy:
        layout["margin"] = {**layout["margin"], "r": 60}
    return _figure(panel.data, layout)


def grad_norm_figure(
    traces: list[RunTrace], *, revision: str = "grad", height: int = 340
) -> go.Figure:
    """Global gradient norm per step before and after clipping, threshold line, clipped steps marked.

    For value clipping the threshold bounds each component, so the largest
    component ``max |g_i|`` is drawn with it instead of against the norm.
    """
    panel = _grad_panel(traces, SINGLE, _Names(traces, per_style=False))
    layout = _layout(
        title="Gradient norm",
        revision=revision,
        height=height,
        panel=panel,
        xaxis=_step_axis(),
        yaxis=_log_axis("gradient L2 norm ‖g‖ (log scale)"),
    )
    return _figure(panel.data, layout)


def layer_norm_figure(trace: RunTrace, *, revision: str = "layers", height: int = 300) -> go.Figure:
    """Heatmap of log10 gradient norm, layer x step: where the gradient is largest."""
    panel = _layer_panel(trace, SINGLE, {})
    layout = _layout(
        title=f"Gradient norm per layer ({trace.label})",
        revision=revision,
        height=height,
        panel=panel,
        xaxis=_step_axis(),
        yaxis=_layer_axis(trace),
    )
    return _figure(panel.data, layout)


def weights_figure(
    traces: list[RunTrace],
    *,
    revision: str = "weights",
    height: int = 320,
    stacked: bool = False,
) -> go.Figure:
    """Weight norm and update-to-weight ratio per step, log y.

    Side by side by default; ``stacked`` puts the ratio under the norm on a
    shared step axis, for a narrow column.
    """
    names = _Names(traces, per_style=False)
    norm_ax, ratio_ax = _Axes("x", "y"), _Axes("x2", "y2")
    panel = _weights_panels(traces, norm_ax, ratio_ax, names)
    if stacked:
        layout = _layout(
            title="Weights",
            revision=revision,
            height=height,
            panel=panel,
            xaxis={
                "anchor": "y",
                "matches": "x2",
                "showticklabels": False,
                "rangemode": "tozero",
                "automargin": False,
            },
            xaxis2=_step_axis(anchor="y2"),
            yaxis=_log_axis("norm ‖w‖ (log)", domain=[0.54, 1.0], anchor="x"),
            yaxis2=_log_axis("‖Δw‖ / ‖w‖ (log)", domain=[0.0, 0.46], anchor="x2"),
        )
        return _figure(panel.data, layout)
    for text, ax in (("Weight norm ‖w‖", norm_ax), ("Update size ‖Δw‖ / ‖w‖", ratio_ax)):
        panel.notes.append(_title(text, ax))
    layout = _layout(
        title=None,
        revision=revision,
        height=height,
        panel=panel,
        xaxis=_step_axis(domain=[0.0, 0.44], anchor="y"),
        xaxis2=_step_axis(domain=[0.56, 1.0], anchor="y2"),
        yaxis=_log_axis("L2 norm (log scale)", anchor="x"),
        yaxis2=_log_axis("ratio (log scale)", anchor="x2"),
    )
    layout["margin"] = {**layout["margin"], "t": 60}
    layout["legend"] = {**layout["legend"], "y": 1.12}
    return _figure(panel.data, layout)


# Panel grid of lab_figure, as fractions of the plotting area: two columns,
# two rows; the bottom-right cell holds the weight norm over the update ratio.
_LEFT, _RIGHT = (0.0, 0.42), (0.58, 1.0)
_TOP, _BOTTOM = (0.58, 0.95), (0.0, 0.42)
_NORM, _RATIO = (0.24, 0.42), (0.0, 0.18)


def lab_figure(traces: list[RunTrace], *, revision: str = "lab", height: int = 860) -> go.Figure:
    """The four live charts of the Training Lab in one figure, on one shared step axis.

    Loss (top left; for runs that classify, with train and test accuracy per
    epoch on a right-hand axis), gradient norm (top right), gradient norm per
    layer of the first run (bottom left), weight norm over update size (bottom
    right).
    Zooming the steps of one panel zooms them all. Runs are told apart by
    colour; each line style has one entry in the legend on top, which
    toggles it for every run.
    """
    spec = lab_figure_spec(traces, revision=revision, height=height)
    return _figure(spec["data"], spec["layout"])


def lab_figure_spec(traces: list[RunTrace], *, revision: str = "lab", height: int = 860) -> dict:
    """``lab_figure`` as the plain dict plotly.js draws: ``{"data": [...], "layout": {...}}``.

    The live chart builds it from a slice of steps at every update
    (``clipviz.app.stream``), so it skips the Figure object altogether.
    """
    names = _Names(traces, per_style=True)
    loss_ax, grad_ax, layer_ax = _Axes("x", "y"), _Axes("x2", "y2"), _Axes("x3", "y3")
    norm_ax, ratio_ax = _Axes("x4", "y4"), _Axes("x5", "y5")
    # An empty trace on every panel, so all axes are drawn from the first frame
    # (plotly.js leaves out the axes of a subplot without traces).
    panel = _Panel(
        data=[
            {"type": "scatter", "x": [], "y": [], "xaxis": ax.x, "yaxis": ax.y}
            | {"showlegend": False, "hoverinfo": "skip", "uid": f"axis-{ax.x}"}
            for ax in (loss_ax, grad_ax, layer_ax, norm_ax, ratio_ax)
        ]
    )
    panel.add(_loss_panel(traces, loss_ax, names))
    accuracy = has_accuracy(traces)
    if accuracy:  # the digits: accuracy over the loss, on its own axis (y6)
        panel.add(_accuracy_panel(traces, _Axes("x", "y6"), names))
    panel.add(_grad_panel(traces, grad_ax, names, label=False))
    first = traces[0] if traces else RunTrace("", False, {})
    colorbar = {
        "x": _LEFT[1] + 0.008,
        "xanchor": "left",
        "y": sum(_BOTTOM) / 2,
        "len": _BOTTOM[1] - _BOTTOM[0],
        "title": {"text": "log₁₀‖g‖", "side": "top"},
    }
    panel.add(_layer_panel(first, layer_ax, colorbar))
    panel.add(_weights_panels(traces, norm_ax, ratio_ax, names))
    loss_name = traces[0].loss_name if traces else "MSE"
    layer_title = "Gradient norm per layer" + (f" ({first.label})" if len(traces) > 1 else "")
    for text, ax in (
        ("Loss and accuracy" if accuracy else "Loss", loss_ax),
        ("Gradient norm", grad_ax),
        (layer_title, layer_ax),
        ("Weights: norm and update size", norm_ax),
    ):
        panel.notes.append(_title(text, ax))
    step = {"matches": "x"}
    layout = layout_spec(height=height, template=False)
    layout.update(
        uirevision=revision,
        shapes=panel.shapes,
        annotations=panel.notes,
        margin={"l": 96, "r": 20, "t": 40, "b": 50},  # room for "hidden→hidden"
        legend={
            "orientation": "h",
            "x": 0,
            "y": 1.0,
            "xanchor": "left",
            "yanchor": "bottom",
            "font": {"size": 12},
        },
        xaxis=_step_axis(domain=list(_LEFT), anchor="y"),
        yaxis=_log_axis(f"{loss_name}, log scale", domain=list(_TOP), anchor="x"),
        xaxis2=_step_axis(domain=list(_RIGHT), anchor="y2", **step),
        yaxis2=_log_axis("gradient L2 norm ‖g‖ (log)", domain=list(_TOP), anchor="x2"),
        xaxis3=_step_axis(domain=list(_LEFT), anchor="y3", **step),
        yaxis3=_layer_axis(first, title="", domain=list(_BOTTOM), anchor="x3"),
        xaxis4={
            "domain": list(_RIGHT),
            "anchor": "y4",
            "showticklabels": False,
            "automargin": False,
            **step,
        },
        yaxis4=_log_axis("‖w‖ (log)", domain=list(_NORM), anchor="x4"),
        xaxis5=_step_axis(domain=list(_RIGHT), anchor="y5", **step),
        yaxis5=_log_axis("‖Δw‖ / ‖w‖ (log)", domain=list(_RATIO), anchor="x5"),
    )
    if accuracy:
        layout["yaxis6"] = _accuracy_axis("y", "x")
    if _no_steps(traces):  # empty log axes: decades only, no 2s and 5s
        for name in ("yaxis", "yaxis2", "yaxis4", "yaxis5"):
            layout[name]["dtick"] = 1
    _plain_style(layout)
    return {"data": panel.data, "layout": layout}


def _plain_style(layout: dict) -> None:
    """Colours for a figure drawn by plotly.js directly, outside Streamlit's chart theme.

    The same quiet look: white background, light horizontal grid, dark grey text.
    """
    layout.update(
        paper_bgcolor="white",
        plot_bgcolor="white",
        font={**layout.get("font", {}), "color": "#31333F"},
        hoverlabel={**layout.get("hoverlabel", {}), "bgcolor": "white", "bordercolor": "#D5DAE5"},
    )
    for key, axis in layout.items():
        if key.startswith("xaxis"):
            axis.update(showgrid=False, showline=True, linecolor="#D5DAE5", zeroline=False)
        elif key.startswith("yaxis"):
            axis.update(gridcolor="#E6EAF1", showline=False, zeroline=False)
