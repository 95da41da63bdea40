"""The rule race: every rule from the same start on the same batches, as its own run."""

from __future__ import annotations

import numpy as np

from clipviz.engine.config import PRESETS
from clipviz.engine.trainer import Trainer
from clipviz.figures.race import race_figure
from clipviz.lessons.race import RACE_MODES, run_race

SHORT = PRESETS["tutorial_unscaled"].config.replace(epochs=3)


def test_each_runner_is_exactly_its_rule_trained_alone():
    entries = run_race(SHORT)
    assert [e.mode for e in entries] == list(RACE_MODES)
    for entry in entries:
        alone = Trainer(SHORT.replace(clip_mode=entry.mode)).run().result()
        np.testing.assert_array_equal(entry.result.records["loss"], alone.records["loss"])
        assert entry.result.exploded_at == alone.exploded_at
    first_losses = {float(e.result.records["loss"][0]) for e in entries}
    assert len(first_losses) == 1  # the same start and the same first batch for every rule
    by_mode = {e.mode: e for e in entries}
    assert by_mode["none"].outcome.startswith("explodes at step")
    assert by_mode["norm"].result.exploded_at is None


def test_the_race_chart_has_one_line_per_rule_and_panel():
    entries = run_race(SHORT)
    figure = race_figure(entries)
    names = {t.legendgroup for t in figure.data}
    assert names == set(RACE_MODES)
    assert len(figure.data) == 2 * len(RACE_MODES)
    dashes = {t.line.dash for t in figure.data}
    assert len(dashes) >= 5  # told apart by dash as well as by colour
    assert figure.layout.yaxis.type == "log" and figure.layout.xaxis.title.text


def test_the_shown_table_writes_every_number_and_a_dash_for_none():
    entries = {e.mode: e for e in run_race(SHORT)}
    none, norm = entries["none"].shown_row(), entries["norm"].shown_row()
    exploded = entries["none"].result
    assert none["exploded at step"] == f"{exploded.exploded_at:,}"
    assert none["final test loss"] == "—"
    assert norm["exploded at step"] == "—"
    assert norm["final test loss"] == f"{entries['norm'].result.final_test_mse:.4g}"
    assert norm["largest ‖g‖"] == f"{entries['norm'].result.max_grad_norm:.3g}"
    assert norm["steps clipped"].endswith("%")
