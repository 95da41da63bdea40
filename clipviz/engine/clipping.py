"""Gradient clipping rules, one small class each, and what each application did.

A rule clips a flat gradient ``grad`` of shape (P, N) in place (P parameters,
N lanes; see ``clipviz.engine.models``) and returns ``ClipStats``: the norm before
and after, the factor applied, the fraction of components changed, the cosine
between the gradient before and after (1 means the direction was kept) and
the per-tensor norms before clipping. Thresholds may be floats or (N,)
tensors, one per lane.

Semantics, checked against the libraries in ``tests/test_clipping.py``:

* ``norm`` -- PyTorch ``clip_grad_norm_``: the *global* L2 norm of all
  gradients together; every gradient is multiplied by
  ``clamp(max_norm / (total + 1e-6), max=1)``. Pascanu, Mikolov & Bengio (2013).
* ``norm_per_tensor`` -- tf.keras 2.x / Keras 3 ``clipnorm``: each weight
  tensor separately, ``g * c / max(||g||, c)``.
* ``value`` -- PyTorch ``clip_grad_value_`` / Keras ``clipvalue``: each
  component clamped into [-c, c]. It can turn the gradient's direction.
* ``norm_value`` -- the global norm, then value: the order of Keras 2.2, where
  ``clipnorm`` used the global norm and ``clipvalue`` was applied after it.
* ``layerwise_value`` -- value ranges per layer: the output layer gets a wider
  range than the others, as Graves (2013) clipped output derivatives to
  [-100, 100] and LSTM derivatives to [-10, 10]. (Graves clipped derivatives
  with respect to the layers' inputs; here the parameter gradients of those
  layers are clamped, the form the libraries offer.)

The adaptive rules choose their threshold as training goes:

* ``autoclip`` -- AutoClip (Seetharaman, Wichern, Pardo & Le Roux 2020): the
  global norm clipped at the p-th percentile of every norm seen so far, the
  current one included, as in the authors' code (``pseeth/autoclip``).
* ``agc`` -- Adaptive Gradient Clipping (Brock, De, Smith & Simonyan 2021):
  each unit's gradient clipped relative to that unit's weight norm, as
  ``timm.utils.agc.adaptive_clip_grad``.
* ``zclip`` -- ZClip (Kumar, Owen, Roy Chowdhury & Güra 2025): norm spikes
  detected by a z-score against an EMA of the norm's mean and variance, as
  the ``zclip`` package 1.0.0.

Each application also leaves ``threshold``: the global-norm ceiling (or, for
the value rules, the component bound) the rule used at that step, per lane;
NaN where there was none (``none``, ``agc``, ZClip's uncapped warm-up).
Stateful rules (AutoClip's history, ZClip's EMA) keep one state per lane,
so lanes stay independent; ``skip`` names lanes whose step is being skipped
(a non-finite gradient), whose state must not move.

Adding a rule means adding one class with a ``clip_`` method and an entry in
``RULES``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch

from clipviz.engine.config import TrainConfig
from clipviz.engine.models import Layout

EPS_TORCH = 1e-6  # the epsilon PyTorch's clip_grad_norm_ adds to the norm

Threshold = float | torch.Tensor


@dataclass
class ClipStats:
    """What one application of a rule did, per lane (tensors of shape (N,))."""

    norm_before: torch.Tensor
    norm_after: torch.Tensor
    scale: torch.Tensor  # norm_after / norm_before (the factor, for norm rules)
    clipped: torch.Tensor  # bool: the rule changed the gradient
    clipped_fraction: torch.Tensor  # fraction of components changed
    cosine: torch.Tensor  # cos(angle between gradient before and after)
    tensor_norms: torch.Tensor  # (T, N) per-tensor norms before clipping
    threshold: torch.Tensor | None = None  # (N,) the ceiling used; NaN: none
    units_clipped: torch.Tensor | None = None  # (T, N) AGC: fraction of each tensor's units


def tensor_norms(grad: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Per-tensor L2 norms of a flat (P, N) gradient, shape (T, N)."""
    sq = torch.zeros(len(layout.specs), grad.shape[1], dtype=grad.dtype)
    sq.index_add_(0, layout.tensor_ids, grad * grad)
    return sq.sqrt()


def global_norm(grad: torch.Tensor) -> torch.Tensor:
    """The L2 norm of all gradients together, per lane (N,)."""
    if grad.shape[1] == 1:
        return torch.linalg.vector_norm(grad, dim=0)
    # Many lanes: vector_norm across rows is ~10x slower than this on CPU; both
    # sum in float32 and overflow to inf alike (at |g| ~ 1e19).
    return grad.square().sum(dim=0).sqrt_()


class ClipRule:
    """Base class: no clipping. Subclasses override ``clip_``."""

    name = "none"

    def clip_(
        self,
        grad: torch.Tensor,
        layout: Layout,
        *,
        weights: torch.Tensor | None = None,
        skip: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Clip ``grad`` (P, N) in place; return its global norm before clipping (N,).

        ``weights`` (P, N) are the parameters the gradient belongs to (AGC
        needs them); ``skip`` (N,) bool marks lanes whose step is skipped, whose
        rule state must stay as it is (their gradient is not used). This is the
        training hot path: it does only what the rule needs.
        """
        return global_norm(grad)

    def threshold(self, lanes: int) -> torch.Tensor:
        """The threshold the last ``clip_`` used, per lane (N,); NaN where there was none."""
        return torch.full((lanes,), math.nan)

    def apply_(
        self,
        grad: torch.Tensor,
        layout: Layout,
        *,
        weights: torch.Tensor | None = None,
        skip: torch.Tensor | None = None,
    ) -> ClipStats:
        """Clip ``grad`` in place and measure everything the application did."""
        before = grad.clone()
        per_tensor = tensor_norms(before, layout)
        total = self.clip_(grad, layout, weights=weights, skip=skip)
        stats = clip_statistics(before, grad, total)
        return ClipStats(
            total,
            stats["grad_norm_after"],
            stats["clip_scale"],
            stats["clipped"] > 0,
            stats["clipped_fraction"],
            stats["cosine"],
            per_tensor,
            self.threshold(grad.shape[1]),
            getattr(self, "units_clipped", None),
        )


def _lanes(value: Threshold, lanes: int) -> torch.Tensor:
    """A threshold (a float or one per lane) as a float32 (N,) tensor."""
    return torch.as_tensor(value, dtype=torch.float32).expand(lanes).clone()


def clip_statistics(
    before: torch.Tensor, after: torch.Tensor, norm_before: torch.Tensor
) -> dict[str, torch.Tensor]:
    """What clipping did, per lane: the one definition behind ``ClipRule.apply_`` and
    the trainer's per-step records (so the tested path is the path that runs).

    ``before``/``after`` are gradients of shape (..., P, N); ``norm_before`` (..., N)
    is the norm the rule measured. Returns tensors of shape (..., N), named as the
    trainer records them: the norm after, the factor (norm after / norm before),
    whether any component changed (1.0 or 0.0), the fraction of components
    changed, and the cosine between the gradient before and after (1 means the
    direction was kept; 1 also for a zero gradient).
    """
    norm_after = torch.linalg.vector_norm(after, dim=-2)
    both_nan = after.isnan() & before.isnan()
    changed = ((after != before) & ~both_nan).to(after.dtype).mean(dim=-2)
    cosine = (before * after).sum(dim=-2) / (norm_before * norm_after).clamp_min(1e-30)
    return {
        "grad_norm_after": norm_after,
        "clip_scale": norm_after / norm_before.clamp_min(1e-30),
        "clipped": (changed > 0).to(after.dtype),
        "clipped_fraction": changed,
        "cosine": torch.where(norm_after > 0, cosine, torch.ones_like(cosine)),
    }


class NoClip(ClipRule):
    name = "none"


class GlobalNorm(ClipRule):
    """PyTorch ``clip_grad_norm_``: scale everything by min(1, c / (||g|| + 1e-6))."""

    name = "norm"

    def __init__(self, max_norm: Threshold):
        self.max_norm = max_norm

    def threshold(self, lanes):
        return _lanes(self.max_norm, lanes)

    def clip_(self, grad, layout, **_):
        total = global_norm(grad)
        grad.mul_((self.max_norm / (total + EPS_TORCH)).clamp_(max=1.0))
        return total


class PerTensorNorm(ClipRule):
    """Keras 3 ``clipnorm``: each tensor scaled by c / max(||g_tensor||, c)."""

    name = "norm_per_tensor"

    def __init__(self, max_norm: Threshold):
        self.max_norm = max_norm

    def threshold(self, lanes):
        return _lanes(self.max_norm, lanes)

    def clip_(self, grad, layout, **_):
        per_tensor = tensor_norms(grad, layout)
        factor = self.max_norm / torch.maximum(per_tensor, torch.as_tensor(self.max_norm))
        grad.mul_(factor[layout.tensor_ids])
        return per_tensor.norm(dim=0)


class Value(ClipRule):
    """PyTorch ``clip_grad_value_``: each component clamped into [-c, c]."""

    name = "value"

    def __init__(self, clip_value: Threshold):
        self.clip_value = clip_value

    def threshold(self, lanes):
        return _lanes(self.clip_value, lanes)

    def clip_(self, grad, layout, **_):
        total = global_norm(grad)
        c = torch.as_tensor(self.clip_value, dtype=grad.dtype)
        torch.clamp(grad, -c, c, out=grad)
        return total


class NormThenValue(ClipRule):
    """Global norm first, then value: the order of Keras 2.2's clipnorm + clipvalue."""

    name = "norm_value"

    def __init__(self, max_norm: Threshold, clip_value: Threshold):
        self.norm_rule, self.value_rule = GlobalNorm(max_norm), Value(clip_value)

    def threshold(self, lanes):  # the norm's; the value bound comes after it
        return self.norm_rule.threshold(lanes)

    def clip_(self, grad, layout, **_):
        total = self.norm_rule.clip_(grad, layout)
        self.value_rule.clip_(grad, layout)
        return total


class LayerwiseValue(ClipRule):
    """Value clipping with a wider range for the output layer (Graves 2013)."""

    name = "layerwise_value"

    def __init__(self, clip_value: Threshold, clip_value_output: Threshold):
        self.clip_value, self.clip_value_output = clip_value, clip_value_output

    def threshold(self, lanes):  # the hidden layers' bound
        return _lanes(self.clip_value, lanes)

    def clip_(self, grad, layout, **_):
        total = global_norm(grad)
        is_output = (layout.layer_ids == layout.layer_names.index("output")).unsqueeze(1)
        hidden = torch.as_tensor(self.clip_value, dtype=grad.dtype)
        output = torch.as_tensor(self.clip_value_output, dtype=grad.dtype)
        bound = torch.where(is_output, output, hidden)
        torch.clamp(grad, -bound, bound, out=grad)
        return total


class AutoClip(ClipRule):
    """AutoClip (Seetharaman, Wichern, Pardo & Le Roux 2020): no threshold to tune.

    Every step, the global norm joins the history of all norms so far, and the
    gradient is clipped at the ``percentile``-th percentile of that history --
    the current norm included. This is the authors' own code
    (github.com/pseeth/autoclip, ``autoclip.py``): ``np.percentile(history, p)``
    with NumPy's default linear interpolation between the two nearest ranks,
    then ``torch.nn.utils.clip_grad_norm_`` at that value (so a norm equal to
    the threshold is still scaled by c / (c + 1e-6), as PyTorch does). The
    history is kept sorted per lane, so each step is one insertion.

    The PyPI package ``autoclip`` (``QuantileClip``, by the same authors)
    differs: it clips each parameter tensor on its own history unless
    ``global_threshold=True``, takes a quantile in [0, 1] of the last
    ``history_length`` (1000) norms *before* the current one, and so leaves the
    first step unclipped.
    """

    name = "autoclip"

    def __init__(self, percentile: Threshold):
        self.percentile = percentile
        self._sorted: torch.Tensor | None = None  # (capacity, N) float64; +inf past the count
        self._count: torch.Tensor | None = None  # (N,) norms seen per lane
        self._threshold: torch.Tensor | None = None

    def threshold(self, lanes):
        if self._threshold is None:
            return super().threshold(lanes)
        return self._threshold.float()

    def observe_(self, norms: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """Add each lane's norm (N,) to its history; return the percentile (N,) float64."""
        lanes = norms.shape[0]
        if self._sorted is None:
            self._sorted = torch.full((64, lanes), math.inf, dtype=torch.float64)
            self._count = torch.zeros(lanes, dtype=torch.int64)
        filled = int(self._count.max())
        if filled + 1 > self._sorted.shape[0]:  # grow by doubling
            self._sorted = torch.cat([self._sorted, torch.full_like(self._sorted, math.inf)])
        history = self._sorted[: filled + 1]
        value = norms.double()
        # Insert after equal values; ranks past a lane's count hold +inf.
        position = (history[:filled] <= value).sum(dim=0)
        rows = torch.arange(filled + 1).unsqueeze(1)
        shifted = torch.cat([history[:1], history[:filled]])  # row i: old row i - 1
        inserted = torch.where(
            rows < position, history, torch.where(rows == position, value, shifted)
        )
        if skip is not None:
            inserted = torch.where(skip, history, inserted)
            self._count += ~skip
        else:
            self._count += 1
        self._sorted[: filled + 1] = inserted
        self._threshold = self._percentile()
        return self._threshold

    def _percentile(self) -> torch.Tensor:
        """``np.percentile(history, p)`` per lane, NumPy's 'linear' method step for step."""
        q = torch.as_tensor(self.percentile, dtype=torch.float64) / 100
        n = self._count.clamp(min=1)
        virtual = (n - 1).double() * q
        previous = virtual.floor()
        gamma = virtual - previous
        below = previous.long().clamp(min=0)
        above = torch.minimum(below + 1, n - 1)
        a = self._sorted.gather(0, below.unsqueeze(0))[0]
        b = self._sorted.gather(0, above.unsqueeze(0))[0]
        diff = b - a
        # numpy's _lerp: from the nearer end, so gamma = 1 gives b exactly
        return torch.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)

    def clip_(self, grad, layout, *, skip=None, **_):
        total = global_norm(grad)
        # clip_grad_norm_ takes the threshold as a Python float and divides in float32.
        ceiling = self.observe_(total, skip).float()
        grad.mul_((ceiling / (total + EPS_TORCH)).clamp_(max=1.0))
        return total


def _units(values: torch.Tensor, layout: Layout) -> list[torch.Tensor]:
    """Per tensor, the (U, N) L2 norms of its units, as ``timm``'s ``unitwise_norm``.

    A unit is one output of a layer. Our weights are stored (in, out), as in
    Keras and in the NFNet authors' JAX code, so a unit is a *column*: the
    norm over the input axis (dimension 0). PyTorch stores the same weight
    transposed, [out, in], which is why timm reduces over dimension 1 -- the
    same numbers. The recurrent kernels follow the same convention (Keras's
    (in, 4 * hidden), PyTorch's ``weight_ih``/``weight_hh`` [4 * hidden, in]).
    A bias (a vector) is one unit as a whole.
    """
    lanes = values.shape[1]
    out = []
    for spec in layout.specs:
        block = values[spec.offset : spec.offset + spec.size]
        if len(spec.shape) <= 1:
            out.append(torch.linalg.vector_norm(block, dim=0, keepdim=True))
        else:
            matrix = block.view(-1, spec.shape[-1], lanes)
            out.append(torch.linalg.vector_norm(matrix, dim=0))
    return out


class AGC(ClipRule):
    """Adaptive Gradient Clipping (Brock, De, Smith & Simonyan 2021, NFNets).

    Each unit i (a row of a PyTorch ``[out, in]`` weight; a bias as a whole)
    is clipped relative to its own weights:

        if ||G_i|| > lambda * max(||W_i||, eps):
            G_i <- G_i * lambda * max(||W_i||, eps) / max(||G_i||, 1e-6)

    exactly as ``timm.utils.agc.adaptive_clip_grad(parameters, clip_factor,
    eps)`` (a norm equal to the bound is clipped too, to itself). The
    authors built it to train deep ResNets *without batch normalization*:
    a step may change a unit's weights by at most about lambda of their size,
    whatever the gradient's scale. There is no single threshold (``threshold``
    is NaN); ``units_clipped`` counts, per tensor, the units it clipped.
    """

    name = "agc"

    def __init__(self, clip_factor: Threshold, eps: float):
        self.clip_factor, self.eps = clip_factor, eps
        self.units_clipped: torch.Tensor | None = None  # (T, N) fraction of each tensor's units
        self.unit_counts: torch.Tensor | None = None  # (T, 1) units per tensor

    def clip_(self, grad, layout, *, weights=None, **_):
        if weights is None:
            raise ValueError("AGC clips relative to the weights: pass weights=")
        total = global_norm(grad)
        lanes = grad.shape[1]
        factor = torch.as_tensor(self.clip_factor, dtype=grad.dtype)
        fractions = []
        for spec, w_norm, g_norm in zip(
            layout.specs, _units(weights, layout), _units(grad, layout), strict=True
        ):
            max_norm = w_norm.clamp_(min=self.eps).mul_(factor)
            clipped = ~(g_norm < max_norm)  # timm keeps G where ||G|| < bound
            scale = torch.where(clipped, max_norm / g_norm.clamp(min=1e-6), 1.0)
            block = grad[spec.offset : spec.offset + spec.size]
            if len(spec.shape) <= 1:
                block.mul_(scale)
            else:
                block.view(-1, spec.shape[-1], lanes).mul_(scale)
            fractions.append(clipped.to(grad.dtype).mean(dim=0))
        self.units_clipped = torch.stack(fractions)
        self.unit_counts = torch.tensor(
            [[1.0 if len(s.shape) <= 1 else float(s.shape[-1])] for s in layout.specs]
        )
        return total

    def layer_units_clipped(self, layout: Layout) -> torch.Tensor:
        """The fraction of each layer's units clipped at the last step, (L, N)."""
        per_layer = torch.zeros(len(layout.layer_names), self.units_clipped.shape[1])
        per_layer.index_add_(0, layout.tensor_layer, self.units_clipped * self.unit_counts)
        totals = torch.zeros(len(layout.layer_names), 1)
        totals.index_add_(0, layout.tensor_layer, self.unit_counts)
        return per_layer / totals

    def share_of_units_clipped(self) -> torch.Tensor:
        """The fraction of all units clipped at the last step, (N,)."""
        return (self.units_clipped * self.unit_counts).sum(0) / self.unit_counts.sum()


class ZClip(ClipRule):
    """ZClip (Kumar, Owen, Roy Chowdhury & Güra 2025): clip norm spikes by z-score.

    Exactly the ``zclip`` package 1.0.0 in its default mode (``mode="zscore"``,
    ``clip_option="adaptive_scaling"``, ``clip_factor=1``, eps 1e-6):

    * warm-up: the first ``warmup`` norms are only collected (unclipped, or
      clipped by ``torch.nn.utils.clip_grad_norm_`` at the cap when there is
      one); at the last of them the mean and the (population) variance of the
      collected norms start the EMA;
    * then, each step: z = (g - mean) / (std + eps). If z > z_thresh, the norm
      is a spike and is clipped to mean + z_thresh * std / (z / z_thresh) --
      the larger the spike, the lower it is clipped; otherwise it passes;
      the optional cap (``max_grad_norm``) bounds either value; the scale is
      target / (g + 1e-6), applied only if g > target;
    * the EMA is updated with the clipped value on a spike (the norm itself
      otherwise), not with the capped one: mean <- alpha mean + (1 - alpha) x,
      then var <- alpha var + (1 - alpha) (x - mean)^2 with the *new* mean.

    The package's own default cap is 1.0; here the cap is off unless set
    (``cap``). ``threshold`` is the largest norm the step let through: the
    spike's target when it clipped, mean + z_thresh (std + eps) otherwise (both
    bounded by the cap), the cap or NaN during the warm-up. Built for the loss
    spikes of large-model pretraining.
    """

    name = "zclip"
    EPS = 1e-6

    def __init__(self, z_thresh: Threshold, alpha: float, warmup: int, cap: Threshold | None):
        self.z_thresh, self.alpha, self.warmup, self.cap = z_thresh, alpha, int(warmup), cap
        self.count: torch.Tensor | None = None  # (N,) norms collected, up to warmup
        self.buffer: torch.Tensor | None = None  # (warmup, N) the warm-up norms
        self.mean: torch.Tensor | None = None  # (N,) float64 EMA; NaN before the warm-up ends
        self.var: torch.Tensor | None = None
        self.z: torch.Tensor | None = None  # (N,) the last z-score; NaN in the warm-up
        self.spike: torch.Tensor | None = None  # (N,) bool: the last step was a spike
        self._threshold: torch.Tensor | None = None

    def threshold(self, lanes):
        if self._threshold is None:
            return super().threshold(lanes)
        return self._threshold.float()

    def _start(self, lanes: int) -> None:
        self.count = torch.zeros(lanes, dtype=torch.int64)
        self.buffer = torch.zeros(self.warmup, lanes, dtype=torch.float64)
        self.mean = torch.full((lanes,), math.nan, dtype=torch.float64)
        self.var = torch.full((lanes,), math.nan, dtype=torch.float64)

    def observe_(
        self, norms: torch.Tensor, skip: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on each lane's global norm (N,), advancing the state.

        Returns (scale, in_warmup): the factor the package would apply after
        the warm-up (float64, 1 where nothing is clipped) and which lanes are
        still warming up (their cap, if any, is applied as clip_grad_norm_).
        """
        lanes = norms.shape[0]
        if self.count is None:
            self._start(lanes)
        active = torch.ones(lanes, dtype=torch.bool) if skip is None else ~skip
        g = norms.double()
        warming = (self.count < self.warmup) & active
        running = (self.count >= self.warmup) & active
        cap = None if self.cap is None else torch.as_tensor(self.cap, dtype=torch.float64)
        z_thresh = torch.as_tensor(self.z_thresh, dtype=torch.float64)

        # After the warm-up: z-score, the spike's target, the cap, the scale.
        std = self.var**0.5
        z = (g - self.mean) / (std + self.EPS)
        spike = running & (z > z_thresh)
        eta = z / z_thresh
        target = self.mean + (z_thresh * std) / eta
        adaptive = torch.where(spike, target, g)
        effective = adaptive if cap is None else torch.minimum(adaptive, cap)
        scale = torch.where(running & (g > effective), effective / (g + 1e-6), 1.0)
        boundary = self.mean + z_thresh * (std + self.EPS)
        ceiling = torch.where(spike, target, boundary)
        if cap is not None:
            ceiling = torch.minimum(ceiling, cap)
        warm_ceiling = torch.full_like(g, math.nan) if cap is None else cap.expand_as(g)
        self._threshold = torch.where(warming, warm_ceiling, ceiling)
        self.z = torch.where(running, z, math.nan)
        self.spike = spike

        # The EMA moves with the clipped value (the norm itself when no spike).
        x = adaptive
        mean = self.alpha * self.mean + (1 - self.alpha) * x
        var = self.alpha * self.var + (1 - self.alpha) * (x - mean) ** 2
        self.mean = torch.where(running, mean, self.mean)
        self.var = torch.where(running, var, self.var)

        # The warm-up: collect; the lanes whose buffer fills start their EMA.
        if bool(warming.any()):
            slot = self.count.clamp(max=self.warmup - 1).unsqueeze(0)
            current = self.buffer.gather(0, slot)[0]
            self.buffer.scatter_(0, slot, torch.where(warming, g, current).unsqueeze(0))
            self.count += warming
            full = warming & (self.count == self.warmup)
            if bool(full.any()):
                mean, var = _mean_and_variance(self.buffer)
                self.mean = torch.where(full, mean, self.mean)
                self.var = torch.where(full, var, self.var)
        return scale, warming

    def clip_(self, grad, layout, *, skip=None, **_):
        total = global_norm(grad)
        scale, warming = self.observe_(total, skip)
        factor = scale.float()  # the package multiplies float32 gradients by a Python float
        if self.cap is not None and bool(warming.any()):
            cap = torch.as_tensor(self.cap, dtype=grad.dtype)  # clip_grad_norm_ in the warm-up
            factor = torch.where(warming, (cap / (total + EPS_TORCH)).clamp_(max=1.0), factor)
        grad.mul_(factor)
        return total


def _mean_and_variance(buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per lane, the mean and population variance of a (k, N) float64 buffer,
    summed row by row as the package's Python ``sum`` does."""
    total = torch.zeros_like(buffer[0])
    for row in buffer:
        total = total + row
    mean = total / buffer.shape[0]
    squares = torch.zeros_like(mean)
    for row in buffer:
        squares = squares + (row - mean) ** 2
    return mean, squares / buffer.shape[0]


RULES = {
    "none": NoClip,
    "norm": GlobalNorm,
    "norm_per_tensor": PerTensorNorm,
    "value": Value,
    "norm_value": NormThenValue,
    "layerwise_value": LayerwiseValue,
    "autoclip": AutoClip,
    "agc": AGC,
    "zclip": ZClip,
}
# The constructor argument that a lane's own parameter (``clip_param``) sets.
LANE_PARAMETER = {"autoclip": "percentile", "agc": "clip_factor", "zclip": "z_thresh"}


def rule_for(
    config: TrainConfig,
    *,
    clip_norm: Threshold | None = None,
    clip_value: Threshold | None = None,
    clip_param: Threshold | None = None,
) -> ClipRule:
    """The rule a config asks for; per-lane values may override the config's.

    ``clip_param`` is the adaptive rule's own setting per lane (AutoClip's
    percentile, AGC's lambda, ZClip's z threshold; ``RULE_PARAMETER``).
    """
    max_norm = config.clip_norm if clip_norm is None else clip_norm
    settings = {
        "max_norm": max_norm,
        "clip_value": config.clip_value if clip_value is None else clip_value,
        "clip_value_output": config.clip_value_output,
        "percentile": config.autoclip_percentile,
        "clip_factor": config.agc_lambda,
        "eps": config.agc_eps,
        "z_thresh": config.zclip_z,
        "alpha": config.zclip_alpha,
        "warmup": config.zclip_warmup,
        "cap": max_norm if config.zclip_cap else None,
    }
    if clip_param is not None:
        if config.clip_mode not in LANE_PARAMETER:
            raise ValueError(f"clip mode {config.clip_mode!r} has no parameter of its own")
        settings[LANE_PARAMETER[config.clip_mode]] = clip_param
    try:
        cls = RULES[config.clip_mode]
    except KeyError:
        raise ValueError(f"unknown clip mode {config.clip_mode!r}") from None
    wanted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in settings.items() if k in wanted})
