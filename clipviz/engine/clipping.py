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

Adding a rule means adding one class with a ``clip_`` method and an entry in
``RULES``.
"""

from __future__ import annotations

import inspect
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

    def clip_(self, grad: torch.Tensor, layout: Layout) -> torch.Tensor:
        """Clip ``grad`` (P, N) in place; return its global norm before clipping (N,).

        This is the training hot path: it does only what the rule needs.
        """
        return global_norm(grad)

    def apply_(self, grad: torch.Tensor, layout: Layout) -> ClipStats:
        """Clip ``grad`` in place and measure everything the application did."""
        before = grad.clone()
        per_tensor = tensor_norms(before, layout)
        total = self.clip_(grad, layout)
        stats = clip_statistics(before, grad, total)
        return ClipStats(
            total,
            stats["grad_norm_after"],
            stats["clip_scale"],
            stats["clipped"] > 0,
            stats["clipped_fraction"],
            stats["cosine"],
            per_tensor,
        )


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

    def clip_(self, grad, layout):
        total = global_norm(grad)
        grad.mul_((self.max_norm / (total + EPS_TORCH)).clamp_(max=1.0))
        return total


class PerTensorNorm(ClipRule):
    """Keras 3 ``clipnorm``: each tensor scaled by c / max(||g_tensor||, c)."""

    name = "norm_per_tensor"

    def __init__(self, max_norm: Threshold):
        self.max_norm = max_norm

    def clip_(self, grad, layout):
        per_tensor = tensor_norms(grad, layout)
        factor = self.max_norm / torch.maximum(per_tensor, torch.as_tensor(self.max_norm))
        grad.mul_(factor[layout.tensor_ids])
        return per_tensor.norm(dim=0)


class Value(ClipRule):
    """PyTorch ``clip_grad_value_``: each component clamped into [-c, c]."""

    name = "value"

    def __init__(self, clip_value: Threshold):
        self.clip_value = clip_value

    def clip_(self, grad, layout):
        total = global_norm(grad)
        c = torch.as_tensor(self.clip_value, dtype=grad.dtype)
        torch.clamp(grad, -c, c, out=grad)
        return total


class NormThenValue(ClipRule):
    """Global norm first, then value: the order of Keras 2.2's clipnorm + clipvalue."""

    name = "norm_value"

    def __init__(self, max_norm: Threshold, clip_value: Threshold):
        self.norm_rule, self.value_rule = GlobalNorm(max_norm), Value(clip_value)

    def clip_(self, grad, layout):
        total = self.norm_rule.clip_(grad, layout)
        self.value_rule.clip_(grad, layout)
        return total


class LayerwiseValue(ClipRule):
    """Value clipping with a wider range for the output layer (Graves 2013)."""

    name = "layerwise_value"

    def __init__(self, clip_value: Threshold, clip_value_output: Threshold):
        self.clip_value, self.clip_value_output = clip_value, clip_value_output

    def clip_(self, grad, layout):
        total = global_norm(grad)
        is_output = (layout.layer_ids == layout.layer_names.index("output")).unsqueeze(1)
        hidden = torch.as_tensor(self.clip_value, dtype=grad.dtype)
        output = torch.as_tensor(self.clip_value_output, dtype=grad.dtype)
        bound = torch.where(is_output, output, hidden)
        torch.clamp(grad, -bound, bound, out=grad)
        return total


RULES = {
    "none": NoClip,
    "norm": GlobalNorm,
    "norm_per_tensor": PerTensorNorm,
    "value": Value,
    "norm_value": NormThenValue,
    "layerwise_value": LayerwiseValue,
}


def rule_for(
    config: TrainConfig,
    *,
    clip_norm: Threshold | None = None,
    clip_value: Threshold | None = None,
) -> ClipRule:
    """The rule a config asks for; per-lane thresholds may override the config's."""
    thresholds = {
        "max_norm": config.clip_norm if clip_norm is None else clip_norm,
        "clip_value": config.clip_value if clip_value is None else clip_value,
        "clip_value_output": config.clip_value_output,
    }
    try:
        cls = RULES[config.clip_mode]
    except KeyError:
        raise ValueError(f"unknown clip mode {config.clip_mode!r}") from None
    wanted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in thresholds.items() if k in wanted})
