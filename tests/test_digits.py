"""The digits experiment: accuracy against plain PyTorch, the two presets, the chapter's
study and its verdict, the Lab chart's accuracy axis and ``reproduce --experiment digits_lstm``.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from clipviz.app.lab import LabRun
from clipviz.cli import main
from clipviz.engine import budget
from clipviz.engine.config import DEFAULT, PRESETS
from clipviz.engine.trainer import Trainer
from clipviz.figures import recurrent as recurrent_figures
from clipviz.figures.training import RunTrace, lab_figure, loss_figure
from clipviz.lessons import digits

NAMES = ("digits_lstm_noclip", "digits_lstm_clipvalue")
SEEDS = range(5)


def torch_nn_accuracy(trainer: Trainer, lane: int, x: torch.Tensor, y: torch.Tensor) -> float:
    """The share of ``x`` a plain ``torch.nn.LSTM`` + ``nn.Linear`` with the lane's weights
    classifies right: argmax of the logits against the labels. Shares no code with clipviz's
    forward pass; computed in float64 from the same float32 weights."""
    flat = trainer.params[:, lane].double()
    net = trainer.model
    wx, wh, b, wo, bo = (
        flat[s.offset : s.offset + s.size].view(*s.shape) for s in net.layout.specs
    )
    lstm = torch.nn.LSTM(net.n_inputs, net.hidden, batch_first=True).double()
    head = torch.nn.Linear(net.hidden, net.n_outputs).double()
    with torch.no_grad():
        # Our layout is Keras's: kernels (inputs, 4H) in gate order i, f, g, o (torch's order
        # too), one bias per gate where torch has two.
        lstm.weight_ih_l0.copy_(wx.T)
        lstm.weight_hh_l0.copy_(wh.T)
        lstm.bias_ih_l0.copy_(b)
        lstm.bias_hh_l0.zero_()
        head.weight.copy_(wo.T)
        head.bias.copy_(bo)
        _, (h, _) = lstm(x.double())
        logits = head(h[0])
    return float((logits.argmax(dim=1) == y).double().mean())


@functools.cache
def preset_run(name: str, seed: int) -> Trainer:
    """A preset trained to its end, as the Lab and ``train --preset`` run it."""
    return Trainer(PRESETS[name].config.replace(seed=seed)).run()


# ---- accuracy -----------------------------------------------------------------------


def test_accuracy_equals_a_plain_torch_lstm_on_the_same_weights():
    config = PRESETS["digits_lstm_noclip"].config.replace(epochs=2)
    trainer = Trainer(config).run()
    data = trainer.data
    for x, y, key in ((data.x_train, data.y_train, "train"), (data.x_test, data.y_test, "test")):
        expected = torch_nn_accuracy(trainer, 0, x, y)
        assert 0.2 < expected < 1.0  # it learned something, and is not trivially perfect
        assert trainer.evaluate_accuracy(x, y)[0] == pytest.approx(expected, abs=1e-12)
        # The epoch records hold the same number: the run ended at an epoch's end.
        assert trainer.epoch_records()[f"{key}_accuracy"][-1] == pytest.approx(expected, abs=1e-12)
    train, test = trainer.final_accuracies()
    summary = trainer.result().as_dict()
    assert summary["final_train_accuracy"] == train[0]
    assert summary["final_test_accuracy"] == test[0]


def test_accuracy_of_many_lanes_equals_each_lanes_plain_torch_lstm():
    config = PRESETS["digits_lstm_clipvalue"].config.replace(epochs=1)
    trainer = Trainer(config, n_lanes=3, lr=[0.05, 0.1, 0.3], record="summary").run()
    data = trainer.data
    accuracy = trainer.evaluate_accuracy(data.x_test, data.y_test)
    expected = [torch_nn_accuracy(trainer, lane, data.x_test, data.y_test) for lane in range(3)]
    np.testing.assert_allclose(accuracy, expected, atol=1e-12)
    assert len(set(expected)) > 1  # the lanes really differ


def test_one_pass_gives_evaluates_loss_exactly():
    trainer = Trainer(PRESETS["digits_lstm_noclip"].config.replace(epochs=1)).run()
    data = trainer.data
    loss, _ = trainer._loss_and_accuracy(data.x_test, data.y_test)
    np.testing.assert_array_equal(loss, trainer.evaluate(data.x_test, data.y_test))
    np.testing.assert_array_equal(trainer.epoch_records()["test_loss"][-1:], loss)


def test_regression_has_no_accuracy():
    trainer = Trainer(PRESETS["tutorial_clip_norm"].config.replace(epochs=2)).run()
    assert "test_accuracy" not in trainer.epoch_records()
    assert np.isnan(trainer.final_accuracies()[1]).all()
    summary = trainer.result().as_dict()
    assert summary["final_train_accuracy"] is None and summary["final_test_accuracy"] is None


# ---- the presets ----------------------------------------------------------------------


def test_presets_load_validate_and_fit_the_budget():
    for name in NAMES:
        preset = PRESETS[name]
        assert preset.title and preset.description
        assert preset.config.problems() == [] and budget.problems_of(preset.config) == []
        config = preset.config
        assert (config.network, config.task, config.hidden_size) == ("lstm", "digits", 10)
        assert (config.batch_size, config.epochs) == (32, 10)  # the source's


def test_presets_differ_only_in_clipping_and_twin_in_lock_step():
    clipped, plain = (PRESETS[n].config for n in ("digits_lstm_clipvalue", "digits_lstm_noclip"))
    assert (clipped.clip_mode, clipped.clip_value) == ("value", 0.5)
    # Every setting that matters for training is the same, but the clipping.
    assert clipped.replace(clip_mode="none").to_params() == plain.to_params()
    # The Lab's twin of the clipped preset is the unclipped preset, step for step.
    pair = LabRun(clipped.replace(epochs=2), clipped.replace(epochs=2, clip_mode="none"))
    pair.step(10_000)
    alone = Trainer(plain.replace(epochs=2)).run()
    for key in ("train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_array_equal(pair.twin.epoch_records()[key], alone.epoch_records()[key])
    np.testing.assert_array_equal(pair.twin.records()["loss"], alone.records()["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", SEEDS)
def test_presets_train_without_exploding_and_learn(name, seed):
    trainer = preset_run(name, seed)
    assert trainer.exploded_at is None and trainer.step_count == trainer.total_steps
    train, test = trainer.final_accuracies()
    # Guessing gets 10%; "most test digits right", as the description says.
    assert test[0] > 0.7 and train[0] > 0.7, (name, seed, train[0], test[0])
    clipped_steps = float(np.mean(trainer.records()["clipped"]))
    if name == "digits_lstm_clipvalue":
        # "few gradient components reach 0.5, so clipping changes few steps"
        assert 0 < clipped_steps < 0.15
    else:
        assert clipped_steps == 0


# ---- the chapter's study and verdict -------------------------------------------------


@pytest.fixture(scope="module")
def study() -> digits.Study:
    return digits.run_study(digits.DEFAULT_SEEDS)


@pytest.mark.slow
def test_study_runs_are_the_presets_runs(study):
    base = study.base_lr
    assert base == PRESETS["digits_lstm_noclip"].config.lr
    assert study.lrs == (base, *(base * f for f in digits.HIGHER_LR_FACTORS))
    for mode, name in digits.PRESET_NAMES.items():
        runs = study.at(base, mode)
        for seed in (0, 4):
            epochs = preset_run(name, seed).epoch_records()
            np.testing.assert_array_equal(runs.test_accuracy[seed], epochs["test_accuracy"])
            np.testing.assert_array_equal(runs.train_loss[seed], epochs["train_loss"])


@pytest.mark.slow
def test_higher_rates_are_lanes_of_the_same_runs(study):
    """Each higher rate's lane trains like a single run of that rate, up to float rounding:
    same start, same batches. Checked on the first epoch, before rounding can compound."""
    lr = study.higher_lrs[0]
    for mode in digits.MODES:
        single = Trainer(digits.preset_config(mode).replace(lr=lr, epochs=1, seed=0)).run()
        first = single.epoch_records()["train_loss"][0]
        assert study.at(lr, mode).train_loss[0, 0] == pytest.approx(first, rel=1e-4)


@pytest.mark.slow
def test_verdict_follows_the_runs(study):
    verdict = digits.verdict(study)
    base = study.base_lr
    plain = study.at(base, "none").test_accuracy[:, -1]
    clipped = study.at(base, "value").test_accuracy[:, -1]
    gains = clipped - plain
    assert verdict.median_gain == pytest.approx(float(np.median(gains)))
    assert verdict.wins == int((gains > 0).sum())
    assert verdict.outcome == digits.outcome_of(gains)
    words = " ".join(verdict.sentences)
    assert f"median {100 * np.median(clipped):.1f}% with clipping" in words
    assert f"against {100 * np.median(plain):.1f}% without" in words
    assert f"ahead in {verdict.wins} of {len(study.seeds)} seeds" in words
    # The higher rates: failures counted from the runs, sentence by sentence.
    for lr in study.higher_lrs:
        fails = [
            int((study.at(lr, m).final("test_accuracy") < 0.5).sum()) for m in ("none", "value")
        ]
        if verdict.rescue_lr is None:
            assert f"at learning rate {lr:g}, {fails[0]} unclipped and {fails[1]} clipped" in words
    assert verdict.rescue_lr == digits.rescue_lr(study)
    rows = {r["experiment"]: r for r in study.rows()}
    assert rows["digits_lstm_clipvalue"]["test_accuracy_per_seed"] == list(clipped)
    assert len(study.table()) == len(rows) == 2 * len(study.lrs)


def fake_study(base: dict[str, list[float]], higher: dict[float, dict[str, list[float]]]):
    """A study whose runs end at the given test accuracies (one epoch each)."""

    def setting(lr, mode, accuracies):
        n = len(accuracies)
        column = np.array(accuracies, dtype=float)[:, None]
        return digits.SettingRuns(
            lr=lr,
            clip_mode=mode,
            seeds=tuple(range(n)),
            exploded_at=(None,) * n,
            train_loss=np.ones((n, 1)),
            test_loss=np.ones((n, 1)),
            train_accuracy=column,
            test_accuracy=column,
            clipped_steps=(0.0,) * n if mode == "none" else (0.1,) * n,
            max_abs_grad=(1.0,) * n,
        )

    runs = {(0.1, m): setting(0.1, m, base[m]) for m in digits.MODES}
    for lr, by_mode in higher.items():
        runs.update({(lr, m): setting(lr, m, by_mode[m]) for m in digits.MODES})
    n = len(base["none"])
    return digits.Study(0.1, (0.1, *higher), tuple(range(n)), runs)


FINE = {"none": [0.8] * 5, "value": [0.8] * 5}


@pytest.mark.parametrize(
    ("clipped", "outcome", "words"),
    [
        ([0.85, 0.83, 0.86, 0.9, 0.82], "helped", "Here clip-by-value helped"),
        ([0.79, 0.78, 0.75, 0.7, 0.77], "hurt", "made training worse in every seed"),
        ([0.85, 0.78, 0.86, 0.7, 0.82], "no_difference", "made no consistent difference"),
        ([0.805, 0.803, 0.806, 0.809, 0.802], "no_difference", "no consistent difference"),
    ],
)
def test_verdict_outcome_follows_the_numbers(clipped, outcome, words):
    study = fake_study({"none": [0.8] * 5, "value": clipped}, {1.0: FINE})
    verdict = digits.verdict(study)
    assert verdict.outcome == outcome
    assert words in " ".join(verdict.sentences)
    assert verdict.wins == sum(c > 0.8 for c in clipped)


def test_two_seeds_are_too_few_for_a_verdict():
    study = fake_study(
        {"none": [0.8, 0.8], "value": [0.9, 0.9]}, {1.0: {"none": [0.8] * 2, "value": [0.8] * 2}}
    )
    verdict = digits.verdict(study)
    assert verdict.outcome == "too_few_seeds"
    assert "too few" in verdict.sentences[2]


def test_rescue_needs_unstable_unclipped_and_no_failed_clipped_run():
    higher = {
        1.0: {"none": [0.4, 0.8, 0.8, 0.8, 0.8], "value": [0.8] * 5},  # 1 of 5: not unstable
        3.0: {"none": [0.3, 0.2, 0.4, 0.8, 0.8], "value": [0.6] * 5},  # 3 of 5, none clipped
        10.0: {"none": [0.1] * 5, "value": [0.1] * 5},
    }
    study = fake_study(FINE, higher)
    verdict = digits.verdict(study)
    assert verdict.rescue_lr == 3.0
    assert "at 3, 3 of 5 unclipped runs failed" in verdict.sentences[3]
    # Without the rescuing rate, the sentence says none was found and counts seed by seed.
    del higher[3.0]
    verdict = digits.verdict(fake_study(FINE, higher))
    assert verdict.rescue_lr is None
    assert verdict.sentences[3].startswith("No higher learning rate we tried")
    assert "rescued 1 run that failed without it and broke 0 runs" in verdict.sentences[3]


def test_step_bound_is_lr_times_c_over_one_minus_momentum():
    config = PRESETS["digits_lstm_clipvalue"].config
    assert digits.step_bound(1.0) == pytest.approx(0.5 / (1 - 0.9))
    assert digits.step_bound(config.lr) == pytest.approx(config.lr * config.clip_value / 0.1)


def test_study_refuses_a_bad_seed_count():
    with pytest.raises(ValueError, match="n_seeds"):
        digits.run_study(0)


# ---- figures ----------------------------------------------------------------------------


def test_lab_chart_draws_accuracy_on_its_own_axis_for_the_digits():
    clipped = PRESETS["digits_lstm_clipvalue"].config.replace(epochs=2)
    pair = LabRun(clipped, clipped.replace(clip_mode="none"))
    pair.step(10_000)
    traces = [
        RunTrace.from_result(pair.primary.result(), "clip"),
        RunTrace.from_result(pair.twin.result(), "none", secondary=True),
    ]
    for figure, axis in ((lab_figure(traces), "y6"), (loss_figure(traces), "y2")):
        accuracy = [t for t in figure.data if t.yaxis == axis]
        assert len(accuracy) == 4  # train and test, for each run
        layout = figure.layout[f"yaxis{axis[1:]}"]
        assert tuple(layout.range) == (0, 100) and layout.overlaying == "y"
        assert "%" in layout.title.text
        test = [t for t in accuracy if "test accuracy" in t.name]  # the primary's first
        expected = 100 * pair.primary.epoch_records()["test_accuracy"]
        np.testing.assert_allclose(test[0].y, expected)
        assert {t.line.color for t in accuracy} == {"#0072B2", "#D55E00"}
    # Regression runs draw no accuracy axis.
    mlp = Trainer(DEFAULT.replace(epochs=1)).run()
    assert "yaxis6" not in lab_figure([RunTrace.from_result(mlp.result())]).layout.to_plotly_json()


def test_chapter_figures_draw_median_and_band():
    study = fake_study(
        {"none": [0.7, 0.8, 0.9], "value": [0.6, 0.8, 0.95]},
        {1.0: {"none": [0.3, 0.4, 0.5], "value": [0.2, 0.5, 0.6]}},
    )
    curves = recurrent_figures.study_curves_figure(study)
    medians = [t for t in curves.data if t.mode == "lines+markers" and t.yaxis == "y2"]
    assert sorted(float(t.y[-1]) for t in medians) == [80.0, 80.0]
    bands = [t for t in curves.data if t.fill == "toself" and t.yaxis == "y2"]
    assert {(min(t.y), max(t.y)) for t in bands} == {(70.0, 90.0), (60.0, 95.0)}
    lrs = recurrent_figures.study_lr_figure(study)
    assert lrs.layout.xaxis.type == "log"
    median_lines = [t for t in lrs.data if t.mode == "lines"]
    assert [list(t.y) for t in median_lines] == [[80.0, 40.0], [80.0, 50.0]]


# ---- the command line ------------------------------------------------------------------


@pytest.mark.slow
def test_reproduce_digits_json(study, capsys):
    assert main(["reproduce", "--experiment", "digits_lstm", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["experiment"] == "digits_lstm" and document["seeds"] == 5
    rows = {r["experiment"]: r for r in document["rows"]}
    assert list(rows)[:2] == ["digits_lstm_noclip", "digits_lstm_clipvalue"]
    for row in rows.values():
        assert {"runs", "exploded_runs", "failed_runs", "train_loss_median", "test_loss_median",
                "train_accuracy_median", "test_accuracy_median", "lr", "clip_mode"} <= set(row)  # fmt: skip
        assert row["runs"] == 5
    plain = rows["digits_lstm_noclip"]
    finals = [preset_run("digits_lstm_noclip", s).final_accuracies()[1][0] for s in SEEDS]
    assert plain["test_accuracy_median"] == pytest.approx(float(np.median(finals)))
    assert plain["test_accuracy_median"] > 0.7 and plain["exploded_runs"] == 0
    assert document["verdict"] == digits.verdict(study).as_dict()


@pytest.mark.slow
def test_reproduce_digits_table(study, capsys):
    assert main(["reproduce", "--experiment", "digits_lstm"]) == 0
    out = capsys.readouterr().out
    assert "digits_lstm_clipvalue" in out and "test acc (median)" in out
    assert digits.verdict(study).sentences[0] in out


def test_reproduce_digits_refuses_too_many_seeds(capsys):
    assert main(["reproduce", "--experiment", "digits_lstm", "--seeds", "50"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --seeds:") and err.count("\n") == 1
    assert main(["reproduce", "--experiment", "nope"]) == 2
    assert "argument --experiment" in capsys.readouterr().err


def test_train_json_reports_accuracy_for_the_digits_and_null_otherwise(capsys):
    assert main(["train", "--preset", "digits_lstm_noclip", "--epochs", "2", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    trainer = Trainer(PRESETS["digits_lstm_noclip"].config.replace(epochs=2)).run()
    train, test = trainer.final_accuracies()
    assert document["final_train_accuracy"] == train[0]
    assert document["final_test_accuracy"] == test[0]
    assert main(["train", "--preset", "tutorial_clip_norm", "--epochs", "1", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["final_train_accuracy"] is None and document["final_test_accuracy"] is None
