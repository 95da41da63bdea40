"""Keep deep links working on a freshly started server.

Streamlit decides at the first page load whether the app uses the old
"pages/ folder" navigation: until some run has called ``st.navigation``, a
``pages/`` folder beside ``app.py`` switches it on. So when the very first
request after a start is a deep link (a shared ``/lab?preset=...``), Streamlit
runs ``pages/lab.py`` on its own, without ``app.py``: no page config, and a
sidebar of raw file names. Every page calls ``ensure_router()`` first; in that
situation it switches the old mode off and runs ``app.py`` in the same script
run (so widget events are kept), whose ``st.navigation`` runs the requested
page, and then ends the outer run.

It also freezes the garbage collector's view of everything imported so far
(torch, plotly, scikit-learn: some 300,000 long-lived objects). Streamlit
collects garbage after every script run; without the freeze each collection
walks them all (~0.2 s, which would cap the Lab's live charts at a few redraws
a second), and with the collection switched off the cycles that reruns leave
behind pile up instead (the server grew by ~100 MB over ten Play/Reset cycles).
"""

import gc
import runpy
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

APP = Path(__file__).with_name("app.py")


_frozen = False


def ensure_router() -> None:
    global _frozen
    if not _frozen:  # once per process, after the first page's heavy imports
        gc.collect()
        gc.freeze()
        _frozen = True
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(APP), run_name="__main__")
        st.stop()
