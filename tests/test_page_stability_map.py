"""AppTest for /stability_map: it renders, links cells to the Lab, caches, marks the Lab run."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from clipviz.engine import sweep
from clipviz.engine.labstate import LabState

# AppTest resolves relative paths against this file, not the working directory.
ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "stability_map.py")


def fresh() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=120)


def small(app: AppTest, grid: int = 8, epochs: int = 5) -> AppTest:
    """Submit the settings form with a small grid (the default map is computed first)."""
    app.select_slider(key="map_grid").set_value(grid)
    app.select_slider(key="map_epochs").set_value(epochs)
    app.button[0].click().run()
    return app


def ok(app: AppTest) -> AppTest:
    assert not app.exception, [e.value for e in app.exception]
    return app


def lab_link(app: AppTest) -> dict[str, str]:
    """Every setting the 'Open in the Lab' link opens (read by the Lab's own codec)."""
    buttons = app.get("link_button")
    assert buttons, "no 'Open in the Lab' link"
    url = buttons[0].proto.url
    assert url.startswith("./lab?")
    state, problems = LabState.from_query(parse_qs(urlsplit(url).query))
    assert problems == []
    return state.config.to_params(only_relevant=False)


@pytest.fixture(scope="module")
def at() -> AppTest:
    app = fresh()
    app.run()
    return small(ok(app))


def test_page_renders_both_maps_and_explains_them(at: AppTest) -> None:
    ok(at)
    assert len(at.get("plotly_chart")) == 2
    assert not at.error
    text = " ".join(m.value for m in at.markdown)
    assert "Sohl-Dickstein (2024" in text and "boundary" in text
    captions = " ".join(c.value for c in at.caption)
    networks = 8 + 64 + 64 + 2 * 64
    assert f"{networks:,} networks in" in captions


def test_the_picked_cell_opens_its_exact_configuration_in_the_lab(at: AppTest) -> None:
    at.radio(key="cell_mode").set_value("norm")
    at.select_slider(key="cell_lr").set_value(3)
    at.select_slider(key="cell_threshold").set_value(5)
    ok(at.run())
    spec = sweep.SweepSpec(grid=8, epochs=5)
    params = lab_link(at)
    assert params["clip_mode"] == "norm" and params["epochs"] == "5"
    assert float(params["lr"]) == pytest.approx(spec.lrs[3], rel=1e-2)
    assert float(params["clip_norm"]) == pytest.approx(spec.thresholds[5], rel=1e-2)
    assert params["target_scaling"] == "none" and params["seed"] == "1"


def test_a_diverged_unclipped_cell_says_where_it_exploded(at: AppTest) -> None:
    at.radio(key="cell_mode").set_value("none")
    at.select_slider(key="cell_lr").set_value(7)  # lr 1: far past the boundary
    ok(at.run())
    assert at.select_slider(key="cell_threshold").disabled
    assert any("Diverged** at step" in m.value for m in at.markdown)
    assert lab_link(at)["clip_mode"] == "none"


def test_revisiting_is_served_from_the_store(monkeypatch) -> None:
    calls = []
    real = sweep.run_sweep

    def counting(spec, **kwargs):
        calls.append(spec)
        return real(spec, **kwargs)

    monkeypatch.setattr(sweep, "run_sweep", counting)
    first = small(ok(fresh().run()), grid=8, epochs=10)
    assert len(calls) == 1  # the default map was stored by an earlier test
    second = small(ok(fresh().run()), grid=8, epochs=10)
    assert len(calls) == 1
    assert len(ok(second).get("plotly_chart")) == len(first.get("plotly_chart")) == 2


def test_the_lab_run_is_marked_after_using_the_lab() -> None:
    """Across pages, as a learner does it: set the Lab's widgets, then open the map."""
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    app.switch_page("pages/lab.py").run()
    ok(app)
    app.selectbox(key="clip_mode").set_value("norm").run()
    app.number_input(key="clip_norm").set_value(2.0).run()
    app.select_slider(key="lr").set_value(0.03).run()
    ok(app)
    app.switch_page("pages/stability_map.py").run()
    ok(app)
    captions = " ".join(c.value for c in app.caption)
    assert "★ marks your Lab run: MLP, lr 0.03, clip norm 2." in captions


def test_a_configuration_in_the_url_is_marked_with_its_differences() -> None:
    app = fresh()
    app.query_params["lr"] = "0.003"
    app.query_params["clip_mode"] = "value"
    app.query_params["clip_value"] = "5"
    app.query_params["target_scaling"] = "standardize"
    ok(app.run())
    captions = " ".join(c.value for c in app.caption)
    assert "★ marks your Lab run: MLP, lr 0.003, clip value 5" in captions
    assert "target scaling standardize" in captions


def test_bad_settings_show_a_message_not_a_traceback() -> None:
    app = ok(fresh().run())
    app.select_slider(key="map_lr_range").set_value((0.01, 0.01))
    app.button[0].click().run()
    ok(app)
    assert app.error and "Learning rates, high end" in app.error[0].value
    assert not app.get("plotly_chart")
