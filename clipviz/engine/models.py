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
checks it against autograd. The recurrent nets do the same for
backpropagation through time (on NumPy arrays, see ``RecurrentNet``), and can
also return the gradient norm with respect to the hidden state at every time
step (the quantity that explodes); ``tests/test_recurrent.py`` checks both
against autograd.

Initialisation follows Keras, as in the reference experiment: He-uniform
hidden kernels, Glorot-uniform output kernels, zero biases; recurrent
kernels orthogonal (He et al. 2015; Glorot & Bengio 2010; Saxe et al. 2014),
LSTM forget-gate bias 1 (Jozefowicz et al. 2015).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import threadpoolctl
import torch

from clipviz.engine.config import TrainConfig


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
        # The bias entries: one per node (unit, or gate unit of an LSTM). The loss's
        # gradient with respect to a node's bias is the error gradient at that node.
        biases = [
            torch.arange(s.offset, s.offset + s.size) for s in specs if s.name.endswith("bias")
        ]
        self.bias_rows = torch.cat(biases) if biases else torch.zeros(0, dtype=torch.long)
        # Parameters per layer (weights and biases), in ``layer_names`` order.
        self.layer_sizes: tuple[int, ...] = tuple(
            sum(s.size for s in specs if s.layer == name) for name in self.layer_names
        )

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


# The lane products below avoid ``bmm`` on lanes-last tensors where they can:
# with lanes last, each lane's matrix is strided, and ``bmm`` would copy it lane
# by lane. A product with one output (or one input) column is an elementwise
# multiply and a sum over contiguous lanes; otherwise the operands are made
# lanes-first once, in one copy each, for a single batched product.


def lane_matmul(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(B, J, N) x (J, K, N) -> (B, K, N): one matrix product per lane."""
    j, k = w.shape[0], w.shape[1]
    if k == 1:  # a dot product per row and lane
        return (a * w[:, 0]).sum(dim=1, keepdim=True)
    if j == 1:  # an outer product per lane: (B, 1, N) * (1, K, N)
        return a * w
    lanes_first = torch.bmm(a.permute(2, 0, 1).contiguous(), w.permute(2, 0, 1).contiguous())
    return lanes_first.permute(1, 2, 0)


def lane_outer(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(B, J, N), (B, K, N) -> (J, K, N): sum over the batch of a_j d_k, per lane."""
    j, k = a.shape[1], d.shape[1]
    if k == 1:
        return (a * d).sum(dim=0).unsqueeze(1)
    if j == 1:
        return (a * d).sum(dim=0).unsqueeze(0)
    lanes_first = torch.bmm(a.permute(2, 1, 0).contiguous(), d.permute(2, 0, 1).contiguous())
    return lanes_first.permute(1, 2, 0)


def shared_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(B, J) shared input x (J, K, N) per-lane weights -> (B, K, N), one GEMM."""
    j, k, n = w.shape
    return (x @ w.reshape(j, k * n)).view(x.shape[0], k, n)


def with_ones(x: torch.Tensor) -> torch.Tensor:
    """(B, F) -> (B, F + 1): a column of ones, so a GEMM also adds the bias row."""
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


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
        # The first layer's weight (F, H) and bias (H,) are adjacent in the flat
        # tensor: together one (F + 1, H, N) block, [W; b]. With many lanes the
        # first layer is then one GEMM of [x, 1] with it, bias included, and
        # its gradient (weight and bias) one GEMM back.
        self._first_rows = slice(0, (n_inputs + 1) * width)
        self._scratch: dict[str, torch.Tensor] = {}  # reused buffers of the many-lane step
        self._bound: tuple | None = None  # (params, grad, their views): see _views_of

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

    def _act_lanes_(self, z: torch.Tensor) -> torch.Tensor:
        """The activation of many lanes, in place (z is not needed afterwards)."""
        return z.relu_() if self.activation == "relu" else z.tanh_()

    def _act_grad_lanes_(self, da: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``_act_grad`` for many lanes, from the activation alone, in place on ``da``.

        For ReLU, ``a > 0`` exactly where ``z > 0``; the fused kernel keeps
        ``da`` there and writes 0 elsewhere in one pass (the bool mask and
        multiply of the single-lane path take several; they differ only where
        ``da`` is already non-finite, a step at which the loss is non-finite too).
        """
        if self.activation == "relu":
            return torch.ops.aten.threshold_backward.grad_input(da, a, 0.0, grad_input=da)
        return da.mul_(1 - a * a)

    def forward(self, params: torch.Tensor, x: torch.Tensor, views: list | None = None):
        """Outputs (B, O, N) -- or (B, O) for one lane -- and the per-layer cache.

        The cache holds ``(z, a)`` per hidden layer: pre-activation and
        activation for one lane; for many lanes ``(a, a)`` (the activation is
        computed in place to save a pass over the largest tensors).
        """
        views = views if views is not None else self.layout.views(params)
        single = params.shape[1] == 1
        cache, a = [], x
        for i in range(self.depth):
            w, b = views[2 * i], views[2 * i + 1]
            if single:
                z = torch.addmm(b, a, w)
                a = self._act(z)
            else:  # many lanes: the activation overwrites z, so the cache holds (a, a)
                if i == 0:
                    first = params[self._first_rows].view(self.n_inputs + 1, -1)
                    z = (with_ones(x) @ first).view(x.shape[0], *b.shape)
                else:
                    z = lane_matmul(a, w).add_(b)
                a = z = self._act_lanes_(z)
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
        hidden_grad_norms: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean squared error per lane (N,); writes dLoss/dparams into ``grad`` (P, N).

        ``x`` (B, F) is shared by all lanes; ``y`` is (B, O, 1) or (B, O, N).
        The same interface as ``RecurrentNet.loss_and_grad``; an MLP has no
        hidden state through time, so ``hidden_grad_norms`` is ignored.
        """
        views, gviews = self._views_of(params, grad)
        if params.shape[1] > 1:
            return self._loss_and_grad_lanes(params, x, y, grad, views, gviews)
        out, cache = self.forward(params, x, views)
        err = out - y[..., 0]
        loss = (err * err).mean(dim=(0, 1))
        delta = err * (2.0 / (err.shape[0] * err.shape[1]))  # dL/dout
        for i in range(self.depth, -1, -1):
            gw, gb = gviews[2 * i], gviews[2 * i + 1]
            a_in = cache[i - 1][1] if i > 0 else x
            torch.mm(a_in.T, delta, out=gw)
            torch.sum(delta, dim=0, out=gb)
            if i > 0:
                z, a = cache[i - 1]
                delta = self._act_grad(delta @ views[2 * i].T, z, a)
        return loss.reshape(-1)

    def _views_of(self, params: torch.Tensor, grad: torch.Tensor) -> tuple[list, list]:
        """``layout.views`` of params and grad, kept while the trainer passes the same
        tensors step after step (making ~10 views per step costs as much as a small layer)."""
        bound = self._bound
        if bound is None or bound[0] is not params or bound[1] is not grad:
            bound = self._bound = (
                params,
                grad,
                self.layout.views(params),
                self.layout.views(grad),
            )
        return bound[2], bound[3]

    def _buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A scratch tensor kept between steps (fresh multi-megabyte tensors
        every step cost page faults that rival the arithmetic)."""
        buf = self._scratch.get(name)
        if buf is None or buf.shape != shape:
            buf = self._scratch[name] = torch.empty(shape)
        return buf

    def _loss_and_grad_lanes(self, params, x, y, grad, views, gviews) -> torch.Tensor:
        """``loss_and_grad`` for N > 1 lanes: the same algebra, laid out for speed.

        The first layer and its gradient are one GEMM each (see ``_first_rows``);
        a one-unit output is a multiply and a sum over contiguous lanes; the
        largest tensors, (B, H, N), live in buffers reused from step to step.
        """
        batch, lanes = x.shape[0], params.shape[1]
        x1 = with_ones(x)
        acts = []
        for i in range(self.depth):
            if i == 0:
                first = params[self._first_rows].view(self.n_inputs + 1, -1)
                z = self._buffer("hidden 1", (batch, self.width, lanes))
                torch.mm(x1, first, out=z.view(batch, -1))
            else:
                z = lane_matmul(acts[-1], views[2 * i]).add_(views[2 * i + 1])
            acts.append(self._act_lanes_(z))
        a, wo, bo = acts[-1], views[-2], views[-1]
        one_output = self.n_outputs == 1
        tmp = self._buffer("scratch", a.shape)
        if one_output:
            out = torch.sum(torch.mul(a, wo[:, 0], out=tmp), dim=1, keepdim=True).add_(bo)
        else:
            out = lane_matmul(a, wo).add_(bo)
        err = out.sub_(y)
        loss = (err * err).mean(dim=(0, 1))
        delta = err.mul_(2.0 / (err.shape[0] * err.shape[1]))  # dL/dout, (B, O, N)
        for i in range(self.depth, 0, -1):
            gw, gb, w, a = gviews[2 * i], gviews[2 * i + 1], views[2 * i], acts[i - 1]
            torch.sum(delta, dim=0, out=gb)
            if i == self.depth and one_output:  # the head; delta (B, 1, N) is not tmp
                torch.sum(torch.mul(a, delta, out=tmp), dim=0, out=gw[:, 0])
                da = torch.mul(delta, w.transpose(0, 1), out=tmp)  # (B, 1, N) * (1, H, N)
            else:
                gw.copy_(lane_outer(a, delta))
                da = lane_matmul(delta, w.transpose(0, 1))
            delta = self._act_grad_lanes_(da, a)
        # The first layer's weight and bias gradients: one GEMM of [x, 1]^T with delta.
        block = grad[self._first_rows].view(self.n_inputs + 1, -1)
        torch.mm(x1.T, delta.reshape(batch, -1), out=block)
        return loss


@functools.cache
def _blas_controller() -> threadpoolctl.ThreadpoolController:
    return threadpoolctl.ThreadpoolController()


def _one_blas_thread():
    """Keep NumPy's BLAS on one thread: the recurrent products are tiny, and waking a
    second thread for each (on a machine whose other core is busy) costs more than it saves."""
    return _blas_controller().limit(limits=1, user_api="blas")


class RecurrentNet:
    """A tanh RNN or an LSTM over a sequence, read out at the last step by a linear head.

    Loss: mean squared error (regression) or cross-entropy (classification).
    ``tbptt = k > 0`` lets the gradient flow back through the last ``k`` time
    steps only (truncated backpropagation through time, Williams & Peng 1990).

    Like the MLP, the gradient is written out by hand: backpropagation through
    time as a forward unroll that keeps every gate activation, a backward loop
    that carries dL/dh_t (and dL/dc_t) from the last step to the first, and
    the weight gradients as a few matrix products over all steps at once. What
    does not depend on the carried gradient (the gates' local derivatives) is
    computed for all steps in one vectorised pass, so a time step costs about
    a dozen small array operations. ``tests/test_recurrent.py`` checks the
    gradient and every dL/dh_t against autograd.

    Why NumPy inside: a time step works on matrices of a few hundred numbers,
    where the cost is the per-call overhead, and NumPy's calls and views cost
    a fraction of PyTorch's; that is what lets a 200-step LSTM train at over a
    hundred optimizer steps a second. Parameters, data and gradients stay
    PyTorch tensors (shared memory, no copies) at the interface.

    Layout inside: feature-major, lanes-first -- states (*L, H, B), gates
    (*L, G, B) with L = () for one lane and (N,) for several -- so every gate
    block is a contiguous slab. The LSTM's gate rows are reordered from the
    layout's (input, forget, cell, output) to (output, input, forget, cell):
    the three sigmoid gates are then one block, and the three gates that
    multiply dL/dc_t in the backward pass another.
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
        if cell == "lstm":  # layout (i, f, g, o) -> internal (o, i, f, g), and back
            blocks = [3, 0, 1, 2]
            self._order = np.concatenate([np.arange(k * hidden, (k + 1) * hidden) for k in blocks])
            self._unorder = np.argsort(self._order)
            # Per internal gate column: halve the sigmoid gates' pre-activations (forward)
            # and quarter their backward signal (see ``_weights`` and ``_loss_and_grad``).
            self._half = np.repeat([0.5, 0.5, 0.5, 1.0], hidden)
            self._quarter = np.repeat([0.25, 0.25, 0.25, 1.0], hidden)

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

    # ---- the unrolled net (NumPy, feature-major) -------------------------
    def _weights(self, params: torch.Tensor) -> tuple[np.ndarray, ...]:
        """The weights as arrays, lanes first, gate rows in the internal order.

        Returns ``w_in`` (*L, G, H + F + 1): the recurrent kernel, the input
        kernel and the bias side by side, so that one product with the stacked
        column [h_{t-1}; x_t; 1] gives every gate's pre-activation, with the
        sigmoid gates' rows halved because sigmoid(z) = (1 + tanh(z / 2)) / 2
        lets one tanh serve all four gates; ``w_h`` (*L, H, G) for the backward
        pass (see ``_loss_and_grad`` for its column scaling); the head ``w_o``
        (*L, H, O) and ``b_o`` (*L, O, 1).
        """
        views = [v.detach().numpy() for v in self.layout.views(params)]
        if params.shape[1] > 1:  # (*shape, N) -> (N, *shape)
            views = [np.moveaxis(v, -1, 0) for v in views]
        wx, wh, b, wo, bo = views
        w_in = np.concatenate([wh, wx, b[..., None, :]], axis=-2)  # (*L, H + F + 1, G)
        w_h = wh
        if self.cell == "lstm":
            w_in = w_in[..., self._order] * self._half.astype(wh.dtype)
            w_h = wh[..., self._order] * self._quarter.astype(wh.dtype)
        return (
            np.ascontiguousarray(np.swapaxes(w_in, -1, -2)),
            np.ascontiguousarray(w_h),
            wo,
            bo[..., None],
        )

    def _unroll(self, params: torch.Tensor, x: torch.Tensor, keep: bool = True):
        """Run the net forward over the whole sequence.

        Returns the weights (see ``_weights``), the output (*L, O, B) and the
        buffers of the backward pass: ``hx`` (T + 1, *L, H + F + 1, B) whose
        step t holds [h_{t-1}; x_t; 1]; for the LSTM ``acts`` (T, *L, 4, H, B),
        the gates (o, i, f, g); ``slopes`` (T, *L, 4, H, B), 1 - tanh^2 of each
        gate's tanh (4 s (1 - s) for a sigmoid gate s); ``cs`` (T + 1, *L, H, B)
        whose step t holds c_{t-1}; ``tanh_c`` (T, *L, H, B). Without ``keep``
        (evaluation), the gates of only one step are kept and no slopes.
        """
        w_in, w_h, wo, bo = self._weights(params)
        lanes = w_in.shape[:-2]
        xs = x.detach().numpy()  # (B, T, F)
        batch, steps, features = xs.shape
        hid, dtype = self.hidden, w_in.dtype
        state = (*lanes, hid, batch)
        hx = np.empty((steps + 1, *lanes, hid + features + 1, batch), dtype=dtype)
        hx[0, ..., :hid, :] = 0.0
        hx[:steps, ..., hid : hid + features, :] = np.moveaxis(xs, 0, -1).reshape(
            steps, *(1,) * len(lanes), features, batch
        )
        hx[:, ..., hid + features, :] = 1.0
        h_t = hx[..., :hid, :]  # h_t[t] is h_{t-1}
        buffers = {"hx": hx}
        if self.cell == "lstm":
            kept = steps if keep else 1
            acts = np.empty((kept, *lanes, 4, hid, batch), dtype=dtype)  # gates o, i, f, g
            z_t = acts.reshape(kept, *lanes, self.gates, batch)
            slopes = np.empty_like(acts) if keep else None
            slope_t = slopes.reshape(z_t.shape) if keep else None
            o, i, f, g = (acts[..., k, :, :] for k in range(4))
            cs = np.zeros((steps + 1, *state), dtype=dtype)
            tanh_c = np.empty((kept, *state), dtype=dtype)
            scratch = np.empty(state, dtype=dtype)
            for t in range(steps):
                k = t if keep else 0
                z = np.matmul(w_in, hx[t], out=z_t[k])
                np.tanh(z, out=z)
                if keep:
                    np.multiply(z, z, out=slope_t[k])
                    np.subtract(1.0, slope_t[k], out=slope_t[k])
                sig = z[..., : 3 * hid, :]
                sig *= 0.5
                sig += 0.5
                np.multiply(f[k], cs[t], out=cs[t + 1])
                np.multiply(i[k], g[k], out=scratch)
                cs[t + 1] += scratch
                np.tanh(cs[t + 1], out=tanh_c[k])
                np.multiply(o[k], tanh_c[k], out=h_t[t + 1])
            buffers.update(acts=acts, slopes=slopes, cs=cs, tanh_c=tanh_c)
        else:
            for t in range(steps):
                h = np.matmul(w_in, hx[t], out=h_t[t + 1])
                np.tanh(h, out=h)
        out = wo.swapaxes(-1, -2) @ h_t[steps] + bo
        return (w_h, wo), out, buffers

    def _forward(self, params: torch.Tensor, x: torch.Tensor) -> np.ndarray:
        """Outputs (*L, O, B)."""
        return self._unroll(params, x, keep=False)[1]

    def _loss_and_dout(self, out: np.ndarray, y: torch.Tensor, want_grad: bool):
        """Loss per lane (N,) and dLoss/dout (*L, O, B) (None unless ``want_grad``).

        ``y``: class labels (B,), or regression targets (B, O, 1) or (B, O, N).
        """
        single = out.ndim == 2
        n_out, batch = out.shape[-2:]
        if self.classification:
            labels = y.numpy()
            shifted = out - out.max(axis=-2, keepdims=True)
            logp = shifted - np.log(np.exp(shifted).sum(axis=-2, keepdims=True))
            picked = logp[..., labels, np.arange(batch)]  # (*L, B)
            loss = -picked.mean(axis=-1)
            dout = None
            if want_grad:
                dout = np.exp(logp)
                dout[..., labels, np.arange(batch)] -= 1.0
                dout /= batch
        else:
            target = y.detach().numpy().astype(out.dtype, copy=False)  # (B, O, 1 or N)
            target = target[..., 0].T if single else np.moveaxis(target, -1, 0).swapaxes(-1, -2)
            err = out - target
            loss = (err * err).mean(axis=(-2, -1))
            dout = None
            if want_grad:
                dout = err
                dout *= 2.0 / (batch * n_out)
        return np.asarray(loss).reshape(-1), dout

    def loss(self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss per lane (N,)."""
        with _one_blas_thread(), np.errstate(all="ignore"):
            loss, _ = self._loss_and_dout(self._forward(params, x), y, want_grad=False)
        return torch.from_numpy(loss)

    def loss_and_accuracy(
        self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss per lane (N,) and, for class labels ``y``, the share of examples whose
        highest output is the label (N,), from one forward pass.

        The loss is computed exactly as ``loss`` computes it. A tie between the
        highest outputs goes to the lower class, as ``torch.argmax`` does; an
        output that is NaN never counts as right.
        """
        if not self.classification:
            raise ValueError("accuracy needs a classification net")
        with _one_blas_thread(), np.errstate(all="ignore"):
            out = self._forward(params, x)  # (*L, O, B)
            loss, _ = self._loss_and_dout(out, y, want_grad=False)
            # argmax over the classes: NumPy returns the first maximum, like torch.
            predicted = np.argmax(out, axis=-2)
            right = (predicted == y.numpy()) & np.isfinite(out).all(axis=-2)
            accuracy = right.mean(axis=-1)
        return torch.from_numpy(loss), torch.from_numpy(np.asarray(accuracy).reshape(-1))

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
        from the loss at the end, through every later step (zero before a
        truncation cut). The norm is taken over the batch and the units.
        """
        with _one_blas_thread(), np.errstate(all="ignore"):  # overflow: the trainer reports it
            return self._loss_and_grad(params, x, y, grad, hidden_grad_norms)

    def _loss_and_grad(self, params, x, y, grad, hidden_grad_norms):
        (w_h, wo), out, buffers = self._unroll(params, x)
        loss, dout = self._loss_and_dout(out, y, want_grad=True)
        hx = buffers["hx"]
        steps, hid = hx.shape[0] - 1, self.hidden
        state = hx.shape[1:-2] + (hid, hx.shape[-1])
        dtype = hx.dtype

        # Backward through time, over the steps the gradient may reach.
        cut = steps - self.tbptt if self.tbptt else 0
        reach = steps - cut
        last = reach - 1
        dh = np.empty((reach, *state), dtype=dtype)  # dL/dh_t for t = cut .. T-1
        np.matmul(wo, dout, out=dh[last])
        if self.cell == "lstm":
            # dz holds dL/dz with the sigmoid gates' rows times 4: their slope is
            # stored as 4 s (1 - s), and w_h's columns carry the 1/4 back.
            acts, slopes, cs, tanh_c = (buffers[k] for k in ("acts", "slopes", "cs", "tanh_c"))
            o, i, f, g = (acts[..., k, :, :] for k in range(4))
            dz4 = np.empty((reach, *acts.shape[1:]), dtype=dtype)
            dz = dz4.reshape(reach, *state[:-2], self.gates, state[-1])
            dc, dc_later, dtc, q = (np.empty(state, dtype=dtype) for _ in range(4))
            for k in range(last, -1, -1):
                t = cut + k
                if k < last:
                    np.matmul(w_h, dz[k + 1], out=dh[k])
                tc, dz_k = tanh_c[t], dz4[k]
                # dL/dc_t: through tanh(c_t) into h_t, and through c_{t+1} = f_{t+1} c_t + ...
                np.multiply(dh[k], o[t], out=dtc)  # dL/d tanh(c_t)
                np.multiply(tc, tc, out=q)
                np.subtract(1.0, q, out=q)
                np.multiply(dtc, q, out=dc)
                if k < last:
                    np.multiply(dc_later, f[t + 1], out=q)
                    dc += q
                # Each gate: what it multiplies, times its slope.
                np.multiply(dh[k], tc, out=dz_k[..., 0, :, :])  # o: h = o tanh(c)
                np.multiply(dc, g[t], out=dz_k[..., 1, :, :])  # i: c += i g
                np.multiply(dc, cs[t], out=dz_k[..., 2, :, :])  # f: c = f c_{t-1} + ...
                np.multiply(dc, i[t], out=dz_k[..., 3, :, :])  # g
                dz_k *= slopes[t]
                dc, dc_later = dc_later, dc
        else:
            h = hx[cut + 1 :, ..., :hid, :]  # h_t for t = cut .. T-1
            dz = np.subtract(1.0, h * h)  # tanh'(z_t) = 1 - h_t^2
            for k in range(last, -1, -1):
                if k < last:
                    np.matmul(w_h, dz[k + 1], out=dh[k])
                dz[k] *= dh[k]

        self._write_grads(grad, hx[cut:steps], hx[steps, ..., :hid, :], dz, dout)
        if hidden_grad_norms is not None:
            # In float64: squares of float32 values above ~1e19 would overflow.
            sq = np.square(dh, dtype=np.float64).sum(axis=(-2, -1))  # (T - cut, *L)
            hidden_grad_norms.zero_()
            hidden_grad_norms[cut:] = torch.from_numpy(np.sqrt(sq).reshape(reach, -1))
        return torch.from_numpy(loss)

    def _write_grads(self, grad, hx, h_last, dz, dout) -> None:
        """The weight gradients from dL/dz of every step, into ``grad`` (P, N).

        hx (T', *L, H + F + 1, B) the stacked [h_{t-1}; x_t; 1] entering each
        step; h_last (*L, H, B); dz (T', *L, G, B); dout (*L, O, B).
        """
        # dL/d[w_h; w_x; b] = sum over steps and examples of [h; x; 1] dz^T.
        if dz.ndim == 3:  # one lane: T' small products, summed
            full = np.matmul(hx, dz.swapaxes(-1, -2)).sum(axis=0)  # (H + F + 1, G)
        else:  # lanes: one product per lane over all steps and examples
            n = dz.shape[1]
            hx_l = np.moveaxis(hx, 0, -2).reshape(n, hx.shape[-2], -1)  # (N, H + F + 1, T'B)
            dz_l = np.moveaxis(dz, 0, -2).reshape(n, self.gates, -1)  # (N, G, T'B)
            full = hx_l @ dz_l.swapaxes(-1, -2)  # (N, H + F + 1, G)
        if self.cell == "lstm":
            full = (full * self._quarter.astype(full.dtype))[..., self._unorder]  # layout order
        hid, features = self.hidden, self.n_inputs
        pieces = [
            full[..., hid : hid + features, :],  # input kernel (F, G)
            full[..., :hid, :],  # recurrent kernel (H, G)
            full[..., hid + features, :],  # bias (G,)
            h_last @ dout.swapaxes(-1, -2),  # output weight (H, O)
            dout.sum(axis=-1),  # output bias (O,)
        ]
        for target, piece in zip(self.layout.views(grad), pieces, strict=True):
            target.numpy()[...] = piece if dz.ndim == 3 else np.moveaxis(piece, 0, -1)


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
