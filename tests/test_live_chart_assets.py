"""The live chart's files: plotly.js and the component's code served once per browser.

``serve.py``'s routes answer from the files on disk (plotly.min.js from the
installed plotly package), under versioned URLs, cached by the browser for a
year; without them (``streamlit run app.py``) the page sends the code inline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
from pathlib import Path

import plotly
import pytest
from starlette.requests import Request

from pages.components import live_chart


@pytest.fixture
def routes(monkeypatch):
    monkeypatch.setattr(live_chart, "_served", [])  # served() is per process: undo after
    return live_chart.asset_routes("")


def get(route, gzip_ok: bool):
    headers = [(b"accept-encoding", b"gzip, br")] if gzip_ok else []
    scope = {"type": "http", "method": "GET", "path": route.path, "headers": headers}
    # On a thread of its own: a browser test on the same worker may have left an event
    # loop running in this thread (Playwright's sync API), where asyncio.run refuses.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, route.endpoint(Request(scope))).result()


def test_plotly_comes_from_the_installed_package_under_its_version(routes):
    plotly_route = next(r for r in routes if "plotly" in r.path)
    assert plotly.__version__ in plotly_route.path
    package_copy = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    zipped = get(plotly_route, gzip_ok=True)
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert gzip.decompress(zipped.body) == package_copy.read_bytes()
    assert len(zipped.body) < len(package_copy.read_bytes()) / 2
    plain = get(plotly_route, gzip_ok=False)
    assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "content-encoding" not in plain.headers


def test_the_components_code_url_changes_with_its_content(routes):
    chart_route = next(r for r in routes if "live_chart" in r.path)
    source = live_chart.CHART_JS.read_bytes()
    import hashlib

    assert hashlib.sha256(source).hexdigest()[:12] in chart_route.path
    assert gzip.decompress(get(chart_route, gzip_ok=True).body) == source
    # The component module only imports the served file.
    stub = live_chart.component_js()
    assert chart_route.path in stub and len(stub) < 300
    assert live_chart.plotly_url() == next(r.path for r in routes if "plotly" in r.path)


def test_without_the_routes_the_code_goes_inline(monkeypatch):
    monkeypatch.setattr(live_chart, "_served", [])
    assert live_chart.component_js() == live_chart.CHART_JS.read_text()
    assert live_chart.plotly_url() is None
    loader = live_chart.loader_js()
    assert loader.startswith("if (!window.Plotly) {") and "export default function" in loader
