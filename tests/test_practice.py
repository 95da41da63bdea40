"""clipviz.lessons.practice and practice_ddp: each case's difference is real.

Every case is checked against a computation that shares no code with the case's
functions: float64 autograd on a copy of the network, hand arithmetic (the
recursions written out here), NumPy, and real Keras for the Keras formulas.
Only the inputs (the reference data, the seeded network) are shared.
"""

from __future__ import annotations

import ast
import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipviz.lessons import practice, practice_ddp

C = practice.THRESHOLD


def float64_gradient(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The seeded MLP's gradient of the MSE on (x, y), in float64, by plain autograd."""
    model = practice.small_model().double()
    loss = F.mse_loss(model(x.double()), y.double())
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return torch.cat([g.reshape(-1) for g in grads]).numpy()


def clip(vector: np.ndarray, c: float) -> np.ndarray:
    """PyTorch's rule, by hand: multiply by min(c / (||g|| + 1e-6), 1)."""
    return vector * min(c / (np.linalg.norm(vector) + 1e-6), 1.0)


def angle(a: np.ndarray, b: np.ndarray) -> float:
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.degrees(math.acos(min(1.0, max(-1.0, cosine))))


# ---- 1 ---------------------------------------------------------------------------------


def test_the_returned_value_is_the_norm_before_and_after_clipping_the_norm_is_c():
    result = practice.run_returned_norm(C, steps=6)
    by_hand = np.linalg.norm(float64_gradient(*practice.batch(0)))
    assert result.logged_wrong[0] == pytest.approx(by_hand, rel=1e-5)
    assert result.weights_identical  # both loops trained the same weights, step by step
    for before, after in zip(result.logged_wrong, result.norm_after, strict=True):
        assert before > 50 * C  # the log says "not clipped" ...
        assert after == pytest.approx(C * before / (before + 1e-6), rel=1e-6)  # ... it was
    assert result.steps_logged_above == 6


def test_log_norm_after_measures_the_clipped_gradient():
    model = practice.small_model()
    practice.mse(model, practice.batch(3)).backward()
    before = np.linalg.norm(float64_gradient(*practice.batch(3)))
    assert practice.log_norm_after(model, C) == pytest.approx(C * before / (before + 1e-6))
    clipped = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
    assert float(clipped.norm()) == pytest.approx(C, rel=1e-6)


# ---- 2 ---------------------------------------------------------------------------------


def test_keras_clipnorm_is_per_tensor_and_global_clipnorm_is_pytorchs_rule():
    result = practice.run_keras_comparison(C)
    grads = [g.astype(np.float64) for g in result.grads]
    norms = [np.linalg.norm(g) for g in grads]
    assert all(n > C for n in norms)  # every tensor is clipped, so each ends at length c
    assert result.norms_per_tensor == pytest.approx([C] * len(grads), rel=1e-6)
    assert result.total_per_tensor == pytest.approx(C * math.sqrt(len(grads)), rel=1e-6)
    total = math.sqrt(sum(n * n for n in norms))
    assert result.total_before == pytest.approx(total, rel=1e-9)
    # global: one factor c / ||g|| for every tensor, so each keeps its share
    assert result.norms_global == pytest.approx([C * n / total for n in norms], rel=1e-6)
    assert result.norms_torch == pytest.approx(result.norms_global, rel=1e-5)
    assert result.max_torch_vs_keras_global < 1e-6
    whole = np.concatenate([g.reshape(-1) for g in grads])
    per_tensor = np.concatenate(
        [(g * C / max(n, C)).reshape(-1) for g, n in zip(grads, norms, strict=True)]
    )
    assert result.angle_per_tensor == pytest.approx(angle(whole, per_tensor), abs=1e-4)
    assert result.angle_per_tensor > 10
    assert result.angle_global < 1e-3


@pytest.mark.slow
def test_the_keras_formulas_are_what_real_keras_3_does():
    if importlib.util.find_spec("keras") is None:  # imported only in run_keras's process
        pytest.skip("keras is not installed (requirements-dev.txt)")
    result = practice.run_keras_comparison(C)
    run = practice.run_keras(result.grads, C)
    assert run.version.startswith("3.")
    assert run.max_difference_from_formulas < 1e-6
    for got, g in zip(run.clipnorm, result.grads, strict=True):  # by hand, per tensor
        n = np.linalg.norm(g.astype(np.float64))
        np.testing.assert_allclose(got, g * (C / max(n, C)), rtol=1e-5, atol=1e-8)
    total = math.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in result.grads))
    for got, g in zip(run.global_clipnorm, result.grads, strict=True):
        np.testing.assert_allclose(got, g * (C / total), rtol=1e-5, atol=1e-8)


# ---- 3 ---------------------------------------------------------------------------------


def test_clipping_before_unscale_sees_the_scaled_norm_and_shrinks_the_step_to_c_over_s():
    result = practice.run_amp(C, steps=12)
    assert result.init_scale == torch.amp.GradScaler("cpu").get_scale()
    wrong, right = result.wrong, result.right
    k = right.first_taken
    assert k == wrong.first_taken and k >= 1  # the first scaled passes overflow float16
    # the steps before k were skipped in both runs, so at k both still hold the initial weights
    assert all(wrong.weights_unchanged[:k]) and all(right.weights_unchanged[:k])
    true_norm = np.linalg.norm(float64_gradient(*practice.batch(k)))
    s = wrong.scale[k]
    assert right.seen_norm[k] == pytest.approx(true_norm, rel=2e-2)  # float16 autocast
    assert wrong.seen_norm[k] == pytest.approx(s * right.seen_norm[k], rel=1e-4)
    assert wrong.seen_norm[k] > 1000 * C  # the clip compared S * ||g|| with c
    assert right.applied_norm[k] == pytest.approx(C, rel=1e-5)
    assert wrong.applied_norm[k] == pytest.approx(C / s, rel=1e-4)  # c / S in true units


def test_the_scaler_skips_exactly_the_steps_with_inf_or_nan_and_halves_its_scale():
    result = practice.run_amp(C, steps=12)
    for run in (result.wrong, result.right):
        assert run.skipped_count >= 1
        for i, skipped in enumerate(run.skipped):
            assert run.weights_unchanged[i] == skipped  # a skipped step moves no weight
            assert math.isnan(run.applied_norm[i]) == skipped
            if i + 1 < len(run.scale):
                assert run.scale[i + 1] == (run.scale[i] / 2 if skipped else run.scale[i])


# ---- 4 ---------------------------------------------------------------------------------


def clip_inside_by_hand(micro: list[np.ndarray], c: float) -> np.ndarray:
    total = np.zeros_like(micro[0])
    for g in micro:
        total = clip(total + g, c)
    return total


def test_transformers_986_two_vector_example():
    result = practice.run_accumulation(C)
    g1, g2 = np.array([2.0, 0.0]), np.array([0.0, 2.0])
    np.testing.assert_allclose(result.example_grads, [g1, g2])  # measured by backward()
    np.testing.assert_allclose(result.example_wrong, clip_inside_by_hand([g1, g2], C), rtol=1e-6)
    np.testing.assert_allclose(result.example_right, clip(g1 + g2, C), rtol=1e-6)
    # (1, 2) / sqrt(5): the last micro-batch weighs twice the first
    np.testing.assert_allclose(result.example_wrong, [1 / 5**0.5, 2 / 5**0.5], rtol=1e-5)


def test_clipping_each_micro_batch_differs_from_clipping_the_accumulated_gradient():
    result = practice.run_accumulation(C, n_micro=4)
    x, y = practice.batch(0)
    micro = [float64_gradient(xs, ys) / 4 for xs, ys in zip(x.chunk(4), y.chunk(4), strict=True)]
    whole = float64_gradient(x, y)  # the whole batch: what accumulation adds up to
    np.testing.assert_allclose(sum(micro), whole, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.wrong, clip_inside_by_hand(micro, C), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(result.right, clip(whole, C), rtol=1e-4, atol=1e-7)
    assert result.accumulated_norm == pytest.approx(np.linalg.norm(whole), rel=1e-5)
    assert result.angle == pytest.approx(angle(clip_inside_by_hand(micro, C), whole), abs=1e-3)
    assert result.angle > 10  # a different direction, not just a different length
    assert result.angle_wrong_to_last < result.angle_right_to_last  # it leans to the last


# ---- 5 ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_local_clip_differs_from_global_and_ddp_averages_in_backward():
    result = practice_ddp.run_ddp(C, timeout=150)
    x, y = practice.batch(0)
    order = torch.argsort(y[:, 0].abs())
    local = [float64_gradient(x[rows], y[rows]) for rows in order.chunk(2)]
    mean = (local[0] + local[1]) / 2
    np.testing.assert_allclose(mean, float64_gradient(x, y), rtol=1e-9, atol=1e-9)
    for got, want in zip(result.local, local, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    wrong = (clip(local[0], C) + clip(local[1], C)) / 2
    right = clip(mean, C)
    np.testing.assert_allclose(result.wrong, wrong, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(result.right, right, rtol=1e-4, atol=1e-7)
    assert angle(wrong, right) > 5 and result.wrong_norm < 0.95 * result.right_norm
    # DDP: right after backward() each worker holds the average of the local gradients,
    # so clip_grad_norm_ there sees (and returns) the global norm and clips it right
    for after_backward, returned, after_clip in zip(
        result.ddp_after_backward, result.ddp_returned_norms, result.ddp_after_clip, strict=True
    ):
        np.testing.assert_allclose(after_backward, mean, rtol=1e-4, atol=1e-5)
        assert returned == pytest.approx(np.linalg.norm(mean), rel=1e-5)
        np.testing.assert_allclose(after_clip, right, rtol=1e-4, atol=1e-7)
    assert result.ddp_difference_from_mean < 1e-4


def test_a_fresh_process_that_overruns_is_ended_with_a_one_line_reason():
    with pytest.raises(RuntimeError, match=r"did not finish within 2 s"):
        practice.run_module("time", "sleep", 600, timeout=2)
    assert not practice._RUNNING  # ended and forgotten


@pytest.mark.slow
def test_a_failing_fresh_process_reports_its_last_error_line():
    with pytest.raises(RuntimeError, match=r"AttributeError: .*no_such_function"):
        practice.run_module("clipviz.lessons.practice", "no_such_function", None, timeout=120)


# ---- 6 ---------------------------------------------------------------------------------


def test_inf_zeroes_the_gradient_nan_spreads_and_error_if_nonfinite_raises():
    result = practice.run_nonfinite(C)
    cases = {case.label: case for case in result.cases}
    inf, nan, huge = cases["inf"], cases["NaN"], cases["huge but finite (1e20)"]
    entries = sum(p.numel() for p in practice.small_model().parameters())
    # IEEE arithmetic by hand: the factor c / (inf + 1e-6) is 0, finite * 0 = 0, inf * 0 = NaN
    assert C / (math.inf + 1e-6) == 0.0 and math.isnan(math.inf * 0.0)
    assert inf.norm == math.inf
    assert (inf.zeros_after, inf.nans_after) == (entries - 1, 1)
    assert inf.nan_weights_after_step == 1  # the step writes that NaN into a weight
    assert math.isnan(nan.norm)
    assert nan.nans_after == entries and nan.nan_weights_after_step == entries
    if math.isinf(huge.norm):  # float32 cannot hold 1e20 squared, if the norm overflowed here
        assert huge.zeros_after == entries and not huge.weights_moved  # silently zeroed
    for case in result.cases:
        assert case.skipped and case.right_weights_unchanged  # the fix skipped every step
        assert "non-finite" in case.raised  # error_if_nonfinite=True raised
    assert math.isfinite(result.clean_norm)


# ---- 7 ---------------------------------------------------------------------------------


def test_below_the_threshold_the_gradient_is_multiplied_by_exactly_one():
    result = practice.run_below_threshold()
    by_hand = np.linalg.norm(float64_gradient(*practice.batch(0)))
    assert result.norm == pytest.approx(by_hand, rel=1e-5)
    assert result.norm < result.threshold
    assert result.coefficient == 1.0
    n_tensors = len(list(practice.small_model().parameters()))
    assert result.always_bitwise_equal and result.always_writes == n_tensors  # it did multiply
    assert result.guarded_bitwise_equal and result.guarded_writes == 0
    assert result.max_difference == 0.0


# ---- 8 ---------------------------------------------------------------------------------


def test_thresholds_from_the_warmup_percentiles_and_what_each_clips():
    result = practice.run_warmup(steps=60)
    norms = np.asarray(result.norms)
    assert len(norms) == 60 and np.all(np.isfinite(norms))
    for choice in result.choices:
        assert choice.threshold == pytest.approx(np.percentile(norms, choice.percentile))
        assert choice.clipped_fraction == np.mean(norms > choice.threshold)
        assert abs(choice.clipped_fraction - (100 - choice.percentile) / 100) <= 1 / 60 + 1e-12
    fractions = [c.clipped_fraction for c in result.choices]
    assert fractions == sorted(fractions, reverse=True)


def test_train_clipped_is_a_plain_clipped_loop():
    """An independent loop (float64 copy, hand-written clip and momentum SGD) ends where
    train_clipped does, and differs from the unclipped run: the threshold bites."""
    steps = 30
    threshold = float(np.percentile(practice.run_warmup(steps=steps).norms, 50))
    model = practice.small_model()
    got = practice.train_clipped(model, practice._sgd(model), steps, threshold)

    params = [
        p.detach().double().clone().requires_grad_() for p in practice.small_model().parameters()
    ]
    velocity = [torch.zeros_like(p) for p in params]
    for step in range(steps):
        x, y = practice.batch(step, standardize=True)
        h = torch.relu(x.double() @ params[0].T + params[1])
        loss = F.mse_loss(h @ params[2].T + params[3], y.double())
        grads = torch.autograd.grad(loss, params)
        total = math.sqrt(sum(float((g * g).sum()) for g in grads))
        factor = min(threshold / (total + 1e-6), 1.0)
        with torch.no_grad():
            for p, v, g in zip(params, velocity, grads, strict=True):
                v.mul_(practice.MOMENTUM).add_(g * factor)
                p.sub_(practice.LEARNING_RATE * v)
    x, _ = practice.reference_data()
    y = practice.batch(0, size=500, standardize=True)[1]
    with torch.no_grad():
        h = torch.relu(x.double() @ params[0].T + params[1])
        want = float(F.mse_loss(h @ params[2].T + params[3], y.double()))
    assert got == pytest.approx(want, rel=1e-4)


# ---- the code shown is the code that ran ----------------------------------------------


@pytest.mark.parametrize(
    "function",
    [
        practice.log_returned_norm,
        practice.amp_unscale_clip,
        practice.clip_inside_loop,
        practice_ddp.average_then_clip,
        practice.step_if_finite,
        practice.clip_always,
    ],
)
def test_source_is_the_functions_own_text(function):
    """The page shows ``practice.source(f)``: the text of the definition ``f`` was
    compiled from, found here by parsing the module's file (not by inspect)."""
    path = function.__code__.co_filename
    with open(path) as file:
        text = file.read()
    (node,) = [
        n
        for n in ast.parse(text).body
        if isinstance(n, ast.FunctionDef) and n.name == function.__name__
    ]
    assert node.lineno == function.__code__.co_firstlineno
    lines = text.splitlines()[node.lineno - 1 : node.end_lineno]  # whole lines, comments too
    assert practice.source(function) == "\n".join(lines) + "\n"
