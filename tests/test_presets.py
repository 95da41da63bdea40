"""The presets of docs/CONTRACT.md behave as their names say, for every seed 0..4.

A preset whose name says ``explodes`` (or ``unscaled``) must explode without
clipping; its ``clipped`` / ``clip_*`` / ``scaled`` partner must train without
exploding, and end with a sensible loss. A clipped recurrent preset must learn:
its final test MSE below half the test MSE of always answering the training
targets' mean, computed here from the data with NumPy. Runs go through the
library exactly as the Lab and the command line run them
(``Trainer(...).run()``), with summary records to keep this file quick.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from clipviz.engine.config import PRESETS, TrainConfig
from clipviz.engine.data import adding_problem
from clipviz.engine.trainer import Trainer

SEEDS = range(5)
EXPLODING = ("tutorial_unscaled", "lstm_long_explodes", "rnn_explodes")
TRAINING = (
    "tutorial_clip_norm",
    "tutorial_clip_value",
    "tutorial_scaled",
    "lstm_long_clipped",
    "rnn_clipped",
)
PARTNERS = {"lstm_long_explodes": "lstm_long_clipped", "rnn_explodes": "rnn_clipped"}
CONTRACT_NAMES = set(EXPLODING) | set(TRAINING)


@functools.cache
def run(name: str, seed: int) -> Trainer:
    """The preset trained to its end (or its explosion); shared by the tests below."""
    return Trainer(PRESETS[name].config.replace(seed=seed), record="summary").run()


def test_every_contract_preset_exists_loads_and_validates():
    assert set(PRESETS) >= CONTRACT_NAMES
    for name in CONTRACT_NAMES:
        preset = PRESETS[name]
        assert preset.name == name and preset.title and preset.description
        assert preset.config.problems() == []
        # The URL round trip the Lab uses: ?preset=NAME gives the same config.
        config, problems = TrainConfig.from_params({"preset": name})
        assert problems == [] and config == preset.config


def test_partners_differ_only_in_clipping():
    for explodes, clipped in PARTNERS.items():
        a, b = PRESETS[explodes].config, PRESETS[clipped].config
        assert a.clip_mode == "none" and b.clip_mode == "norm"
        assert a.replace(clip_mode="norm", clip_norm=b.clip_norm) == b


@pytest.mark.parametrize("name", EXPLODING)
@pytest.mark.parametrize("seed", SEEDS)
def test_exploding_presets_explode_early(name, seed):
    trainer = run(name, seed)
    assert trainer.exploded_at is not None, f"{name} seed {seed} did not explode"
    # Well before the end, so the learner sees it happen in a short run.
    assert trainer.exploded_at <= trainer.total_steps // 2
    assert trainer.explosion.quantity in ("loss", "gradient", "weights")


@pytest.mark.parametrize("name", TRAINING)
@pytest.mark.parametrize("seed", SEEDS)
def test_partner_presets_train_without_exploding(name, seed):
    trainer = run(name, seed)
    assert trainer.exploded_at is None, f"{name} seed {seed} exploded at {trainer.exploded_at}"
    assert trainer.step_count == trainer.total_steps
    train, test = trainer.final_losses(original_units=False)
    initial = float(trainer.initial_train_loss[0])
    assert math.isfinite(train[0]) and math.isfinite(test[0])
    assert train[0] < initial, f"{name} seed {seed}: loss {train[0]:.3g} from {initial:.3g}"


def mean_guess_mse(config: TrainConfig) -> float:
    """Test MSE of always answering the training targets' mean, from the raw adding data.

    The data are regenerated with NumPy from the seeds ``recurrent_dataset`` documents
    (training draw 10,000, test draw 20,000), not read from the library's tensors.
    """
    _, y_train = adding_problem(config.n_train, config.seq_len, seed=10_000)
    _, y_test = adding_problem(256, config.seq_len, seed=20_000)
    return float(np.mean((y_test - y_train.mean()) ** 2))


def test_the_mean_guess_is_the_targets_variance():
    """The sum of two U[0, 1] numbers has variance 1/6: the mean guess scores about that."""
    for name in ("lstm_long_clipped", "rnn_clipped"):
        assert mean_guess_mse(PRESETS[name].config) == pytest.approx(1 / 6, rel=0.15)


def test_reading_only_the_second_number_scores_half_the_mean_guess():
    """Why "learned" means below half: the best answer that ignores the first marked number,
    second + E[first] = second + 0.5, misses by the first number's spread, variance 1/12,
    half the sum's 1/6."""
    config = PRESETS["rnn_clipped"].config
    x, y = adding_problem(256, config.seq_len, seed=20_000)
    half = config.seq_len // 2
    second = (x[:, half:, 0] * x[:, half:, 1]).sum(axis=1)
    ignores_first = float(np.mean((y - (second + 0.5)) ** 2))
    assert ignores_first / mean_guess_mse(config) == pytest.approx(0.5, abs=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm_long_clipped", "rnn_clipped"])
@pytest.mark.parametrize("seed", SEEDS)
def test_recurrent_partners_learn(name, seed):
    """Clipped, the recurrent presets learn the adding problem: the final test MSE is below
    half the mean guess's, which needs the first marked number (a net that reads only the
    second one scores about half the mean guess)."""
    trainer = run(name, seed)
    _, test = trainer.final_losses(original_units=False)
    guess = mean_guess_mse(trainer.config)
    assert test[0] < 0.5 * guess, (
        f"{name} seed {seed}: test MSE {test[0]:.4f}, mean guess {guess:.4f}"
    )
