"""Unit tests for clipviz.lessons.worked: the source's examples number by number, parsing,
PyTorch agreement (hypothesis), global vs per-tensor norms, the exercise checker,
and the figures built from the results."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clipviz.figures import worked as figures
from clipviz.lessons import worked
from clipviz.lessons.worked import SOURCE_EXAMPLE, WorkedInputError, compute

G = SOURCE_EXAMPLE.vector
SQRT138 = math.sqrt(138)

# ----------------------------------------------------------------------------- the source's examples


def test_source_example_constants():
    assert G == (2.0, -6.0, 8.0, -3.0, 5.0)
    assert SOURCE_EXAMPLE.value_threshold == 4.0
    assert SOURCE_EXAMPLE.value_output == (2.0, -4.0, 4.0, -3.0, 4.0)
    assert SOURCE_EXAMPLE.norm_threshold == 6.0
    assert SOURCE_EXAMPLE.scale == 0.51
    assert SOURCE_EXAMPLE.norm_output == (1.02, -3.06, 4.08, -1.53, 2.55)


def test_value_example_output():
    result = compute(G, "value", 4)
    assert result.output == (2.0, -4.0, 4.0, -3.0, 4.0)
    assert result.output == SOURCE_EXAMPLE.value_output
    assert result.scale is None
    assert result.norm_before == SQRT138
    assert result.norm_after == pytest.approx(math.sqrt(4 + 16 + 16 + 9 + 16), abs=1e-15)
    assert result.changed_indices == (1, 2, 4)


def test_value_example_per_component_decisions():
    result = compute(G, "value", 4)
    compares = [s for s in result.steps if s.kind == "compare"]
    assert [s.index for s in compares] == [0, 1, 2, 3, 4]
    assert [s.values["g_i"] for s in compares] == list(G)
    assert [s.values["out"] for s in compares] == [2, -4, 4, -3, 4]
    assert "stays" in compares[0].sentence  # 2 inside [-4, 4]
    assert "raised to -4" in compares[1].sentence  # -6 below -4
    assert "cut down to 4" in compares[2].sentence  # 8 above 4
    assert "stays" in compares[3].sentence  # -3 inside
    assert "cut down to 4" in compares[4].sentence  # 5 above 4
    assert r"g_{2} = -6 < -c = -4" in compares[1].latex
    assert [s.kind for s in result.steps] == ["start"] + ["compare"] * 5 + ["result"]


def test_norm_example_every_step():
    result = compute(G, "norm", 6)
    kinds = [s.kind for s in result.steps]
    assert kinds == (
        ["start"]
        + ["square"] * 5
        + ["sum", "sqrt", "check", "factor"]
        + ["scale"] * 5
        + ["norm_after", "result"]
    )
    squares = [s for s in result.steps if s.kind == "square"]
    assert [s.values["square"] for s in squares] == [4, 36, 64, 9, 25]
    assert [s.index for s in squares] == [0, 1, 2, 3, 4]
    (sum_step,) = [s for s in result.steps if s.kind == "sum"]
    assert sum_step.values["sum_of_squares"] == 138
    assert "4 + 36 + 64 + 9 + 25 = 138" in sum_step.latex
    (sqrt_step,) = [s for s in result.steps if s.kind == "sqrt"]
    assert sqrt_step.values["norm"] == SQRT138
    assert r"\sqrt{138} \approx 11.7473" in sqrt_step.latex
    (check_step,) = [s for s in result.steps if s.kind == "check"]
    assert ">" in check_step.latex
    (factor_step,) = [s for s in result.steps if s.kind == "factor"]
    assert factor_step.values["scale"] == 6 / SQRT138
    assert factor_step.values["scale"] == pytest.approx(0.5107539184552492, rel=1e-15)
    scaled = [s for s in result.steps if s.kind == "scale"]
    assert [s.index for s in scaled] == [0, 1, 2, 3, 4]
    for step, x in zip(scaled, G, strict=True):
        assert step.values["out"] == x * (6 / SQRT138)
        assert step.values["out"] == pytest.approx(6 * x / SQRT138, rel=1e-15)
    (after_step,) = [s for s in result.steps if s.kind == "norm_after"]
    assert abs(after_step.values["norm_after"] - 6) < 1e-12


def test_norm_example_result_exact_not_rounded():
    result = compute(G, "norm", 6)
    assert result.norm_before == SQRT138
    assert result.scale == 6 / SQRT138
    assert abs(result.norm_after - 6) < 1e-12
    expected = (1.0215078369, -3.0645235107, 4.0860313476, -1.5322617554, 2.5537695923)
    for got, want in zip(result.output, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-10)
    # The source's 0.51-rounded numbers are off in the third decimal.
    for got, printed in zip(result.output, SOURCE_EXAMPLE.norm_output, strict=True):
        assert 1e-3 < abs(got - printed) < 7e-3
    assert result.cosine == pytest.approx(1.0, abs=1e-12)
    assert result.angle_degrees == pytest.approx(0.0, abs=1e-9)


def test_source_rounding_note():
    note = worked.source_rounding_note(compute(G, "norm", 6))
    assert note is not None
    assert note.source_scale == 0.51
    assert note.exact_scale == 6 / SQRT138
    assert [r.source for r in note.rows] == list(SOURCE_EXAMPLE.norm_output)
    assert note.max_difference == pytest.approx(8 * 6 / SQRT138 - 4.08, rel=1e-12)
    assert note.source_norm_after == pytest.approx(0.51 * SQRT138, rel=1e-12)
    assert "0.51" in note.summary and "0.510754" in note.summary and "5.991" in note.summary


@pytest.mark.parametrize(
    "result",
    [
        compute(G, "value", 4),
        compute(G, "norm", 5),
        compute((2, -6, 8, -3), "norm", 6),
        compute(G, "norm_value", 6, value_threshold=4),
    ],
)
def test_no_rounding_note_elsewhere(result):
    assert worked.source_rounding_note(result) is None


def test_norm_value_combined():
    result = compute(G, "norm_value", 6, value_threshold=4)
    assert result.intermediate == compute(G, "norm", 6).output
    assert result.output[2] == 4.0  # 4.086 clamped
    assert result.output[:2] == result.intermediate[:2]
    assert result.changed_by_value_stage == (2,)
    assert result.threshold == 6 and result.value_threshold == 4
    assert result.scale == 6 / SQRT138


def test_norm_below_threshold_is_unchanged():
    result = compute((3, 4), "norm", 5)
    assert result.output == (3.0, 4.0)
    assert result.scale == 1.0
    assert "factor" not in [s.kind for s in result.steps]
    assert "\\le c" in [s for s in result.steps if s.kind == "check"][0].latex


def test_as_dict_has_exactly_the_cli_fields():
    for result in (compute(G, "value", 4), compute(G, "norm", 6)):
        data = result.as_dict()
        assert set(data) == {
            "input",
            "mode",
            "threshold",
            "norm_before",
            "scale",
            "output",
            "norm_after",
        }
        assert data["input"] == [2.0, -6.0, 8.0, -3.0, 5.0]
        assert all(isinstance(x, float) for x in data["input"] + data["output"])
        json.dumps(data)
    assert compute(G, "value", 4).as_dict()["scale"] is None
    assert compute(G, "norm", 6).as_dict()["scale"] == 6 / SQRT138


def test_table_is_readable():
    text = compute(G, "norm", 6).table()
    assert "clip by norm" in text
    assert "1.021507837" in text and "11.74734012" in text and "0.5107539185" in text
    assert len(text.splitlines()) >= 5 + 4


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text",
    ["2,-6,8,-3,5", "2 -6 8 -3 5", "2; -6; 8; -3; 5", " 2,, -6 ;8  -3,5 ", "[2, -6, 8, -3, 5]"],
)
def test_parse_vector_separators(text):
    assert worked.parse_vector(text) == G


def test_parse_vector_typographic_minus_and_exponents():
    assert worked.parse_vector("\u22126, 1e2, 0.5") == (-6.0, 100.0, 0.5)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2, abc, 5", "'abc'"),
        ("2, 3x", "'3x'"),
        ("", "empty"),
        ("   ", "empty"),
        (",,;", "no numbers"),
        ("7", "One number"),
        (",".join(["1"] * 51), "51 numbers"),
        ("1, nan", "finite"),
        ("1, inf", "finite"),
        ("-inf, 2", "finite"),
        ("1e200, 2", "too extreme"),
        ("1e-200, 2", "too extreme"),
    ],
)
def test_parse_vector_rejects(text, fragment):
    with pytest.raises(WorkedInputError) as info:
        worked.parse_vector(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and len(message) < 200


def test_parse_vector_limits():
    assert len(worked.parse_vector(",".join(["1"] * 50))) == 50
    with pytest.raises(WorkedInputError):
        worked.parse_vector("1, 2, 3", max_len=2)
    assert worked.parse_vector("4", min_len=1) == (4.0,)


@pytest.mark.parametrize(("text", "value"), [("4", 4.0), (" 0.5 ", 0.5), (6, 6.0), (1e-3, 1e-3)])
def test_parse_threshold_accepts(text, value):
    assert worked.parse_threshold(text) == value


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("abc", "not a number"),
        ("", "empty"),
        ("nan", "finite"),
        ("inf", "finite"),
        (float("nan"), "finite"),
        ("0", "greater than 0"),
        (0, "greater than 0"),
        ("-1", "greater than 0"),
        (True, "number"),
        ("1e-310", "too extreme"),
        (1e300, "too extreme"),
    ],
)
def test_parse_threshold_rejects(text, fragment):
    with pytest.raises(WorkedInputError) as info:
        worked.parse_threshold(text)
    assert fragment in str(info.value)


def test_input_error_is_value_error():
    assert issubclass(WorkedInputError, ValueError)


def test_compute_rejects_bad_arguments():
    with pytest.raises(WorkedInputError, match="Unknown mode"):
        compute(G, "sideways", 4)
    with pytest.raises(WorkedInputError, match="value_threshold"):
        compute(G, "norm_value", 4)
    with pytest.raises(WorkedInputError):
        compute(G, "value", 0)
    with pytest.raises(WorkedInputError):
        compute((1.0, float("nan")), "value", 1)
    with pytest.raises(WorkedInputError, match="too extreme"):
        compute((1e-300, 1e-300), "norm", 1)
    with pytest.raises(WorkedInputError):
        worked.torch_reference(G, "sideways", 4)


# ----------------------------------------------------------------------------- PyTorch agreement

components = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False).filter(
    lambda x: x == 0 or abs(x) >= worked.MIN_ABS_COMPONENT
)
vectors = st.lists(components, min_size=1, max_size=20)
thresholds = st.floats(min_value=0.05, max_value=100.0)


def _torch_tolerance(c: float) -> float:
    # PyTorch multiplies by c / (norm + 1e-6): a relative gap of at most 1e-6 / c.
    return 1e-6 / c + 1e-12


@settings(max_examples=60, deadline=None)
@given(vector=vectors, c=thresholds)
def test_value_matches_torch_and_stays_in_range(vector, c):
    result = compute(vector, "value", c)
    assert result.output == worked.torch_reference(vector, "value", c)
    for x, out in zip(vector, result.output, strict=True):
        assert -c <= out <= c
        if -c <= x <= c:
            assert out == x


@settings(max_examples=60, deadline=None)
@given(vector=vectors, c=thresholds)
def test_norm_matches_torch_and_keeps_direction(vector, c):
    result = compute(vector, "norm", c)
    reference = worked.torch_reference(vector, "norm", c)
    tolerance = _torch_tolerance(c)
    for ours, theirs in zip(result.output, reference, strict=True):
        assert math.isclose(ours, theirs, rel_tol=tolerance, abs_tol=1e-12)
    assert result.norm_after == pytest.approx(min(result.norm_before, c), rel=1e-12)
    if result.norm_before > 0:
        assert result.cosine == pytest.approx(1.0, abs=1e-12)
        assert result.angle_degrees == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(vector=vectors, c=thresholds, value_c=thresholds)
def test_norm_value_matches_torch(vector, c, value_c):
    result = compute(vector, "norm_value", c, value_threshold=value_c)
    reference = worked.torch_reference(vector, "norm_value", c, value_threshold=value_c)
    tolerance = _torch_tolerance(c)
    for ours, theirs in zip(result.output, reference, strict=True):
        assert math.isclose(ours, theirs, rel_tol=tolerance, abs_tol=1e-12)
        assert -value_c <= ours <= value_c


def test_torch_check_reports_the_gap():
    value_check = worked.torch_check(compute(G, "value", 4))
    assert value_check.output == (2.0, -4.0, 4.0, -3.0, 4.0)
    assert value_check.max_abs_difference == 0.0
    assert "clip_grad_value_" in value_check.function
    norm_check = worked.torch_check(compute(G, "norm", 6))
    assert "clip_grad_norm_" in norm_check.function
    assert 0 < norm_check.max_abs_difference < 1e-6


# ----------------------------------------------------------------------------- global vs per tensor


def test_global_and_per_tensor_numerics():
    comparison = worked.compare_global_and_per_tensor(G[:2], G[2:], 6)
    assert comparison.global_norm_before == SQRT138
    assert comparison.global_scale == 6 / SQRT138
    assert comparison.global_norm_after == pytest.approx(6, abs=1e-12)
    assert comparison.global_output == compute(G, "norm", 6).output
    layer_a, layer_b = comparison.per_tensor_layers
    assert layer_a.norm_before == math.sqrt(40)
    assert layer_b.norm_before == math.sqrt(98)
    assert layer_a.scale == 6 / math.sqrt(40)
    assert layer_b.scale == 6 / math.sqrt(98)
    assert layer_a.norm_after == pytest.approx(6, abs=1e-12)
    assert layer_b.norm_after == pytest.approx(6, abs=1e-12)
    assert comparison.per_tensor_norm_after == pytest.approx(math.sqrt(72), abs=1e-12)
    assert comparison.per_tensor_angle_degrees > 1
    assert all(t.scale == comparison.global_scale for t in comparison.global_layers)
    torch_global = worked.torch_global_reference(G[:2], G[2:], 6)
    for ours, theirs in zip(comparison.global_output, torch_global, strict=True):
        assert math.isclose(ours, theirs, rel_tol=1e-6)


def test_per_tensor_leaves_a_short_layer_alone():
    comparison = worked.compare_global_and_per_tensor((1, 1), (30, 40), 6)
    short, long = comparison.per_tensor_layers
    assert short.scale == 1.0 and short.output == (1.0, 1.0)
    assert long.scale == 6 / 50 and long.output == pytest.approx((3.6, 4.8), abs=1e-12)
    # Globally, the short layer shrinks too.
    assert comparison.global_layers[0].output[0] < 1.0


def test_per_tensor_and_global_agree_when_nothing_is_clipped():
    comparison = worked.compare_global_and_per_tensor((1,), (1,), 6)
    assert comparison.max_difference == 0
    assert comparison.global_scale == 1.0


# ----------------------------------------------------------------------------- try it yourself


def test_random_example_is_deterministic_and_bites():
    assert worked.random_example(3) == worked.random_example(3)
    modes = set()
    for seed in range(200):
        vector, mode, c = worked.random_example(seed)
        modes.add(mode)
        assert 3 <= len(vector) <= 5 and c > 0
        if mode == "value":
            assert any(abs(x) > c for x in vector)
            assert any(abs(x) <= c for x in vector)
        else:
            assert worked.l2_norm(vector) > c
    assert modes == {"value", "norm"}


def test_check_answer_correct_within_rounding():
    norm = compute(G, "norm", 6)
    assert worked.check_answer("1.02, -3.06, 4.09, -1.53, 2.55", norm).correct
    assert worked.check_answer("1.0215, -3.0645, 4.0860, -1.5323, 2.5538", norm).correct
    check = worked.check_answer("2 -4 4 -3 4", compute(G, "value", 4))
    assert check.correct and "Correct" in check.message


def test_check_answer_wrong_length_and_garbage():
    value = compute(G, "value", 4)
    check = worked.check_answer("2, -4, 4", value)
    assert not check.correct and "3 numbers" in check.message and "5" in check.message
    check = worked.check_answer("two, four", value)
    assert not check.correct and "'two'" in check.message
    assert not worked.check_answer("", value).correct


def test_check_answer_value_hints():
    value = compute(G, "value", 4)
    scaled = ", ".join(f"{x * 4 / SQRT138:.3f}" for x in G)
    check = worked.check_answer(scaled, value)
    assert not check.correct and "scaled" in check.hint and "clamps" in check.hint
    check = worked.check_answer("4, -4, 4, -4, 4", value)
    assert "inside [-c, c] stay" in check.hint and "1 and 4" in check.hint
    assert [m.index for m in check.misses] == [0, 3]
    check = worked.check_answer("2, 4, 4, -3, 4", value)
    assert "sign" in check.hint
    assert check.misses == (worked.ComponentMiss(1, -4.0, 4.0),)
    check = worked.check_answer("2, -6, 4, -3, 5", value)
    assert "outside" in check.hint and "2 and 5" in check.hint


def test_check_answer_norm_hints():
    norm = compute(G, "norm", 6)
    assert "clamped" in worked.check_answer("2, -6, 6, -3, 5", norm).hint
    assert "shrink" in worked.check_answer("2, -6, 8, -3, 5", norm).hint
    over_sum = ", ".join(f"{x * 6 / 138:.4f}" for x in G)
    assert "square root" in worked.check_answer(over_sum, norm).hint
    inverted = ", ".join(f"{x * SQRT138 / 6:.4f}" for x in G)
    assert "upside down" in worked.check_answer(inverted, norm).hint
    check = worked.check_answer("1, -3, 4, -1.5, 2.5", norm)
    assert not check.correct and "0.5108" in check.hint
    short = compute((1, 1), "norm", 6)
    assert "nothing changes" in worked.check_answer("0.5, 0.5", short).hint


def test_check_answer_norm_value_hint():
    both = compute(G, "norm_value", 6, value_threshold=4)
    intermediate = ", ".join(f"{x:.4f}" for x in both.intermediate)
    assert "norm step" in worked.check_answer(intermediate, both).hint


# ----------------------------------------------------------------------------- presentation helpers


def test_step_vectors_latex_highlights_the_component_in_work():
    norm = compute(G, "norm", 6)
    latex = worked.step_vectors_latex(norm, 3, highlight_colour="#E69F00")
    assert r"\fcolorbox{#E69F00}{#FFFFFF}{$8$}" in latex
    assert r"\fcolorbox{#E69F00}{#FFFFFF}{$64$}" in latex
    assert r"g_i^2" in latex and r"\cdot" in latex
    last = worked.step_vectors_latex(norm, len(norm.steps) - 1, highlight_colour="#E69F00")
    assert "fcolorbox" not in last and "1.02151" in last


def test_progress_at_tracks_partial_results():
    value = compute(G, "value", 4)
    progress = worked.progress_at(value, 3)
    assert progress.partial == (2.0, -4.0, 4.0, None, None)
    assert progress.index == 2
    both = compute(G, "norm_value", 6, value_threshold=4)
    second_stage = [i for i, s in enumerate(both.steps) if s.kind == "compare"][2]
    progress = worked.progress_at(both, second_stage)
    assert progress.source_name == "g'" and progress.partial[2] == 4.0
    assert worked.progress_at(value, 99).partial == value.output


def test_long_vectors_are_shortened_in_latex():
    long_result = compute(tuple(range(1, 41)), "norm", 6)
    latex = worked.step_vectors_latex(long_result, 30, highlight_colour="#E69F00")
    assert r"\dots" in latex and "fcolorbox" in latex
    assert latex.count(",") < 30


@pytest.mark.parametrize(
    ("x", "text"), [(4.0, "4"), (-6.0, "-6"), (0.5107539184552492, "0.510754"), (-0.0, "0")]
)
def test_format_number(x, text):
    assert worked.format_number(x) == text


def test_step_figure_marks_the_step():
    value = compute(G, "value", 4)
    fig = figures.step_figure(value, 3)
    names = [trace.name for trace in fig.data]
    assert names == ["g (before)", "after clipping"]
    assert len(fig.layout.shapes) == 3  # the frame and the lines at -c and c
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def test_geometry_figure():
    by_value = compute((8, 3), "value", 4)
    by_norm = compute((8, 3), "norm", 4)
    fig = figures.geometry_figure(by_value, by_norm)
    names = [trace.name for trace in fig.data if trace.showlegend is not False]
    assert "original g" in names
    assert any(name.startswith("clipped by value: turned 16.3°") for name in names)
    assert any(name.startswith("clipped by norm: turned 0.0°") for name in names)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio == 1
    assert "g₁" in fig.layout.xaxis.title.text and "g₂" in fig.layout.yaxis.title.text
    assert any("16.3°" in a.text for a in fig.layout.annotations)


def test_comparison_figure():
    comparison = worked.compare_global_and_per_tensor(G[:2], G[2:], 6)
    fig = figures.comparison_figure(comparison)
    assert [trace.name for trace in fig.data] == [
        "original g",
        "global norm (one factor)",
        "per tensor (a factor per layer)",
    ]
    assert [a.text for a in fig.layout.annotations] == ["layer 1", "layer 2"]
