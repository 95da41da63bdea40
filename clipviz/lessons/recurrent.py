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
from clipviz.engine.result import RunResult
from clipviz.engine.trainer import Trainer

NETWORK_NAMES = {"rnn": "vanilla RNN", "lstm": "LSTM"}
MAX_PAGE_STEPS = 400  # training steps per net on the page
# The LSTM dominates a page run's cost: about (steps x time steps) unrolled LSTM steps,
# twice with an unclipped twin, more with wide nets. This bound keeps a run to seconds.
MAX_PAGE_WORK = 100_000


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


# ---- RNN versus LSTM, trained side by side --------------------------------


@dataclass(frozen=True)
class NetRun:
    """One network trained for the page: its ``RunResult`` (with ``hidden_grad_norm``
    (steps, T) among the records), the time it took, and its unclipped twin."""

    result: RunResult
    seconds: float
    twin: NetRun | None = None  # the same net without clipping, when this one clips

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


# ---- words ------------------------------------------------------------------

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def settings_text(config: TrainConfig) -> str:
    """The settings a comparison ran with, in one line for the page."""
    clipping = {
        "none": "no clipping",
        "norm": f"global norm clipping at {config.clip_norm:g}",
        "layerwise_value": (
            f"per-layer clipping to ±{config.clip_value:g} (recurrent) and "
            f"±{config.clip_value_output:g} (output)"
        ),
    }.get(config.clip_mode, config.label())
    parts = [
        f"T = {config.seq_len} steps",
        f"{config.hidden_size} hidden units",
        f"RNN spectral radius {config.recurrent_scale:g}",
        f"truncation k = {config.tbptt}" if config.tbptt else "full backpropagation",
        f"learning rate {config.lr:g}",
        f"momentum {config.momentum:g}",
        clipping,
        f"seed {config.seed}",
    ]
    return ", ".join(parts)


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


def _outcome(run: NetRun) -> str:
    if run.exploded_at is not None:
        text = f"The {run.name} exploded at training step {run.exploded_at}: {run.explosion}."
    else:
        text = (
            f"The {run.name} trained all {run.steps} steps without exploding; its training "
            f"loss went from {run.initial_loss:.3g} to {run.final_loss:.3g}"
        )
        # Finite is not the same as learning: say so when it ended worse than it began.
        text += ", worse than where it started." if run.final_loss > run.initial_loss else "."
    if run.config.clipped:
        text += f" Clipping changed the gradient at {run.clipped_fraction:.0%} of its steps."
        twin = run.twin
        if twin is not None:
            if twin.exploded_at is not None:
                text += f" Without clipping it exploded at step {twin.exploded_at}."
            else:
                text += (
                    " Without clipping it did not explode either (final loss "
                    f"{twin.final_loss:.3g})."
                )
    return text
