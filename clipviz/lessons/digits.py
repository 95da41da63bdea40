"""The second source's claim, tested: does clipping by value help an LSTM read digits?

The article on how gradient clipping helps against exploding gradients (seed
``001``) trains a Keras ``LSTM(10)`` that reads each Fashion-MNIST image one row
per time step, once without clipping and once with ``clipvalue``, and concludes
that clipping "can improve the training performance of the model" from one run
of each. Here the same experiment runs on scikit-learn's 8x8 digits (the
``digits_lstm_noclip`` and ``digits_lstm_clipvalue`` presets) over several
seeds, at the presets' learning rate and at higher ones, and the verdict is
computed from the runs:

* ``run_study`` -- every (learning rate, clipping) setting over ``n_seeds``
  seeds: per-epoch loss and accuracy, explosions, how often clipping acted,
  and the largest gradient component seen.
* ``verdict`` -- whether clipping helped at the presets' learning rate (it
  must win in every seed, by at least ``MIN_GAIN``), and the lowest learning
  rate, if any, at which the unclipped runs fail and the clipped ones do not.

The presets' runs are single-lane trainers, exactly what the Lab and
``python -m clipviz train --preset ...`` run. The higher learning rates of one
seed share one multi-lane trainer, clipped and unclipped lanes side by side
(same start, same batches): a fraction of the cost of separate runs, and
different from them only by float rounding.
"""

from __future__ import annotations

import functools
import math
import statistics
import threading
from dataclasses import dataclass

import numpy as np

from clipviz.engine.config import PRESETS, TrainConfig
from clipviz.engine.trainer import Trainer

PRESET_NAMES = {"none": "digits_lstm_noclip", "value": "digits_lstm_clipvalue"}
MODES = ("none", "value")
# The presets' learning rate times 10 and 30: the rates at which to look for one where
# the unclipped runs fail and the clipped ones hold. (At 3 times, both still train.)
HIGHER_LR_FACTORS = (10.0, 30.0)
DEFAULT_SEEDS = 5
MAX_SEEDS = 20
# A run fails when it explodes or ends below this test accuracy. Guessing gets 10%;
# at the presets' learning rate every seed ends far above it.
FAIL_ACCURACY = 0.5
# The threshold of the unclipped lanes in a multi-lane trainer that clips by value:
# clamping into [-max, max] of float32 leaves every finite number as it is.
NO_CLIP_VALUE = float(np.finfo(np.float32).max)
# Clipping "helped" only when it wins in every seed by at least this much (median of
# the paired differences in test accuracy): anything less is within seed noise. With
# fewer than MIN_VERDICT_SEEDS seeds, winning in every one proves little (a coin wins
# 2 of 2 tosses a quarter of the time, 5 of 5 one time in 32), so no verdict is given.
MIN_GAIN = 0.01
MIN_VERDICT_SEEDS = 5


def preset_config(mode: str) -> TrainConfig:
    """The preset of one clipping mode ("none" or "value")."""
    return PRESETS[PRESET_NAMES[mode]].config


@dataclass(frozen=True)
class SettingRuns:
    """One setting (learning rate and clipping) trained once per seed.

    Per-epoch arrays have shape (seeds, epochs); an exploded run's epochs after
    its explosion are NaN. Accuracies are shares in [0, 1].
    """

    lr: float
    clip_mode: str
    seeds: tuple[int, ...]
    exploded_at: tuple[int | None, ...]
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    # Recorded for the presets' runs only (None for the higher rates' lanes): the share of
    # steps at which clipping changed the gradient, and the largest gradient component.
    clipped_steps: tuple[float, ...] | None
    max_abs_grad: tuple[float, ...] | None

    @property
    def clipped(self) -> bool:
        return self.clip_mode != "none"

    @property
    def epochs(self) -> np.ndarray:
        return np.arange(1, self.train_loss.shape[1] + 1)

    def final(self, key: str) -> np.ndarray:
        """The last epoch's value of ``key`` per seed; an exploded run's accuracy counts as 0
        (it predicts nothing) and its loss as NaN."""
        values = getattr(self, key)[:, -1].astype(float)
        if key.endswith("accuracy"):
            values = np.where(self.exploded, 0.0, values)
        return values

    @property
    def exploded(self) -> np.ndarray:
        return np.array([step is not None for step in self.exploded_at])

    @property
    def failed(self) -> np.ndarray:
        """Per seed: exploded, or ended below ``FAIL_ACCURACY`` test accuracy."""
        return self.exploded | (self.final("test_accuracy") < FAIL_ACCURACY)

    def as_row(self, name: str) -> dict:
        """One row of ``python -m clipviz reproduce --experiment digits_lstm --json``."""

        def median(values) -> float | None:
            finite = [float(v) for v in values if math.isfinite(v)]
            return statistics.median(finite) if finite else None

        test_accuracy = self.final("test_accuracy")
        return {
            "experiment": name,
            "lr": self.lr,
            "clip_mode": self.clip_mode,
            "runs": len(self.seeds),
            "exploded_runs": int(self.exploded.sum()),
            "failed_runs": int(self.failed.sum()),
            "train_loss_median": median(self.final("train_loss")),
            "test_loss_median": median(self.final("test_loss")),
            "train_accuracy_median": median(self.final("train_accuracy")),
            "test_accuracy_median": median(test_accuracy),
            "test_accuracy_min": float(test_accuracy.min()),
            "test_accuracy_max": float(test_accuracy.max()),
            "test_accuracy_per_seed": [float(v) for v in test_accuracy],
            "clipped_steps_median": median(self.clipped_steps) if self.clipped_steps else None,
        }


@dataclass(frozen=True)
class Study:
    """Both presets over several seeds, at their learning rate and at higher ones."""

    base_lr: float
    lrs: tuple[float, ...]  # the presets' first, then the higher ones
    seeds: tuple[int, ...]
    runs: dict[tuple[float, str], SettingRuns]  # (lr, clip mode) -> its runs

    def at(self, lr: float, mode: str) -> SettingRuns:
        return self.runs[(lr, mode)]

    @property
    def higher_lrs(self) -> tuple[float, ...]:
        return self.lrs[1:]

    def table(self) -> list[dict[str, str]]:
        """Every setting as a row of readable text, for the page's table."""

        def pct(value: float | None) -> str:
            return "-" if value is None else f"{100 * value:.1f}%"

        out = []
        for row in self.rows():
            per_seed = ", ".join(f"{100 * v:.1f}" for v in row["test_accuracy_per_seed"])
            out.append(
                {
                    "learning rate": f"{row['lr']:g}",
                    "clipping": "none"
                    if row["clip_mode"] == "none"
                    else f"value ±{preset_config('value').clip_value:g}",
                    "failed runs": f"{row['failed_runs']} of {row['runs']}",
                    "test accuracy, median": pct(row["test_accuracy_median"]),
                    "lowest..highest": f"{pct(row['test_accuracy_min'])}.."
                    f"{pct(row['test_accuracy_max'])}",
                    "per seed (%)": per_seed,
                    "train accuracy, median": pct(row["train_accuracy_median"]),
                    "test loss, median": f"{row['test_loss_median']:.3f}"
                    if row["test_loss_median"] is not None
                    else "-",
                }
            )
        return out

    def rows(self) -> list[dict]:
        """Every setting as a row, the presets' first (named after them)."""
        out = []
        for lr in self.lrs:
            for mode in MODES:
                name = (
                    PRESET_NAMES[mode] if lr == self.base_lr else f"{PRESET_NAMES[mode]}_lr{lr:g}"
                )
                out.append(self.at(lr, mode).as_row(name))
        return out


def _collect(trainers: list[Trainer], lanes_of: list[int]) -> dict:
    """Per-run arrays from (trainer, lane) pairs, in seed order."""
    out: dict[str, list] = {k: [] for k in ("train_loss", "test_loss", "train_accuracy",
                                            "test_accuracy", "exploded_at", "clipped_steps",
                                            "max_abs_grad")}  # fmt: skip
    for trainer, lane in zip(trainers, lanes_of, strict=True):
        epochs_total = trainer.config.epochs
        epochs = trainer.epoch_records(lane)
        for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            padded = np.full(epochs_total, np.nan)  # an exploded run stops early
            padded[: len(epochs[key])] = epochs[key]
            out[key].append(padded)
        explosion = trainer.explosions[lane]
        out["exploded_at"].append(explosion.step if explosion else None)
        records = trainer.records(lane)
        if "clipped" in records:  # full records
            clipped = records["clipped"]
            out["clipped_steps"].append(float(np.nanmean(clipped)) if clipped.size else 0.0)
            largest = records["max_abs_grad"]
            largest = largest[np.isfinite(largest)]
            out["max_abs_grad"].append(float(largest.max()) if largest.size else math.nan)
    return out


def _setting(lr: float, mode: str, seeds: tuple[int, ...], parts: dict) -> SettingRuns:
    return SettingRuns(
        lr=lr,
        clip_mode=mode,
        seeds=seeds,
        exploded_at=tuple(parts["exploded_at"]),
        train_loss=np.array(parts["train_loss"]),
        test_loss=np.array(parts["test_loss"]),
        train_accuracy=np.array(parts["train_accuracy"]),
        test_accuracy=np.array(parts["test_accuracy"]),
        clipped_steps=tuple(parts["clipped_steps"]) or None,
        max_abs_grad=tuple(parts["max_abs_grad"]) or None,
    )


_STUDY_LOCK = threading.Lock()  # one study at a time: a second caller waits for the first


def run_study(n_seeds: int = DEFAULT_SEEDS) -> Study:
    """Train both presets for seeds 0 .. n_seeds-1 at their learning rate and higher ones.

    Costs ``2 n_seeds`` single runs and ``n_seeds`` multi-lane runs of 320 steps
    each: a few seconds per seed on one core. Deterministic, so kept once per
    process: the page (on its own thread), the command line and the tests share
    it, and a caller arriving while it trains waits for it instead of training
    it again. Treat the result as read-only.
    """
    with _STUDY_LOCK:
        return _run_study(n_seeds)


@functools.lru_cache(maxsize=4)
def _run_study(n_seeds: int) -> Study:
    if not 1 <= n_seeds <= MAX_SEEDS:
        raise ValueError(f"n_seeds must be between 1 and {MAX_SEEDS}, got {n_seeds}")
    seeds = tuple(range(n_seeds))
    base_lr = preset_config("none").lr
    higher = tuple(round(base_lr * f, 10) for f in HIGHER_LR_FACTORS)
    runs: dict[tuple[float, str], SettingRuns] = {}
    for mode in MODES:
        singles = [Trainer(preset_config(mode).replace(seed=s)).run() for s in seeds]
        runs[(base_lr, mode)] = _setting(base_lr, mode, seeds, _collect(singles, [0] * n_seeds))
    # The higher rates: one trainer per seed, lanes (rate, clipping) for every pair.
    clip_value = preset_config("value").clip_value
    lanes = [(lr, mode) for mode in MODES for lr in higher]
    thresholds = [clip_value if mode == "value" else NO_CLIP_VALUE for _, mode in lanes]
    laned = [
        Trainer(
            preset_config("value").replace(seed=s),
            n_lanes=len(lanes),
            lr=np.array([lr for lr, _ in lanes]),
            clip_value=np.array(thresholds),
            record="summary",
        ).run()
        for s in seeds
    ]
    for lane, (lr, mode) in enumerate(lanes):
        runs[(lr, mode)] = _setting(lr, mode, seeds, _collect(laned, [lane] * n_seeds))
    return Study(base_lr, (base_lr, *higher), seeds, runs)


def step_bound(lr: float) -> float:
    """The most one weight can move in one step under the clipping presets' SGD: each
    clipped component is at most c, and momentum mu adds up past steps to at most
    c / (1 - mu), times the learning rate."""
    config = preset_config("value")
    return lr * config.clip_value / (1.0 - config.momentum)


# ---- the verdict --------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the runs say about the claim, as an outcome and sentences."""

    outcome: str  # "helped", "hurt", "no_difference" or "too_few_seeds" at the presets' rate
    median_gain: float  # median over seeds of (clipped - unclipped) final test accuracy
    wins: int  # seeds in which the clipped run ended with the higher test accuracy
    runs: int
    rescue_lr: float | None  # lowest rate where the unclipped runs fail and the clipped don't
    sentences: tuple[str, ...]

    def as_dict(self) -> dict:
        return {
            "outcome": self.outcome,
            "median_gain": self.median_gain,
            "wins": self.wins,
            "runs": self.runs,
            "rescue_lr": self.rescue_lr,
            "text": " ".join(self.sentences),
        }


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _points(share: float) -> str:
    return f"{100 * share:+.1f} points".replace("-", "−")  # a typographic minus


def _range(values: np.ndarray) -> str:
    return f"{_pct(float(np.min(values)))} to {_pct(float(np.max(values)))}"


def outcome_of(gains: np.ndarray) -> str:
    """'helped' if clipping won in every seed and by a median of at least ``MIN_GAIN``;
    'hurt' if it lost in every seed by as much; otherwise 'no_difference'; and
    'too_few_seeds' with fewer than ``MIN_VERDICT_SEEDS`` seeds."""
    if len(gains) < MIN_VERDICT_SEEDS:
        return "too_few_seeds"
    median = float(np.median(gains))
    if (gains > 0).all() and median >= MIN_GAIN:
        return "helped"
    if (gains < 0).all() and median <= -MIN_GAIN:
        return "hurt"
    return "no_difference"


def rescue_lr(study: Study) -> float | None:
    """The lowest higher learning rate at which the unclipped runs are unstable (at least
    half of them fail) and no clipped run fails: where clipping by value would have saved
    training. None if there is none."""
    for lr in study.higher_lrs:
        plain, clipped = study.at(lr, "none").failed, study.at(lr, "value").failed
        if 2 * plain.sum() >= len(plain) and not clipped.any():
            return lr
    return None


def saved_and_lost(study: Study) -> tuple[int, int]:
    """Over the higher learning rates, paired by seed: how many runs failed without
    clipping but not with it (saved), and how many the other way round (lost)."""
    saved = lost = 0
    for lr in study.higher_lrs:
        plain, clipped = study.at(lr, "none").failed, study.at(lr, "value").failed
        saved += int((plain & ~clipped).sum())
        lost += int((clipped & ~plain).sum())
    return saved, lost


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def verdict(study: Study) -> Verdict:
    """The claim judged from the runs: the outcome and the sentences the page shows."""
    base_lr = study.base_lr
    plain, clipped = study.at(base_lr, "none"), study.at(base_lr, "value")
    clip_value = preset_config("value").clip_value
    acc_plain, acc_clip = plain.final("test_accuracy"), clipped.final("test_accuracy")
    gains = acc_clip - acc_plain
    outcome = outcome_of(gains)
    median_gain = float(np.median(gains))
    wins, n = int((gains > 0).sum()), len(gains)
    largest = max(plain.max_abs_grad)
    sentences = [
        f"At learning rate {base_lr:g} (the presets'), over {n} seeds, clipping each "
        f"gradient component to ±{clip_value:g} changed the gradient at "
        f"{_pct(statistics.median(clipped.clipped_steps))} of the steps (median over seeds); "
        f"the largest component in any unclipped run was {largest:.2g}.",
        f"Final test accuracy: median {_pct(float(np.median(acc_clip)))} with clipping "
        f"({_range(acc_clip)}) against {_pct(float(np.median(acc_plain)))} without "
        f"({_range(acc_plain)}). Clipping came out ahead in {wins} of {n} seeds; the median "
        f"difference, clipped minus unclipped, was {_points(median_gain)}, while the seeds "
        f"alone spread the unclipped runs over {100 * float(np.ptp(acc_plain)):.1f} points.",
    ]
    if outcome == "helped":
        sentences.append(
            "Here clip-by-value helped: it won in every seed. The source's claim holds on "
            "this data, at this learning rate."
        )
    elif outcome == "hurt":
        sentences.append(
            "Here clip-by-value made training worse in every seed: the source's claim does "
            "not hold on this data."
        )
    elif outcome == "no_difference":
        sentences.append(
            "So clip-by-value made no consistent difference here: the source's claim that "
            "it improves training does not hold on this data at this learning rate."
        )
    else:
        sentences.append(
            f"{n} seeds are too few to tell a consistent difference from chance: run "
            f"{MIN_VERDICT_SEEDS} or more for a verdict."
        )
    rescue = rescue_lr(study)
    if rescue is not None:
        a, b = study.at(rescue, "none"), study.at(rescue, "value")
        sentences.append(
            f"It does help at a higher learning rate: at {rescue:g}, {int(a.failed.sum())} of "
            f"{n} unclipped runs failed (exploded or ended below {100 * FAIL_ACCURACY:.0f}% test "
            f"accuracy) and none of the clipped ones; median test accuracy "
            f"{_pct(float(np.median(b.final('test_accuracy'))))} with clipping, "
            f"{_pct(float(np.median(a.final('test_accuracy'))))} without."
        )
    else:
        failures = "; ".join(
            f"at learning rate {lr:g}, {int(study.at(lr, 'none').failed.sum())} unclipped and "
            f"{int(study.at(lr, 'value').failed.sum())} clipped"
            for lr in study.higher_lrs
        )
        saved, lost = saved_and_lost(study)
        sentences.append(
            "No higher learning rate we tried makes the unclipped runs unstable while the "
            "clipped ones hold. Runs that exploded or ended below "
            f"{100 * FAIL_ACCURACY:.0f}% test accuracy, out of {n} each: {failures}. Over these "
            f"rates, seed by seed, clipping rescued {_runs(saved)} that failed without it and "
            f"broke {_runs(lost)} that trained without it."
        )
    return Verdict(outcome, median_gain, wins, n, rescue, tuple(sentences))
