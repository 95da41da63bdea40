"""clipviz.lessons.story: the tutorial's chapters compute what the page says they show.

Also the tutorial's figure builders, and that every Lab link the page or the
home checklist uses round-trips to the configuration it names.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from clipviz.engine.config import DEFAULT, PRESETS
from clipviz.engine.trainer import Trainer
from clipviz.figures.style import CLIPPED, UNCLIPPED
from clipviz.figures.tutorial import (
    chapter_trace,
    extension_figure,
    signs_timeline_figure,
    target_figure,
)
from clipviz.lessons import story
from clipviz.lessons.diagnose import FIX_NOTES, SIGNS
from clipviz.lessons.experiments import EXPERIMENT_BY_NAME
from clipviz.lessons.story import Box, Panel


@pytest.fixture(scope="module")
def runs() -> dict[str, story.ChapterRun]:
    return {c.key: story.chapter_run(c.key, story.DEFAULT_SEED) for c in story.RUN_CHAPTERS}


# ---- chapter 1 -------------------------------------------------------------------


def test_data_summary_shows_a_target_in_the_hundreds_and_why_it_matters() -> None:
    data = story.data_summary()
    assert data.y_train.shape == data.y_test.shape == (500,)
    assert data.minimum < -350 and data.maximum > 350  # "roughly -400..400"
    assert abs(data.mean) < 20 and 100 < data.std < 200
    assert data.n_features == 20
    # The raw target's first gradient is two orders of magnitude longer.
    assert data.unscaled.grad_norm > 50 * data.standardized.grad_norm
    assert data.unscaled.loss > 1e4 and data.standardized.loss < 5
    assert math.isclose(data.train_std, float(np.std(data.y_train)))


# ---- chapters 2 to 5 ---------------------------------------------------------------


def test_the_unscaled_chapter_explodes_and_names_its_first_sign(
    runs: dict[str, story.ChapterRun],
) -> None:
    run = runs["unscaled"]
    assert run.exploded and run.exploded_at < run.batches_per_epoch  # within epoch 1
    assert run.explosion_epoch == 1
    assert run.explosion_quantity in ("loss", "gradient", "weights")
    assert run.explosion and "NaN" in run.explosion
    assert run.findings, "the detector names the signs"
    assert run.first_finding.step == min(f.step for f in run.findings)
    assert run.first_finding.step <= run.exploded_at
    assert {"loss_swings", "weights_grow"} <= {f.key for f in run.findings}
    assert math.isnan(run.final_train_mse) and math.isnan(run.final_test_mse)
    assert run.result.steps == run.exploded_at


@pytest.mark.parametrize("key", ["standardized", "clip_norm", "clip_value"])
def test_the_fixed_chapters_train(runs: dict[str, story.ChapterRun], key: str) -> None:
    run = runs[key]
    assert not run.exploded
    assert run.total_steps == 1600 and run.result.steps == 1600
    assert 0 < run.final_train_mse < 500 and 0 < run.final_test_mse < 500
    assert run.final_test_mse < run.initial_train_mse / 50
    assert run.epoch_below_100 is not None


def test_standardized_losses_are_shown_in_original_units(
    runs: dict[str, story.ChapterRun],
) -> None:
    run = runs["standardized"]
    trainer = Trainer(run.config).run()
    scale = trainer.data.scaler.scale
    trace = chapter_trace(run)
    np.testing.assert_allclose(trace.records["loss"], trainer.records()["loss"] * scale**2)
    np.testing.assert_allclose(
        trace.epochs["test_loss"][-1], run.final_test_mse, rtol=1e-6
    )  # the last epoch's test loss is the final test MSE
    assert run.first_grad_norm < 10 < runs["unscaled"].first_grad_norm


def test_norm_clipping_keeps_the_direction_and_value_clipping_turns_it(
    runs: dict[str, story.ChapterRun],
) -> None:
    assert runs["clip_norm"].clipped_share > 0.5
    assert runs["clip_norm"].median_angle_deg < 1
    assert runs["clip_value"].median_angle_deg > 10


def test_a_chapter_reruns_with_another_seed() -> None:
    a = story.chapter_run("clip_norm", 1)
    b = story.chapter_run("clip_norm", 2)
    assert b.config.seed == 2 and b.final_test_mse != a.final_test_mse
    assert story.chapter_run("clip_norm", 1).final_test_mse == a.final_test_mse  # deterministic


def test_published_numbers_come_from_the_experiments() -> None:
    e = EXPERIMENT_BY_NAME["clip_norm_1"]
    assert story.published_numbers("clip_norm_1") == (e.published_train_mse, e.published_test_mse)
    train, test = story.published_numbers("no_clip")
    assert math.isnan(train) and math.isnan(test)
    assert story.published_numbers("standardized_target") is None
    for chapter in story.RUN_CHAPTERS:
        assert chapter.config == EXPERIMENT_BY_NAME[chapter.experiment].config


# ---- Lab links ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("chapter", [c.key for c in story.RUN_CHAPTERS])
def test_chapter_links_open_exactly_the_chapter_config(chapter: str, seed: int) -> None:
    config = story.CHAPTER_BY_KEY[chapter].config.replace(seed=seed)
    query = story.lab_query(config)
    # the one codec's form: the preset's name only while the settings are the preset's
    is_preset = seed == PRESETS["tutorial_unscaled"].config.seed
    assert query.startswith("preset=tutorial_") == is_preset
    assert ("seed=" in query) == (not is_preset)
    assert story.config_from_query(query) == config


def test_links_to_configs_that_are_no_preset_are_written_out() -> None:
    config = DEFAULT.replace(clip_mode="norm_per_tensor", clip_norm=0.5, seed=4)
    query = story.lab_query(config)
    assert "preset" not in query and "clip_mode=norm_per_tensor" in query
    assert story.config_from_query(query) == config
    assert story.lab_url(config) == f"lab?{query}"
    with pytest.raises(ValueError, match="lr"):
        story.config_from_query("lr=-1")


# ---- chapter 6 --------------------------------------------------------------------


def test_extension_runs_are_single_runs_as_the_lab_trains_them() -> None:
    group = story.GROUP_BY_KEY["value"]
    index = next(i for i, s in enumerate(group.settings) if s.config.clip_value == 5)
    outcome = story.extension_run("value", index, 1)
    trainer = Trainer(group.settings[index].config.replace(seed=1), record="summary").run()
    train, test = trainer.final_losses()
    assert outcome == story.RunOutcome(1, None, float(train[0]), float(test[0]))
    # ... and the same as the chapter's fully recorded run of that seed.
    assert outcome.test_mse == pytest.approx(story.chapter_run("clip_value", 1).final_test_mse)


def test_norm_1_then_value_5_is_norm_1_run_for_run() -> None:
    """The page says so: once the gradient has length 1 no component can exceed 5."""
    norm = story.GROUP_BY_KEY["norm"]
    combined = story.GROUP_BY_KEY["norm_value"]
    i = next(i for i, s in enumerate(norm.settings) if s.config.clip_norm == 1)
    j = next(
        i
        for i, s in enumerate(combined.settings)
        if (s.config.clip_norm, s.config.clip_value) == (1, 5)
    )
    for seed in (0, 1):
        assert story.extension_run("norm", i, seed) == story.extension_run("norm_value", j, seed)


def test_every_extension_setting_is_distinct_and_described() -> None:
    settings = story.extension_settings()
    assert len({s.config for s in settings}) == len(settings)
    assert {s.group for s in settings} == set(story.GROUP_BY_KEY)
    texts = [s.text for s in settings]
    assert len(set(texts)) == len(texts) and all("<br>" not in t for t in texts)
    assert "clip by norm at 0.1" in texts and "no clipping, raw target" in texts


def test_summaries_and_the_published_comparison() -> None:
    outcomes = {
        group.key: {
            i: [
                story.RunOutcome(
                    s, 5 if s == 0 and group.key == "baseline" else None, 1.0 + s, 2.0 + s
                )
                for s in (0, 1, 2)
            ]
            for i in range(len(group.settings))
        }
        for group in story.EXTENSION_GROUPS
    }
    summaries = [
        s for g in story.EXTENSION_GROUPS for s in story.summarise_extension(g.key, outcomes[g.key])
    ]
    norm_1 = next(s for s in summaries if s.setting.text == "clip by norm at 1")
    assert norm_1.published_test_mse == EXPERIMENT_BY_NAME["clip_norm_1"].published_test_mse
    assert norm_1.median("test") == 3.0 and norm_1.median("train") == 2.0
    raw = next(s for s in summaries if s.setting.text == "no clipping, raw target")
    assert raw.exploded == 1 and raw.published_test_mse is None  # published as NaN: no star
    rows = {r.experiment: r for r in story.published_comparison(summaries)}
    assert set(rows) == {e.title for e in EXPERIMENT_BY_NAME.values()}
    row = rows[EXPERIMENT_BY_NAME["clip_value_5"].title]
    assert row.published_test_mse == EXPERIMENT_BY_NAME["clip_value_5"].published_test_mse
    assert row.median_test_mse == 3.0 and row.runs == 3
    assert math.isnan(rows[EXPERIMENT_BY_NAME["no_clip"].title].published_test_mse)
    assert rows[EXPERIMENT_BY_NAME["standardized_target"].title].published_test_mse is None
    by_group = {
        g.key: story.summarise_extension(g.key, outcomes[g.key]) for g in story.EXTENSION_GROUPS
    }
    panels = story.extension_panels(by_group, [0, 1, 2])
    assert [p.title for p in panels] == [g.title for g in story.EXTENSION_GROUPS]
    assert sum(len(p.boxes) for p in panels) == len(story.extension_settings())
    assert story.lowest_median(by_group["norm"]).median() == 3.0
    all_exploded = story.summarise_extension(
        "baseline", {0: [story.RunOutcome(0, 9, math.nan, math.nan)]}
    )
    assert story.lowest_median(all_exploded[:1]) is None


# ---- figures ----------------------------------------------------------------------


def test_target_figure_has_histograms_and_boxes_on_one_axis() -> None:
    data = story.data_summary()
    fig = target_figure(data.y_train, data.y_test)
    kinds = sorted(t.type for t in fig.data)
    assert kinds == ["box", "box", "histogram", "histogram"]
    assert sum(len(t.x) for t in fig.data if t.type == "histogram") == 1000
    assert "target" in fig.layout.xaxis2.title.text and fig.layout.yaxis.title.text == "examples"


def test_signs_timeline_marks_each_sign(runs: dict[str, story.ChapterRun]) -> None:
    run = runs["unscaled"]
    fig = signs_timeline_figure(chapter_trace(run), run.findings)
    assert len(fig.data) == 3
    assert all(t.line.color == UNCLIPPED for t in fig.data)
    assert fig.layout.yaxis.type == fig.layout.yaxis2.type == fig.layout.yaxis3.type == "log"
    text = " ".join(a.text for a in fig.layout.annotations)
    for finding in run.findings:
        assert f"step {finding.step}" in text
    assert fig.layout.xaxis3.title.text == "optimizer step"


def test_extension_figure_boxes_stars_and_exploded_counts() -> None:
    panels = [
        Panel("No clipping", [Box("raw", [math.nan, math.nan], [0, 1], clipped=False)]),
        Panel(
            "Clip by norm at c",
            [
                Box("1", [18.0, 20.0], [0, 1], clipped=True, published=27.433),
                Box("2", [9.0, math.nan], [0, 1], clipped=True),
            ],
        ),
    ]
    fig = extension_figure(panels)
    boxes = [t for t in fig.data if t.type == "box"]
    assert [len(b.y) for b in boxes] == [0, 2, 1]
    assert boxes[1].marker.color == CLIPPED and boxes[0].marker.color == UNCLIPPED
    texts = [t.text[0] for t in fig.data if t.type == "scatter" and t.mode == "text"]
    assert texts == ["2/2<br>exploded", "1/2<br>exploded"]
    stars = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    assert [s.y[0] for s in stars] == [27.433]
    assert fig.layout.yaxis.type == "log" and "test MSE" in fig.layout.yaxis.title.text


# ---- the home checklist ---------------------------------------------------------------


def test_the_checklist_covers_every_sign_and_fix() -> None:
    assert [i.title for i in story.SIGN_CHECKLIST] == [s.title for s in SIGNS]
    assert [i.title for i in story.FIX_CHECKLIST] == [title for title, _ in FIX_NOTES]
    for item in story.SIGN_CHECKLIST + story.FIX_CHECKLIST:
        assert item.links and item.note
        for link in item.links:
            assert link.url.startswith("lab")
            assert link.explodes is not None or link.shows or link.lacks, "a link makes a claim"
            assert story.config_from_query(link.query) == link.config.canonical()
    for item, sign in zip(story.SIGN_CHECKLIST, SIGNS, strict=True):
        assert any(sign.key in link.shows for link in item.links), "it shows its sign"


def test_verify_link_reports_a_false_claim() -> None:
    wrong = story.LabLink(
        "x",
        PRESETS["tutorial_clip_norm"].config,
        explodes=True,
        shows=("loss_nan",),
        learns=False,
    )
    check = story.verify_link(wrong)
    assert not check.ok and len(check.problems) == 3


def test_clipping_caps_the_gradient_not_the_update(runs: dict[str, story.ChapterRun]) -> None:
    """With momentum the update is a sum of past clipped gradients: longer than lr * c,
    never longer than lr * c / (1 - m). The update lengths are re-measured from the
    weights of a fresh run, step by step."""
    run = runs["clip_norm"]
    config = run.config
    assert run.update_bound == pytest.approx(config.lr * config.clip_norm / (1 - config.momentum))
    trainer = Trainer(config)
    longest = 0.0
    for _ in range(200):
        before = trainer.params.clone()
        trainer.step(1)
        longest = max(longest, float((trainer.params - before).norm()))
    assert config.lr * config.clip_norm < longest <= run.update_bound * (1 + 1e-5)
    assert longest <= run.max_update_norm * (1 + 1e-5)
