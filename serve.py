"""clipviz served for many learners: ``streamlit run serve.py`` (what ``deploy/`` runs).

The same app as ``streamlit run app.py``, as an ``st.App`` (Streamlit 1.67's
Starlette application) with two routes of its own: the live chart's code and
plotly.js, served from the files on disk with a year of browser caching
(why and how: ``pages/components/live_chart/__init__.py``). So each browser
downloads plotly.js once instead of every session receiving it through
the websocket.
"""

import streamlit as st
from streamlit import config

from pages.components import live_chart

app = st.App(
    "app.py",
    routes=live_chart.asset_routes(config.get_option("server.baseUrlPath") or ""),
)
