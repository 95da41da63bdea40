"""The adaptive clipping rules, worked number by number, and what their maps show.

* ``agc_worked``: Adaptive Gradient Clipping (Brock, De, Smith & Simonyan 2021)
  on a small weight matrix and its gradient, one unit (a row of a PyTorch
  ``[out, in]`` weight) at a time;
* ``zclip_worked`` and ``autoclip_worked``: ZClip (Kumar, Owen, Roy Chowdhury
  & Güra 2025) and AutoClip (Seetharaman, Wichern, Pardo & Le Roux 2020) on a
  short history of gradient norms, one step at a time;
* ``map_paragraph``: what a rule's stability map shows, in words built from
  the map's own numbers.

The arithmetic here is plain Python in float64, written from the rules'
definitions; it shares no code with ``clipviz.engine.clipping`` (which trains
with them in float32), so each checks the other (``engine_check``), and
``tests/test_adaptive_worked.py`` checks both against the reference
implementations (timm's ``adaptive_clip_grad``, the ``zclip`` package,
``np.percentile``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clipviz.engine.clipping import AGC, AutoClip, ZClip
from clipviz.engine.models import Layout
from clipviz.engine.sweep import ClipMap
from clipviz.lessons.worked import WorkedInputError, format_number, parse_vector

MAX_UNITS = 6  # rows of the AGC matrices
MAX_INPUTS = 6  # columns
MAX_HISTORY = 30  # norms in a worked history
ZCLIP_EPS = 1e-6  # the zclip package's eps in the z-score
TORCH_EPS = 1e-6  # clip_grad_norm_'s: the scale is c / (norm + 1e-6)

# The examples a page starts from.
AGC_EXAMPLE_WEIGHTS = "0.5, -1, 0.2\n0.05, 0.02, -0.01\n1.5, 0.5, -2\n0, 0, 0"
AGC_EXAMPLE_GRAD = "0.004, 0.003, -0.002\n0.3, -0.4, 0.1\n0.01, -0.02, 0.005\n0.02, -0.01, 0"
NORMS_EXAMPLE = "1.0, 1.2, 0.9, 1.1, 1.3, 1.0, 0.95, 1.15, 9.0, 1.05, 1.2, 0.9, 1.1, 1.0"


def _tex(x: float, digits: int = 6) -> str:
    text = format_number(x, digits)
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}\\times 10^{{{int(exponent)}}}"
    return text


def _tex_vector(values: Sequence[float]) -> str:
    return r"\big(" + ",\\ ".join(_tex(v, 4) for v in values) + r"\big)"


def _roots_of_squares(values: Sequence[float]) -> str:
    terms = " + ".join(f"({_tex(v, 4)})^2" if v < 0 else f"{_tex(v, 4)}^2" for v in values)
    return rf"\sqrt{{{terms}}}"


def _norm(values: Sequence[float]) -> float:
    return math.sqrt(math.fsum(v * v for v in values))


@dataclass(frozen=True)
class RuleStep:
    """One stop of a walk through a rule: a title, the arithmetic, a sentence."""

    title: str
    latex: str
    sentence: str
    focus: int | None = None  # the unit (AGC) or the history step this stop is about


# ---- parsing ----------------------------------------------------------------------------

_ROWS = re.compile(r"[;\n]+")


def parse_matrix(text: str, *, what: str = "the matrix") -> tuple[tuple[float, ...], ...]:
    """Rows separated by ``;`` or new lines, numbers by commas or spaces; raises
    ``WorkedInputError`` with one readable line."""
    rows = [r for r in _ROWS.split(str(text or "").strip()) if r.strip()]
    if not rows:
        raise WorkedInputError(
            f"{what.capitalize()} is empty: type rows separated by ';', e.g. 0.5, -1; 2, 0.1."
        )
    if len(rows) > MAX_UNITS:
        raise WorkedInputError(
            f"{what.capitalize()} has {len(rows)} rows; this page takes at most {MAX_UNITS}."
        )
    parsed = []
    for i, row in enumerate(rows, start=1):
        try:
            parsed.append(parse_vector(row.replace(",", " "), min_len=1, max_len=MAX_INPUTS))
        except WorkedInputError as error:
            raise WorkedInputError(f"Row {i} of {what}: {error}") from None
    widths = {len(r) for r in parsed}
    if len(widths) > 1:
        raise WorkedInputError(
            f"The rows of {what} differ in length ({', '.join(str(len(r)) for r in parsed)} "
            "numbers): give every row as many."
        )
    return tuple(parsed)


def parse_weights(text: str) -> tuple[tuple[float, ...], ...]:
    return parse_matrix(text, what="the weights")


def parse_gradient(text: str) -> tuple[tuple[float, ...], ...]:
    return parse_matrix(text, what="the gradient")


def format_matrix(rows: Sequence[Sequence[float]]) -> str:
    """``0.5, -1; 2, 0.1``: a matrix as the input field takes it."""
    return "; ".join(", ".join(format_number(v) for v in row) for row in rows)


def shape_mismatch(
    weights: Sequence[Sequence[float]], grad: Sequence[Sequence[float]]
) -> str | None:
    """Why a gradient cannot belong to these weights, or None when the shapes agree."""
    shape_w, shape_g = (len(weights), len(weights[0])), (len(grad), len(grad[0]))
    if shape_w == shape_g:
        return None
    return (
        f"It has {shape_g[0]} rows of {shape_g[1]} numbers, the weights {shape_w[0]} rows "
        f"of {shape_w[1]}: a gradient has the shape of its weights."
    )


def parse_norms(text: str) -> tuple[float, ...]:
    """A history of gradient norms: 2 to ``MAX_HISTORY`` numbers, none negative."""
    try:
        norms = parse_vector(text, min_len=2, max_len=MAX_HISTORY)
    except WorkedInputError as error:
        raise WorkedInputError(str(error).replace("The vector", "The history")) from None
    negative = [format_number(v) for v in norms if v < 0]
    if negative:
        raise WorkedInputError(
            f"A norm is a length and cannot be negative (you typed {negative[0]})."
        )
    return norms


# ---- AGC, unit by unit ---------------------------------------------------------------------


@dataclass(frozen=True)
class AgcUnit:
    """One unit's arithmetic: its weight row W_i and gradient row G_i."""

    index: int
    weights: tuple[float, ...]
    grad: tuple[float, ...]
    weight_norm: float
    floor: float  # max(||W_i||, eps)
    bound: float  # lambda * floor
    grad_norm: float
    clipped: bool
    scale: float  # 1 when kept, bound / max(||G_i||, 1e-6) when clipped
    grad_after: tuple[float, ...]


@dataclass(frozen=True)
class AgcResult:
    weights: tuple[tuple[float, ...], ...]  # rows are units: PyTorch's [out, in]
    grad: tuple[tuple[float, ...], ...]
    clip_factor: float
    eps: float
    units: tuple[AgcUnit, ...]
    steps: tuple[RuleStep, ...]

    @property
    def output(self) -> tuple[tuple[float, ...], ...]:
        return tuple(u.grad_after for u in self.units)

    @property
    def units_clipped(self) -> int:
        return sum(u.clipped for u in self.units)

    @property
    def signature(self) -> tuple:
        return (self.weights, self.grad, self.clip_factor, self.eps)


def agc_worked(
    weights: Sequence[Sequence[float]],
    grad: Sequence[Sequence[float]],
    clip_factor: float = 0.01,
    eps: float = 1e-3,
) -> AgcResult:
    """AGC on one weight matrix (rows = units) and its gradient, in float64.

    Per unit i: ``bound = lambda * max(||W_i||, eps)``; if ``||G_i|| < bound``
    the row is kept, otherwise ``G_i <- G_i * bound / max(||G_i||, 1e-6)`` --
    the rule of ``timm.utils.agc.adaptive_clip_grad``.
    """
    weights = tuple(tuple(float(v) for v in row) for row in weights)
    grad = tuple(tuple(float(v) for v in row) for row in grad)
    problem = shape_mismatch(weights, grad)
    if problem:
        raise WorkedInputError(problem)
    units, steps = [], []
    lam = _tex(clip_factor)
    steps.append(
        RuleStep(
            "The rule",
            rf"\|G_i\| \ge \lambda \max(\|W_i\|, \epsilon) \;\Rightarrow\; "
            rf"G_i \leftarrow G_i \cdot \frac{{\lambda \max(\|W_i\|,\epsilon)}}{{\max(\|G_i\|, 10^{{-6}})}}"
            rf",\qquad \lambda = {lam},\ \epsilon = {_tex(eps)}",
            f"Each of the {len(weights)} units (a row of the weight matrix, one output of the "
            "layer) is measured against its own weights: its gradient may be at most the "
            f"fraction λ = {format_number(clip_factor)} of the weights' length. A unit whose "
            f"weights are shorter than ε = {format_number(eps)} is measured as if they were ε "
            "long, so a unit that starts at zero can still move.",
        )
    )
    for i, (w, g) in enumerate(zip(weights, grad, strict=True)):
        w_norm, g_norm = _norm(w), _norm(g)
        floor = max(w_norm, eps)
        bound = clip_factor * floor
        clipped = not g_norm < bound
        scale = bound / max(g_norm, 1e-6) if clipped else 1.0
        after = tuple(v * scale for v in g) if clipped else g
        units.append(AgcUnit(i, w, g, w_norm, floor, bound, g_norm, clipped, scale, after))
        k = i + 1
        floor_tex = (
            rf"\max(\|W_{k}\|, \epsilon) = {_tex(floor)}"
            if w_norm >= eps
            else rf"\max({_tex(w_norm)}, {_tex(eps)}) = {_tex(floor)}"
        )
        lines = [
            rf"\|W_{k}\| = {_roots_of_squares(w)} = {_tex(w_norm)}",
            rf"\text{{bound}}_{k} = \lambda \cdot {floor_tex.split(' = ')[0]} = {lam} \times {_tex(floor)} = {_tex(bound)}",
            rf"\|G_{k}\| = {_roots_of_squares(g)} = {_tex(g_norm)}",
        ]
        if clipped:
            lines.append(
                rf"{_tex(g_norm)} \ge {_tex(bound)} \Rightarrow G'_{k} = G_{k} \cdot "
                rf"\frac{{{_tex(bound)}}}{{{_tex(max(g_norm, 1e-6))}}} = G_{k} \times {_tex(scale)}"
            )
            lines.append(rf"G'_{k} = {_tex_vector(after)}")
            sentence = (
                f"Unit {k}'s gradient is {format_number(g_norm / bound, 3)} times its bound, so "
                f"it is scaled down to exactly the bound: its length becomes "
                f"{format_number(bound)}, its direction stays."
            )
            if w_norm < eps:
                sentence += (
                    f" Its weights are shorter than ε, so ε sets the bound: λ·ε = "
                    f"{format_number(bound)}."
                )
        else:
            lines.append(rf"{_tex(g_norm)} < {_tex(bound)} \Rightarrow G'_{k} = G_{k}")
            sentence = (
                f"Unit {k}'s gradient is shorter than its bound "
                f"({format_number(g_norm / bound, 3)} of it): it passes unchanged."
            )
        steps.append(
            RuleStep(
                f"Unit {k}",
                r" \\ ".join(lines).join((r"\begin{gathered}", r"\end{gathered}")),
                sentence,
                i,
            )
        )
    result_units = tuple(units)
    clipped_count = sum(u.clipped for u in result_units)
    before = _norm([v for row in grad for v in row])
    after_norm = _norm([v for u in result_units for v in u.grad_after])
    steps.append(
        RuleStep(
            "Result",
            rf"\|G\| = {_tex(before)} \;\rightarrow\; \|G'\| = {_tex(after_norm)}",
            f"{clipped_count} of {len(result_units)} units clipped. Each unit was judged "
            "against its own weights, not against one threshold for the whole gradient: a "
            "unit with small weights is held to a small step even when its gradient is not "
            "the largest, and a unit with large weights may keep a large one.",
        )
    )
    return AgcResult(weights, grad, clip_factor, eps, result_units, tuple(steps))


def agc_engine_check(result: AgcResult) -> float:
    """The largest |difference| between this arithmetic and the engine's AGC rule (float32)."""
    rows, cols = len(result.weights), len(result.weights[0])
    # The engine stores a weight (in, out): the transpose of the rows-are-units matrix.
    layout = Layout([("weight", (cols, rows), "layer")])
    w = torch.tensor(result.weights, dtype=torch.float32).T.reshape(-1, 1)
    g = torch.tensor(result.grad, dtype=torch.float32).T.reshape(-1, 1).contiguous()
    AGC(result.clip_factor, result.eps).clip_(g, layout, weights=w.contiguous())
    engine = g.view(cols, rows).T.double().numpy()
    return float(np.max(np.abs(engine - np.array(result.output))))


# ---- ZClip and AutoClip on a history of norms -------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    """One step of a rule on a history of norms."""

    step: int  # 1-based
    norm: float
    threshold: float | None  # the largest norm the step let through; None: no limit
    clipped_norm: float
    clipped: bool
    phase: str = ""  # ZClip: "warm-up" or "running"
    mean: float | None = None  # ZClip: the EMA before the step
    std: float | None = None
    z: float | None = None
    spike: bool = False
    mean_after: float | None = None
    var_after: float | None = None


@dataclass(frozen=True)
class HistoryResult:
    rule: str  # "zclip" or "autoclip"
    norms: tuple[float, ...]
    settings: tuple[tuple[str, float | None], ...]
    rows: tuple[HistoryRow, ...]
    steps: tuple[RuleStep, ...]

    @property
    def signature(self) -> tuple:
        return (self.rule, self.norms, self.settings)

    @property
    def clipped_steps(self) -> list[int]:
        return [r.step for r in self.rows if r.clipped]


def _clip_to(norm: float, ceiling: float) -> tuple[float, bool]:
    """The norm after scaling by ceiling / (norm + 1e-6) when norm > ceiling (ZClip's rule)."""
    if norm > ceiling:
        return norm * (ceiling / (norm + TORCH_EPS)), True
    return norm, False


def _clip_grad_norm(norm: float, ceiling: float) -> tuple[float, bool]:
    """``clip_grad_norm_``: always times min(1, c / (norm + 1e-6))."""
    factor = min(1.0, ceiling / (norm + TORCH_EPS))
    return norm * factor, factor < 1.0


def zclip_worked(
    norms: Sequence[float],
    *,
    alpha: float = 0.97,
    z_thresh: float = 2.5,
    warmup: int = 5,
    cap: float | None = None,
) -> HistoryResult:
    """ZClip (the ``zclip`` package 1.0.0, z-score mode, adaptive scaling) on ``norms``.

    Warm-up: the first ``warmup`` norms are stored (clipped only by the cap,
    as ``clip_grad_norm_``); their mean and population variance start the EMA.
    Then z = (g - mu) / (sigma + 1e-6); a spike (z > z_thresh) is clipped to
    mu + z_thresh * sigma / (z / z_thresh); the EMA moves with that value.
    """
    norms = tuple(float(n) for n in norms)
    rows, steps, buffer = [], [], []
    mean = var = None
    cap_text = "" if cap is None else f", cap {format_number(cap)}"
    steps.append(
        RuleStep(
            "The rule",
            r"z_t = \frac{\|g_t\| - \mu}{\sigma + 10^{-6}},\qquad z_t > z_{\text{thr}}"
            r"\;\Rightarrow\; \|g_t\| \to \mu + \frac{z_{\text{thr}}\,\sigma}{z_t / z_{\text{thr}}}",
            f"ZClip watches the first {warmup} norms, then keeps a running mean μ and variance "
            f"σ² (α = {format_number(alpha)}) and clips a norm only when it stands more than "
            f"z = {format_number(z_thresh)} standard deviations above the mean{cap_text}. "
            "The bigger the spike, the lower it is clipped.",
        )
    )
    for t, g in enumerate(norms, start=1):
        if mean is None:  # the warm-up: collect
            buffer.append(g)
            after, clipped = _clip_grad_norm(g, cap) if cap is not None else (g, False)
            lines = [rf"\|g_{{{t}}}\| = {_tex(g)}\quad(\text{{warm-up }} {t}/{warmup})"]
            sentence = f"Warm-up step {t} of {warmup}: ZClip only stores the norm"
            sentence += (
                f"; the cap clips it as clip_grad_norm_ would (to {format_number(after)})."
                if clipped
                else ("; the cap lets it through." if cap is not None else ": nothing is clipped.")
            )
            mean_after = var_after = None
            if len(buffer) >= warmup:
                mean_after = math.fsum(buffer) / len(buffer)
                var_after = math.fsum((x - mean_after) ** 2 for x in buffer) / len(buffer)
                mean, var = mean_after, var_after
                lines.append(
                    rf"\mu = \tfrac{{1}}{{{len(buffer)}}}\textstyle\sum \|g\| = {_tex(mean)},"
                    rf"\quad \sigma^2 = {_tex(var)}"
                )
                sentence += (
                    " The warm-up is over: the mean and variance of the stored norms start "
                    "the running statistics."
                )
            rows.append(
                HistoryRow(
                    t,
                    g,
                    cap,
                    after,
                    clipped,
                    "warm-up",
                    mean_after=mean_after,
                    var_after=var_after,
                )  # fmt: skip
            )
            steps.append(
                RuleStep(
                    f"norm {t}",
                    r" \\ ".join(lines).join((r"\begin{gathered}", r"\end{gathered}")),
                    sentence,
                    t - 1,
                )
            )
            continue
        std = var**0.5
        z = (g - mean) / (std + ZCLIP_EPS)
        spike = z > z_thresh
        boundary = mean + z_thresh * (std + ZCLIP_EPS)
        lines = [
            rf"\mu = {_tex(mean)},\ \sigma = {_tex(std)},\quad z = "
            rf"\frac{{{_tex(g)} - {_tex(mean)}}}{{{_tex(std)} + 10^{{-6}}}} = {_tex(z)}"
        ]
        if spike:
            target = mean + (z_thresh * std) / (z / z_thresh)
            ceiling = target if cap is None else min(target, cap)
            lines.append(
                rf"z > {_tex(z_thresh)}:\ \text{{spike}} \Rightarrow {_tex(mean)} + "
                rf"\frac{{{_tex(z_thresh)} \times {_tex(std)}}}{{{_tex(z)} / {_tex(z_thresh)}}}"
                rf" = {_tex(target)}"
            )
            sentence = (
                f"A spike: the norm is {format_number(z, 3)} standard deviations above the "
                f"mean. ZClip clips it to {format_number(ceiling)}"
                + (" (the cap is lower)" if cap is not None and cap < target else "")
                + ", below the mean plus z·σ: the further out, the harder it is pulled in."
            )
            x = target
        else:
            ceiling = boundary if cap is None else min(boundary, cap)
            target = None
            lines.append(rf"z \le {_tex(z_thresh)}:\ \text{{no spike}}")
            sentence = f"Not a spike (z = {format_number(z, 3)}): the norm " + (
                f"passes the z-test, but the cap {format_number(cap)} clips it."
                if cap is not None and g > cap
                else "passes unchanged."
            )
            x = g
        effective = (x if cap is None else min(x, cap)) if spike or cap is not None else g
        after, clipped = _clip_to(g, effective)
        new_mean = alpha * mean + (1 - alpha) * x
        new_var = alpha * var + (1 - alpha) * (x - new_mean) ** 2
        lines.append(
            rf"\mu \leftarrow {_tex(alpha)}\,\mu + {_tex(1 - alpha, 3)} \times {_tex(x)} = "
            rf"{_tex(new_mean)},\quad \sigma^2 \leftarrow {_tex(new_var)}"
        )
        sentence += (
            " The running mean moves with the clipped value, not the spike, so one spike "
            "does not inflate it."
            if spike
            else " The running statistics move with the norm."
        )
        rows.append(
            HistoryRow(
                t, g, ceiling, after, clipped, "running", mean, std, z, spike, new_mean, new_var
            )
        )
        steps.append(
            RuleStep(
                f"norm {t}",
                r" \\ ".join(lines).join((r"\begin{gathered}", r"\end{gathered}")),
                sentence,
                t - 1,
            )
        )
        mean, var = new_mean, new_var
    settings = (("alpha", alpha), ("z", z_thresh), ("warmup", float(warmup)), ("cap", cap))
    return HistoryResult("zclip", norms, settings, tuple(rows), tuple(steps))


def numpy_percentile(
    values: Sequence[float], percentile: float
) -> tuple[float, int, float, float, float]:
    """NumPy's default ('linear') percentile, with its pieces: (value, rank, gamma, a, b).

    The sorted values' virtual index is h = (n - 1) p / 100; the answer lies
    between the values at floor(h) and the next, a fraction gamma = h - floor(h)
    of the way (``np.percentile``'s ``_lerp``, which measures from the nearer end).
    """
    ordered = sorted(values)
    n = len(ordered)
    h = (n - 1) * (percentile / 100)
    below = math.floor(h)
    above = min(below + 1, n - 1)
    gamma = h - below
    a, b = ordered[below], ordered[above]
    value = b - (b - a) * (1 - gamma) if gamma >= 0.5 else a + (b - a) * gamma
    return value, below, gamma, a, b


def autoclip_worked(norms: Sequence[float], *, percentile: float = 10.0) -> HistoryResult:
    """AutoClip (the authors' code) on ``norms``: clip at the percentile of all so far."""
    norms = tuple(float(n) for n in norms)
    rows, steps = [], []
    steps.append(
        RuleStep(
            "The rule",
            r"c_t = \operatorname{percentile}_p\big(\|g_1\|, \dots, \|g_t\|\big),\qquad "
            r"\|g_t\| \to \|g_t\| \cdot \min\Big(1, \frac{c_t}{\|g_t\| + 10^{-6}}\Big)",
            f"AutoClip keeps every norm it has seen, the current one included, and clips at "
            f"their p = {format_number(percentile)}th percentile with PyTorch's "
            "clip_grad_norm_. No threshold to choose: it comes from the run itself.",
        )
    )
    for t, g in enumerate(norms, start=1):
        history = norms[:t]
        c, rank, gamma, a, b = numpy_percentile(history, percentile)
        after, clipped = _clip_grad_norm(g, c)
        h = (t - 1) * (percentile / 100)
        ordered = ", ".join(format_number(v, 4) for v in sorted(history))
        lines = [
            rf"h = ({t} - 1) \times {_tex(percentile / 100)} = {_tex(h, 4)},\quad "
            rf"c_{{{t}}} = {_tex(a, 5)} + ({_tex(b, 5)} - {_tex(a, 5)}) \times {_tex(gamma, 4)}"
            rf" = {_tex(c)}",
            rf"\|g_{{{t}}}\| = {_tex(g)} \;\rightarrow\; {_tex(after)}",
        ]
        sentence = (
            f"Sorted, the {t} norms so far are [{ordered}]. The {format_number(percentile)}th "
            f"percentile lies at position {format_number(h, 4)} (counting from 0), between "
            f"{format_number(a, 4)} and {format_number(b, 4)}: c = {format_number(c)}. "
        )
        if t == 1:
            sentence += (
                "With one norm the percentile is that norm itself, so PyTorch's factor "
                "c / (‖g‖ + 10⁻⁶) trims it by a hair."
            )
        elif clipped and after < g * (1 - 1e-5):
            sentence += f"The norm is {format_number(g / c, 3)} times c: it is clipped to c."
        else:
            sentence += "The norm is below c: it passes (a norm equal to c is trimmed by a hair)."
        rows.append(HistoryRow(t, g, c, after, clipped))
        steps.append(
            RuleStep(
                f"norm {t}",
                r" \\ ".join(lines).join((r"\begin{gathered}", r"\end{gathered}")),
                sentence,
                t - 1,
            )
        )
    settings = (("percentile", percentile),)
    return HistoryResult("autoclip", norms, settings, tuple(rows), tuple(steps))


def history_summary(result: HistoryResult) -> str:
    """One paragraph on what the rule did to the whole history, from its rows."""
    n = len(result.rows)
    trimmed = [r for r in result.rows if r.clipped and r.clipped_norm < r.norm * (1 - 1e-5)]
    if result.rule == "zclip":
        warm = sum(r.phase == "warm-up" for r in result.rows)
        text = f"**ZClip clipped {len(trimmed)} of {n} steps.**"
        if warm == n:
            return text + " The whole history was warm-up: make it longer or the warm-up shorter."
        return text + (
            f" The first {warm} were warm-up. After it, a norm passes unless it stands out "
            "from the recent ones: ZClip leaves ordinary steps alone."
        )
    p = dict(result.settings)["percentile"]
    return (
        f"**AutoClip clipped {len(trimmed)} of {n} steps.** A norm above the "
        f"{format_number(p)}th percentile of the history is clipped, and about "
        f"{format_number(100 - p, 3)}% of norms lie above it: with a low p, AutoClip trims "
        "most steps to a typical length, smoothing the step size rather than only catching "
        "spikes. A spike also enters the history, but a low percentile barely moves."
    )


def history_engine_check(result: HistoryResult) -> float:
    """The largest relative difference between this arithmetic's clipped norms and the
    engine's rule fed the same norms (in float32, so about 1e-7 is agreement)."""
    settings = dict(result.settings)
    if result.rule == "zclip":
        rule = ZClip(settings["z"], settings["alpha"], int(settings["warmup"]), settings["cap"])
    else:
        rule = AutoClip(settings["percentile"])
    layout = Layout([("g", (1,), "layer")])
    worst = 0.0
    for row in result.rows:
        grad = torch.tensor([[row.norm]], dtype=torch.float32)
        rule.clip_(grad, layout)
        engine = float(grad.abs())
        scale = max(abs(row.clipped_norm), 1e-30)
        worst = max(worst, abs(engine - row.clipped_norm) / scale)
    return worst


# ---- what a map shows -----------------------------------------------------------------------

WHY = {
    "autoclip": (
        "Its threshold is made of the run's own norms, so it scales with them. On this "
        "unscaled target the norms run to hundreds and thousands, and so does their "
        "percentile. AutoClip trims each step's outliers but puts no absolute bound on the "
        "step: when the norms grow step after step, the threshold grows with them. At large "
        "learning rates the run still overflows; at moderate ones the weights are thrown "
        "far, typically to where the ReLU units are off for every training row and the net "
        "predicts about a constant. A fixed c = 1 bounds every step outright, which is what "
        "this net needs (or a standardized target)."
    ),
    "agc": (
        "λ bounds each unit's gradient by the fraction λ of that unit's weights, and the "
        "biases start at zero, where ε sets their bound at λ·ε. So no step is large compared "
        "with the weights, and nothing explodes; but with a small λ and a small learning "
        "rate the net creeps. Its good region lies up and to the right. Brock et al. picked "
        "λ by batch size (smaller for larger batches) and left the final layer unclipped "
        "(timm's training script does too); here every layer is clipped, as "
        "adaptive_clip_grad does when handed all parameters."
    ),
    "zclip": (
        "For its first zclip_warmup steps (25 here) ZClip only collects norms and clips "
        "nothing. On this unscaled target the unclipped run explodes within those 25 steps "
        "at most learning rates past the no-clipping boundary, and there ZClip explodes "
        "too, whatever z. Only where the unclipped run outlasts the warm-up can the z-test "
        "step in and clip spikes against the recent mean. The zclip package's own default "
        "caps the norm at 1.0 (max_grad_norm) for exactly this; choose the cap above to see it."
    ),
}
CAPPED_WHY = (
    "With the cap, the warm-up steps are clipped by norm like the tutorial's clip at 1, and "
    "after it every norm is held below both the z-test's level and the cap: the map looks "
    "like clipping by norm at 1, with the z-test trimming spikes below that."
)
NAMES = {"autoclip": "AutoClip", "agc": "AGC", "zclip": "ZClip"}
SETTING = {"autoclip": ("p", 10.0), "agc": ("λ", 0.01), "zclip": ("z", 2.5)}


def _readable(x: float) -> str:
    """20,356 or 3.2e+07 or 5.08: a loss for reading."""
    if abs(x) >= 1e6:
        return f"{x:.3g}"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _nearest(values: np.ndarray, target: float) -> int:
    return int(np.argmin(np.abs(np.log(values) - math.log(target))))


def map_paragraph(
    mode: str,
    m: ClipMap,
    unclipped: ClipMap | None = None,
    zclip_cap: float | None = None,
    tutorial_lr: float = 0.01,
) -> str:
    """Markdown: what rule ``mode``'s map shows, its numbers computed from the map."""
    counts, total = m.counts(), m.final_loss.size
    parts = [
        f"**{NAMES[mode]}.** {counts['trained']} of {total} runs trained, "
        f"{counts['no_progress']} went nowhere and {counts['diverged']} diverged."
    ]
    symbol, default = SETTING[mode]
    if m.lrs[0] <= tutorial_lr <= m.lrs[-1]:
        col, row = _nearest(m.lrs, tutorial_lr), _nearest(m.thresholds, default)
        status = str(m.status[row, col])
        if status == "diverged":
            outcome = f"diverged at step {int(m.exploded_at[row, col])}"
        else:
            loss = float(m.final_loss[row, col])
            ratio = loss / m.initial_loss
            share = (
                f"{ratio:.3g} times where it started"
                if ratio >= 2
                else f"{100 * ratio:.3g}% of where it started"
            )
            outcome = f"ended at train MSE {_readable(loss)}, {share}"
        parts.append(
            f"The cell nearest the tutorial's run (lr {format_number(float(m.lrs[col]), 3)}, "
            f"{symbol} = {format_number(float(m.thresholds[row]), 3)}) {outcome}."
        )
    if mode == "zclip" and zclip_cap is None and unclipped is not None:
        every_row = m.diverged.all(axis=0)
        unclipped_diverged = unclipped.diverged[0]
        if every_row.any():
            same = bool(np.array_equal(every_row, unclipped_diverged))
            parts.append(
                f"At {int(every_row.sum())} of {len(m.lrs)} learning rates every z diverged"
                + (
                    ", exactly where the unclipped runs diverge."
                    if same
                    else f"; without clipping {int(unclipped_diverged.sum())} diverge."
                )
            )
    parts.append(CAPPED_WHY if mode == "zclip" and zclip_cap is not None else WHY[mode])
    return " ".join(parts)
