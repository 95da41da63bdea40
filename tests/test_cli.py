"""The command line: JSON documents, tables, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from clipviz.cli import main


def run(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "clipviz", *args], capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_train_json_reports_an_explosion():
    code, out, err = run("train", "--preset", "tutorial_unscaled", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {
        "config",
        "steps",
        "exploded_at",
        "final_train_loss",
        "final_test_loss",
        "max_grad_norm",
        "clipped_fraction",
    } <= set(doc)
    assert isinstance(doc["exploded_at"], int) and doc["steps"] == doc["exploded_at"]


def test_train_explicit_keys_override_the_preset(capsys):
    assert (
        main(
            [
                "train",
                "--preset",
                "tutorial_unscaled",
                "--clip_mode",
                "norm",
                "--clip-norm",
                "1",
                "--epochs",
                "3",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["exploded_at"] is None and doc["steps"] == 48
    assert doc["config"]["clip_mode"] == "norm" and doc["clipped_fraction"] > 0.9


def test_worked_json_has_the_contract_fields(capsys):
    assert (
        main(["worked", "--vector", "2,-6,8,-3,5", "--mode", "value", "--threshold", "4", "--json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert {"input", "mode", "threshold", "norm_before", "scale", "output", "norm_after"} <= set(
        doc
    )
    assert doc["output"] == [2, -4, 4, -3, 4]


@pytest.mark.parametrize(
    "args, named",
    [
        (["worked", "--vector", "2,x,8", "--mode", "norm", "--threshold", "6"], "--vector"),
        (["worked", "--vector", "", "--mode", "norm", "--threshold", "6"], "--vector"),
        (["worked", "--vector", "2,-6", "--mode", "norm", "--threshold", "0"], "--threshold"),
        (["worked", "--vector", "2,-6", "--mode", "norm", "--threshold", "nan"], "--threshold"),
        (["worked", "--vector", "nan,1", "--mode", "norm", "--threshold", "1"], "--vector"),
        (["worked", "--vector", "2,-6", "--mode", "sideways", "--threshold", "1"], "--mode"),
        (["train", "--lr", "abc"], "--lr"),
        (["train", "--batch-size", "0"], "--batch-size"),
        (["train", "--clip-mode", "bogus"], "--clip-mode"),
        (["train", "--preset", "nope"], "--preset"),
        (["train", "--frobnicate", "1"], "--frobnicate"),
        (["reproduce", "--seeds", "0"], "--seeds"),
        (["sweep", "--grid", "1000"], "--grid"),
        (["nonsense"], "nonsense"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_naming_them(args, named, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert named in err
    assert "Traceback" not in err


def test_reproduce_json_rows():
    code, out, err = run("reproduce", "--seeds", "1", "--json")
    assert code == 0, err
    rows = {r["experiment"]: r for r in json.loads(out)["rows"]}
    assert set(rows) >= {
        "no_clip",
        "clip_norm_1",
        "clip_value_5",
        "standardized_target",
        "clip_norm_1_value_5",
    }
    for row in rows.values():
        assert {
            "runs",
            "exploded_runs",
            "train_mse_median",
            "test_mse_median",
            "published_train_mse",
            "published_test_mse",
        } <= set(row)
    assert rows["no_clip"]["exploded_runs"] == 1
    assert rows["clip_norm_1"]["published_train_mse"] == 5.082


def test_bench_json(capsys):
    assert main(["bench", "--repeats", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["steps"] == 1600 and doc["seconds"] > 0 and doc["steps_per_second"] > 0


def test_tables_are_readable(capsys):
    assert main(["train", "--preset", "tutorial_clip_norm", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "clip norm 1" in out and "exploded_at" in out
