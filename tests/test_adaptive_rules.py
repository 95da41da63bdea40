"""The adaptive rules against their references, step by step.

* ``agc``: ``timm.utils.agc.adaptive_clip_grad`` (timm's file, loaded by path:
  importing ``timm.utils`` pulls torchvision, which need not import here);
* ``zclip``: the ``zclip`` package 1.0.0, driven through a real ``nn.Module``
  whose gradient norms the test sets;
* ``autoclip``: ``np.percentile`` over the history, computed here, then
  ``torch.nn.utils.clip_grad_norm_`` as in the authors' code.

And the engine's promises around them: every lane keeps its own state, so
a lane equals the single run of its setting; a skipped lane's state stays put.
"""

from __future__ import annotations

import importlib.util
import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from clipviz.engine.clipping import AGC, AutoClip, ZClip, rule_for
from clipviz.engine.config import DEFAULT, PRESETS
from clipviz.engine.models import Layout
from clipviz.engine.trainer import Trainer

zclip_package = pytest.importorskip("zclip")


def load_timm_agc():
    """timm's ``utils/agc.py`` as a module of its own (it needs only torch)."""
    found = importlib.util.find_spec("timm")
    if found is None:
        pytest.skip("timm is not installed (pip install -r requirements-dev.txt)")
    path = f"{found.submodule_search_locations[0]}/utils/agc.py"
    spec = importlib.util.spec_from_file_location("timm_agc", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- AGC against timm ----------------------------------------------------------------

# Tensors as this library stores them: matrices (in, out) and bias vectors.
agc_shapes = st.lists(
    st.tuples(st.integers(1, 6), st.integers(1, 5)).map(lambda t: t if t[1] > 1 else (t[0],)),
    min_size=1,
    max_size=4,
)


@settings(max_examples=80, deadline=None)
@given(
    agc_shapes,
    st.integers(0, 10_000),
    st.sampled_from([1e-4, 1e-2, 1.0, 100.0]),  # weight scale (1e-4: the eps floor matters)
    st.sampled_from([1e-4, 1e-2, 1.0, 100.0]),  # gradient scale
    st.floats(1e-3, 1.0),  # lambda
    st.sampled_from([1e-3, 1e-2]),  # eps
    st.integers(1, 3),  # lanes
)
def test_agc_equals_timm_adaptive_clip_grad(shapes, seed, w_scale, g_scale, lam, eps, lanes):
    timm_agc = load_timm_agc()
    gen = torch.Generator().manual_seed(seed)
    layout = Layout([(f"t{i}", tuple(s), "layer") for i, s in enumerate(shapes)])
    weights = torch.randn(layout.size, lanes, generator=gen) * w_scale
    grads = torch.randn(layout.size, lanes, generator=gen) * g_scale
    ours = grads.clone()
    AGC(lam, eps).apply_(ours, layout, weights=weights)
    for lane in range(lanes):
        params = []
        for spec in layout.specs:
            rows = slice(spec.offset, spec.offset + spec.size)
            w = weights[rows, lane].view(spec.shape)
            g = grads[rows, lane].view(spec.shape)
            # torch stores a layer's weight [out, in]: the transpose of our (in, out)
            p = torch.nn.Parameter(w.T.clone() if w.ndim == 2 else w.clone())
            p.grad = g.T.clone() if g.ndim == 2 else g.clone()
            params.append(p)
        timm_agc.adaptive_clip_grad(params, clip_factor=lam, eps=eps)
        expected = torch.cat([(p.grad.T if p.ndim == 2 else p.grad).flatten() for p in params])
        torch.testing.assert_close(ours[:, lane], expected, rtol=1e-5, atol=1e-12)


def test_agc_counts_the_units_it_clips_per_layer():
    # Two layers: a 3-unit weight + bias, and a 1-unit weight + bias. Unit 0's gradient is
    # large next to its weights; every other unit's is tiny.
    layout = Layout(
        [
            ("w1", (2, 3), "hidden"),
            ("b1", (3,), "hidden"),
            ("w2", (3, 1), "out"),
            ("b2", (1,), "out"),
        ]
    )
    weights = torch.ones(layout.size, 1)
    grads = torch.full((layout.size, 1), 1e-6)
    grads[0, 0] = grads[3, 0] = 5.0  # w1[:, 0], the first unit (column) of w1
    stats = AGC(0.01, 1e-3).apply_(grads, layout, weights=weights)
    assert stats.units_clipped[:, 0].tolist() == pytest.approx([1 / 3, 0.0, 0.0, 0.0])
    rule = AGC(0.01, 1e-3)
    rule.clip_(grads.clone(), layout, weights=weights)
    # hidden: 1 of 4 units (3 weight columns + the bias as one); out: 0 of 2
    assert rule.layer_units_clipped(layout)[:, 0].tolist() == pytest.approx([0.25, 0.0])
    # the clipped unit's norm is lambda * its weight norm (sqrt 2)
    assert float(grads[[0, 3], 0].norm()) == pytest.approx(0.01 * math.sqrt(2), rel=1e-5)


def test_agc_needs_the_weights():
    layout = Layout([("w", (2, 2), "layer")])
    with pytest.raises(ValueError, match="weights"):
        AGC(0.01, 1e-3).clip_(torch.ones(4, 1), layout)


# ---- ZClip against the zclip package -------------------------------------------------


class TwoTensors(torch.nn.Module):
    """A real module with a (3, 4) weight and a bias, for the package to read."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(3, 4))
        self.bias = torch.nn.Parameter(torch.zeros(3))


def gradient_with_norm(norm: float, position: int) -> torch.Tensor:
    """A flat gradient of the module whose L2 norm is exactly ``norm`` in float32.

    One nonzero component: sqrt(x^2) rounds back to |x|, so the package's norm
    (per-tensor norms, squared, summed) and ours (one sum of squares) agree to
    the last bit, and so do their spike decisions.
    """
    flat = torch.zeros(15)
    flat[position] = norm
    return flat


def norm_sequences(min_size: int = 2):
    """Gradient norms of a quiet run, with a few spikes 10x..10^4x multiplied in."""
    base = st.lists(st.floats(0.05, 20.0), min_size=min_size, max_size=60)
    spikes = st.lists(st.tuples(st.integers(0, 59), st.floats(10.0, 1e4)), max_size=4)

    def build(values_and_spikes):
        values, spikes_ = values_and_spikes
        out = list(values)
        for at, factor in spikes_:
            if at < len(out):
                out[at] *= factor
        return [float(np.float32(v)) for v in out]

    return st.tuples(base, spikes).map(build)


@settings(max_examples=80, deadline=None)
@given(
    norm_sequences(),
    st.floats(0.5, 0.999),  # alpha
    st.floats(0.5, 5.0),  # z threshold
    st.integers(1, 10),  # warm-up
    st.one_of(st.none(), st.floats(0.1, 50.0)),  # the optional cap
    st.integers(0, 14),  # where the gradient's one component sits
)
def test_zclip_equals_the_zclip_package_step_by_step(norms, alpha, z, warmup, cap, position):
    module = TwoTensors()
    reference = zclip_package.ZClip(alpha=alpha, z_thresh=z, max_grad_norm=cap, warmup_steps=warmup)
    layout = Layout([("weight", (4, 3), "layer"), ("bias", (3,), "layer")])
    ours = ZClip(z, alpha, warmup, cap)
    for step, norm in enumerate(norms):
        flat = gradient_with_norm(norm, position)
        module.weight.grad = flat[:12].view(3, 4).clone()
        module.bias.grad = flat[12:].clone()
        returned = reference.step(module)
        grad = flat.unsqueeze(1).clone()
        total = ours.clip_(grad, layout)
        assert total.item() == pytest.approx(returned, rel=1e-7)
        expected = torch.cat([module.weight.grad.flatten(), module.bias.grad])
        torch.testing.assert_close(grad[:, 0], expected, rtol=1e-6, atol=0, msg=f"step {step}")
        if reference.initialized:  # the EMA (or, at the warm-up's end, its start)
            assert ours.mean.item() == pytest.approx(reference.mean, rel=1e-12)
            assert ours.var.item() == pytest.approx(reference.var, rel=1e-9, abs=1e-300)
        else:
            assert math.isnan(ours.mean.item())
        # The recorded threshold is the largest norm the step let through.
        after = float(grad[:, 0].norm())
        threshold = ours.threshold(1).item()
        if math.isnan(threshold):
            assert cap is None and step < warmup and after == pytest.approx(norm)
        else:
            assert after <= threshold * (1 + 1e-5)
            assert after == pytest.approx(min(norm, threshold), rel=1e-5)


def test_zclip_clips_a_larger_spike_lower():
    """The adaptive scaling: target = mean + z_t * std / (z / z_t) falls as z grows."""
    quiet = [1.0, 1.2, 0.8, 1.1, 0.9]
    targets = []
    for spike in (3.0, 30.0):
        rule = ZClip(2.5, 0.97, warmup=5, cap=None)
        for norm in [*quiet, spike]:
            rule.observe_(torch.tensor([norm]))
        assert bool(rule.spike[0])
        targets.append(rule.threshold(1).item())
    mean, std = np.mean(quiet), np.std(quiet)
    for spike, target in zip((3.0, 30.0), targets, strict=True):
        z = (spike - mean) / (std + 1e-6)
        assert target == pytest.approx(mean + 2.5 * std / (z / 2.5), rel=1e-6)
    assert targets[1] < targets[0] < mean + 2.5 * std


# ---- AutoClip against NumPy's percentile ----------------------------------------------


@settings(max_examples=80, deadline=None)
@given(norm_sequences(min_size=1), st.floats(0.5, 100.0), st.integers(0, 14))
def test_autoclip_clips_at_the_numpy_percentile_of_the_history(norms, percentile, position):
    layout = Layout([("weight", (4, 3), "layer"), ("bias", (3,), "layer")])
    rule = AutoClip(percentile)
    for step, norm in enumerate(norms):
        # The authors' code: append, np.percentile of everything so far, clip_grad_norm_.
        expected_threshold = np.percentile(norms[: step + 1], percentile)
        flat = gradient_with_norm(norm, position)
        module = TwoTensors()
        module.weight.grad = flat[:12].view(3, 4).clone()
        module.bias.grad = flat[12:].clone()
        torch.nn.utils.clip_grad_norm_(module.parameters(), expected_threshold)
        grad = flat.unsqueeze(1).clone()
        rule.clip_(grad, layout)
        assert rule._threshold.item() == expected_threshold  # the same float64, bit for bit
        expected = torch.cat([module.weight.grad.flatten(), module.bias.grad])
        torch.testing.assert_close(grad[:, 0], expected, rtol=1e-6, atol=0, msg=f"step {step}")


def test_autoclip_history_grows_past_its_first_buffer():
    rng = np.random.default_rng(0)
    norms = rng.lognormal(0.0, 1.0, size=300)
    rule = AutoClip(10.0)
    for step, norm in enumerate(norms):
        threshold = rule.observe_(torch.tensor([norm], dtype=torch.float64))
        assert threshold.item() == np.percentile(norms[: step + 1], 10.0)


# ---- lanes are independent ------------------------------------------------------------


@pytest.mark.parametrize(
    "make_rule,params",
    [
        (AutoClip, [2.0, 10.0, 50.0]),
        (lambda z: ZClip(z, 0.9, warmup=4, cap=None), [1.0, 2.5, 4.0]),
        (lambda z: ZClip(z, 0.9, warmup=4, cap=3.0), [1.0, 2.5, 4.0]),
    ],
    ids=["autoclip", "zclip", "zclip-capped"],
)
def test_each_lane_of_a_stateful_rule_equals_its_own_single_rule(make_rule, params):
    rng = np.random.default_rng(5)
    steps, lanes = 40, 3
    norms = rng.lognormal(0.0, 0.4, size=(steps, lanes))
    norms[[10, 25], [0, 2]] *= 50.0  # spikes in some lanes only
    skip = rng.random((steps, lanes)) < 0.15  # and lanes skipping different steps
    params = torch.tensor(params, dtype=torch.float64)
    layout = Layout([("g", (2,), "layer")])
    many = make_rule(params)
    singles = [make_rule(float(p)) for p in params]
    for t in range(steps):
        grads = torch.tensor(np.stack([norms[t], np.zeros(lanes)]), dtype=torch.float32)
        before = grads.clone()
        many.clip_(grads, layout, skip=torch.tensor(skip[t]))
        for lane, single in enumerate(singles):
            if skip[t, lane]:
                continue  # a skipped lane's step never reaches its single rule
            g = before[:, lane : lane + 1].clone()
            single.clip_(g, layout)
            torch.testing.assert_close(grads[:, lane], g[:, 0], rtol=1e-6, atol=0)
            assert many.threshold(lanes)[lane].item() == pytest.approx(
                single.threshold(1).item(), rel=1e-6, nan_ok=True
            )


@pytest.mark.parametrize(
    "mode,values",
    [("autoclip", [5.0, 10.0, 50.0]), ("agc", [0.01, 0.05, 0.2]), ("zclip", [1.5, 2.5, 4.0])],
)
def test_trainer_lanes_equal_single_runs_of_each_rule(mode, values):
    # Standardized target, gentle learning rates: away from the chaotic boundary,
    # where the lanes' batched products round like the single runs' to float tolerance.
    config = DEFAULT.replace(
        clip_mode=mode, target_scaling="standardize", epochs=3, zclip_warmup=10
    )
    lrs = [0.01, 0.003, 0.02]
    lanes = Trainer(config, n_lanes=3, lr=lrs, clip_param=values).run()
    key = {"autoclip": "autoclip_percentile", "agc": "agc_lambda", "zclip": "zclip_z"}[mode]
    for lane, (lr, value) in enumerate(zip(lrs, values, strict=True)):
        single = Trainer(config.replace(lr=lr, **{key: value})).run()
        ours, theirs = lanes.records(lane), single.records()
        np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-4)
        np.testing.assert_allclose(
            ours["clip_threshold"], theirs["clip_threshold"], rtol=1e-4, equal_nan=True
        )
        assert (ours["clipped"] == theirs["clipped"]).mean() > 0.98


def test_rule_for_builds_each_adaptive_rule_from_the_config():
    agc = rule_for(DEFAULT.replace(clip_mode="agc", agc_lambda=0.05, agc_eps=1e-2))
    assert (agc.clip_factor, agc.eps) == (0.05, 1e-2)
    auto = rule_for(DEFAULT.replace(clip_mode="autoclip", autoclip_percentile=25.0))
    assert auto.percentile == 25.0
    z = rule_for(DEFAULT.replace(clip_mode="zclip", zclip_z=3.0, zclip_warmup=7))
    assert (z.z_thresh, z.warmup, z.cap) == (3.0, 7, None)  # the cap is off unless asked for
    capped = rule_for(DEFAULT.replace(clip_mode="zclip", zclip_cap=True, clip_norm=2.0))
    assert capped.cap == 2.0
    with pytest.raises(ValueError, match="no parameter"):
        rule_for(DEFAULT.replace(clip_mode="norm"), clip_param=torch.ones(2))


def test_the_preset_rules_keep_their_records_consistent():
    """Whatever the rule, norm after <= norm before and the threshold is respected."""
    for mode in ("autoclip", "zclip"):
        config = PRESETS["tutorial_clip_norm"].config.replace(
            clip_mode=mode, zclip_cap=True, epochs=2
        )
        rec = Trainer(config).run().records()
        finite = np.isfinite(rec["clip_threshold"])
        assert finite.any()
        assert (rec["grad_norm_after"] <= rec["grad_norm"] * (1 + 1e-5)).all()
        assert (rec["grad_norm_after"][finite] <= rec["clip_threshold"][finite] * (1 + 1e-4)).all()


@pytest.mark.parametrize(
    "changes,keys,absent",
    [
        ({"clip_mode": "autoclip"}, {"autoclip_percentile"}, {"clip_norm", "agc_lambda"}),
        ({"clip_mode": "agc"}, {"agc_lambda", "agc_eps"}, {"clip_norm", "zclip_z"}),
        (
            {"clip_mode": "zclip"},
            {"zclip_alpha", "zclip_z", "zclip_warmup", "zclip_cap"},
            {"clip_norm"},  # the cap is off: clip_norm plays no part
        ),
        ({"clip_mode": "zclip", "zclip_cap": True, "clip_norm": 2.0}, {"clip_norm"}, set()),
        ({"clip_mode": "norm", "skip_nonfinite": True}, {"skip_nonfinite"}, {"zclip_z"}),
    ],
)
def test_links_carry_each_rules_settings_and_round_trip(changes, keys, absent):
    config = DEFAULT.replace(agc_lambda=0.05, zclip_z=3.0, zclip_warmup=7, **changes)
    relevant = set(config.relevant_keys())
    assert keys <= relevant and not (absent & relevant)
    parsed, problems = type(config).from_params(dict(config.to_params()))
    assert not problems
    for key in relevant:
        assert getattr(parsed, key) == getattr(config, key), key


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("autoclip_percentile", "0", "greater than 0"),
        ("autoclip_percentile", "101", "at most 100"),
        ("agc_lambda", "-0.1", "greater than 0"),
        ("zclip_alpha", "1", "below 1"),
        ("zclip_warmup", "0", "at least 1"),
        ("zclip_cap", "perhaps", "true or false"),
    ],
)
def test_bad_rule_settings_are_named(key, value, message):
    config, problems = type(DEFAULT).from_params({key: value})
    assert [p.key for p in problems] == [key] and message in problems[0].message
    assert getattr(config, key) == getattr(DEFAULT, key)
