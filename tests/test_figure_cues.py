"""Colour is never the only cue: clipped and unclipped runs also differ in marker or dash.

Built from small synthetic inputs (the figures are pure functions of their
data); each chart that overlays a clipped and an unclipped run is checked
trace by trace: two traces of the same kind in the two runs' colours must
differ in marker shape or line dash, not only in colour.
"""

from __future__ import annotations

import numpy as np

from clipviz.figures import recurrent
from clipviz.figures.style import CLIPPED, UNCLIPPED, run_symbol


def cue(trace) -> tuple:
    marker = getattr(trace, "marker", None)
    line = getattr(trace, "line", None)
    return (getattr(marker, "symbol", None), getattr(line, "dash", None))


def colour(trace) -> str | None:
    marker, line = getattr(trace, "marker", None), getattr(trace, "line", None)
    return getattr(line, "color", None) or getattr(marker, "color", None)


def assert_cues_differ(fig) -> int:
    """For each kind of trace (its name without the run's), the clipped and unclipped
    traces differ in something besides colour; returns the pairs checked."""
    by_colour: dict[str, list] = {CLIPPED: [], UNCLIPPED: []}
    for trace in fig.data:
        if colour(trace) in by_colour and trace.showlegend is not False and trace.name:
            by_colour[colour(trace)].append(trace)
    pairs = list(zip(by_colour[CLIPPED], by_colour[UNCLIPPED], strict=False))
    for clipped, unclipped in pairs:
        assert cue(clipped) != cue(unclipped), (clipped.name, unclipped.name, cue(clipped))
    return len(pairs)


def test_the_two_runs_have_their_own_marker_shapes():
    assert run_symbol(True) != run_symbol(False)


def test_recurrent_learning_rate_chart_tells_the_modes_apart_without_colour():
    rng = np.random.default_rng(0)
    lrs = [0.01, 0.1, 1.0]
    accuracy = {c: [rng.uniform(0.2, 0.9, 5) for _ in lrs] for c in (False, True)}
    fig = recurrent.digits_lr_figure(lrs, accuracy, clip_value=1.0, fail_accuracy=0.5)
    assert assert_cues_differ(fig) == 2  # the seeds' dots and the median lines


def test_recurrent_curves_tell_the_modes_apart_without_colour():
    rng = np.random.default_rng(1)
    epochs = np.arange(1, 6)
    curves = {
        c: {"test_loss": rng.uniform(0.1, 2, (3, 5)), "test_accuracy": rng.uniform(0, 1, (3, 5))}
        for c in (False, True)
    }
    fig = recurrent.digits_curves_figure(epochs, curves, clip_value=1.0, lr=0.1)
    assert assert_cues_differ(fig) >= 1


def test_the_labs_twin_differs_from_the_main_run_by_marker_shape_not_only_colour():
    from clipviz.app.lab import LabRun
    from clipviz.engine.config import PRESETS
    from clipviz.engine.labstate import LabState
    from clipviz.figures.style import run_symbol
    from clipviz.figures.training import lab_figure

    config = PRESETS["tutorial_clip_norm"].config.replace(epochs=2)
    run = LabRun(config, LabState(config, twin=True).twin_config)
    run.step(40)
    traces = run.traces()
    figure = lab_figure(traces)
    losses = [t for t in figure.data if t.name == "batch loss"]
    assert len(losses) == 2
    main, twin = losses
    assert main.mode == "lines" and twin.mode == "lines+markers"
    assert twin.marker.symbol == run_symbol(traces[1].clipped)
