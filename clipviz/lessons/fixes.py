"""Fixes for a run that explodes or shows a sign, each tried before it is offered.

``candidate_fixes`` lists the changes of settings the sources recommend that
fit a configuration (clip the gradient, scale the target, a smaller learning
rate, an LSTM for a vanilla RNN, truncated backpropagation, fewer layers, an
L2 penalty). ``verify_fixes`` trains every candidate from the same start on
the same batches (same seed) to the end, and says what each did: a fix is
offered only when its run neither exploded nor failed to learn (the progress
detector, ``RunResult.learned``: final test loss below half that of a net
that always guesses the mean). Each outcome is a sentence computed from the
run ("trains to step 1,600, final test MSE 21.3").

The candidates differ in their network, data or optimizer, not only in a
learning rate or threshold, so they are trained one after another rather than
as lanes of one trainer; without per-step records a reference run takes about
a tenth of a second (``python -m clipviz bench``), and pages cache the result
per configuration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from clipviz.engine.config import TrainConfig
from clipviz.engine.labstate import lab_url
from clipviz.engine.result import RunResult
from clipviz.engine.trainer import Trainer


@dataclass(frozen=True)
class Fix:
    """A one-click change of settings that addresses what was found."""

    key: str
    label: str
    why: str
    changes: dict = field(default_factory=dict)

    def apply(self, config: TrainConfig) -> TrainConfig:
        return config.replace(**self.changes).canonical()


def candidate_fixes(config: TrainConfig) -> list[Fix]:
    """The fixes that fit this config, most direct first (for a run that explodes or
    shows a sign; a healthy run needs none, and its callers do not ask)."""
    fixes: list[Fix] = []
    if config.clip_mode == "none":
        fixes.append(
            Fix(
                "clip_norm",
                "Clip by norm at 1.0",
                "Rescales any gradient longer than 1 to length 1; its direction is kept.",
                {"clip_mode": "norm", "clip_norm": 1.0},
            )
        )
    elif config.uses_clip_norm and config.clip_norm > 1e-3:
        tighter = float(f"{config.clip_norm / 10:.6g}")
        fixes.append(
            Fix(
                "lower_threshold",
                f"Clip norm {config.clip_norm:g} -> {tighter:g}",
                "A tighter cap on the gradient's length.",
                {"clip_norm": tighter},
            )
        )
    regression = config.network == "mlp" or config.task == "adding"
    if regression and config.target_scaling == "none":
        fixes.append(
            Fix(
                "standardize",
                "Standardize the target",
                "A target with mean 0 and spread 1 makes small errors, so small gradients.",
                {"target_scaling": "standardize"},
            )
        )
    if config.lr > 1e-4:
        smaller = float(f"{config.lr / 10:.6g}")
        fixes.append(
            Fix(
                "lr_div_10",
                f"Learning rate / 10 ({smaller:g})",
                "Smaller steps: the same gradient moves the weights ten times less.",
                {"lr": smaller},
            )
        )
    if config.network == "rnn":
        fixes.append(
            Fix(
                "use_lstm",
                "Use an LSTM",
                "Its gated, additive cell state carries the gradient through time more "
                "stably than a tanh RNN.",
                {"network": "lstm"},
            )
        )
    if config.is_recurrent and config.tbptt == 0 and config.sequence_length >= 20:
        k = max(5, config.sequence_length // 10)
        fixes.append(
            Fix(
                "tbptt",
                f"Truncate backprop to {k} steps",
                "The gradient crosses at most k recurrent steps, so at most k factors multiply it.",
                {"tbptt": k},
            )
        )
    if config.network == "mlp" and config.depth > 2:
        fixes.append(
            Fix(
                "fewer_layers",
                f"Use {config.depth // 2} hidden layers",
                "Fewer factors in the backpropagated product.",
                {"depth": config.depth // 2},
            )
        )
    if config.weight_decay == 0:
        fixes.append(
            Fix(
                "weight_decay",
                "Add L2 weight decay 1e-3",
                "Penalises large weights, pulling them back every step.",
                {"weight_decay": 1e-3},
            )
        )
    return [f for f in fixes if not f.apply(config).problems()]


@dataclass(frozen=True)
class VerifiedFix:
    """A candidate fix and what its run did, trained to the end."""

    fix: Fix
    result: RunResult

    @property
    def config(self) -> TrainConfig:
        return self.result.config

    @property
    def works(self) -> bool:
        """Offered only if it works: no explosion, and the run learned."""
        return self.result.learned

    @property
    def exploded_at(self) -> int | None:
        return self.result.exploded_at

    @property
    def final_test_loss(self) -> float:
        """In the target's original units (MSE), or cross-entropy; NaN if it exploded."""
        return self.result.final_test_mse

    @property
    def query(self) -> str:
        """The Lab query string of the fixed configuration (the one codec)."""
        return lab_url(self.config).partition("?")[2]

    @property
    def outcome(self) -> str:
        """What the run did, in one computed sentence."""
        result = self.result
        loss = _loss_name(result)
        if result.exploded_at is not None:
            return f"still explodes, at step {result.exploded_at:,}"
        final = self.final_test_loss
        guess = float(result.to_original_mse(result.mean_guess_test_loss))
        if result.learned:
            return f"trains to step {result.steps:,}, final test {loss} {_num(final)}"
        return (
            f"stays finite but does not learn: final test {loss} {_num(final)}, against "
            f"{_num(guess)} for always guessing the mean"
        )

    def as_dict(self) -> dict:
        final = self.final_test_loss
        return {
            "label": self.fix.label,
            "query": self.query,
            "outcome": self.outcome,
            "works": self.works,
            "exploded_at": self.exploded_at,
            "final_test_loss": final if math.isfinite(final) else None,
        }


def _loss_name(result: RunResult) -> str:
    return "cross-entropy" if result.kind == "classification" else "MSE"


def _num(value: float) -> str:
    """3 significant digits below 100, whole numbers with separators above."""
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def run_to_end(config: TrainConfig) -> RunResult:
    """Train ``config`` to the end without per-step records; its final losses measured."""
    trainer = Trainer(config, record="summary", evaluate_epochs=False).run()
    return trainer.result(evaluate_now=True)


def verify_fixes(config: TrainConfig) -> list[VerifiedFix]:
    """Every candidate fix, trained to the end from the same start (same seed)."""
    return [VerifiedFix(fix, run_to_end(fix.apply(config))) for fix in candidate_fixes(config)]


def offered(verified: Sequence[VerifiedFix]) -> list[VerifiedFix]:
    """The fixes that worked, in the candidates' order."""
    return [v for v in verified if v.works]
