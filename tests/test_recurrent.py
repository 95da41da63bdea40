"""Gradients through time: the hand-written BPTT against autograd and against a hand
calculation, and the /recurrent page's library helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clipviz.engine.config import DEFAULT, PRESETS
from clipviz.engine.models import RecurrentNet
from clipviz.figures import recurrent as figures
from clipviz.lessons import recurrent


def autograd_reference(net: RecurrentNet, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """The same nets written plainly with torch ops and differentiated by autograd.

    Returns, per lane: the loss, dLoss/dparams (P, N) and ||dL/dh_t|| (T, N),
    the last from ``retain_grad`` on every hidden state (zero where no
    gradient arrives, i.e. before a truncation cut).
    """
    losses, grads, norms = [], [], []
    hid = net.hidden
    for lane in range(flat.shape[1]):
        leaf = flat[:, lane].clone().requires_grad_(True)
        wx, wh, b, wo, bo = (
            leaf[s.offset : s.offset + s.size].view(*s.shape) for s in net.layout.specs
        )
        batch, steps, _ = x.shape
        h = torch.zeros(batch, hid, dtype=flat.dtype)
        c = torch.zeros_like(h)
        cut = steps - net.tbptt if net.tbptt else -1
        states = []
        for t in range(steps):
            if t == cut:
                h, c = h.detach(), c.detach()
            z = x[:, t] @ wx + h @ wh + b
            if net.cell == "lstm":
                i, f = torch.sigmoid(z[:, :hid]), torch.sigmoid(z[:, hid : 2 * hid])
                g, o = torch.tanh(z[:, 2 * hid : 3 * hid]), torch.sigmoid(z[:, 3 * hid :])
                c = f * c + i * g
                h = o * torch.tanh(c)
            else:
                h = torch.tanh(z)
            h.retain_grad()
            states.append(h)
        out = h @ wo + bo
        if net.classification:
            loss = torch.nn.functional.cross_entropy(out, y)
        else:
            loss = ((out - y[..., min(lane, y.shape[-1] - 1)]) ** 2).mean()
        loss.backward()
        losses.append(loss.detach())
        grads.append(leaf.grad)
        zero = torch.zeros((), dtype=flat.dtype)
        norms.append(torch.stack([s.grad.norm() if s.grad is not None else zero for s in states]))
    return torch.stack(losses), torch.stack(grads, 1), torch.stack(norms, 1)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("lanes", [1, 3])
@pytest.mark.parametrize("tbptt", [0, 4])
@pytest.mark.parametrize("classification", [False, True])
def test_bptt_and_hidden_gradients_equal_autograd(cell, lanes, tbptt, classification):
    torch.manual_seed(7)
    n_out = 3 if classification else 2
    net = RecurrentNet(
        cell, 3, 5, n_out, classification=classification, recurrent_scale=1.3, tbptt=tbptt
    )
    single = net.init(torch.Generator().manual_seed(1)).double()
    flat = single.unsqueeze(1).repeat(1, lanes).contiguous()
    flat += 0.2 * torch.randn_like(flat)  # lanes differ
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    if classification:
        y = torch.tensor([0, 2, 1, 2])
    else:
        y = torch.randn(4, n_out, lanes, dtype=torch.float64)
    grad = torch.zeros_like(flat)
    norms = torch.zeros(9, lanes, dtype=torch.float64)
    loss = net.loss_and_grad(flat, x, y, grad, norms)
    ref_loss, ref_grad, ref_norms = autograd_reference(net, flat, x, y)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net.loss(flat, x, y), ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(norms, ref_norms, rtol=1e-10, atol=1e-12)
    if tbptt:
        assert float(norms[: 9 - tbptt].abs().max()) == 0.0
        assert float(norms[9 - tbptt :].min()) > 0.0


def test_float32_gradients_match_autograd_closely():
    net = RecurrentNet("lstm", 2, 8, 1, classification=False)
    flat = net.init(torch.Generator().manual_seed(0)).unsqueeze(1)
    x, y = torch.rand(16, 30, 2), torch.rand(16, 1, 1)
    grad, norms = torch.zeros_like(flat), torch.zeros(30, 1)
    net.loss_and_grad(flat, x, y, grad, norms)
    _, ref_grad, ref_norms = autograd_reference(net, flat.double(), x.double(), y.double())
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(norms.double(), ref_norms, rtol=1e-4, atol=1e-9)


def test_hidden_gradients_of_a_one_unit_rnn_by_hand():
    """h_t = tanh(w h_{t-1} + u x_t + b), out = v h_{T-1} + a, L = (out - y)^2.

    By the chain rule dL/dh_{T-1} = 2 (out - y) v and, going back one step,
    dL/dh_{t-1} = dL/dh_t (1 - h_t^2) w: one factor of the recurrent Jacobian per step.
    """
    w, u, b, v, a = 1.7, 0.5, 0.1, -0.8, 0.3
    xs, y = [0.4, -1.0, 0.25, 0.9, -0.3], 0.6
    hs, h = [], 0.0
    for x_t in xs:
        h = math.tanh(w * h + u * x_t + b)
        hs.append(h)
    out = v * hs[-1] + a
    by_hand = [0.0] * len(xs)
    by_hand[-1] = 2 * (out - y) * v
    for t in range(len(xs) - 1, 0, -1):
        by_hand[t - 1] = by_hand[t] * (1 - hs[t] ** 2) * w

    net = RecurrentNet("rnn", 1, 1, 1, classification=False)
    flat = torch.tensor([[u], [w], [b], [v], [a]], dtype=torch.float64)  # layout order
    x = torch.tensor(xs, dtype=torch.float64).view(1, len(xs), 1)
    norms = torch.zeros(len(xs), 1, dtype=torch.float64)
    loss = net.loss_and_grad(
        flat, x, torch.tensor([[[y]]], dtype=torch.float64), torch.zeros_like(flat), norms
    )
    assert loss.item() == pytest.approx((out - y) ** 2, rel=1e-12)
    np.testing.assert_allclose(norms[:, 0].numpy(), np.abs(by_hand), rtol=1e-12)


def test_probe_shows_growth_above_radius_one_and_decay_below():
    config = DEFAULT.replace(
        network="rnn", task="adding", seq_len=60, hidden_size=32, n_train=64, seed=0
    )
    probes = {
        r: recurrent.probe_through_time(config.replace(recurrent_scale=r)) for r in (0.8, 1.5)
    }
    assert probes[0.8].shape == (60,)
    assert recurrent.growth_factor(probes[0.8]) < 1e-3  # fades back through time
    assert recurrent.growth_factor(probes[1.5]) > 10  # grows back through time
    # The probe is what a run records at its first step: the learner sees the same numbers.
    run = recurrent.train_net(config.replace(recurrent_scale=1.5), 1)
    np.testing.assert_array_equal(run.hidden_grad_norm[0], probes[1.5])


def test_growth_factor_reads_the_earliest_reachable_step():
    norms = np.array([0.0, 0.0, 8.0, 4.0, 2.0])
    assert recurrent.growth_factor(norms, tbptt=3) == 4.0
    assert math.isnan(recurrent.growth_factor(norms))  # step 0 got no gradient
    assert math.isnan(recurrent.growth_factor(np.array([1.0, np.inf, 2.0])[[1, 2]]))


@pytest.mark.parametrize(
    ("x", "text"),
    [(2.0, "2"), (2.913, "2.91"), (999.7, "1000"), (34_000, "3.4 × 10⁴"), (1.2e-5, "1.2 × 10⁻⁵"),
     (9_999.7, "1.0 × 10⁴"), (0.0, "0"), (math.inf, "infinite"), (math.nan, "undefined")],
)  # fmt: skip
def test_format_factor(x, text):
    assert recurrent.format_factor(x) == text


@pytest.fixture(scope="module")
def comparison() -> recurrent.Comparison:
    """The page's default run, shortened: the RNN explodes, the LSTM does not."""
    config = PRESETS["rnn_explodes"].config
    return recurrent.compare_networks(config, 40)


def test_comparison_trains_both_nets_on_the_same_settings(comparison):
    rnn, lstm = comparison.runs
    assert (rnn.network, lstm.network) == ("rnn", "lstm")
    for run in comparison.runs:
        opening = PRESETS["rnn_explodes"].config
        assert (run.config.seq_len, run.config.seed) == (opening.seq_len, opening.seed)
        assert run.hidden_grad_norm.shape == (run.steps, opening.seq_len)
        assert run.twin is None  # no clipping, no twin
    assert rnn.exploded_at is not None and rnn.steps == rnn.exploded_at
    assert lstm.exploded_at is None and lstm.steps == 40
    assert math.isfinite(lstm.final_loss) and lstm.final_loss < lstm.initial_loss
    step, factor = rnn.largest_growth()
    assert factor > 1 and factor == rnn.growth_at(step)  # radius 1.5: it grows back in time


def test_describe_quotes_the_records(comparison):
    rnn, lstm = comparison.runs
    sentences = recurrent.describe(comparison)
    assert sentences[0].startswith("At training step 1, before any update")
    assert recurrent.format_factor(rnn.growth_at(1)) in sentences[0]
    assert recurrent.format_factor(lstm.growth_at(1)) in sentences[0]
    step, factor = rnn.largest_growth()
    if step > 1:  # the largest factor is named unless it is the first step's, quoted above
        assert f"training step {step}: {recurrent.format_factor(factor)} times" in sentences[1]
    assert f"exploded at training step {rnn.exploded_at}" in " ".join(sentences)
    assert f"ran all {lstm.steps} steps" in " ".join(sentences)


def test_clipped_comparison_has_unclipped_twins():
    config = PRESETS["rnn_clipped"].config.replace(seq_len=30)
    result = recurrent.compare_networks(config, 12)
    for run in result.runs:
        assert run.config.clip_mode == "norm" and run.twin is not None
        assert run.twin.config.clip_mode == "none"
        # Same initial weights and first batch: the first records agree.
        assert run.records["loss"][0] == run.twin.records["loss"][0]
        np.testing.assert_array_equal(run.hidden_grad_norm[0], run.twin.hidden_grad_norm[0])
    assert "Clipping changed the gradient" in " ".join(recurrent.describe(result))


def test_truncation_leaves_early_steps_without_gradient():
    config = PRESETS["rnn_explodes"].config.replace(seq_len=30, tbptt=10, lr=0.01)
    result = recurrent.compare_networks(config, 5)
    for run in result.runs:
        assert np.all(run.hidden_grad_norm[:, :20] == 0)
        assert np.all(run.hidden_grad_norm[:, 20:] > 0)
    assert "no gradient reaches the first 20 time steps" in " ".join(recurrent.describe(result))


def test_compare_rejects_too_many_steps():
    with pytest.raises(ValueError, match="steps"):
        recurrent.compare_networks(PRESETS["rnn_explodes"].config, recurrent.MAX_PAGE_STEPS + 1)


def test_figures_draw_the_records(comparison):
    rnn, lstm = comparison.runs
    shared = figures.shared_log_range(rnn.hidden_grad_norm, lstm.hidden_grad_norm)
    fig = figures.hidden_grad_heatmap(
        rnn.hidden_grad_norm, title="RNN", log_range=shared, exploded_at=rnn.exploded_at
    )
    heat = fig.data[0]
    assert (heat.zmin, heat.zmax) == shared
    np.testing.assert_allclose(heat.z, figures.log10_or_nan(rnn.hidden_grad_norm))
    assert list(heat.y) == list(range(1, rnn.steps + 1))
    curves = figures.step_curves_figure(comparison.runs, rnn.steps + 1)
    assert "exploded" in curves.data[0].name  # no curve after the explosion
    np.testing.assert_allclose(curves.data[1].y, lstm.hidden_grad_norm[rnn.steps])
    loss = figures.loss_figure(rnn)
    assert loss.data[0].line.color == figures.run_colour(False)


def test_log10_or_nan_blanks_zero_and_infinite():
    out = figures.log10_or_nan(np.array([100.0, 0.0, np.inf, np.nan, 1e-3]))
    np.testing.assert_allclose(out, [2.0, np.nan, np.nan, np.nan, -3.0])


def test_page_run_limit_counts_twins_and_width():
    config = PRESETS["rnn_clipped"].config.replace(seq_len=200, hidden_size=32)
    assert recurrent.page_run_problems(config, 300, twins=False) == []  # 60,000
    assert "no unclipped twin" in recurrent.page_run_problems(config, 300, twins=True)[0]
    wide = config.replace(hidden_size=64, clip_mode="none")
    assert "fewer hidden units" in recurrent.page_run_problems(wide, 300)[0]


def test_hidden_gradient_norms_do_not_overflow_before_the_gradient_does():
    """A gradient of 1e24 per component is finite in float32; its square is not."""
    net = RecurrentNet("rnn", 1, 4, 1, classification=False)
    flat = net.init(torch.Generator().manual_seed(0)).unsqueeze(1)
    out_w = net.layout.specs[3]
    flat[out_w.offset : out_w.offset + out_w.size] = 1e12
    x, y = torch.ones(2, 5, 1), torch.full((2, 1, 1), -1e12)
    norms = torch.zeros(5, 1)
    net.loss_and_grad(flat, x, y, torch.zeros_like(flat), norms)
    assert torch.isfinite(norms[-1]).all() and float(norms[-1, 0]) > 1e24


def test_level_labels_sit_on_their_lines_on_a_log_axis():
    """The mean-guess and half-of-it labels are drawn at their own heights (log10 of the
    level on a log axis), not stacked at the top of the chart."""
    run = recurrent.TruncationRun(0, np.array([0, 10]), np.array([1.0, 0.01]), None)
    study = recurrent.TruncationStudy(PRESETS["lstm_long_clipped"].config, (run,), 0.16)
    fig = figures.truncation_figure(study)
    labels = {a.text: a.y for a in fig.layout.annotations if "mean" in a.text or "half" in a.text}
    assert sorted(labels.values()) == pytest.approx(sorted([math.log10(0.16), math.log10(0.08)]))
    assert {s.y0 for s in fig.layout.shapes} == {0.16, 0.08}
