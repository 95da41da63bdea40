"""clipviz.engine.labstate: the one codec for Lab links, and what it refuses."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from clipviz.engine.config import DEFAULT, PRESETS
from clipviz.engine.labstate import CUSTOM, HIDE_GROUPS, LabState, lab_url


def round_trip(state: LabState) -> tuple[LabState, list]:
    return LabState.from_query(parse_qs(state.to_query(), keep_blank_values=True))


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"twin": True},
        {"twin": True, "twin_clip_mode": "value"},
        {"hide": ("clipping", "lr"), "autoplay": True},
        {"twin": True, "hide": ("twin", "export", "network"), "autoplay": True},
    ],
)
def test_every_preset_round_trips_with_twin_and_teacher_keys(name, extra):
    state = LabState.of_preset(name, **extra)
    back, problems = round_trip(state)
    assert problems == []
    assert back == state
    assert back.config == PRESETS[name].config and back.preset == name


def test_a_changed_preset_is_written_key_by_key_and_still_opens_the_same_run():
    state = LabState(PRESETS["tutorial_clip_norm"].config.replace(seed=3), "tutorial_clip_norm")
    assert state.preset == CUSTOM  # no longer the preset's settings
    params = state.to_params()
    assert "preset" not in params and params["seed"] == "3" and params["clip_mode"] == "norm"
    assert round_trip(state)[0] == state


def test_the_default_state_is_the_empty_link():
    assert LabState().to_query() == "" and LabState().url() == "/lab"
    assert LabState.from_query({}) == (LabState(), [])


def test_a_twin_mode_equal_to_the_config_s_own_is_the_default_comparison():
    config = DEFAULT.replace(clip_mode="norm")
    assert LabState(config, twin=True, twin_clip_mode="norm").twin_clip_mode is None
    assert LabState(config, twin=True).twin_config.clip_mode == "none"
    assert LabState(DEFAULT, twin=True).twin_config.clip_mode == "norm"


def test_hide_names_settings_and_groups():
    state = LabState(hide=("optimizer", "clip_mode"))
    assert state.hides("lr") and state.hides("momentum") and state.hides("clip_mode")
    assert not state.hides("clip_norm") and not state.hides("network")
    for group in HIDE_GROUPS:
        assert LabState(hide=(group,)).hides(group)


@pytest.mark.parametrize(
    "params, key",
    [
        ({"twin": "maybe"}, "twin"),
        ({"autoplay": "2"}, "autoplay"),
        ({"hide": "network,bogus"}, "hide"),
        ({"twin_clip_mode": "sideways"}, "twin_clip_mode"),
        ({"lr": "[click me](https://example.com)"}, "lr"),
        ({"preset": "nope"}, "preset"),
    ],
)
def test_bad_values_are_named_and_fall_back(params, key):
    state, problems = LabState.from_query(params)
    assert [p.key for p in problems] == [key]
    assert state.config == DEFAULT


def test_settings_too_large_together_are_refused_once_with_the_limit_named():
    """The denial-of-service link of the hardening issue: one budget message, and the
    settings thrown off with it named in one more line, not one line each."""
    params = {
        "network": "lstm",
        "seq_len": "500",
        "hidden_size": "256",
        "batch_size": "1000",
        "n_train": "5000",
    }
    state, problems = LabState.from_query(params)
    assert any("limit" in p.message for p in problems)
    assert len(problems) <= 2
    assert not state.config.problems()


def test_lab_url_names_a_preset_and_writes_anything_else_out():
    assert lab_url(PRESETS["rnn_clipped"].config).startswith("/lab?preset=rnn_clipped&")
    url = lab_url(DEFAULT.replace(lr=0.3), "./lab")
    assert url == "./lab?lr=0.3"
    assert parse_qs(urlsplit(url).query) == {"lr": ["0.3"]}
