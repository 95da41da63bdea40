"""Exports: the per-step CSV, and the PyTorch and Keras scripts, which must run as shown.

The generated PyTorch scripts are executed (with a small ``epochs``) in a
subprocess, one after the other in the same interpreter so that torch is
imported once, and must print the same epoch losses as the Lab's trainer for
the same configuration. The Keras script is compiled for every network and
clip mode, and run once, in parallel, when Keras 3 is installed (with the
PyTorch backend).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import itertools
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from clipviz.app.export import keras_script, pytorch_script, records_csv, script_filename
from clipviz.engine.config import CLIP_MODES, NETWORKS, PRESETS, TrainConfig
from clipviz.engine.labstate import lab_url
from clipviz.engine.records import CORE_COLUMNS, CSV_NAME
from clipviz.engine.trainer import STEP_FIELDS, Trainer

EPOCH_LINE = re.compile(r"^epoch (\d+): train (?:MSE|cross-entropy) (\S+), test \S+ ([^\s,]+)")
# For the digits the same line goes on with the accuracies, e.g.
# ", train accuracy 26.70% (267 of 1000), test accuracy 21.46% (171 of 797)".
ACCURACY = re.compile(
    r", train accuracy [\d.]+% \((\d+) of (\d+)\), test accuracy [\d.]+% \((\d+) of (\d+)\)$"
)

# Configurations whose scripts are run, and the trainer they must agree with.
RUN_CONFIGS = {
    "mlp_clip_norm": PRESETS["tutorial_clip_norm"].config.replace(epochs=2),
    "mlp_unscaled": PRESETS["tutorial_unscaled"].config.replace(epochs=2),
    "mlp_adam_norm_value_decay": TrainConfig(
        optimizer="adam",
        lr=0.01,
        clip_mode="norm_value",
        clip_value=0.5,
        weight_decay=0.01,
        depth=2,
        target_scaling="standardize",
        epochs=2,
    ),
    "lstm_layerwise_tbptt": TrainConfig(
        network="lstm",
        seq_len=12,
        n_train=64,
        hidden_size=8,
        tbptt=5,
        clip_mode="layerwise_value",
        clip_value=1.0,
        epochs=2,
    ),
    "mlp_diabetes": TrainConfig(data="diabetes", clip_mode="norm", epochs=2),
    "mlp_friedman_standardized": TrainConfig(
        data="friedman", target_scaling="standardize", epochs=2
    ),
    "rnn_digits_per_tensor": TrainConfig(
        network="rnn",
        task="digits",
        n_train=64,
        recurrent_scale=1.2,
        clip_mode="norm_per_tensor",
        epochs=1,
    ),
    "lstm_digits_clipvalue": PRESETS["digits_lstm_clipvalue"].config.replace(epochs=2),
}
DIGITS_RUNS = ("rnn_digits_per_tensor", "lstm_digits_clipvalue")
KERAS_CONFIG = PRESETS["tutorial_clip_norm"].config.replace(epochs=1)


@dataclass
class ScriptRun:
    returncode: int
    stdout: str
    stderr: str


# Runs each script as `python script.py` would (run_name "__main__"), one after
# the other, and reports each one's exit status and output as JSON.
DRIVER = """
import contextlib, io, json, runpy, sys, traceback
results = {}
for path in sys.argv[1:]:
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results[path] = {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
print(json.dumps(results))
"""


def _start(args: list[str], folder, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=folder,  # away from the repo: the scripts need no clipviz
        env=env,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory) -> dict[str, ScriptRun]:
    """Run every generated script; results by name ("keras" only if Keras is installed)."""
    folder = tmp_path_factory.mktemp("scripts")
    paths = {}
    for name, config in RUN_CONFIGS.items():
        paths[name] = folder / f"{name}.py"
        paths[name].write_text(pytorch_script(config))
    (folder / "driver.py").write_text(DRIVER)
    torch_proc = _start(["driver.py", *(str(p) for p in paths.values())], folder)
    keras_proc = None
    if importlib.util.find_spec("keras") is not None:
        (folder / "keras_run.py").write_text(keras_script(KERAS_CONFIG))
        env = dict(os.environ, KERAS_BACKEND="torch")
        keras_proc = _start(["keras_run.py"], folder, env)
    code, out, err = _finish(torch_proc)
    assert code == 0, err[-3000:]
    results = json.loads(out.strip().splitlines()[-1])
    runs = {name: ScriptRun(**results[str(path)]) for name, path in paths.items()}
    if keras_proc is not None:
        runs["keras"] = ScriptRun(*_finish(keras_proc))
    return runs


def epoch_losses(stdout: str) -> list[tuple[float, float]]:
    found = [EPOCH_LINE.match(line.strip()) for line in stdout.splitlines()]
    return [(float(m.group(2)), float(m.group(3))) for m in found if m]


# ---- CSV ------------------------------------------------------------------------


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_has_one_row_per_step_with_every_record():
    trainer = Trainer(PRESETS["tutorial_clip_norm"].config)
    trainer.step(40)
    rows = parse_csv(records_csv(trainer))
    records = trainer.records()
    assert len(rows) == 40
    assert list(rows[0])[: len(CORE_COLUMNS)] == list(CORE_COLUMNS)
    for name in STEP_FIELDS:
        values = np.array([float(r[CSV_NAME.get(name, name)]) for r in rows])
        np.testing.assert_allclose(values, records[name], rtol=1e-7)
    for i, layer in enumerate(trainer.layout.layer_names):
        values = np.array([float(r[f"grad_norm[{layer}]"]) for r in rows])
        np.testing.assert_allclose(values, records["layer_grad_norm"][:, i], rtol=1e-7)


def test_csv_gives_the_epoch_losses_on_the_last_step_of_each_epoch():
    trainer = Trainer(PRESETS["tutorial_clip_norm"].config)
    trainer.step(2 * trainer.batches_per_epoch + 3)
    rows = parse_csv(records_csv(trainer))
    filled = [r for r in rows if r["epoch_train_loss"]]
    assert [int(r["step"]) for r in filled] == [16, 32]
    epochs = trainer.epoch_records()
    np.testing.assert_allclose(
        [float(r["epoch_train_loss"]) for r in filled], epochs["train_loss"], rtol=1e-7
    )
    np.testing.assert_allclose(
        [float(r["epoch_test_loss"]) for r in filled], epochs["test_loss"], rtol=1e-7
    )


def test_csv_of_a_twin_run_names_each_row_and_writes_nan_at_the_explosion():
    clipped = PRESETS["tutorial_clip_norm"].config
    primary, twin = Trainer(clipped), Trainer(clipped.replace(clip_mode="none"))
    for trainer in (primary, twin):
        trainer.step(30)
    rows = parse_csv(records_csv([("clipped", primary), ("unclipped", twin)]))
    assert list(rows[0])[0] == "run"
    exploded = twin.exploded_at
    assert exploded is not None
    assert [r["run"] for r in rows] == ["clipped"] * 30 + ["unclipped"] * exploded
    last = rows[-1]
    assert not math.isfinite(float(last["loss"]))  # "nan" or "inf" reads back as such


def test_csv_of_an_empty_run_is_just_the_header():
    text = records_csv(Trainer(PRESETS["tutorial_clip_norm"].config))
    assert text.count("\n") == 1
    assert text.startswith(
        "step,loss,grad_norm_before,grad_norm_after,clip_threshold,clipped,skipped,"
    )


# ---- PyTorch script ----------------------------------------------------------------------

ALL_CONFIGS = [
    TrainConfig(network=network, clip_mode=mode, optimizer=optimizer, task=task)
    for network, mode, optimizer, task in itertools.product(
        NETWORKS, CLIP_MODES, ("sgd", "adam"), ("adding", "digits")
    )
    if network != "mlp" or task == "adding"
]


@pytest.mark.parametrize(
    "config", ALL_CONFIGS, ids=lambda c: f"{c.network}-{c.clip_mode}-{c.optimizer}-{c.task}"
)
def test_scripts_compile_for_every_network_clip_mode_and_optimizer(config):
    for source in (pytorch_script(config), keras_script(config)):
        compile(source, "<generated>", "exec")


def test_script_names_its_settings_and_how_to_run_it():
    config = PRESETS["tutorial_clip_norm"].config
    source = pytorch_script(config)
    assert lab_url(config) in source
    assert f"python {script_filename(config, 'pytorch')}" in source
    assert "clip_grad_norm_(parameters, CLIP_NORM)" in source
    assert "CLIP_NORM = 1\n" in source and "EPOCHS = 100\n" in source
    assert "import clipviz" not in source and "from clipviz" not in source


def test_keras_script_uses_the_keras_name_of_each_rule():
    base = PRESETS["tutorial_clip_norm"].config
    assert "global_clipnorm=CLIP_NORM" in keras_script(base)
    assert "clipnorm=CLIP_NORM" in keras_script(base.replace(clip_mode="norm_per_tensor"))
    assert "clipvalue=CLIP_VALUE" in keras_script(base.replace(clip_mode="value"))
    assert "_clip_gradients" in keras_script(base.replace(clip_mode="norm_value"))


@pytest.mark.parametrize("name", [n for n in RUN_CONFIGS if n != "mlp_unscaled"])
def test_pytorch_script_runs_and_prints_the_labs_epoch_losses(script_runs, name):
    run = script_runs[name]
    assert run.returncode == 0, run.stderr[-2000:]
    config = RUN_CONFIGS[name]
    trainer = Trainer(config).run()
    epochs = trainer.epoch_records()
    printed = epoch_losses(run.stdout)
    assert len(printed) == config.epochs, run.stdout
    np.testing.assert_allclose(
        np.array(printed), np.column_stack([epochs["train_loss"], epochs["test_loss"]]), rtol=1e-4
    )


@pytest.mark.parametrize("name", DIGITS_RUNS)
def test_pytorch_script_prints_the_labs_accuracies_for_the_digits(script_runs, name):
    """Every epoch, the digits named right: the same counts as the Lab's trainer."""
    run = script_runs[name]
    assert run.returncode == 0, run.stderr[-2000:]
    epochs = Trainer(RUN_CONFIGS[name]).run().epoch_records()
    found = [ACCURACY.search(line) for line in run.stdout.splitlines() if EPOCH_LINE.match(line)]
    assert len(found) == RUN_CONFIGS[name].epochs and all(found), run.stdout
    counts = np.array([[int(g) for g in m.groups()] for m in found])  # right, n, right, n
    n_train, n_test = counts[0, 1], counts[0, 3]
    assert (n_train, n_test) == (RUN_CONFIGS[name].n_train, 797)
    np.testing.assert_array_equal(counts[:, 0], np.rint(epochs["train_accuracy"] * n_train))
    np.testing.assert_array_equal(counts[:, 2], np.rint(epochs["test_accuracy"] * n_test))


def test_keras_script_reports_accuracy_for_the_digits_only():
    digits = PRESETS["digits_lstm_clipvalue"].config
    assert 'SparseCategoricalAccuracy(name="accuracy")' in keras_script(digits)
    assert "clipvalue=CLIP_VALUE" in keras_script(digits)
    assert "metrics=" not in keras_script(PRESETS["tutorial_clip_norm"].config)


def test_pytorch_script_stops_at_the_labs_explosion_step(script_runs):
    run = script_runs["mlp_unscaled"]
    trainer = Trainer(RUN_CONFIGS["mlp_unscaled"]).run()
    assert trainer.exploded_at is not None
    assert run.returncode == 1
    assert f"Exploded at step {trainer.exploded_at}:" in run.stdout


def test_keras_script_runs_when_keras_is_installed(script_runs):
    run = script_runs.get("keras")
    if run is None:
        pytest.skip("keras is not installed")
    if "No module named" in run.stderr and run.returncode != 0:
        pytest.skip(f"keras cannot start here: {run.stderr.strip().splitlines()[-1]}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "final: train" in run.stdout


# ---- shipped data sets and your own upload --------------------------------------------------


@pytest.mark.parametrize(
    "data", ["reference", "diabetes", "friedman", "regression_noisy", "regression_large"]
)
def test_scripts_build_each_shipped_data_set_as_the_lab_does(data):
    """The script's data code, run on its own, gives the Lab's tensors."""
    from clipviz.app.export import _data_code
    from clipviz.engine.data import mlp_dataset

    config = TrainConfig(data=data, target_scaling="standardize")
    scope: dict = {"np": np, "TARGET_SCALING": config.target_scaling}
    exec(_data_code(config), scope)
    lab = mlp_dataset(data, config.target_scaling)
    for name, tensor in (("x_train", lab.x_train), ("x_test", lab.x_test)):
        np.testing.assert_array_equal(np.asarray(scope[name], dtype=np.float32), tensor.numpy())
    np.testing.assert_array_equal(
        np.asarray(scope["y_test"], dtype=np.float32), lab.y_test[:, 0].numpy()
    )


def uploaded(tmp_path, filename="my data (1).csv"):
    from clipviz.engine.data import choose_columns, read_upload

    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 3)) * [1, 20, 300]
    y = x @ [2.0, -0.1, 0.01] + 50 + rng.normal(scale=0.5, size=120)
    text = "note;a;b;c;target\n" + "".join(
        f"r{i};{x[i, 0]:.6g};{x[i, 1]:.6g};{x[i, 2]:.6g};{y[i]:.6g}\n" for i in range(120)
    )
    raw = text.encode()
    return raw, choose_columns(read_upload(raw), "target", ["c", "a"], filename=filename)


def test_an_uploaded_runs_script_reads_the_file_and_matches_the_lab(tmp_path):
    from clipviz.app.export import share_note, upload_filename

    raw, upload = uploaded(tmp_path)
    assert upload_filename(upload) == "my data _1_.csv"
    (tmp_path / upload_filename(upload)).write_bytes(raw)
    config = TrainConfig(target_scaling="standardize", clip_mode="norm", epochs=3)
    source = pytorch_script(config, upload)
    assert "It trained on data you uploaded to clipviz (my data _1_.csv)" in source
    assert "in neither this script nor the link" in source
    compile(keras_script(config, upload), "<keras>", "exec")
    script = tmp_path / "run.py"
    script.write_text(source)
    code, out, err = _finish(_start([str(script)], tmp_path))
    assert code == 0, err[-2000:]
    trainer = Trainer(config, dataset=upload.dataset(config.target_scaling)).run()
    epochs = trainer.epoch_records()
    np.testing.assert_allclose(
        np.array(epoch_losses(out)),
        np.column_stack([epochs["train_loss"], epochs["test_loss"]]),
        rtol=1e-4,
    )
    note = share_note(upload)
    assert "uploaded (my data _1_.csv)" in note and "cannot carry an upload" in note
    assert share_note(None) is None
