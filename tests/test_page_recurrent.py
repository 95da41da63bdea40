"""AppTest for the /recurrent page: it renders, its words quote the library, presets and the
Run button drive it, and bad settings get a message instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clipviz.engine.config import PRESETS
from clipviz.lessons import recurrent

# AppTest resolves relative paths against this file, not the working directory.
PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "recurrent.py")
WIDGETS = {
    "slider": ("rec_seq_len", "rec_radius", "rec_momentum", "rec_steps"),
    "select_slider": ("rec_hidden", "rec_lr"),
    "number_input": ("rec_tbptt", "rec_seed", "rec_clip_norm", "rec_clip_value", "rec_clip_value_output"),
    "radio": ("rec_clip_mode",),
    "toggle": ("rec_twins", "rec_same_scale"),
}  # fmt: skip


@pytest.fixture
def at() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def small(app: AppTest, **values) -> AppTest:
    """Shrink the experiment so a test's runs take a fraction of a second."""
    app.slider(key="rec_seq_len").set_value(values.get("seq_len", 30))
    app.slider(key="rec_steps").set_value(values.get("steps", 20))
    return app


def test_default_page_shows_the_rnn_explode_and_the_lstm_train(at: AppTest) -> None:
    assert at.title[0].value.startswith("Recurrent nets")
    assert len(at.latex) >= 2  # the BPTT product and the LSTM cell
    assert len(at.get("plotly_chart")) >= 7  # probe, 2 heatmaps, 2 losses, curve, 2 layers
    # The page opens on the rnn_explodes settings; its words are the library's.
    config = PRESETS["rnn_explodes"].config
    comparison = recurrent.compare_networks(config, recurrent.page_steps(config))
    assert texts(at.info) == ["\n\n".join(recurrent.describe(comparison))]
    assert texts(at.error) == [
        # What overflows first differs between CPUs: compare with this machine's run.
        f"Exploded at step {comparison.rnn.exploded_at}: {comparison.rnn.explosion}."
    ]
    assert len(at.success) == 1 and "LSTM" not in at.success[0].value
    lstm = comparison.lstm
    assert at.success[0].value.startswith(
        f"{lstm.steps} steps without exploding; it {recurrent.verdict(lstm)}."
    )
    assert not at.warning


def test_every_widget_has_a_key(at: AppTest) -> None:
    for kind, keys in WIDGETS.items():
        for key in keys:
            assert getattr(at, kind)(key=key) is not None, key
    assert at.button(key="rec_run").label == "Run"
    for name in ("rnn_explodes", "rnn_clipped", "lstm_long_explodes", "lstm_long_clipped"):
        assert at.button(key=f"rec_preset_{name}").label == PRESETS[name].title
        assert f"/lab?preset={name}" in " ".join(m.value for m in at.markdown)


def test_changed_settings_wait_for_run(at: AppTest) -> None:
    before = texts(at.info)
    small(at).run()
    assert not at.exception
    assert "Press **Run**" in at.warning[0].value
    assert texts(at.info) == before  # still the previous run
    at.button(key="rec_run").click().run()
    assert not at.exception and not any("Press **Run**" in w.value for w in at.warning)
    # 20 steps are too few to learn: each net's box is a warning that never says "learned:"
    assert len(at.warning) == 2 and not at.success
    assert all("without exploding; it stayed finite but" in w.value for w in at.warning)
    assert texts(at.info) != before
    assert "T = 30 steps" in " ".join(c.value for c in at.caption)


def test_a_preset_button_sets_the_controls_and_runs(at: AppTest) -> None:
    at.button(key="rec_preset_rnn_clipped").click().run()
    assert not at.exception and not at.warning
    config = PRESETS["rnn_clipped"].config
    assert at.radio(key="rec_clip_mode").value == "norm"
    assert at.slider(key="rec_radius").value == pytest.approx(config.recurrent_scale)
    assert at.select_slider(key="rec_lr").value == config.lr
    assert at.slider(key="rec_steps").value == recurrent.page_steps(config)
    # Both nets clip and train; the unclipped twins explode, and the words say so.
    assert not at.error and len(at.success) == 2
    words = at.info[0].value
    assert "Clipping changed the gradient" in words
    assert "Without clipping it exploded at step" in words


def test_truncation_is_reported(at: AppTest) -> None:
    small(at)
    at.number_input(key="rec_tbptt").set_value(10)
    at.button(key="rec_run").click().run()
    assert not at.exception
    assert "no gradient reaches the first 20 time steps" in at.info[0].value


def test_layerwise_clipping_runs(at: AppTest) -> None:
    small(at)
    at.radio(key="rec_clip_mode").set_value("layerwise_value").run()
    assert not at.number_input(key="rec_clip_value").disabled
    assert at.number_input(key="rec_clip_norm").disabled
    at.button(key="rec_run").click().run()
    assert not at.exception
    assert "per-layer clipping to ±10 (recurrent) and ±100 (output)" in " ".join(
        c.value for c in at.caption
    )


def zero_norm_threshold(app: AppTest) -> None:
    app.radio(key="rec_clip_mode").set_value("norm").run()  # enables the threshold
    app.number_input(key="rec_clip_norm").set_value(0.0)


def zero_output_range(app: AppTest) -> None:
    app.radio(key="rec_clip_mode").set_value("layerwise_value").run()
    app.number_input(key="rec_clip_value_output").set_value(0.0)


@pytest.mark.parametrize(
    ("change", "label", "message"),
    [
        (lambda app: app.number_input(key="rec_tbptt").set_value(30), "Truncate backprop (steps)",
         "must be below the sequence length 30"),
        (lambda app: app.number_input(key="rec_tbptt").set_value(200), "Truncate backprop (steps)",
         "must be below the sequence length 30"),
        (zero_norm_threshold, "Clip norm c", "must be greater than 0"),
        (zero_output_range, "Clip value, output layer", "must be greater than 0"),
    ],
)  # fmt: skip
def test_bad_settings_show_a_message_not_a_traceback(at: AppTest, change, label, message) -> None:
    small(at)
    change(at)
    at.run()
    assert not at.exception
    error = at.error[0].value
    assert error.startswith("These settings can't be run yet")
    assert f"**{label}** {message}" in error
    assert not [b for b in at.button if b.key == "rec_run"]  # nothing to run
    # The last good run stays on screen, marked as out of date.
    assert "Press **Run**" in at.warning[0].value


def test_a_run_too_long_for_the_page_is_refused_with_advice(at: AppTest) -> None:
    at.slider(key="rec_seq_len").set_value(150)
    at.slider(key="rec_steps").set_value(700).run()
    assert not at.exception
    error = at.error[0].value
    assert "**Run length**" in error and "fewer training steps, a shorter sequence" in error
    assert not [b for b in at.button if b.key == "rec_run"]
    at.slider(key="rec_seq_len").set_value(300).run()  # the LSTM's data no longer fit
    assert not at.exception
    assert "**Run length** the LSTM on these settings" in at.error[0].value


def test_a_shared_link_opens_that_configuration() -> None:
    app = AppTest.from_file(PAGE, default_timeout=120)
    for key, value in {"rec_clip_mode": "global norm", "rec_clip_norm": "2", "rec_seq_len": "30",
                       "rec_steps": "20", "rec_tbptt": "10"}.items():  # fmt: skip
        app.query_params[key] = value
    app.run()
    assert not app.exception
    assert app.radio(key="rec_clip_mode").value == "norm"
    assert "global norm clipping at 2" in " ".join(c.value for c in app.caption)
    assert "no gradient reaches the first 20 time steps" in app.info[0].value


# ---- the digits chapter: a claim tested ----------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def digits_study():
    """The chapter's runs, trained once before any page opens: the page's cache calls the
    same process-wide ``run_study``, so no AppTest run waits for the training."""
    from clipviz.lessons import digits

    return digits.run_study(digits.DEFAULT_SEEDS)


def test_digits_chapter_shows_the_runs_and_a_verdict_computed_from_them(at, digits_study):
    from clipviz.lessons import digits

    assert any(h.value.startswith("A claim tested") for h in at.subheader)
    assert len(at.get("plotly_chart")) >= 9  # the page's seven and the chapter's two
    verdict = digits.verdict(digits_study)
    words = texts(at.markdown)
    assert "**Verdict.** " + " ".join(verdict.sentences[:3]) in words
    assert " ".join(verdict.sentences[3:]) in words
    # The setup is read from the presets, and the Lab link opens the pair.
    config = PRESETS["digits_lstm_clipvalue"].config
    setup = " ".join(words)
    assert f"SGD with learning rate {config.lr:g} and momentum {config.momentum:g}" in setup
    assert "/lab?preset=digits_lstm_clipvalue&twin=true" in setup
    assert f"is {digits.step_bound(digits_study.higher_lrs[-1]):g}, against" in setup
    table = at.dataframe[0].value
    assert len(table) == 2 * len(digits_study.lrs)
    assert list(table["learning rate"][:2]) == [f"{digits_study.base_lr:g}"] * 2
    assert not at.exception


def test_digits_chapter_trains_in_the_background_and_the_page_does_not_wait(
    monkeypatch, digits_study
):
    """While the runs train, the page renders everything else and says the runs are on their
    way; once they are done, the next run of the page shows them."""
    import threading

    import streamlit as st

    from clipviz.lessons import digits

    release = threading.Event()

    def slow_study(n_seeds: int) -> digits.Study:
        release.wait(60)
        return digits_study

    st.cache_resource.clear()  # a fresh server: nobody has started the runs
    monkeypatch.setattr(digits, "run_study", slow_study)
    try:
        app = AppTest.from_file(PAGE, default_timeout=120)
        app.run()
        assert not app.exception
        words = " ".join(texts(app.markdown))
        runs = 2 * (1 + len(digits.HIGHER_LR_FACTORS)) * digits.DEFAULT_SEEDS
        assert f"Training the {runs} LSTMs of this section" in words
        assert "**Verdict.**" not in words
        assert len(app.get("plotly_chart")) >= 7  # the rest of the page is all there
        release.set()
        app.run()
        assert "**Verdict.** " in " ".join(texts(app.markdown))
    finally:
        release.set()
        st.cache_resource.clear()
