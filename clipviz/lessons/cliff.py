"""The "cliff": a one-unit recurrent net whose loss surface has a wall.

Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent
neural networks", Fig. 6, and Goodfellow, Bengio & Courville, *Deep Learning*
(2016), sections 8.2.4 and 10.11.1, use this picture to show why gradients
explode and how clipping the gradient norm helps. The net has one unit,

    x_t = w * sigmoid(x_{t-1}) + b,    x_0 = 0.5,    t = 1..T,

and the loss is L(w, b) = (sigmoid(x_T) - 0.7)^2.

Why there is a wall: the map x -> w*sigmoid(x) + b has slope w*sigmoid'(x),
at most w/4 (sigmoid' peaks at 1/4, at x = 0). For w <= 4 the slope never
passes 1 and the map has a single fixed point. For every w > 4 there is a band
of biases b (`bistable_b_range`) where it has two stable fixed points with an
unstable one, the tipping point, between them; the tipping point sits where
the slope is above 1. The start x_0 = 0.5 is pulled to one stable point or the
other depending on which side of the tipping point it lies, and that side
flips where the tipping point passes through 0.5, i.e. on the line
b = 0.5 - w*sigmoid(0.5) (see `wall_b`). That needs a slope above 1 at 0.5
itself, w*sigmoid'(0.5) > 1: w > 1/sigmoid'(0.5) = 4.2553 (`WALL_MIN_W`); for
4 < w < 4.2553 two stable states exist but the tipping point stays closer to 0
than 0.5 is, so it never crosses the start. Close to the wall the state
lingers near the tipping point and every step multiplies a small offset by
w*sigmoid'(x) > 1, so dx_T/dw and dx_T/db grow like (w*sigmoid'(0.5))^T: the
steepest gradient across the wall (`wall_steepness`) is about 1e3 at w = 4.75,
7e3 at w = 5 and 2e7 at w = 6 for T = 50. The loss jumps between two plateaus across a band only 1e-3 to 1e-6
wide: a cliff. Just above the wall lies the valley of lowest loss.

Everything is float64 NumPy. The gradient comes from the exact forward-mode
recurrence of (dx_t/dw, dx_t/db); the tests check it against PyTorch autograd
and central finite differences.

Defaults (chosen by scanning the surface and hundreds of descents; the tests pin
the behaviour down):

- `W_RANGE` x `B_RANGE` = [3, 7] x [-4.5, -0.5]: the wall crosses the whole
  window diagonally from about (4.3, -2.2) to (7, -3.9): a bright high-loss
  plateau (loss ~0.35-0.45) below it, a low-loss side (~0.01-0.09) above it,
  and the near-zero valley running into it from the upper left. At T = 50 the
  grid (201 x 201, about 15 ms) shows the wall as a sharp edge.
- `DEFAULT_START` = (4.75, -2.75), `DEFAULT_LR` = 0.1, `DEFAULT_THRESHOLD` = 1,
  `DEFAULT_STEPS` = 100, `DEFAULT_T` = 50: descent crosses the plateau to the
  wall and at step 14 lands on its face, where the gradient norm is 569. Without
  clipping that step moves (w, b) by 56.9, to about (34.8, 45.9), a flat place
  (gradient exactly 0) where the loss stays 0.09 for good. With clipping the
  step is 0.1 = lr * threshold, the path stays on the wall, and its loss falls
  below 2e-4. Thresholds from 0.05 to 5 all beat the unclipped run, which
  matches Pascanu et al.'s remark that the threshold is not critical.
  Whether a step lands on the thin face is sensitive to the start: nearby
  starts with w in [4.5, 5.25] and b in [-3.25, -2] mostly leap, some hop over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

X0 = 0.5
TARGET = 0.7
DEFAULT_T = 50
W_RANGE: tuple[float, float] = (3.0, 7.0)
B_RANGE: tuple[float, float] = (-4.5, -0.5)
DEFAULT_RESOLUTION = 201
DEFAULT_START: tuple[float, float] = (4.75, -2.75)
DEFAULT_LR = 0.1
DEFAULT_THRESHOLD = 1.0
DEFAULT_STEPS = 100

Array = NDArray[np.float64]


def sigmoid(x: ArrayLike) -> Array:
    """Logistic function, written with tanh so huge |x| cannot overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def sigmoid_slope(x: ArrayLike) -> Array:
    """sigmoid'(x) = sigmoid(x) (1 - sigmoid(x)); at most 1/4, at x = 0."""
    s = sigmoid(x)
    return s * (1.0 - s)


# For w at or below this the map x -> w sigmoid(x) + b has one fixed point for every b:
# its slope w sigmoid'(x) is at most w/4. Above it, two stable states exist for some b.
BISTABLE_MIN_W = float(1.0 / sigmoid_slope(0.0))  # = 4
# Below this recurrent weight the tipping point can never pass through x_0 = 0.5, so
# there is no wall: w sigmoid'(x_0) = 1 there (1/sigmoid'(0.5), about 4.2553).
WALL_MIN_W = float(1.0 / sigmoid_slope(X0))


def _unroll(w: ArrayLike, b: ArrayLike, T: int, x0: float) -> tuple[Array, Array, Array]:
    """Run the recurrence T steps; return x_T, dx_T/dw, dx_T/db (broadcast shape)."""
    w, b = np.broadcast_arrays(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64))
    x = np.full(w.shape, x0, dtype=np.float64)
    dx_dw = np.zeros_like(x)
    dx_db = np.zeros_like(x)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(T):
            s = sigmoid(x)
            ds = s * (1.0 - s)
            # x_t = w*s(x_{t-1}) + b, so dx_t = s dw + w s' dx_{t-1} (+ db).
            dx_dw = s + w * ds * dx_dw
            dx_db = 1.0 + w * ds * dx_db
            x = w * s + b
    return x, dx_dw, dx_db


def _check_T(T: int) -> None:
    if int(T) != T or T < 1:
        raise ValueError(f"T must be a whole number of steps >= 1, got {T!r}")


def final_state(w: ArrayLike, b: ArrayLike, T: int = DEFAULT_T, x0: float = X0) -> Array:
    """x_T for every (w, b) pair; w and b broadcast like NumPy arrays."""
    _check_T(T)
    return _unroll(w, b, T, x0)[0]


def loss(w: ArrayLike, b: ArrayLike, T: int = DEFAULT_T, target: float = TARGET) -> Array:
    """L(w, b) = (sigmoid(x_T) - target)^2, elementwise over broadcast w, b."""
    return (sigmoid(final_state(w, b, T)) - target) ** 2


def loss_and_gradient(
    w: ArrayLike, b: ArrayLike, T: int = DEFAULT_T, target: float = TARGET
) -> tuple[Array, Array, Array]:
    """(L, dL/dw, dL/db), exact, elementwise over broadcast w, b."""
    _check_T(T)
    x, dx_dw, dx_db = _unroll(w, b, T, X0)
    s = sigmoid(x)
    dL_dx = 2.0 * (s - target) * s * (1.0 - s)
    with np.errstate(over="ignore", invalid="ignore"):
        return (s - target) ** 2, dL_dx * dx_dw, dL_dx * dx_db


def gradient(w: ArrayLike, b: ArrayLike, T: int = DEFAULT_T) -> tuple[Array, Array]:
    """The exact gradient (dL/dw, dL/db)."""
    _, dL_dw, dL_db = loss_and_gradient(w, b, T)
    return dL_dw, dL_db


def wall_b(w: ArrayLike) -> Array:
    """b on the wall for recurrent weight w: where the unstable fixed point is x_0.

    Only a wall where w*sigmoid'(x_0) > 1 (w > `WALL_MIN_W`, about 4.2553): for
    smaller w no tipping point can sit at x_0 (for w <= 4 there is none at all).
    """
    return X0 - np.asarray(w, dtype=np.float64) * sigmoid(X0)


def bistable_b_range(w: float) -> tuple[float, float] | None:
    """The open band of b where x -> w sigmoid(x) + b has two stable fixed points.

    A fixed point solves b = x - w sigmoid(x) =: g(x). For w > 4, g has a local
    maximum at x = -r and a local minimum at x = +r, where the map's slope
    w sigmoid'(x) equals 1: r = 2 arccosh(sqrt(w / 4)). Every b strictly between
    g(r) and g(-r) meets g three times: two stable fixed points (slope below 1)
    and the tipping point between them. None for w <= 4 (one fixed point only).
    """
    if not w > BISTABLE_MIN_W:
        return None
    r = 2.0 * float(np.arccosh(np.sqrt(w / 4.0)))

    def g(x: float) -> float:
        return x - w * float(sigmoid(x))

    return g(r), g(-r)


def tipping_point_reach(w: float) -> float:
    """How far from 0 the tipping point can lie for weight w: r = 2 arccosh(sqrt(w / 4)).

    The tipping point needs a slope above 1, so |x| < r. It can pass through
    x_0 = 0.5 only when r > 0.5, that is w > `WALL_MIN_W`. NaN for w <= 4.
    """
    if not w > BISTABLE_MIN_W:
        return float("nan")
    return 2.0 * float(np.arccosh(np.sqrt(w / 4.0)))


@dataclass(frozen=True)
class Surface:
    """Loss and gradient norm on a grid; arrays have shape (len(b), len(w))."""

    w: Array  # (n_w,) grid of recurrent weights
    b: Array  # (n_b,) grid of biases
    loss: Array  # (n_b, n_w)
    grad_norm: Array  # (n_b, n_w), ||(dL/dw, dL/db)||
    T: int


def surface(
    w_range: tuple[float, float] = W_RANGE,
    b_range: tuple[float, float] = B_RANGE,
    resolution: int = DEFAULT_RESOLUTION,
    T: int = DEFAULT_T,
) -> Surface:
    """Loss and gradient norm over a resolution x resolution grid of (w, b).

    The grid cannot resolve the wall's true gradient (it lives in a band far
    thinner than a cell), but the jump in loss across it is plain to see.
    """
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    w_grid = np.linspace(*w_range, resolution)
    b_grid = np.linspace(*b_range, resolution)
    W, B = np.meshgrid(w_grid, b_grid)
    L, gw, gb = loss_and_gradient(W, B, T)
    return Surface(w=w_grid, b=b_grid, loss=L, grad_norm=np.hypot(gw, gb), T=int(T))


@dataclass(frozen=True)
class Path:
    """A gradient-descent path over (w, b).

    Positions have k+1 entries (index 0 is the start); per-step arrays have k
    entries, entry i describing the move from position i to position i+1.
    """

    w: Array  # (k+1,)
    b: Array  # (k+1,)
    loss: Array  # (k+1,) loss at each position
    grad_norm: Array  # (k,) gradient norm at position i, before clipping
    step_length: Array  # (k,) Euclidean length of the move i -> i+1
    clipped: NDArray[np.bool_]  # (k,) whether step i was rescaled
    lr: float
    threshold: float | None  # None: no clipping
    T: int
    non_finite_at: int | None = None  # position where the gradient stopped being finite

    @property
    def steps(self) -> int:
        return int(self.step_length.size)

    @property
    def largest_step(self) -> float:
        return float(self.step_length.max()) if self.steps else 0.0

    @property
    def largest_step_index(self) -> int | None:
        return int(self.step_length.argmax()) if self.steps else None

    @property
    def final_loss(self) -> float:
        return float(self.loss[-1])

    @property
    def clipped_count(self) -> int:
        return int(self.clipped.sum())


def validate(lr: float, threshold: float | None, steps: int, T: int) -> list[str]:
    """Plain-language problems with these settings; empty when all is well."""
    problems = []
    if not np.isfinite(lr) or lr <= 0:
        problems.append(f"The learning rate must be a positive number (got {lr}).")
    if threshold is not None and (not np.isfinite(threshold) or threshold <= 0):
        problems.append(f"The clipping threshold must be a positive number (got {threshold}).")
    if int(steps) != steps or steps < 0:
        problems.append(f"The number of steps must be a whole number >= 0 (got {steps}).")
    if int(T) != T or T < 1:
        problems.append(f"T must be a whole number of time steps >= 1 (got {T}).")
    return problems


def _descend_batch(
    start_w: float, start_b: float, lr: float, steps: int, T: int, thresholds: Array
) -> tuple[Array, Array, Array, Array, Array, NDArray[np.bool_], NDArray[np.int64]]:
    """Descend from one start with several norm thresholds at once (inf: no clipping).

    Returns positions w, b and loss of shape (n, steps+1), grad norm, step length
    and clipped flags of shape (n, steps), and for each path the first position
    whose loss or gradient is not finite (-1 when none). After that position a
    path is frozen and its later entries are NaN.
    """
    n = thresholds.size
    w = np.full((n, steps + 1), np.nan)
    b = np.full((n, steps + 1), np.nan)
    losses = np.full((n, steps + 1), np.nan)
    grad_norm = np.full((n, steps), np.nan)
    step_length = np.full((n, steps), np.nan)
    clipped = np.zeros((n, steps), dtype=bool)
    non_finite_at = np.full(n, -1, dtype=np.int64)
    w[:, 0], b[:, 0] = start_w, start_b
    alive = np.ones(n, dtype=bool)
    for i in range(steps + 1):
        L, dL_dw, dL_db = loss_and_gradient(w[:, i], b[:, i], T)
        losses[alive, i] = L[alive]
        broken = alive & ~(np.isfinite(L) & np.isfinite(dL_dw) & np.isfinite(dL_db))
        non_finite_at[broken] = i
        alive &= ~broken
        if i == steps or not alive.any():
            break
        norm = np.hypot(dL_dw, dL_db)
        is_clipped = norm > thresholds
        # Norm clipping: g <- g * threshold/||g|| when ||g|| > threshold.
        scale = np.where(is_clipped, thresholds / np.where(is_clipped, norm, 1.0), 1.0)
        move_w, move_b = -lr * scale * dL_dw, -lr * scale * dL_db
        grad_norm[alive, i] = norm[alive]
        clipped[alive, i] = is_clipped[alive]
        step_length[alive, i] = np.hypot(move_w, move_b)[alive]
        w[alive, i + 1] = (w[:, i] + move_w)[alive]
        b[alive, i + 1] = (b[:, i] + move_b)[alive]
    return w, b, losses, grad_norm, step_length, clipped, non_finite_at


def _check_descent(
    start_w: float, start_b: float, lr: float, threshold: float | None, steps: int, T: int
) -> None:
    problems = validate(lr, threshold, steps, T)
    if not (np.isfinite(start_w) and np.isfinite(start_b)):
        problems.append(f"The start point must be finite (got {(start_w, start_b)}).")
    if problems:
        raise ValueError(" ".join(problems))


def descend(
    start_w: float,
    start_b: float,
    lr: float = DEFAULT_LR,
    steps: int = DEFAULT_STEPS,
    T: int = DEFAULT_T,
    threshold: float | None = None,
) -> Path:
    """Plain gradient descent from (start_w, start_b), clipped by norm if threshold is set.

    Each step: g = grad L; if ||g|| > threshold then g <- g * threshold/||g||;
    (w, b) <- (w, b) - lr * g. A non-finite loss or gradient stops the path and
    is recorded in `non_finite_at`. Raises ValueError on invalid settings.
    """
    _check_descent(start_w, start_b, lr, threshold, steps, T)
    return _descend_paths(start_w, start_b, lr, steps, T, [threshold])[0]


def _descend_paths(
    start_w: float,
    start_b: float,
    lr: float,
    steps: int,
    T: int,
    thresholds: list[float | None],
) -> list[Path]:
    """Several descents from one start, run as one batch, each cut at its first non-finite value."""
    limits = np.array([np.inf if t is None else float(t) for t in thresholds])
    w, b, L, norm, length, clipped, broken = _descend_batch(
        float(start_w), float(start_b), float(lr), int(steps), int(T), limits
    )
    paths = []
    for k, threshold in enumerate(thresholds):
        stop = int(broken[k]) if broken[k] >= 0 else int(steps)
        paths.append(
            Path(
                w=w[k, : stop + 1],
                b=b[k, : stop + 1],
                loss=L[k, : stop + 1],
                grad_norm=norm[k, :stop],
                step_length=length[k, :stop],
                clipped=clipped[k, :stop],
                lr=float(lr),
                threshold=None if threshold is None else float(threshold),
                T=int(T),
                non_finite_at=int(broken[k]) if broken[k] >= 0 else None,
            )
        )
    return paths


@dataclass(frozen=True)
class ThresholdSweep:
    """Clipped descents from one start for several thresholds; arrays of shape (n,)."""

    thresholds: Array
    largest_step: Array
    lowest_loss: Array
    final_loss: Array
    clipped_fraction: Array  # share of steps that were rescaled


def threshold_sweep(
    start: tuple[float, float],
    lr: float,
    steps: int,
    T: int,
    thresholds: ArrayLike = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100),
) -> ThresholdSweep:
    """How the clipped descent depends on the threshold (all runs in one batch)."""
    limits = np.asarray(thresholds, dtype=np.float64)
    for threshold in limits:
        _check_descent(start[0], start[1], lr, float(threshold), steps, T)
    _, _, L, _, length, clipped, _ = _descend_batch(
        float(start[0]), float(start[1]), float(lr), int(steps), int(T), limits
    )
    with np.errstate(invalid="ignore"):
        return ThresholdSweep(
            thresholds=limits,
            largest_step=np.nanmax(length, axis=1, initial=0.0),
            lowest_loss=np.nanmin(L, axis=1, initial=np.inf),
            final_loss=L[np.arange(limits.size), np.sum(np.isfinite(L), axis=1) - 1],
            clipped_fraction=clipped.mean(axis=1) if steps else np.zeros(limits.size),
        )


def compare(
    start: tuple[float, float] = DEFAULT_START,
    lr: float = DEFAULT_LR,
    threshold: float = DEFAULT_THRESHOLD,
    steps: int = DEFAULT_STEPS,
    T: int = DEFAULT_T,
) -> tuple[Path, Path]:
    """Twin descents from the same start: (unclipped, clipped by norm at threshold)."""
    if threshold is None:
        raise ValueError("compare needs a clipping threshold")
    _check_descent(start[0], start[1], lr, threshold, steps, T)
    unclipped, clipped = _descend_paths(start[0], start[1], lr, steps, T, [None, threshold])
    return unclipped, clipped


def view_ranges(
    path: Path,
    w_range: tuple[float, float] = W_RANGE,
    b_range: tuple[float, float] = B_RANGE,
    max_span: float = 12.0,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """A map window: the default one, widened to whole numbers to hold `path`.

    Meant for the clipped path, which moves at most lr * threshold per step. A
    window never grows past `max_span` per axis: the cliff must stay visible, so
    a path that runs further is shown leaving the map instead.
    """

    def widen(lo: float, hi: float, values: Array) -> tuple[float, float]:
        values = values[np.isfinite(values)]
        if values.size:
            lo = max(min(lo, float(np.floor(values.min() - 0.25))), hi - max_span)
            hi = min(max(hi, float(np.ceil(values.max() + 0.25))), lo + max_span)
        return float(lo), float(hi)

    return widen(*w_range, path.w), widen(*b_range, path.b)


def summary(unclipped: Path, clipped: Path) -> list[str]:
    """One or two plain sentences on what the twin descents did, from their numbers."""
    bound = clipped.lr * (clipped.threshold or np.inf)
    sentences = []
    if unclipped.non_finite_at is not None:
        sentences.append(
            f"Without clipping, the gradient stopped being a finite number after "
            f"{unclipped.non_finite_at} steps, so that run was halted there."
        )
    elif unclipped.steps:
        i = unclipped.largest_step_index
        sentences.append(
            f"Without clipping, the largest move came at step {i + 1}: the gradient norm there "
            f"was {unclipped.grad_norm[i]:.3g}, and the step moved (w, b) by "
            f"{unclipped.step_length[i]:.3g}, to ({unclipped.w[i + 1]:.3g}, {unclipped.b[i + 1]:.3g})."
        )
        later = unclipped.grad_norm[i + 1 :]
        if later.size >= 3 and later.max() < 1e-3 and unclipped.step_length[i] > 10 * bound:
            flat = "zero" if later.max() == 0 else f"below {later.max():.1g}"
            sentences[-1] += (
                f" Out there the loss surface is flat (the gradient norm is {flat}), so the loss"
                f" stays at {unclipped.final_loss:.3g} and the descent never comes back."
            )
    if not clipped.steps or clipped.threshold is None:
        return sentences
    if clipped.clipped_count == 0:
        sentences.append(
            f"The gradient norm never went above the threshold {clipped.threshold:g}, so clipping "
            "never acted and both paths are the same."
        )
    else:
        sentences.append(
            f"With clipping, {clipped.clipped_count} of {clipped.steps} steps were rescaled and no step "
            f"was longer than lr × threshold = {clipped.lr:g} × {clipped.threshold:g} = {bound:.3g}."
        )
    return sentences


def wall_steepness(w: float, T: int = DEFAULT_T) -> float:
    """Largest gradient norm found crossing the wall at recurrent weight w.

    Samples b at offsets from 1e-13 to 1 on both sides of `wall_b(w)`, densely
    in log spacing, because at large T the steep band is far thinner than any
    grid. Only meaningful where there is a wall (w above `WALL_MIN_W`, about 4.2553).
    """
    offsets = np.logspace(-13, 0, 1300)
    b = float(wall_b(w)) + np.concatenate([-offsets, [0.0], offsets])
    dL_dw, dL_db = gradient(np.full_like(b, w), b, T)
    norms = np.hypot(dL_dw, dL_db)
    return float(np.nanmax(norms[np.isfinite(norms)], initial=0.0))


def wall_label_point(surf: Surface) -> tuple[float, float] | None:
    """A point on the wall inside the surface's window to label, if the wall is steep.

    At small T the jump across the separatrix is gentle; then there is no cliff
    to point at and this returns None.
    """
    w_lo, w_hi = float(surf.w[0]), float(surf.w[-1])
    b_lo, b_hi = float(surf.b[0]), float(surf.b[-1])
    for fraction in (0.75, 0.6, 0.9, 0.45):
        w = w_lo + fraction * (w_hi - w_lo)
        b = float(wall_b(w))
        if w < 4.5 or not (b_lo + 0.1 < b < b_hi - 0.1):
            continue
        below, above = loss([w, w], [b - 0.1, b + 0.1], surf.T)
        if abs(float(below) - float(above)) > 0.1:
            return w, b
    return None


def sweep_summary(sweep: ThresholdSweep, unclipped: Path) -> str:
    """One sentence on how many thresholds beat the unclipped run's lowest loss."""
    beaten = sweep.thresholds[sweep.lowest_loss < 0.5 * float(np.nanmin(unclipped.loss))]
    total = sweep.thresholds.size
    if beaten.size == 0:
        return (
            f"Here none of the {total} thresholds tried reached a clearly lower loss than the run "
            "without clipping: from this start the wall is not what holds the descent back."
        )
    return (
        f"Here {beaten.size} of the {total} thresholds tried, between {beaten.min():g} and "
        f"{beaten.max():g}, reached a loss less than half the lowest loss of the run without "
        "clipping."
    )
