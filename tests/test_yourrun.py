"""Your run diagnosed: logs read from every kind of CSV, spikes as ZClip sees them, thresholds
whose clipped fractions are counted independently, bad files refused in one line, and the
``diagnose`` command."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch

from clipviz.app.export import records_csv
from clipviz.app.lab import LabRun
from clipviz.cli import main
from clipviz.engine import budget
from clipviz.engine.config import TrainConfig
from clipviz.engine.trainer import Trainer
from clipviz.lessons import yourrun
from clipviz.lessons.diagnose import signs_of


def log_csv(norms, *, loss=None) -> bytes:
    lines = ["step,grad_norm" + (",loss" if loss is not None else "")]
    for i, norm in enumerate(norms):
        cells = [str(i + 1), repr(float(norm))]
        if loss is not None:
            cells.append(repr(float(loss[i])))
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def quiet_norms(n: int = 200) -> np.ndarray:
    """Norms that wander smoothly around 1: nothing a z-score of 2.5 would call a spike."""
    return 1.0 + 0.05 * np.sin(np.arange(n) / 3.0)


def diagnosed(raw: bytes, **kwargs) -> yourrun.RunDiagnosis:
    result = yourrun.diagnose_bytes(raw, **kwargs)
    assert not isinstance(result, list), result
    return result


# ---- spikes -------------------------------------------------------------------------


def test_a_known_spike_is_named_at_its_step():
    norms = quiet_norms()
    norms[119] = 10.0  # step 120
    result = diagnosed(log_csv(norms))
    assert result.spikes.steps == [120]
    assert result.as_dict()["spikes"] == [120]


def test_no_spike_is_seen_during_the_warm_up():
    norms = quiet_norms()
    norms[9] = 1000.0  # step 10, inside ZClip's 25-step warm-up
    assert diagnosed(log_csv(norms)).spikes.steps == []


def zclip_clipped_steps(norms: np.ndarray, **kwargs) -> list[int]:
    """The steps the zclip package itself clips, fed the same norms (its own arithmetic)."""
    from zclip import ZClip

    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    model = torch.nn.Module()
    model.p = param
    clipper = ZClip(max_grad_norm=None, **kwargs)
    clipped = []
    for step, norm in enumerate(norms, start=1):
        param.grad = torch.tensor([norm], dtype=torch.float64)
        clipper.step(model)
        if float(param.grad[0]) != norm:
            clipped.append(step)
    return clipped


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spikes_are_the_steps_the_zclip_package_clips(seed):
    rng = np.random.default_rng(seed)
    norms = np.exp(rng.normal(0.0, 0.3, size=400))
    norms[rng.choice(np.arange(30, 400), size=6, replace=False)] *= 20
    ours = yourrun.zscore_spikes(np.arange(1, 401), norms).steps
    assert ours == zclip_clipped_steps(norms)
    assert len(ours) >= 6
    rule = yourrun.SpikeRule(alpha=0.9, z=2.0, warmup=10)
    assert yourrun.zscore_spikes(np.arange(1, 401), norms, rule).steps == zclip_clipped_steps(
        norms, alpha=0.9, z_thresh=2.0, warmup_steps=10
    )


# ---- thresholds and percentiles ------------------------------------------------------


def test_each_threshold_clips_exactly_the_share_of_logged_norms_above_it():
    rng = np.random.default_rng(7)
    norms = np.exp(rng.normal(1.0, 1.0, size=333))
    norms[[50, 51]] = np.inf  # an infinite norm is above every threshold
    norms[52] = np.nan  # a NaN norm is not counted
    raw = log_csv(norms)
    result = diagnosed(raw)
    # Counted again from the file, with the csv module: no shared code.
    logged = [float(row["grad_norm"]) for row in csv.DictReader(io.StringIO(raw.decode()))]
    counted = [v for v in logged if not math.isnan(v)]
    assert len(counted) == 332
    for t in result.thresholds:
        above = sum(1 for v in counted if v > t.threshold)
        assert t.clipped_fraction == above / len(counted)
    assert [t.percentile for t in result.thresholds] == list(yourrun.SUGGESTED_PERCENTILES)
    finite = [v for v in counted if math.isfinite(v)]
    assert result.percentiles["50"] == pytest.approx(statistics.median(finite), rel=1e-12)
    assert set(result.percentiles) == {"50", "90", "99"}
    assert result.exploded_at == 51  # the first non-finite norm


# ---- the Lab's export, GradientLog, other tools ------------------------------------


def test_the_labs_own_export_reads_back_with_the_labs_signs():
    trainer = Trainer(TrainConfig(lr=0.0015)).run()  # limps, then explodes
    assert trainer.exploded_at is not None
    result = diagnosed(records_csv(trainer).encode())
    assert result.log.source == "clipviz"
    assert result.log.mapping == yourrun.ColumnMap("step", "grad_norm_before", "loss")
    assert result.steps == trainer.step_count
    assert result.exploded_at == trainer.exploded_at
    np.testing.assert_allclose(result.log.grad_norm, trainer.records()["grad_norm"], rtol=1e-8)
    # The same detector on the same records: the same signs at the same steps.
    lab = [(f.key, f.step) for f in signs_of(trainer)]
    ours = [(f.key, f.step) for f in result.findings]
    assert ours == lab and lab


def test_a_twin_export_reads_one_run_at_a_time():
    clipped = TrainConfig(clip_mode="norm", epochs=2)
    twin = LabRun(clipped, clipped.replace(clip_mode="none"))
    twin.step(64)
    raw = records_csv([("clipped", twin.primary), ("unclipped", twin.twin)]).encode()
    log = yourrun.read_log(raw)
    assert log.runs == ("clipped", "unclipped")
    first = yourrun.select(log)
    assert first.run == "clipped" and first.steps == 32
    second = yourrun.select(log, run="unclipped")
    np.testing.assert_allclose(second.grad_norm, twin.twin.records()["grad_norm"][:32], rtol=1e-8)
    assert "no run 'other'" in yourrun.select(log, run="other")[0]


def test_a_tensorboard_scalar_export_reads():
    norms = quiet_norms(60)
    raw = "Wall time,Step,Value\n" + "".join(
        f"{1700000000 + i * 0.5},{10 * (i + 1)},{v}\n" for i, v in enumerate(norms)
    )
    result = diagnosed(raw.encode())
    assert result.log.source == "TensorBoard"
    assert result.log.mapping == yourrun.ColumnMap("Step", "Value", None)
    assert result.log.step.tolist() == list(range(10, 610, 10))
    assert any("no loss column" in n for n in result.notes)


def test_a_wandb_export_with_gaps_reads():
    rows = ["Step,run-1 - train/loss,run-1 - train/grad_norm,run-1 - train/grad_norm__MIN"]
    for i in range(1, 81):
        norm = f"{1 + 0.1 * math.sin(i)}" if i % 2 == 0 else ""  # logged every other step
        rows.append(f"{i},{2.0 / i},{norm},{norm}")
    result = diagnosed(("\n".join(rows) + "\n").encode())
    assert result.log.source == "Weights & Biases"
    assert result.log.mapping == yourrun.ColumnMap(
        "Step", "run-1 - train/grad_norm", "run-1 - train/loss"
    )
    assert result.steps == 40 and result.log.step[0] == 2
    assert any("40 rows without a gradient norm" in n for n in result.notes)


def test_other_names_are_mapped_by_hand():
    raw = b"it,gn,objective\n" + b"".join(
        f"{i},{1 + i % 3},{5 - i / 100}\n".encode() for i in range(50)
    )
    log = yourrun.read_log(raw)
    assert log.guess is None
    assert "no column looks like a gradient norm" in yourrun.select(log)[0]
    chosen = yourrun.select(log, yourrun.ColumnMap("it", "gn", "objective"))
    result = yourrun.diagnose(chosen)
    assert result.steps == 50 and result.log.loss is not None


def test_a_gradient_log_file_reads_back(tmp_path):
    from clipviz import GradientLog

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    with GradientLog(model, path=tmp_path / "run.csv") as log:
        for _ in range(30):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            log.step(loss, optimizer)
            optimizer.step()
    result = diagnosed((tmp_path / "run.csv").read_bytes())
    assert result.log.source == "GradientLog" and result.steps == 30
    np.testing.assert_allclose(result.log.grad_norm, log.records()["grad_norm"], rtol=1e-7)
    assert set(result.log.layer_norms) == {"0", "2"}


# ---- bad files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"", "the file is empty"),
        (b"PK\x03\x04...", "zip archive"),
        (b"step,grad_norm\n1,\xff\n", "not UTF-8 text"),
        (b"grad_norm\n1\n2\n", "only one column"),
        (b"step,grad_norm\n1,2\n", "too few rows"),
        (b"a,b\nx,y\nz,w\n", "no column holds numbers only"),
        (
            b"step,grad_norm\n1,2\n2,oops\n3,4\n",
            "'grad_norm' has a cell that is not a number on line 3",
        ),
        (
            b"step,grad_norm\n1,2\n3,2\n2,2\n",
            "steps must increase down the file: line 4 has step 2 after step 3",
        ),
        (b"step,grad_norm\n1,2\n2,-1\n3,4\n", "a gradient norm is never negative"),
        (b"step,grad_norm\n1,nan\n2,inf\n3,nan\n", "holds no finite number"),
        (b"step,grad_norm\n1,2\n,2\n3,4\n", "line 3 has an empty step"),
        (b"x,y\n1,2\n2,3\n", "no column looks like a gradient norm"),
    ],
)
def test_each_bad_log_gets_its_one_line_message(raw, words):
    result = yourrun.diagnose_bytes(raw)
    assert isinstance(result, list) and words in result[0], result
    assert "\n" not in result[0]


def test_a_log_over_the_upload_limit_is_refused():
    raw = b"step,grad_norm\n" + b"1,1\n" * (budget.MAX_UPLOAD_BYTES // 4)
    assert "above the limit of 5 MB" in yourrun.diagnose_bytes(raw)[0]


# ---- the command line ------------------------------------------------------------------


def test_diagnose_json_has_the_contract_fields(tmp_path):
    norms = quiet_norms()
    norms[119] = 10.0
    path = tmp_path / "run.csv"
    path.write_bytes(log_csv(norms, loss=np.linspace(5, 1, norms.size)))
    proc = subprocess.run(
        [sys.executable, "-m", "clipviz", "diagnose", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {"steps", "signs", "spikes", "norm_percentiles", "suggested_thresholds"} <= set(doc)
    assert doc["steps"] == 200 and doc["spikes"] == [120]
    assert set(doc["norm_percentiles"]) == {"50", "90", "99"}
    for t in doc["suggested_thresholds"]:
        assert set(t) == {"threshold", "percentile", "clipped_fraction"}
        assert t["clipped_fraction"] == np.count_nonzero(norms > t["threshold"]) / norms.size
    for sign in doc["signs"]:
        assert {"sign", "step", "detail"} <= set(sign)


def test_diagnose_prints_a_readable_table(tmp_path, capsys):
    raw = yourrun.example_log("explodes")
    path = tmp_path / "example.csv"
    path.write_bytes(raw)
    assert main(["diagnose", str(path)]) == 0
    out = capsys.readouterr().out
    result = diagnosed(raw)
    assert f"{result.steps:,} steps" in out and f"exploded at step {result.exploded_at}" in out
    for finding in result.findings:
        assert finding.sign.title in out
    assert "Suggested clip thresholds" in out and "90th" in out


def test_diagnose_takes_columns_and_a_run(tmp_path, capsys):
    path = tmp_path / "odd.csv"
    path.write_bytes(b"it,gn\n" + b"".join(f"{i},{1 + i % 3}\n".encode() for i in range(40)))
    assert main(["diagnose", str(path)]) == 2
    assert "no column looks like a gradient norm" in capsys.readouterr().err
    assert (
        main(["diagnose", str(path), "--step-column", "it", "--norm-column", "gn", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["steps"] == 40


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "no such file"),
        (b"", "the file is empty"),
        (b"step,grad_norm\n1,2\n2,x\n", "not a number on line 3"),
    ],
)
def test_diagnose_bad_files_exit_2_with_one_line(tmp_path, capsys, content, words):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content)
    assert main(["diagnose", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1


def test_diagnose_bad_column_names_exit_2(tmp_path, capsys):
    path = tmp_path / "run.csv"
    path.write_bytes(log_csv(quiet_norms(30)))
    assert main(["diagnose", str(path), "--norm-column", "nope"]) == 2
    assert "there is no column 'nope'" in capsys.readouterr().err


# ---- the figures ---------------------------------------------------------------------------


def test_the_figures_draw_the_diagnosis():
    from clipviz.figures import yourrun as figures

    norms = quiet_norms()
    norms[119] = 10.0
    result = diagnosed(log_csv(norms, loss=np.linspace(5, 1, norms.size)))
    fig = figures.norm_figure(result)
    assert fig.layout.yaxis.type == "log"
    spikes = next(t for t in fig.data if t.name.startswith("spike ("))
    assert list(spikes.x) == [120] and list(spikes.y) == [10.0]
    assert any(t.name == "loss" for t in fig.data)
    hist = figures.distribution_figure(result)
    assert hist.layout.xaxis.type == "log"
    edges, counts = figures.log_bins(result.log.grad_norm)
    assert counts.sum() == norms.size  # every (finite, positive) norm is in a bin
    lines = sorted(shape.x0 for shape in hist.layout.shapes)
    assert lines == sorted(t.threshold for t in result.thresholds)
