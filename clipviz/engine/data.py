"""Data sets, generated offline, your own CSV, and target scaling.

* ``reference_regression``: the tutorial's problem, scikit-learn's
  ``make_regression(n_samples=1000, n_features=20, noise=0.1, random_state=1)``,
  first 500 rows for training and the last 500 for testing. Its target spans
  about -440..580 (its rows 1..500 train, -415..552), which is what makes the unscaled
  MLP explode.
* The MLP's other shipped data sets (``TrainConfig.data``, ``MLP_DATA``), all
  offline: scikit-learn's diabetes table (442 patients, 10 measurements, a
  disease-progression score of 25..346), Friedman's (1991) benchmark #1, and
  two variants of the reference problem, one with noise 20 instead of 0.1
  and one whose target is ten times larger.
* Your own data: ``read_upload`` reads an uploaded CSV into a table,
  ``choose_columns`` picks the target and feature columns, and
  ``UploadedData.dataset`` makes it a ``Dataset`` any ``Trainer`` takes
  (``uploaded_dataset`` does all three). Uploads live only in the caller's
  memory: nothing here writes them anywhere or caches them.

Every MLP data set is split the reference's way: the first half of the rows
(in file order) train, the rest test. Inputs that are not standard normal by
construction (diabetes, Friedman, uploads) are standardized with the training
rows' mean and standard deviation, so the input scale is not what decides
whether a run explodes; the target is left alone unless ``target_scaling``
says otherwise, exactly as for the reference.
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

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clipviz.engine import budget
from clipviz.engine.config import ConfigProblem, TrainConfig
from clipviz.engine.csvtable import FLOAT32_MAX, CsvTable, read_csv, size_text


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
    uploaded: bool = False  # someone's own CSV: no link or script can carry it
    source: str = ""  # where it came from: the uploaded file's name, or the data set's

    @property
    def shape(self) -> budget.DataShape:
        """Inputs and rows, as the work budget counts them."""
        return budget.DataShape(self.n_features, self.n_train, int(self.x_test.shape[0]))

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
    return mlp_dataset("reference", target_scaling)


@dataclass(frozen=True)
class MlpData:
    """One of the MLP's shipped data sets: what it is, and how it is made."""

    name: str  # TrainConfig.data
    title: str
    description: str  # one or two plain sentences for the Lab
    standardize_inputs: bool  # False where the inputs are standard normal by construction


MLP_DATA: dict[str, MlpData] = {
    d.name: d
    for d in (
        MlpData(
            "reference",
            "make_regression (the tutorial's)",
            "1,000 rows of 20 standard-normal inputs and a linear target spanning about "
            "-400..400, with noise 0.1.",
            False,
        ),
        MlpData(
            "diabetes",
            "diabetes (scikit-learn)",
            "442 patients: age, sex, body-mass index, blood pressure and six blood serum "
            "measurements; the target is a disease-progression score from 25 to 346 "
            "(Efron et al. 2004).",
            True,
        ),
        MlpData(
            "friedman",
            "Friedman #1 (generated)",
            "1,000 rows of 10 uniform inputs, of which 5 matter, through "
            "10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5, plus noise 1; "
            "the target spans about 2..27 (Friedman 1991).",
            True,
        ),
        MlpData(
            "regression_noisy",
            "make_regression, noisier",
            "The reference inputs and coefficients with noise 20 instead of 0.1: no "
            "network can get the test MSE much below 400.",
            False,
        ),
        MlpData(
            "regression_large",
            "make_regression, target x10",
            "The reference problem with the target ten times larger (about -4,000..4,000): "
            "errors, and gradients, start a hundred times larger in MSE.",
            False,
        ),
    )
}


@functools.lru_cache(maxsize=8)
def mlp_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A shipped MLP data set's inputs X (n, features) and target y (n,), float64.

    Cached: they are generated or loaded from scikit-learn's own files, and the
    same for everyone (never user data).
    """
    from sklearn import datasets

    if name == "reference":
        return reference_arrays()
    if name == "diabetes":
        table = datasets.load_diabetes(scaled=False)
        return table.data.astype(np.float64), table.target.astype(np.float64)
    if name == "friedman":
        return datasets.make_friedman1(n_samples=1000, n_features=10, noise=1.0, random_state=1)
    if name == "regression_noisy":
        # Same random_state: the inputs and the coefficients are the reference's.
        return datasets.make_regression(n_samples=1000, n_features=20, noise=20.0, random_state=1)
    if name == "regression_large":
        x, y = reference_arrays()
        return x, 10.0 * y
    raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(MLP_DATA)}")


def split_rows(n: int) -> int:
    """Training rows of an MLP data set of ``n`` rows: the first half, as for the reference."""
    return n // 2


def standardize_inputs(x: np.ndarray, n_train: int) -> np.ndarray:
    """Inputs minus the training rows' mean, over their standard deviation (1 where constant)."""
    mean = x[:n_train].mean(axis=0)
    std = x[:n_train].std(axis=0)
    return (x - mean) / np.where(std > 0, std, 1.0)


def _split_regression(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    target_scaling: str,
    *,
    standardize: bool,
    uploaded: bool = False,
    source: str = "",
) -> Dataset:
    n_train = split_rows(len(x))
    if standardize:
        x = standardize_inputs(x, n_train)
    scaler = TargetScaler.fit(target_scaling, y[:n_train])
    data = _regression(
        name,
        x[:n_train],
        scaler.transform(y[:n_train]),
        x[n_train:],
        scaler.transform(y[n_train:]),
        scaler,
    )
    return dataclasses.replace(data, uploaded=uploaded, source=source or name)


def mlp_dataset(name: str, target_scaling: str = "none") -> Dataset:
    """A shipped MLP data set, split and scaled the reference's way (module docstring)."""
    x, y = mlp_arrays(name)
    return _split_regression(
        name, x, y, target_scaling, standardize=MLP_DATA[name].standardize_inputs
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
        return _cached_mlp(config.data, config.target_scaling)
    return _cached_recurrent(config.task, config.seq_len, config.n_train, config.target_scaling)


@functools.lru_cache(maxsize=16)
def _cached_mlp(name: str, target_scaling: str) -> Dataset:
    return mlp_dataset(name, target_scaling)


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


# ---- your own data: an uploaded CSV -------------------------------------------------


def upload_limits_text() -> str:
    """The upload rules in one sentence, for the page to state before anyone uploads."""
    return (
        f"A CSV file (UTF-8, comma-, semicolon- or tab-separated) of at most "
        f"{size_text(budget.MAX_UPLOAD_BYTES)}, with a header row, "
        f"{budget.MIN_DATA_ROWS:,} to {budget.MAX_DATA_ROWS:,} rows and at most "
        f"{budget.MAX_DATA_COLUMNS:,} columns; the target and the features must be numbers "
        "in every row. The first half of the rows trains, the second half tests."
    )


def read_upload(data: bytes) -> CsvTable | list[str]:
    """An uploaded CSV as a table (to pick columns from), or its problems, one line each."""
    table = read_csv(
        data,
        max_bytes=budget.MAX_UPLOAD_BYTES,
        max_rows=budget.MAX_DATA_ROWS,
        max_columns=budget.MAX_DATA_COLUMNS,
    )
    if isinstance(table, list):
        return table
    if len(table.columns) < 2:
        return [
            f"the file has only one column ({table.names[0]!r}): it needs a target column "
            "and at least one feature column (is it separated by commas, semicolons or tabs?)"
        ]
    if table.n_rows < budget.MIN_DATA_ROWS:
        return [
            f"too few rows: {table.n_rows} rows of data, at least {budget.MIN_DATA_ROWS} are "
            "needed (half to train on, half to test on)"
        ]
    return table


def unusable_columns(table: CsvTable) -> list[str]:
    """Why a table lacks the two numeric columns a target and a feature need (empty: it has
    them): one line saying so, then what is wrong with each other column (at most three)."""
    numeric = table.numeric_names
    if len(numeric) >= 2:
        return []
    found = ", ".join(repr(n) for n in numeric) or "none"
    lines = [
        f"the file needs at least two columns of numbers, a target and a feature; "
        f"numeric columns found: {found}"
    ]
    for column in [c for c in table.columns if not c.numeric][:3]:
        lines.append(column.problem() or f"column {column.name!r} holds no finite number")
    return lines


def guess_columns(table: CsvTable) -> tuple[str, tuple[str, ...]]:
    """(target, features) to start from: the last numeric column, and the other numeric ones."""
    numeric = table.numeric_names
    target = numeric[-1]
    return target, tuple(n for n in numeric if n != target)


@dataclass(frozen=True)
class UploadedData:
    """The chosen columns of an uploaded CSV, as numbers.

    Kept only by the session that uploaded it (the Lab's session state); it
    is never written to disk, and nothing caches it by content.
    """

    filename: str
    target: str
    features: tuple[str, ...]
    x: np.ndarray  # (rows, features), float64, as in the file
    y: np.ndarray  # (rows,), float64
    target_index: int  # the columns' positions in the file, for the exported script
    feature_indexes: tuple[int, ...]
    delimiter: str
    has_header: bool

    @property
    def n_rows(self) -> int:
        return int(self.y.size)

    @property
    def shape(self) -> budget.DataShape:
        n_train = split_rows(self.n_rows)
        return budget.DataShape(len(self.features), n_train, self.n_rows - n_train)

    def dataset(self, target_scaling: str = "none") -> Dataset:
        """The ``Dataset`` a ``Trainer`` takes (``Trainer(config, dataset=...)``).

        Split and scaled as every MLP data set (module docstring); the inputs
        are standardized on the training rows.
        """
        return _split_regression(
            "uploaded",
            self.x,
            self.y,
            target_scaling,
            standardize=True,
            uploaded=True,
            source=self.filename or "your CSV",
        )

    def describe(self) -> str:
        """One line for the page: rows, split, features, the target's range."""
        shape = self.shape
        low, high = float(self.y.min()), float(self.y.max())
        return (
            f"{self.n_rows:,} rows ({shape.n_train:,} to train on, {shape.n_test:,} to test "
            f"on), {len(self.features)} feature{'s' if len(self.features) != 1 else ''}; "
            f"the target {self.target!r} spans {low:.4g}..{high:.4g}"
        )


def choose_columns(
    table: CsvTable,
    target: str | None = None,
    features: Sequence[str] | None = None,
    *,
    filename: str = "",
) -> UploadedData | list[str]:
    """The target and feature columns of ``table`` as numbers, or what is wrong, one line each.

    ``None`` picks ``guess_columns``'s choice. Every chosen column must hold a
    finite number in every row (float32 range, as the network computes), and
    the target must vary.
    """
    guessed_target, guessed_features = guess_columns(table)
    target = guessed_target if target is None else target
    features = [f for f in guessed_features if f != target] if features is None else list(features)
    problems = []
    names = set(table.names)
    if target not in names:
        problems.append(f"there is no column {target!r} to use as the target")
    unknown = [f for f in features if f not in names]
    if unknown:
        problems.append(f"there is no column {unknown[0]!r} to use as a feature")
    if target in features:
        problems.append(f"the target {target!r} cannot also be a feature")
    if not features:
        problems.append("choose at least one feature column")
    if len(set(features)) != len(features):
        problems.append("a feature column is chosen twice")
    if problems:
        return problems
    chosen = [table.column(target)] + [table.column(f) for f in features]
    for column in chosen:
        message = column.problem()
        if message is None:
            too_big = np.abs(column.values) > FLOAT32_MAX
            if too_big.any():
                i = int(np.argmax(too_big))
                message = (
                    f"column {column.name!r} holds {column.values[i]:.3g} on line "
                    f"{int(table.lines[i])}, too large for the network's float32 numbers"
                )
        if message:
            problems.append(message)
    if problems:
        return problems
    y = table.column(target).values
    if float(y.min()) == float(y.max()):
        return [
            f"the target {target!r} is {y[0]:.6g} on every row: a constant has nothing to "
            "learn (choose another target column)"
        ]
    return UploadedData(
        filename=filename,
        target=target,
        features=tuple(features),
        x=np.stack([table.column(f).values for f in features], axis=1),
        y=y,
        target_index=table.column(target).index,
        feature_indexes=tuple(table.column(f).index for f in features),
        delimiter=table.delimiter,
        has_header=table.has_header,
    )


def uploaded_dataset(
    data: bytes,
    target: str | None = None,
    features: Sequence[str] | None = None,
    *,
    target_scaling: str = "none",
    filename: str = "",
) -> Dataset | list[str]:
    """Uploaded CSV bytes -> a ``Dataset``, or a list of one-line problems (never raises).

    ``read_upload``, then ``choose_columns``, then ``UploadedData.dataset``.
    """
    table = read_upload(data)
    if isinstance(table, list):
        return table
    chosen = choose_columns(table, target, features, filename=filename)
    if isinstance(chosen, list):
        return chosen
    return chosen.dataset(target_scaling)


def upload_problems(config: TrainConfig, data: Dataset | UploadedData) -> list[ConfigProblem]:
    """Why ``config`` cannot train on uploaded ``data`` (empty when it can).

    Uploaded tables train the MLP only; the work budget counts the upload's
    own rows and columns (``budget.problems_of``), so a large file with many
    epochs is refused with the limit named, as any too-large setting is.
    """
    if config.network != "mlp":
        return [ConfigProblem("network", "uploaded data trains the MLP only (choose mlp)")]
    return config.problems(data_shape=data.shape)
