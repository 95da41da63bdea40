"""AppTest of pages/in_practice.py: every case renders with the numbers the library
computed, the code boxes hold the source of the functions that ran, the percentile
control moves the threshold, and the two background cases (two DDP workers, real
Keras) appear once done."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest

from clipviz.lessons import practice, practice_ddp

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SHOWN = [
    practice.log_returned_norm,
    practice.log_norm_after,
    practice.keras_clipnorm,
    practice.keras_global_clipnorm,
    practice.keras_clipnorm_formula,
    practice.keras_global_clipnorm_formula,
    practice.amp_clip_scaled,
    practice.amp_unscale_clip,
    practice.clip_inside_loop,
    practice.clip_after_loop,
    practice_ddp.clip_then_average,
    practice_ddp.average_then_clip,
    practice_ddp.ddp_backward_then_clip,
    practice.clip_and_step,
    practice.step_if_finite,
    practice.clip_or_raise,
    practice.clip_if_needed,
    practice.clip_always,
    practice.warmup_norms,
    practice.train_clipped,
]


@pytest.fixture(scope="module")
def at() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=600)
    app.run()
    app.switch_page("pages/in_practice.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def test_every_case_renders_with_its_computed_numbers(at: AppTest) -> None:
    assert at.title[0].value == "In practice"
    headings = [s.value for s in at.subheader]
    for number in range(1, 9):
        assert any(h.startswith(f"{number}. ") for h in headings), number
    shown = metrics(at)

    one = practice.run_returned_norm()
    assert shown["Logged by the usual code, step 0"] == f"{one.logged_wrong[0]:.5g}"
    assert shown["Measured after clipping, step 0"] == f"{one.norm_after[0]:.7f}"
    assert shown["Steps whose log shows ‖g‖ > c"] == (
        f"{one.steps_logged_above} of {len(one.norm_after)}"
    )

    two = practice.run_keras_comparison()
    assert shown["After Keras clipnorm"] == f"{two.total_per_tensor:.5g}"
    assert shown["Direction turned by clipnorm"] == f"{two.angle_per_tensor:.1f}°"

    three = practice.run_amp()
    k = three.right.first_taken
    assert shown["Loss scale S at the start"] == f"{torch.amp.GradScaler('cpu').get_scale():,.0f}"
    (amp_table,) = [d.value for d in at.dataframe if "norm the clip saw" in d.value.columns]
    assert list(amp_table["norm the clip saw"]) == [
        three.wrong.seen_norm[k],
        three.right.seen_norm[k],
    ]
    assert shown["Steps skipped (inf/NaN found)"] == f"{three.right.skipped_count} of 40"

    four = practice.run_accumulation()
    assert shown["Angle between the two updates"] == f"{four.angle:.1f}°"

    seven = practice.run_below_threshold()
    assert shown["Factor min(c/(‖g‖+10⁻⁶), 1)"] == "1.0"
    assert shown["clip_always: gradient after"] == "unchanged"
    assert shown["Threshold c"] == f"{seven.threshold:.5g}"

    (table,) = [d.value for d in at.dataframe if "norm returned" in d.value.columns]
    assert list(table["norm returned"]) == ["inf", "inf", "nan"]
    assert set(table["error_if_nonfinite"]) == {"raised"}
    assert set(table["fix: the step"]) == {"skipped"}
    assert set(table["fix: weights"]) == {"unchanged"}
    assert len(at.get("plotly_chart")) >= 5
    assert not at.error


def test_the_code_boxes_are_the_source_of_the_functions_that_ran(at: AppTest) -> None:
    boxes = {c.value.rstrip("\n") for c in at.code}
    for function in SHOWN:
        assert practice.source(function).rstrip("\n") in boxes, function.__name__


def test_the_side_by_side_functions_fit_a_half_width_code_box() -> None:
    side_by_side = [f for f in SHOWN if "formula" not in f.__name__]
    for function in side_by_side:
        longest = max(len(line) for line in practice.source(function).splitlines())
        assert longest <= 50, function.__name__


def test_the_percentile_control_moves_the_threshold(at: AppTest) -> None:
    warmup = practice.run_warmup()
    for choice in (warmup.choices[0], warmup.choices[-1]):
        at.segmented_control(key="practice_percentile").set_value(choice.percentile).run()
        assert not at.exception
        shown = metrics(at)
        assert shown[f"Threshold at p{choice.percentile}"] == f"{choice.threshold:.4g}"
        assert shown["Warm-up steps it would clip"] == f"{choice.clipped_fraction:.0%}"


def wait_for_background(app: AppTest, seconds: float = 400.0) -> None:
    deadline = time.monotonic() + seconds
    while any("is running on the server" in i.value for i in app.info):
        assert time.monotonic() < deadline, "the background cases did not finish"
        time.sleep(2)
        app.run()


@pytest.mark.slow
def test_the_ddp_and_keras_cases_appear_once_their_processes_finish(at: AppTest) -> None:
    wait_for_background(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    (keras_note,) = [s.value for s in at.success if "real Keras" in s.value]
    assert keras_note.startswith("Checked with real Keras 3.")
    # the two workers' local gradient norms, computed here by plain float64 autograd
    x, y = practice.batch(0)
    norms = []
    for rows in torch.argsort(y[:, 0].abs()).chunk(2):
        model = practice.small_model().double()
        loss = F.mse_loss(model(x[rows].double()), y[rows].double())
        grads = torch.autograd.grad(loss, list(model.parameters()))
        norms.append(float(np.sqrt(sum(float((g * g).sum()) for g in grads))))
    shown = metrics(at)
    assert shown["Local norms, workers 0, 1"] == " and ".join(f"{n:.0f}" for n in norms)
    assert float(shown["Angle between them"].rstrip("°")) > 5
