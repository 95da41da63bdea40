"""One work and memory budget for every run the app or the command line starts.

A link, a widget or a command-line flag can ask for any combination of
settings inside each field's own bounds, and some combinations are far too
big for a shared server: an LSTM over 500-step sequences with 256 hidden
units and batches of 1000 needs gigabytes for one backward pass and minutes
per epoch. Each field's bound alone cannot see that; the products below can.
They are declared once here and checked by ``TrainConfig.problems`` (so the
Lab, its URL, the CLI and the tests all refuse the same settings with the
same message) and by the sweep (``sweep_problem``).

The costs are counted, not timed, so a check never depends on the machine:

* ``step_elements``: numbers one optimizer step keeps for its backward pass,
  batch x sequence length x hidden units (recurrent) or batch x depth x width
  (MLP). It bounds a step's memory.
* ``parameter_count``: the network's size. The trainer holds a few copies of
  it (weights, gradient, momentum, Adam's moments, the records' raw chunk),
  so it bounds a run's resident memory.
* ``run_macs``: multiply-adds of the whole run, forward and backward for every
  step plus the whole-set evaluations after every epoch. It bounds time.
* ``open_macs``: multiply-adds of what a run does before its first step (the
  loss of the initial weights on the training and test sets). It bounds what
  opening a link costs before the learner presses anything.

An MLP's counts use its data's shape: the shipped data sets' are declared
here (``DATA_SHAPES``), and an uploaded CSV's own rows and columns are passed
in (``cost_of(config, shape)``), so a large upload with many epochs is refused
like any other too-large setting. The upload limits themselves (file size,
rows, columns) and the limits of a gradient-norm log are declared here too.

The limits leave every preset, the reference experiment and the default
sweeps well inside (``tests/test_hardening.py``, ``test_every_preset_fits_the_budget``). Measured on this project's
2-core machines, a run at the ``MAX_RUN_MACS`` limit takes about half a minute, a
step at ``MAX_STEP_ELEMENTS`` uses under 200 MB, and ``MAX_OPEN_MACS`` is
under half a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config imports this module; the type is only for hints
    from clipviz.engine.config import TrainConfig

MAX_STEP_ELEMENTS = 2_000_000  # one step's activations (memory)
MAX_PARAMETERS = 600_000  # the network's size (resident memory)
MAX_RUN_MACS = 3e11  # a whole run's multiply-adds (time)
MAX_OPEN_MACS = 2e9  # the evaluations before the first step (time to open)
MAX_SWEEP_MACS = 4e11  # a whole stability map, every network together (time)
MAX_SWEEP_STEP_ELEMENTS = 8_000_000  # one batched step of many lanes (memory)
MAX_UPLOAD_BYTES = 5 * 2**20  # one uploaded file (.streamlit/config.toml: maxUploadSize = 5 MB)

# Your own data (a CSV uploaded to the Lab). The rows bound the steps of an epoch
# and the evaluations; the columns bound the input layer; the product bounds what
# a session holds in memory (20,000 x 100 numbers = 16 MB as float64, once).
MIN_DATA_ROWS = 20  # at least 10 rows to train on and 10 to test on
MAX_DATA_ROWS = 20_000
MAX_DATA_COLUMNS = 100

# A gradient-norm log (/your_run, ``python -m clipviz diagnose``). The page reads
# uploads (MAX_UPLOAD_BYTES); the command line reads files up to MAX_LOG_FILE_BYTES.
MIN_LOG_STEPS = 2
MAX_LOG_STEPS = 1_000_000
MAX_LOG_COLUMNS = 1_000
MAX_LOG_CELLS = 20_000_000  # rows x columns, 160 MB as float64
MAX_LOG_FILE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class DataShape:
    """What the counts need to know about an MLP's data: inputs and rows."""

    features: int
    n_train: int
    n_test: int


# The shipped MLP data sets' shapes (``clipviz.engine.data``; tests/test_data.py
# checks them against the real data), so a config is costed without building them.
DATA_SHAPES = {
    "reference": DataShape(20, 500, 500),  # make_regression, 500 + 500 rows
    "diabetes": DataShape(10, 221, 221),  # scikit-learn's 442 patients
    "friedman": DataShape(10, 500, 500),
    "regression_noisy": DataShape(20, 500, 500),
    "regression_large": DataShape(20, 500, 500),
}
MLP_FEATURES = DATA_SHAPES["reference"].features
MLP_EXAMPLES = DATA_SHAPES["reference"].n_train + DATA_SHAPES["reference"].n_test
RECURRENT_TEST = 256
DIGITS_ROWS, DIGITS_FEATURES, DIGITS_CLASSES, DIGITS_TRAIN_MAX, DIGITS_TEST = 8, 8, 10, 1000, 797
BACKWARD_FACTOR = 3  # a training step: forward + backward is about 3 forward passes


@dataclass(frozen=True)
class Cost:
    """What a configuration costs, in counted units (no clock)."""

    step_elements: int
    parameters: int
    run_macs: float
    open_macs: float
    step_macs: float  # one training step, forward and backward, one lane


def _recurrent_shape(config: TrainConfig) -> tuple[int, int, int, int, int]:
    """(sequence length, inputs, outputs, training examples, test examples)."""
    if config.task == "digits":
        n_train = min(config.n_train, DIGITS_TRAIN_MAX)
        return DIGITS_ROWS, DIGITS_FEATURES, DIGITS_CLASSES, n_train, DIGITS_TEST
    return config.seq_len, 2, 1, config.n_train, RECURRENT_TEST


def cost_of(config: TrainConfig, shape: DataShape | None = None) -> Cost:
    """The counted cost of one run of ``config`` (one lane).

    ``shape`` is the MLP's data when it is not the shipped set ``config.data``
    names (an uploaded CSV); recurrent tasks ignore it.
    """
    shape = shape or DATA_SHAPES[config.data]
    steps = config.total_steps_estimate(None if config.is_recurrent else shape.n_train)
    if config.is_recurrent:
        T, n_in, n_out, n_train, n_test = _recurrent_shape(config)
        H = config.hidden_size
        gates = 4 if config.network == "lstm" else 1
        parameters = gates * H * (H + n_in + 1) + n_out * (H + 1)
        example_macs = T * gates * H * (H + n_in + 1) + n_out * H
        step_elements = config.batch_size * T * H
        examples = n_train + n_test
    else:
        w, d = config.width, config.depth
        parameters = shape.features * w + (d - 1) * w * w + d * w + w + 1
        example_macs = parameters
        step_elements = config.batch_size * d * w
        examples = shape.n_train + shape.n_test
    open_macs = float(examples) * example_macs
    run_macs = (
        float(steps) * config.batch_size * example_macs * BACKWARD_FACTOR
        + config.epochs * open_macs
    )
    step_macs = float(config.batch_size) * example_macs * BACKWARD_FACTOR
    return Cost(step_elements, parameters, run_macs, open_macs, step_macs)


def _big(x: float) -> str:
    return f"{x:,.0f}" if x < 1e6 else f"{x:.2g}"


def problems_of(config: TrainConfig, shape: DataShape | None = None) -> list[tuple[str, str]]:
    """(key to blame, one-line reason) for each limit ``config`` goes over (on ``shape``'s data)."""
    cost = cost_of(config, shape)
    found = []
    if config.is_recurrent:
        step_what, step_key = "batch x sequence length x hidden units", "batch_size"
        size_key = "hidden_size"
    else:
        step_what, step_key = "batch x hidden layers x units", "batch_size"
        size_key = "width"
    if cost.step_elements > MAX_STEP_ELEMENTS:
        found.append(
            (
                step_key,
                f"too large together: {step_what} = {_big(cost.step_elements)}, above the "
                f"limit of {_big(MAX_STEP_ELEMENTS)} (one step would need too much memory)",
            )
        )
    if cost.parameters > MAX_PARAMETERS:
        found.append(
            (
                size_key,
                f"the network would have {_big(cost.parameters)} weights, above the limit of "
                f"{_big(MAX_PARAMETERS)} (too much memory per session)",
            )
        )
    if cost.open_macs > MAX_OPEN_MACS:
        found.append(
            (
                "n_train" if config.is_recurrent else size_key,
                f"evaluating the whole data set once would take {_big(cost.open_macs)} "
                f"multiply-adds, above the limit of {_big(MAX_OPEN_MACS)} (too slow to open)",
            )
        )
    if cost.run_macs > MAX_RUN_MACS:
        found.append(
            (
                "epochs",
                f"the whole run would take {_big(cost.run_macs)} multiply-adds, above the "
                f"limit of {_big(MAX_RUN_MACS)} (about half a minute of a shared CPU)",
            )
        )
    return found


def sweep_macs(base: TrainConfig, networks: int) -> float:
    """Multiply-adds of a map: every lane trains every step; one final evaluation.

    A sweep skips the whole-set evaluations after each epoch (``Trainer``'s
    ``evaluate_epochs=False``), so they are not counted.
    """
    cost = cost_of(base)
    return networks * (base.total_steps_estimate() * cost.step_macs + cost.open_macs)


def sweep_problem(base: TrainConfig, networks: int) -> tuple[str, str] | None:
    """(key, reason) if training ``networks`` copies of ``base`` goes over the sweep budget."""
    total = sweep_macs(base, networks)
    if total > MAX_SWEEP_MACS:
        return (
            "grid",
            f"{networks:,} networks x {base.epochs:,} epochs would take {_big(total)} "
            f"multiply-adds, above the limit of {_big(MAX_SWEEP_MACS)} for one map (about "
            "half a minute of a shared CPU): use a smaller grid or fewer epochs",
        )
    return None


def lanes_per_trainer(base: TrainConfig, largest: int) -> int:
    """Lanes one batched trainer may hold so that a step fits ``MAX_SWEEP_STEP_ELEMENTS``."""
    per_lane = max(1, cost_of(base).step_elements)
    return max(1, min(largest, MAX_SWEEP_STEP_ELEMENTS // per_lane))
