"""clipviz.lessons.adaptive: the worked arithmetic of AGC, ZClip and AutoClip, checked
against the reference implementations (timm, the zclip package, np.percentile),
and the words of the stability map built from a map's own numbers."""

from __future__ import annotations

import importlib.util
import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from clipviz.engine.sweep import ClipMap
from clipviz.lessons import adaptive
from clipviz.lessons.worked import WorkedInputError

zclip_package = pytest.importorskip("zclip")


def timm_agc():
    found = importlib.util.find_spec("timm")
    if found is None:
        pytest.skip("timm is not installed (pip install -r requirements-dev.txt)")
    spec = importlib.util.spec_from_file_location(
        "timm_agc", f"{found.submodule_search_locations[0]}/utils/agc.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- AGC ---------------------------------------------------------------------------------


def test_the_agc_example_clips_the_small_and_the_zero_weight_units():
    result = adaptive.agc_worked(
        adaptive.parse_weights(adaptive.AGC_EXAMPLE_WEIGHTS),
        adaptive.parse_gradient(adaptive.AGC_EXAMPLE_GRAD),
    )
    assert [u.clipped for u in result.units] == [False, True, False, True]
    small, zero = result.units[1], result.units[3]
    assert small.bound == pytest.approx(0.01 * math.sqrt(0.05**2 + 0.02**2 + 0.01**2))
    assert zero.weight_norm == 0 and zero.bound == pytest.approx(0.01 * 1e-3)  # eps sets it
    for unit in (small, zero):  # clipped to exactly the bound, direction kept
        assert math.hypot(*unit.grad_after) == pytest.approx(unit.bound, rel=1e-12)
    assert len(result.steps) == 1 + 4 + 1 and result.units_clipped == 2
    assert "Unit 2" in result.steps[2].title and r"\ge" in result.steps[2].latex


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(0, 10_000),
    st.sampled_from([1e-4, 1e-2, 1.0]),
    st.sampled_from([1e-3, 1e-1, 10.0]),
    st.floats(1e-3, 0.5),
)
def test_agc_worked_equals_timm(units, inputs, seed, w_scale, g_scale, lam):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(units, inputs, generator=gen, dtype=torch.float64) * w_scale
    g = torch.randn(units, inputs, generator=gen, dtype=torch.float64) * g_scale
    result = adaptive.agc_worked(w.tolist(), g.tolist(), lam, 1e-3)
    param = torch.nn.Parameter(w.clone())  # a torch [out, in] weight: rows are units
    param.grad = g.clone()
    timm_agc().adaptive_clip_grad([param], clip_factor=lam, eps=1e-3)
    np.testing.assert_allclose(np.array(result.output), param.grad.numpy(), rtol=1e-12, atol=0)
    assert adaptive.agc_engine_check(result) <= 1e-6 * max(1.0, g_scale)


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "is empty"),
        ("1, 2; 3", "differ in length"),
        ("1, x; 3, 4", "'x'"),
        ("1; 2; 3; 4; 5; 6; 7", "at most 6"),
        ("1, 2, 3, 4, 5, 6, 7", "at most 6"),
        ("1, inf", "finite"),
    ],
)
def test_bad_matrices_are_refused_in_one_line(text, message):
    with pytest.raises(WorkedInputError, match=message) as caught:
        adaptive.parse_gradient(text)
    assert "\n" not in str(caught.value)


def test_a_gradient_of_another_shape_is_named():
    problem = adaptive.shape_mismatch(((1.0, 2.0),), ((1.0,), (2.0,)))
    assert problem and "2 rows of 1" in problem and "1 rows of 2" in problem
    with pytest.raises(WorkedInputError):
        adaptive.agc_worked(((1.0, 2.0),), ((1.0,), (2.0,)))


# ---- ZClip and AutoClip on a history -----------------------------------------------------

histories = st.lists(st.floats(0.05, 50.0), min_size=2, max_size=30).map(
    lambda v: [float(np.float32(x)) for x in v]
)


@settings(max_examples=60, deadline=None)
@given(
    histories,
    st.floats(0.5, 0.99),
    st.floats(0.5, 5.0),
    st.integers(1, 8),
    st.one_of(st.none(), st.floats(0.5, 20.0)),
    st.lists(st.tuples(st.integers(0, 29), st.floats(10.0, 1000.0)), max_size=3),
)
def test_zclip_worked_equals_the_zclip_package(norms, alpha, z, warmup, cap, spikes):
    for at, factor in spikes:
        if at < len(norms):
            norms[at] = float(np.float32(norms[at] * factor))
    result = adaptive.zclip_worked(norms, alpha=alpha, z_thresh=z, warmup=warmup, cap=cap)
    module = torch.nn.Linear(2, 1, bias=False, dtype=torch.float64)
    reference = zclip_package.ZClip(alpha=alpha, z_thresh=z, max_grad_norm=cap, warmup_steps=warmup)
    for row, norm in zip(result.rows, norms, strict=True):
        # One component: the package's float32 norm of it is the number itself.
        module.weight.grad = torch.tensor([[norm, 0.0]], dtype=torch.float64)
        reference.step(module)
        assert row.clipped_norm == pytest.approx(float(module.weight.grad.norm()), rel=1e-12)
        if reference.initialized:
            assert row.mean_after == pytest.approx(reference.mean, rel=1e-12)
            assert row.var_after == pytest.approx(reference.var, rel=1e-9, abs=1e-300)
    assert adaptive.history_engine_check(result) < 1e-5


def test_zclip_example_has_one_spike_clipped_below_its_boundary():
    norms = adaptive.parse_norms(adaptive.NORMS_EXAMPLE)
    result = adaptive.zclip_worked(norms)
    spikes = [r for r in result.rows if r.spike]
    assert [r.step for r in spikes] == [norms.index(max(norms)) + 1]
    spike = spikes[0]
    boundary = spike.mean + 2.5 * (spike.std + 1e-6)
    assert spike.threshold < boundary  # the bigger the spike, the lower the target
    assert all(r.phase == "warm-up" and not r.clipped for r in result.rows[:5])
    assert "ZClip clipped 1 of 14 steps" in adaptive.history_summary(result)


@settings(max_examples=60, deadline=None)
@given(histories, st.floats(0.5, 100.0))
def test_autoclip_worked_is_np_percentile_then_clip_grad_norm(norms, p):
    result = adaptive.autoclip_worked(norms, percentile=p)
    for t, row in enumerate(result.rows):
        threshold = np.percentile(norms[: t + 1], p)
        assert row.threshold == threshold  # NumPy's own float64, bit for bit
        param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        param.grad = torch.tensor([norms[t]], dtype=torch.float64)
        torch.nn.utils.clip_grad_norm_([param], threshold)
        assert row.clipped_norm == pytest.approx(abs(float(param.grad)), rel=1e-12)
    assert adaptive.history_engine_check(result) < 1e-5


@pytest.mark.parametrize(
    "text,message",
    [("", "empty"), ("1", "at least 2"), ("1, -2", "cannot be negative"), ("1, nan", "finite")],
)
def test_bad_histories_are_refused_in_one_line(text, message):
    with pytest.raises(WorkedInputError, match=message):
        adaptive.parse_norms(text)


# ---- the map's words -----------------------------------------------------------------------


def a_map(mode: str, status: list[list[str]], losses: list[list[float]]) -> ClipMap:
    status_array = np.array(status, dtype=object)
    return ClipMap(
        clip_mode=mode,
        lrs=np.array([0.001, 0.01, 0.1]),
        thresholds=np.array([1.0, 2.5, 8.0]) if mode != "none" else None,
        final_loss=np.array(losses, dtype=float),
        final_test_loss=np.array(losses, dtype=float),
        initial_loss=100.0,
        exploded_at=np.where(status_array == "diverged", 7, 0),
        status=status_array,
    )


def test_the_zclip_paragraph_counts_what_its_map_shows():
    nan = float("nan")
    zclip = a_map(
        "zclip",
        [["trained", "diverged", "diverged"]] * 3,
        [[10.0, nan, nan]] * 3,
    )
    none = a_map("none", [["trained", "diverged", "diverged"]], [[12.0, nan, nan]])
    text = adaptive.map_paragraph("zclip", zclip, none)
    assert text.startswith("**ZClip.** 3 of 9 runs trained, 0 went nowhere and 6 diverged.")
    assert "(lr 0.01, z = 2.5) diverged at step 7" in text
    assert "At 2 of 3 learning rates every z diverged, exactly where the unclipped runs" in text
    capped = adaptive.map_paragraph("zclip", zclip, none, zclip_cap=1.0)
    assert "With the cap" in capped and "every z diverged" not in capped


def test_the_paragraph_gives_the_tutorial_cells_loss_against_the_start():
    agc = a_map("agc", [["trained"] * 3] * 3, [[90.0, 50.0, 20.0]] * 3)
    text = adaptive.map_paragraph("agc", agc)
    assert "ended at train MSE 50, 50% of where it started" in text
    big = a_map("autoclip", [["no_progress"] * 3] * 3, [[3e7] * 3] * 3)
    assert "3e+05 times where it started" in adaptive.map_paragraph("autoclip", big)
