"""clipviz.engine.sweep: a cell of a sweep is the single run of its configuration; the CLI command.

A sweep trains its cells as lanes of one batched trainer, whose arithmetic
(fused products, another summation order) rounds differently in the last bit
from a single run's. Away from the stability boundary that stays within float
tolerance, which is what these tests check; on the boundary a last-bit
difference can grow without limit (that is what makes it fractal), so the
cells chosen here sit clear of it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from clipviz import cli
from clipviz.engine.config import DEFAULT, TrainConfig
from clipviz.engine.sweep import (
    SweepError,
    SweepSpec,
    TargetSpec,
    base_config,
    log_edges,
    run_sweep,
    run_target_sweep,
    target_rows,
)
from clipviz.engine.trainer import Trainer
from clipviz.figures import stability as figures

SPEC = SweepSpec(grid=4, epochs=4, lr_range=(1e-3, 0.3), threshold_range=(0.1, 100.0))


@pytest.fixture(scope="module")
def small_sweep():
    fractions: list[float] = []
    result = run_sweep(SPEC, progress=fractions.append)
    return result, fractions


def single_run(config: TrainConfig) -> Trainer:
    return Trainer(config, record="full").run()


# (clip mode, row = threshold index, col = lr index): two unclipped (one explodes),
# two clipped by norm and two by value, all clear of the chaotic boundary.
CELLS = [
    ("none", 0, 0),
    ("none", 0, 3),
    ("norm", 2, 1),
    ("norm", 1, 2),
    ("value", 1, 1),
    ("value", 2, 0),
]


@pytest.mark.parametrize("mode,row,col", CELLS)
def test_a_cell_equals_the_single_run_of_its_configuration(small_sweep, mode, row, col):
    result, _ = small_sweep
    m = result.maps[mode]
    config = result.cell_config(mode, row, col)
    assert config.clip_mode == mode and config.lr == m.lrs[col] and config.seed == 1
    single = single_run(config)
    train, test = single.final_losses(original_units=True)
    assert (m.exploded_at[row, col] or None) == single.exploded_at
    if single.exploded_at is not None:
        assert m.status[row, col] == "diverged" and math.isnan(m.final_loss[row, col])
        return
    np.testing.assert_allclose(m.final_loss[row, col], train[0], rtol=1e-3)
    np.testing.assert_allclose(m.final_test_loss[row, col], test[0], rtol=1e-3)
    if mode != "none":  # the clipped cells really clipped
        assert single.result().clipped_fraction > 0


def test_the_sweep_covers_every_outcome_and_reports_progress(small_sweep):
    result, fractions = small_sweep
    assert result.networks == 4 + 16 + 16 and result.steps == 4 * 16
    assert result.maps["none"].counts()["diverged"] >= 2  # the unscaled target explodes
    assert not result.maps["norm"].diverged.any()  # clipping by norm keeps it finite
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    trained, diverged = result.maps["none"].lr_boundary()
    assert trained < diverged


def test_cells_list_every_configuration_for_json(small_sweep):
    result, _ = small_sweep
    cells = result.cells()
    assert len(cells) == result.networks
    for cell in cells:
        assert set(cell) >= {"lr", "threshold", "clip_mode", "final_loss", "diverged"}
        assert (cell["final_loss"] is None) == cell["diverged"]
        assert (cell["threshold"] is None) == (cell["clip_mode"] == "none")
    json.dumps(result.as_dict(), allow_nan=False)


@pytest.mark.parametrize(
    "changes",
    [
        {"depth": 2, "activation": "tanh", "clip_mode": "norm"},
        {"momentum": 0.0, "clip_mode": "value", "target_scaling": "standardize"},
        {"optimizer": "adam", "clip_mode": "norm_per_tensor"},
        {"depth": 3, "width": 1, "clip_mode": "norm"},  # a one-unit hidden layer
    ],
)
def test_lanes_follow_single_runs_on_every_model_path(changes):
    config = DEFAULT.replace(epochs=2, lr=0.003, **changes)
    lrs, norms = [0.003, 0.001], [1.0, 3.0]
    lanes = Trainer(config, n_lanes=2, lr=lrs, clip_norm=norms, record="summary").run()
    for lane, (lr, c) in enumerate(zip(lrs, norms, strict=True)):
        single = Trainer(config.replace(lr=lr, clip_norm=c), record="summary").run()
        np.testing.assert_allclose(
            lanes.records(lane)["loss"], single.records()["loss"], rtol=1e-4, atol=1e-7
        )


def test_a_target_scale_cell_equals_its_single_run():
    spec = TargetSpec(grid=3, epochs=2, clip_modes=("none", "norm"), lr_range=(1e-4, 1e-3))
    result = run_target_sweep(spec)
    m = result.maps["norm"]
    assert list(m.multipliers).count(1.0) == 1
    for row in range(3):
        config = spec.base.replace(clip_mode="norm", lr=float(m.lrs[0]))
        single = Trainer(config, target_multiplier=[m.multipliers[row]], record="summary").run()
        train, _ = single.final_losses()
        ratio = train[0] / single.data.to_original_mse(single.initial_train_loss[0])
        np.testing.assert_allclose(m.loss_ratio[row, 0], ratio, rtol=1e-3)
    unscaled = int(np.flatnonzero(m.multipliers == 1.0)[0])
    assert result.cell_config("norm", unscaled, 0).clip_mode == "norm"
    assert result.cell_config("norm", (unscaled + 1) % 3, 0) is None  # not a Lab setting


def test_a_recurrent_cell_equals_its_single_run():
    spec = SweepSpec(network="rnn", grid=2, epochs=1, clip_modes=("none", "norm"))
    result = run_sweep(spec)
    config = result.cell_config("norm", 1, 0)
    assert config.network == "rnn" and config.seq_len == base_config("rnn").seq_len
    single = Trainer(config, record="summary").run()
    train, _ = single.final_losses()
    np.testing.assert_allclose(result.maps["norm"].final_loss[1, 0], train[0], rtol=1e-3)


def test_threads_are_restored():
    before = torch.get_num_threads()
    run_sweep(SweepSpec(grid=2, epochs=1, clip_modes=("norm",)), threads=2)
    assert torch.get_num_threads() == before


def test_grids_and_edges():
    assert list(target_rows(142.8, 0.01, 1e4, 16)).count(1.0) == 1
    edges = log_edges(np.array([0.01, 0.1, 1.0]))
    np.testing.assert_allclose(np.log10(edges), [-2.5, -1.5, -0.5, 0.5])
    with pytest.raises(SweepError) as bad:
        SweepSpec(grid=200).validated()
    assert bad.value.key == "grid"
    with pytest.raises(SweepError) as bad:
        SweepSpec(lr_range=(0.1, 0.01)).validated()
    assert bad.value.key == "lr-max"


# ---- figures ------------------------------------------------------------------------


def test_maps_figure_shares_one_colour_scale_and_marks_cells(small_sweep):
    result, _ = small_sweep
    marker = figures.Marker("norm", 0.01, 1.0, "your Lab run")
    fig = figures.clip_maps_figure(result, marker=marker, selected=figures.Cell("value", 1, 2))
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert {t.coloraxis for t in heatmaps if t.coloraxis} == {"coloraxis"}
    assert any(t.showscale is False for t in heatmaps)  # the grey layer of diverged cells
    cells = [t for t in fig.data if t.name == "cells"]
    assert len(cells) == 3 and "lr " in cells[1].text[0]
    assert any(t.type == "scatter" and t.marker.symbol == "star" for t in fig.data)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    point = {"customdata": list(cells[2].customdata[5])}
    assert figures.cell_from_selection([point]) == figures.Cell("value", 1, 1)
    assert figures.cell_from_selection([]) is None


# ---- the command line ------------------------------------------------------------------


def test_sweep_command_prints_the_contract_json(capsys):
    code = cli.main(
        ["sweep", "--grid", "3", "--epochs", "1", "--clip-modes", "none,norm,value", "--json"]
    )
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert {"grid", "networks", "seconds", "cells"} <= set(document)
    assert document["grid"] == 3 and document["networks"] == 3 + 9 + 9
    assert document["seconds"] > 0 and document["seconds_per_network"] > 0
    assert len(document["cells"]) == document["networks"]
    modes = {c["clip_mode"] for c in document["cells"]}
    assert modes == {"none", "norm", "value"}


def test_sweep_command_prints_a_table_by_default(capsys):
    assert cli.main(["sweep", "--grid", "2", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "clip mode" in out and "networks in" in out and "norm" in out


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--grid", "1"], "--grid"),
        (["--grid", "65"], "--grid"),
        (["--network", "lstm", "--grid", "40"], "--grid"),
        (["--epochs", "0"], "--epochs"),
        (["--clip-modes", "norm,sideways"], "--clip-modes"),
        (["--clip-modes", ","], "--clip-modes"),
        (["--lr-min", "0"], "--lr-min"),
        (["--lr-min", "0.1", "--lr-max", "0.01"], "--lr-max"),
        (["--threshold-max", "nan"], "--threshold-max"),
        (["--lr-min", "fast"], "--lr-min"),
        (["--seed", "-1"], "--seed"),
        (["--network", "cnn"], "--network"),
        (["--colour", "red"], "--colour"),
    ],
)
def test_bad_sweep_arguments_exit_2_with_one_line(capsys, args, flag):
    assert cli.main(["sweep", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and flag in err
