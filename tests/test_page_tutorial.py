"""AppTest for /tutorial: every chapter renders with computed and published numbers,
each chapter's Lab link opens a configuration that behaves as the chapter says,
and a chapter re-runs with another seed."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clipviz.engine.trainer import Trainer
from clipviz.lessons import story
from clipviz.lessons.experiments import EXPERIMENT_BY_NAME

APP = str(Path(__file__).resolve().parents[1] / "app.py")
LINK = re.compile(r"\[([^\]]+)\]\((lab\?[^)\s]*)\)")
CHAPTER_LINK_TEXT = "Open this run in the Training Lab"


def open_tutorial() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/tutorial.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def at() -> AppTest:
    return open_tutorial()


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown] + [c.value for c in at.caption]


def lab_links(at: AppTest) -> list[tuple[str, str]]:
    return [(label, url) for t in texts(at) for label, url in LINK.findall(t)]


def metrics(at: AppTest) -> list[tuple[str, str]]:
    return [(m.label, m.value) for m in at.metric]


def fmt(value: float) -> str:
    """The page's MSE format: three decimals, as the tutorial printed them."""
    return (
        "NaN" if not math.isfinite(value) else f"{value:,.0f}" if value >= 1000 else f"{value:.3f}"
    )


def test_every_chapter_renders(at: AppTest) -> None:
    headers = [h.value for h in at.header]
    assert [h.split(".")[0] for h in headers] == ["1", "2", "3", "4", "5", "6"]
    assert at.title[0].value == "The tutorial, reproduced"
    assert "Brownlee" in at.markdown[0].value  # the source, cited by name
    assert len(at.get("plotly_chart")) == 1 + 1 + 2 + 2 + 2  # data, timeline, 3 x (loss, grad)
    for key in ("seed_ch2", "seed_ch3", "seed_ch4", "seed_ch5", "seeds_ch6", "seed_ch6"):
        assert at.number_input(key=key) is not None


def test_the_data_chapter_shows_the_range(at: AppTest) -> None:
    data = story.data_summary()
    shown = dict(metrics(at))
    assert (
        shown["Smallest"] == f"{data.minimum:,.0f}" and shown["Largest"] == f"{data.maximum:,.0f}"
    )
    table = at.table[0].value
    assert list(table["target"]) == ["raw", "standardized"]
    assert table["gradient norm"].iloc[0] == f"{data.unscaled.grad_norm:,.0f}"


def test_chapter_2_says_when_it_exploded_and_which_sign_came_first(at: AppTest) -> None:
    run = story.chapter_run("unscaled", story.DEFAULT_SEED)
    [error] = [e.value for e in at.error]
    assert error.startswith(f"Exploded at step {run.exploded_at} of 1,600")
    assert run.explosion in error
    first = run.first_finding
    assert any(
        f"The first sign: {first.sign.title}" in t and f"at step {first.step}" in t
        for t in texts(at)
    )


def test_published_and_computed_numbers_are_both_shown(at: AppTest) -> None:
    shown = metrics(at)
    for key, experiment in (("clip_norm", "clip_norm_1"), ("clip_value", "clip_value_5")):
        run = story.chapter_run(key, story.DEFAULT_SEED)
        published = EXPERIMENT_BY_NAME[experiment]
        assert ("Our train MSE (seed 1)", fmt(run.final_train_mse)) in shown
        assert ("Our test MSE (seed 1)", fmt(run.final_test_mse)) in shown
        assert ("Published train MSE", f"{published.published_train_mse:.3f}") in shown
        assert ("Published test MSE", f"{published.published_test_mse:.3f}") in shown
    assert ("Published test MSE", "not run") in shown  # the standardized chapter
    why = " ".join(texts(at))
    assert "global norm" in why and "each weight tensor separately" in why and "seeds" in why


def test_chapter_links_open_configs_that_behave_as_the_chapter_says(at: AppTest) -> None:
    chapter_links = [url for label, url in lab_links(at) if label.startswith(CHAPTER_LINK_TEXT)]
    assert len(chapter_links) == 4  # chapters 2 to 5
    expected = ["unscaled", "standardized", "clip_norm", "clip_value"]
    for url, key in zip(chapter_links, expected, strict=True):
        config = story.config_from_query(url.removeprefix("lab?"))
        assert config == story.CHAPTER_BY_KEY[key].config.replace(seed=story.DEFAULT_SEED)
        trainer = Trainer(config, record="summary").run()
        assert (trainer.exploded_at is not None) == (key == "unscaled"), (key, url)
    # Chapter 1 trains on the data as it is; the aside links a per-tensor run.
    all_links = dict((label.rstrip(" ↗"), url) for label, url in lab_links(at))
    assert all_links["Train on this data in the Training Lab"] == "lab?preset=tutorial_unscaled"
    per_tensor = story.config_from_query(
        all_links["See per-tensor clipping (today's Keras clipnorm) in the Lab"][4:]
    )
    assert per_tensor.clip_mode == "norm_per_tensor" and per_tensor.clip_norm == 1


def test_a_chapter_reruns_with_another_seed() -> None:
    at = open_tutorial()
    at.number_input(key="seed_ch2").set_value(3).run()
    assert not at.exception
    run = story.chapter_run("unscaled", 3)
    assert [e.value for e in at.error][0].startswith(f"Exploded at step {run.exploded_at} of")
    urls = [url for label, url in lab_links(at) if label.startswith(CHAPTER_LINK_TEXT)]
    assert urls[0] == "lab?seed=3"  # the unscaled run is the default settings
    # the other chapters keep their seed, and so their preset's name
    assert urls[1] == "lab?preset=tutorial_scaled&target_scaling=standardize"


def test_the_extensions_run_on_demand_and_compare_with_the_published_numbers() -> None:
    at = open_tutorial()
    assert not at.dataframe and at.info  # nothing trained until asked
    at.number_input(key="seeds_ch6").set_value(1).run()
    at.button(key="run_ch6").click().run()
    assert not at.exception, [e.value for e in at.exception]
    charts = at.get("plotly_chart")
    assert len(charts) == 9
    table = at.dataframe[0].value
    norm = table[table["experiment"] == EXPERIMENT_BY_NAME["clip_norm_1"].title].iloc[0]
    assert norm["published test"] == f"{EXPERIMENT_BY_NAME['clip_norm_1'].published_test_mse:.3f}"
    assert norm["our median test"] == fmt(story.chapter_run("clip_norm", 0).final_test_mse)
    assert norm["our runs"] == 1
    # Any setting opens in the Lab with the first seed; finished grids show without a click.
    at.selectbox(key="lab_pick_ch6").set_value("clip by value at 2").run()
    url = [u for label, u in lab_links(at) if label.startswith("Open it with seed 0")][0]
    config = story.config_from_query(url[4:])
    assert (config.clip_mode, config.clip_value, config.seed) == ("value", 2, 0)
    again = open_tutorial()
    again.number_input(key="seeds_ch6").set_value(1).run()
    assert len(again.get("plotly_chart")) == 9 and again.dataframe
