"""GradientLog in real PyTorch training loops: its numbers against torch's own, step by step.

Each test trains a small ``nn.Module`` with a plain loop, computes the expected
numbers itself at the same moments (``torch.nn.utils.get_total_norm`` of the
gradients, the weights before and after ``optimizer.step()``), and compares
them with the CSV file the log wrote, read back with the csv module.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

import clipviz
from clipviz.engine.records import CORE_COLUMNS

ROWS = 64


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
    )


def make_data(seed: int = 0, scale: float = 50.0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(ROWS, 5, generator=gen)
    y = scale * (x @ torch.randn(5, 1, generator=gen)) + torch.randn(ROWS, 1, generator=gen)
    return x, y


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(cell: str) -> float:
    return math.nan if cell == "" else float(cell)


def total_norm(tensors) -> float:
    return float(torch.nn.utils.get_total_norm(list(tensors)))


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def assert_close(logged: str, expected: float) -> None:
    """The CSV holds 9 significant digits of a float32 norm (NaN where torch's is NaN)."""
    if math.isnan(expected):
        assert math.isnan(number(logged)), (logged, expected)
        return
    assert number(logged) == pytest.approx(expected, rel=2e-7, abs=1e-12), (logged, expected)


def train(
    tmp_path, *, clip: float | None = None, steps: int = 40, lr: float = 0.01, scale: float = 50.0
):
    """A plain loop with the log; returns the CSV rows and what the loop itself measured."""
    model, (x, y) = make_model(), make_data(scale=scale)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    path = tmp_path / "run.csv"
    expected = []
    with clipviz.GradientLog(model, path=path, clip_threshold=clip) as log:
        for step in range(steps):
            batch = slice((step * 8) % ROWS, (step * 8) % ROWS + 8)
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x[batch]), y[batch])
            loss.backward()
            before = total_norm(p.grad for p in model.parameters())
            per_layer = {
                name: total_norm(p.grad for p in module.parameters())
                for name, module in model.named_children()
                if any(True for _ in module.parameters())
            }
            returned = log.step(loss, optimizer)
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            after = total_norm(p.grad for p in model.parameters())
            old = weights(model)
            optimizer.step()
            new = weights(model)
            expected.append(
                {
                    "loss": float(loss.detach()),
                    "before": before,
                    "returned": returned,
                    "after": after,
                    "layers": per_layer,
                    "update": total_norm(n - o for n, o in zip(new, old, strict=True)),
                    "weights": total_norm(new),
                }
            )
    return read_rows(path), expected, log


def test_unclipped_loop_norms_equal_torch_step_by_step(tmp_path):
    rows, expected, log = train(tmp_path)
    assert len(rows) == len(expected) == 40
    assert list(rows[0])[: len(CORE_COLUMNS)] == list(CORE_COLUMNS)
    assert log.groups == ("0", "2", "4")  # the modules holding parameters
    for i, (row, want) in enumerate(zip(rows, expected, strict=True)):
        assert row["step"] == str(i + 1)
        assert_close(row["grad_norm_before"], want["before"])
        assert want["returned"] == want["before"]
        assert_close(row["grad_norm_after"], want["before"])  # nothing clipped
        assert row["clipped"] == "0" and row["skipped"] == "0" and row["clip_threshold"] == ""
        assert_close(row["loss"], want["loss"])
        for name, norm in want["layers"].items():
            assert_close(row[f"grad_norm[{name}]"], norm)
        assert_close(row["update_norm"], want["update"])
        assert_close(row["weight_norm"], want["weights"])
        assert number(row["update_ratio"]) == pytest.approx(
            want["update"] / want["weights"], rel=1e-6
        )


def test_clipping_between_backward_and_step_is_seen(tmp_path):
    rows, expected, _ = train(tmp_path, clip=4.0, lr=0.05, scale=1.0)
    clipped = 0
    for row, want in zip(rows, expected, strict=True):
        assert_close(row["grad_norm_before"], want["before"])
        assert_close(row["grad_norm_after"], want["after"])
        assert number(row["clip_threshold"]) == 4.0
        was_clipped = want["after"] != want["before"]
        assert row["clipped"] == ("1" if was_clipped else "0")
        if was_clipped:
            assert want["after"] == pytest.approx(4.0, rel=1e-5)  # clip_grad_norm_ to 4
            assert number(row["clip_scale"]) == pytest.approx(want["after"] / want["before"])
        clipped += was_clipped
        assert_close(row["update_norm"], want["update"])
    assert 0 < clipped < len(rows)  # a loop that clips some steps and not others


def amp_loop(
    tmp_path, dtype: torch.dtype, *, poison_step: int | None = None, init_scale: float = 2.0**16
):
    """CPU autocast with a GradScaler; at ``poison_step`` the loss is made inf."""
    model, (x, y) = make_model(1), make_data(1, scale=1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    path = tmp_path / f"amp_{dtype}.csv"
    expected = []
    with clipviz.GradientLog(model, path=path, clip_threshold=1.0) as log:
        for step in range(1, 13):
            batch = slice((step * 8) % ROWS, (step * 8) % ROWS + 8)
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=dtype):
                loss = nn.functional.mse_loss(model(x[batch]), y[batch])
            if step == poison_step:
                loss = loss * math.inf
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            before = total_norm(p.grad for p in model.parameters())
            log.step(loss, optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            after = total_norm(p.grad for p in model.parameters())
            old, scale = weights(model), scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            new = weights(model)
            moved = total_norm(n - o for n, o in zip(new, old, strict=True))
            expected.append((before, after, moved, scaler.get_scale() < scale))
    return read_rows(path), expected


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_amp_loop_norms_equal_torch_after_unscale(tmp_path, dtype):
    """With the default loss scale (65536), float16 gradients overflow at first and the
    scaler skips steps while it lowers the scale: the log marks exactly those."""
    rows, expected = amp_loop(tmp_path, dtype)
    assert len(rows) == 12
    for row, (before, after, moved, scale_dropped) in zip(rows, expected, strict=True):
        assert_close(row["grad_norm_before"], before)
        assert_close(row["grad_norm_after"], after)
        assert_close(row["update_norm"], moved)
        assert row["skipped"] == ("1" if scale_dropped else "0")
        assert (moved == 0.0) == scale_dropped
    assert any(r["skipped"] == "0" for r in rows)


def test_a_step_the_grad_scaler_skips_is_logged_as_skipped(tmp_path):
    rows, expected = amp_loop(tmp_path, torch.float16, poison_step=5, init_scale=2.0**8)
    assert len(rows) == 12
    skipped = [int(r["step"]) for r in rows if r["skipped"] == "1"]
    assert skipped == [5]
    before, _, moved, scale_dropped = expected[4]
    assert moved == 0.0 and scale_dropped  # the scaler skipped it: weights unchanged
    assert not math.isfinite(before) and not math.isfinite(number(rows[4]["grad_norm_before"]))
    assert number(rows[4]["update_norm"]) == 0.0
    assert all(r["skipped"] == "0" for r in rows if r["step"] != "5")


def test_the_hook_only_form_logs_every_optimizer_step(tmp_path):
    model, (x, y) = make_model(2), make_data(2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    path = tmp_path / "hooks.csv"
    seen = []
    with clipviz.GradientLog(model, path=path, optimizer=optimizer):
        for _ in range(10):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            seen.append(total_norm(p.grad for p in model.parameters()))
            optimizer.step()
    rows = read_rows(path)
    assert len(rows) == 10
    for row, norm in zip(rows, seen, strict=True):
        assert_close(row["grad_norm_before"], norm)  # as the optimizer saw it
        assert row["loss"] == "" and row["clipped"] == ""
        assert number(row["update_norm"]) > 0


def test_logging_every_other_step_logs_only_those(tmp_path):
    model, (x, y) = make_model(3), make_data(3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    log = clipviz.GradientLog(model)  # no file: rows in memory
    norms = []
    for step in range(10):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        if step % 2 == 0:
            norms.append(log.step(loss, optimizer))
        optimizer.step()
    log.close()
    rec = log.records()
    assert rec["step"].tolist() == [1, 2, 3, 4, 5]
    assert rec["skipped"].tolist() == [0] * 5
    assert rec["grad_norm"].tolist() == norms
    assert "grad_norm[0]" in log.csv_text().splitlines()[0]


def test_import_clipviz_stays_light():
    code = "import sys, clipviz; print('torch' in sys.modules, 'streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr
    assert clipviz.GradientLog.__module__ == "clipviz.engine.gradlog"
    with pytest.raises(AttributeError):
        _ = clipviz.NoSuchThing
