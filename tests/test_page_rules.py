"""AppTest for the adaptive rules on /worked_examples and /stability_map.

The numbers on the pages are the lesson's (``clipviz.lessons.adaptive``, which
tests/test_adaptive_worked.py checks against timm, zclip and NumPy); these
tests check that the pages show them, step through them, keep the last good
example on a bad input, and link each map cell to its exact configuration.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from clipviz.engine import sweep
from clipviz.engine.labstate import LabState
from clipviz.lessons import adaptive

PAGES = Path(__file__).resolve().parents[1] / "pages"


def ok(app: AppTest) -> AppTest:
    assert not app.exception, [e.value for e in app.exception]
    return app


def texts(app: AppTest) -> str:
    return " ".join(m.value for m in app.markdown)


# ---- worked examples ----------------------------------------------------------------------


@pytest.fixture
def worked() -> AppTest:
    app = AppTest.from_file(str(PAGES / "worked_examples.py"), default_timeout=120)
    return ok(app.run())


def test_agc_steps_through_each_unit_with_the_lessons_numbers(worked: AppTest) -> None:
    assert not worked.error
    example = adaptive.agc_worked(
        adaptive.parse_weights(adaptive.AGC_EXAMPLE_WEIGHTS),
        adaptive.parse_gradient(adaptive.AGC_EXAMPLE_GRAD),
    )
    for _ in range(2):
        worked.button(key="worked_agc_next").click().run()
    ok(worked)
    assert example.steps[2].sentence in texts(worked)  # unit 2, clipped 931-fold
    assert any(example.steps[2].latex in latex.value for latex in worked.latex)
    assert any("Step 3 of 6: Unit 2" in p.proto.text for p in worked.get("progress"))


def test_a_bad_matrix_says_why_and_keeps_the_last_good_example(worked: AppTest) -> None:
    worked.text_area(key="worked_agc_g").input("1, 2\n3").run()
    ok(worked)
    assert any("The rows of the gradient differ in length" in e.value for e in worked.error)
    worked.button(key="worked_agc_next").click().run()  # still the example's 4 units
    assert any("Step 2 of 6: Unit 1" in p.proto.text for p in worked.get("progress"))
    worked.text_area(key="worked_agc_g").input("1, 2; 3, 4").run()  # parses, wrong shape
    assert any("a gradient has the shape of its weights" in e.value for e in worked.error)
    worked.text_area(key="worked_agc_g").input("0.1, 0, 0\n0, 0, 0\n0, 0, 0\n0, 0, 0").run()
    ok(worked)
    assert not worked.error


def test_zclip_and_autoclip_walk_the_history_and_report_the_spike(worked: AppTest) -> None:
    norms = adaptive.parse_norms(adaptive.NORMS_EXAMPLE)
    zclip = adaptive.zclip_worked(norms)
    assert adaptive.history_summary(zclip) in texts(worked)
    assert "Spikes at step 9." in texts(worked)
    for _ in range(9):
        worked.button(key="worked_zclip_next").click().run()
    assert zclip.steps[9].sentence in texts(worked)  # the spike's step
    autoclip = adaptive.autoclip_worked(norms, percentile=10.0)
    assert adaptive.history_summary(autoclip) in texts(worked)
    worked.slider(key="worked_autoclip_p").set_value(50.0).run()
    ok(worked)
    assert adaptive.history_summary(adaptive.autoclip_worked(norms, percentile=50.0)) in texts(
        worked
    )


def test_zclip_settings_change_the_walk(worked: AppTest) -> None:
    norms = adaptive.parse_norms(adaptive.NORMS_EXAMPLE)
    worked.toggle(key="worked_zclip_cap_on").set_value(True).run()
    worked.number_input(key="worked_zclip_cap").set_value(1.1).run()
    worked.slider(key="worked_zclip_warmup").set_value(3).run()
    ok(worked)
    capped = adaptive.zclip_worked(norms, warmup=3, cap=1.1)
    assert adaptive.history_summary(capped) in texts(worked)
    assert len(capped.clipped_steps) > 1  # the cap clips more than the spike


def test_a_bad_history_says_why_and_keeps_the_last_good_one(worked: AppTest) -> None:
    worked.text_input(key="worked_norms").input("1, 2, -3").run()
    ok(worked)
    assert any("cannot be negative" in e.value for e in worked.error)
    assert "Spikes at step 9." in texts(worked)  # the example is still shown
    worked.text_input(key="worked_norms").input("1, 1, 1, 1, 1, 1, 50, 1").run()
    ok(worked)
    assert not worked.error and "Spikes at step 7." in texts(worked)


# ---- stability map -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rule_maps() -> AppTest:
    app = AppTest.from_file(str(PAGES / "stability_map.py"), default_timeout=300)
    # Small maps from the first run on (the form reads these keys).
    app.session_state["map_grid"] = 8
    app.session_state["map_epochs"] = 5
    app.session_state["map_rules"] = ["autoclip", "agc", "zclip"]
    return ok(app.run())


def test_each_adaptive_rule_gets_a_map_and_its_words(rule_maps: AppTest) -> None:
    assert not rule_maps.error
    assert len(rule_maps.get("plotly_chart")) == 3  # clip maps, adaptive maps, target maps
    text = texts(rule_maps)
    for name in ("AutoClip", "AGC", "ZClip"):
        assert f"**{name}.**" in text and "runs trained" in text
    for phrase in ("without batch normalization", "loss spikes", "nobody has to tune"):
        assert phrase in text
    assert "Seetharaman" in text and "Brock" in text and "Kumar" in text
    assert "GradScaler" in text and "skip_nonfinite" in text


def test_an_adaptive_cell_opens_its_exact_configuration_in_the_lab(rule_maps: AppTest) -> None:
    rule_maps.radio(key="rule_cell_mode").set_value("agc")
    rule_maps.select_slider(key="rule_cell_lr").set_value(2)
    rule_maps.select_slider(key="rule_cell_row").set_value(5)
    ok(rule_maps.run())
    spec = sweep.SweepSpec(grid=8, epochs=5, clip_modes=("agc",))
    links = [b.proto.url for b in rule_maps.get("link_button")]
    agc_link = next(u for u in links if "clip_mode=agc" in u)
    config = LabState.from_query(parse_qs(urlsplit(agc_link).query))[0].config
    assert config.clip_mode == "agc" and config.agc_lambda == spec.rows("agc")[5]
    assert config.lr == pytest.approx(spec.lrs[2], rel=1e-2)
    assert config.epochs == 5 and config.agc_eps == sweep.SweepSpec().base.agc_eps


def test_the_zclip_cap_is_an_option_of_the_map(rule_maps: AppTest) -> None:
    rule_maps.radio(key="map_zclip_cap").set_value(1.0)
    rule_maps.button[0].click().run()
    ok(rule_maps)
    assert "With the cap, the warm-up steps are clipped by norm" in texts(rule_maps)
    rule_maps.radio(key="rule_cell_mode").set_value("zclip").run()
    link = next(b.proto.url for b in rule_maps.get("link_button") if "zclip" in b.proto.url)
    config = LabState.from_query(parse_qs(urlsplit(link).query))[0].config
    assert config.clip_mode == "zclip" and config.zclip_cap and config.clip_norm == 1.0
