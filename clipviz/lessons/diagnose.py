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

from clipviz.engine.config import TrainConfig
from clipviz.engine.trainer import Explosion, Trainer


@dataclass(frozen=True)
class Sign:
    key: str
    title: str
    why: str  # one or two plain sentences


SIGNS: tuple[Sign, ...] = (
    Sign(
        "no_progress",
        "The loss does not improve",
        "Training makes no headway: the steps are thrown too far to settle, or they have "
        "left the network unable to learn (for example, every ReLU unit dead).",
    ),
    Sign(
        "loss_swings",
        "The loss jumps wildly between updates",
        "A single oversized step lands the weights somewhere much worse, and the loss leaps "
        "above where training started.",
    ),
    Sign(
        "loss_nan",
        "The loss becomes NaN",
        "The numbers overflowed float32 (to inf, then NaN); from there on every prediction is NaN.",
    ),
    Sign(
        "weights_grow",
        "The weights grow very large, fast",
        "Huge gradients times the learning rate throw the weights: their norm multiplies "
        "tenfold within a few updates.",
    ),
    Sign(
        "weights_nan",
        "The weights become NaN",
        "An update overflowed; a NaN weight poisons every output that depends on it.",
    ),
    Sign(
        "dead_units",
        "Every ReLU unit of a layer is dead",
        "An oversized step pushed each unit below zero on every input. A dead unit passes "
        "no gradient back, so nothing revives it, and the network outputs one constant.",
    ),
    Sign(
        "grads_above_one",
        "Gradients above 1.0 for each node and layer",
        "Nearly every component of the gradient that reaches the weights is larger than 1, "
        "step after step: backpropagation's product of factors is growing.",
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

GROWTH_FACTOR = 10.0  # "very large, fast": the weight norm multiplies tenfold ...
GROWTH_WINDOW = 10  # ... within this many updates
SWING_FACTOR = 10.0  # "wildly": the loss rises tenfold in one update, above its start
NO_PROGRESS_EPOCHS = 8  # "does not improve": judged after this many epochs, each epoch
ABOVE_ONE_SHARE = 0.9  # "each node": this share of the applied gradient's components > 1
ABOVE_ONE_WINDOW = 40  # "consistently": this many steps in a row ...
ABOVE_ONE_BEFORE_EXPLOSION = 5  # ... or this many, up to the step the run exploded


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
    dead_units: tuple[int, str] | None = None,
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
        norms = np.concatenate([[initial_weight_norm], weight_norm])
        with np.errstate(all="ignore"):
            earlier = np.array(
                [norms[max(0, i - GROWTH_WINDOW) : i].min() for i in range(1, norms.size)]
            )
            growth = weight_norm / earlier
        big = np.isfinite(weight_norm) & (growth >= GROWTH_FACTOR)
        if big.any():
            i = int(np.argmax(big))
            found.append(
                Finding(
                    "weights_grow",
                    int(steps[i]),
                    f"the weight norm reached {weight_norm[i]:.3g}, {growth[i]:.0f}x its "
                    f"value at most {GROWTH_WINDOW} updates earlier "
                    f"(it started at {initial_weight_norm:.3g})",
                )
            )
    elif explosion is not None and explosion.quantity == "weights":
        found.append(Finding("weights_nan", explosion.step, explosion.describe()))

    if loss.size >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = loss[1:] / loss[:-1]
        start = np.nanmedian(loss[: max(1, batches_per_epoch)]) if finite[0] else np.inf
        jumps = np.isfinite(ratio) & (ratio > SWING_FACTOR) & (loss[1:] > start)
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
    if loss.size >= NO_PROGRESS_EPOCHS * epoch:
        first = np.nanmedian(loss[:epoch]) if np.isfinite(loss[:epoch]).any() else np.nan
        for e in range(NO_PROGRESS_EPOCHS - 1, loss.size // epoch):
            window = loss[e * epoch : (e + 1) * epoch]
            current = np.nanmedian(window) if np.isfinite(window).any() else np.inf
            if not current < 0.9 * first:
                found.append(
                    Finding(
                        "no_progress",
                        int(steps[(e + 1) * epoch - 1]),
                        f"after {e + 1} epochs the median batch loss ({current:.3g}) is no "
                        f"better than in the first epoch ({first:.3g})",
                    )
                )
                break

    share = records.get("above_one_fraction")
    if share is not None and share.size:
        above = np.nan_to_num(share, nan=1.0) >= ABOVE_ONE_SHARE
        streak = np.zeros(above.size, dtype=int)
        for i, hit in enumerate(above):
            streak[i] = (streak[i - 1] + 1 if i else 1) if hit else 0
        hits = np.nonzero(streak >= ABOVE_ONE_WINDOW)[0]
        end = None
        if hits.size:
            end = int(hits[0])
        elif explosion is not None and streak[-1] >= ABOVE_ONE_BEFORE_EXPLOSION:
            end = above.size - 1
        if end is not None:
            first = end - streak[end] + 1
            found.append(
                Finding(
                    "grads_above_one",
                    int(steps[first]),
                    f"from step {steps[first]}, at least {ABOVE_ONE_SHARE:.0%} of the "
                    f"gradient's components reaching the weights were above 1 for "
                    f"{streak[end]} steps in a row"
                    + (" until the run exploded" if not hits.size else ""),
                )
            )

    if dead_units:
        step, layer = dead_units
        found.append(
            Finding(
                "dead_units",
                step,
                f"by step {step}, every ReLU unit of layer '{layer}' outputs 0 on every "
                "training row, so the network predicts one constant",
            )
        )
    return sorted(found, key=lambda f: f.step)


def dead_layer(trainer: Trainer, lane: int = 0) -> tuple[int, str] | None:
    """(step, layer) when every ReLU unit of a layer is dead now, else None.

    The step is the epoch's end by which it was first seen, or the current
    step when it happened within this epoch.
    """
    if trainer.explosions[lane] is not None:
        return None
    dead = [layer for layer, n, units in trainer.dead_units(lane) if n == units]
    if not dead:
        return None
    return (trainer.dead_since[lane] or trainer.step_count, dead[0])


def signs_of(trainer: Trainer, lane: int = 0) -> list[Finding]:
    """The signs present in a trainer's records so far (``find_signs`` on its run)."""
    return find_signs(
        trainer.records(lane),
        initial_weight_norm=float(torch.linalg.vector_norm(trainer.initial_params)),
        batches_per_epoch=trainer.batches_per_epoch,
        explosion=trainer.explosions[lane],
        dead_units=dead_layer(trainer, lane),
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
