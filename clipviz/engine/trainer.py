"""The stepwise trainer: ``step(n)``, per-step records, a clean stop at explosion.

One ``Trainer`` trains ``N`` lanes of one network (see ``clipviz.engine.models``) on
the same data in the same batch order, each lane with its own learning rate,
clip thresholds and target multiplier if given; ``N = 1`` is an ordinary run.
Everything is deterministic for a seed: the initial weights come from a
generator seeded with ``seed`` and the batch order from another.

Per step it records, for every lane: the loss, the gradient norm before and
after clipping, whether and how much it clipped, the cosine between the
gradient before and after, the per-layer gradient norms, the weight norm,
the update-to-weight ratio and the largest gradient component. Per epoch:
train and test loss on the whole sets. Arrays are preallocated for the whole
run, so memory does not grow while playing.

At the first non-finite loss, gradient or weight of a lane, the trainer
records ``exploded_at`` (the 1-based step) and what went non-finite first
(quantity and layer). A single-lane run stops there; in a multi-lane run the
other lanes go on. ``TwinRun`` steps two trainers in lock-step (same init,
same batches) for a clipped-vs-unclipped comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from clipviz.engine.clipping import rule_for
from clipviz.engine.config import TrainConfig
from clipviz.engine.data import Dataset, dataset_for
from clipviz.engine.models import build_model

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
STEP_FIELDS = (
    "loss",
    "grad_norm",
    "grad_norm_after",
    "clip_scale",
    "clipped",
    "clipped_fraction",
    "cosine",
    "weight_norm",
    "update_ratio",
    "max_abs_grad",
    "above_one_fraction",  # share of the applied (clipped) gradient's components with |g| > 1
)


@dataclass(frozen=True)
class Explosion:
    """Where and how a lane's run went non-finite."""

    step: int  # 1-based optimizer step
    quantity: str  # "loss", "gradient" or "weights"
    layer: str | None  # the first layer where it happened (None for the loss)
    grad_norm_before: float | None  # the gradient norm of the last finite step
    # The largest |component| of the gradient at the step, when it is known to be
    # finite: then only the float32 sum of squares inside the norm overflowed.
    largest_component: float | None = None

    def describe(self) -> str:
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


class Trainer:
    """Train ``n_lanes`` copies of the network a config describes, step by step."""

    # Raw per-step tensors are kept for at most this many bytes before their
    # statistics are computed in one batched pass (see ``_flush``).
    CHUNK_BYTES = 32 * 2**20

    def __init__(
        self,
        config: TrainConfig,
        *,
        n_lanes: int = 1,
        lr: torch.Tensor | np.ndarray | None = None,
        clip_norm: torch.Tensor | np.ndarray | None = None,
        clip_value: torch.Tensor | np.ndarray | None = None,
        target_multiplier: torch.Tensor | np.ndarray | None = None,
        record: Literal["full", "summary"] = "full",
        hidden_grads: bool = False,
        dataset: Dataset | None = None,
        evaluate_epochs: bool = True,
    ):
        """``evaluate_epochs=False`` skips the whole-set train and test losses
        after every epoch (``epoch_records`` then holds NaN): a sweep of many
        lanes needs only the final losses, and those evaluations would cost it
        as much as the training itself."""
        self.config = config.validated()
        self.evaluate_epochs = evaluate_epochs
        self.n_lanes = n_lanes
        self.record = record
        self.data = dataset or dataset_for(config)
        self.model = build_model(
            config, self.data.n_features, self.data.n_outputs, self.data.kind == "classification"
        )
        self.layout = self.model.layout

        def lane_values(values, default):
            if values is None:
                return torch.full((n_lanes,), float(default))
            t = torch.as_tensor(np.asarray(values, dtype=np.float32)).reshape(-1)
            if t.numel() != n_lanes:
                raise ValueError(f"expected {n_lanes} lane values, got {t.numel()}")
            return t

        self.lr = lane_values(lr, config.lr)
        self.target_multiplier = (
            None if target_multiplier is None else lane_values(target_multiplier, 1.0)
        )
        self.rule = rule_for(
            config,
            clip_norm=None if clip_norm is None else lane_values(clip_norm, config.clip_norm),
            clip_value=None if clip_value is None else lane_values(clip_value, config.clip_value),
        )

        init_gen = torch.Generator().manual_seed(config.seed)
        single = self.model.init(init_gen)
        self.initial_params = single.clone()
        self.params = single.unsqueeze(1).repeat(1, n_lanes).contiguous()
        self.grad = torch.zeros_like(self.params)
        self._views = self.layout.views(self.params)
        self._gviews = self.layout.views(self.grad)
        self.velocity = torch.zeros_like(self.params)
        self._direction = torch.empty_like(self.params)  # reused: see _update_direction
        # Many lanes, SGD, summary records: the fused optimizer step (_sgd_step_lanes).
        self._fused_sgd = n_lanes > 1 and record == "summary" and config.optimizer == "sgd"
        self._neg_lr = -self.lr
        self.second_moment = torch.zeros_like(self.params) if config.optimizer == "adam" else None
        self._batch_gen = torch.Generator().manual_seed(10_007 * config.seed + 17)

        n = self.data.n_train
        self.batches_per_epoch = math.ceil(n / config.batch_size)
        self.total_steps = config.epochs * self.batches_per_epoch
        self.step_count = 0
        self._epoch_x = self._epoch_y = None

        # Preallocated records for the whole run (memory is fixed up front).
        S, N, L, P = self.total_steps, n_lanes, len(self.layout.layer_names), self.layout.size
        self._loss = torch.full((S, N), math.nan)
        self._grad_norm = torch.full((S, N), math.nan)
        if record == "full":
            self._stats = torch.full((S, len(STEP_FIELDS), N), math.nan)
            self._layer_norms = torch.full((S, L, N), math.nan)
            self._layer_norms_after = torch.full((S, L, N), math.nan)
            chunk = max(1, min(self.batches_per_epoch, self.CHUNK_BYTES // (4 * 4 * P * N)))
            self._raw = torch.zeros(4, chunk, P, N)  # grad before, grad after, update, weights
        self._chunk_start = 0  # first step whose raw tensors are not yet summarised
        self.hidden_grads = hidden_grads and self.model.recurrent
        T = self.data.x_train.shape[1] if self.model.recurrent else 0
        self._hidden = torch.full((S, T, N), math.nan) if self.hidden_grads else None
        self._hidden_scratch = torch.zeros(T, N) if self.hidden_grads else None

        E = config.epochs
        self.epoch_train_loss = np.full((E, N), np.nan)
        self.epoch_test_loss = np.full((E, N), np.nan)
        self.epochs_done = 0
        self.alive = torch.ones(N, dtype=torch.bool)
        self.explosions: list[Explosion | None] = [None] * N
        self.dead_since: list[int | None] = [None] * N  # see _note_dead_units
        self.initial_train_loss = self.evaluate(self.data.x_train, self.data.y_train)
        self.initial_test_loss = self.evaluate(self.data.x_test, self.data.y_test)

    # ---- state ---------------------------------------------------------
    @property
    def done(self) -> bool:
        if self.step_count >= self.total_steps:
            return True
        return self.n_lanes == 1 and not bool(self.alive[0])

    @property
    def exploded_at(self) -> int | None:
        """The step at which lane 0 exploded (None if it did not)."""
        return self.explosions[0].step if self.explosions[0] else None

    @property
    def explosion(self) -> Explosion | None:
        return self.explosions[0]

    @property
    def epoch(self) -> float:
        return self.step_count / self.batches_per_epoch

    # ---- training ------------------------------------------------------
    def _targets(self, y: torch.Tensor) -> torch.Tensor:
        """Targets as (B, O, 1), or (B, O, N) when lanes scale them differently."""
        if self.data.kind == "classification":
            return y
        y = y.unsqueeze(-1)
        if self.target_multiplier is not None:
            y = y * self.target_multiplier
        return y

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        within = self.step_count % self.batches_per_epoch
        if within == 0:  # reshuffle once per epoch; batches are then slices
            perm = torch.randperm(self.data.n_train, generator=self._batch_gen)
            self._epoch_x = self.data.x_train[perm]
            self._epoch_y = self._targets(self.data.y_train[perm])
        b = self.config.batch_size
        return self._epoch_x[within * b : (within + 1) * b], self._epoch_y[
            within * b : (within + 1) * b
        ]

    def step(self, n: int = 1) -> int:
        """Advance up to ``n`` optimizer steps; returns how many were taken."""
        taken = 0
        with torch.no_grad():
            while taken < n and not self.done:
                self._one_step()
                taken += 1
            self._flush()
        return taken

    def run(self) -> Trainer:
        """Train to the end (or to the explosion of a single-lane run)."""
        self.step(self.total_steps)
        return self

    def _one_step(self) -> None:
        s = self.step_count
        x, y = self._next_batch()
        if self.model.recurrent:
            loss = self.model.loss_and_grad(self.params, x, y, self.grad, self._hidden_scratch)
            if self.hidden_grads:
                self._hidden[s] = self._hidden_scratch
        else:
            loss = self.model.loss_and_grad(self.params, x, y, self.grad, self._views, self._gviews)
        if self.config.weight_decay > 0:  # an L2 penalty (wd/2)||w||^2 on the loss
            self.grad.add_(self.params, alpha=self.config.weight_decay)
        full = self.record == "full"
        k = s - self._chunk_start
        if full:
            self._raw[0, k] = self.grad
        total = self.rule.clip_(self.grad, self.layout)
        if self._fused_sgd:
            self._sgd_step_lanes()
        else:
            update = self._update_direction(s + 1).mul_(self.lr)  # params -= lr * direction
            self.params.sub_(update)
        if full:
            self._raw[1, k] = self.grad
            self._raw[2, k] = update
            self._raw[3, k] = self.params
        self._loss[s] = loss
        self._grad_norm[s] = total
        self.step_count = s + 1
        # PyTorch's test for a non-finite gradient: its total norm is not finite.
        if not bool(torch.isfinite(self._loss[s]).all() & torch.isfinite(total).all()):
            self._flush()
            self._find_explosions(s)
        elif full and k + 1 == self._raw.shape[1]:
            self._flush()
        if self.step_count % self.batches_per_epoch == 0:
            self._end_epoch()

    def _sgd_step_lanes(self) -> None:
        """SGD with momentum for many lanes without per-step records, fused.

        The same update as ``_update_direction`` then ``params -= lr * v``, in
        one pass over each (P, N) tensor instead of several: with a thousand
        lanes the step is bound by memory traffic. Fused multiply-adds may
        round the last bit differently from the single-lane path.
        """
        momentum = self.config.momentum
        if momentum:
            torch.add(self.grad, self.velocity, alpha=momentum, out=self.velocity)
            self.params.addcmul_(self.velocity, self._neg_lr)
        else:
            self.params.addcmul_(self.grad, self._neg_lr)

    def _update_direction(self, t: int) -> torch.Tensor:
        """The optimizer's step direction (before the learning rate).

        SGD with momentum in PyTorch's form v = m v + g (Keras's v = m v - lr g
        is the same at a constant learning rate); Adam as in Kingma & Ba (2015).
        SGD's direction is written into one buffer reused every step (a fresh
        (P, N) tensor per step costs page faults when N is large); the caller
        may scale it in place.
        """
        cfg = self.config
        if cfg.optimizer == "sgd":
            if cfg.momentum == 0:
                return self._direction.copy_(self.grad)
            self.velocity.mul_(cfg.momentum).add_(self.grad)
            return self._direction.copy_(self.velocity)
        b1, b2 = ADAM_BETAS
        self.velocity.mul_(b1).add_(self.grad, alpha=1 - b1)
        self.second_moment.mul_(b2).addcmul_(self.grad, self.grad, value=1 - b2)
        denom = (self.second_moment / (1 - b2**t)).sqrt_().add_(ADAM_EPS)
        return self.velocity / (1 - b1**t) / denom

    def _flush(self) -> None:
        """Summarise the raw tensors of the steps since the last flush, in one pass."""
        start, stop = self._chunk_start, self.step_count
        self._chunk_start = stop
        if self.record != "full" or stop <= start:
            return
        k = stop - start
        before, after, update, weights = self._raw[:, :k]
        layout = self.layout
        sq = torch.zeros(k, len(layout.specs), self.n_lanes)
        sq.index_add_(1, layout.tensor_ids, before.square())
        layer_sq = torch.zeros(k, len(layout.layer_names), self.n_lanes)
        layer_sq.index_add_(1, layout.tensor_layer, sq)
        sq_after = torch.zeros(k, len(layout.specs), self.n_lanes)
        sq_after.index_add_(1, layout.tensor_ids, after.square())
        layer_sq_after = torch.zeros_like(layer_sq)
        layer_sq_after.index_add_(1, layout.tensor_layer, sq_after)
        norm_before = self._grad_norm[start:stop]
        norm_after = torch.linalg.vector_norm(after, dim=1)
        changed = ((after != before) & ~(after.isnan() & before.isnan())).float().mean(dim=1)
        cosine = (before * after).sum(dim=1) / (norm_before * norm_after).clamp_min(1e-30)
        weight_norm = torch.linalg.vector_norm(weights, dim=1)
        self._stats[start:stop] = torch.stack(
            [
                self._loss[start:stop],
                norm_before,
                norm_after,
                norm_after / norm_before.clamp_min(1e-30),
                (changed > 0).float(),
                changed,
                torch.where(norm_after > 0, cosine, torch.ones_like(cosine)),
                weight_norm,
                torch.linalg.vector_norm(update, dim=1) / weight_norm,
                torch.linalg.vector_norm(before, ord=math.inf, dim=1),
                (~(after.abs() <= 1)).float().mean(dim=1),  # NaN counts as above
            ],
            dim=1,
        )
        self._layer_norms[start:stop] = layer_sq.sqrt()
        self._layer_norms_after[start:stop] = layer_sq_after.sqrt()

    def _find_explosions(self, s: int) -> None:
        """Lanes whose step ``s`` (0-based) went non-finite: record what and where.

        The loss is computed first, then the gradient, then the weights move;
        the first of these that is not finite names the explosion. Weights that
        overflowed at the previous step show up as a NaN loss now, so the
        previous step is checked first.
        """
        lanes = ~(torch.isfinite(self._loss[s]) & torch.isfinite(self._grad_norm[s])) & self.alive
        names = self.layout.layer_names
        for lane in torch.nonzero(lanes).flatten().tolist():
            step, quantity, layer = s + 1, None, None
            if self.record == "full" and s >= 1:
                prev_weights = self._stats[s - 1, 7, lane]
                if not math.isfinite(float(prev_weights)):
                    step, quantity = s, "weights"
            if quantity is None and not math.isfinite(float(self._loss[s, lane])):
                quantity = "loss"
            elif quantity is None:
                quantity = "gradient"
                if self.record == "full":
                    norms = self._layer_norms[s, :, lane]
                    layer = names[int(torch.nonzero(~torch.isfinite(norms))[0, 0])]
            if quantity == "weights":
                layer = self._first_bad_layer_of_weights(lane)
            before = None
            if self.record == "full" and step >= 2:
                value = float(self._grad_norm[step - 2, lane])
                before = value if math.isfinite(value) else None
            largest = None
            if quantity == "gradient" and self.record == "full":
                value = float(self._stats[s, STEP_FIELDS.index("max_abs_grad"), lane])
                largest = value if math.isfinite(value) else None
            self.explosions[lane] = Explosion(step, quantity, layer, before, largest)
            if self.n_lanes == 1:
                self.step_count = step  # a single run ends at its explosion
        self.alive &= ~lanes

    def _first_bad_layer_of_weights(self, lane: int) -> str | None:
        bad = ~torch.isfinite(self.params[:, lane])
        if not bool(bad.any()):
            return None
        return self.layout.layer_names[int(self.layout.layer_ids[torch.nonzero(bad)[0, 0]])]

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Loss per lane on a whole set (scaled units), without changing anything."""
        with torch.no_grad():
            losses = []
            chunk = 1024 if self.model.recurrent else len(x)
            for start in range(0, len(x), chunk):
                xs, ys = x[start : start + chunk], self._targets(y[start : start + chunk])
                losses.append(self.model.loss(self.params, xs, ys) * len(xs))
            return (torch.stack(losses).sum(0) / len(x)).double().numpy()

    def dead_units(self, lane: int = 0) -> list[tuple[str, int, int]]:
        """ReLU units that output 0 on every training row: (layer, dead, units) per layer.

        A dead unit passes no gradient back, so nothing revives it; when a
        whole layer is dead the net outputs one constant. Empty for tanh
        and recurrent nets (their units cannot die this way).
        """
        model = self.model
        if model.recurrent or model.activation != "relu":
            return []
        with torch.no_grad():
            _, cache = model.forward(self.params[:, lane : lane + 1], self.data.x_train)
        return [
            (f"hidden {i + 1}", int((a <= 0).all(dim=0).sum()), int(a.shape[1]))
            for i, (_, a) in enumerate(cache)
        ]

    def _note_dead_units(self) -> None:
        """At an epoch's end: the step by which every ReLU unit of a layer had died."""
        for lane in range(self.n_lanes):
            if (
                self.dead_since[lane] is None
                and self.alive[lane]
                and any(dead == units for _, dead, units in self.dead_units(lane))
            ):
                self.dead_since[lane] = self.step_count

    def _end_epoch(self) -> None:
        e = self.epochs_done
        if e >= self.config.epochs:
            return
        if self.evaluate_epochs:
            self.epoch_train_loss[e] = self.evaluate(self.data.x_train, self.data.y_train)
            self.epoch_test_loss[e] = self.evaluate(self.data.x_test, self.data.y_test)
        if self.record == "full":
            self._note_dead_units()
        self.epochs_done += 1

    # ---- records -------------------------------------------------------
    def records(self, lane: int = 0, start: int = 0) -> dict[str, np.ndarray]:
        """Per-step records of one lane so far: arrays of length ``step_count``.

        ``start`` leaves out the first ``start`` steps (a live chart asks only
        for the steps it has not drawn yet); ``step`` still numbers them from 1.
        """
        s = self.step_count
        a = min(max(0, start), s)
        out = {"step": np.arange(a + 1, s + 1), "epoch": np.arange(a, s) / self.batches_per_epoch}
        if self.record == "full":
            values = self._stats[a:s, :, lane].double().numpy()
            for i, name in enumerate(STEP_FIELDS):
                out[name] = values[:, i]
            out["layer_grad_norm"] = self._layer_norms[a:s, :, lane].double().numpy()
            out["layer_grad_norm_after"] = self._layer_norms_after[a:s, :, lane].double().numpy()
        else:
            out["loss"] = self._loss[a:s, lane].double().numpy()
            out["grad_norm"] = self._grad_norm[a:s, lane].double().numpy()
        if self._hidden is not None:
            out["hidden_grad_norm"] = self._hidden[a:s, :, lane].double().numpy()
        return out

    def epoch_records(
        self, lane: int = 0, *, original_units: bool = False
    ) -> dict[str, np.ndarray]:
        e = self.epochs_done
        train, test = self.epoch_train_loss[:e, lane], self.epoch_test_loss[:e, lane]
        if original_units and self.data.kind == "regression":
            train, test = self.data.to_original_mse(train), self.data.to_original_mse(test)
        return {"epoch": np.arange(1, e + 1), "train_loss": train, "test_loss": test}

    def final_losses(self, *, original_units: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) loss per lane on the whole sets with the current weights."""
        train = self.evaluate(self.data.x_train, self.data.y_train)
        test = self.evaluate(self.data.x_test, self.data.y_test)
        if original_units and self.data.kind == "regression":
            train, test = self.data.to_original_mse(train), self.data.to_original_mse(test)
        bad = ~self.alive.numpy()
        train[bad], test[bad] = np.nan, np.nan
        return train, test

    def summary(self, lane: int = 0) -> RunSummary:
        rec = self.records(lane)
        train, test = self.final_losses()
        norms = rec["grad_norm"] if "grad_norm" in rec else np.array([np.nan])
        finite_norms = norms[np.isfinite(norms)]
        clipped = rec.get("clipped", np.zeros(0))
        return RunSummary(
            config=self.config,
            steps=self.step_count,
            exploded_at=self.explosions[lane].step if self.explosions[lane] else None,
            explosion=self.explosions[lane],
            final_train_loss=float(train[lane]),
            final_test_loss=float(test[lane]),
            max_grad_norm=float(finite_norms.max()) if finite_norms.size else math.nan,
            clipped_fraction=float(np.nanmean(clipped)) if clipped.size else 0.0,
        )

    def memory_bytes(self) -> int:
        """Bytes held by tensors and record arrays (bounded for the whole run)."""
        tensors = [self.params, self.grad, self.velocity, self._loss, self._grad_norm]
        optional = (
            "second_moment",
            "_stats",
            "_layer_norms",
            "_layer_norms_after",
            "_raw",
            "_hidden",
        )
        tensors += [t for t in (getattr(self, name, None) for name in optional) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors) + self.epoch_train_loss.nbytes * 2


@dataclass(frozen=True)
class RunSummary:
    """The outcome of one run, as the CLI's ``train`` command reports it."""

    config: TrainConfig
    steps: int
    exploded_at: int | None
    explosion: Explosion | None
    final_train_loss: float  # MSE in the target's original units (cross-entropy for digits)
    final_test_loss: float
    max_grad_norm: float
    clipped_fraction: float  # fraction of steps at which clipping changed the gradient

    def as_dict(self) -> dict:
        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "config": self.config.to_params(),
            "steps": self.steps,
            "exploded_at": self.exploded_at,
            "explosion": self.explosion.describe() if self.explosion else None,
            "final_train_loss": clean(self.final_train_loss),
            "final_test_loss": clean(self.final_test_loss),
            "max_grad_norm": clean(self.max_grad_norm),
            "clipped_fraction": self.clipped_fraction,
        }


class TwinRun:
    """Two trainers in lock-step: same init and batches, different settings.

    ``primary`` is the learner's configuration, ``twin`` the comparison (by
    default the same without clipping). Both see identical weights at step 0
    and identical batches at every step because they share the seed.
    """

    def __init__(self, primary: TrainConfig, twin: TrainConfig | None = None, **kwargs):
        if twin is None:
            twin = primary.replace(clip_mode="none")
        if twin.seed != primary.seed or twin.batch_size != primary.batch_size:
            raise ValueError("a twin must share the seed and batch size to see the same batches")
        self.primary = Trainer(primary, **kwargs)
        self.twin = Trainer(twin, **kwargs)

    @property
    def done(self) -> bool:
        return self.primary.done and self.twin.done

    def step(self, n: int = 1) -> int:
        """Advance both by up to ``n`` steps. They share nothing after the start,
        so stepping each by ``n`` in turn gives exactly the records that
        alternating single steps would, at a fraction of the cost."""
        return max(self.primary.step(n), self.twin.step(n))


def train(config: TrainConfig, **kwargs) -> Trainer:
    """Build a trainer for ``config`` and run it to the end."""
    return Trainer(config, **kwargs).run()
