"""AppTest for the /lab page: presets, the player buttons, explosions, fixes, twin, the URL.

AppTest runs the page script in-process; the live fragment runs once per
script run (its timer does not tick here), so "playing" is driven by
rerunning the app while the player plays.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clipviz.app.urlkeys import plain_markdown
from clipviz.engine.config import DEFAULT, PRESETS

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "lab.py")


def open_lab(**params: str) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.query_params.update(params)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def button(app: AppTest, label: str):
    matches = [b for b in app.button if b.label == label]
    assert matches, f"no button {label!r}; have {[b.label for b in app.button]}"
    return matches[0]


def counter(app: AppTest) -> str:
    return app.get("progress")[0].proto.text


def errors(app: AppTest) -> list[str]:
    return [e.value for e in app.error]


def exploded(app: AppTest) -> bool:
    return any(text.startswith("Exploded at step") for text in errors(app))


def chart_payload(app: AppTest, kind: str | None = None) -> dict:
    """What the live-chart component was sent in the last run (its JSON payload)."""
    charts = [e for e in app.get("bidi_component") if e.proto.component_name.endswith("live_chart")]
    assert len(charts) == 1, charts
    payload = json.loads(charts[0].proto.bytes)
    if kind is not None:
        assert payload["kind"] == kind, payload["kind"]
    return payload


def play_until_done(app: AppTest, max_runs: int = 60) -> None:
    """Press Play at top speed and rerun until the player stops (the fragment ticks per run)."""
    app.select_slider(key="speed").set_value(500).run()
    button(app, "Play").click().run()
    for _ in range(max_runs):
        if not app.session_state["_lab_player"].playing:
            return
        app.run()
        assert not app.exception, [e.value for e in app.exception]
    raise AssertionError("the run did not finish")


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_loads_its_settings(name):
    app = open_lab(preset=name)
    config = PRESETS[name].config
    assert app.session_state["preset"] == name
    for key in config.relevant_keys():
        assert app.session_state[key] == getattr(config, key), key
    run = app.session_state["_lab_run"]
    assert run.config == config
    assert counter(app).startswith(f"Step 0 of {run.total_steps:,}")
    assert not app.warning and not errors(app)
    assert [b.label for b in app.button][:4] == ["Play", "Pause", "Step", "Reset"]


def test_the_default_page_opens_on_the_reference_experiment():
    app = open_lab()
    assert app.session_state["_lab_run"].config == DEFAULT
    assert app.session_state["preset"] == "custom"
    assert counter(app) == "Step 0 of 1,600 · epoch 0 of 100"


def test_step_advances_the_counter_and_reset_goes_back():
    app = open_lab(preset="tutorial_clip_norm")
    button(app, "Step").click().run()
    assert counter(app).startswith("Step 1 of 1,600")
    button(app, "Step").click().run()
    assert counter(app).startswith("Step 2 of 1,600")
    button(app, "Reset").click().run()
    assert counter(app).startswith("Step 0 of 1,600")


def test_an_unscaled_unclipped_mlp_stepped_far_enough_explodes_with_a_diagnosis():
    app = open_lab(network="mlp", target_scaling="none", clip_mode="none")
    for _ in range(30):
        if button(app, "Step").disabled:
            break
        button(app, "Step").click().run()
    assert exploded(app), errors(app)
    step = app.session_state["_lab_run"].primary.exploded_at
    headline = errors(app)[0]
    assert headline.startswith(f"Exploded at step {step}: ")
    text = " ".join(m.value for m in app.markdown)
    assert "gradient norm was already" in text  # the norm just before
    assert "Signs found" in text and "(step " in text  # which signs, where
    fixes = [b.label for b in app.button if (b.key or "").startswith("fix_")]
    assert "Clip by norm at 1.0" in fixes and "Standardize the target" in fixes
    assert any(label.startswith("Learning rate / 10") for label in fixes)
    assert button(app, "Step").disabled


def test_the_same_run_clipped_by_norm_does_not_explode():
    app = open_lab(network="mlp", target_scaling="none", clip_mode="norm", epochs="10")
    play_until_done(app)
    run = app.session_state["_lab_run"]
    assert run.done and run.step_count == run.total_steps == 160
    assert not exploded(app) and run.primary.exploded_at is None
    assert counter(app) == "Step 160 of 160 · epoch 10 of 10"


def test_play_at_the_default_speed_advances_by_one_tick_per_run():
    app = open_lab(preset="tutorial_clip_norm")
    button(app, "Play").click().run()
    player = app.session_state["_lab_player"]
    assert player.playing
    assert 1 <= app.session_state["_lab_run"].step_count <= player.steps_per_tick
    assert button(app, "Play").disabled and not button(app, "Pause").disabled
    button(app, "Pause").click().run()
    assert not app.session_state["_lab_player"].playing


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"lr": "-1"}, "lr"),
        ({"lr": "abc"}, "lr"),
        ({"clip_mode": "bogus"}, "clip_mode"),
        ({"batch_size": "0"}, "batch_size"),
    ],
)
def test_an_invalid_query_parameter_shows_a_message_and_falls_back_to_the_default(params, key):
    app = open_lab(**params)
    warnings = [w.value for w in app.warning]
    assert len(warnings) == 1 and f"Ignored {plain_markdown(key)} from" in warnings[0], warnings
    assert app.session_state[key] == getattr(DEFAULT, key)
    assert app.session_state["_lab_run"].config == DEFAULT
    assert key not in app.query_params  # dropped from the URL


def test_several_invalid_parameters_each_get_a_message_and_good_ones_are_kept():
    app = open_lab(lr="-1", clip_mode="bogus", batch_size="0", seed="7", momentum="2")
    warnings = " ".join(w.value for w in app.warning)
    for key in ("lr", "clip_mode", "batch_size", "momentum"):
        assert f"Ignored {plain_markdown(key)} from" in warnings
    assert app.session_state["seed"] == 7
    assert app.query_params.get("seed") == "7"


def test_a_learning_rate_between_grid_points_round_trips():
    app = open_lab(lr="0.013", clip_mode="norm")
    assert app.session_state["lr"] == pytest.approx(0.013)
    assert (
        0.013 in app.select_slider(key="lr").options
        or "0.013" in app.select_slider(key="lr").options
    )
    link = app.code[0].value
    assert "lr=0.013" in link and "clip_mode=norm" in link
    assert app.session_state["_lab_run"].config.lr == pytest.approx(0.013)


def test_a_url_in_another_spelling_is_cleaned_and_kept():
    app = open_lab(lr="1E-1", network="MLP", clip_mode="NORM")
    assert not app.warning
    assert app.query_params == {"lr": "0.1", "clip_mode": "norm"}  # defaults are left out
    assert app.session_state["lr"] == 0.1 and app.session_state["clip_mode"] == "norm"


def test_a_preset_link_stays_a_preset_and_an_overridden_one_is_written_out():
    app = open_lab(preset="tutorial_clip_value")
    assert app.query_params == {"preset": "tutorial_clip_value", "clip_mode": "value"}
    app = open_lab(preset="lstm_long_clipped", lr="0.01")
    assert app.session_state["preset"] == "custom"
    url = app.query_params
    assert "preset" not in url and url["network"] == "lstm" and "lr" not in url
    again = open_lab(**url)
    assert again.session_state["_lab_run"].config == app.session_state["_lab_run"].config


def test_the_share_link_reproduces_the_configuration():
    app = open_lab(preset="lstm_long_clipped")
    link = app.code[0].value
    query = link.split("?", 1)[1]
    again = open_lab(**dict(part.split("=", 1) for part in query.split("&")))
    assert again.session_state["_lab_run"].config == PRESETS["lstm_long_clipped"].config


def test_a_fix_changes_the_settings_and_resets_the_run():
    app = open_lab(preset="tutorial_unscaled")
    for _ in range(30):
        if exploded(app):
            break
        button(app, "Step").click().run()
    [fix] = [b for b in app.button if b.key == "fix_clip_norm"]
    fix.click().run()
    assert not app.exception
    assert app.session_state["clip_mode"] == "norm"
    assert app.session_state["clip_norm"] == 1.0
    assert app.session_state["preset"] == "custom"
    assert counter(app).startswith("Step 0 of")
    assert not exploded(app)


def test_changing_a_setting_during_a_run_resets_it_with_a_notice():
    app = open_lab(preset="tutorial_clip_norm")
    button(app, "Step").click().run()
    button(app, "Step").click().run()
    app.number_input(key="batch_size").set_value(64).run()
    assert counter(app).startswith("Step 0 of 800")
    assert [t.proto.body for t in app.toast] == [
        "Settings changed, so the run started again from step 0."
    ]
    assert app.session_state["preset"] == "custom"


def test_clip_thresholds_show_only_when_their_mode_needs_them():
    def keys(app):
        return {w.key for w in app.number_input}

    assert not {"clip_norm", "clip_value"} & keys(open_lab(clip_mode="none"))
    assert "clip_norm" in keys(open_lab(clip_mode="norm")) - {"clip_value"}
    assert "clip_value" in keys(open_lab(clip_mode="value"))
    both = keys(open_lab(clip_mode="norm_value"))
    assert {"clip_norm", "clip_value"} <= both


def test_each_network_shows_its_own_settings():
    def keys(app):
        return {w.key for w in app.number_input} | {w.key for w in app.selectbox}

    mlp = keys(open_lab(network="mlp"))
    assert {"depth", "width", "activation"} <= mlp and "seq_len" not in mlp
    lstm = keys(open_lab(network="lstm"))
    assert {"task", "seq_len", "hidden_size"} <= lstm and "depth" not in lstm
    assert "recurrent_scale" not in lstm
    assert "recurrent_scale" in keys(open_lab(network="rnn"))


def test_the_twin_trains_in_lock_step_and_is_labelled():
    app = open_lab(preset="tutorial_clip_norm")
    app.toggle(key="twin").set_value(True).run()
    run = app.session_state["_lab_run"]
    assert run.twin is not None and run.twin_config.clip_mode == "none"
    # A new run: the chart is sent whole, with a key naming each run's colour.
    labels = [label for _, label, _ in chart_payload(app, "full")["meta"]["key"]]
    assert labels == ["clip norm 1 (yours)", "no clipping (twin)"]
    for _ in range(3):
        button(app, "Step").click().run()
    run = app.session_state["_lab_run"]
    assert run.primary.step_count == run.twin.step_count == 3
    assert run.primary.initial_params.equal(run.twin.initial_params)
    app.selectbox(key="twin_clip_mode").set_value("value").run()
    assert app.session_state["_lab_run"].twin_config.clip_mode == "value"


def test_the_twin_is_a_link_too():
    app = open_lab(preset="tutorial_clip_norm", twin="true", twin_clip_mode="value")
    run = app.session_state["_lab_run"]
    assert run.twin_config.clip_mode == "value"
    assert "twin=true&twin_clip_mode=value" in app.code[0].value


def test_exports_are_offered():
    app = open_lab(preset="tutorial_clip_norm")
    labels = [b.proto.label for b in app.get("download_button")]
    assert labels == ["Per-step records (CSV)", "PyTorch script", "Keras 3 script"]
    sources = [c.value for c in app.code]
    assert any("clip_grad_norm_(parameters, CLIP_NORM)" in s for s in sources)
    assert any("global_clipnorm=CLIP_NORM" in s for s in sources)


# ---- the live chart (drawn in the browser, so checked here through its builder) ----------


def test_the_lab_figure_is_valid_plotly_with_all_panels_and_thinned_lines():
    import plotly.graph_objects as go

    from clipviz.app.lab import LabRun
    from clipviz.figures.training import MAX_POINTS, lab_figure

    run = LabRun(PRESETS["tutorial_clip_norm"].config.replace(epochs=200))
    run.step(3200)
    figure = lab_figure(run.traces(), revision="1")
    go.Figure(figure.to_dict())  # passes Plotly's full validation
    layout = figure.layout
    assert layout.uirevision == "1"
    assert {a.title.text for a in (layout.xaxis, layout.xaxis2, layout.xaxis3, layout.xaxis5)} == {
        "optimizer step"
    }
    assert layout.yaxis.title.text == "MSE, target units², log scale"
    lines = [t for t in figure.data if t.type == "scatter" and t.mode == "lines"]
    assert lines and all(len(t.x) <= MAX_POINTS + 1 for t in lines)
    assert any(t.type == "heatmap" for t in figure.data)
    assert any("norm threshold c = 1" in (a.text or "") for a in layout.annotations)


def test_the_lab_figure_marks_an_explosion_and_colours_runs_by_clipping():
    from clipviz.app.lab import LabRun
    from clipviz.figures.style import CLIPPED, UNCLIPPED
    from clipviz.figures.training import lab_figure

    config = PRESETS["tutorial_clip_norm"].config
    run = LabRun(config, config.replace(clip_mode="none"))
    run.step(40)
    figure = lab_figure(run.traces())
    colours = {t.line.color for t in figure.data if t.type == "scatter" and t.line.color}
    assert colours == {CLIPPED, UNCLIPPED}
    step = run.twin.exploded_at
    assert any(a.text == f"exploded at step {step}" for a in figure.layout.annotations)


def test_the_empty_lab_figure_says_how_to_start_and_labels_decades_only():
    from clipviz.app.lab import LabRun
    from clipviz.figures.training import lab_figure

    empty = lab_figure(LabRun(PRESETS["tutorial_clip_norm"].config).traces()).layout
    assert any(a.text == "No steps yet: press Play or Step" for a in empty.annotations)
    assert {empty[name].dtick for name in ("yaxis", "yaxis2", "yaxis4", "yaxis5")} == {1}
    run = LabRun(PRESETS["tutorial_clip_norm"].config)
    run.step(5)
    drawn = lab_figure(run.traces()).layout
    assert drawn.yaxis.dtick is None  # plotly chooses the ticks once there is data
    assert not any(a.text == "No steps yet: press Play or Step" for a in drawn.annotations)


def test_the_sidebar_is_generated_from_the_field_table(monkeypatch):
    """A new setting is one entry in the table: its widget appears with its label."""
    import dataclasses

    from clipviz.app import lab

    seed = next(s for s in lab.SETTINGS if s.key == "seed")
    knob = dataclasses.replace(seed, key="new_knob", label="A brand-new knob")
    monkeypatch.setattr(lab, "SETTINGS", (*lab.SETTINGS, knob))
    app = open_lab()
    labels = [w.label for w in app.number_input]
    assert "A brand-new knob" in labels and "Seed" in labels
    # and every relevant setting of the config has its widget, hidden ones none
    shown = {w.key for w in (*app.number_input, *app.selectbox, *app.select_slider, *app.toggle)}
    assert set(DEFAULT.relevant_keys()) <= shown
    assert "seq_len" not in shown  # the MLP has no sequence


def test_a_teacher_link_hides_controls_and_its_share_link_stays_trimmed():
    app = open_lab(preset="tutorial_clip_norm", hide="clipping,optimizer", autoplay="true")
    shown = {w.key for w in (*app.number_input, *app.selectbox, *app.select_slider, *app.toggle)}
    assert not {"clip_mode", "lr", "momentum", "optimizer"} & shown
    assert {"network", "seed"} <= shown
    assert app.session_state["_lab_player"].playing  # autoplay: playing on open
    assert app.session_state["_lab_run"].step_count > 0
    link = app.get("code")[0].value
    assert "hide=clipping,optimizer" in link and "autoplay=true" in link
    assert "preset=tutorial_clip_norm" in link


# ---- your own data ----------------------------------------------------------------------


def regression_csv(rows: int = 200, scale: float = 1.0, seed: int = 0) -> bytes:
    """A learnable table: y = 3 a - 2 b + noise, times ``scale``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a, b, noise = rng.normal(size=(3, rows))
    y = scale * (3 * a - 2 * b + 0.1 * noise)
    lines = ["a,b,label,y"] + [
        f"{x1:.6f},{x2:.6f},row{i},{t:.6f}"
        for i, (x1, x2, t) in enumerate(zip(a, b, y, strict=True))
    ]
    return ("\n".join(lines) + "\n").encode()


def upload(app: AppTest, name: str, data: bytes) -> AppTest:
    app.file_uploader(key="upload_file").set_value((name, data, "text/csv")).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_an_uploaded_csv_trains_and_a_large_target_explodes():
    app = upload(open_lab(preset="tutorial_clip_norm"), "mine.csv", regression_csv())
    run = app.session_state["_lab_run"]
    assert run.dataset is not None and run.dataset.n_features == 2  # the MLP adapts
    assert app.selectbox(key="upload_target").value == "y"
    assert list(app.multiselect(key="upload_features").value) == ["a", "b"]
    play_until_done(app)
    result = app.session_state["_lab_run"].primary.result()
    assert result.exploded_at is None and result.learned
    # the same settings without clipping on a target a thousand times larger explode
    app = upload(open_lab(), "big.csv", regression_csv(scale=1000.0))
    play_until_done(app)
    assert exploded(app)
    assert any("uploaded" in c.value for c in app.caption)  # the share link says so


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("empty.csv", b"", "empty"),
        ("one.csv", b"x\n" + b"1\n" * 50, "only one column"),
        ("one_number.csv", b"a,b\n" + b"1,x\n" * 50, "columns of numbers"),
        ("words.csv", b"a,b\n" + b"x,y\n" * 50, "no column holds numbers only"),
        ("short.csv", b"a,b\n1,2\n3,4\n", "too few rows"),
        ("wide.csv", b",".join(b"c%d" % i for i in range(150)) + b"\n", "columns"),
        ("nan.csv", b"a,b\n" + b"1,nan\n" * 50, "column 'b' holds NaN on line 2"),
        ("constant.csv", b"a,b\n" + b"".join(b"%d,7\n" % i for i in range(50)), "constant"),
        ("binary.csv", bytes(range(256)) * 4, ""),
    ],
)
def test_a_bad_file_gets_its_message_and_the_last_good_data_stays(name, data, message):
    app = upload(open_lab(), "good.csv", regression_csv())
    good = app.session_state["_lab_upload"]
    app = upload(app, name, data)
    shown = errors(app)  # shown as plain text: the file's own words escaped
    assert shown and plain_markdown(message) in " ".join(shown), shown
    assert app.session_state["_lab_upload"] is good
    assert app.session_state["_lab_run"].dataset.n_features == 2


def test_uploads_stay_in_their_session():
    first = upload(open_lab(), "mine.csv", regression_csv())
    second = open_lab()
    assert first.session_state["_lab_run"].dataset is not None
    assert second.session_state["_lab_run"].dataset is None
    assert "_lab_upload" not in second.session_state


def test_the_rule_race_runs_on_one_click():
    app = open_lab(preset="tutorial_unscaled", epochs="3")
    button(app, "Race the rules").click().run()
    assert not app.exception, [e.value for e in app.exception]
    table = app.dataframe[0].value
    assert list(table["rule"]) == ["none", "norm", "value", "autoclip", "agc", "zclip"]
    assert table["outcome"][0].startswith("explodes at step")
    assert table["final test loss"][0] == "—"  # nothing to show for an exploded run
    assert len(app.get("plotly_chart")) == 1
