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
train and test loss on the whole sets, and for a classification task (the
``digits``) train and test accuracy. Arrays are preallocated for the whole
run, so memory does not grow while playing.

At the first non-finite loss, gradient or weight of a lane, the trainer
records ``exploded_at`` (the 1-based step) and what went non-finite first
(quantity and layer). A single-lane run stops there; in a multi-lane run the
other lanes go on. With ``skip_nonfinite`` such a step is skipped instead --
weights, optimizer state and the clipping rule's state untouched, as
``torch.amp.GradScaler`` and ``optax.apply_if_finite`` do -- and only
``SKIP_LIMIT`` skipped steps in a row end a lane's run. Two trainers of
configurations that share the seed and batch size start from the same weights
and see the same batches: that is how the Lab's twin runs compare clipped and
unclipped in lock-step. ``result(lane)`` freezes a lane's run into a ``RunResult``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from clipviz.engine.clipping import AGC, clip_statistics, global_norm, rule_for
from clipviz.engine.config import TrainConfig
from clipviz.engine.data import Dataset, dataset_for
from clipviz.engine.models import build_model
from clipviz.engine.result import SKIP_LIMIT, Explosion, RunResult

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
    "above_one_fraction",  # share of nodes whose applied error gradient |dL/db| > 1
    "clip_threshold",  # the threshold the rule used (clipping.ClipRule.threshold); NaN: none
    "skipped",  # 1: the step was skipped (skip_nonfinite), nothing was applied
    "units_clipped_fraction",  # AGC: the share of all units it clipped (NaN for other rules)
)
STAT = {name: i for i, name in enumerate(STEP_FIELDS)}  # a statistic's row in ``_stats``


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
        clip_param: torch.Tensor | np.ndarray | None = None,
        record: Literal["full", "summary"] = "full",
        hidden_grads: bool = False,
        dataset: Dataset | None = None,
        evaluate_epochs: bool = True,
    ):
        """``evaluate_epochs=False`` skips the whole-set train and test losses
        after every epoch (``epoch_records`` then holds NaN): a sweep of many
        lanes needs only the final losses, and those evaluations would cost it
        as much as the training itself.

        ``dataset`` replaces the data ``config`` names, e.g. an uploaded CSV
        (``clipviz.engine.data.UploadedData.dataset``): the MLP's input layer
        takes its number of features, and the work budget is counted on its
        rows and columns (``ConfigError`` names a limit it passes). ``clip_param``
        gives each lane its own value of the adaptive rule's setting
        (``config.RULE_PARAMETER``)."""
        if dataset is not None and config.network == "mlp":
            if dataset.is_sequence:
                raise ValueError("the MLP trains on tables (rows x features), not sequences")
            self.config = config.validated(data_shape=dataset.shape)
        else:
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
            # float64, so that a lane's percentile or z is exactly its single run's
            clip_param=None if clip_param is None else _lane_float64(clip_param, n_lanes),
        )

        init_gen = torch.Generator().manual_seed(config.seed)
        single = self.model.init(init_gen)
        self.initial_params = single.clone()
        self.params = single.unsqueeze(1).repeat(1, n_lanes).contiguous()
        self.grad = torch.zeros_like(self.params)
        self.velocity = torch.zeros_like(self.params)
        self._direction = torch.empty_like(self.params)  # reused: see _update_direction
        # Many lanes, SGD, summary records: the fused optimizer step (_sgd_step_lanes).
        self._fused_sgd = n_lanes > 1 and record == "summary" and config.optimizer == "sgd"
        self._neg_lr = -self.lr
        self.second_moment = torch.zeros_like(self.params) if config.optimizer == "adam" else None
        self._batch_gen = torch.Generator().manual_seed(10_007 * config.seed + 17)
        # skip_nonfinite: skipped steps per lane, in total and in a row; with Adam each
        # lane counts its own optimizer steps (a skipped step is no step, as in torch).
        self.skipped_steps = torch.zeros(n_lanes, dtype=torch.int64)
        self._skips_in_a_row = torch.zeros(n_lanes, dtype=torch.int64)
        self._adam_steps = (
            torch.zeros(n_lanes, dtype=torch.float64)
            if config.skip_nonfinite and config.optimizer == "adam"
            else None
        )

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
            self._threshold = torch.full((S, N), math.nan)
            self._skipped = torch.zeros(S, N)
            self._units = torch.full((S, N), math.nan)  # AGC's overall share of units clipped
            self._layer_units = (
                torch.full((S, L, N), math.nan) if isinstance(self.rule, AGC) else None
            )
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
        # Classification only (NaN otherwise): the share of examples classified right.
        self.epoch_train_accuracy = np.full((E, N), np.nan)
        self.epoch_test_accuracy = np.full((E, N), np.nan)
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
        loss = self.model.loss_and_grad(self.params, x, y, self.grad, self._hidden_scratch)
        if self.hidden_grads:
            self._hidden[s] = self._hidden_scratch
        if self.config.weight_decay > 0:  # an L2 penalty (wd/2)||w||^2 on the loss
            self.grad.add_(self.params, alpha=self.config.weight_decay)
        full = self.record == "full"
        k = s - self._chunk_start
        if full:
            self._raw[0, k] = self.grad
        skip = None
        if self.config.skip_nonfinite:
            # The test of GradScaler and optax.apply_if_finite, on the loss and on the
            # gradient's global norm (which also catches a float32 overflow of the norm).
            bad = ~(torch.isfinite(loss) & torch.isfinite(global_norm(self.grad)))
            skip = bad if bool(bad.any()) else None
            kept = None if skip is None else self._state_of(skip)
        total = self.rule.clip_(self.grad, self.layout, weights=self.params, skip=skip)
        if full:
            self._threshold[s] = self.rule.threshold(self.n_lanes)
            if isinstance(self.rule, AGC):
                self._layer_units[s] = self.rule.layer_units_clipped(self.layout)
                self._units[s] = self.rule.share_of_units_clipped()
        if self._adam_steps is not None:
            self._adam_steps += 1 if skip is None else (~skip).double()
        t = s + 1 if self._adam_steps is None else self._adam_steps
        if self._fused_sgd:
            self._sgd_step_lanes()
        else:
            update = self._update_direction(t).mul_(self.lr)  # params -= lr * direction
            self.params.sub_(update)
        if skip is not None:
            self._restore_state(skip, kept)
            if not self._fused_sgd:
                update[:, skip] = 0.0  # nothing was applied
        if full:
            self._raw[1, k] = self.grad
            self._raw[2, k] = update
            self._raw[3, k] = self.params
        self._loss[s] = loss
        self._grad_norm[s] = total
        self.step_count = s + 1
        if self.config.skip_nonfinite:
            self._count_skips(s, skip)
        # PyTorch's test for a non-finite gradient: its total norm is not finite.
        # (With skip_nonfinite, every such lane was skipped instead.)
        if skip is None and not bool(
            torch.isfinite(self._loss[s]).all() & torch.isfinite(total).all()
        ):
            self._flush()
            self._find_explosions(s)
        elif full and k + 1 == self._raw.shape[1]:
            self._flush()
        if self.step_count % self.batches_per_epoch == 0:
            self._end_epoch()

    def _state_of(self, lanes: torch.Tensor) -> list[torch.Tensor]:
        """Copies of the weights and optimizer state of ``lanes`` (a skipped step's)."""
        state = [self.params, self.velocity, self.second_moment]
        return [t[:, lanes].clone() for t in state if t is not None]

    def _restore_state(self, lanes: torch.Tensor, kept: list[torch.Tensor]) -> None:
        state = [t for t in (self.params, self.velocity, self.second_moment) if t is not None]
        for tensor, saved in zip(state, kept, strict=True):
            tensor[:, lanes] = saved

    def _count_skips(self, s: int, skip: torch.Tensor | None) -> None:
        """Count the skipped steps (0-based step ``s``); end lanes that skip too long."""
        if skip is None:
            self._skips_in_a_row.zero_()
            return
        self.skipped_steps += skip
        self._skips_in_a_row = torch.where(skip, self._skips_in_a_row + 1, 0)
        if self.record == "full":
            self._skipped[s] = skip.float()
            self._threshold[s, skip] = math.nan  # the rule did not run for them
        ended = skip & (self._skips_in_a_row >= SKIP_LIMIT) & self.alive
        for lane in torch.nonzero(ended).flatten().tolist():
            norms = self._grad_norm[: s + 1, lane]
            finite = norms[torch.isfinite(norms)]
            before = float(finite[-1]) if finite.numel() else None
            self.explosions[lane] = Explosion(s + 1, "skipping", None, before)
        self.alive &= ~ended

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

    def _update_direction(self, t: int | torch.Tensor) -> torch.Tensor:
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
        correct1, correct2 = 1 - b1**t, 1 - b2**t
        if isinstance(t, torch.Tensor):  # per-lane step counts (skip_nonfinite), as float32
            correct1, correct2 = correct1.float(), correct2.float()
        denom = (self.second_moment / correct2).sqrt_().add_(ADAM_EPS)
        return self.velocity / correct1 / denom

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
        clip = clip_statistics(before, after, norm_before)
        weight_norm = torch.linalg.vector_norm(weights, dim=1)
        stats = {
            "loss": self._loss[start:stop],
            "grad_norm": norm_before,
            **clip,
            "weight_norm": weight_norm,
            "update_ratio": torch.linalg.vector_norm(update, dim=1) / weight_norm,
            "max_abs_grad": torch.linalg.vector_norm(before, ord=math.inf, dim=1),
            # The share of nodes whose error gradient (the gradient of their bias, as
            # applied after clipping) is above 1 in size; NaN counts as above.
            "above_one_fraction": (~(after[:, layout.bias_rows].abs() <= 1)).float().mean(dim=1),
            "clip_threshold": self._threshold[start:stop],
            "skipped": self._skipped[start:stop],
            "units_clipped_fraction": self._units[start:stop],
        }
        self._stats[start:stop] = torch.stack([stats[name] for name in STEP_FIELDS], dim=1)
        skipped = self._skipped[start:stop].bool()
        if bool(skipped.any()):  # nothing was applied: no clipping, no applied gradient
            for name, value in (
                ("grad_norm_after", math.nan),
                ("clip_scale", math.nan),
                ("clipped", 0.0),
                ("clipped_fraction", 0.0),
                ("cosine", math.nan),
                ("above_one_fraction", math.nan),
            ):
                i = STAT[name]
                self._stats[start:stop, i] = torch.where(skipped, value, self._stats[start:stop, i])
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
                prev_weights = self._stats[s - 1, STAT["weight_norm"], lane]
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
                value = float(self._stats[s, STAT["max_abs_grad"], lane])
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

    @property
    def classifies(self) -> bool:
        """True for a classification task (the digits), which has an accuracy."""
        return self.data.kind == "classification"

    def evaluate_accuracy(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Accuracy per lane on a whole set: the share of examples whose highest output
        is their label, in [0, 1]. NaN for a regression task."""
        if not self.classifies:
            return np.full(self.n_lanes, np.nan)
        return self._loss_and_accuracy(x, y)[1]

    def _loss_and_accuracy(self, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``evaluate``'s loss (the same numbers) and the accuracy, from one forward pass."""
        with torch.no_grad():
            losses, right = [], np.zeros(self.n_lanes)
            chunk = 1024
            for start in range(0, len(x), chunk):
                xs, ys = x[start : start + chunk], y[start : start + chunk]
                loss, accuracy = self.model.loss_and_accuracy(self.params, xs, ys)
                losses.append(loss * len(xs))
                right += np.rint(accuracy.numpy() * len(xs))  # whole examples
            loss = (torch.stack(losses).sum(0) / len(x)).double().numpy()
            return loss, right / len(x)

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
        data = self.data
        if self.evaluate_epochs and self.classifies:
            self.epoch_train_loss[e], self.epoch_train_accuracy[e] = self._loss_and_accuracy(
                data.x_train, data.y_train
            )
            self.epoch_test_loss[e], self.epoch_test_accuracy[e] = self._loss_and_accuracy(
                data.x_test, data.y_test
            )
        elif self.evaluate_epochs:
            self.epoch_train_loss[e] = self.evaluate(data.x_train, data.y_train)
            self.epoch_test_loss[e] = self.evaluate(data.x_test, data.y_test)
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
            if self._layer_units is not None:  # AGC: the share of each layer's units clipped
                out["layer_units_clipped"] = self._layer_units[a:s, :, lane].double().numpy()
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
        out = {"epoch": np.arange(1, e + 1), "train_loss": train, "test_loss": test}
        if self.classifies:  # shares in [0, 1]
            out["train_accuracy"] = self.epoch_train_accuracy[:e, lane]
            out["test_accuracy"] = self.epoch_test_accuracy[:e, lane]
        return out

    def final_losses(self, *, original_units: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) loss per lane on the whole sets with the current weights."""
        train = self.evaluate(self.data.x_train, self.data.y_train)
        test = self.evaluate(self.data.x_test, self.data.y_test)
        if original_units and self.data.kind == "regression":
            train, test = self.data.to_original_mse(train), self.data.to_original_mse(test)
        bad = ~self.alive.numpy()
        train[bad], test[bad] = np.nan, np.nan
        return train, test

    def final_accuracies(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) accuracy per lane with the current weights; NaN for a regression
        task and for lanes that exploded."""
        train = self.evaluate_accuracy(self.data.x_train, self.data.y_train)
        test = self.evaluate_accuracy(self.data.x_test, self.data.y_test)
        bad = ~self.alive.numpy()
        train[bad], test[bad] = np.nan, np.nan
        return train, test

    def result(self, lane: int = 0, *, evaluate_now: bool = False) -> RunResult:
        """A lane's run so far, frozen into plain arrays (``RunResult``).

        ``evaluate_now``: when the run stands between epochs (or does not evaluate
        epochs at all), measure the whole-set losses of the current weights: the
        final losses of a run stopped there.
        """
        losses_now = accuracies_now = None
        unrecorded = self.step_count % self.batches_per_epoch or not self.evaluate_epochs
        if evaluate_now and unrecorded and self.step_count:
            train = self.evaluate(self.data.x_train, self.data.y_train)[lane]
            test = self.evaluate(self.data.x_test, self.data.y_test)[lane]
            losses_now = (float(train), float(test))
            if self.data.kind == "classification":
                accuracies = self.final_accuracies()
                accuracies_now = (float(accuracies[0][lane]), float(accuracies[1][lane]))
        return RunResult(
            config=self.config,
            records=self.records(lane),
            epochs=self.epoch_records(lane),
            layer_names=tuple(self.layout.layer_names),
            batches_per_epoch=self.batches_per_epoch,
            total_steps=self.total_steps,
            explosion=self.explosions[lane],
            initial_train_loss=float(self.initial_train_loss[lane]),
            initial_test_loss=float(self.initial_test_loss[lane]),
            kind=self.data.kind,
            mean_guess_test_loss=self.data.mean_guess_test_loss,
            target_scale=float(self.data.target_scale),
            losses_now=losses_now,
            accuracies_now=accuracies_now,
            extras={"skipped_steps": int(self.skipped_steps[lane])},
        )

    def memory_bytes(self) -> int:
        """Bytes held by tensors and record arrays (bounded for the whole run)."""
        tensors = [self.params, self.grad, self.velocity, self._loss, self._grad_norm]
        optional = (
            "second_moment",
            "_stats",
            "_layer_norms",
            "_layer_norms_after",
            "_threshold",
            "_skipped",
            "_units",
            "_layer_units",
            "_raw",
            "_hidden",
        )
        tensors += [t for t in (getattr(self, name, None) for name in optional) if t is not None]
        # Four (epochs, lanes) arrays: train and test loss, train and test accuracy.
        return sum(t.numel() * t.element_size() for t in tensors) + self.epoch_train_loss.nbytes * 4


def _lane_float64(values: torch.Tensor | np.ndarray, n_lanes: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(values, dtype=np.float64)).reshape(-1)
    if t.numel() != n_lanes:
        raise ValueError(f"expected {n_lanes} lane values, got {t.numel()}")
    return t


def train(config: TrainConfig, **kwargs) -> Trainer:
    """Build a trainer for ``config`` and run it to the end."""
    return Trainer(config, **kwargs).run()
