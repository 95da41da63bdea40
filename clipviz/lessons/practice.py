"""In practice: the clipping mistakes practitioners make, each one run in real PyTorch.

The questions people keep filing in the PyTorch, Keras, Lightning and
Transformers trackers, answered by running them. Each case is a pair of small
functions, the way it is usually written (``wrong``) and the way it should be
(``right``), exactly as a training loop would call them, and a ``run_*``
function that runs both on the same small network and returns the numbers as a
frozen dataclass. ``pages/in_practice.py`` shows the source of the very
functions that ran (``source``) beside their numbers, so the code on the page
cannot drift from the code that produced them. Those functions are written to
be read in a half-width code box: lines of at most 50 characters, comments on
lines of their own, type hints where they fit.

Here the real library is the point, not clipviz's own engine:
``torch.nn.utils.clip_grad_norm_``, ``torch.optim.SGD``, ``torch.amp``
(float16 autocast and ``GradScaler("cpu")`` run on the CPU in torch 2.13, so
nothing is simulated there), and ``torch.distributed`` with two real processes
in ``clipviz.lessons.practice_ddp``. Keras 3 runs in a process of its own
(``run_keras``): importing it takes many seconds, so the page shows Keras's
two rules computed from its source in NumPy at once and confirms them with the
real optimizer when that process finishes.

The network is the reference experiment's MLP (20 -> 25 ReLU -> 1) on the
reference data (``make_regression``, 500 training rows), with the target
unscaled (it spans about -400..400), so the gradient norm is in the thousands
and a threshold of 1 clips every step: the mistakes show at full size.

Cases and where they come from:

1. ``clip_grad_norm_`` returns the norm *before* clipping (pytorch#1032 and many
   since): logging it makes clipping look broken.
2. Keras 3 ``clipnorm`` clips each weight tensor on its own; ``global_clipnorm``
   is PyTorch's rule.
3. Mixed precision: ``GradScaler`` multiplies the loss by the scale S (65,536 at
   first), so the gradient is S times too large until ``scaler.unscale_``;
   clipping it then compares S * ||g|| with c and shrinks every step to c / S
   (Micikevicius et al. 2018, "Mixed Precision Training", for loss scaling).
4. Gradient accumulation: clipping inside the accumulation loop clips the running
   sum again and again (transformers#986, whose two-vector example is rerun here).
5. Data-parallel training: clip after the all-reduce (``practice_ddp``).
6. Non-finite norms: inf zeroes the gradient, NaN spreads, ``error_if_nonfinite``
   raises, skipping the step is the remedy.
7. Below the threshold the gradient is multiplied by exactly 1.0, by design.
8. A threshold chosen from the norms of a short warm-up run (the advice of
   Pascanu, Mikolov & Bengio 2013 and of the tutorials this app follows).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import importlib
import inspect
import math
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import clip_grad_norm_, get_total_norm

THRESHOLD = 1.0  # c: the common default, and the tutorial's clipnorm
FLOAT16_MAX = float(torch.finfo(torch.float16).max)  # 65,504: larger overflows to inf
BATCH_SIZE = 32
LEARNING_RATE = 0.01
MOMENTUM = 0.9


# ---- the network and the data every case shares ---------------------------------------


@functools.lru_cache(maxsize=1)
def reference_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The reference experiment's 500 training rows: x (500, 20) and y (500, 1), float32.

    Shared and cached: callers must not modify the tensors.
    """
    from sklearn.datasets import make_regression  # only here: a second's import

    x, y = make_regression(n_samples=1000, n_features=20, noise=0.1, random_state=1)
    return (
        torch.tensor(x[:500], dtype=torch.float32),
        torch.tensor(y[:500, None], dtype=torch.float32),
    )


@functools.lru_cache(maxsize=1)
def _standardized_targets() -> torch.Tensor:
    _, y = reference_data()
    return (y - y.mean()) / y.std()


def batch(
    index: int, size: int = BATCH_SIZE, *, standardize: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``index`` of the training rows in their fixed order (wrapping around).

    ``standardize``: the target scaled to mean 0 and standard deviation 1.
    """
    x, y = reference_data()
    if standardize:
        y = _standardized_targets()
    rows = torch.arange(index * size, (index + 1) * size) % len(x)
    return x[rows], y[rows]


def small_model(seed: int = 0) -> nn.Sequential:
    """The reference MLP, 20 -> 25 ReLU -> 1, with PyTorch's default initialisation
    (weights and biases uniform in +-1/sqrt(fan_in)), the same for the same seed.

    Drawn from a generator of its own: the process's global random state is shared
    by every session and thread of a server, and a background job building a model
    at the same moment would otherwise change these weights.
    """
    generator = torch.Generator().manual_seed(seed)
    layers = [nn.Linear(20, 25, device="meta"), nn.ReLU(), nn.Linear(25, 1, device="meta")]
    model = nn.Sequential(*layers).to_empty(device="cpu")  # no draw from the global state
    with torch.no_grad():
        for layer in (model[0], model[2]):
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
    return model


def prepare() -> float:
    """Load what every case needs, once per process; returns the seconds it took.

    The reference data (scikit-learn's import) and the first ``torch.optim``
    optimizer: constructing the first one imports ``torch._dynamo``, seconds
    that would otherwise be counted against whichever case ran first.
    """
    start = time.perf_counter()
    reference_data()
    torch.optim.SGD(small_model().parameters(), lr=LEARNING_RATE)
    return time.perf_counter() - start


def twin(model: nn.Module) -> nn.Module:
    """A second model with exactly the same weights."""
    other = small_model()
    other.load_state_dict(model.state_dict())
    return other


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The loss every case uses: mean squared error of one batch."""
    x, y = batch
    return F.mse_loss(model(x), y)


def grads_of(model: nn.Module) -> list[torch.Tensor]:
    """Copies of the model's gradients, one tensor per parameter."""
    return [p.grad.detach().clone() for p in model.parameters()]


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """All tensors as one float64 vector (for norms and angles)."""
    return torch.cat([t.detach().reshape(-1).double() for t in tensors])


def norm(tensors: Sequence[torch.Tensor]) -> float:
    """The global L2 norm of several tensors, in float64."""
    return float(torch.linalg.vector_norm(flat(tensors)))


def angle_degrees(a: torch.Tensor, b: torch.Tensor) -> float:
    """The angle between two vectors, in degrees (0 = same direction)."""
    cosine = float(a @ b / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


def source(function: Callable) -> str:
    """The source of ``function`` as it is in this file: what the page shows is what ran."""
    return textwrap.dedent(inspect.getsource(function))


def _timed(function: Callable) -> Callable:
    """Adds the wall-clock seconds a ``run_*`` took to its result (field ``seconds``)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        return dataclasses.replace(result, seconds=time.perf_counter() - start)

    return wrapper


# ---- 1. the returned value is the norm before clipping ----------------------------------


def log_returned_norm(model, c: float) -> float:
    norm = clip_grad_norm_(model.parameters(), c)
    # logged as "the gradient norm": it is the
    # norm BEFORE clipping, never down to c
    return norm.item()


def log_norm_after(model, c: float) -> float:
    clip_grad_norm_(model.parameters(), c)
    grads = [p.grad for p in model.parameters()]
    # the norm the optimizer will actually use
    return get_total_norm(grads).item()


@dataclass(frozen=True)
class ReturnedNormResult:
    """Two twin runs (same weights, same batches), each logging with one of the functions."""

    threshold: float
    logged_wrong: tuple[float, ...]  # what log_returned_norm logged, per step
    norm_after: tuple[float, ...]  # what log_norm_after logged, per step
    weights_identical: bool  # both runs trained the same weights: only the log differs
    seconds: float = 0.0

    @property
    def steps_logged_above(self) -> int:
        """Steps at which the usual code's log shows a norm above the threshold."""
        return sum(n > self.threshold for n in self.logged_wrong)


@_timed
def run_returned_norm(c: float = THRESHOLD, steps: int = 30) -> ReturnedNormResult:
    """Train twin models for ``steps`` SGD steps, clipped at ``c``, logging each way."""
    wrong_model = small_model()
    right_model = twin(wrong_model)
    wrong_opt = torch.optim.SGD(wrong_model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    right_opt = torch.optim.SGD(right_model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    logged, after = [], []
    for step in range(steps):
        data = batch(step)
        for model, opt in ((wrong_model, wrong_opt), (right_model, right_opt)):
            opt.zero_grad()
            mse(model, data).backward()
            if model is wrong_model:
                logged.append(log_returned_norm(model, c))
            else:
                after.append(log_norm_after(model, c))
            opt.step()
    identical = all(
        torch.equal(p, q)
        for p, q in zip(wrong_model.parameters(), right_model.parameters(), strict=True)
    )
    return ReturnedNormResult(c, tuple(logged), tuple(after), identical)


# ---- 2. Keras clipnorm is per tensor ----------------------------------------------------


def keras_clipnorm(grads, c) -> list:
    import keras

    optimizer = keras.optimizers.SGD(
        learning_rate=1.0,
        clipnorm=c,  # each tensor on its own
    )
    return _keras_clipped(keras, optimizer, grads)


def keras_global_clipnorm(grads, c) -> list:
    import keras

    optimizer = keras.optimizers.SGD(
        learning_rate=1.0,
        global_clipnorm=c,  # one norm for all
    )
    return _keras_clipped(keras, optimizer, grads)


def _keras_clipped(keras, optimizer, grads: list[np.ndarray]) -> list[np.ndarray]:
    """The gradient Keras's optimizer applied: one SGD step with lr 1 from weights 0 is -g."""
    variables = [keras.Variable(np.zeros_like(g)) for g in grads]
    optimizer.apply_gradients(
        zip([keras.ops.convert_to_tensor(g) for g in grads], variables, strict=True)
    )
    return [-keras.ops.convert_to_numpy(v) for v in variables]


def keras_clipnorm_formula(grads: list[np.ndarray], c: float) -> list[np.ndarray]:
    """Keras 3 ``clipnorm`` as its source writes it (``_clip_by_norm``): per tensor,
    ``g * c / max(||g||, c)``. In NumPy, so the page need not import Keras."""
    return [g * c / max(float(np.linalg.norm(g)), c) for g in grads]


def keras_global_clipnorm_formula(grads: list[np.ndarray], c: float) -> list[np.ndarray]:
    """Keras 3 ``global_clipnorm`` (``clip_by_global_norm``): one factor
    ``c * min(1 / ||g||, 1 / c)`` for all tensors, no epsilon."""
    total = math.sqrt(sum(float(np.sum(np.square(g))) for g in grads))
    scale = c * min(1.0 / total, 1.0 / c)
    return [g * scale for g in grads]


def torch_clip_grad_norm(grads: list[np.ndarray], c: float) -> list[np.ndarray]:
    """PyTorch's ``clip_grad_norm_`` on parameters holding these gradients."""
    params = [nn.Parameter(torch.zeros(g.shape)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_norm_(params, c)
    return [p.grad.numpy() for p in params]


PARAMETER_NAMES = (
    "hidden weight (25x20)",
    "hidden bias (25)",
    "output weight (1x25)",
    "output bias (1)",
)


@dataclass(frozen=True)
class KerasResult:
    """One gradient of the reference MLP, clipped by three rules; norms per tensor."""

    threshold: float
    names: tuple[str, ...]
    grads: tuple[np.ndarray, ...]  # the gradient, float32, one array per tensor
    norms_before: tuple[float, ...]
    norms_torch: tuple[float, ...]  # per-tensor norms after PyTorch clip_grad_norm_
    norms_per_tensor: tuple[float, ...]  # after Keras clipnorm (formula)
    norms_global: tuple[float, ...]  # after Keras global_clipnorm (formula)
    total_before: float
    total_torch: float
    total_per_tensor: float
    total_global: float
    angle_per_tensor: float  # degrees between the per-tensor result and the gradient
    angle_global: float
    max_torch_vs_keras_global: float  # largest difference, element by element
    seconds: float = 0.0


@_timed
def run_keras_comparison(c: float = THRESHOLD) -> KerasResult:
    """The reference MLP's gradient on the first batch, clipped by each rule."""
    model = small_model()
    mse(model, batch(0)).backward()
    grads = [g.numpy() for g in grads_of(model)]
    by_torch = torch_clip_grad_norm(grads, c)
    per_tensor = keras_clipnorm_formula(grads, c)
    global_ = keras_global_clipnorm_formula(grads, c)

    def norms(arrays):
        return tuple(float(np.linalg.norm(a.astype(np.float64))) for a in arrays)

    def total(arrays):
        return math.sqrt(sum(n * n for n in norms(arrays)))

    def as_vector(arrays):
        return torch.from_numpy(np.concatenate([a.reshape(-1) for a in arrays])).double()

    whole = as_vector(grads)
    return KerasResult(
        threshold=c,
        names=PARAMETER_NAMES,
        grads=tuple(grads),
        norms_before=norms(grads),
        norms_torch=norms(by_torch),
        norms_per_tensor=norms(per_tensor),
        norms_global=norms(global_),
        total_before=total(grads),
        total_torch=total(by_torch),
        total_per_tensor=total(per_tensor),
        total_global=total(global_),
        angle_per_tensor=angle_degrees(whole, as_vector(per_tensor)),
        angle_global=angle_degrees(whole, as_vector(global_)),
        max_torch_vs_keras_global=max(
            float(np.max(np.abs(a - b))) for a, b in zip(by_torch, global_, strict=True)
        ),
    )


@dataclass(frozen=True)
class KerasRun:
    """What real Keras 3 gave for the same gradient, run in a process of its own."""

    version: str
    clipnorm: tuple[np.ndarray, ...]
    global_clipnorm: tuple[np.ndarray, ...]
    max_difference_from_formulas: float  # largest |Keras - formula| over both rules
    import_seconds: float  # importing Keras in the worker process
    seconds: float  # the whole run, process start to result


def keras_worker(payload: tuple[list[np.ndarray], float]) -> tuple:
    """Runs in a process of its own (``run_module``): import Keras with the torch
    backend and clip the gradient both ways. Returns (version, clipnorm's result,
    global_clipnorm's result, seconds the import took)."""
    grads, c = payload
    os.environ["KERAS_BACKEND"] = "torch"  # this process's own environment
    torch.set_num_threads(1)
    start = time.perf_counter()
    import keras

    imported = time.perf_counter() - start
    return (
        keras.__version__,
        keras_clipnorm(grads, c),
        keras_global_clipnorm(grads, c),
        imported,
    )


def run_keras(
    grads: Sequence[np.ndarray], c: float = THRESHOLD, timeout: float = 180.0
) -> KerasRun:
    """Clip ``grads`` with real Keras 3 (``clipnorm`` and ``global_clipnorm``).

    In a process of its own, so the caller never imports Keras; the process is
    always ended, after at most ``timeout`` seconds. Raises ``RuntimeError``
    with a one-line reason when Keras is missing, fails or is too slow.
    """
    start = time.perf_counter()
    grads = [np.asarray(g) for g in grads]
    version, clipnorm, global_clipnorm, imported = run_module(
        "clipviz.lessons.practice", "keras_worker", (grads, c), timeout
    )
    difference = max(
        float(np.max(np.abs(a - b)))
        for got, want in (
            (clipnorm, keras_clipnorm_formula(grads, c)),
            (global_clipnorm, keras_global_clipnorm_formula(grads, c)),
        )
        for a, b in zip(got, want, strict=True)
    )
    return KerasRun(
        version,
        tuple(clipnorm),
        tuple(global_clipnorm),
        difference,
        imported,
        time.perf_counter() - start,
    )


# ---- running a function in a fresh Python process ------------------------------------------

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds clipviz/
_RUNNING: set[subprocess.Popen] = set()  # fresh processes still running, ended at exit


@atexit.register
def _end_running() -> None:
    """If the interpreter exits while a fresh process runs (a server stopped mid-run),
    end it and its workers: they are in a session of their own and would outlive us."""
    for process in list(_RUNNING):
        _end_session(process)


def run_module(module: str, function: str, payload: object, timeout: float) -> object:
    """``module.function(payload)`` in a fresh ``python -m clipviz.lessons.practice``
    process; its return value comes back pickled through a private temporary file.

    A fresh interpreter, not ``multiprocessing``: under Streamlit the process's
    ``__main__`` is the running page script, which a spawned child would run
    again. The process starts in a session of its own, so it and every process
    it starts (the DDP workers) are ended together: after ``timeout`` seconds,
    or if anything goes wrong. Raises ``RuntimeError`` with a one-line reason.
    """
    with tempfile.TemporaryDirectory(prefix="clipviz-practice-") as folder:
        task, answer = Path(folder, "task.pickle"), Path(folder, "answer.pickle")
        task.write_bytes(pickle.dumps((module, function, payload)))
        process = subprocess.Popen(
            [sys.executable, "-m", "clipviz.lessons.practice", str(task), str(answer)],
            cwd=_PACKAGE_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        _RUNNING.add(process)
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"it did not finish within {timeout:.0f} s") from None
        finally:
            _end_session(process)
            _RUNNING.discard(process)
        if process.returncode != 0:
            lines = stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"exit status {process.returncode}")
        return pickle.loads(answer.read_bytes())


def _end_session(process: subprocess.Popen) -> None:
    """End ``process`` and every process of its session (it leads the session's group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break  # the group is gone: every process in it has ended
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def _main(task_path: str, answer_path: str) -> None:
    module, function, payload = pickle.loads(Path(task_path).read_bytes())
    result = getattr(importlib.import_module(module), function)(payload)
    Path(answer_path).write_bytes(pickle.dumps(result))


# ---- 3. mixed precision: unscale before you clip ------------------------------------------


def amp_clip_scaled(model, opt, scaler, data, c):
    opt.zero_grad()
    with torch.autocast("cpu", torch.float16):
        loss = mse(model, data)
    # every gradient is now S times too large ...
    scaler.scale(loss).backward()
    # ... so the clip compares S * ||g|| with c
    seen = clip_grad_norm_(model.parameters(), c)
    # divides by S only now, after the clip
    scaler.step(opt)
    scaler.update()
    return seen.item()


def amp_unscale_clip(model, opt, scaler, data, c):
    opt.zero_grad()
    with torch.autocast("cpu", torch.float16):
        loss = mse(model, data)
    scaler.scale(loss).backward()
    # divide by S first (and look for inf / NaN)
    scaler.unscale_(opt)
    seen = clip_grad_norm_(model.parameters(), c)
    # skipped if unscale_ found inf or NaN
    scaler.step(opt)
    scaler.update()
    return seen.item()


@dataclass(frozen=True)
class AmpRun:
    """One run of ``steps`` float16-autocast steps with a default ``GradScaler("cpu")``."""

    scale: tuple[float, ...]  # S during the step's backward
    seen_norm: tuple[float, ...]  # what clip_grad_norm_ saw (and returned)
    applied_norm: tuple[
        float, ...
    ]  # the gradient the optimizer used, in true units (NaN if skipped)
    skipped: tuple[bool, ...]  # the scaler found inf/NaN: weights left unchanged
    loss: tuple[float, ...]  # float32 loss of the batch before the step
    weights_unchanged: tuple[bool, ...]  # measured: the parameters did not move

    @property
    def skipped_count(self) -> int:
        return sum(self.skipped)

    @property
    def first_taken(self) -> int:
        """The first step the scaler did not skip."""
        return self.skipped.index(False)


@dataclass(frozen=True)
class AmpResult:
    threshold: float
    init_scale: float
    wrong: AmpRun
    right: AmpRun
    seconds: float = 0.0


def _amp_run(step: Callable, c: float, steps: int) -> AmpRun:
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    scaler = torch.amp.GradScaler("cpu")
    scale, seen, applied, skipped, losses, unchanged = [], [], [], [], [], []
    for i in range(steps):
        data = batch(i)
        with torch.no_grad():
            losses.append(float(mse(model, data)))
        before = [p.detach().clone() for p in model.parameters()]
        s = scaler.get_scale()
        seen.append(step(model, opt, scaler, data, c))
        # GradScaler halves the scale exactly when it found inf/NaN and skipped the step.
        skip = scaler.get_scale() < s
        scale.append(s)
        skipped.append(skip)
        applied.append(math.nan if skip else norm(grads_of(model)))
        unchanged.append(
            all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
        )
    return AmpRun(
        tuple(scale), tuple(seen), tuple(applied), tuple(skipped), tuple(losses), tuple(unchanged)
    )


@_timed
def run_amp(c: float = THRESHOLD, steps: int = 40) -> AmpResult:
    """The same float16 training run twice: clip the scaled gradient, or unscale first."""
    return AmpResult(
        threshold=c,
        init_scale=torch.amp.GradScaler("cpu").get_scale(),
        wrong=_amp_run(amp_clip_scaled, c, steps),
        right=_amp_run(amp_unscale_clip, c, steps),
    )


# ---- 4. gradient accumulation: clip once, after accumulating ------------------------------


def clip_inside_loop(model, micro_batches, c):
    for xy in micro_batches:
        loss = mse(model, xy) / len(micro_batches)
        # adds the micro-batch's gradient to .grad
        loss.backward()
        # clips the running sum, again and again
        clip_grad_norm_(model.parameters(), c)


def clip_after_loop(model, micro_batches, c):
    for xy in micro_batches:
        loss = mse(model, xy) / len(micro_batches)
        loss.backward()
    # once, on the gradient of the whole batch
    clip_grad_norm_(model.parameters(), c)


def transformers_986_example() -> tuple[nn.Module, list]:
    """A model and two micro-batches whose gradients are transformers#986's vectors.

    A linear map w (two weights, no bias) at 0 and micro-batches (x, y) =
    ((1, 0), -2) and ((0, 1), -2). The loops take (w.x - y)^2 / 2 (halved: two
    micro-batches), whose gradient at w = 0 is -y x: (2, 0), then (0, 2).
    """
    point = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        point.weight.zero_()
    micro_batches = [
        (torch.tensor([[1.0, 0.0]]), torch.tensor([[-2.0]])),
        (torch.tensor([[0.0, 1.0]]), torch.tensor([[-2.0]])),
    ]
    return point, micro_batches


@dataclass(frozen=True)
class AccumulationResult:
    threshold: float
    # transformers#986's example: micro-gradients (2, 0) and (0, 2), c = 1, no averaging.
    example_grads: tuple[tuple[float, float], ...]
    example_wrong: tuple[float, float]
    example_right: tuple[float, float]
    # the reference MLP, a batch of 32 in n_micro micro-batches
    n_micro: int
    micro_norms: tuple[float, ...]  # norm of each micro-batch's own gradient (divided by n_micro)
    accumulated_norm: float  # norm of the accumulated, unclipped gradient
    wrong: tuple[float, ...]  # the clipped update, flattened
    right: tuple[float, ...]
    wrong_norm: float
    right_norm: float
    angle: float  # degrees between the two updates
    angle_wrong_to_last: float  # degrees between the wrong update and the last micro-batch
    angle_right_to_last: float
    seconds: float = 0.0


def _accumulate(clip: Callable, model: nn.Module, micro_batches, c: float) -> torch.Tensor:
    model.zero_grad()
    clip(model, micro_batches, c)
    return flat(grads_of(model))


def _micro_gradients(model: nn.Module, micro_batches) -> list[torch.Tensor]:
    """Each micro-batch's own gradient, divided by their number, as the loops add it."""
    gradients = []
    for xy in micro_batches:
        model.zero_grad()
        (mse(model, xy) / len(micro_batches)).backward()
        gradients.append(flat(grads_of(model)))
    return gradients


@_timed
def run_accumulation(c: float = THRESHOLD, n_micro: int = 4) -> AccumulationResult:
    """Both accumulation loops on transformers#986's two vectors and on the reference MLP."""
    point, vectors = transformers_986_example()
    example_grads = _micro_gradients(point, vectors)
    example_wrong = _accumulate(clip_inside_loop, point, vectors, c)
    example_right = _accumulate(clip_after_loop, point, vectors, c)

    model = small_model()
    x, y = batch(0)
    micro_batches = list(zip(x.chunk(n_micro), y.chunk(n_micro), strict=True))
    micro = _micro_gradients(model, micro_batches)
    wrong = _accumulate(clip_inside_loop, model, micro_batches, c)
    right = _accumulate(clip_after_loop, model, micro_batches, c)
    return AccumulationResult(
        threshold=c,
        example_grads=tuple(tuple(g.tolist()) for g in example_grads),
        example_wrong=tuple(example_wrong.tolist()),
        example_right=tuple(example_right.tolist()),
        n_micro=n_micro,
        micro_norms=tuple(float(torch.linalg.vector_norm(g)) for g in micro),
        accumulated_norm=float(torch.linalg.vector_norm(sum(micro))),
        wrong=tuple(wrong.tolist()),
        right=tuple(right.tolist()),
        wrong_norm=float(torch.linalg.vector_norm(wrong)),
        right_norm=float(torch.linalg.vector_norm(right)),
        angle=angle_degrees(wrong, right),
        angle_wrong_to_last=angle_degrees(wrong, micro[-1]),
        angle_right_to_last=angle_degrees(right, micro[-1]),
    )


# ---- 6. non-finite norms -------------------------------------------------------------------


def clip_and_step(model, opt, c: float) -> Tensor:
    norm = clip_grad_norm_(model.parameters(), c)
    opt.step()
    return norm


def step_if_finite(model, opt, c) -> Tensor:
    norm = clip_grad_norm_(model.parameters(), c)
    # inf/NaN: skip the step, as GradScaler does
    if torch.isfinite(norm):
        opt.step()
    return norm


def clip_or_raise(model, c: float) -> Tensor:
    return clip_grad_norm_(
        model.parameters(),
        c,
        error_if_nonfinite=True,
    )


# One entry of the hidden layer's weight gradient is replaced by each of these (the
# only injected thing on the page: a real overflow would put many of them there).
NONFINITE_CASES = {
    "huge but finite (1e20)": 1e20,
    "inf": math.inf,
    "NaN": math.nan,
}


@dataclass(frozen=True)
class NonFiniteCase:
    label: str
    injected: float
    norm: float  # what clip_grad_norm_ returned
    entries: int  # gradient entries in the model
    zeros_after: int  # entries exactly 0 after clipping
    nans_after: int  # entries NaN after clipping
    nan_weights_after_step: int  # weights that are NaN after opt.step() (the wrong code)
    weights_moved: bool  # the wrong code's step moved some weight
    skipped: bool  # the right code skipped the step
    right_weights_unchanged: bool  # measured: the right code left every weight as it was
    raised: str  # error_if_nonfinite=True: the message, or "" if it did not raise


@dataclass(frozen=True)
class NonFiniteResult:
    threshold: float
    clean_norm: float  # the norm of the same gradient without the injected entry
    cases: tuple[NonFiniteCase, ...]
    seconds: float = 0.0


def _poisoned_model(value: float) -> nn.Module:
    model = small_model()
    mse(model, batch(0)).backward()
    with torch.no_grad():
        model[0].weight.grad[0, 0] = value
    return model


@_timed
def run_nonfinite(c: float = THRESHOLD) -> NonFiniteResult:
    """The reference MLP's gradient with one entry replaced by 1e20, inf or NaN."""
    clean = small_model()
    mse(clean, batch(0)).backward()
    cases = []
    for label, value in NONFINITE_CASES.items():
        wrong = _poisoned_model(value)
        start = [p.detach().clone() for p in wrong.parameters()]
        norm_value = clip_and_step(wrong, torch.optim.SGD(wrong.parameters(), lr=LEARNING_RATE), c)
        clipped = flat(grads_of(wrong))
        moved = not all(torch.equal(a, b) for a, b in zip(start, wrong.parameters(), strict=True))
        nan_weights = int(torch.isnan(flat(list(wrong.parameters()))).sum())

        right = _poisoned_model(value)
        start = [p.detach().clone() for p in right.parameters()]
        right_norm = step_if_finite(right, torch.optim.SGD(right.parameters(), lr=LEARNING_RATE), c)
        unchanged = all(torch.equal(a, b) for a, b in zip(start, right.parameters(), strict=True))

        try:
            clip_or_raise(_poisoned_model(value), c)
            raised = ""
        except RuntimeError as error:
            raised = str(error)
        cases.append(
            NonFiniteCase(
                label=label,
                injected=value,
                norm=float(norm_value),
                entries=clipped.numel(),
                zeros_after=int((clipped == 0).sum()),
                nans_after=int(torch.isnan(clipped).sum()),
                nan_weights_after_step=nan_weights,
                weights_moved=moved,
                skipped=not bool(torch.isfinite(right_norm)),
                right_weights_unchanged=unchanged,
                raised=raised,
            )
        )
    return NonFiniteResult(c, norm(grads_of(clean)), tuple(cases))


# ---- 7. below the threshold: multiplied by exactly 1.0 ------------------------------------


def clip_if_needed(model, c: float) -> None:
    grads = [p.grad for p in model.parameters()]
    norm = get_total_norm(grads)
    # on a GPU, this `if` makes the CPU wait for
    # the device to finish: every step
    if norm > c:
        clip_grad_norm_(model.parameters(), c)


def clip_always(model, c: float) -> None:
    # below c it multiplies by exactly 1.0
    clip_grad_norm_(model.parameters(), c)


@dataclass(frozen=True)
class BelowThresholdResult:
    threshold: float
    norm: float
    coefficient: float  # min(c / (norm + 1e-6), 1), as torch computes it (float32)
    always_bitwise_equal: bool  # clip_always left every gradient bit for bit as it was
    always_writes: int  # in-place writes clip_always made to the gradient tensors
    guarded_bitwise_equal: bool
    guarded_writes: int
    max_difference: float
    seconds: float = 0.0


def _writes(grads: Sequence[torch.Tensor], versions: Sequence[int]) -> int:
    # Tensor._version counts in-place modifications: it shows the multiply happened.
    return sum(g._version - v for g, v in zip(grads, versions, strict=True))


@_timed
def run_below_threshold() -> BelowThresholdResult:
    """A gradient whose norm is below c: what each function does to it."""
    model = small_model()
    mse(model, batch(0)).backward()
    before = grads_of(model)
    total = torch.nn.utils.get_total_norm(before)
    c = float(10 ** math.ceil(math.log10(float(total))))  # the next power of ten above the norm
    coefficient = float(torch.clamp(c / (total + 1e-6), max=1.0))

    results = []
    for clip in (clip_always, clip_if_needed):
        other = twin(model)
        for p, g in zip(other.parameters(), before, strict=True):
            p.grad = g.clone()
        grads = [p.grad for p in other.parameters()]
        versions = [g._version for g in grads]
        clip(other, c)
        equal = all(torch.equal(a, b) for a, b in zip(before, grads, strict=True))
        difference = max(float((a - b).abs().max()) for a, b in zip(before, grads, strict=True))
        results.append((equal, _writes(grads, versions), difference))
    (always_equal, always_writes, d1), (guarded_equal, guarded_writes, d2) = results
    return BelowThresholdResult(
        c,
        float(total),
        coefficient,
        always_equal,
        always_writes,
        guarded_equal,
        guarded_writes,
        max(d1, d2),
    )


# ---- 8. a threshold from observed norms ----------------------------------------------------

PERCENTILES = (50, 75, 90, 95, 99)


@dataclass(frozen=True)
class ThresholdChoice:
    percentile: int
    threshold: float
    clipped_fraction: float  # of the warm-up steps, how many would have been clipped
    final_loss: float  # the same run trained with clipping at this threshold


@dataclass(frozen=True)
class WarmupResult:
    steps: int
    norms: tuple[float, ...]  # the gradient norm at each warm-up step (no clipping)
    final_loss: float  # the warm-up run, unclipped, at its end
    choices: tuple[ThresholdChoice, ...]
    seconds: float = 0.0


def warmup_norms(model, opt, steps: int) -> list:
    params = list(model.parameters())
    norms = []
    for step in range(steps):
        opt.zero_grad()
        xy = batch(step, standardize=True)
        mse(model, xy).backward()
        grads = [p.grad for p in params]
        norms.append(get_total_norm(grads).item())
        opt.step()
    return norms


def train_clipped(model, opt, steps, c) -> float:
    for step in range(steps):
        opt.zero_grad()
        xy = batch(step, standardize=True)
        mse(model, xy).backward()
        clip_grad_norm_(model.parameters(), c)
        opt.step()
    return full_loss(model)


def full_loss(model: nn.Module) -> float:
    """The MSE on all 500 training rows, standardized target."""
    x, _ = reference_data()
    with torch.no_grad():
        return float(F.mse_loss(model(x), _standardized_targets()))


def fraction_clipped(norms: Sequence[float], threshold: float) -> float:
    """The share of steps whose norm is above ``threshold`` (clip_grad_norm_ would shrink them)."""
    return sum(n > threshold for n in norms) / len(norms)


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)


@_timed
def run_warmup(steps: int = 80) -> WarmupResult:
    """Watch the norms of an unclipped warm-up, then train again clipped at each percentile.

    The target is standardized here: the run is healthy and its norms are the
    "typical" ones the advice asks for.
    """
    model = small_model()
    norms = warmup_norms(model, _sgd(model), steps)
    choices = []
    for q in PERCENTILES:
        threshold = float(np.percentile(norms, q))
        rerun = small_model()
        choices.append(
            ThresholdChoice(
                q,
                threshold,
                fraction_clipped(norms, threshold),
                train_clipped(rerun, _sgd(rerun), steps, threshold),
            )
        )
    return WarmupResult(steps, tuple(norms), full_loss(model), tuple(choices))


if __name__ == "__main__":  # the fresh process of run_module
    _main(*sys.argv[1:])
