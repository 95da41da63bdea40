"""Unit tests for clipviz.lessons.cliff (the one-unit RNN of Pascanu et al. 2013) and its figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clipviz.figures import cliff as figures
from clipviz.figures.style import CLIPPED, UNCLIPPED
from clipviz.lessons import cliff

# Points off the wall, on its face (within ~1e-3 of it, where the gradient is in
# the hundreds), and at several T.
GRADIENT_POINTS = [
    (3.0, -1.0, 50),
    (4.75, -2.75, 50),
    (6.5, -1.0, 50),
    (-3.0, 2.0, 50),
    (4.75, float(cliff.wall_b(4.75)) - 5e-4, 50),
    (4.78019, -2.47558, 50),  # where the default unclipped path meets the wall
    (5.5, float(cliff.wall_b(5.5)) + 1e-3, 20),
    (4.5, -2.4, 100),
    (2.0, 0.5, 1),
]


def torch_loss(w: torch.Tensor, b: torch.Tensor, T: int) -> torch.Tensor:
    """Reference: the recurrence written plainly in PyTorch, for autograd."""
    x = torch.tensor(cliff.X0, dtype=torch.float64)
    for _ in range(T):
        x = w * torch.sigmoid(x) + b
    return (torch.sigmoid(x) - cliff.TARGET) ** 2


@pytest.mark.parametrize(("w", "b", "T"), GRADIENT_POINTS)
def test_gradient_matches_central_finite_differences(w: float, b: float, T: int) -> None:
    dL_dw, dL_db = (float(g) for g in cliff.gradient(w, b, T))
    scale = max(1.0, math.hypot(dL_dw, dL_db))
    h = 1e-6 / scale  # the steeper the wall, the narrower the band a difference may span
    fd_w = (float(cliff.loss(w + h, b, T)) - float(cliff.loss(w - h, b, T))) / (2 * h)
    fd_b = (float(cliff.loss(w, b + h, T)) - float(cliff.loss(w, b - h, T))) / (2 * h)
    tolerance = 1e-5 * math.hypot(dL_dw, dL_db) + 1e-9
    assert abs(fd_w - dL_dw) <= tolerance
    assert abs(fd_b - dL_db) <= tolerance


@pytest.mark.parametrize(("w", "b", "T"), GRADIENT_POINTS)
def test_gradient_matches_torch_autograd(w: float, b: float, T: int) -> None:
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    torch_loss(wt, bt, T).backward()
    dL_dw, dL_db = cliff.gradient(w, b, T)
    np.testing.assert_allclose(
        [dL_dw, dL_db], [wt.grad.item(), bt.grad.item()], rtol=1e-9, atol=1e-15
    )


def test_near_the_wall_the_gradient_is_huge_and_grows_with_T() -> None:
    near = cliff.gradient(4.78019, -2.47558, 50)
    assert math.hypot(*near) > 100
    steepness = [cliff.wall_steepness(5.0, T) for T in (10, 20, 50, 100)]
    assert steepness == sorted(steepness)
    assert steepness[-1] > 1e6 * steepness[0]


def test_loss_jumps_across_the_wall() -> None:
    for w in (5.0, 6.0, 7.0):
        b = float(cliff.wall_b(w))
        below, above = cliff.loss([w, w], [b - 1e-3, b + 1e-3], 50)
        assert below > 0.3 and above < 0.1


# ---- where two stable states exist, and where the wall begins (checked by hand) -------


def hand_sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def hand_fixed_points(w: float, b: float) -> list[float]:
    """Every fixed point of x -> w sigmoid(x) + b, found by plain bisection between sign
    changes of x - w sigmoid(x) - b on a fine grid (no library code)."""

    def h(x: float) -> float:
        return x - w * hand_sigmoid(x) - b

    grid = [-30.0 + 60.0 * i / 60_000 for i in range(60_001)]
    roots = []
    for lo, hi in zip(grid, grid[1:], strict=False):
        if h(lo) == 0.0:
            roots.append(lo)
        elif h(lo) * h(hi) < 0:
            for _ in range(80):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if h(lo) * h(mid) > 0 else (lo, mid)
            roots.append(0.5 * (lo + hi))
    return roots


def hand_slope(w: float, x: float) -> float:
    s = hand_sigmoid(x)
    return w * s * (1 - s)


def test_the_wall_begins_at_one_over_the_sigmoid_slope_at_one_half() -> None:
    by_hand = 1.0 / (hand_sigmoid(0.5) * (1.0 - hand_sigmoid(0.5)))
    assert by_hand == pytest.approx(cliff.WALL_MIN_W, rel=1e-12)
    assert f"{cliff.WALL_MIN_W:.4f}" == "4.2553"
    assert cliff.BISTABLE_MIN_W == 4.0  # 1 / max sigmoid' = 1 / (1/4)
    # On the wall line, x_0 = 0.5 is itself a fixed point (the tipping point): slope above 1.
    for w in (4.5, 5.0, 7.0):
        b = float(cliff.wall_b(w))
        assert w * hand_sigmoid(0.5) + b == pytest.approx(0.5, abs=1e-12)
        assert hand_slope(w, 0.5) > 1


@pytest.mark.parametrize("w", [4.02, 4.1, 4.2, 4.25, 4.3, 5.0, 7.0])
def test_for_any_w_above_4_some_b_gives_two_stable_states(w: float) -> None:
    low, high = cliff.bistable_b_range(w)
    assert low < high
    for b in (low + 0.25 * (high - low), 0.5 * (low + high), low + 0.75 * (high - low)):
        roots = hand_fixed_points(w, b)
        assert len(roots) == 3, (w, b, roots)
        stable = [x for x in roots if hand_slope(w, x) < 1]
        assert len(stable) == 2 and hand_slope(w, roots[1]) > 1  # the tipping point between
        # Iterating from either side of the tipping point settles in different states.
        ends = []
        for start in (roots[1] - 1e-3, roots[1] + 1e-3):
            x = start
            for _ in range(20_000):
                x = w * hand_sigmoid(x) + b
            ends.append(x)
        assert ends[0] == pytest.approx(roots[0], abs=1e-6)
        assert ends[1] == pytest.approx(roots[2], abs=1e-6)
    # Outside the band: one state only.
    for b in (low - 0.05, high + 0.05):
        assert len(hand_fixed_points(w, b)) == 1


@pytest.mark.parametrize("w", [2.0, 3.5, 3.99, 4.0])
def test_at_or_below_w_4_there_is_only_one_state(w: float) -> None:
    assert cliff.bistable_b_range(w) is None
    for b in np.linspace(-6.0, 2.0, 41):
        assert len(hand_fixed_points(w, float(b))) == 1


@pytest.mark.parametrize("w", [4.05, 4.2, 4.25])
def test_between_4_and_the_wall_the_tipping_point_never_reaches_the_start(w: float) -> None:
    assert cliff.BISTABLE_MIN_W < w < cliff.WALL_MIN_W
    assert cliff.tipping_point_reach(w) < cliff.X0
    low, high = cliff.bistable_b_range(w)
    for b in np.linspace(low, high, 13)[1:-1]:
        tipping = hand_fixed_points(w, float(b))[1]
        assert abs(tipping) < cliff.X0


def test_T_equals_one_by_hand() -> None:
    w, b = 2.0, -0.3
    s0 = 1 / (1 + math.exp(-0.5))
    x1 = w * s0 + b
    s1 = 1 / (1 + math.exp(-x1))
    assert float(cliff.final_state(w, b, 1)) == pytest.approx(x1, rel=1e-15)
    assert float(cliff.loss(w, b, 1)) == pytest.approx((s1 - 0.7) ** 2, rel=1e-14)
    dL_dx1 = 2 * (s1 - 0.7) * s1 * (1 - s1)
    dL_dw, dL_db = cliff.gradient(w, b, 1)
    assert float(dL_dw) == pytest.approx(dL_dx1 * s0, rel=1e-14)
    assert float(dL_db) == pytest.approx(dL_dx1, rel=1e-14)


def test_functions_vectorise_over_arrays() -> None:
    w = np.array([[3.0, 4.75], [6.0, -2.0]])
    b = np.array([[-1.0, -2.75], [-3.0, 1.0]])
    batch = cliff.loss(w, b, 50)
    one_by_one = [[float(cliff.loss(w[i, j], b[i, j], 50)) for j in range(2)] for i in range(2)]
    np.testing.assert_array_equal(batch, one_by_one)
    assert batch.dtype == np.float64


def test_huge_states_do_not_overflow() -> None:
    L, dL_dw, dL_db = cliff.loss_and_gradient(1e300, 1e300, 50)
    assert np.isfinite([L, dL_dw, dL_db]).all()


def test_surface_shape_and_values() -> None:
    surf = cliff.surface((3.0, 7.0), (-4.5, -0.5), 51, 50)
    assert surf.w.shape == (51,) and surf.b.shape == (51,)
    assert surf.loss.shape == surf.grad_norm.shape == (51, 51)
    assert np.isfinite(surf.loss).all() and np.isfinite(surf.grad_norm).all()
    assert (surf.loss >= 0).all() and (surf.loss <= 0.49).all()
    # Row i is b[i], column j is w[j].
    assert surf.loss[7, 30] == pytest.approx(float(cliff.loss(surf.w[30], surf.b[7], 50)))
    # The default window holds both plateaus of the cliff and its low valley.
    default = cliff.surface()
    assert default.loss.max() > 0.3 and default.loss.min() < 1e-4


def test_surface_is_fast_enough() -> None:
    import time

    start = time.perf_counter()
    cliff.surface(T=100)
    assert time.perf_counter() - start < 1.0


@settings(max_examples=60, deadline=None)
@given(
    start_w=st.floats(*cliff.W_RANGE),
    start_b=st.floats(*cliff.B_RANGE),
    lr=st.floats(1e-3, 1.0),
    threshold=st.floats(1e-3, 100.0),
    T=st.integers(1, 80),
)
def test_clipped_steps_never_exceed_lr_times_threshold(
    start_w: float, start_b: float, lr: float, threshold: float, T: int
) -> None:
    path = cliff.descend(start_w, start_b, lr, steps=40, T=T, threshold=threshold)
    assert path.non_finite_at is None
    assert (path.step_length <= lr * threshold + 1e-12).all()
    # Unclipped steps are plain gradient steps; clipped ones have length exactly lr * c.
    np.testing.assert_allclose(path.step_length[~path.clipped], lr * path.grad_norm[~path.clipped])
    np.testing.assert_allclose(path.step_length[path.clipped], lr * threshold)
    assert (path.grad_norm[path.clipped] > threshold).all()


def test_clipping_keeps_the_gradient_direction() -> None:
    path = cliff.descend(4.78019, -2.47558, lr=0.1, steps=1, T=50, threshold=1.0)
    assert path.clipped[0]
    move = np.array([path.w[1] - path.w[0], path.b[1] - path.b[0]])
    grad = np.array(cliff.gradient(4.78019, -2.47558, 50), dtype=float)
    np.testing.assert_allclose(move / np.linalg.norm(move), -grad / np.linalg.norm(grad))


def test_default_configuration_leaps_off_the_wall_only_without_clipping() -> None:
    unclipped, clipped = cliff.compare()
    assert (unclipped.steps, clipped.steps) == (cliff.DEFAULT_STEPS, cliff.DEFAULT_STEPS)
    i = unclipped.largest_step_index
    # One enormous step on the wall face ...
    assert unclipped.grad_norm[i] > 100 * cliff.DEFAULT_THRESHOLD
    assert unclipped.largest_step > 100 * clipped.largest_step
    assert clipped.largest_step <= cliff.DEFAULT_LR * cliff.DEFAULT_THRESHOLD + 1e-12
    # ... makes the loss jump up, to a flat place it never leaves.
    assert unclipped.loss[i + 1] > 2 * unclipped.loss[i]
    assert (unclipped.grad_norm[i + 1 :] < 1e-6).all()
    start = np.array(cliff.DEFAULT_START)
    assert np.linalg.norm([unclipped.w[-1], unclipped.b[-1]] - start) > 10
    assert np.linalg.norm([clipped.w[-1], clipped.b[-1]] - start) < 1
    # The clipped run stays by the wall and reaches far lower loss.
    assert clipped.loss.min() < unclipped.loss.min() / 10
    assert clipped.final_loss < unclipped.final_loss
    assert 0 < clipped.clipped_count < clipped.steps
    # The two paths are identical until the clipped one first rescales.
    first_clip = int(np.argmax(clipped.clipped))
    np.testing.assert_array_equal(unclipped.w[: first_clip + 1], clipped.w[: first_clip + 1])


def test_default_start_is_inside_the_default_window() -> None:
    w, b = cliff.DEFAULT_START
    assert cliff.W_RANGE[0] < w < cliff.W_RANGE[1] and cliff.B_RANGE[0] < b < cliff.B_RANGE[1]


def test_path_arrays_are_consistent() -> None:
    path = cliff.descend(4.0, -2.0, lr=0.05, steps=7, T=30, threshold=0.5)
    assert path.w.shape == path.b.shape == path.loss.shape == (8,)
    assert path.grad_norm.shape == path.step_length.shape == path.clipped.shape == (7,)
    assert path.loss[3] == pytest.approx(float(cliff.loss(path.w[3], path.b[3], 30)))
    zero = cliff.descend(4.0, -2.0, lr=0.05, steps=0, T=30)
    assert zero.steps == 0 and zero.largest_step == 0.0 and zero.w.shape == (1,)


def test_non_finite_gradient_stops_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    real = cliff.loss_and_gradient
    calls = {"n": 0}

    def breaks_on_the_fourth_call(w, b, T, target=cliff.TARGET):
        calls["n"] += 1
        L, dw, db = real(w, b, T, target)
        return (L, dw * np.nan, db) if calls["n"] == 4 else (L, dw, db)

    monkeypatch.setattr(cliff, "loss_and_gradient", breaks_on_the_fourth_call)
    path = cliff.descend(4.0, -2.0, lr=0.1, steps=10, T=20)
    assert path.non_finite_at == 3
    assert path.steps == 3 and path.w.shape == (4,)
    assert np.isfinite(path.w).all() and np.isfinite(path.step_length).all()
    assert "finite" in cliff.summary(path, path)[0]


@pytest.mark.parametrize(
    ("lr", "threshold", "steps", "T", "word"),
    [
        (0.0, 1.0, 10, 50, "learning rate"),
        (-0.1, 1.0, 10, 50, "learning rate"),
        (float("nan"), 1.0, 10, 50, "learning rate"),
        (0.1, 0.0, 10, 50, "threshold"),
        (0.1, float("nan"), 10, 50, "threshold"),
        (0.1, -2.0, 10, 50, "threshold"),
        (0.1, 1.0, -1, 50, "steps"),
        (0.1, 1.0, 10, 0, "T"),
    ],
)
def test_invalid_settings_are_named(
    lr: float, threshold: float, steps: int, T: int, word: str
) -> None:
    problems = cliff.validate(lr, threshold, steps, T)
    assert len(problems) == 1 and word in problems[0]
    with pytest.raises(ValueError, match=word):
        cliff.descend(4.0, -2.0, lr, steps, T, threshold)


def test_valid_settings_have_no_problems() -> None:
    assert cliff.validate(0.1, 1.0, 100, 50) == []
    assert cliff.validate(0.1, None, 0, 1) == []


def test_threshold_sweep_agrees_with_single_descents() -> None:
    start, lr, steps, T = (4.75, -2.75), 0.1, 60, 50
    sweep = cliff.threshold_sweep(start, lr, steps, T, thresholds=(0.1, 1.0, 100.0))
    for k, threshold in enumerate(sweep.thresholds):
        path = cliff.descend(*start, lr, steps, T, threshold=float(threshold))
        assert sweep.largest_step[k] == pytest.approx(path.largest_step, rel=1e-12)
        assert sweep.lowest_loss[k] == pytest.approx(path.loss.min(), rel=1e-12)
        assert sweep.final_loss[k] == pytest.approx(path.final_loss, rel=1e-12)
        assert sweep.clipped_fraction[k] == pytest.approx(path.clipped.mean())


def test_default_sweep_shows_a_wide_range_of_good_thresholds() -> None:
    unclipped, _ = cliff.compare()
    sweep = cliff.threshold_sweep(cliff.DEFAULT_START, cliff.DEFAULT_LR, cliff.DEFAULT_STEPS, 50)
    good = sweep.thresholds[sweep.lowest_loss < unclipped.loss.min() / 10]
    assert good.min() <= 0.1 and good.max() >= 2  # at least a factor of 20
    assert "between" in cliff.sweep_summary(sweep, unclipped)


def test_view_ranges_hold_the_clipped_path_within_a_cap() -> None:
    _, clipped = cliff.compare()
    assert cliff.view_ranges(clipped) == (cliff.W_RANGE, cliff.B_RANGE)
    far = cliff.descend(4.5, -2.5, lr=1.0, steps=300, T=50, threshold=100.0)
    (w_lo, w_hi), (b_lo, b_hi) = cliff.view_ranges(far)
    assert w_lo <= cliff.W_RANGE[0] and b_lo <= cliff.B_RANGE[0]
    assert w_hi - w_lo <= 12 and b_hi - b_lo <= 12
    assert float(w_lo).is_integer() and float(b_hi).is_integer()


def test_summary_reports_the_numbers_of_the_run() -> None:
    unclipped, clipped = cliff.compare()
    text = " ".join(cliff.summary(unclipped, clipped))
    i = unclipped.largest_step_index
    assert f"step {i + 1}" in text
    assert f"{unclipped.largest_step:.3g}" in text
    assert f"{unclipped.grad_norm[i]:.3g}" in text
    assert f"{clipped.clipped_count} of {clipped.steps}" in text
    assert "= 0.1." in text
    same = cliff.compare((3.5, -1.0), 0.1, 100.0, 20, 50)
    assert "never acted" in " ".join(cliff.summary(*same))


def test_surface_figure_draws_both_paths_and_the_escape() -> None:
    surf = cliff.surface(resolution=41)
    unclipped, clipped = cliff.compare()
    fig = figures.surface_figure(surf, unclipped, clipped, cliff.wall_label_point(surf))
    assert fig.layout.xaxis.title.text == "w (recurrent weight)"
    assert fig.layout.yaxis.title.text == "b (bias)"
    assert tuple(fig.layout.xaxis.range) == cliff.W_RANGE
    colours = {
        t.name: t.line.color for t in fig.data if getattr(t, "mode", None) == "lines+markers"
    }
    assert colours[figures.UNCLIPPED_NAME] == UNCLIPPED
    assert colours[figures.clipped_name(clipped)] == CLIPPED
    texts = [a.text for a in fig.layout.annotations]
    assert any("jumped to" in t and "34.8" in t for t in texts)
    assert "the cliff" in texts
    assert fig.data[0].colorbar.title.text.startswith("loss")


def test_steps_figure_uses_log_axes_and_shows_the_threshold() -> None:
    unclipped, clipped = cliff.compare()
    fig = figures.steps_figure(unclipped, clipped)
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert any(shape.line.dash == "dash" and shape.y0 == 1.0 for shape in fig.layout.shapes)
    assert any("exactly 0" in (a.text or "") for a in fig.layout.annotations)


def test_other_figures_build() -> None:
    surf = cliff.surface(resolution=31)
    unclipped, clipped = cliff.compare(steps=20)
    sweep = cliff.threshold_sweep(cliff.DEFAULT_START, 0.1, 20, 50)
    assert figures.threshold_sweep_figure(sweep, unclipped, current=1.0).layout.xaxis.type == "log"
    assert len(figures.surface_3d_figure(surf, unclipped, clipped).data) == 3
