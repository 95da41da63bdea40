"""TrainConfig: defaults, validation messages, and round trips through URL and CLI strings."""

import math

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from clipviz.engine.config import (
    CLIP_MODES,
    DEFAULT,
    FIELDS,
    NETWORKS,
    PRESETS,
    ConfigError,
    TrainConfig,
    format_value,
    preset_config,
)


def test_defaults_are_the_reference_experiment():
    c = DEFAULT
    assert (c.network, c.lr, c.optimizer, c.momentum, c.batch_size, c.epochs) == (
        "mlp",
        0.01,
        "sgd",
        0.9,
        32,
        100,
    )
    assert (c.target_scaling, c.clip_mode, c.width, c.depth, c.activation) == (
        "none",
        "none",
        25,
        1,
        "relu",
    )
    assert c.total_steps_estimate() == 1600


@pytest.mark.parametrize(
    "params, key, words",
    [
        ({"lr": "-1"}, "lr", "greater than 0"),
        ({"lr": "0"}, "lr", "greater than 0"),
        ({"lr": "abc"}, "lr", "expected a number"),
        ({"lr": "nan"}, "lr", "finite"),
        ({"lr": "inf"}, "lr", "finite"),
        ({"batch_size": "0"}, "batch_size", "at least 1"),
        ({"batch_size": "2.5"}, "batch_size", "whole number"),
        ({"clip_mode": "bogus"}, "clip_mode", "unknown value 'bogus'"),
        ({"clip_norm": "0"}, "clip_norm", "greater than 0"),
        ({"momentum": "1"}, "momentum", "below 1"),
        ({"network": "transformer"}, "network", "unknown value"),
        ({"colour": "red"}, "colour", "not a setting"),
        ({"preset": "nope"}, "preset", "unknown preset"),
        ({"epochs": "5000", "batch_size": "1"}, "epochs", "too many"),
        ({"network": "rnn", "seq_len": "10", "tbptt": "10"}, "tbptt", "below the sequence length"),
    ],
)
def test_bad_values_are_reported_and_the_default_kept(params, key, words):
    config, problems = TrainConfig.from_params(params)
    assert [p.key for p in problems] == [key]
    assert words in problems[0].message
    if key in FIELDS:
        assert getattr(config, key) == getattr(DEFAULT, key)
    assert config.problems() == []


def test_preset_applies_first_and_explicit_keys_override():
    config, problems = TrainConfig.from_params(
        {"preset": "tutorial_clip_norm", "clip-norm": "2.5", "lr": "0.02"}
    )
    assert problems == []
    assert config.clip_mode == "norm" and config.clip_norm == 2.5 and config.lr == 0.02


def test_every_preset_is_valid_and_named_as_the_contract_says():
    for name in (
        "tutorial_unscaled",
        "tutorial_clip_norm",
        "tutorial_clip_value",
        "tutorial_scaled",
        "lstm_long_explodes",
        "lstm_long_clipped",
        "rnn_explodes",
        "rnn_clipped",
    ):
        assert name in PRESETS
        assert PRESETS[name].config.problems() == []
    assert PRESETS["lstm_long_explodes"].config.network == "lstm"
    assert PRESETS["rnn_clipped"].config.clipped
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("nope")


def test_validated_raises_with_every_problem():
    with pytest.raises(ConfigError) as error:
        TrainConfig(lr=-1.0, batch_size=0).validated()
    assert {p.key for p in error.value.problems} == {"lr", "batch_size"}


configs = st.builds(
    TrainConfig,
    network=st.sampled_from(NETWORKS),
    lr=st.floats(1e-5, 10.0),
    momentum=st.one_of(st.just(0.0), st.floats(1e-6, 0.99)),  # no float32 underflow
    batch_size=st.integers(1, 200),  # inside the work budget (clipviz.engine.budget) with seq_len
    epochs=st.integers(1, 20),
    clip_mode=st.sampled_from(CLIP_MODES),
    clip_norm=st.floats(1e-3, 1e3),
    clip_value=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**31 - 1),
    seq_len=st.integers(20, 300),
    tbptt=st.integers(0, 19),
    recurrent_scale=st.floats(0.1, 3.0),
)


@settings(max_examples=200, deadline=None)
@given(configs)
def test_round_trip_through_query_and_cli_strings(config):
    params = config.to_params(only_relevant=False)
    back, problems = TrainConfig.from_params(params)
    assert problems == []
    for key in FIELDS:  # floats are written with %g: equal to 6 significant digits
        a, b = getattr(back, key), getattr(config.canonical(), key)
        if isinstance(b, float):
            assert a == float(format_value(b))  # what the string says, exactly
            assert math.isclose(a, b, rel_tol=1e-5)
        else:
            assert a == b
    args = config.to_cli_args()
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    again, problems = TrainConfig.from_params({k.lstrip("-"): v for k, v in pairs.items()})
    assert problems == []
    assert again.to_params() == config.to_params()


def test_relevant_keys_follow_the_network_and_mode():
    mlp = DEFAULT.replace(clip_mode="value")
    assert "clip_value" in mlp.relevant_keys() and "clip_norm" not in mlp.relevant_keys()
    assert "seq_len" not in mlp.relevant_keys()
    rnn = DEFAULT.replace(network="rnn", clip_mode="norm_value")
    assert {"clip_norm", "clip_value", "seq_len", "recurrent_scale"} <= set(rnn.relevant_keys())
    assert "depth" not in rnn.relevant_keys()
    assert DEFAULT.to_params()["lr"] == "0.01"
    assert DEFAULT.to_params(skip_defaults=True) == {}
