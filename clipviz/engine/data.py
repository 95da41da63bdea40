"""Data sets, generated offline, and target scaling.

* ``reference_regression``: the tutorial's problem, scikit-learn's
  ``make_regression(n_samples=1000, n_features=20, noise=0.1, random_state=1)``,
  first 500 rows for training and the last 500 for testing. Its target spans
  about -440..580 (its rows 1..500 train, -415..552), which is what makes the unscaled
  MLP explode.
* ``adding_problem``: Hochreiter & Schmidhuber (1997). Each time step carries a
  random value in [0, 1] and a marker; exactly two steps are marked and the
  target is the sum of their values. The sequence length is a setting, which
  is how long sequences (and exploding gradients through time) are made.
* ``digits_rows``: scikit-learn's 8x8 digits read one row per time step
  (8 steps x 8 features), the offline analogue of an LSTM reading image rows.

Target scaling (``none`` / ``standardize`` / ``normalize``) is fitted on the
training rows only; ``Dataset.target_scale`` converts a mean squared error in
scaled units back to the original units (MSE scales with the square).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from clipviz.engine.config import TrainConfig


@dataclass(frozen=True)
class TargetScaler:
    """y_scaled = (y - shift) / scale, fitted on training targets."""

    kind: str
    shift: float
    scale: float

    @classmethod
    def fit(cls, kind: str, y_train: np.ndarray) -> TargetScaler:
        if kind == "none":
            return cls(kind, 0.0, 1.0)
        if kind == "standardize":
            std = float(y_train.std())
            return cls(kind, float(y_train.mean()), std if std > 0 else 1.0)
        if kind == "normalize":  # min-max into [0, 1]
            low, high = float(y_train.min()), float(y_train.max())
            return cls(kind, low, (high - low) if high > low else 1.0)
        raise ValueError(f"unknown target scaling {kind!r}")

    def transform(self, y: np.ndarray) -> np.ndarray:
        return (y - self.shift) / self.scale

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return y * self.scale + self.shift


@dataclass(frozen=True)
class Dataset:
    """Tensors ready for training (float32), plus what is needed to report.

    Shapes: MLP inputs (n, features); sequence inputs (n, time, features).
    Regression targets are (n, 1) in scaled units; class targets (n,) int64.
    """

    name: str
    kind: str  # "regression" or "classification"
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    scaler: TargetScaler
    n_outputs: int

    @property
    def target_scale(self) -> float:
        return self.scaler.scale

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def is_sequence(self) -> bool:
        return self.x_train.dim() == 3

    def to_original_mse(self, mse_scaled: float | np.ndarray) -> float | np.ndarray:
        """Convert an MSE in scaled units to the target's original units."""
        return mse_scaled * self.scaler.scale**2

    @functools.cached_property
    def mean_guess_test_loss(self) -> float:
        """The test loss of a net that learned nothing about the inputs (trained units).

        Regression: the MSE of always predicting the training targets' mean
        (about the targets' variance). Classification: the cross-entropy of
        always predicting the training set's class frequencies. A run that
        learns must end well below it.
        """
        if self.kind == "regression":
            mean = self.y_train.double().mean()
            return float(((self.y_test.double() - mean) ** 2).mean())
        counts = torch.bincount(self.y_train, minlength=self.n_outputs).double()
        frequencies = (counts / counts.sum()).clamp_min(1e-12)
        return float(-frequencies.log()[self.y_test].mean())


@functools.lru_cache(maxsize=1)
def reference_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's regression problem: X (1000, 20) and y (1000,), float64."""
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=1000, n_features=20, noise=0.1, random_state=1)
    return x, y


def reference_regression(target_scaling: str = "none") -> Dataset:
    x, y = reference_arrays()
    x_train, x_test, y_train, y_test = x[:500], x[500:], y[:500], y[500:]
    scaler = TargetScaler.fit(target_scaling, y_train)
    return _regression(
        "reference", x_train, scaler.transform(y_train), x_test, scaler.transform(y_test), scaler
    )


def adding_problem(n: int, seq_len: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n sequences of the adding problem: X (n, seq_len, 2), y (n,).

    Channel 0 holds uniform values in [0, 1]; channel 1 marks two steps, one
    in the first half and one in the second, so the net must remember the
    first across at least half the sequence.
    """
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(n, seq_len))
    markers = np.zeros((n, seq_len))
    half = max(1, seq_len // 2)
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, seq_len, size=n)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = values[rows, first] + values[rows, second]
    return x, y


def recurrent_dataset(
    task: str, seq_len: int, n_train: int, target_scaling: str, seed: int = 0
) -> Dataset:
    """The data of a recurrent task; the test set is a fixed 256-example draw."""
    if task == "adding":
        x_train, y_train = adding_problem(n_train, seq_len, seed=10_000 + seed)
        x_test, y_test = adding_problem(256, seq_len, seed=20_000 + seed)
        scaler = TargetScaler.fit(target_scaling, y_train)
        return _regression(
            f"adding-{seq_len}",
            x_train,
            scaler.transform(y_train),
            x_test,
            scaler.transform(y_test),
            scaler,
        )
    if task == "digits":
        return digits_rows(n_train)
    raise ValueError(f"unknown task {task!r}")


@functools.lru_cache(maxsize=4)
def digits_rows(n_train: int = 1000) -> Dataset:
    """Digits as sequences of 8 rows of 8 pixels (scaled to [0, 1]), 10 classes."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8)
    labels = digits.target.astype(np.int64)
    n_train = min(n_train, 1000)
    return Dataset(
        name="digits-rows",
        kind="classification",
        x_train=torch.from_numpy(images[:n_train]),
        y_train=torch.from_numpy(labels[:n_train]),
        x_test=torch.from_numpy(images[1000:]),
        y_test=torch.from_numpy(labels[1000:]),
        scaler=TargetScaler("none", 0.0, 1.0),
        n_outputs=10,
    )


def dataset_for(config: TrainConfig) -> Dataset:
    """The data a config trains on (cached: the same config gives the same tensors)."""
    if config.network == "mlp":
        return _cached_reference(config.target_scaling)
    return _cached_recurrent(config.task, config.seq_len, config.n_train, config.target_scaling)


@functools.lru_cache(maxsize=8)
def _cached_reference(target_scaling: str) -> Dataset:
    return reference_regression(target_scaling)


@functools.lru_cache(maxsize=16)
def _cached_recurrent(task: str, seq_len: int, n_train: int, target_scaling: str) -> Dataset:
    return recurrent_dataset(task, seq_len, n_train, target_scaling)


def _regression(name, x_train, y_train, x_test, y_test, scaler) -> Dataset:
    def as_tensor(a):
        return torch.as_tensor(np.asarray(a), dtype=torch.float32)

    return Dataset(
        name=name,
        kind="regression",
        x_train=as_tensor(x_train),
        y_train=as_tensor(y_train).reshape(-1, 1),
        x_test=as_tensor(x_test),
        y_test=as_tensor(y_test).reshape(-1, 1),
        scaler=scaler,
        n_outputs=1,
    )
