"""Every clipping rule against its reference: PyTorch's utilities and Keras 3's formula."""

import math
import os

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from clipviz.engine.clipping import (
    RULES,
    GlobalNorm,
    LayerwiseValue,
    NoClip,
    NormThenValue,
    PerTensorNorm,
    Value,
    rule_for,
    tensor_norms,
)
from clipviz.engine.config import CLIP_MODES, DEFAULT
from clipviz.engine.models import Layout

shapes = st.lists(
    st.tuples(st.integers(1, 6), st.integers(1, 5)).map(lambda t: t if t[1] > 1 else (t[0],)),
    min_size=1,
    max_size=4,
)
scales = st.sampled_from([1e-3, 1.0, 10.0, 1e3])
thresholds = st.floats(0.01, 100.0)


def make(shapes_, seed, scale, lanes=1):
    """Random gradients as a list of tensors and as our flat (P, N) layout."""
    gen = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(*s, generator=gen) * scale for s in shapes_]
    entries = [
        (f"t{i}", tuple(s), "output" if i == len(shapes_) - 1 else "hidden")
        for i, s in enumerate(shapes_)
    ]
    layout = Layout(entries)
    flat = torch.cat([t.flatten() for t in tensors]).unsqueeze(1).repeat(1, lanes).contiguous()
    return tensors, layout, flat


def as_params(tensors):
    params = [torch.nn.Parameter(torch.zeros_like(t)) for t in tensors]
    for p, t in zip(params, tensors, strict=True):
        p.grad = t.clone()
    return params


def flat_grads(params):
    return torch.cat([p.grad.flatten() for p in params])


@settings(max_examples=60, deadline=None)
@given(shapes, st.integers(0, 10_000), scales, thresholds)
def test_global_norm_equals_clip_grad_norm(shapes_, seed, scale, c):
    tensors, layout, flat = make(shapes_, seed, scale)
    params = as_params(tensors)
    torch_total = torch.nn.utils.clip_grad_norm_(params, c)
    stats = GlobalNorm(c).apply_(flat, layout)
    torch.testing.assert_close(flat[:, 0], flat_grads(params), rtol=1e-5, atol=1e-7)
    assert stats.norm_before[0].item() == pytest.approx(torch_total.item(), rel=1e-5)
    assert stats.cosine[0].item() == pytest.approx(1.0, abs=1e-5)  # norm clipping keeps direction
    before = stats.norm_before[0].item()
    # PyTorch's factor is min(1, c / (total + 1e-6)): the norm after is c * total / (total +
    # 1e-6) when the gradient was longer than c, and unchanged otherwise.
    expected = c * before / (before + 1e-6) if c / (before + 1e-6) < 1 else before
    assert stats.norm_after[0].item() == pytest.approx(expected, rel=1e-5, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(shapes, st.integers(0, 10_000), scales, thresholds)
def test_value_equals_clip_grad_value(shapes_, seed, scale, c):
    tensors, layout, flat = make(shapes_, seed, scale)
    params = as_params(tensors)
    torch.nn.utils.clip_grad_value_(params, c)
    stats = Value(c).apply_(flat, layout)
    torch.testing.assert_close(flat[:, 0], flat_grads(params))
    assert float(flat.abs().max()) <= float(np.float32(c))  # c rounded to float32
    expected_fraction = float((torch.cat([t.flatten() for t in tensors]).abs() > c).float().mean())
    assert stats.clipped_fraction[0].item() == pytest.approx(expected_fraction)


def keras3_clip_by_norm(g: np.ndarray, c: float) -> np.ndarray:
    """Keras 3 ``Optimizer._clip_by_norm``: g * c / max(||g||, c), per variable."""
    l2 = math.sqrt(float((g.astype(np.float64) ** 2).sum()))
    return g * c / max(l2, c)


@settings(max_examples=60, deadline=None)
@given(shapes, st.integers(0, 10_000), scales, thresholds)
def test_norm_per_tensor_equals_keras3_formula(shapes_, seed, scale, c):
    tensors, layout, flat = make(shapes_, seed, scale)
    PerTensorNorm(c).apply_(flat, layout)
    expected = np.concatenate([keras3_clip_by_norm(t.numpy(), c).ravel() for t in tensors])
    np.testing.assert_allclose(flat[:, 0].numpy(), expected, rtol=1e-5, atol=1e-7)
    for norm in tensor_norms(flat, layout)[:, 0]:
        assert norm.item() <= c * (1 + 1e-5)


def test_norm_per_tensor_equals_keras3_optimizer():
    """Against Keras 3 itself (torch backend), where it is installed."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    tensors, layout, flat = make([(4, 3), (3,), (3, 1), (1,)], seed=3, scale=5.0)
    optimizer = keras.optimizers.SGD(learning_rate=0.1, clipnorm=1.5)
    keras_out = optimizer._clip_gradients([keras.ops.convert_to_tensor(t.numpy()) for t in tensors])
    PerTensorNorm(1.5).apply_(flat, layout)
    expected = np.concatenate([keras.ops.convert_to_numpy(g).ravel() for g in keras_out])
    np.testing.assert_allclose(flat[:, 0].numpy(), expected, rtol=1e-6, atol=1e-7)
    # Keras 3's global_clipnorm is PyTorch's global norm clipping.
    tensors, layout, flat = make([(4, 3), (3,)], seed=4, scale=5.0)
    optimizer = keras.optimizers.SGD(learning_rate=0.1, global_clipnorm=1.5)
    keras_out = optimizer._clip_gradients([keras.ops.convert_to_tensor(t.numpy()) for t in tensors])
    GlobalNorm(1.5).apply_(flat, layout)
    expected = np.concatenate([keras.ops.convert_to_numpy(g).ravel() for g in keras_out])
    np.testing.assert_allclose(flat[:, 0].numpy(), expected, rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(0, 10_000), scales, thresholds, thresholds)
def test_norm_then_value_is_torch_norm_then_torch_value(shapes_, seed, scale, c_norm, c_value):
    tensors, layout, flat = make(shapes_, seed, scale)
    params = as_params(tensors)
    torch.nn.utils.clip_grad_norm_(params, c_norm)
    torch.nn.utils.clip_grad_value_(params, c_value)
    NormThenValue(c_norm, c_value).apply_(flat, layout)
    torch.testing.assert_close(flat[:, 0], flat_grads(params), rtol=1e-5, atol=1e-7)


def test_layerwise_value_gives_the_output_layer_its_own_range():
    tensors, layout, flat = make([(3, 4), (4,), (4, 1), (1,)], seed=0, scale=50.0)
    LayerwiseValue(clip_value=10.0, clip_value_output=100.0).apply_(flat, layout)
    hidden = flat[layout.layer_slice("hidden"), 0]
    output = flat[layout.layer_slice("output"), 0]
    original = torch.cat([t.flatten() for t in tensors])
    assert float(hidden.abs().max()) <= 10.0
    torch.testing.assert_close(output, original[layout.layer_slice("output")].clamp(-100, 100))


def test_sources_worked_examples_exactly():
    layout = Layout([("g", (5,), "output")])
    g = torch.tensor([[2.0], [-6.0], [8.0], [-3.0], [5.0]], dtype=torch.float64)
    by_value = g.clone()
    Value(4.0).apply_(by_value, layout)
    assert by_value[:, 0].tolist() == [2.0, -4.0, 4.0, -3.0, 4.0]

    by_norm = g.clone()
    stats = GlobalNorm(6.0).apply_(by_norm, layout)
    assert stats.norm_before.item() == pytest.approx(math.sqrt(138), rel=1e-12)
    exact = [x * 6 / math.sqrt(138) for x in (2, -6, 8, -3, 5)]
    # PyTorch's rule divides by norm + 1e-6: within 1e-6 relative of the exact factor.
    np.testing.assert_allclose(by_norm[:, 0].numpy(), exact, rtol=1e-6)
    assert stats.norm_after.item() == pytest.approx(6.0, rel=1e-6)


def test_value_clipping_can_turn_the_direction():
    layout = Layout([("g", (2,), "output")])
    g = torch.tensor([[10.0], [1.0]])
    stats = Value(2.0).apply_(g, layout)
    assert g[:, 0].tolist() == [2.0, 1.0]
    assert stats.cosine.item() < 0.95  # turned by more than 18 degrees


def test_per_lane_thresholds_match_separate_single_lane_runs():
    tensors, layout, flat = make([(5, 3), (3,)], seed=7, scale=3.0, lanes=3)
    thresholds = torch.tensor([0.5, 2.0, 100.0])
    for rule_cls in (GlobalNorm, PerTensorNorm, Value):
        lanes = flat.clone()
        rule_cls(thresholds).apply_(lanes, layout)
        for lane, c in enumerate(thresholds.tolist()):
            single = flat[:, :1].clone()
            rule_cls(c).apply_(single, layout)
            torch.testing.assert_close(lanes[:, lane], single[:, 0])


def test_no_clip_changes_nothing_and_reports_it():
    tensors, layout, flat = make([(4, 2)], seed=1, scale=10.0)
    before = flat.clone()
    stats = NoClip().apply_(flat, layout)
    assert torch.equal(flat, before)
    assert not bool(stats.clipped.any())
    assert stats.scale.item() == pytest.approx(1.0)


def test_every_mode_has_a_rule():
    assert set(RULES) == set(CLIP_MODES)
    for mode in CLIP_MODES:
        rule = rule_for(DEFAULT.replace(clip_mode=mode))
        assert rule.name == mode
