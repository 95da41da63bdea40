"""What a run produced: one ``RunResult`` for every page, figure and command.

``Trainer.result(lane)`` freezes a lane's run into plain arrays and numbers:
the per-step records, the per-epoch losses, the explosion if there was one,
and the summary statistics the pages and the command line report. Figures
draw from it (``clipviz.figures.training.RunTrace.from_result``), the
tutorial's chapters and the recurrent page keep it, and ``train --json``
prints ``as_dict()``.

Losses are kept in the units the network trains on (a standardized target's
MSE is in standardized units); ``to_original_mse`` converts an MSE back to the
target's own units (MSE scales with the square of the target's scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from clipviz.engine.config import TrainConfig

# A run has learned when its final test loss is below this share of the loss of a
# net that learned nothing about the inputs (always the training mean, or the class
# frequencies): the progress detector behind every "it trains" the app says.
LEARNED_FRACTION = 0.5
# With skip_nonfinite, this many skipped steps in a row end a lane's run: more
# than an epoch of the presets' 16 batches, so every batch has been tried.
SKIP_LIMIT = 20


@dataclass(frozen=True)
class Explosion:
    """Where and how a lane's run went non-finite."""

    step: int  # 1-based optimizer step
    quantity: str  # "loss", "gradient", "weights" or "skipping" (too many skipped steps)
    layer: str | None  # the first layer where it happened (None for the loss)
    grad_norm_before: float | None  # the gradient norm of the last finite step
    # The largest |component| of the gradient at the step, when it is known to be
    # finite: then only the float32 sum of squares inside the norm overflowed.
    largest_component: float | None = None

    def describe(self) -> str:
        if self.quantity == "skipping":
            return (
                f"{SKIP_LIMIT} steps in a row were skipped because the loss or the gradient "
                "was not finite: the weights stay where every batch overflows, so skipping "
                "cannot bring the run back"
            )
        where = f" in layer '{self.layer}'" if self.layer else ""
        if self.quantity == "gradient" and self.largest_component is not None:
            return (
                f"the gradient norm{where} overflowed float32: every component was finite "
                f"(the largest {self.largest_component:.2g}), but the sum of their squares "
                "passed float32's limit of about 3.4e38, so PyTorch's clip_grad_norm_ "
                "would return inf too"
            )
        what = {"loss": "the loss", "gradient": "the gradient", "weights": "the weights"}[
            self.quantity
        ]
        return f"{what}{where} became NaN or infinite"


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class RunResult:
    """One lane's run so far, as plain arrays (a snapshot: it never changes)."""

    config: TrainConfig
    records: dict[str, np.ndarray]  # per step, ``Trainer.records`` names
    epochs: dict[str, np.ndarray]  # "epoch", "train_loss", "test_loss" (trained units)
    layer_names: tuple[str, ...]
    batches_per_epoch: int
    total_steps: int
    explosion: Explosion | None
    initial_train_loss: float  # whole training set before the first update (trained units)
    initial_test_loss: float
    kind: str = "regression"  # or "classification" (loss: cross-entropy)
    # The test loss of predicting the training mean (class frequencies), trained units.
    mean_guess_test_loss: float = math.nan
    target_scale: float = 1.0  # the target's scale: original MSE = MSE * scale**2
    extras: dict[str, float] = field(default_factory=dict)  # per-run facts (e.g. skipped steps)
    # (train, test) whole-set losses measured when the result was taken, for a run
    # stopped between epochs; None: the last completed epoch's are the final ones.
    losses_now: tuple[float, float] | None = None
    accuracies_now: tuple[float, float] | None = None  # likewise, for classification

    # ---- what happened ---------------------------------------------------
    @property
    def steps(self) -> int:
        return len(self.records.get("step", ()))

    @property
    def exploded_at(self) -> int | None:
        return self.explosion.step if self.explosion else None

    @property
    def done(self) -> bool:
        return self.explosion is not None or self.steps >= self.total_steps

    @property
    def max_grad_norm(self) -> float:
        """The largest finite gradient norm before clipping (NaN before the first step)."""
        norms = self.records.get("grad_norm", np.zeros(0))
        finite = norms[np.isfinite(norms)]
        return float(finite.max()) if finite.size else math.nan

    @property
    def clipped_fraction(self) -> float:
        """The fraction of steps at which clipping changed the gradient."""
        clipped = self.records.get("clipped")
        if clipped is None or not clipped.size:
            return 0.0
        return float(np.nanmean(clipped))

    @property
    def final_train_loss(self) -> float:
        """The whole training set's loss at the end (trained units); NaN once exploded.

        That is the last completed epoch's, or ``losses_now`` when the result was
        taken between epochs with ``Trainer.result(evaluate_now=True)``."""
        return self._final("train_loss")

    @property
    def final_test_loss(self) -> float:
        return self._final("test_loss")

    def _final(self, key: str) -> float:
        if self.explosion is not None:
            return math.nan
        if self.losses_now is not None:
            return float(self.losses_now[0 if key == "train_loss" else 1])
        values = self.epochs.get(key, np.zeros(0))
        return float(values[-1]) if values.size else math.nan

    @property
    def learned(self) -> bool:
        """The progress detector: the run did not explode and its final test loss is
        below ``LEARNED_FRACTION`` of the mean guess's. Only then is "it trains" said."""
        final = self.final_test_loss
        return (
            self.explosion is None
            and math.isfinite(final)
            and final < LEARNED_FRACTION * self.mean_guess_test_loss
        )

    @property
    def final_train_accuracy(self) -> float:
        """Classification: the share of training examples right at the end, in [0, 1]
        (NaN for a regression, and once exploded)."""
        return self._final_accuracy(0)

    @property
    def final_test_accuracy(self) -> float:
        return self._final_accuracy(1)

    def _final_accuracy(self, which: int) -> float:
        if self.kind != "classification" or self.explosion is not None:
            return math.nan
        if self.accuracies_now is not None:
            return float(self.accuracies_now[which])
        values = self.epochs.get(("train_accuracy", "test_accuracy")[which], np.zeros(0))
        return float(values[-1]) if values.size else math.nan

    # ---- units -----------------------------------------------------------
    def to_original_mse(self, mse: float | np.ndarray) -> float | np.ndarray:
        """An MSE in trained units, in the target's original units (identity for
        classification, whose loss has no units to convert)."""
        if self.kind != "regression":
            return mse
        return mse * self.target_scale**2

    @property
    def final_train_mse(self) -> float:
        """``final_train_loss`` in the target's original units."""
        return float(self.to_original_mse(self.final_train_loss))

    @property
    def final_test_mse(self) -> float:
        return float(self.to_original_mse(self.final_test_loss))

    # ---- for the command line --------------------------------------------
    def as_dict(self) -> dict:
        """What ``train --json`` prints (losses in the target's original units)."""
        return {
            "config": self.config.to_params(),
            "steps": self.steps,
            "exploded_at": self.exploded_at,
            "explosion": self.explosion.describe() if self.explosion else None,
            "final_train_loss": _finite_or_none(self.final_train_mse),
            "final_test_loss": _finite_or_none(self.final_test_mse),
            "max_grad_norm": _finite_or_none(self.max_grad_norm),
            "clipped_fraction": self.clipped_fraction,
            "final_train_accuracy": _finite_or_none(self.final_train_accuracy),
            "final_test_accuracy": _finite_or_none(self.final_test_accuracy),
            "learned": self.learned,
            "mean_guess_test_loss": _finite_or_none(
                float(self.to_original_mse(self.mean_guess_test_loss))
            ),
            **self.extras,
        }
