"""The worked arithmetic of gradient clipping, one operation at a time.

Two rules, applied to a gradient vector ``g`` with threshold ``c > 0``:

* clip by value: every component is forced into ``[-c, c]``,
  ``g'_i = min(max(g_i, -c), c)``; this can turn the direction of ``g``;
* clip by norm (gradient norm scaling, Pascanu, Mikolov & Bengio 2013, "On the
  difficulty of training recurrent neural networks"): if ``||g||_2 > c`` the
  whole vector is multiplied by ``c / ||g||``, so its norm becomes ``c`` and its
  direction is kept.

``compute`` does the arithmetic in plain float64 (``math.fsum`` for sums) and
records every operation as a ``Step`` a page can walk through; ``torch_check``
redoes it with ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``.
``compare_global_and_per_tensor`` contrasts PyTorch's global norm with the
per-tensor ``clipnorm`` of tf.keras 2.x / Keras 3. ``random_example`` and
``check_answer`` drive the "try it yourself" exercise.

Pure Python plus torch for the reference; imports no streamlit.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

MODES = ("value", "norm", "norm_value")
MODE_NAMES = {
    "value": "clip by value",
    "norm": "clip by norm",
    "norm_value": "clip by norm, then by value",
}
# The squares of every allowed number are ordinary floats: up to 1e150 they stay finite
# even when 50 are summed; from 1e-150 up they do not vanish to 0 (which would make the
# norm of a non-zero vector 0). Zero itself is always allowed.
MAX_ABS_COMPONENT = 1e150
MIN_ABS_COMPONENT = 1e-150
_RANGE_TEXT = "use 0 or sizes between 1e-150 and 1e150"
DEFAULT_TOLERANCE = 0.01
_SEPARATORS = re.compile(r"[,;\s]+")


class WorkedInputError(ValueError):
    """A learner's input that cannot be used; the message is one readable line."""


# --------------------------------------------------------------------------- parsing


def parse_vector(text: str, *, min_len: int = 2, max_len: int = 50) -> tuple[float, ...]:
    """Read a vector typed by a learner: numbers separated by commas, spaces or semicolons.

    Any mix of separators works and repeats are ignored ("2, -6;8  -3"). Surrounding
    brackets and the typographic minus sign are accepted. Raises ``WorkedInputError``
    for an empty field, a token that is not a number (naming it), NaN or infinity,
    fewer than ``min_len`` or more than ``max_len`` numbers.
    """
    if text is None:
        text = ""
    cleaned = str(text).strip().replace("\u2212", "-").strip("[]()").strip()
    if not cleaned:
        raise WorkedInputError(
            "The vector is empty: type numbers separated by commas, e.g. 2, -6, 8."
        )
    tokens = [token for token in _SEPARATORS.split(cleaned) if token]
    if not tokens:
        raise WorkedInputError(
            "The vector has no numbers: type numbers separated by commas, e.g. 2, -6, 8."
        )
    numbers = []
    for token in tokens:
        numbers.append(_parse_number(token, what="the vector"))
    if len(numbers) < min_len:
        if len(numbers) == 1:
            raise WorkedInputError(
                f"One number is not a vector: type at least {min_len} numbers, e.g. 2, -6."
            )
        raise WorkedInputError(f"Type at least {min_len} numbers; you typed {len(numbers)}.")
    if len(numbers) > max_len:
        raise WorkedInputError(
            f"That is {len(numbers)} numbers; this page takes at most {max_len}."
        )
    return tuple(numbers)


def _parse_number(token: str, *, what: str) -> float:
    try:
        number = float(token)
    except ValueError:
        raise WorkedInputError(
            f"'{token}' in {what} is not a number; use digits like 2, -6 or 0.5."
        ) from None
    if not math.isfinite(number):
        raise WorkedInputError(f"'{token}' in {what} is not a finite number; use ordinary numbers.")
    if not _in_range(number):
        raise WorkedInputError(f"'{token}' in {what} is too extreme to square; {_RANGE_TEXT}.")
    return number


def _in_range(x: float) -> bool:
    return x == 0 or MIN_ABS_COMPONENT <= abs(x) <= MAX_ABS_COMPONENT


def parse_threshold(text_or_float: str | float) -> float:
    """Read a clipping threshold ``c``: a number greater than 0 (between 1e-150 and 1e150)."""
    if isinstance(text_or_float, bool):
        raise WorkedInputError("The threshold must be a number greater than 0, e.g. 4.")
    if isinstance(text_or_float, int | float):
        number = float(text_or_float)
    else:
        text = "" if text_or_float is None else str(text_or_float).strip().replace("\u2212", "-")
        if not text:
            raise WorkedInputError("The threshold is empty: type a number greater than 0, e.g. 4.")
        try:
            number = float(text)
        except ValueError:
            raise WorkedInputError(
                f"The threshold '{text}' is not a number; type a number greater than 0, e.g. 4."
            ) from None
    if not math.isfinite(number):
        raise WorkedInputError("The threshold must be a finite number, not NaN or infinity.")
    if number <= 0:
        raise WorkedInputError(
            f"The threshold must be greater than 0 (you gave {format_number(number)}): "
            "clipping to [-c, c] or to a norm of c needs c > 0."
        )
    if not _in_range(number):
        raise WorkedInputError(
            f"The threshold {format_number(number)} is too extreme; {_RANGE_TEXT}."
        )
    return number


def _as_vector(vector: Sequence[float], *, min_len: int = 1) -> tuple[float, ...]:
    """Check a vector handed in by code (not typed): finite numbers, at least ``min_len``."""
    if isinstance(vector, str):
        return parse_vector(vector, min_len=min_len)
    try:
        values = tuple(float(x) for x in vector)
    except (TypeError, ValueError):
        raise WorkedInputError("The vector must be a sequence of numbers.") from None
    if len(values) < min_len:
        raise WorkedInputError(f"The vector needs at least {min_len} number(s).")
    for x in values:
        if not math.isfinite(x):
            raise WorkedInputError("Every component must be a finite number, not NaN or infinity.")
        if not _in_range(x):
            raise WorkedInputError(
                f"A component of {format_number(x)} is too extreme; {_RANGE_TEXT}."
            )
    return values


# --------------------------------------------------------------------------- formatting


def format_number(x: float, digits: int = 6) -> str:
    """Whole numbers without a decimal point, others to ``digits`` significant digits."""
    if x == 0:
        return "0"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.{digits}g}"


def format_vector(values: Sequence[float], digits: int = 6) -> str:
    """``[2, -4, 4]``: the vector as a learner would write it."""
    return "[" + ", ".join(format_number(v, digits) for v in values) + "]"


def _tex(x: float, digits: int = 6) -> str:
    """A number as LaTeX (scientific notation as ``\\times 10^{k}``)."""
    text = format_number(x, digits)
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}\\times 10^{{{int(exponent)}}}"
    return text


def _eq(x: float, digits: int = 6) -> str:
    """``=`` when the shown digits are the exact value, ``\\approx`` otherwise."""
    return "=" if float(format_number(x, digits)) == x else r"\approx"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Step:
    """One operation of a worked example.

    ``index`` is the 0-based component the step concerns (None for whole-vector
    steps) so a page can highlight it. ``kind`` is one of ``start``, ``compare``
    (value clipping of one component), ``square``, ``sum``, ``sqrt``, ``check``,
    ``factor``, ``scale``, ``norm_after``, ``result``. ``values`` holds the numbers
    involved, e.g. ``{"g_i": -6, "c": 4, "out": -4}``.
    """

    title: str
    latex: str
    sentence: str
    values: Mapping[str, float] = field(hash=False)
    index: int | None = None
    kind: str = ""


@dataclass(frozen=True)
class WorkedResult:
    """A gradient clipped by one rule, with every step of the arithmetic.

    ``threshold`` is ``c`` of the rule (for ``norm_value`` the norm threshold;
    ``value_threshold`` holds the value one). ``scale`` is the factor the whole
    vector was multiplied by in the norm rule: ``c / ||g||`` when the norm exceeds
    ``c``, else 1.0. Clipping by value has no single factor, so ``scale`` is None
    in ``value`` mode. ``intermediate`` is the vector after the norm stage of
    ``norm_value`` (None otherwise). ``cosine`` and ``angle_degrees`` compare the
    directions of input and output; both are None when either vector is zero.
    """

    input: tuple[float, ...]
    mode: str
    threshold: float
    norm_before: float
    scale: float | None
    output: tuple[float, ...]
    norm_after: float
    steps: tuple[Step, ...]
    cosine: float | None
    angle_degrees: float | None
    value_threshold: float | None = None
    intermediate: tuple[float, ...] | None = None

    @property
    def changed_indices(self) -> tuple[int, ...]:
        """Components whose value the clipping changed (0-based)."""
        return tuple(
            i for i, (a, b) in enumerate(zip(self.input, self.output, strict=True)) if a != b
        )

    @property
    def changed_by_value_stage(self) -> tuple[int, ...]:
        """In ``norm_value``: components the value stage changed after the norm stage."""
        before = self.intermediate if self.intermediate is not None else self.input
        return tuple(i for i, (a, b) in enumerate(zip(before, self.output, strict=True)) if a != b)

    def as_dict(self) -> dict:
        """The fields of ``python -m clipviz worked --json``."""
        return {
            "input": [float(x) for x in self.input],
            "mode": self.mode,
            "threshold": float(self.threshold),
            "norm_before": float(self.norm_before),
            "scale": None if self.scale is None else float(self.scale),
            "output": [float(x) for x in self.output],
            "norm_after": float(self.norm_after),
        }

    def table(self) -> str:
        """A plain-text table for the terminal: each component before and after."""
        head = f"{MODE_NAMES[self.mode]}, threshold c = {format_number(self.threshold, 10)}"
        if self.value_threshold is not None:
            head += f", value threshold = {format_number(self.value_threshold, 10)}"
        columns = [("i", [str(i + 1) for i in range(len(self.input))])]
        columns.append(("g_i", [format_number(x, 10) for x in self.input]))
        if self.intermediate is not None:
            columns.append(("after norm", [format_number(x, 10) for x in self.intermediate]))
        columns.append(("clipped", [format_number(x, 10) for x in self.output]))
        widths = [max(len(name), *(len(v) for v in vals)) for name, vals in columns]
        lines = [head, ""]
        lines.append("  ".join(name.rjust(w) for (name, _), w in zip(columns, widths, strict=True)))
        lines.append("  ".join("-" * w for w in widths))
        for row in range(len(self.input)):
            lines.append(
                "  ".join(vals[row].rjust(w) for (_, vals), w in zip(columns, widths, strict=True))
            )
        lines.append("")
        lines.append(f"norm before  {format_number(self.norm_before, 10)}")
        scale = "-" if self.scale is None else format_number(self.scale, 10)
        lines.append(f"scale        {scale}")
        lines.append(f"norm after   {format_number(self.norm_after, 10)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- arithmetic


def l2_norm(vector: Sequence[float]) -> float:
    """``sqrt(sum of squares)``, the sum taken exactly with ``math.fsum``."""
    return math.sqrt(math.fsum(x * x for x in vector))


def angle_between(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    """(cosine, angle in degrees) between two vectors; (None, None) if one is zero.

    The angle uses Kahan's formula ``2 atan2(|u - v|, |u + v|)`` on the unit vectors,
    which stays accurate near 0 degrees, where ``acos`` of a cosine does not.
    """
    norm_a, norm_b = l2_norm(a), l2_norm(b)
    if norm_a == 0 or norm_b == 0:
        return None, None
    u = [x / norm_a for x in a]
    v = [y / norm_b for y in b]
    cosine = max(-1.0, min(1.0, math.fsum(x * y for x, y in zip(u, v, strict=True))))
    difference = l2_norm([x - y for x, y in zip(u, v, strict=True)])
    total = l2_norm([x + y for x, y in zip(u, v, strict=True)])
    return cosine, math.degrees(2.0 * math.atan2(difference, total))


def _clip_value(vector: Sequence[float], c: float) -> tuple[float, ...]:
    return tuple(min(max(x, -c), c) for x in vector)


def _norm_scale(norm: float, c: float) -> float:
    return c / norm if norm > c else 1.0


# Long vectors are shown as a window of this many components around the one in work.
_WINDOW = 9


def _window(n: int, centre: int | None) -> list[int | None]:
    """Indices to show of an ``n``-vector (None marks an elided run), at most ~_WINDOW wide."""
    if n <= _WINDOW + 2:
        return list(range(n))
    if centre is None:
        return [*range(_WINDOW - 2), None, n - 2, n - 1]
    half = _WINDOW // 2
    lo = max(0, min(centre - half, n - _WINDOW))
    shown: list[int | None] = list(range(lo, lo + _WINDOW))
    if lo > 0:
        shown = [None, *shown]
    if lo + _WINDOW < n:
        shown = [*shown, None]
    return shown


def _vector_tex(
    values: Sequence[float | None],
    *,
    centre: int | None = None,
    frame: str | None = None,
) -> str:
    """A vector in round brackets; a dot for a missing entry; ``centre`` framed in ``frame``."""
    cells = []
    for i in _window(len(values), centre):
        if i is None:
            cells.append(r"\dots")
            continue
        v = values[i]
        text = r"\cdot" if v is None else _tex(v)
        if frame is not None and i == centre:
            text = rf"\fcolorbox{{{frame}}}{{#FFFFFF}}{{${text}$}}"
        cells.append(text)
    return r"\left(" + ",\\ ".join(cells) + r"\right)"


def vector_latex(values: Sequence[float]) -> str:
    """A vector as LaTeX, in round brackets, long ones shortened with dots."""
    return _vector_tex(values)


def _start_step(vector: tuple[float, ...], mode: str, c: float, value_c: float | None) -> Step:
    g = _vector_tex(vector)
    if mode == "value":
        latex = rf"g = {g},\qquad c = {_tex(c)}"
        sentence = (
            f"We take each component in turn and force it into [-{format_number(c)}, "
            f"{format_number(c)}]."
        )
    elif mode == "norm":
        latex = rf"g = {g},\qquad c = {_tex(c)}"
        sentence = (
            f"First we measure the length (L2 norm) of g. If it is larger than "
            f"{format_number(c)}, we shrink the whole vector to that length."
        )
    else:
        latex = rf"g = {g},\qquad c_{{\text{{norm}}}} = {_tex(c)},\qquad c_{{\text{{value}}}} = {_tex(value_c)}"
        sentence = (
            "Two rules in a row: first the norm rule shrinks the whole vector, "
            "then the value rule clamps what is still too large."
        )
    return Step("Start", latex, sentence, {"c": c}, None, "start")


def _value_steps(vector: tuple[float, ...], c: float, *, src: str, dst: str) -> list[Step]:
    """One step per component: compared with -c and c, then replaced or kept."""
    steps = []
    n = len(vector)
    cs = _tex(c)
    for i, x in enumerate(vector):
        out = min(max(x, -c), c)
        sub = f"{src}_{{{i + 1}}}"
        res = f"{dst}_{{{i + 1}}}"
        xs, outs = _tex(x), _tex(out)
        if x > c:
            latex = rf"{sub} = {xs} > c = {cs} \;\Rightarrow\; {res} = {cs}"
            sentence = f"{format_number(x)} is above {format_number(c)}, so it is cut down to {format_number(c)}."
        elif x < -c:
            latex = rf"{sub} = {xs} < -c = {_tex(-c)} \;\Rightarrow\; {res} = {_tex(-c)}"
            sentence = f"{format_number(x)} is below {format_number(-c)}, so it is raised to {format_number(-c)}."
        else:
            latex = rf"-c = {_tex(-c)} \le {sub} = {xs} \le c = {cs} \;\Rightarrow\; {res} = {outs}"
            sentence = (
                f"{format_number(x)} already lies inside [{format_number(-c)}, "
                f"{format_number(c)}], so it stays as it is."
            )
        steps.append(
            Step(
                f"Component {i + 1} of {n}",
                latex,
                sentence,
                {"g_i": x, "c": c, "out": out},
                i,
                "compare",
            )
        )
    return steps


def _norm_steps(
    vector: tuple[float, ...], c: float, *, src: str, dst: str
) -> tuple[list[Step], float, float, tuple[float, ...]]:
    """Squares, sum, root, comparison, factor, scaled components, norm after.

    Returns the steps, the norm before, the factor and the scaled vector.
    """
    steps = []
    n = len(vector)
    squares = [x * x for x in vector]
    for i, (x, sq) in enumerate(zip(vector, squares, strict=True)):
        xs = _tex(x)
        base = f"({xs})" if x < 0 else xs
        steps.append(
            Step(
                f"Square component {i + 1} of {n}",
                rf"{src}_{{{i + 1}}}^2 = {base}^2 {_eq(sq)} {_tex(sq)}",
                f"{format_number(x)} squared is {format_number(sq)}."
                + (" Squaring removes the minus sign." if x < 0 else ""),
                {"g_i": x, "square": sq},
                i,
                "square",
            )
        )
    total = math.fsum(squares)
    terms = " + ".join(_tex(s) for s in squares) if n <= 8 else r"\dots"
    steps.append(
        Step(
            "Add the squares",
            rf"\sum_i {src}_i^2 = {terms} {_eq(total)} {_tex(total)}",
            f"Adding all {n} squares gives {format_number(total)}.",
            {"sum_of_squares": total},
            None,
            "sum",
        )
    )
    norm = math.sqrt(total)
    steps.append(
        Step(
            "Take the square root",
            rf"\lVert {src} \rVert = \sqrt{{{_tex(total)}}} {_eq(norm)} {_tex(norm)}",
            f"The square root of the sum is the length of the vector: {format_number(norm)}.",
            {"sum_of_squares": total, "norm": norm},
            None,
            "sqrt",
        )
    )
    clipped = norm > c
    if clipped:
        check_tex = rf"\lVert {src} \rVert = {_tex(norm)} > c = {_tex(c)}"
        check_sentence = (
            f"{format_number(norm)} is larger than {format_number(c)}, "
            "so the vector is too long and will be shrunk."
        )
    else:
        check_tex = rf"\lVert {src} \rVert = {_tex(norm)} \le c = {_tex(c)}"
        check_sentence = (
            f"{format_number(norm)} is not larger than {format_number(c)}, "
            "so the vector is short enough and nothing changes."
        )
    steps.append(
        Step("Compare with c", check_tex, check_sentence, {"norm": norm, "c": c}, None, "check")
    )
    scale = _norm_scale(norm, c)
    scaled = tuple(x * scale for x in vector) if clipped else tuple(vector)
    if clipped:
        steps.append(
            Step(
                "The shrink factor",
                rf"s = \frac{{c}}{{\lVert {src} \rVert}} = \frac{{{_tex(c)}}}{{{_tex(norm)}}} "
                rf"{_eq(scale)} {_tex(scale)}",
                f"Every component will be multiplied by the same factor, {format_number(scale)}. "
                "One shared factor is why the direction does not change.",
                {"c": c, "norm": norm, "scale": scale},
                None,
                "factor",
            )
        )
        for i, (x, out) in enumerate(zip(vector, scaled, strict=True)):
            steps.append(
                Step(
                    f"Scale component {i + 1} of {n}",
                    rf"{dst}_{{{i + 1}}} = s \cdot {src}_{{{i + 1}}} = {_tex(scale)} \times "
                    rf"{'(' + _tex(x) + ')' if x < 0 else _tex(x)} {_eq(out)} {_tex(out)}",
                    f"{format_number(x)} times {format_number(scale)} is {format_number(out)}.",
                    {"g_i": x, "scale": scale, "out": out},
                    i,
                    "scale",
                )
            )
        norm_after = l2_norm(scaled)
        steps.append(
            Step(
                "Check the new length",
                rf"\lVert {dst} \rVert = \sqrt{{\textstyle\sum_i {dst}_i^2}} {_eq(norm_after)} "
                rf"{_tex(norm_after)}",
                f"The shrunk vector has length {format_number(norm_after)}: exactly the "
                "threshold, up to the last digit a computer keeps.",
                {"norm_after": norm_after, "c": c},
                None,
                "norm_after",
            )
        )
    return steps, norm, scale, scaled


def _result_step(
    vector: tuple[float, ...], output: tuple[float, ...], mode: str, norm_before: float
) -> Step:
    symbol = "g''" if mode == "norm_value" else "g'"
    norm_after = l2_norm(output)
    changed = [i for i, (a, b) in enumerate(zip(vector, output, strict=True)) if a != b]
    lengths = f"The length went from {format_number(norm_before)} to {format_number(norm_after)}"
    if not changed:
        sentence = "Nothing needed clipping, so the gradient comes out unchanged."
    elif mode == "norm":
        sentence = f"{lengths}; every component shrank by the same factor."
    else:
        names = ", ".join(str(i + 1) for i in changed)
        sentence = f"{lengths}. Component{'s' if len(changed) > 1 else ''} {names} changed."
    return Step(
        "Result",
        rf"{symbol} = {_vector_tex(output)},\qquad \lVert {symbol} \rVert {_eq(norm_after)} "
        rf"{_tex(norm_after)}",
        sentence,
        {"norm_before": norm_before, "norm_after": norm_after},
        None,
        "result",
    )


def compute(
    vector: Sequence[float] | str,
    mode: str,
    threshold: float | str,
    *,
    value_threshold: float | str | None = None,
) -> WorkedResult:
    """Clip ``vector`` by ``mode`` (``value``, ``norm`` or ``norm_value``) with threshold ``c``.

    ``norm_value`` applies the norm rule with ``threshold`` first, then the value rule
    with ``value_threshold`` (the order of Keras 2.2 when both ``clipnorm`` and
    ``clipvalue`` were set). Exact float64 arithmetic: no epsilon is added to the norm.
    """
    if mode not in MODES:
        raise WorkedInputError(f"Unknown mode '{mode}': use one of {', '.join(MODES)}.")
    values = _as_vector(vector)
    c = parse_threshold(threshold)
    value_c = None
    if mode == "norm_value":
        if value_threshold is None:
            raise WorkedInputError("Mode norm_value needs a value_threshold as well.")
        value_c = parse_threshold(value_threshold)

    steps = [_start_step(values, mode, c, value_c)]
    norm_before = l2_norm(values)
    intermediate = None
    if mode == "value":
        steps += _value_steps(values, c, src="g", dst="g'")
        output = _clip_value(values, c)
        scale = None
    elif mode == "norm":
        norm_steps, norm_before, scale, output = _norm_steps(values, c, src="g", dst="g'")
        steps += norm_steps
    else:
        norm_steps, norm_before, scale, intermediate = _norm_steps(values, c, src="g", dst="g'")
        steps += norm_steps
        steps += _value_steps(intermediate, value_c, src="g'", dst="g''")
        output = _clip_value(intermediate, value_c)
    norm_after = l2_norm(output)
    steps.append(_result_step(values, output, mode, norm_before))
    cosine, angle = angle_between(values, output)
    return WorkedResult(
        input=values,
        mode=mode,
        threshold=c,
        norm_before=norm_before,
        scale=scale,
        output=output,
        norm_after=norm_after,
        steps=tuple(steps),
        cosine=cosine,
        angle_degrees=angle,
        value_threshold=value_c,
        intermediate=intermediate,
    )


@dataclass(frozen=True)
class StepProgress:
    """What a learner has worked out at one step, for drawing the vectors.

    ``source`` is the vector the step reads (``g``, or ``g'`` in the value stage of
    ``norm_value``); ``partial`` holds the numbers worked out so far (squares while
    squaring, clipped components later), None where not reached yet; ``index`` is
    the component in work (None for whole-vector steps).
    """

    source_name: str
    source: tuple[float, ...]
    partial_name: str | None
    partial: tuple[float | None, ...]
    partial_kind: str | None
    index: int | None


def progress_at(result: WorkedResult, step_index: int) -> StepProgress:
    """The state of the worked example after step ``step_index`` (clamped to the range)."""
    step_index = max(0, min(step_index, len(result.steps) - 1))
    current = result.steps[step_index]
    done = result.steps[: step_index + 1]
    source, source_name = result.input, "g"
    partial: list[float | None] = [None] * len(source)
    if current.kind == "result":
        name = "g''" if result.mode == "norm_value" else "g'"
        return StepProgress(source_name, source, name, result.output, "output", None)
    if result.mode == "norm_value" and any(s.kind == "compare" for s in done):
        # Second stage: the value rule reads the norm-clipped vector g'.
        source, source_name, name, kind, field_name = (
            result.intermediate,
            "g'",
            "g''",
            "output",
            "out",
        )
        wanted = ("compare",)
    elif result.mode == "value":
        name, kind, field_name, wanted = "g'", "output", "out", ("compare",)
    elif any(s.kind == "scale" for s in done):
        name, kind, field_name, wanted = "g'", "output", "out", ("scale",)
    elif any(s.kind == "square" for s in done):
        name, kind, field_name, wanted = "g_i^2", "square", "square", ("square",)
    else:
        name, kind, field_name, wanted = None, None, None, ()
    for s in done:
        if s.kind in wanted:
            partial[s.index] = s.values[field_name]
    return StepProgress(source_name, source, name, tuple(partial), kind, current.index)


def step_vectors_latex(result: WorkedResult, step_index: int, *, highlight_colour: str) -> str:
    """The vectors at ``step_index`` as LaTeX, the component in work framed in a colour.

    The first row is the vector the step reads; the second what has been worked out
    so far, with a dot for components not reached yet.
    """
    progress = progress_at(result, step_index)
    rows = [(progress.source_name, progress.source)]
    if progress.partial_name is not None:
        rows.append((progress.partial_name, progress.partial))
    body = r"\\".join(
        rf"{name} &= {_vector_tex(values, centre=progress.index, frame=highlight_colour)}"
        for name, values in rows
    )
    return r"\begin{aligned}" + body + r"\end{aligned}"


# --------------------------------------------------------------------------- the sources


@dataclass(frozen=True)
class SourceExample:
    """The tutorial's example, exactly as printed there (its norm numbers are rounded)."""

    vector: tuple[float, ...] = (2.0, -6.0, 8.0, -3.0, 5.0)
    value_threshold: float = 4.0
    value_output: tuple[float, ...] = (2.0, -4.0, 4.0, -3.0, 4.0)
    norm_threshold: float = 6.0
    norm_before: float = 11.75
    scale: float = 0.51
    norm_output: tuple[float, ...] = (1.02, -3.06, 4.08, -1.53, 2.55)


SOURCE_EXAMPLE = SourceExample()


@dataclass(frozen=True)
class RoundingRow:
    """One component: the source's printed value, the exact one, and their gap."""

    index: int
    source: float
    exact: float
    difference: float


@dataclass(frozen=True)
class RoundingNote:
    """Where the source's rounding of the norm example differs from exact arithmetic."""

    rows: tuple[RoundingRow, ...]
    source_scale: float
    exact_scale: float
    source_norm_after: float
    max_difference: float
    summary: str


def source_rounding_note(result: WorkedResult) -> RoundingNote | None:
    """The rounding note for the source's norm example; None for any other result.

    The source rounds the factor ``6 / sqrt(138) = 0.510754...`` to 0.51 and multiplies
    by the rounded factor, so its vector is off in the third decimal and has norm
    ``0.51 * sqrt(138) = 5.991`` instead of 6.
    """
    src = SOURCE_EXAMPLE
    if result.mode != "norm" or result.input != src.vector:
        return None
    if result.threshold != src.norm_threshold:
        return None
    rows = tuple(
        RoundingRow(i, printed, exact, printed - exact)
        for i, (printed, exact) in enumerate(zip(src.norm_output, result.output, strict=True))
    )
    max_difference = max(abs(r.difference) for r in rows)
    source_norm_after = l2_norm(src.norm_output)
    summary = (
        f"The source rounds the factor to {format_number(src.scale)} before multiplying. "
        f"The exact factor is 6/√138 ≈ {format_number(result.scale)}, so each of its "
        f"components is off in the third decimal (by up to {max_difference:.4f}), and its "
        f"vector has length {source_norm_after:.3f} instead of exactly 6."
    )
    return RoundingNote(
        rows=rows,
        source_scale=src.scale,
        exact_scale=result.scale,
        source_norm_after=source_norm_after,
        max_difference=max_difference,
        summary=summary,
    )


# --------------------------------------------------------------------------- PyTorch


def torch_reference(
    vector: Sequence[float],
    mode: str,
    threshold: float,
    *,
    value_threshold: float | None = None,
) -> tuple[float, ...]:
    """The same clipping done by PyTorch on a float64 gradient.

    ``norm`` uses ``torch.nn.utils.clip_grad_norm_``, ``value`` uses
    ``clip_grad_value_``, ``norm_value`` the first then the second. PyTorch
    multiplies by ``min(1, c / (||g|| + 1e-6))``: the 1e-6 guards against dividing
    by zero, so its norm-clipped vector is smaller than the exact one by a relative
    ``1e-6 / ||g||`` (a few 1e-7 for the source's example). Value clipping agrees
    exactly. Agreement is therefore "within rounding", not to the last bit.
    """
    if mode not in MODES:
        raise WorkedInputError(f"Unknown mode '{mode}': use one of {', '.join(MODES)}.")
    values = _as_vector(vector)
    c = parse_threshold(threshold)
    parameter = torch.nn.Parameter(torch.zeros(len(values), dtype=torch.float64))
    parameter.grad = torch.tensor(values, dtype=torch.float64)
    if mode in ("norm", "norm_value"):
        torch.nn.utils.clip_grad_norm_([parameter], max_norm=c)
    if mode == "value":
        torch.nn.utils.clip_grad_value_([parameter], clip_value=c)
    if mode == "norm_value":
        if value_threshold is None:
            raise WorkedInputError("Mode norm_value needs a value_threshold as well.")
        torch.nn.utils.clip_grad_value_([parameter], clip_value=parse_threshold(value_threshold))
    return tuple(float(x) for x in parameter.grad.tolist())


@dataclass(frozen=True)
class TorchCheck:
    """PyTorch's vector for a worked result and the largest gap to the exact one."""

    function: str
    output: tuple[float, ...]
    max_abs_difference: float


def torch_check(result: WorkedResult) -> TorchCheck:
    """Redo ``result`` with PyTorch, live, and measure the largest difference."""
    output = torch_reference(
        result.input, result.mode, result.threshold, value_threshold=result.value_threshold
    )
    function = {
        "value": "torch.nn.utils.clip_grad_value_",
        "norm": "torch.nn.utils.clip_grad_norm_",
        "norm_value": "torch.nn.utils.clip_grad_norm_ then clip_grad_value_",
    }[result.mode]
    difference = max(abs(a - b) for a, b in zip(output, result.output, strict=True))
    return TorchCheck(function, output, difference)


# --------------------------------------------------------------------------- global vs per tensor


@dataclass(frozen=True)
class TensorClip:
    """One tensor ("layer") of a gradient, before and after norm clipping."""

    name: str
    input: tuple[float, ...]
    norm_before: float
    scale: float
    output: tuple[float, ...]
    norm_after: float


@dataclass(frozen=True)
class ClipComparison:
    """Global-norm and per-tensor-norm clipping of the same two-layer gradient.

    Global (PyTorch ``clip_grad_norm_``, Keras 3 ``global_clipnorm``, Keras 2.2
    ``clipnorm``): one factor ``c / max(||g||, c)`` from the norm of all layers
    together. Per tensor (tf.keras 2.x and Keras 3 ``clipnorm``): each layer gets
    its own factor ``c / max(||g_layer||, c)``.
    """

    threshold: float
    global_norm_before: float
    global_scale: float
    global_layers: tuple[TensorClip, ...]
    global_output: tuple[float, ...]
    global_norm_after: float
    per_tensor_layers: tuple[TensorClip, ...]
    per_tensor_output: tuple[float, ...]
    per_tensor_norm_after: float
    per_tensor_angle_degrees: float | None
    max_difference: float


def compare_global_and_per_tensor(
    layer_a: Sequence[float], layer_b: Sequence[float], c: float
) -> ClipComparison:
    """Clip a gradient made of two layers by the global norm and by each layer's norm."""
    a = _as_vector(layer_a)
    b = _as_vector(layer_b)
    c = parse_threshold(c)
    whole = a + b
    global_norm = l2_norm(whole)
    global_scale = _norm_scale(global_norm, c)
    global_layers = []
    per_tensor_layers = []
    for name, layer in (("layer 1", a), ("layer 2", b)):
        norm = l2_norm(layer)
        scaled = tuple(x * global_scale for x in layer)
        global_layers.append(TensorClip(name, layer, norm, global_scale, scaled, l2_norm(scaled)))
        own_scale = _norm_scale(norm, c)
        own = tuple(x * own_scale for x in layer)
        per_tensor_layers.append(TensorClip(name, layer, norm, own_scale, own, l2_norm(own)))
    global_output = tuple(x for t in global_layers for x in t.output)
    per_tensor_output = tuple(x for t in per_tensor_layers for x in t.output)
    _, angle = angle_between(whole, per_tensor_output)
    return ClipComparison(
        threshold=c,
        global_norm_before=global_norm,
        global_scale=global_scale,
        global_layers=tuple(global_layers),
        global_output=global_output,
        global_norm_after=l2_norm(global_output),
        per_tensor_layers=tuple(per_tensor_layers),
        per_tensor_output=per_tensor_output,
        per_tensor_norm_after=l2_norm(per_tensor_output),
        per_tensor_angle_degrees=angle,
        max_difference=max(
            abs(x - y) for x, y in zip(global_output, per_tensor_output, strict=True)
        ),
    )


def torch_global_reference(
    layer_a: Sequence[float], layer_b: Sequence[float], c: float
) -> tuple[float, ...]:
    """PyTorch ``clip_grad_norm_`` on two float64 parameters: one global factor."""
    params = []
    for layer in (_as_vector(layer_a), _as_vector(layer_b)):
        parameter = torch.nn.Parameter(torch.zeros(len(layer), dtype=torch.float64))
        parameter.grad = torch.tensor(layer, dtype=torch.float64)
        params.append(parameter)
    torch.nn.utils.clip_grad_norm_(params, max_norm=parse_threshold(c))
    return tuple(float(x) for p in params for x in p.grad.tolist())


# --------------------------------------------------------------------------- try it yourself


def random_example(rng_seed: int) -> tuple[tuple[float, ...], str, float]:
    """A small exercise (vector, mode, threshold) where the clipping really bites.

    Whole-number components between -9 and 9 and a whole-number threshold; for
    ``value`` at least one component lies outside ``[-c, c]`` and one inside, for
    ``norm`` the norm exceeds ``c``.
    """
    rng = random.Random(rng_seed)
    mode = rng.choice(("value", "norm"))
    while True:
        length = rng.randint(3, 5)
        vector = tuple(
            float(rng.choice([k for k in range(-9, 10) if k != 0])) for _ in range(length)
        )
        if mode == "value":
            magnitudes = sorted({abs(x) for x in vector})
            if len(magnitudes) < 2:
                continue
            # c between the smallest and the largest magnitude: some clipped, some kept.
            candidates = [k for k in range(1, 9) if magnitudes[0] <= k < magnitudes[-1]]
            if candidates:
                return vector, mode, float(rng.choice(candidates))
        else:
            norm = l2_norm(vector)
            candidates = [k for k in range(1, 9) if k < norm - 0.5]
            if candidates:
                return vector, mode, float(rng.choice(candidates))


@dataclass(frozen=True)
class ComponentMiss:
    """A component of the learner's answer that is off by more than the tolerance."""

    index: int
    expected: float
    given: float


@dataclass(frozen=True)
class AnswerCheck:
    """The verdict on a typed answer: correct or not, why, and a hint for a miss."""

    correct: bool
    message: str
    misses: tuple[ComponentMiss, ...] = ()
    hint: str | None = None
    answer: tuple[float, ...] | None = None


def _close(given: float, expected: float, tolerance: float) -> bool:
    return abs(given - expected) <= tolerance * max(1.0, abs(expected))


def _all_close(given: Sequence[float], expected: Sequence[float], tolerance: float) -> bool:
    return len(given) == len(expected) and all(
        _close(a, b, tolerance) for a, b in zip(given, expected, strict=True)
    )


def _numbers(indices: Sequence[int]) -> str:
    ones = [str(i + 1) for i in indices]
    return ones[0] if len(ones) == 1 else ", ".join(ones[:-1]) + " and " + ones[-1]


def _hint(answer: tuple[float, ...], result: WorkedResult, tolerance: float) -> str:
    g, c = result.input, result.threshold
    if result.mode == "value":
        inside = [i for i, x in enumerate(g) if -c <= x <= c]
        outside = [i for i, x in enumerate(g) if not -c <= x <= c]
        if outside and _all_close(answer, tuple(x * c / result.norm_before for x in g), tolerance):
            return (
                "You scaled the whole vector, as clipping by norm would. Clipping by value "
                "does not scale: it clamps each component on its own."
            )
        moved = [i for i in inside if not _close(answer[i], g[i], tolerance)]
        if moved:
            return (
                f"You forgot that components inside [-c, c] stay as they are: "
                f"component {_numbers(moved)} should be left unchanged."
            )
        flipped = [i for i in outside if _close(answer[i], -result.output[i], tolerance)]
        if flipped:
            return (
                "Clipping keeps the sign: a component below -c becomes -c, one above c "
                f"becomes c (see component {_numbers(flipped)})."
            )
        kept = [i for i in outside if _close(answer[i], g[i], tolerance)]
        if kept:
            return (
                f"Component {_numbers(kept)} lies outside [-c, c]: replace it by the nearest "
                "edge, -c or c."
            )
        return "For each component: above c write c, below -c write -c, otherwise copy it."
    if result.mode == "norm":
        norm, scale = result.norm_before, result.scale
        if norm <= c:
            return (
                f"The length ‖g‖ = {format_number(norm, 4)} is not above c = "
                f"{format_number(c)}, so nothing changes: the answer is g itself."
            )
        if _all_close(answer, _clip_value(g, c), tolerance):
            return (
                "You clamped each component, as clipping by value would. Clipping by norm "
                "multiplies every component by the same factor c/‖g‖."
            )
        if _all_close(answer, g, tolerance):
            return (
                f"‖g‖ = {format_number(norm, 4)} is above c = {format_number(c)}, so the "
                "vector must shrink: multiply each component by c/‖g‖."
            )
        sum_of_squares = norm * norm
        wrong_factors = (
            (c / sum_of_squares, "You divided by the sum of squares; take its square root first."),
            (norm / c, "Your factor is upside down: use c/‖g‖, which is below 1."),
            (
                c / math.fsum(abs(x) for x in g),
                "You used the sum of absolute values; the norm here is the square root of "
                "the sum of squares.",
            ),
        )
        for factor, text in wrong_factors:
            if _all_close(answer, tuple(x * factor for x in g), tolerance):
                return text
        return (
            f"Work out ‖g‖ = √(sum of squares) = {format_number(norm, 4)}, then multiply "
            f"every component by c/‖g‖ ≈ {format_number(scale, 4)}."
        )
    if result.intermediate is not None and _all_close(answer, result.intermediate, tolerance):
        return (
            f"You did the norm step. Now clamp each component into "
            f"[-{format_number(result.value_threshold)}, {format_number(result.value_threshold)}]."
        )
    return "First scale the whole vector by c/‖g‖, then clamp each component into the value range."


def check_answer(
    expected_text: str, result: WorkedResult, tolerance: float = DEFAULT_TOLERANCE
) -> AnswerCheck:
    """Compare the clipped vector a learner typed (``expected_text``) with ``result``.

    A component counts as right when it is within ``tolerance`` (absolute, or
    relative for components larger than 1), so answers rounded to two decimals
    pass. A miss names the wrong components and gives one hint about the likely
    mistake.
    """
    try:
        answer = parse_vector(expected_text, min_len=1)
    except WorkedInputError as error:
        return AnswerCheck(False, f"I could not read your answer. {error}")
    n = len(result.output)
    if len(answer) != n:
        return AnswerCheck(
            False,
            f"Your answer has {len(answer)} number{'s' if len(answer) != 1 else ''}, but the "
            f"gradient has {n}. Clipping never adds or removes components.",
            answer=answer,
        )
    misses = tuple(
        ComponentMiss(i, expected, given)
        for i, (expected, given) in enumerate(zip(result.output, answer, strict=True))
        if not _close(given, expected, tolerance)
    )
    if not misses:
        return AnswerCheck(
            True,
            f"Correct (within rounding): {format_vector(result.output, 4)}.",
            answer=answer,
        )
    wrong = _numbers([m.index for m in misses])
    noun = "Component" if len(misses) == 1 else "Components"
    return AnswerCheck(
        False,
        f"Not quite: {noun.lower()} {wrong} {'is' if len(misses) == 1 else 'are'} off.",
        misses=misses,
        hint=_hint(answer, result, tolerance),
        answer=answer,
    )
