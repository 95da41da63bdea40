"""Stability maps: many networks trained at once, one per cell of a grid.

A map asks, for every learning rate on a log grid and every clip threshold
(or target scale) on another: does training this configuration diverge? Each
cell is one network. All cells of a clipping mode are the *lanes* of one
``Trainer`` (see ``clipviz.engine.models``): the same initial weights, the same
batches in the same order, each lane with its own learning rate and threshold
(or target multiplier), trained together as one batched tensor program. A
cell therefore equals the single run of its configuration and seed
(``tests/test_sweep.py`` checks this), and a 32 x 32 map of the reference MLP
costs a small fraction of training its 1024 networks one by one.

What a cell reports:

* ``diverged`` -- the run went non-finite (Inf/NaN) at some step
  (``exploded_at``), or its final weights give a non-finite loss;
* ``no_progress`` -- it stayed finite but its final training loss is not
  below the loss it started from: training went nowhere or uphill;
* ``trained`` -- otherwise. ``final_loss`` is the training MSE on the whole
  training set at the end, in the target's original units (the tutorial's
  "Train MSE"); ``final_test_loss`` the same on the test set.

The boundary between trained and diverged cells is not a straight line:
Sohl-Dickstein (2024, "The boundary of neural network trainability is
fractal") zoomed into such maps over hyperparameters and found structure at
every scale.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from clipviz.engine import budget
from clipviz.engine.config import (
    ADAPTIVE_MODES,
    DEFAULT,
    PRESETS,
    RULE_PARAMETER,
    TrainConfig,
    echo,
)
from clipviz.engine.data import dataset_for
from clipviz.engine.trainer import Trainer

MAP_CLIP_MODES = ("none", "norm", "value", *ADAPTIVE_MODES)
CLASSIC_MAP_MODES = ("none", "norm", "value")  # the default maps
# What a map's rows vary: the threshold of a fixed rule, the adaptive rule's own setting.
ROW_PARAMETER = {"norm": "clip_norm", "value": "clip_value", **RULE_PARAMETER}
# The adaptive rules' rows: AutoClip's percentile, AGC's lambda, ZClip's z (log grids).
PARAMETER_RANGE = {"autoclip": (1.0, 100.0), "agc": (1e-3, 1.0), "zclip": (0.5, 8.0)}
NETWORKS = ("mlp", "rnn", "lstm")
# The largest grid side per network: recurrent nets cost far more per lane.
MAX_GRID = {"mlp": 64, "rnn": 24, "lstm": 24}
DEFAULT_GRID = {"mlp": 16, "rnn": 8, "lstm": 8}
MAX_LANES_PER_TRAINER = 1024  # bounds memory: whole-set evaluations hold (500, H, lanes) tensors
LR_RANGE = {"mlp": (1e-4, 1.0), "rnn": (1e-3, 3.0), "lstm": (1e-3, 10.0)}
THRESHOLD_RANGE = (1e-2, 1e3)
TARGET_STD_RANGE = (1e-2, 1e4)  # target standard deviations on the target-scale map
STATUSES = ("trained", "no_progress", "diverged")

Progress = Callable[[float], None]


class SweepError(ValueError):
    """A bad sweep setting; ``key`` names it (as the CLI flag without dashes)."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


def base_config(network: str = "mlp", *, epochs: int | None = None, seed: int = 1) -> TrainConfig:
    """The configuration every cell of a map shares, before its own lr and threshold.

    The MLP is the reference experiment (unscaled target, SGD with momentum
    0.9, batch 32, 100 epochs). The recurrent nets are the exploding presets
    (``rnn_explodes``, ``lstm_long_explodes``), with their own sequence
    lengths and epochs unless ``epochs`` is given.
    """
    if network == "mlp":
        config = DEFAULT
    elif network == "rnn":
        config = PRESETS["rnn_explodes"].config
    elif network == "lstm":
        config = PRESETS["lstm_long_explodes"].config
    else:
        raise SweepError("network", f"unknown network {network!r}; choose one of mlp, rnn, lstm")
    changes = {"seed": seed}
    if epochs is not None:
        changes["epochs"] = epochs
    return config.replace(**changes)


def log_grid(low: float, high: float, n: int) -> np.ndarray:
    """``n`` values evenly spaced on a log scale from ``low`` to ``high``."""
    return np.logspace(math.log10(low), math.log10(high), n)


def log_edges(centres: np.ndarray) -> np.ndarray:
    """The ``n + 1`` cell edges of log-spaced centres (geometric midpoints)."""
    logs = np.log10(centres)
    step = logs[1] - logs[0] if len(logs) > 1 else 1.0
    inner = (logs[:-1] + logs[1:]) / 2
    return 10 ** np.concatenate([[logs[0] - step / 2], inner, [logs[-1] + step / 2]])


# ---- settings ----------------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep. ``None`` ranges and epochs take the network's defaults."""

    network: str = "mlp"
    grid: int = 16
    epochs: int | None = None
    clip_modes: tuple[str, ...] = CLASSIC_MAP_MODES
    lr_range: tuple[float, float] | None = None
    threshold_range: tuple[float, float] = THRESHOLD_RANGE
    seed: int = 1
    zclip_cap: float | None = None  # ZClip's optional hard cap (its max_grad_norm); None: off

    @property
    def lrs(self) -> np.ndarray:
        return log_grid(*(self.lr_range or LR_RANGE[self.network]), self.grid)

    @property
    def thresholds(self) -> np.ndarray:
        return log_grid(*self.threshold_range, self.grid)

    def rows(self, clip_mode: str) -> np.ndarray | None:
        """A map's row values, rounded as trained: thresholds, a rule's setting, or None."""
        if clip_mode == "none":
            return None
        grid = (
            log_grid(*PARAMETER_RANGE[clip_mode], self.grid)
            if clip_mode in PARAMETER_RANGE
            else self.thresholds
        )
        return np.array([_round_sig(v) for v in grid])

    @property
    def base(self) -> TrainConfig:
        config = base_config(self.network, epochs=self.epochs, seed=self.seed)
        if self.zclip_cap is not None:  # the cap is the usual clip_norm (the norm map sets its own)
            config = config.replace(zclip_cap=True, clip_norm=float(self.zclip_cap))
        return config

    def lanes(self, clip_mode: str) -> int:
        return self.grid if clip_mode == "none" else self.grid * self.grid

    @property
    def networks(self) -> int:
        return sum(self.lanes(mode) for mode in self.clip_modes)

    def validated(self) -> SweepSpec:
        """Return self, or raise ``SweepError`` naming the first bad setting."""
        if self.network not in NETWORKS:
            raise SweepError("network", f"unknown network {self.network!r}")
        largest = MAX_GRID[self.network]
        if not 2 <= self.grid <= largest:
            raise SweepError(
                "grid", f"must be between 2 and {largest} for the {self.network}, got {self.grid}"
            )
        if not self.clip_modes:
            raise SweepError("clip-modes", f"name at least one of {', '.join(MAP_CLIP_MODES)}")
        for mode in self.clip_modes:
            if mode not in MAP_CLIP_MODES:
                raise SweepError(
                    "clip-modes",
                    f"unknown clip mode {echo(mode)}; choose from {', '.join(MAP_CLIP_MODES)}",
                )
        if len(set(self.clip_modes)) != len(self.clip_modes):
            raise SweepError("clip-modes", "a clip mode is named twice")
        _check_range("lr", self.lr_range or LR_RANGE[self.network], 1e-8, 100.0)
        _check_range("threshold", self.threshold_range, 1e-8, 1e9)
        if self.zclip_cap is not None and not (
            math.isfinite(self.zclip_cap) and 1e-8 <= self.zclip_cap <= 1e9
        ):
            raise SweepError(
                "zclip-cap", f"must be a number from 1e-08 to 1e+09, got {self.zclip_cap:g}"
            )
        if self.seed < 0 or self.seed > 2**31 - 1:
            raise SweepError("seed", f"must be between 0 and {2**31 - 1}, got {self.seed}")
        problems = self.base.problems()
        if problems:
            raise SweepError(problems[0].key, problems[0].message)
        too_big = budget.sweep_problem(self.base, self.networks)
        if too_big:
            raise SweepError(*too_big)
        return self


def _check_range(name: str, bounds: tuple[float, float], lowest: float, highest: float) -> None:
    low, high = bounds
    for which, value in (("min", low), ("max", high)):
        if not (math.isfinite(value) and lowest <= value <= highest):
            raise SweepError(
                f"{name}-{which}", f"must be a number from {lowest:g} to {highest:g}, got {value:g}"
            )
    if not low < high:
        raise SweepError(f"{name}-max", f"must be above the minimum ({low:g}), got {high:g}")


# ---- results -----------------------------------------------------------------


@dataclass(frozen=True)
class LaneOutcome:
    """Per-lane outcomes of one trainer, arrays of shape (lanes,)."""

    final_train: np.ndarray  # MSE, target's original units; NaN where diverged
    final_test: np.ndarray
    initial_train: np.ndarray
    exploded_at: np.ndarray  # 1-based step, 0 where the lane did not explode
    diverged: np.ndarray  # bool
    no_progress: np.ndarray  # bool: finite, but final >= initial training loss

    @property
    def status(self) -> np.ndarray:
        out = np.full(self.diverged.shape, "trained", dtype=object)
        out[self.no_progress] = "no_progress"
        out[self.diverged] = "diverged"
        return out


@dataclass(frozen=True)
class ClipMap:
    """One clipping mode's map: arrays of shape (rows, len(lrs)).

    Rows are thresholds -- for an adaptive rule, values of its own setting
    (``row_key``: AutoClip's percentile, AGC's lambda, ZClip's z); a ``none``
    map has one row (no threshold to vary).
    """

    clip_mode: str
    lrs: np.ndarray
    thresholds: np.ndarray | None  # the row values; None for the "none" map
    final_loss: np.ndarray
    final_test_loss: np.ndarray
    initial_loss: float
    exploded_at: np.ndarray  # 0: did not explode
    status: np.ndarray  # "trained" / "no_progress" / "diverged"

    @property
    def row_key(self) -> str | None:
        """The setting the rows vary (a ``TrainConfig`` field), None for no clipping."""
        return ROW_PARAMETER.get(self.clip_mode)

    @property
    def diverged(self) -> np.ndarray:
        return self.status == "diverged"

    def counts(self) -> dict[str, int]:
        return {s: int((self.status == s).sum()) for s in STATUSES}

    def lr_boundary(self, row: int = 0) -> tuple[float | None, float | None]:
        """On one row: the largest learning rate that trained, the smallest that diverged."""
        trained = self.lrs[self.status[row] == "trained"]
        diverged = self.lrs[self.status[row] == "diverged"]
        return (
            float(trained.max()) if trained.size else None,
            float(diverged.min()) if diverged.size else None,
        )


@dataclass(frozen=True)
class SweepResult:
    """Every map of a sweep, how long it took, and how to rebuild any cell."""

    spec: SweepSpec
    base: TrainConfig
    maps: dict[str, ClipMap]
    seconds: float
    steps: int  # optimizer steps each network took (or would have, had it not diverged)

    @property
    def networks(self) -> int:
        return sum(m.final_loss.size for m in self.maps.values())

    def cell_config(self, clip_mode: str, row: int, col: int) -> TrainConfig:
        """The single-run configuration of a cell (row: threshold, col: lr)."""
        m = self.maps[clip_mode]
        return cell_config(self.base, clip_mode, float(m.lrs[col]), _row_threshold(m, row))

    def cells(self) -> list[dict]:
        """One dict per cell, as the CLI's JSON lists them."""
        out = []
        for mode, m in self.maps.items():
            for row in range(m.final_loss.shape[0]):
                for col in range(len(m.lrs)):
                    out.append(
                        {
                            "lr": float(m.lrs[col]),
                            "threshold": _row_threshold(m, row),
                            "row_parameter": m.row_key,
                            "clip_mode": mode,
                            "final_loss": _finite(m.final_loss[row, col]),
                            "final_test_loss": _finite(m.final_test_loss[row, col]),
                            "diverged": bool(m.status[row, col] == "diverged"),
                            "status": str(m.status[row, col]),
                            "exploded_at": int(m.exploded_at[row, col]) or None,
                        }
                    )
        return out

    def as_dict(self) -> dict:
        return {
            "network": self.spec.network,
            "grid": self.spec.grid,
            "epochs": self.base.epochs,
            "steps": self.steps,
            "networks": self.networks,
            "seconds": round(self.seconds, 3),
            "seconds_per_network": self.seconds / self.networks,
            "clip_modes": list(self.maps),
            "base_config": self.base.to_params(),
            "initial_loss": next(iter(self.maps.values())).initial_loss,
            "no_progress_means": "finite, final training loss >= initial training loss",
            "cells": self.cells(),
        }


def _row_threshold(m: ClipMap, row: int) -> float | None:
    return None if m.thresholds is None else float(m.thresholds[row])


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def cell_config(
    base: TrainConfig, clip_mode: str, lr: float, threshold: float | None
) -> TrainConfig:
    """``base`` with a cell's learning rate, clipping mode and row value.

    The row value is the threshold of ``norm``/``value``, the adaptive rule's
    own setting otherwise (``ROW_PARAMETER``).
    """
    config = base.replace(lr=float(_round_sig(lr)), clip_mode=clip_mode)
    if clip_mode in ROW_PARAMETER and threshold is not None:
        config = config.replace(**{ROW_PARAMETER[clip_mode]: float(_round_sig(threshold))})
    return config


def _round_sig(value: float, digits: int = 3) -> float:
    """Round a grid value to 3 significant digits, for short labels and links.

    Grid values are rounded *before* training, so that the configuration
    opened from a link is exactly the one that was trained.
    """
    return float(f"{value:.{digits}g}")


# ---- running -----------------------------------------------------------------


def train_lanes(
    base: TrainConfig,
    *,
    lr: np.ndarray,
    clip_norm: np.ndarray | None = None,
    clip_value: np.ndarray | None = None,
    target_multiplier: np.ndarray | None = None,
    clip_param: np.ndarray | None = None,
    progress: Progress | None = None,
) -> LaneOutcome:
    """Train one lane per entry of ``lr`` (all arrays the same length) to the end."""

    lanes = len(lr)
    trainer = Trainer(
        base,
        n_lanes=lanes,
        lr=lr,
        clip_norm=clip_norm,
        clip_value=clip_value,
        target_multiplier=target_multiplier,
        clip_param=clip_param,
        record="summary",
        evaluate_epochs=False,
    )
    per_call = trainer.batches_per_epoch
    while not trainer.done:
        trainer.step(per_call)
        if progress is not None:
            progress(trainer.step_count / trainer.total_steps)
    train, test = trainer.final_losses(original_units=True)
    initial = np.asarray(trainer.data.to_original_mse(trainer.initial_train_loss), dtype=float)
    exploded = np.array([e.step if e else 0 for e in trainer.explosions], dtype=int)
    diverged = (exploded > 0) | ~np.isfinite(train)
    train = np.where(diverged, np.nan, train)
    test = np.where(diverged, np.nan, test)
    no_progress = ~diverged & (train >= initial)
    return LaneOutcome(train, test, initial, exploded, diverged, no_progress)


def _with_threads(threads: int | None):
    """A context that sets torch's intra-op threads, restoring them after."""

    class _Threads:
        def __enter__(self):
            self.before = torch.get_num_threads()
            if threads:
                torch.set_num_threads(threads)

        def __exit__(self, *exc):
            torch.set_num_threads(self.before)

    return _Threads()


def _chunks(total: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


def run_sweep(
    spec: SweepSpec, *, progress: Progress | None = None, threads: int | None = None
) -> SweepResult:
    """Train every cell of every map of ``spec``; ``progress(fraction)`` after each epoch.

    ``threads`` sets torch's threads for the duration (the library default
    is 1; on a quiet machine 2 can help the large matrix products).
    """
    spec = spec.validated()
    base = spec.base
    lrs = np.array([_round_sig(v) for v in spec.lrs])
    total_work = spec.networks
    done_work = 0
    maps: dict[str, ClipMap] = {}
    start = time.perf_counter()
    steps = 0
    with _with_threads(threads), torch.no_grad():
        for mode in spec.clip_modes:
            thresholds = spec.rows(mode)
            rows = 1 if thresholds is None else len(thresholds)
            lane_lr = np.tile(lrs, rows)  # lane = row * len(lrs) + col
            lane_threshold = None if thresholds is None else np.repeat(thresholds, len(lrs))
            outcomes = []
            per_trainer = budget.lanes_per_trainer(base, MAX_LANES_PER_TRAINER)
            for part in _chunks(len(lane_lr), per_trainer):
                n = part.stop - part.start

                def report(fraction: float, n=n, before=done_work) -> None:
                    if progress is not None:
                        progress(min(1.0, (before + fraction * n) / total_work))

                chosen = None if lane_threshold is None else lane_threshold[part]
                outcomes.append(
                    train_lanes(
                        base.replace(clip_mode=mode),
                        lr=lane_lr[part],
                        clip_norm=chosen if mode == "norm" else None,
                        clip_value=chosen if mode == "value" else None,
                        clip_param=chosen if mode in ADAPTIVE_MODES else None,
                        progress=report,
                    )
                )
                done_work += n
            outcome = _concat(outcomes)
            shape = (rows, len(lrs))
            maps[mode] = ClipMap(
                clip_mode=mode,
                lrs=lrs,
                thresholds=thresholds,
                final_loss=outcome.final_train.reshape(shape),
                final_test_loss=outcome.final_test.reshape(shape),
                initial_loss=float(outcome.initial_train[0]),
                exploded_at=outcome.exploded_at.reshape(shape),
                status=outcome.status.reshape(shape),
            )
    steps = base.epochs * _batches_per_epoch(base)
    return SweepResult(spec, base, maps, time.perf_counter() - start, steps)


def _batches_per_epoch(config: TrainConfig) -> int:

    return math.ceil(dataset_for(config).n_train / config.batch_size)


def _concat(outcomes: Sequence[LaneOutcome]) -> LaneOutcome:
    if len(outcomes) == 1:
        return outcomes[0]
    return LaneOutcome(
        *(
            np.concatenate([getattr(o, f) for o in outcomes])
            for f in LaneOutcome.__dataclass_fields__
        )
    )


# ---- learning rate x target scale ----------------------------------------------


@dataclass(frozen=True)
class TargetSpec:
    """A map over learning rate x the target's scale, for a few clipping settings.

    Every cell trains on the reference data with its target multiplied by a
    factor, so that its standard deviation is the row's value; the unscaled
    tutorial target (std ~143) is one row. Colour: final training loss over
    initial training loss, which compares rows whose losses differ by their
    scale squared.
    """

    grid: int = 16
    epochs: int | None = None
    clip_modes: tuple[str, ...] = ("none", "norm")
    clip_norm: float = 1.0
    clip_value: float = 5.0
    lr_range: tuple[float, float] = LR_RANGE["mlp"]
    target_std_range: tuple[float, float] = TARGET_STD_RANGE
    seed: int = 1

    @property
    def base(self) -> TrainConfig:
        return base_config("mlp", epochs=self.epochs, seed=self.seed).replace(
            clip_norm=self.clip_norm, clip_value=self.clip_value
        )

    @property
    def networks(self) -> int:
        return self.grid * self.grid * len(self.clip_modes)

    def validated(self) -> TargetSpec:
        SweepSpec(
            grid=self.grid,
            epochs=self.epochs,
            clip_modes=self.clip_modes,
            lr_range=self.lr_range,
            seed=self.seed,
        ).validated()
        _check_range("target-std", self.target_std_range, 1e-6, 1e8)
        for key, value in (("clip-norm", self.clip_norm), ("clip-value", self.clip_value)):
            if not (math.isfinite(value) and 0 < value <= 1e9):
                raise SweepError(key, f"must be a number above 0, got {value:g}")
        return self


@dataclass(frozen=True)
class TargetMap:
    """One clipping setting over lr (columns) x target scale (rows)."""

    clip_mode: str
    threshold: float | None
    lrs: np.ndarray
    target_stds: np.ndarray  # the target's standard deviation on each row
    multipliers: np.ndarray  # factor applied to the tutorial's target on each row
    loss_ratio: np.ndarray  # final / initial training loss; NaN where diverged
    final_loss: np.ndarray  # MSE in the row's own (scaled) units
    exploded_at: np.ndarray
    status: np.ndarray


@dataclass(frozen=True)
class TargetSweepResult:
    spec: TargetSpec
    base: TrainConfig
    maps: dict[str, TargetMap]
    raw_target_std: float  # the tutorial target's standard deviation (training rows)
    seconds: float
    networks: int = field(default=0)

    def cell_config(self, clip_mode: str, row: int, col: int) -> TrainConfig | None:
        """The Lab configuration of a cell, if the Lab can train it (the unscaled row)."""
        m = self.maps[clip_mode]
        if m.multipliers[row] != 1.0:
            return None
        return cell_config(self.base, clip_mode, float(m.lrs[col]), m.threshold)


def target_rows(raw_std: float, low: float, high: float, n: int) -> np.ndarray:
    """``n`` multipliers of the raw target, log-spaced, spanning stds ~[low, high].

    The grid is shifted so that one row is exactly 1 (the unscaled tutorial
    target, which the Lab can open) while the spacing stays even.
    """
    lo, hi = math.log10(low / raw_std), math.log10(high / raw_std)
    step = (hi - lo) / (n - 1)
    first = round(lo / step)
    exponents = (first + np.arange(n)) * step
    return 10.0**exponents


def run_target_sweep(
    spec: TargetSpec, *, progress: Progress | None = None, threads: int | None = None
) -> TargetSweepResult:
    """Train every cell of lr x target scale for each of ``spec.clip_modes``."""

    spec = spec.validated()
    base = spec.base
    raw_std = float(dataset_for(base).y_train.double().std(unbiased=False))
    lrs = np.array([_round_sig(v) for v in log_grid(*spec.lr_range, spec.grid)])
    multipliers = target_rows(raw_std, *spec.target_std_range, spec.grid)
    multipliers[np.isclose(multipliers, 1.0)] = 1.0
    n = spec.grid
    maps: dict[str, TargetMap] = {}
    start = time.perf_counter()
    with _with_threads(threads), torch.no_grad():
        for k, mode in enumerate(spec.clip_modes):
            threshold = {"norm": spec.clip_norm, "value": spec.clip_value}.get(mode)

            def report(fraction: float, k=k) -> None:
                if progress is not None:
                    progress(min(1.0, (k + fraction) / len(spec.clip_modes)))

            outcome = train_lanes(
                base.replace(clip_mode=mode),
                lr=np.tile(lrs, n),
                target_multiplier=np.repeat(multipliers, n),
                progress=report,
            )
            shape = (n, n)
            scale_sq = np.repeat(multipliers, n) ** 2
            maps[mode] = TargetMap(
                clip_mode=mode,
                threshold=threshold,
                lrs=lrs,
                target_stds=multipliers * raw_std,
                multipliers=multipliers,
                loss_ratio=(outcome.final_train / outcome.initial_train).reshape(shape),
                final_loss=(outcome.final_train * scale_sq).reshape(shape),
                exploded_at=outcome.exploded_at.reshape(shape),
                status=outcome.status.reshape(shape),
            )
    return TargetSweepResult(
        spec, base, maps, raw_std, time.perf_counter() - start, networks=spec.networks
    )
