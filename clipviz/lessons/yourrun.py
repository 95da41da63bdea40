"""Your run diagnosed: a gradient-norm log read, checked and explained.

The log is a CSV with one row per step: the Training Lab's export,
``GradientLog``'s file, ``python -m clipviz train --records``, or any other
tool's export with a step column and a gradient-norm column (TensorBoard's
scalar CSV ``Wall time,Step,Value``; a Weights & Biases panel export
``Step,<run> - train/grad_norm,...``; a Lightning ``metrics.csv``). From it:

* **Signs** of exploding gradients, with the step each first appears: the
  Lab's own detector, ``clipviz.lessons.diagnose.find_signs``, run on the
  records built from the log. This module holds no sign rules of its own;
  a sign needs its columns (the loss for the loss signs, ``weight_norm`` for
  the weight signs, ``above_one_fraction`` for "above 1 at each node").
* **Spikes**, as ZClip (Kumar et al. 2025, the ``zclip`` package's
  ``zscore`` mode) would see them: after a warm-up of ``warmup`` finite norms
  whose mean and variance start the statistics, a step is a spike when its
  z-score ``(g - mean) / (std + eps)`` is above ``z``; the mean and variance
  are then exponential moving averages with weight ``alpha``, updated (mean
  first, then variance with the new mean) with the norm, or, on a spike, with
  the threshold ZClip would have clipped it to, ``mean + z * std / (z_t / z)``.
  Defaults are ZClip's: alpha 0.97, z 2.5, warm-up 25 steps. Non-finite norms
  are reported as the explosion, not fed to the averages.
* **Percentiles** 50, 90 and 99 of the finite norms (linear interpolation,
  ``numpy.percentile``).
* **Suggested thresholds**: percentiles of the observed norms, the sources'
  advice to choose a threshold by first watching typical norms, each with the
  fraction of steps it would have clipped: exactly the fraction of logged
  norms above it (an infinite norm is above every threshold; a NaN norm is
  not counted). The 10th percentile is AutoClip's choice (Seetharaman et al.
  2020).

Reading never raises on a bad file: ``read_log`` returns a ``LogFile`` or a
list of one-line problems, and ``select`` the same for a chosen mapping.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from clipviz.engine import budget, records
from clipviz.engine.csvtable import CsvTable, read_csv
from clipviz.engine.result import Explosion
from clipviz.lessons.diagnose import Finding, find_signs

# ---- the spike detector's settings (ZClip's defaults) ----------------------------------


@dataclass(frozen=True)
class SpikeRule:
    """ZClip's z-score detector (module docstring)."""

    alpha: float = 0.97  # weight of the past in the moving averages
    z: float = 2.5  # a z-score above this is a spike
    warmup: int = 25  # finite norms that start the mean and variance
    eps: float = 1e-6  # keeps the z-score finite when the variance is 0


SUGGESTED_PERCENTILES = (10, 50, 90, 95, 99)
SHOWN_PERCENTILES = ("50", "90", "99")
DEFAULT_WINDOWS = 100  # without an epoch column, the detector's "epoch" is 1/100 of the log

# What the guess recognises, lowest-case; tried in order.
STEP_NAMES = ("step", "global_step", "_step", "trainer/global_step", "iteration", "iter", "steps")
NORM_NAMES = (
    "grad_norm_before",
    "grad_norm",
    "gradient_norm",
    "grad_norm_total",
    "total_grad_norm",
    "train/grad_norm",
    "grad_norm/total",
    "value",  # TensorBoard's scalar export holds one series, named Value
)
LOSS_NAMES = ("loss", "train/loss", "train_loss", "training_loss", "loss/train")
RUN_NAMES = ("run",)
WANDB_SUFFIXES = ("__min", "__max", "__step")


@dataclass(frozen=True)
class ColumnMap:
    """Which column is which (names as in the file's header)."""

    step: str
    grad_norm: str
    loss: str | None = None


@dataclass(frozen=True)
class LogFile:
    """A log read from CSV, with the guessed column mapping."""

    table: CsvTable
    guess: ColumnMap | None  # None when no column could be recognised as the norm
    runs: tuple[str, ...]  # the values of a 'run' column (the Lab's twin export), in order
    kind: str  # what the header looks like: clipviz, GradientLog, TensorBoard, W&B, or CSV
    filename: str = ""

    @property
    def numeric_names(self) -> tuple[str, ...]:
        return self.table.numeric_names


def read_log(
    data: bytes, *, filename: str = "", max_bytes: int = budget.MAX_UPLOAD_BYTES
) -> LogFile | list[str]:
    """Read a gradient-norm log; the problems in one line each if it cannot be read."""
    table = read_csv(
        data,
        max_bytes=max_bytes,
        max_rows=budget.MAX_LOG_STEPS,
        max_columns=budget.MAX_LOG_COLUMNS,
        max_cells=budget.MAX_LOG_CELLS,
        keep_text=RUN_NAMES,
    )
    if isinstance(table, list):
        return table
    if len(table.columns) < 2:
        return [
            f"the file has only one column ({table.names[0]!r}): a log needs a step column "
            "and a gradient-norm column"
        ]
    if table.n_rows < budget.MIN_LOG_STEPS:
        return [f"too few rows: {table.n_rows} step, at least {budget.MIN_LOG_STEPS} are needed"]
    run_column = next((c for c in table.columns if c.text is not None), None)
    runs = tuple(dict.fromkeys(run_column.text)) if run_column is not None else ()
    return LogFile(table, guess_columns(table), runs, _kind(table), filename)


def _kind(table: CsvTable) -> str:
    names = {n.lower() for n in table.names}
    if set(records.CORE_COLUMNS) <= names:
        return "GradientLog" if "update_norm" in names else "clipviz"
    if {"wall time", "step", "value"} <= names:
        return "TensorBoard"
    if any(" - " in n and n.lower().endswith(WANDB_SUFFIXES) for n in table.names):
        return "Weights & Biases"
    return "CSV"


def _find(names: tuple[str, ...], wanted: tuple[str, ...]) -> str | None:
    lowered = {n.lower(): n for n in names}
    for want in wanted:
        if want in lowered:
            return lowered[want]
    return None


def _usable(name: str) -> bool:
    lowered = name.lower()
    return not lowered.endswith(WANDB_SUFFIXES) and "[" not in lowered


def guess_columns(table: CsvTable) -> ColumnMap | None:
    """The mapping to start from: known names first, then names that contain 'grad' and 'norm'."""
    # Every column is a candidate by name (a norm column with a stray word in it
    # must be found, so that the word is reported); the fallbacks need numbers.
    usable = tuple(n for n in table.names if _usable(n) and table.column(n).text is None)
    numeric = tuple(n for n in table.numeric_names if _usable(n))
    # W&B names its columns "<run> - <metric>": match on the metric.
    metric = {n: n.rsplit(" - ", 1)[-1] for n in usable}
    by_metric = tuple(metric.values())

    def pick(wanted: tuple[str, ...], contains: tuple[str, ...] = ()) -> str | None:
        hit = _find(by_metric, wanted)
        if hit is None and contains:
            hits = [m for m in by_metric if all(w in m.lower() for w in contains)]
            hits = [m for m in hits if "after" not in m.lower()]
            hit = hits[0] if hits else None
        if hit is None:
            return None
        return next(n for n in usable if metric[n] == hit)

    step = pick(STEP_NAMES) or (numeric[0] if numeric else None)
    norm = pick(NORM_NAMES, ("grad", "norm"))
    if step is None or norm is None or step == norm:
        return None
    loss = pick(LOSS_NAMES)
    if loss is None:
        losses = [n for n in numeric if "loss" in metric[n].lower() and not _held_out(metric[n])]
        loss = losses[0] if losses else None
    return ColumnMap(step, norm, loss if loss not in (step, norm) else None)


def _held_out(name: str) -> bool:
    lowered = name.lower()
    return any(w in lowered for w in ("val", "test", "epoch_", "eval"))


# ---- one run's log, checked ------------------------------------------------------------


@dataclass(frozen=True)
class RunLog:
    """The chosen run's steps, norms and whatever else the log holds, ready to diagnose."""

    step: np.ndarray  # int64 when every step is whole, else float64
    grad_norm: np.ndarray  # float64; NaN and inf are data (an explosion)
    loss: np.ndarray | None
    extra: dict[str, np.ndarray]  # other complete numeric columns, by record name
    layer_norms: dict[str, np.ndarray]  # grad_norm[<layer>] columns, by layer
    mapping: ColumnMap
    run: str | None = None
    notes: tuple[str, ...] = ()
    source: str = ""

    @property
    def steps(self) -> int:
        return int(self.step.size)


def select(
    log: LogFile, mapping: ColumnMap | None = None, run: str | None = None
) -> RunLog | list[str]:
    """The rows of one run under ``mapping`` (the guess if None), checked; or the problems."""
    mapping = mapping or log.guess
    table = log.table
    if mapping is None:
        return [
            "no column looks like a gradient norm (choose the step and gradient-norm "
            f"columns; the numeric columns are {_names(log.numeric_names)})"
        ]
    for role, name in (("step", mapping.step), ("gradient norm", mapping.grad_norm)):
        if name not in table.names:
            return [f"there is no column {name!r} to read the {role} from"]
    if mapping.loss is not None and mapping.loss not in table.names:
        return [f"there is no column {mapping.loss!r} to read the loss from"]
    if mapping.step == mapping.grad_norm:
        return ["the step and the gradient norm must be two different columns"]
    step_col, norm_col = table.column(mapping.step), table.column(mapping.grad_norm)
    for column in (step_col, norm_col):
        if column.first_text is not None:
            return [column.problem()]

    rows = np.ones(table.n_rows, dtype=bool)
    notes: list[str] = []
    if log.runs:
        run_col = next(c for c in table.columns if c.text is not None)
        run = log.runs[0] if run is None else run
        if run not in log.runs:
            return [f"there is no run {run!r} in the file (the runs: {_names(log.runs)})"]
        rows &= np.array([t == run for t in run_col.text])
        if len(log.runs) > 1:
            notes.append(f"the file holds {len(log.runs)} runs; this is {run!r}")
    else:
        run = None
    empty = rows & norm_col.empty
    if empty.any():
        notes.append(
            f"{int(empty.sum()):,} rows without a gradient norm were left out (a log that "
            "records other values on other rows)"
        )
    rows &= ~empty
    lines = table.lines[rows]
    steps = step_col.values[rows]
    bad_step = ~np.isfinite(steps)
    if bad_step.any():
        i = int(np.argmax(bad_step))
        what = "an empty step" if step_col.empty[rows][i] else f"step {steps[i]}"
        return [f"line {lines[i]} has {what}: every row needs a finite step number"]
    if steps.size < budget.MIN_LOG_STEPS:
        return [
            f"too few steps with a gradient norm: {steps.size}, at least "
            f"{budget.MIN_LOG_STEPS} are needed"
        ]
    back = np.flatnonzero(np.diff(steps) <= 0)
    if back.size:
        i = int(back[0]) + 1
        hint = " (the file holds several runs: choose one)" if len(log.runs) > 1 else ""
        return [
            f"steps must increase down the file: line {lines[i]} has step {steps[i]:g} after "
            f"step {steps[i - 1]:g}{hint}"
        ]
    norms = norm_col.values[rows]
    negative = norms < 0
    if negative.any():
        i = int(np.argmax(negative))
        return [
            f"a gradient norm is never negative, but {mapping.grad_norm!r} holds {norms[i]:g} "
            f"on line {lines[i]} (is it the right column?)"
        ]
    if not np.isfinite(norms).any():
        return [f"the gradient-norm column {mapping.grad_norm!r} holds no finite number"]

    loss = None
    if mapping.loss is not None:
        loss_col = table.column(mapping.loss)
        if loss_col.first_text is not None:
            return [loss_col.problem()]
        if loss_col.empty[rows].any():
            notes.append(
                f"the loss column {mapping.loss!r} is empty on some steps of the gradient "
                "norm, so the loss was left out"
            )
        else:
            loss = loss_col.values[rows]
    if mapping.loss is None:
        notes.append("no loss column: the signs read from the loss cannot be looked for")

    used = {mapping.step, mapping.grad_norm, mapping.loss}
    extra: dict[str, np.ndarray] = {}
    layer_norms: dict[str, np.ndarray] = {}
    for column in table.columns:
        if column.name in used or not column.numeric or column.empty[rows].any():
            continue  # only complete columns: a missing value must never read as NaN
        name = column.name
        if name.startswith("grad_norm[") and name.endswith("]"):
            layer_norms[name[len("grad_norm[") : -1]] = column.values[rows]
        elif name not in records.EPOCH_COLUMNS:
            extra[records.RECORD_NAME.get(name, name)] = column.values[rows]
    whole = np.all(steps == np.round(steps)) and np.abs(steps).max() < 2**53
    return RunLog(
        step=steps.astype(np.int64) if whole else steps,
        grad_norm=norms,
        loss=loss,
        extra=extra,
        layer_norms=layer_norms,
        mapping=mapping,
        run=run,
        notes=tuple(notes),
        source=log.kind,
    )


def _names(names: tuple[str, ...], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ---- the diagnosis -------------------------------------------------------------------


@dataclass(frozen=True)
class SuggestedThreshold:
    threshold: float
    percentile: float
    clipped_fraction: float  # of the logged (non-NaN) norms, the share above the threshold


@dataclass(frozen=True)
class Spikes:
    """The z-score detector's view of every step (NaN where it had no view)."""

    steps: list[int]  # the spikes' step numbers
    z: np.ndarray  # z-score of each step (NaN during warm-up and for non-finite norms)
    mean: np.ndarray  # the moving mean and standard deviation each step was judged by
    std: np.ndarray
    rule: SpikeRule


@dataclass(frozen=True)
class RunDiagnosis:
    """Everything ``/your_run`` and ``python -m clipviz diagnose`` show."""

    log: RunLog
    findings: list[Finding]
    spikes: Spikes
    percentiles: dict[str, float]
    thresholds: list[SuggestedThreshold]
    exploded_at: int | None  # the first step whose loss or norm is not finite
    steps_per_epoch: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def steps(self) -> int:
        return self.log.steps

    def as_dict(self) -> dict:
        """The JSON document of ``python -m clipviz diagnose --json`` (CONTRACT.md)."""
        return {
            "steps": self.steps,
            "signs": [
                {"sign": f.key, "title": f.sign.title, "step": f.step, "detail": f.detail}
                for f in self.findings
            ],
            "spikes": self.spikes.steps,
            "norm_percentiles": self.percentiles,
            "suggested_thresholds": [
                {
                    "threshold": t.threshold,
                    "percentile": t.percentile,
                    "clipped_fraction": t.clipped_fraction,
                }
                for t in self.thresholds
            ],
            "exploded_at": self.exploded_at,
            "columns": {
                "step": self.log.mapping.step,
                "grad_norm": self.log.mapping.grad_norm,
                "loss": self.log.mapping.loss,
            },
            "run": self.log.run,
            "notes": list(self.notes),
        }


def zscore_spikes(steps: np.ndarray, norms: np.ndarray, rule: SpikeRule = SpikeRule()) -> Spikes:
    """ZClip's z-score view of a sequence of norms (module docstring)."""
    n = norms.size
    z = np.full(n, np.nan)
    means = np.full(n, np.nan)
    stds = np.full(n, np.nan)
    spikes: list[int] = []
    buffer: list[float] = []
    mean = var = None
    for i, value in enumerate(norms.tolist()):
        if not math.isfinite(value):
            continue
        if mean is None:
            buffer.append(value)
            if len(buffer) >= rule.warmup:
                mean = sum(buffer) / len(buffer)
                var = sum((x - mean) ** 2 for x in buffer) / len(buffer)
            continue
        std = var**0.5
        means[i], stds[i] = mean, std
        z[i] = (value - mean) / (std + rule.eps)
        effective = value
        if z[i] > rule.z:
            spikes.append(int(steps[i]))
            effective = mean + rule.z * std / (z[i] / rule.z)  # what ZClip clips it to
        mean = rule.alpha * mean + (1 - rule.alpha) * effective
        var = rule.alpha * var + (1 - rule.alpha) * (effective - mean) ** 2
    return Spikes(spikes, z, means, stds, rule)


def suggested_thresholds(
    norms: np.ndarray, percentiles: tuple[float, ...] = SUGGESTED_PERCENTILES
) -> list[SuggestedThreshold]:
    """Percentiles of the finite norms, each with the share of logged norms above it."""
    finite = norms[np.isfinite(norms)]
    logged = norms[~np.isnan(norms)]
    out = []
    for p in percentiles:
        threshold = float(np.percentile(finite, p))
        out.append(
            SuggestedThreshold(
                threshold, float(p), float(np.count_nonzero(logged > threshold) / logged.size)
            )
        )
    return out


def steps_per_epoch_of(log: RunLog) -> int:
    """Steps per epoch from an 'epoch' column (the Lab's and the trainer's), else 1/100 of the log."""
    epoch = log.extra.get("epoch")
    if epoch is not None and epoch.size >= 2:
        gaps = np.diff(epoch)
        gaps = gaps[gaps > 0]
        if gaps.size:
            return max(1, round(1 / float(np.median(gaps))))
    return max(1, log.steps // DEFAULT_WINDOWS)


def records_of(log: RunLog) -> dict[str, np.ndarray]:
    """The records dict the Lab's detector reads (``Trainer.records()`` names)."""
    out = dict(log.extra)
    out["step"] = log.step
    out["grad_norm"] = log.grad_norm
    if log.loss is not None:
        out["loss"] = log.loss
    if log.layer_norms:
        out["layer_grad_norm"] = np.stack(list(log.layer_norms.values()), axis=1)
    return out


def explosion_of(log: RunLog) -> Explosion | None:
    """The first step whose loss or gradient norm is not finite, as the trainer reports it."""
    bad = ~np.isfinite(log.grad_norm)
    loss_bad = ~np.isfinite(log.loss) if log.loss is not None else np.zeros_like(bad)
    either = bad | loss_bad
    if not either.any():
        return None
    i = int(np.argmax(either))
    layer = next(
        (name for name, norms in log.layer_norms.items() if not math.isfinite(norms[i])), None
    )
    before = float(log.grad_norm[i - 1]) if i >= 1 and math.isfinite(log.grad_norm[i - 1]) else None
    return Explosion(int(log.step[i]), "loss" if loss_bad[i] else "gradient", layer, before)


def diagnose(
    log: RunLog, *, rule: SpikeRule = SpikeRule(), steps_per_epoch: int | None = None
) -> RunDiagnosis:
    """Signs, spikes, percentiles and suggested thresholds of one run's log."""
    per_epoch = steps_per_epoch or steps_per_epoch_of(log)
    rec = records_of(log)
    explosion = explosion_of(log)
    weights = rec.get("weight_norm")
    first_weights = weights[np.isfinite(weights)] if weights is not None else np.array([])
    notes = list(log.notes)
    try:
        findings = find_signs(
            rec,
            # The weight norm before the first step is not in a log; the first logged
            # one (after step 1) stands in for it.
            initial_weight_norm=float(first_weights[0]) if first_weights.size else math.nan,
            batches_per_epoch=per_epoch,
            explosion=explosion,
        )
    except KeyError as missing:  # the detector needs a column this log does not have
        findings = []
        notes.append(f"the signs need a {missing.args[0]!r} column, which this log lacks")
    finite = log.grad_norm[np.isfinite(log.grad_norm)]
    percentiles = {p: float(np.percentile(finite, float(p))) for p in SHOWN_PERCENTILES}
    return RunDiagnosis(
        log=log,
        findings=findings,
        spikes=zscore_spikes(log.step, log.grad_norm, rule),
        percentiles=percentiles,
        thresholds=suggested_thresholds(log.grad_norm),
        exploded_at=explosion.step if explosion else None,
        steps_per_epoch=per_epoch,
        notes=tuple(notes),
    )


def diagnose_bytes(
    data: bytes,
    *,
    filename: str = "",
    mapping: ColumnMap | None = None,
    run: str | None = None,
    max_bytes: int = budget.MAX_UPLOAD_BYTES,
    rule: SpikeRule = SpikeRule(),
) -> RunDiagnosis | list[str]:
    """CSV bytes -> a diagnosis, or one-line problems (``read_log``, ``select``, ``diagnose``)."""
    log = read_log(data, filename=filename, max_bytes=max_bytes)
    if isinstance(log, list):
        return log
    chosen = select(log, mapping, run)
    if isinstance(chosen, list):
        return chosen
    return diagnose(chosen, rule=rule)


# ---- example logs, for a visitor without one -------------------------------------------


@dataclass(frozen=True)
class Example:
    """A Lab configuration whose run, exported as the Lab exports it, serves as a sample log."""

    name: str
    title: str
    description: str
    query: str  # the Lab link's query that opens the same run


EXAMPLES = {
    e.name: e
    for e in (
        Example(
            "explodes",
            "A run that explodes",
            "The reference MLP on its unscaled target with learning rate 0.0015 and no "
            "clipping: it limps along, then blows up.",
            "lr=0.0015",
        ),
        Example(
            "clipped",
            "A clipped run that trains",
            "The same network at learning rate 0.01, its gradient norm clipped at 1.0 "
            "(the tutorial's clip-norm run).",
            "preset=tutorial_clip_norm",
        ),
    )
}


@functools.lru_cache(maxsize=len(EXAMPLES))
def example_log(name: str) -> bytes:
    """An example's run as the Lab exports it (CSV bytes); the same for everyone, so cached."""
    from clipviz.engine.config import TrainConfig
    from clipviz.engine.trainer import STEP_FIELDS, Trainer

    config, problems = TrainConfig.from_params(dict(_pairs(EXAMPLES[name].query)))
    assert not problems, problems
    trainer = Trainer(config).run()
    columns = records.header(STEP_FIELDS, trainer.layout.layer_names, several=False)
    body = records.rows(trainer.records(), columns, layer_names=trainer.layout.layer_names)
    return records.to_csv(columns, body).encode()


def _pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query)


def mapping_from(params: Mapping[str, str | None]) -> ColumnMap:
    """A ``ColumnMap`` from a page's or a command line's choices."""
    return ColumnMap(str(params["step"]), str(params["grad_norm"]), params.get("loss") or None)
