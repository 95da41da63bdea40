"""The Training Lab's live chart: a Streamlit component whose code is ``live_chart.js``.

The chart is drawn by plotly.js in the browser, which keeps the figure and
plays the steps the server streams to it (``clipviz.app.stream``). Two files
reach the browser besides the small messages of each tick:

* ``live_chart.js`` (this folder), the component's code (``live_chart.html``
  its two elements: the colour key of a twin run, and the chart);
* ``plotly.min.js``, the copy inside the installed ``plotly`` package (4.8 MB).

How they are served: Streamlit 1.67 has two ways to serve a file, and
neither fits a file that lives in another package. Static serving
(``server.enableStaticServing``) serves only files really inside the app's
``static/`` folder (it resolves links and refuses any path outside), and a
component's own asset folder (``asset_dir``) is read only from the manifest
of an installed distribution. What 1.67 does offer is ``st.App``: the app as
a Starlette application with routes of its own. ``serve.py`` is that entry
point: ``asset_routes`` adds two routes that answer straight from the files
on disk (``plotly.min.js`` from the plotly package, read-only), under URLs
that carry the plotly version and a hash of ``live_chart.js``, with
``Cache-Control: immutable`` for a year, gzipped once per process (1.4 MB
on the wire). So each browser downloads plotly.js once, and every tab after that, every session and every reload reads it
from the browser's cache; a new plotly or a changed ``live_chart.js`` gets a
new URL. Nothing is copied, linked or written anywhere.

Started the plain way (``streamlit run app.py``, for development and the
page tests) the routes do not exist, so the page falls back to what it did
before: the component code inline and plotly.js sent once per session as a
component module (``loader_js``: ``plotly_loader.js`` after plotly.min.js).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from pathlib import Path

import plotly

HERE = Path(__file__).resolve().parent
CHART_JS = HERE / "live_chart.js"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PREFIX = "/clipviz-assets"
LOADER_JS = HERE / "plotly_loader.js"
HTML = (HERE / "live_chart.html").read_text()
IMMUTABLE = "public, max-age=31536000, immutable"

_served: list[str] = []  # the base URL path the routes were added under, once added


@functools.cache
def _chart_hash() -> str:
    return hashlib.sha256(CHART_JS.read_bytes()).hexdigest()[:12]


def plotly_path() -> str:
    return f"{PREFIX}/plotly-{plotly.__version__}.min.js"


def chart_path() -> str:
    return f"{PREFIX}/live_chart-{_chart_hash()}.js"


def served() -> bool:
    """Whether this process serves the assets (started from ``serve.py``)."""
    return bool(_served)


def url(path: str) -> str:
    """``path`` under the app's base URL path (``server.baseUrlPath``)."""
    base = _served[0] if _served else ""
    return f"/{base}{path}" if base else path


def asset_routes(base_url_path: str = "") -> list:
    """Starlette routes serving ``plotly.min.js`` and ``live_chart.js`` (for ``st.App``)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, Response
    from starlette.routing import Route

    base = base_url_path.strip("/")

    def sender(path: Path, media_type: str):
        async def send(request):
            headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
            if "gzip" in request.headers.get("accept-encoding", ""):
                # Compressed once per process (off the event loop), not per request.
                body = await run_in_threadpool(_gzipped, path)
                headers["Content-Encoding"] = "gzip"
                return Response(body, media_type=media_type, headers=headers)
            return FileResponse(path, media_type=media_type, headers=headers)

        return send

    _served[:] = [base]
    return [
        Route(url(plotly_path()), sender(PLOTLY_JS, "text/javascript"), methods=["GET"]),
        Route(url(chart_path()), sender(CHART_JS, "text/javascript"), methods=["GET"]),
    ]


@functools.cache
def _gzipped(path: Path) -> bytes:
    return gzip.compress(path.read_bytes(), compresslevel=6)


def component_js() -> str:
    """The component's module: a two-line import of the served file, or the file itself."""
    if not served():
        return CHART_JS.read_text()
    # The module runs from a blob: URL, against which a path does not resolve.
    return (
        f'const chart = import(new URL("{url(chart_path())}", window.location.href).href);\n'
        "export default async function (args) { return (await chart).default(args); }\n"
    )


@functools.cache
def loader_js() -> str:
    """plotly.js as a component module, for a server without the asset routes."""
    return f"if (!window.Plotly) {{\n{PLOTLY_JS.read_text()}\n}}\n{LOADER_JS.read_text()}"


def plotly_url() -> str | None:
    """Where the browser loads plotly.js from (None: the loader component brings it)."""
    return url(plotly_path()) if served() else None
