"""AppTest for the /cliff page: it renders, its numbers follow the widgets, bad input is caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clipviz.lessons import cliff

# AppTest resolves relative paths against this file, not the working directory.
PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "cliff.py")


@pytest.fixture
def at() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def test_page_renders_charts_formulas_and_default_numbers(at: AppTest) -> None:
    assert len(at.get("plotly_chart")) >= 3  # map, per-step history, threshold sweep (+3-D)
    assert len(at.latex) >= 2
    unclipped, clipped = cliff.compare()
    shown = metrics(at)
    assert shown["Largest step, no clipping"] == f"{unclipped.largest_step:.3g}"
    assert shown["Largest step, clipped"] == f"{clipped.largest_step:.3g}" == "0.1"
    assert shown["Steps clipped"] == f"{clipped.clipped_count} of {clipped.steps}"
    assert shown["Final loss, no clipping"] == f"{unclipped.final_loss:.3g}"
    assert shown["Final loss, clipped"] == f"{clipped.final_loss:.3g}"
    summary = " ".join(cliff.summary(unclipped, clipped))
    assert [i.value for i in at.info] == [summary]
    assert not at.error


def test_the_wall_numbers_are_the_librarys(at: AppTest) -> None:
    """Two states for any w > 4; the wall (tipping point through x_0 = 0.5) from 4.2553."""
    words = " ".join(m.value for m in at.markdown) + " ".join(x.value for x in at.latex)
    assert f"{cliff.WALL_MIN_W:.4f}" == "4.2553" and "4.2553" in words
    assert "For any $w > 4$ there is a band of biases" in words
    assert "4.3" not in words and "4.26" not in words


def test_every_widget_has_a_key(at: AppTest) -> None:
    for key in ("cliff_w0", "cliff_b0", "cliff_T", "cliff_steps"):
        assert at.slider(key=key) is not None
    assert at.select_slider(key="cliff_lr").value == cliff.DEFAULT_LR
    assert at.number_input(key="cliff_threshold").value == cliff.DEFAULT_THRESHOLD


def test_changing_T_changes_the_numbers(at: AppTest) -> None:
    before = metrics(at)
    at.slider(key="cliff_T").set_value(20).run()
    assert not at.exception
    after = metrics(at)
    assert after != before
    unclipped, clipped = cliff.compare(T=20)
    assert after["Largest step, no clipping"] == f"{unclipped.largest_step:.3g}"
    assert (
        after["Wall's steepest gradient"]
        == f"{cliff.wall_steepness(cliff.DEFAULT_START[0], 20):.3g}"
    )


def test_changing_the_start_changes_the_numbers(at: AppTest) -> None:
    before = metrics(at)
    at.slider(key="cliff_w0").set_value(5.5)
    at.slider(key="cliff_b0").set_value(-3.5).run()
    assert not at.exception
    after = metrics(at)
    assert after != before
    unclipped, _ = cliff.compare(start=(5.5, -3.5))
    assert after["Final loss, no clipping"] == f"{unclipped.final_loss:.3g}"


def test_learning_rate_and_steps_follow_the_widgets(at: AppTest) -> None:
    at.select_slider(key="cliff_lr").set_value(0.2)
    at.slider(key="cliff_steps").set_value(40).run()
    assert not at.exception
    _, clipped = cliff.compare(lr=0.2, steps=40)
    assert metrics(at)["Steps clipped"] == f"{clipped.clipped_count} of 40"


def test_zero_threshold_shows_a_message_not_a_traceback(at: AppTest) -> None:
    at.number_input(key="cliff_threshold").set_value(0.0).run()
    assert not at.exception
    assert len(at.error) == 1 and "threshold" in at.error[0].value
    assert not at.get("plotly_chart")
    # Fixing the value brings the page back.
    at.number_input(key="cliff_threshold").set_value(0.5).run()
    assert not at.exception and not at.error
    assert at.get("plotly_chart")


def test_3d_view_is_opt_in(at: AppTest) -> None:
    charts = len(at.get("plotly_chart"))
    at.toggle(key="cliff_show_3d").set_value(True).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == charts + 1


def test_key_takeaways_has_at_most_three_bullets(at: AppTest) -> None:
    takeaways = [e for e in at.expander if e.label == "Key takeaways"]
    assert len(takeaways) == 1
    text = " ".join(m.value for m in takeaways[0].markdown)
    assert 1 <= text.count("\n- ") + text.startswith("- ") <= 3
