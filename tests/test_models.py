"""The networks: closed-form MLP gradients against autograd, recurrent nets against torch.nn."""

import math

import pytest
import torch

from clipviz.engine.models import MLP, RecurrentNet


def autograd_mlp_loss_grad(model: MLP, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """The same MLP written with torch.nn.functional and differentiated by autograd."""
    leaf = flat[:, 0].clone().requires_grad_(True)
    pieces = [leaf[s.offset : s.offset + s.size].view(*s.shape) for s in model.layout.specs]
    a = x
    for i in range(model.depth):
        z = a @ pieces[2 * i] + pieces[2 * i + 1]
        a = torch.relu(z) if model.activation == "relu" else torch.tanh(z)
    out = a @ pieces[-2] + pieces[-1]
    loss = torch.nn.functional.mse_loss(out, y[..., 0])
    loss.backward()
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("lanes", [1, 3])
def test_mlp_closed_form_gradient_equals_autograd(depth, activation, lanes):
    torch.manual_seed(depth)
    model = MLP(n_inputs=6, width=5, depth=depth, activation=activation, n_outputs=2)
    single = model.init(torch.Generator().manual_seed(0))
    flat = single.unsqueeze(1).repeat(1, lanes).contiguous()
    flat += 0.1 * torch.randn_like(flat)  # lanes differ
    x, y = torch.randn(7, 6), torch.randn(7, 2, 1) * 3
    grad = torch.zeros_like(flat)
    loss = model.loss_and_grad(flat, x, y, grad)
    for lane in range(lanes):
        ref_loss, ref_grad = autograd_mlp_loss_grad(model, flat[:, lane : lane + 1], x, y)
        assert loss[lane].item() == pytest.approx(ref_loss.item(), rel=1e-5)
        torch.testing.assert_close(grad[:, lane], ref_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model.loss(flat, x, y), loss)


def test_mlp_init_follows_keras_reference_initialisers():
    model = MLP(n_inputs=20, width=25, depth=1, activation="relu")
    flat = model.init(torch.Generator().manual_seed(1))
    w1, b1, w2, b2 = (flat[s.offset : s.offset + s.size] for s in model.layout.specs)
    he_limit = math.sqrt(6 / 20)
    glorot_limit = math.sqrt(6 / (25 + 1))
    assert float(w1.abs().max()) <= he_limit and float(w1.abs().max()) > 0.9 * he_limit
    assert float(w2.abs().max()) <= glorot_limit
    assert float(b1.abs().max()) == 0 and float(b2.abs().max()) == 0
    assert model.layout.size == 20 * 25 + 25 + 25 + 1
    assert model.layout.layer_names == ("hidden 1", "output")


def test_init_is_deterministic_for_a_seed():
    model = MLP(20, 25, 1, "relu")
    a = model.init(torch.Generator().manual_seed(5))
    b = model.init(torch.Generator().manual_seed(5))
    c = model.init(torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def torch_nn_reference(net: RecurrentNet, flat: torch.Tensor, x: torch.Tensor):
    """The same weights loaded into torch.nn.LSTM / torch.nn.RNN: final hidden state -> head."""
    wx, wh, b, wo, bo = (
        flat[s.offset : s.offset + s.size].view(*s.shape) for s in net.layout.specs
    )
    cls = torch.nn.LSTM if net.cell == "lstm" else torch.nn.RNN
    kwargs = {} if net.cell == "lstm" else {"nonlinearity": "tanh"}
    ref = cls(net.n_inputs, net.hidden, batch_first=True, **kwargs)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(wx.T)
        ref.weight_hh_l0.copy_(wh.T)
        ref.bias_ih_l0.copy_(b)
        ref.bias_hh_l0.zero_()
    _, state = ref(x)
    h = state[0] if net.cell == "lstm" else state
    return h[0] @ wo + bo


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_recurrent_nets_match_torch_nn(cell):
    net = RecurrentNet(
        cell, n_inputs=2, hidden=4, n_outputs=1, classification=False, recurrent_scale=1.2
    )
    flat = net.init(torch.Generator().manual_seed(3)).unsqueeze(1)
    x = torch.randn(5, 12, 2)
    y = torch.randn(5, 1, 1)
    expected_out = torch_nn_reference(net, flat[:, 0], x)
    expected_loss = torch.nn.functional.mse_loss(expected_out, y[..., 0])
    assert net.loss(flat, x, y).item() == pytest.approx(expected_loss.item(), rel=1e-5)
    grad = torch.zeros_like(flat)
    loss = net.loss_and_grad(flat, x, y, grad)
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-5)
    # The gradient agrees with a finite-difference probe along a random direction.
    direction = torch.randn_like(flat, dtype=torch.float64)
    flat64 = flat.double()
    eps = 1e-6
    plus = net.loss(flat64 + eps * direction, x.double(), y.double())
    minus = net.loss(flat64 - eps * direction, x.double(), y.double())
    numeric = (plus - minus).item() / (2 * eps)
    assert (grad.double() * direction).sum().item() == pytest.approx(numeric, rel=1e-3)


def test_rnn_recurrent_scale_sets_the_spectral_radius():
    net = RecurrentNet("rnn", 2, 8, 1, classification=False, recurrent_scale=1.7)
    flat = net.init(torch.Generator().manual_seed(0))
    spec = net.layout.specs[1]
    wh = flat[spec.offset : spec.offset + spec.size].view(8, 8).double()
    radius = torch.linalg.eigvals(wh).abs().max().item()
    assert radius == pytest.approx(1.7, rel=1e-4)


def test_truncated_bptt_cuts_the_gradient_of_early_steps():
    net = RecurrentNet("rnn", 2, 4, 1, classification=False, tbptt=3)
    flat = net.init(torch.Generator().manual_seed(0)).unsqueeze(1)
    x, y = torch.randn(3, 10, 2), torch.randn(3, 1, 1)
    norms = torch.zeros(10, 1)
    net.loss_and_grad(flat, x, y, torch.zeros_like(flat), norms)
    assert float(norms[:7].abs().max()) == 0.0  # no gradient reaches steps before the cut
    assert float(norms[7:].min()) > 0.0


def test_lstm_classification_loss_is_cross_entropy():
    net = RecurrentNet("lstm", 8, 6, 10, classification=True)
    flat = net.init(torch.Generator().manual_seed(0)).unsqueeze(1)
    x, y = torch.rand(4, 8, 8), torch.tensor([0, 3, 9, 1])
    out = torch_nn_reference(net, flat[:, 0], x)
    expected = torch.nn.functional.cross_entropy(out, y)
    assert net.loss(flat, x, y).item() == pytest.approx(expected.item(), rel=1e-5)
