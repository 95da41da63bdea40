"""clipviz served for many learners: ``streamlit run serve.py`` (what ``deploy/`` runs).

The same app as ``streamlit run app.py``, as an ``st.App`` (Streamlit 1.67's
Starlette application) with routes of its own:

* the live chart's code and plotly.js, served from the files on disk with a
  year of browser caching (why and how: ``pages/components/live_chart/``), so
  each browser downloads plotly.js once instead of every session receiving it
  through the websocket;
* ``/clipviz-usage``: what the Lab's ticks have done in this process so far
  (ticks, steps, training CPU seconds), which ``python -m clipviz loadtest``
  reads to tell the server's training from the rest of its work.
"""

import streamlit as st
from starlette.responses import JSONResponse
from starlette.routing import Route
from streamlit import config

from clipviz.app.player import USAGE
from pages.components import live_chart


async def usage(_request):
    return JSONResponse(USAGE.snapshot(), headers={"Cache-Control": "no-store"})


app = st.App(
    "app.py",
    routes=[
        *live_chart.asset_routes(config.get_option("server.baseUrlPath") or ""),
        Route("/clipviz-usage", usage, methods=["GET"]),
    ],
)
