"""Hostile and clumsy input: the reproductions of issue 16, each a message, never a traceback.

Each case here was a traceback, a rendered foreign link, or minutes of server
CPU before the budget (``clipviz.engine.budget``), the URL declarations
(``clipviz.app.urlkeys``) and the guard (``url_guard``) existed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clipviz.app.urlkeys import plain_markdown
from clipviz.engine import budget
from clipviz.engine.config import DEFAULT, PRESETS, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DOS_LINKS = [
    dict(network="lstm", seq_len="500", hidden_size="256", batch_size="1000", n_train="5000"),
    dict(depth="12", width="512", epochs="20"),
]


def open_page(page: str, **params: str) -> AppTest:
    app = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=60)
    app.query_params.update(params)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def shown(app: AppTest) -> str:
    return " ".join(e.value for e in [*app.warning, *app.error, *app.markdown])


@pytest.mark.parametrize("params", DOS_LINKS)
def test_a_denial_of_service_link_is_refused_with_the_limit_named(params):
    config, problems = TrainConfig.from_params(params)
    assert problems, "an over-budget link must be refused"
    assert any("limit" in p.message for p in problems)
    assert budget.problems_of(config) == []  # what is trained fits the budget
    app = open_page("lab", **params)
    assert "limit" in " ".join(w.value for w in app.warning)


def test_every_preset_fits_the_budget():
    for name, preset in PRESETS.items():
        assert budget.problems_of(preset.config) == [], name
    assert budget.problems_of(DEFAULT) == []


@pytest.mark.parametrize(
    "page, params",
    [
        ("lab", {"seed": "inf"}),
        ("lab", {"depth": "inf"}),
        ("lab", {"epochs": "1e309"}),
        ("recurrent", {"rec_seed": "inf"}),
        ("recurrent", {"rec_tbptt": "1e309"}),
        ("cliff", {"cliff_T": "inf"}),
        ("cliff", {"cliff_steps": "1e309"}),
    ],
)
def test_infinite_whole_numbers_get_a_warning_not_a_traceback(page, params):
    app = open_page(page, **params)
    (key,) = params
    shown = plain_markdown(key)  # warnings show the key escaped, as plain text
    assert any(shown in w.value for w in app.warning), [w.value for w in app.warning]


def test_markdown_from_a_link_is_shown_as_plain_text():
    app = open_page("lab", lr="[click me](https://example.com)", **{"**bold**": "$x$"})
    text = " ".join(w.value for w in app.warning)
    assert "click me" in text
    assert "[click me](https://example.com)" not in text  # escaped: not a live link
    assert "**bold**" not in text and r"\*\*bold\*\*" in text


def test_a_crafted_key_on_the_stability_map_is_shown_as_plain_text():
    app = open_page("stability_map", **{"[click me](https://example.com)": "1"})
    text = " ".join(w.value for w in app.warning)
    assert "click me" in text and "[click me](https://example.com)" not in text


def test_plain_markdown_escapes_and_truncates():
    assert plain_markdown("[a](b)") == r"\[a\]\(b\)"
    assert len(plain_markdown("x" * 5000)) < 400


def test_values_that_underflow_float32_are_refused():
    for key in ("lr", "clip_norm", "clip_value"):
        config, problems = TrainConfig.from_params({key: "1e-320"})
        assert [p.key for p in problems] == [key]
        assert getattr(config, key) == getattr(DEFAULT, key)


@pytest.mark.parametrize(
    "clicks",
    [("Reset", "Play"), ("Step", "Reset", "Play"), ("Play", "Reset", "Step"), ("Reset", "Step")],
)
def test_the_lab_buttons_work_in_any_order(clicks):
    app = open_lab_small()
    for label in clicks:
        [b for b in app.button if b.label == label][0].click().run()
        assert not app.exception, (clicks, [e.value for e in app.exception])
    app.run()
    assert not app.exception
    assert app.get("progress")[0].proto.text.startswith("Step ")


def open_lab_small() -> AppTest:
    return open_page("lab", epochs="2")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clipviz", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_negative_numbers_are_values_on_the_command_line():
    done = cli("worked", "--vector", "-6,8", "--mode", "norm", "--threshold", "5", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == pytest.approx([-3.0, 4.0], abs=1e-6)
    bad = cli("train", "--lr", "-inf")
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "lr" in bad.stderr


def test_an_over_budget_sweep_exits_2_naming_the_limit():
    done = cli("sweep", "--network", "lstm", "--grid", "24", "--epochs", "1")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "limit" in done.stderr
