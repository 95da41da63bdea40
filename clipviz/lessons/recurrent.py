"""Recurrent nets through time: what the /recurrent page computes.

Backpropagation through time sends the loss's gradient from the last step of
a sequence back to the first, multiplying it at every step by the recurrent
Jacobian dh_t/dh_{t-1} (Bengio, Simard & Frasconi 1994; Pascanu, Mikolov &
Bengio 2013). This module measures that directly:

* ``probe_through_time`` -- ||dL/dh_t|| for every time step t of one batch at
  initialisation; for a vanilla RNN at a recurrent spectral radius above 1 the
  gradient grows back through time, below 1 it fades.
* ``compare_networks`` -- a vanilla tanh RNN and an LSTM (Hochreiter &
  Schmidhuber 1997) trained side by side on the same task, seed and batches,
  with every step's ||dL/dh_t|| recorded; when the settings clip, each net is
  also trained without clipping (same init and batches) for comparison.
* ``growth_factor`` and ``describe`` -- the numbers a learner reads: how many
  times larger the gradient at the earliest reachable step is than at the
  last step, and sentences that say so.

Everything here is a pure function of a ``TrainConfig``; nothing imports
streamlit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from clipviz.engine.config import TrainConfig
from clipviz.engine.data import dataset_for
from clipviz.engine.result import LEARNED_FRACTION, RunResult
from clipviz.engine.trainer import Trainer

NETWORK_NAMES = {"rnn": "vanilla RNN", "lstm": "LSTM"}
# "Learned" the adding problem: a test MSE below LEARNED_FRACTION (one half) of the mean
# guess's. Guessing the mean scores the target's variance; a net that reads only the
# second marked number (the one near the end) and guesses the first scores about half
# of it (the variance of one uniform number, 1/12, against 1/6 for the sum), so getting
# below half needs the long-range link.
MAX_PAGE_STEPS = 2000  # training steps per net on the page
# A preset's run on the page (and the run the page opens with) is cut to this many steps,
# so opening the page costs seconds, not tens of seconds: enough for the clipped presets
# to learn (both nets of rnn_clipped are below half the mean guess by then; the page's
# verdict says so from the run, never from this comment).
PAGE_PRESET_STEPS = 800


def page_steps(config: TrainConfig) -> int:
    """Training steps of a preset's run on the page."""
    return min(config.total_steps_estimate(), PAGE_PRESET_STEPS)


# The LSTM dominates a page run's cost: about (steps x time steps) unrolled LSTM steps,
# twice with an unclipped twin, more with wide nets. This bound keeps a run to seconds.
MAX_PAGE_WORK = 100_000


# ---- the baseline every run is measured against --------------------------


def mean_guess_mse(config: TrainConfig) -> float:
    """Test MSE of always answering the training targets' mean (scaled units).

    For the adding problem this is about the target's variance, 1/6: a net
    must get below it to have learned anything from the inputs. NaN for a
    classification task.
    """
    data = dataset_for(config)
    if data.kind != "regression":
        return math.nan
    mean = data.y_train.double().mean()
    return float(((data.y_test.double() - mean) ** 2).mean())


def learned(test_loss: float, mean_guess: float) -> bool:
    """Whether a final test MSE shows the task was learned (see ``LEARNED_FRACTION``)."""
    return math.isfinite(test_loss) and test_loss < LEARNED_FRACTION * mean_guess


# ---- one probe at initialisation ------------------------------------------


def probe_through_time(config: TrainConfig) -> np.ndarray:
    """||dL/dh_t|| for t = 0 .. T-1 at the initial weights, on the first batch (T,).

    Exactly what a training run with this config records at its step 1 (same
    weights, same batch). The norm is over the batch and the hidden units.
    Steps before a truncation cut get no gradient and read 0.
    """
    trainer = Trainer(config.replace(epochs=1), record="summary", hidden_grads=True)
    trainer.step(1)
    return trainer.records()["hidden_grad_norm"][0]


def growth_factor(norms: np.ndarray, tbptt: int = 0) -> float:
    """||dL/dh_first|| / ||dL/dh_last||: how much the gradient grew back through time.

    ``first`` is time step 0, or the earliest step a truncation of ``tbptt``
    steps lets the gradient reach. NaN when either norm is zero or not finite.
    """
    norms = np.asarray(norms, dtype=float)
    first = len(norms) - tbptt if tbptt else 0
    start, end = norms[first], norms[-1]
    if not (math.isfinite(start) and math.isfinite(end)) or start <= 0 or end <= 0:
        return math.nan
    return float(start / end)


# ---- the growth against its bound -------------------------------------------


@dataclass(frozen=True)
class BoundProbe:
    """||dL/dh_t|| of a vanilla RNN at its initial weights, next to the bound on it.

    Each step back multiplies the gradient by J_k^T = W_h diag(1 - h_k^2) (in the
    layout's row convention), whose norm is at most ``gamma * sigma_max``: the
    tanh slopes are at most ``gamma`` = 1 and ``sigma_max`` is the largest singular
    value of W_h (Pascanu, Mikolov & Bengio 2013, section 3.1). So
    ||dL/dh_t|| <= ||dL/dh_{T-1}|| (gamma sigma_max)^(T-1-t) -- an upper bound, not
    a prediction. At initialisation W_h is rho times an orthogonal matrix, so
    every singular value is rho and the bound is the rho^n picture; training
    changes W_h, and then only the largest singular value bounds the growth.
    """

    measured: np.ndarray  # (T,) ||dL/dh_t|| on the first batch, norm over batch and units
    bound: np.ndarray  # (T,) ||dL/dh_{T-1}|| (gamma sigma_max)^(T-1-t)
    sigma_max: float  # largest singular value of the initial W_h
    spectral_radius: float  # largest |eigenvalue| of the initial W_h
    gamma: float = 1.0  # bound on tanh'

    @property
    def measured_growth(self) -> float:
        """||dL/dh_0|| / ||dL/dh_{T-1}||, as measured."""
        return growth_factor(self.measured)

    @property
    def bound_growth(self) -> float:
        """(gamma sigma_max)^(T-1): the most the bound allows."""
        return float(self.bound[0] / self.bound[-1])


def bound_through_time(config: TrainConfig) -> BoundProbe:
    """Measure ||dL/dh_t|| at the initial weights of the RNN ``config`` describes,
    with Pascanu et al.'s bound from the largest singular value of W_h."""
    config = config.replace(network="rnn", tbptt=0, epochs=1)
    trainer = Trainer(config, record="summary", hidden_grads=True)
    spec = next(s for s in trainer.layout.specs if s.name == "recurrent kernel")
    w_h = trainer.initial_params[spec.offset : spec.offset + spec.size].view(*spec.shape)
    w_h = w_h.double().numpy()
    sigma_max = float(np.linalg.norm(w_h, ord=2))
    radius = float(np.max(np.abs(np.linalg.eigvals(w_h))))
    trainer.step(1)
    measured = trainer.records()["hidden_grad_norm"][0]
    back = np.arange(len(measured))[::-1]  # T-1-t
    bound = measured[-1] * sigma_max ** back.astype(float)
    return BoundProbe(measured, bound, sigma_max, radius)


def describe_bound(probe: BoundProbe) -> str:
    """The bound chart's numbers in words."""
    n = len(probe.measured) - 1
    return (
        f"At the initial weights the largest singular value of W_h is "
        f"{probe.sigma_max:.3g} and the spectral radius {probe.spectral_radius:.3g}. "
        f"Over the {n} steps back to time step 0 the bound allows growth by "
        f"σ_max^{n} = {format_factor(probe.bound_growth)} times; the gradient measured on "
        f"the first batch {_grew_or_faded(probe.measured_growth)}. "
        "The tanh slopes, all below 1, make the difference."
    )


def _grew_or_faded(factor: float) -> str:
    if not math.isfinite(factor):
        return "has no finite growth factor (a norm was zero or not finite)"
    if factor >= 1:
        return f"grew {format_factor(factor)} times"
    return f"faded to {format_factor(factor)} times its size at the last step"


# ---- RNN versus LSTM, trained side by side --------------------------------


@dataclass(frozen=True)
class NetRun:
    """One network trained for the page: its ``RunResult`` (with ``hidden_grad_norm``
    (steps, T) among the records), the time it took, and its unclipped twin."""

    result: RunResult
    seconds: float
    twin: NetRun | None = None  # the same net without clipping, when this one clips

    @property
    def final_test_loss(self) -> float:
        """Whole test set at the end (NaN after an explosion)."""
        return self.result.final_test_loss

    @property
    def mean_guess(self) -> float:
        """Test MSE of always answering the training targets' mean."""
        return self.result.mean_guess_test_loss

    @property
    def learned(self) -> bool:
        """Test MSE below ``LEARNED_FRACTION`` of the mean guess's (and no explosion)."""
        return self.result.learned

    @property
    def config(self) -> TrainConfig:
        return self.result.config

    @property
    def network(self) -> str:
        return self.config.network

    @property
    def records(self) -> dict[str, np.ndarray]:
        return self.result.records

    @property
    def epochs(self) -> dict[str, np.ndarray]:
        return self.result.epochs

    @property
    def layer_names(self) -> tuple[str, ...]:
        return self.result.layer_names

    @property
    def exploded_at(self) -> int | None:
        return self.result.exploded_at

    @property
    def explosion(self) -> str | None:
        """``Explosion.describe()``, e.g. "the loss became NaN or infinite"."""
        return self.result.explosion.describe() if self.result.explosion else None

    @property
    def initial_loss(self) -> float:
        """Whole training set, before any update."""
        return self.result.initial_train_loss

    @property
    def final_loss(self) -> float:
        """Whole training set at the end (NaN after an explosion)."""
        return self.result.final_train_loss

    @property
    def name(self) -> str:
        return NETWORK_NAMES[self.network]

    @property
    def steps(self) -> int:
        return len(self.records["step"])

    @property
    def hidden_grad_norm(self) -> np.ndarray:
        return self.records["hidden_grad_norm"]

    def growth_at(self, step: int) -> float:
        """``growth_factor`` at a 1-based training step."""
        return growth_factor(self.hidden_grad_norm[step - 1], self.config.tbptt)

    def largest_growth(self) -> tuple[int, float] | None:
        """The training step (1-based) with the largest finite growth factor, and the factor."""
        factors = np.array([self.growth_at(s) for s in range(1, self.steps + 1)])
        if not np.isfinite(factors).any():
            return None
        step = int(np.nanargmax(factors)) + 1
        return step, float(factors[step - 1])

    @property
    def clipped_fraction(self) -> float:
        return self.result.clipped_fraction


@dataclass(frozen=True)
class Runaway:
    """How an exploded run ended: the output layer's gradient climbing step after step.

    Once oversized steps have pushed the hidden units to the flat ends of their
    tanh (or a gate's sigmoid), the units pass almost nothing back, and the net
    behaves like a linear regression on nearly constant features: if the
    learning rate is too large for that regression, each step overshoots further
    than the last and the output layer's weights and gradient grow by a steady
    factor until float32 overflows.
    """

    start: int  # 1-based training step where the steady climb begins
    end: int  # the last step with a finite gradient
    factor: float  # the output layer's gradient norm grows by this per step (geometric mean)
    output_share: float  # the smallest share of the gradient norm in the output layer
    trigger: int | None  # the step with the largest gradient before the climb
    trigger_norm: float  # its gradient norm
    trigger_growth: float  # its growth back through time (growth_factor)


RUNAWAY_SHARE = 0.9  # the output layer carries at least this share of the gradient norm
RUNAWAY_MIN_STEPS = 3


def output_runaway(run: NetRun) -> Runaway | None:
    """The steady climb of the output layer's gradient before an explosion, if there is one.

    Read from the records: walking back from the last finite step, the steps at
    which the output layer's gradient norm grew over the previous step while it
    carried at least ``RUNAWAY_SHARE`` of the whole gradient norm.
    """
    if run.exploded_at is None or "layer_grad_norm" not in run.records:
        return None
    total = np.asarray(run.records["grad_norm"], dtype=float)
    layers = np.asarray(run.records["layer_grad_norm"], dtype=float)
    out = layers[:, run.layer_names.index("output")]
    finite = np.nonzero(np.isfinite(total) & np.isfinite(out))[0]
    if not finite.size:
        return None
    last = int(finite[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        share = out / total
    first = last
    while first > 0 and out[first] > out[first - 1] and share[first] >= RUNAWAY_SHARE:
        first -= 1
    if last - first < RUNAWAY_MIN_STEPS:
        return None
    factor = float((out[last] / out[first]) ** (1.0 / (last - first)))
    before = total[:first]
    trigger = int(np.nanargmax(before)) if before.size and np.isfinite(before).any() else None
    return Runaway(
        start=first + 1,
        end=last + 1,
        factor=factor,
        # step ``first`` is the climb's base; the growing steps are first+1 .. last
        output_share=float(np.nanmin(share[first + 1 : last + 1])),
        trigger=None if trigger is None else trigger + 1,
        trigger_norm=math.nan if trigger is None else float(before[trigger]),
        trigger_growth=math.nan if trigger is None else run.growth_at(trigger + 1),
    )


@dataclass(frozen=True)
class Comparison:
    """The vanilla RNN and the LSTM trained on the same task, seed and batches."""

    rnn: NetRun
    lstm: NetRun

    @property
    def runs(self) -> tuple[NetRun, NetRun]:
        return (self.rnn, self.lstm)


def epochs_for(config: TrainConfig, steps: int) -> int:
    """Epochs that cover ``steps`` optimizer steps."""
    per_epoch = math.ceil(config.n_train / config.batch_size)
    return max(1, math.ceil(steps / per_epoch))


def train_net(config: TrainConfig, steps: int, *, twin: bool = True) -> NetRun:
    """Train ``config`` for ``steps`` steps (or to its explosion), recording ||dL/dh_t||.

    With ``twin`` and a clipping config, the same net is also trained without
    clipping from the same initial weights on the same batches.
    """
    config = config.replace(epochs=epochs_for(config, steps)).validated()
    started = time.perf_counter()
    trainer = Trainer(config, hidden_grads=True)
    trainer.step(steps)
    seconds = time.perf_counter() - started
    return NetRun(
        result=trainer.result(evaluate_now=True),
        seconds=seconds,
        twin=train_net(config.replace(clip_mode="none"), steps, twin=False)
        if twin and config.clipped
        else None,
    )


def page_run_problems(config: TrainConfig, steps: int, *, twins: bool = True) -> list[str]:
    """Why a comparison is too long to run on the page (empty when it is fine)."""
    work = steps * config.seq_len * max(1.0, config.hidden_size / 32)
    if twins and config.clipped:
        work *= 2
    if work <= MAX_PAGE_WORK:
        return []
    advice = "fewer training steps, a shorter sequence"
    advice += ", fewer hidden units" if config.hidden_size > 32 else ""
    advice += ", or no unclipped twin" if twins and config.clipped else ""
    return [
        f"{steps} training steps over {config.seq_len}-step sequences is more than this page "
        f"trains at once (about {work / MAX_PAGE_WORK:.1f} times the limit): choose {advice}"
    ]


def compare_networks(config: TrainConfig, steps: int, *, twins: bool = True) -> Comparison:
    """Train the vanilla RNN and the LSTM with the settings of ``config``.

    Both share the task, sequence length, hidden size, seed (so the data and
    the batch order), learning rate, optimizer and clipping; the spectral
    radius applies to the RNN only (the LSTM's recurrent kernels stay
    orthogonal, its usual initialisation).
    """
    if not 1 <= steps <= MAX_PAGE_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_PAGE_STEPS}, got {steps}")
    return Comparison(
        rnn=train_net(config.replace(network="rnn"), steps, twin=twins),
        lstm=train_net(config.replace(network="lstm"), steps, twin=twins),
    )


# ---- what truncation costs ---------------------------------------------------

# The truncation study's shared settings: an LSTM that learns the adding problem
# well with full backpropagation (Adam, learning rate 0.01), so that any difference
# comes from the cut alone. T = 40 puts the first marked number in steps 0..19.
TRUNCATION_BASE = TrainConfig(
    network="lstm", task="adding", seq_len=40, hidden_size=32, optimizer="adam", lr=0.01,
    batch_size=32, n_train=512, target_scaling="none", clip_mode="none", seed=1,
)  # fmt: skip
TRUNCATION_KS = (0, 10, 4)  # full backpropagation, then two cuts below T/2
TRUNCATION_STEPS = 480
TRUNCATION_EVERY = 16  # training steps between two test-set evaluations


@dataclass(frozen=True)
class TruncationRun:
    """One net of the study: its test MSE over training."""

    tbptt: int  # 0: full backpropagation through time
    steps: np.ndarray  # training steps at which the test set was evaluated (0 = start)
    test_loss: np.ndarray  # test MSE at those steps
    exploded_at: int | None

    @property
    def label(self) -> str:
        return "full backpropagation" if self.tbptt == 0 else f"truncated to k = {self.tbptt}"

    @property
    def final_test_loss(self) -> float:
        return float(self.test_loss[-1])

    def first_step_below(self, level: float) -> int | None:
        """The first evaluated training step whose test MSE is below ``level``."""
        below = np.nonzero(np.asarray(self.test_loss) < level)[0]
        return int(self.steps[below[0]]) if below.size else None


@dataclass(frozen=True)
class TruncationStudy:
    """The same net trained with full and with truncated backpropagation."""

    config: TrainConfig  # the shared settings (tbptt of the first run)
    runs: tuple[TruncationRun, ...]
    mean_guess: float

    @property
    def learned_level(self) -> float:
        return LEARNED_FRACTION * self.mean_guess


def truncation_study(
    config: TrainConfig = TRUNCATION_BASE,
    ks: tuple[int, ...] = TRUNCATION_KS,
    steps: int = TRUNCATION_STEPS,
    every: int = TRUNCATION_EVERY,
) -> TruncationStudy:
    """Train ``config`` once per truncation length in ``ks`` (0 = full), same start and
    batches, and evaluate the test MSE every ``every`` steps."""
    runs = []
    for k in ks:
        run_config = config.replace(tbptt=k, epochs=epochs_for(config, steps)).validated()
        trainer = Trainer(run_config, record="summary", evaluate_epochs=False)
        data = trainer.data
        at, losses = [0], [float(trainer.initial_test_loss[0])]
        while trainer.step_count < steps and not trainer.done:
            trainer.step(min(every, steps - trainer.step_count))
            at.append(trainer.step_count)
            losses.append(float(trainer.evaluate(data.x_test, data.y_test)[0]))
        runs.append(TruncationRun(k, np.array(at), np.array(losses), trainer.exploded_at))
    return TruncationStudy(config, tuple(runs), mean_guess_mse(config))


def describe_truncation(study: TruncationStudy) -> list[str]:
    """Sentences, computed from the study, on what each cut cost."""
    level = study.learned_level
    sentences = [
        f"Always answering the mean scores a test MSE of {study.mean_guess:.3g}; "
        f"below half of that, {level:.3g}, a net must have learned the first marked number, "
        f"which lies {study.config.seq_len // 2} or more steps before the end."
    ]
    for run in study.runs:
        first = run.first_step_below(level)
        text = f"With {run.label}, the test MSE ended at {run.final_test_loss:.3g} after {run.steps[-1]} steps"
        if run.exploded_at is not None:
            text += f" (it exploded at step {run.exploded_at})"
        elif first is None:
            text += f", never below {level:.3g}"
        else:
            text += f"; it first went below {level:.3g} at step {first}"
        sentences.append(text + ".")
    return sentences


# ---- words ------------------------------------------------------------------

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def settings_text(config: TrainConfig, *, rnn: bool = True, truncation: bool = True) -> str:
    """The settings a run ran with, in one line for the page.

    ``rnn`` includes the RNN's spectral radius; ``truncation`` the truncation length.
    """
    clipping = {
        "none": "no clipping",
        "norm": f"global norm clipping at {config.clip_norm:g}",
        "layerwise_value": (
            f"per-layer clipping to ±{config.clip_value:g} (recurrent) and "
            f"±{config.clip_value_output:g} (output)"
        ),
    }.get(config.clip_mode, config.label())
    optimizer = (
        f"SGD with learning rate {config.lr:g} and momentum {config.momentum:g}"
        if config.optimizer == "sgd"
        else f"Adam with learning rate {config.lr:g}"
    )
    parts = [
        f"T = {config.seq_len} steps",
        f"{config.hidden_size} hidden units",
        f"RNN spectral radius {config.recurrent_scale:g}" if rnn else None,
        (f"truncation k = {config.tbptt}" if config.tbptt else "full backpropagation")
        if truncation
        else None,
        optimizer,
        f"batches of {config.batch_size} from {config.n_train} training sequences",
        clipping,
        f"seed {config.seed}",
    ]
    return ", ".join(p for p in parts if p)


def format_factor(x: float) -> str:
    """A growth factor for reading: '2.1', '340', '3.4 × 10⁵', '1.2 × 10⁻⁵'."""
    if not math.isfinite(x):
        return "infinite" if x > 0 else "undefined"
    if x == 0:
        return "0"
    if 0.01 <= abs(x) < 10_000:
        rounded = float(f"{x:.3g}")  # three significant digits, without "1e+03"
        if abs(rounded) < 10_000:
            return f"{rounded:g}"
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def _times(run: NetRun, step: int) -> str:
    factor = run.growth_at(step)
    if math.isfinite(factor):
        return f"{format_factor(factor)} times"
    return "not comparable (one of the two was zero or not finite)"


def describe(comparison: Comparison) -> list[str]:
    """Sentences, computed from the runs, that say what the charts show."""
    rnn, lstm = comparison.runs
    tbptt = rnn.config.tbptt
    first = f"time step {rnn.config.seq_len - tbptt}" if tbptt else "time step 0"
    sentences = [
        f"At training step 1, before any update, the gradient at {first} was "
        f"{_times(rnn, 1)} the gradient at the last time step in the {rnn.name}, "
        f"and {_times(lstm, 1)} in the {lstm.name}."
    ]
    largest = rnn.largest_growth()
    if largest is not None and largest[0] != 1:
        step = largest[0]
        sentences.append(
            f"The {rnn.name}'s largest factor came at training step {step}: "
            f"{_times(rnn, step)}; at that step the {lstm.name}'s was {_times(lstm, step)}."
        )
    if tbptt:
        sentences.append(
            f"With truncation at k = {tbptt}, no gradient reaches the first "
            f"{rnn.config.seq_len - tbptt} time steps: the product has at most {tbptt} factors."
        )
    sentences += [_outcome(run) for run in comparison.runs]
    return sentences


def verdict(run: NetRun) -> str:
    """What a run did, in a few words: exploded, learned, or stayed finite without learning."""
    if run.exploded_at is not None:
        return f"exploded at step {run.exploded_at}"
    if not math.isfinite(run.mean_guess):
        return f"trained {run.steps} steps without exploding"
    if run.learned:
        return (
            f"learned: test MSE {run.final_test_loss:.3g}, below half the mean guess's "
            f"{run.mean_guess:.3g}"
        )
    if run.final_test_loss < run.mean_guess:
        return (
            f"stayed finite but has not learned the task yet: test MSE "
            f"{run.final_test_loss:.3g}, not below half the mean guess's {run.mean_guess:.3g}"
        )
    return (
        f"stayed finite but learned nothing: test MSE {run.final_test_loss:.3g}, no better "
        f"than always guessing the mean ({run.mean_guess:.3g})"
    )


def _share_text(share: float) -> str:
    """'at least 93%', or 'more than 99%' (never a rounded 'at least 100%')."""
    return "more than 99%" if share > 0.99 else f"at least {math.floor(share * 100)}%"


def describe_runaway(run: NetRun) -> str:
    """How an exploded run got there, from its records (empty when there is no climb)."""
    climb = output_runaway(run)
    if climb is None:
        return ""
    text = ""
    if climb.trigger is not None:
        text += (
            f"The largest gradient before the end, {climb.trigger_norm:.3g} at step "
            f"{climb.trigger}, "
        )
        growth = climb.trigger_growth
        if math.isfinite(growth) and growth > 1:
            text += f"had grown {format_factor(growth)} times back through time; "
        elif math.isfinite(growth):
            text += f"had faded back through time (factor {format_factor(growth)}); "
        else:
            text += "reached no early time step; "
        text += "such steps throw the weights far. "
    text += (
        f"From step {climb.start} to {climb.end} the output layer carried "
        f"{_share_text(climb.output_share)} of the gradient, and its gradient grew about "
        f"{format_factor(climb.factor)} times per step: with the hidden units pushed to the "
        "flat ends of their squashing functions, each update of the output layer "
        "overshot further than the last, until float32 overflowed."
    )
    return text


def _outcome(run: NetRun) -> str:
    if run.exploded_at is not None:
        text = f"The {run.name} exploded at training step {run.exploded_at}: {run.explosion}."
        story = describe_runaway(run)
        text += f" {story}" if story else ""
    else:
        text = f"The {run.name} ran all {run.steps} steps without exploding and {verdict(run)}."
    if run.config.clipped:
        text += f" Clipping changed the gradient at {run.clipped_fraction:.0%} of its steps."
        twin = run.twin
        if twin is not None:
            if twin.exploded_at is not None:
                text += f" Without clipping it exploded at step {twin.exploded_at}."
            else:
                text += f" Without clipping it did not explode either: it {verdict(twin)}."
    return text
