"""The networks: MLP, vanilla tanh RNN and LSTM, as functions of a flat parameter tensor.

Every model keeps all of its parameters in one tensor of shape ``(P, N)``:
``P`` parameters for each of ``N`` *lanes*. A lane is an independent copy of
the network (its own weights, learning rate, clip threshold); a single run is
``N = 1``, a twin comparison two trainers, a stability-map sweep ``N = 1024``.
Keeping lanes last lets the first layer of every lane share one matrix
product with the shared input batch, and lets global gradient norms be one
reduction over dimension 0.

The MLP computes its gradient in closed form (backpropagation written out:
a few matrix products, no autograd graph), which is what makes a fully
recorded 1600-step run take a fraction of a second; ``tests/test_models.py``
checks it against autograd. The recurrent nets use autograd and can also
return the gradient norm with respect to the hidden state at every time step
(backpropagation through time, the quantity that explodes).

Initialisation follows Keras, as in the reference experiment: He-uniform
hidden kernels, Glorot-uniform output kernels, zero biases; recurrent
kernels orthogonal (He et al. 2015; Glorot & Bengio 2010; Saxe et al. 2014),
LSTM forget-gate bias 1 (Jozefowicz et al. 2015).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from clipviz.config import TrainConfig


@dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor inside the flat vector; ``layer`` groups tensors."""

    name: str
    shape: tuple[int, ...]
    layer: str
    offset: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class Layout:
    """Where each parameter tensor sits in the flat ``(P, N)`` tensor."""

    def __init__(self, entries: list[tuple[str, tuple[int, ...], str]]):
        specs, offset = [], 0
        for name, shape, layer in entries:
            specs.append(ParamSpec(name, shape, layer, offset))
            offset += math.prod(shape)
        self.specs: tuple[ParamSpec, ...] = tuple(specs)
        self.size = offset
        self.layer_names: tuple[str, ...] = tuple(dict.fromkeys(s.layer for s in specs))
        self.tensor_names: tuple[str, ...] = tuple(s.name for s in specs)
        # Index vectors for one-op segment reductions (index_add_).
        self.tensor_ids = torch.cat([torch.full((s.size,), i) for i, s in enumerate(specs)])
        self.tensor_layer = torch.tensor([self.layer_names.index(s.layer) for s in specs])
        self.layer_ids = self.tensor_layer[self.tensor_ids]
        self.tensor_sizes = torch.tensor([s.size for s in specs], dtype=torch.float32)

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``flat`` (P, N) as tensors of shape (*shape, N).

        With a single lane (N = 1) the lane dimension is dropped, so the
        single-run fast paths below work on plain matrices.
        """
        lanes = flat.shape[1]
        if lanes == 1:
            return [flat[s.offset : s.offset + s.size].view(*s.shape) for s in self.specs]
        return [flat[s.offset : s.offset + s.size].view(*s.shape, lanes) for s in self.specs]

    def layer_slice(self, layer: str) -> slice:
        offsets = [(s.offset, s.offset + s.size) for s in self.specs if s.layer == layer]
        return slice(offsets[0][0], offsets[-1][1])


def lane_matmul(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(B, J, N) x (J, K, N) -> (B, K, N): one matrix product per lane."""
    return torch.bmm(a.permute(2, 0, 1), w.permute(2, 0, 1)).permute(1, 2, 0)


def lane_outer(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(B, J, N), (B, K, N) -> (J, K, N): sum over the batch of a_j d_k, per lane."""
    return torch.bmm(a.permute(2, 1, 0), d.permute(2, 0, 1)).permute(1, 2, 0)


def shared_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(B, J) shared input x (J, K, N) per-lane weights -> (B, K, N), one GEMM."""
    j, k, n = w.shape
    return (x @ w.reshape(j, k * n)).view(x.shape[0], k, n)


def _uniform(generator: torch.Generator, shape: tuple[int, ...], limit: float) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * limit


def he_uniform(generator, fan_in: int, fan_out: int) -> torch.Tensor:
    return _uniform(generator, (fan_in, fan_out), math.sqrt(6.0 / fan_in))


def glorot_uniform(generator, fan_in: int, fan_out: int) -> torch.Tensor:
    return _uniform(generator, (fan_in, fan_out), math.sqrt(6.0 / (fan_in + fan_out)))


def orthogonal(generator, rows: int, cols: int) -> torch.Tensor:
    """A (rows, cols) matrix with orthonormal rows or columns (Saxe et al. 2014)."""
    a = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    return q if rows >= cols else q.T


class MLP:
    """Fully connected net: ``depth`` hidden layers of ``width`` units, a linear head.

    Loss: mean squared error. Gradients in closed form (see module docstring).
    """

    recurrent = False

    def __init__(self, n_inputs: int, width: int, depth: int, activation: str, n_outputs: int = 1):
        self.n_inputs, self.width, self.depth, self.n_outputs = n_inputs, width, depth, n_outputs
        self.activation = activation
        entries, fan_in = [], n_inputs
        for i in range(depth):
            layer = f"hidden {i + 1}"
            entries += [
                (f"{layer} weight", (fan_in, width), layer),
                (f"{layer} bias", (width,), layer),
            ]
            fan_in = width
        entries += [
            ("output weight", (fan_in, n_outputs), "output"),
            ("output bias", (n_outputs,), "output"),
        ]
        self.layout = Layout(entries)

    def init(self, generator: torch.Generator) -> torch.Tensor:
        pieces, fan_in = [], self.n_inputs
        for _ in range(self.depth):
            pieces += [he_uniform(generator, fan_in, self.width).flatten(), torch.zeros(self.width)]
            fan_in = self.width
        pieces += [
            glorot_uniform(generator, fan_in, self.n_outputs).flatten(),
            torch.zeros(self.n_outputs),
        ]
        return torch.cat([p.to(torch.float64) for p in pieces]).to(torch.float32)

    def _act(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z) if self.activation == "relu" else torch.tanh(z)

    def _act_grad(self, da: torch.Tensor, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return da * (z > 0) if self.activation == "relu" else da * (1 - a * a)

    def forward(self, params: torch.Tensor, x: torch.Tensor, views: list | None = None):
        """Outputs (B, O, N) -- or (B, O) for one lane -- and the per-layer cache."""
        views = views if views is not None else self.layout.views(params)
        single = params.shape[1] == 1
        cache, a = [], x
        for i in range(self.depth):
            w, b = views[2 * i], views[2 * i + 1]
            if single:
                z = torch.addmm(b, a, w)
            else:
                z = (shared_matmul(x, w) if i == 0 else lane_matmul(a, w)) + b
            a = self._act(z)
            cache.append((z, a))
        w, b = views[-2], views[-1]
        out = torch.addmm(b, a, w) if single else lane_matmul(a, w) + b
        return out, cache

    def loss(self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out, _ = self.forward(params, x)
        if params.shape[1] == 1:
            return ((out - y[..., 0]) ** 2).mean().reshape(1)
        return ((out - y) ** 2).mean(dim=(0, 1))

    def loss_and_grad(
        self,
        params: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        grad: torch.Tensor,
        views: list | None = None,
        gviews: list | None = None,
    ) -> torch.Tensor:
        """Mean squared error per lane (N,); writes dLoss/dparams into ``grad`` (P, N).

        ``x`` (B, F) is shared by all lanes; ``y`` is (B, O, 1) or (B, O, N).
        ``views``/``gviews`` are ``layout.views`` of params/grad, if cached.
        """
        views = views if views is not None else self.layout.views(params)
        gviews = gviews if gviews is not None else self.layout.views(grad)
        single = params.shape[1] == 1
        out, cache = self.forward(params, x, views)
        err = out - (y[..., 0] if single else y)
        loss = (err * err).mean(dim=(0, 1))
        delta = err * (2.0 / (err.shape[0] * err.shape[1]))  # dL/dout
        for i in range(self.depth, -1, -1):
            gw, gb = gviews[2 * i], gviews[2 * i + 1]
            a_in = cache[i - 1][1] if i > 0 else x
            if single:
                torch.mm(a_in.T, delta, out=gw)
            elif i == 0:  # shared input: one GEMM for all lanes
                b_, k, n = delta.shape
                torch.mm(x.T, delta.reshape(b_, k * n), out=gw.view(x.shape[1], k * n))
            else:
                gw.copy_(lane_outer(a_in, delta))
            torch.sum(delta, dim=0, out=gb)
            if i > 0:
                w = views[2 * i]
                da = delta @ w.T if single else lane_matmul(delta, w.transpose(0, 1))
                z, a = cache[i - 1]
                delta = self._act_grad(da, z, a)
        return loss.reshape(-1)


class RecurrentNet:
    """A tanh RNN or an LSTM over a sequence, read out at the last step by a linear head.

    Loss: mean squared error (regression) or cross-entropy (classification).
    ``tbptt = k > 0`` lets the gradient flow back through the last ``k`` time
    steps only (truncated backpropagation through time).
    """

    recurrent = True

    def __init__(
        self,
        cell: str,
        n_inputs: int,
        hidden: int,
        n_outputs: int,
        *,
        classification: bool,
        recurrent_scale: float = 1.0,
        tbptt: int = 0,
    ):
        self.cell, self.n_inputs, self.hidden, self.n_outputs = cell, n_inputs, hidden, n_outputs
        self.classification, self.recurrent_scale, self.tbptt = (
            classification,
            recurrent_scale,
            tbptt,
        )
        gates = 4 * hidden if cell == "lstm" else hidden
        self.gates = gates
        self.layout = Layout(
            [
                ("input kernel", (n_inputs, gates), "input→hidden"),
                ("recurrent kernel", (hidden, gates), "hidden→hidden"),
                ("recurrent bias", (gates,), "hidden→hidden"),
                ("output weight", (hidden, n_outputs), "output"),
                ("output bias", (n_outputs,), "output"),
            ]
        )

    def init(self, generator: torch.Generator) -> torch.Tensor:
        h = self.hidden
        kernel = glorot_uniform(generator, self.n_inputs, self.gates)
        if self.cell == "lstm":
            recurrent = torch.cat([orthogonal(generator, h, h) for _ in range(4)], dim=1)
            bias = torch.zeros(self.gates, dtype=torch.float64)
            bias[h : 2 * h] = 1.0  # forget gate starts open
        else:
            recurrent = orthogonal(generator, h, h) * self.recurrent_scale
            bias = torch.zeros(h, dtype=torch.float64)
        head = glorot_uniform(generator, h, self.n_outputs)
        pieces = [kernel, recurrent, bias, head, torch.zeros(self.n_outputs, dtype=torch.float64)]
        return torch.cat([p.flatten() for p in pieces]).to(torch.float32)

    def _run(self, params: torch.Tensor, x: torch.Tensor, keep_states: bool):
        """Unroll over time; returns outputs (B, O, N) and the hidden states if asked."""
        batch, steps, _ = x.shape
        lanes = params.shape[1]
        wx, wh, b, wo, bo = (
            v.view(*s.shape, lanes)
            for v, s in zip(self.layout.views(params), self.layout.specs, strict=True)
        )
        xw = (
            shared_matmul(x.reshape(batch * steps, -1), wx).view(batch, steps, self.gates, lanes)
            + b
        )
        h = params.new_zeros(batch, self.hidden, lanes)
        c = params.new_zeros(batch, self.hidden, lanes)
        hidden = self.hidden
        cut = steps - self.tbptt if self.tbptt else -1
        states = []
        for t in range(steps):
            if t == cut:
                h, c = h.detach(), c.detach()
            z = xw[:, t] + lane_matmul(h, wh)
            if self.cell == "lstm":
                s = torch.sigmoid(z)
                g = torch.tanh(z[:, 2 * hidden : 3 * hidden])
                c = s[:, hidden : 2 * hidden] * c + s[:, :hidden] * g
                h = s[:, 3 * hidden :] * torch.tanh(c)
            else:
                h = torch.tanh(z)
            if keep_states:
                states.append(h)
        out = lane_matmul(h, wo) + bo
        return out, states

    def _loss_from_out(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.classification:
            logp = torch.log_softmax(out, dim=1)  # (B, C, N)
            picked = logp.gather(1, y.view(-1, 1, 1).expand(-1, 1, out.shape[2]))
            return -picked.mean(dim=(0, 1))
        return ((out - y) ** 2).mean(dim=(0, 1))

    def loss(self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out, _ = self._run(params, x, keep_states=False)
        return self._loss_from_out(out, y)

    def loss_and_grad(
        self,
        params: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        grad: torch.Tensor,
        hidden_grad_norms: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss per lane (N,); writes the gradient into ``grad`` (P, N).

        If ``hidden_grad_norms`` (T, N) is given, it receives ||dL/dh_t|| for
        every time step t: the gradient reaching the hidden state at step t
        from the loss at the end, through every later step.
        """
        with torch.enable_grad():
            leaf = params.detach().requires_grad_(True)
            keep = hidden_grad_norms is not None
            out, states = self._run(leaf, x, keep_states=keep)
            loss = self._loss_from_out(out, y)
            inputs = [leaf] + [s for s in states if s.requires_grad] if keep else [leaf]
            grads = torch.autograd.grad(loss.sum(), inputs, allow_unused=True)
        grad.copy_(grads[0])
        if keep:
            hidden_grad_norms.zero_()
            first = len(states) - (len(inputs) - 1)
            for t, g in enumerate(grads[1:], start=first):
                if g is not None:
                    hidden_grad_norms[t] = g.pow(2).sum(dim=(0, 1)).sqrt()
        return loss.detach()


def build_model(config: TrainConfig, n_features: int, n_outputs: int, classification: bool):
    """The network a config describes, for data with ``n_features`` inputs."""
    if config.network == "mlp":
        return MLP(n_features, config.width, config.depth, config.activation, n_outputs)
    return RecurrentNet(
        config.network,
        n_features,
        config.hidden_size,
        n_outputs,
        classification=classification,
        recurrent_scale=config.recurrent_scale,
        tbptt=config.tbptt,
    )
