"""The exported training scripts for the adaptive rules and skip_nonfinite.

Each PyTorch script is run as it is and must print the Lab's epoch losses (or
stop where the Lab's run ends); the Keras script must run where Keras can.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from clipviz.app.export import keras_script, pytorch_script
from clipviz.engine.config import PRESETS
from clipviz.engine.trainer import SKIP_LIMIT, Trainer

SCALED = PRESETS["tutorial_scaled"].config
CONFIGS = {
    "agc": SCALED.replace(clip_mode="agc", epochs=2),
    "autoclip": SCALED.replace(clip_mode="autoclip", epochs=2),
    "zclip": SCALED.replace(clip_mode="zclip", epochs=3),  # the EMA takes over at step 26
    "zclip_capped": SCALED.replace(clip_mode="zclip", zclip_cap=True, clip_norm=0.5, epochs=2),
    "rnn_agc": PRESETS["rnn_explodes"].config.replace(clip_mode="agc", epochs=1, n_train=128),
}


def run_script(source: str, tmp_path, name: str, **env) -> subprocess.CompletedProcess:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


def printed_epochs(stdout: str) -> np.ndarray:
    pattern = r"epoch \d+: train \S+ ([-\d.e+inf]+), test \S+ ([-\d.e+inf]+)"
    return np.array([[float(a), float(b)] for a, b in re.findall(pattern, stdout)])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_pytorch_script_of_each_rule_prints_the_labs_epoch_losses(tmp_path, name):
    config = CONFIGS[name]
    run = run_script(pytorch_script(config), tmp_path, name)
    assert run.returncode == 0, run.stderr[-2000:]
    epochs = Trainer(config).run().epoch_records()
    np.testing.assert_allclose(
        printed_epochs(run.stdout),
        np.column_stack([epochs["train_loss"], epochs["test_loss"]]),
        rtol=1e-4,
    )


@pytest.mark.slow
def test_pytorch_script_skips_as_the_lab_does_and_stops_where_it_stops(tmp_path):
    config = PRESETS["tutorial_unscaled"].config.replace(skip_nonfinite=True, epochs=3)
    source = pytorch_script(config)
    assert f"SKIP_LIMIT = {SKIP_LIMIT}" in source and "continue" in source
    run = run_script(source, tmp_path, "skip")
    lab = Trainer(config).run()
    assert lab.explosion.quantity == "skipping"
    assert run.returncode == 1
    assert f"Stopped at step {lab.explosion.step}: {SKIP_LIMIT} steps in a row" in run.stdout


def test_scripts_name_each_rules_settings():
    agc = pytorch_script(CONFIGS["agc"])
    assert "AGC_LAMBDA = 0.01" in agc and "AGC_EPS = 0.001" in agc and "unit_norms" in agc
    auto = pytorch_script(CONFIGS["autoclip"])
    assert "AUTOCLIP_PERCENTILE = 10" in auto and "np.percentile(norm_history" in auto
    zclip = pytorch_script(CONFIGS["zclip_capped"])
    assert "ZCLIP_CAP = 0.5" in zclip and "ZCLIP_WARMUP = 25" in zclip
    assert "ZCLIP_CAP = None" in pytorch_script(CONFIGS["zclip"])
    for config in CONFIGS.values():
        compile(keras_script(config), "<keras>", "exec")
    assert "run_eagerly=True" in keras_script(CONFIGS["autoclip"])
    skip = PRESETS["tutorial_unscaled"].config.replace(skip_nonfinite=True)
    assert "no switch to skip" in keras_script(skip)


@pytest.mark.slow
def test_keras_agc_script_runs_when_keras_is_installed(tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("keras")
    run = run_script(keras_script(CONFIGS["agc"]), tmp_path, "keras_agc", KERAS_BACKEND="torch")
    if run.returncode != 0 and "No module named" in run.stderr:
        pytest.skip(f"keras cannot start here: {run.stderr.strip().splitlines()[-1]}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "final: train" in run.stdout
