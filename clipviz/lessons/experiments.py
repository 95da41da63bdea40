"""The reference experiment reproduced, and the timing benchmark.

Brownlee's tutorial "How to Avoid Exploding Gradients With Gradient Clipping"
(2019) trains the reference MLP in Keras 2.2 on the unscaled
``make_regression`` target and reports one run each:

* no clipping: the loss becomes NaN almost at once;
* ``clipnorm=1.0``: Train MSE 5.082, Test 27.433;
* ``clipvalue=5.0``: Train MSE 9.487, Test 9.985.

``reproduce`` runs these (and a standardized target and norm + value
combined, the tutorial's suggested extensions) over several seeds and sets
our medians beside the published numbers. ``bench`` times the fully
recorded 1600-step reference run.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

from clipviz.engine.config import DEFAULT, TrainConfig
from clipviz.engine.trainer import Trainer


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    config: TrainConfig
    published_train_mse: float | None  # None: not published; nan: published as NaN
    published_test_mse: float | None
    note: str  # why ours may differ, in one line


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        "no_clip",
        "Unscaled target, no clipping",
        DEFAULT,
        math.nan,
        math.nan,
        "Published as NaN too: the loss overflows within the first epoch.",
    ),
    Experiment(
        "clip_norm_1",
        "Clip by norm at 1.0",
        DEFAULT.replace(clip_mode="norm", clip_norm=1.0),
        5.082,
        27.433,
        "One Keras 2.2 run vs our seeds in PyTorch; both clip the global norm, so only the seed and framework differ.",
    ),
    Experiment(
        "clip_value_5",
        "Clip by value at 5.0",
        DEFAULT.replace(clip_mode="value", clip_value=5.0),
        9.487,
        9.985,
        "One lucky Keras run; with clamped components the descent is slower and its end varies much with the seed.",
    ),
    Experiment(
        "standardized_target",
        "Standardized target, no clipping",
        DEFAULT.replace(target_scaling="standardize"),
        None,
        None,
        "Not in the tutorial (its scaling tutorial is separate); MSE shown in the original units.",
    ),
    Experiment(
        "clip_norm_1_value_5",
        "Clip by norm 1.0, then value 5.0",
        DEFAULT.replace(clip_mode="norm_value", clip_norm=1.0, clip_value=5.0),
        None,
        None,
        "Not published. Same as clip_norm_1: once the norm is 1, no component can exceed 5.",
    ),
)
EXPERIMENT_BY_NAME = {e.name: e for e in EXPERIMENTS}


@dataclass(frozen=True)
class ExperimentResult:
    experiment: Experiment
    seeds: tuple[int, ...]
    exploded_at: tuple[int | None, ...]
    train_mse: tuple[float, ...]  # NaN for exploded runs
    test_mse: tuple[float, ...]

    @property
    def exploded_runs(self) -> int:
        return sum(step is not None for step in self.exploded_at)

    def _median(self, values) -> float | None:
        finite = [v for v in values if math.isfinite(v)]
        return statistics.median(finite) if finite else None

    def as_row(self) -> dict:
        e = self.experiment

        def published(v):
            return None if v is None or math.isnan(v) else v

        return {
            "experiment": e.name,
            "title": e.title,
            "runs": len(self.seeds),
            "exploded_runs": self.exploded_runs,
            "median_exploded_at": self._median(
                [s for s in self.exploded_at if s is not None] or [math.nan]
            ),
            "train_mse_median": self._median(self.train_mse),
            "test_mse_median": self._median(self.test_mse),
            "published_train_mse": published(e.published_train_mse),
            "published_test_mse": published(e.published_test_mse),
            "published_outcome": "NaN"
            if e.published_train_mse is not None and math.isnan(e.published_train_mse)
            else None,
            "note": e.note,
        }


def run_experiment(experiment: Experiment, seeds: range | tuple[int, ...]) -> ExperimentResult:
    exploded, train, test = [], [], []
    for seed in seeds:
        trainer = Trainer(experiment.config.replace(seed=seed), record="summary").run()
        tr, te = trainer.final_losses()
        exploded.append(trainer.exploded_at)
        train.append(float(tr[0]))
        test.append(float(te[0]))
    return ExperimentResult(experiment, tuple(seeds), tuple(exploded), tuple(train), tuple(test))


def reproduce(n_seeds: int = 5, names: tuple[str, ...] | None = None) -> list[ExperimentResult]:
    chosen = [EXPERIMENT_BY_NAME[n] for n in names] if names else list(EXPERIMENTS)
    return [run_experiment(e, range(n_seeds)) for e in chosen]


@dataclass(frozen=True)
class BenchResult:
    steps: int
    seconds: float  # the best of the repeats
    median_seconds: float
    repeats: int
    keras_seconds: float | None = None

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds

    def as_dict(self) -> dict:
        out = {
            "experiment": "reference MLP, clip norm 1.0, 100 epochs, batch 32, full per-step recording",
            "steps": self.steps,
            "seconds": round(self.seconds, 4),
            "median_seconds": round(self.median_seconds, 4),
            "repeats": self.repeats,
            "steps_per_second": round(self.steps_per_second, 1),
            "microseconds_per_step": round(1e6 * self.seconds / self.steps, 1),
        }
        if self.keras_seconds is not None:
            out["keras_seconds"] = round(self.keras_seconds, 3)
            out["speedup_vs_keras"] = round(self.keras_seconds / self.seconds, 1)
        return out


BENCH_CONFIG = DEFAULT.replace(clip_mode="norm", clip_norm=1.0)


def bench(repeats: int = 5, *, keras: bool = False) -> BenchResult:
    """Time the fully recorded reference run; optionally the same fit in Keras 3."""
    Trainer(BENCH_CONFIG).run()  # warm-up: data set, allocator, kernels
    times, steps = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        trainer = Trainer(BENCH_CONFIG).run()
        times.append(time.perf_counter() - start)
        steps = trainer.step_count
    keras_seconds = keras_fit_seconds() if keras else None
    return BenchResult(steps, min(times), statistics.median(times), repeats, keras_seconds)


def keras_fit_seconds() -> float:
    """Seconds Keras 3 (torch backend) takes for the same 100-epoch ``model.fit``.

    Needs the optional ``keras`` package (in requirements-dev.txt). The model,
    data, optimizer and clipping match ``BENCH_CONFIG``.
    """
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    from clipviz.engine.data import reference_arrays

    x, y = reference_arrays()
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(25, activation="relu", kernel_initializer="he_uniform"),
            keras.layers.Dense(1, activation="linear"),
        ]
    )
    model.compile(
        loss="mean_squared_error",
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, global_clipnorm=1.0),
    )
    x_train, y_train = x[:500].astype(np.float32), y[:500].astype(np.float32)
    x_test, y_test = x[500:].astype(np.float32), y[500:].astype(np.float32)
    start = time.perf_counter()
    model.fit(
        x_train, y_train, validation_data=(x_test, y_test), epochs=100, batch_size=32, verbose=0
    )
    return time.perf_counter() - start
