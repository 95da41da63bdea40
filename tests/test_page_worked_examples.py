"""AppTest of pages/worked_examples.py: stepping, custom vectors, bad input, the exercise."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clipviz.lessons import worked

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "worked_examples.py")
SOURCE_START_LATEX = r"g = \left(2,\ -6,\ 8,\ -3,\ 5\right)"


def _app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.run()
    assert not at.exception
    return at


def _latex(at: AppTest) -> str:
    return "\n".join(element.value for element in at.latex)


def _markdown(at: AppTest) -> str:
    return "\n".join(element.value for element in at.markdown)


def _progress_texts(at: AppTest) -> list[str]:
    """The value and norm steppers' progress (the adaptive rules' steppers come after)."""
    return [element.proto.text for element in at.get("progress")][:2]


def _table(at: AppTest, column: str):
    """The shown table that has ``column`` (tables without selection carry no key)."""
    tables = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(tables) == 1, column
    return tables[0]


def _click(at: AppTest, key: str, times: int = 1) -> None:
    for _ in range(times):
        at.button(key=key).click().run()
        assert not at.exception


def _type(at: AppTest, key: str, text: str) -> None:
    at.text_input(key=key).input(text).run()
    assert not at.exception


def test_page_opens_on_the_source_example():
    at = _app()
    assert [tab.label for tab in at.tabs][:2] == ["Clip by value", "Clip by norm"]
    assert _progress_texts(at) == ["Step 1 of 7: Start", "Step 1 of 17: Start"]
    assert SOURCE_START_LATEX + r",\qquad c = 4" in _latex(at)
    assert SOURCE_START_LATEX + r",\qquad c = 6" in _latex(at)
    assert at.button(key="worked_value_back").disabled
    assert not at.error


def test_stepping_the_norm_example_reaches_the_exact_result_and_the_rounding_note():
    at = _app()
    _click(at, "worked_norm_next")
    assert _progress_texts(at)[1] == "Step 2 of 17: Square component 1 of 5"
    assert "g_{1}^2 = 2^2 = 4" in _latex(at)
    _click(at, "worked_norm_next", 5)
    assert "4 + 36 + 64 + 9 + 25 = 138" in _latex(at)
    _click(at, "worked_norm_next")
    assert r"\sqrt{138} \approx 11.7473" in _latex(at)
    _click(at, "worked_norm_next", 2)
    assert r"\approx 0.510754" in _latex(at)
    _click(at, "worked_norm_next", 7)
    assert _progress_texts(at)[1] == "Step 17 of 17: Result"
    assert at.button(key="worked_norm_next").disabled
    shown = [s.value for s in at.success]
    assert "Result: g′ = [1.02151, -3.06452, 4.08603, -1.53226, 2.55377]" in shown
    assert r"g' = \left(1.02151,\ -3.06452,\ 4.08603,\ -1.53226,\ 2.55377\right)" in _latex(at)
    note = " ".join(i.value for i in at.info)
    assert "0.51" in note and "0.510754" in note and "5.991" in note
    table = _table(at, "source (factor 0.51)")
    assert list(table["source (factor 0.51)"]) == [1.02, -3.06, 4.08, -1.53, 2.55]
    assert table["exact"][2] == pytest.approx(4.086031347641994, abs=1e-12)
    # The value example was not moved by the norm buttons.
    assert _progress_texts(at)[0] == "Step 1 of 7: Start"


def test_stepping_the_value_example_and_back():
    at = _app()
    _click(at, "worked_value_next", 2)
    assert _progress_texts(at)[0] == "Step 3 of 7: Component 2 of 5"
    assert r"g_{2} = -6 < -c = -4 \;\Rightarrow\; g'_{2} = -4" in _latex(at)
    assert "-6 is below -4, so it is raised to -4." in _markdown(at)
    _click(at, "worked_value_back")
    assert _progress_texts(at)[0] == "Step 2 of 7: Component 1 of 5"
    assert "2 already lies inside [-4, 4], so it stays as it is." in _markdown(at)
    _click(at, "worked_value_next", 5)
    assert _progress_texts(at)[0] == "Step 7 of 7: Result"
    assert "Result: g′ = [2, -4, 4, -3, 4]" in [s.value for s in at.success]
    assert r"g' = \left(2,\ -4,\ 4,\ -3,\ 4\right)" in _latex(at)
    _click(at, "worked_value_reset")
    assert _progress_texts(at)[0] == "Step 1 of 7: Start"
    assert not at.success


def test_a_new_vector_restarts_the_steps():
    at = _app()
    _click(at, "worked_norm_next", 3)
    _type(at, "worked_vector", "1; 2 3,, -4")
    assert not at.error
    # ||g|| = sqrt(30) is below the norm threshold 6: no factor, no scaling steps.
    assert _progress_texts(at)[1] == "Step 1 of 9: Start"
    assert r"g = \left(1,\ 2,\ 3,\ -4\right)" in _latex(at)
    _click(at, "worked_norm_next", 8)
    assert "Result: g′ = [1, 2, 3, -4]" in [s.value for s in at.success]
    assert "Nothing needed clipping" in _markdown(at)


@pytest.mark.parametrize(
    ("vector_text", "vector", "value_c", "norm_c"),
    [
        ("1; 2 3,, -4", (1.0, 2.0, 3.0, -4.0), 2.5, 3.0),
        ("0.3 -0.7 12 5e-3 -40", (0.3, -0.7, 12.0, 5e-3, -40.0), 0.5, 1.0),
    ],
)
def test_custom_vectors_give_torchs_results(vector_text, vector, value_c, norm_c):
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.session_state["worked_vector"] = vector_text
    at.session_state["worked_value_c"] = str(value_c)
    at.session_state["worked_norm_c"] = str(norm_c)
    at.session_state["worked_value_step"] = 999  # clamped to the last step
    at.session_state["worked_norm_step"] = 999
    at.run()
    assert not at.exception and not at.error
    assert [text.split(":")[1] for text in _progress_texts(at)] == [" Result", " Result"]
    by_value = worked.torch_reference(vector, "value", value_c)
    by_norm = worked.torch_reference(vector, "norm", norm_c)
    shown = [s.value for s in at.success]
    assert shown[0] == f"Result: g′ = {worked.format_vector(by_value)}"
    printed = [float(x) for x in shown[1].split("[")[1].strip("]").split(",")]
    assert printed == pytest.approx(by_norm, rel=1e-5)
    # The live PyTorch check is on the page as well.
    markdown = _markdown(at)
    assert f"gives {worked.format_vector(by_value)}" in markdown
    assert "0 (identical)" in markdown
    _click(at, "worked_norm_back")
    assert _progress_texts(at)[1].startswith("Step ") and "Result" not in _progress_texts(at)[1]


BAD_INPUTS = [
    ("worked_vector", "2, abc, 5", "'abc'"),
    ("worked_vector", "", "empty"),
    ("worked_vector", "7", "One number"),
    ("worked_vector", ",".join(["1"] * 51), "51 numbers"),
    ("worked_vector", "1, nan, 2", "finite"),
    ("worked_vector", "1, inf", "finite"),
    ("worked_value_c", "0", "greater than 0"),
    ("worked_value_c", "abc", "not a number"),
    ("worked_norm_c", "-1", "greater than 0"),
    ("worked_norm_c", "nan", "finite"),
    ("worked_norm_c", "", "empty"),
]


@pytest.mark.parametrize(("key", "text", "fragment"), BAD_INPUTS)
def test_bad_input_shows_a_message_and_keeps_the_last_good_example(key, text, fragment):
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.session_state["worked_vector"] = "3, -9, 1"
    at.session_state["worked_value_step"] = 2
    at.run()
    assert _progress_texts(at)[0] == "Step 3 of 5: Component 2 of 3"
    _type(at, key, text)
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert fragment in errors
    assert "last good value" in errors
    # The last good example is still on screen, at the same step.
    assert r"g = \left(3,\ -9,\ 1\right)" in _latex(at)
    assert _progress_texts(at)[0] == "Step 3 of 5: Component 2 of 3"
    # Fixing the field clears the message.
    _type(at, key, {"worked_vector": "3, -9, 1", "worked_value_c": "4", "worked_norm_c": "6"}[key])
    assert not at.error


def test_restore_button_brings_back_the_source_example():
    at = _app()
    _type(at, "worked_vector", "1, 2")
    _type(at, "worked_norm_c", "1")
    _click(at, "worked_restore")
    assert at.text_input(key="worked_vector").value == "2, -6, 8, -3, 5"
    assert at.text_input(key="worked_norm_c").value == "6"
    assert SOURCE_START_LATEX + r",\qquad c = 6" in _latex(at)


def test_geometry_states_the_angles():
    at = _app()
    assert "Clipping by value turned the arrow by 16.3°, clipping by norm by 0.0°" in _markdown(at)
    at.slider(key="worked_geo_g1").set_value(2.0).run()
    at.slider(key="worked_geo_g2").set_value(-9.0).run()
    at.slider(key="worked_geo_c").set_value(3.0).run()
    assert not at.exception
    angle = worked.compute((2.0, -9.0), "value", 3.0).angle_degrees
    assert f"turned the arrow by {angle:.1f}°, clipping by norm by 0.0°" in _markdown(at)
    at.slider(key="worked_geo_g1").set_value(0.0).run()
    at.slider(key="worked_geo_g2").set_value(0.0).run()
    assert not at.exception
    assert "zero gradient has no direction" in _markdown(at)


def test_combined_and_per_tensor_sections():
    at = _app()
    combined = _table(at, "after value (c = 4)")
    assert list(combined["after value (c = 4)"])[2] == 4.0
    assert list(combined["after norm (c = 6)"])[2] == pytest.approx(4.086031347641994)
    markdown = _markdown(at)
    assert "The value step still cut component 3" in markdown
    assert "`clip_grad_norm_`" in markdown and "`global_clipnorm`" in markdown
    assert "`clipnorm`" in markdown
    assert "layer 1 has length 6.3246 and gets factor 0.94868" in markdown
    assert "here 8.4853" in markdown
    at.slider(key="worked_split").set_value(3).run()
    assert not at.exception
    assert "layer 1 has length 10.198 " in _markdown(at)
    # A shorter vector narrows the split slider without an error.
    _type(at, "worked_vector", "1, 2, 3")
    assert at.slider(key="worked_split").max == 2
    # A two-component gradient has only one way to split: no slider, no error.
    _type(at, "worked_vector", "3, 4")
    assert not at.exception
    assert "Layer 1 holds the first component" in " ".join(c.value for c in at.caption)


def test_try_it_yourself_correct_wrong_and_new():
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.session_state["worked_try_seed"] = 7
    at.run()
    vector, mode, c = worked.random_example(7)
    result = worked.compute(vector, mode, c)
    assert f"**by {mode}**" in _markdown(at)
    _type(at, "worked_try_answer", ", ".join(f"{x:.2f}" for x in result.output))
    _click(at, "worked_try_check")
    assert any("Correct" in s.value for s in at.success)

    _type(at, "worked_try_answer", ", ".join(f"{x:.2f}" for x in vector))
    assert not any("Correct" in s.value for s in at.success)  # edited: not checked yet
    _click(at, "worked_try_check")
    assert any("Not quite" in e.value for e in at.error)
    assert any("Hint" in i.value for i in at.info)
    assert "you wrote" in " ".join(c.value for c in at.caption)

    _type(at, "worked_try_answer", "1, 2")
    _click(at, "worked_try_check")
    assert any("Clipping never adds or removes components" in e.value for e in at.error)

    _click(at, "worked_try_new")
    assert at.text_input(key="worked_try_answer").value == ""
    assert not at.error


@pytest.mark.parametrize(
    ("vector_text", "value_c", "norm_c", "error"),
    [
        ("1e150, -1e150", "4", "6", None),
        ("0, 0", "4", "6", None),
        ("0, 0, 0", "1e-150", "1e150", None),
        (",".join(str(i * (-1) ** i) for i in range(50)), "3", "10", None),
        ("5 5", "5", "7.0710678118654755", None),
        ("\u22123, 4", "4", "5", None),
        ("[1, 2]", "0.1", "0.1", None),
        ("1e-300, 1e-300", "4", "6", "too extreme"),
        ("1, 2, 3", "1e309", "2", "finite"),
    ],
)
def test_extreme_inputs_never_crash(vector_text, value_c, norm_c, error):
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.session_state["worked_vector"] = vector_text
    at.session_state["worked_value_c"] = value_c
    at.session_state["worked_norm_c"] = norm_c
    at.session_state["worked_value_step"] = 3
    at.session_state["worked_norm_step"] = 999
    at.run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    if error is None:
        assert not errors
    else:
        assert error in errors


def test_keras_3_refuses_two_clipping_arguments_as_the_page_says():
    """Checked against Keras itself (a dev requirement), not against our words."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    pairs = [{"clipnorm": 1.0, "clipvalue": 1.0}, {"clipnorm": 1.0, "global_clipnorm": 1.0}]
    for pair in pairs:
        with pytest.raises(ValueError, match="Only one of"):
            keras.optimizers.SGD(0.1, **pair)
    keras.optimizers.SGD(0.1, global_clipnorm=1.0)  # one alone is fine
    markdown = _markdown(_app())
    assert "accept only one of `clipnorm`, `clipvalue` and `global_clipnorm`" in markdown
