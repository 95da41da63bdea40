"""Signs of exploding gradients found in a run's records, and fixes that fit.

The six signs are those the practitioner literature lists (Brownlee's
"A Gentle Introduction to Exploding Gradients", after Goodfellow, Bengio &
Courville 2016 and Pascanu, Mikolov & Bengio 2013). ``find_signs`` looks for
each in per-step records and says at which step it first shows; ``suggest_fixes``
proposes configuration changes that address what was found, each as a dict of
``TrainConfig`` changes a page can apply in one click.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from clipviz.config import TrainConfig
from clipviz.trainer import Explosion, Trainer


@dataclass(frozen=True)
class Sign:
    key: str
    title: str
    why: str  # one or two plain sentences


SIGNS: tuple[Sign, ...] = (
    Sign(
        "no_progress",
        "The loss does not improve",
        "Updates are so large that each one undoes the last, so training makes no headway.",
    ),
    Sign(
        "loss_swings",
        "The loss jumps wildly between updates",
        "A single oversized step lands the weights somewhere much worse, and the loss leaps.",
    ),
    Sign(
        "loss_nan",
        "The loss becomes NaN",
        "The numbers overflowed float32; from here on every prediction is NaN.",
    ),
    Sign(
        "weights_grow",
        "The weights grow very large, fast",
        "Huge gradients times the learning rate push the weights far from where they started.",
    ),
    Sign(
        "weights_nan",
        "The weights become NaN",
        "An update overflowed; a NaN weight poisons every output that depends on it.",
    ),
    Sign(
        "grads_above_one",
        "Gradients stay above 1.0 in every layer",
        "Backpropagation multiplies factors layer by layer (or step by step in time); "
        "when they are persistently large, the product grows exponentially.",
    ),
)
SIGN_BY_KEY = {s.key: s for s in SIGNS}

# General fixes, in the order the sources give them (for the home page).
FIX_NOTES: tuple[tuple[str, str], ...] = (
    ("Scale the target", "Standardize or normalize it, so errors and gradients start small."),
    ("Lower the learning rate", "Smaller steps cannot throw the weights as far."),
    ("Use fewer layers", "Fewer factors in the backpropagated product."),
    ("Use a smaller batch size", "Suggested by the sources for some networks; try it with care."),
    (
        "Truncate backpropagation through time",
        "Recurrent nets: send the gradient back only k steps.",
    ),
    (
        "Use LSTM units",
        "Their gated, additive cell state carries gradients more stably than a tanh RNN.",
    ),
    (
        "Penalise large weights",
        "An L1 or L2 penalty (weight decay), e.g. on the recurrent weights.",
    ),
    ("Clip the gradient", "Rescale it when its norm passes a threshold, or clamp each value."),
)

GROWTH_FACTOR = 10.0  # "very large": ten times the initial weight norm
SWING_FACTOR = 10.0  # "wildly": the loss rises tenfold in one update
ABOVE_ONE_WINDOW = 20  # "consistently": 20 steps in a row


@dataclass(frozen=True)
class Finding:
    """A sign seen in a run: which, at which step, and the numbers behind it."""

    key: str
    step: int
    detail: str

    @property
    def sign(self) -> Sign:
        return SIGN_BY_KEY[self.key]


@dataclass(frozen=True)
class Fix:
    """A one-click change of settings that addresses what was found."""

    key: str
    label: str
    why: str
    changes: dict = field(default_factory=dict)

    def apply(self, config: TrainConfig) -> TrainConfig:
        return config.replace(**self.changes)


def find_signs(
    records: dict[str, np.ndarray],
    *,
    initial_weight_norm: float,
    batches_per_epoch: int,
    explosion: Explosion | None = None,
) -> list[Finding]:
    """The signs present in per-step ``records`` (``Trainer.records``), in step order."""
    found: list[Finding] = []
    loss = records["loss"]
    steps = records["step"]
    if loss.size == 0:
        return found

    finite = np.isfinite(loss)
    if not finite.all():
        i = int(np.argmin(finite))
        found.append(
            Finding("loss_nan", int(steps[i]), f"the loss is {loss[i]} at step {steps[i]}")
        )

    weight_norm = records.get("weight_norm")
    if weight_norm is not None:
        bad = ~np.isfinite(weight_norm)
        if bad.any():
            i = int(np.argmax(bad))
            found.append(
                Finding("weights_nan", int(steps[i]), f"the weight norm is {weight_norm[i]}")
            )
        big = np.isfinite(weight_norm) & (weight_norm > GROWTH_FACTOR * initial_weight_norm)
        if big.any():
            i = int(np.argmax(big))
            found.append(
                Finding(
                    "weights_grow",
                    int(steps[i]),
                    f"the weight norm reached {weight_norm[i]:.3g}, "
                    f"{weight_norm[i] / initial_weight_norm:.0f}x its initial {initial_weight_norm:.3g}",
                )
            )
    elif explosion is not None and explosion.quantity == "weights":
        found.append(Finding("weights_nan", explosion.step, explosion.describe()))

    if loss.size >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = loss[1:] / loss[:-1]
        jumps = np.isfinite(ratio) & (ratio > SWING_FACTOR)
        if jumps.any():
            i = int(np.argmax(jumps)) + 1
            found.append(
                Finding(
                    "loss_swings",
                    int(steps[i]),
                    f"the loss rose {ratio[i - 1]:.0f}x in one update, "
                    f"from {loss[i - 1]:.3g} to {loss[i]:.3g}",
                )
            )

    epoch = max(1, batches_per_epoch)
    if loss.size >= 2 * epoch:
        first = np.nanmedian(loss[:epoch]) if np.isfinite(loss[:epoch]).any() else np.nan
        n_epochs = loss.size // epoch
        for e in range(1, n_epochs):
            window = loss[e * epoch : (e + 1) * epoch]
            current = np.nanmedian(window) if np.isfinite(window).any() else np.inf
            if e >= 1 and not current < 0.9 * first:
                found.append(
                    Finding(
                        "no_progress",
                        int(steps[(e + 1) * epoch - 1]),
                        f"the median loss of epoch {e + 1} ({current:.3g}) is no better than "
                        f"that of epoch 1 ({first:.3g})",
                    )
                )
                break

    layer_norms = records.get("layer_grad_norm")
    if layer_norms is not None and layer_norms.shape[0] >= ABOVE_ONE_WINDOW:
        above = np.all(np.nan_to_num(layer_norms, nan=np.inf) > 1.0, axis=1)
        run = np.convolve(above.astype(int), np.ones(ABOVE_ONE_WINDOW, dtype=int), mode="valid")
        hits = np.nonzero(run == ABOVE_ONE_WINDOW)[0]
        if hits.size:
            i = int(hits[0])
            smallest = float(np.nanmin(layer_norms[i : i + ABOVE_ONE_WINDOW]))
            found.append(
                Finding(
                    "grads_above_one",
                    int(steps[i]),
                    f"from step {steps[i]}, every layer's gradient norm stayed above 1 for "
                    f"{ABOVE_ONE_WINDOW} steps (smallest {smallest:.3g})",
                )
            )
    return sorted(found, key=lambda f: f.step)


def signs_of(trainer: Trainer, lane: int = 0) -> list[Finding]:
    """The signs present in a trainer's records so far (``find_signs`` on its run)."""
    return find_signs(
        trainer.records(lane),
        initial_weight_norm=float(torch.linalg.vector_norm(trainer.initial_params)),
        batches_per_epoch=trainer.batches_per_epoch,
        explosion=trainer.explosions[lane],
    )


def suggest_fixes(config: TrainConfig, findings: list[Finding], *, exploded: bool) -> list[Fix]:
    """Fixes that fit this config, most direct first. Empty when all is well."""
    if not exploded and not findings:
        return []
    fixes: list[Fix] = []
    if config.clip_mode == "none":
        fixes.append(
            Fix(
                "clip_norm",
                "Clip by norm at 1.0",
                "Caps the length of every update; the direction is kept.",
                {"clip_mode": "norm", "clip_norm": 1.0},
            )
        )
    elif config.uses_clip_norm and config.clip_norm > 0.1:
        fixes.append(
            Fix(
                "lower_threshold",
                f"Clip norm {config.clip_norm:g} -> {config.clip_norm / 10:g}",
                "A tighter cap on each update.",
                {"clip_norm": config.clip_norm / 10},
            )
        )
    regression = config.network == "mlp" or config.task == "adding"
    if regression and config.target_scaling == "none":
        fixes.append(
            Fix(
                "standardize",
                "Standardize the target",
                "Targets near 0 with unit spread give small errors, so small gradients.",
                {"target_scaling": "standardize"},
            )
        )
    if config.lr > 1e-4:
        fixes.append(
            Fix(
                "lr_div_10",
                f"Learning rate / 10 ({config.lr / 10:.3g})",
                "Smaller steps; the same gradient moves the weights ten times less.",
                {"lr": float(f"{config.lr / 10:.6g}")},
            )
        )
    if config.network == "rnn":
        fixes.append(
            Fix(
                "use_lstm",
                "Use an LSTM",
                "Gates keep the gradient through time in check.",
                {"network": "lstm"},
            )
        )
    if config.is_recurrent and config.tbptt == 0 and config.seq_len >= 20:
        k = max(5, config.seq_len // 10)
        fixes.append(
            Fix(
                "tbptt",
                f"Truncate backprop to {k} steps",
                "The gradient crosses at most k recurrent Jacobians.",
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
    return fixes
