"""Signs of exploding gradients found in a run's records.

The six signs are those the practitioner literature lists (Brownlee's
"A Gentle Introduction to Exploding Gradients", after Goodfellow, Bengio &
Courville 2016 and Pascanu, Mikolov & Bengio 2013), plus dead ReLU units, the
way an oversized step can silence a network without any number overflowing.
``find_signs`` looks for each in per-step records and says at which step it
first shows; the Lab runs it on every tick, ``/your_run`` on an uploaded log.
The fixes offered for what is found are in ``clipviz.lessons.fixes``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from clipviz.engine.result import Explosion
from clipviz.engine.trainer import Trainer


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
        "The loss becomes NaN (or infinite)",
        "The numbers passed float32's range: first to inf, and one operation later to NaN. "
        "From there on every prediction is NaN.",
    ),
    Sign(
        "weights_grow",
        "The weights grow very large, fast",
        "Huge gradients times the learning rate throw the weights: their norm multiplies "
        "tenfold within a few updates.",
    ),
    Sign(
        "weights_nan",
        "The weights become NaN (or infinite)",
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
        "Nearly every node's error gradient (the loss's gradient with respect to its bias, "
        "as applied after any clipping) is larger than 1, step after step: "
        "backpropagation's product of factors is growing.",
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


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _streaks(mask: np.ndarray) -> np.ndarray:
    """For each position, how many True values in a row end there."""
    index = np.arange(mask.size)
    last_false = np.maximum.accumulate(np.where(~mask, index, -1))
    return index - last_false


def find_signs(
    records: dict[str, np.ndarray],
    *,
    initial_weight_norm: float | None = None,
    batches_per_epoch: int,
    explosion: Explosion | None = None,
    dead_units: tuple[int, str] | None = None,
) -> list[Finding]:
    """The signs present in per-step ``records`` (``Trainer.records`` names), in step order.

    Only ``step`` and ``loss`` are required: a log from another tool (``/your_run``)
    may lack the weight norm or the per-node share, and the signs that need them
    are then not looked for. The rules, each chosen so that it stays silent on
    the healthy reference runs (``tests/test_diagnose.py``):

    * loss_nan / weights_nan: the first step whose loss (weight norm) is not finite.
    * loss_swings: the batch loss rises more than ``SWING_FACTOR``-fold in one
      update, to above the first epoch's typical loss (noise between batches of
      a trained net is not a swing).
    * weights_grow: the weight norm multiplies ``GROWTH_FACTOR``-fold within
      ``GROWTH_WINDOW`` updates.
    * no_progress: after ``NO_PROGRESS_EPOCHS`` epochs, the median batch loss of
      an epoch is no better than 90% of the first epoch's.
    * grads_above_one: the sources' "error gradient above 1.0 for each node":
      at least ``ABOVE_ONE_SHARE`` of the nodes get an error gradient (their
      bias gradient, as applied after any clipping) above 1 in size, for
      ``ABOVE_ONE_WINDOW`` steps in a row, or for the last
      ``ABOVE_ONE_BEFORE_EXPLOSION`` steps before an explosion.
    * dead_units: given by the caller (it needs the network, see ``dead_layer``).
    """
    found: list[Finding] = []
    loss = np.asarray(records["loss"], dtype=float)
    steps = np.asarray(records["step"])
    if loss.size == 0:
        return found

    finite = np.isfinite(loss)
    i = _first(~finite)
    if i is not None:
        what = "NaN" if np.isnan(loss[i]) else "infinite"
        found.append(Finding("loss_nan", int(steps[i]), f"the loss is {what} at step {steps[i]}"))

    weight_norm = records.get("weight_norm")
    if weight_norm is not None and len(weight_norm):
        weight_norm = np.asarray(weight_norm, dtype=float)
        i = _first(~np.isfinite(weight_norm))
        if i is not None:
            found.append(
                Finding(
                    "weights_nan",
                    int(steps[i]),
                    f"the weight norm is {'NaN' if np.isnan(weight_norm[i]) else 'infinite'}",
                )
            )
        start = weight_norm[0] if initial_weight_norm is None else initial_weight_norm
        norms = np.concatenate([[start], weight_norm])
        padded = np.concatenate([np.full(GROWTH_WINDOW - 1, np.inf), norms[:-1]])
        with np.errstate(all="ignore"):
            earlier = sliding_window_view(padded, GROWTH_WINDOW).min(axis=1)
            growth = weight_norm / earlier
        i = _first(np.isfinite(weight_norm) & np.isfinite(growth) & (growth >= GROWTH_FACTOR))
        if i is not None:
            found.append(
                Finding(
                    "weights_grow",
                    int(steps[i]),
                    f"the weight norm reached {weight_norm[i]:.3g}, {growth[i]:.0f}x its "
                    f"value at most {GROWTH_WINDOW} updates earlier "
                    f"(it started at {start:.3g})",
                )
            )
    elif explosion is not None and explosion.quantity == "weights":
        found.append(Finding("weights_nan", explosion.step, explosion.describe()))

    epoch = max(1, batches_per_epoch)
    if loss.size >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = loss[1:] / loss[:-1]
        typical = np.nanmedian(loss[:epoch]) if finite[0] else np.inf
        i = _first(np.isfinite(ratio) & (ratio > SWING_FACTOR) & (loss[1:] > typical))
        if i is not None:
            found.append(
                Finding(
                    "loss_swings",
                    int(steps[i + 1]),
                    f"the batch loss rose {ratio[i]:.0f}x in one update, "
                    f"from {loss[i]:.3g} to {loss[i + 1]:.3g}",
                )
            )

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
    if share is not None and len(share):
        above = np.nan_to_num(np.asarray(share, dtype=float), nan=1.0) >= ABOVE_ONE_SHARE
        streak = _streaks(above)
        end = _first(streak >= ABOVE_ONE_WINDOW)
        until_explosion = (
            end is None and explosion is not None and streak[-1] >= ABOVE_ONE_BEFORE_EXPLOSION
        )
        if until_explosion:
            end = above.size - 1
        if end is not None:
            first_step = end - int(streak[end]) + 1
            found.append(
                Finding(
                    "grads_above_one",
                    int(steps[first_step]),
                    f"from step {steps[first_step]}, at least {ABOVE_ONE_SHARE:.0%} of the "
                    f"nodes got an error gradient above 1 for {int(streak[end])} steps in a "
                    "row" + (" until the run exploded" if until_explosion else ""),
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
