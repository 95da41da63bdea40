"""clipviz: the entry point and router. Run with ``streamlit run app.py``.

Each page is one file in ``pages/``; this file only declares them, in the
order of the sidebar, and sets what every page shares.
"""

import os
from pathlib import Path

import streamlit as st

import app_boot  # noqa: F401  (its first import sets the server's memory policy)
from url_guard import guard_page

st.set_page_config(
    page_title="clipviz: exploding gradients and gradient clipping",
    layout="wide",
    initial_sidebar_state="expanded",
)

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/lab.py", title="Training Lab", icon=":material/science:", url_path="lab"),
    st.Page(
        "pages/worked_examples.py",
        title="Worked examples",
        icon=":material/calculate:",
        url_path="worked_examples",
    ),
    st.Page(
        "pages/tutorial.py", title="Tutorial", icon=":material/menu_book:", url_path="tutorial"
    ),
    st.Page(
        "pages/recurrent.py", title="Recurrent nets", icon=":material/replay:", url_path="recurrent"
    ),
    st.Page("pages/cliff.py", title="The cliff", icon=":material/landscape:", url_path="cliff"),
    st.Page(
        "pages/stability_map.py",
        title="Stability map",
        icon=":material/grid_on:",
        url_path="stability_map",
    ),
    st.Page(
        "pages/in_practice.py",
        title="In practice",
        icon=":material/build:",
        url_path="in_practice",
    ),
    st.Page(
        "pages/your_run.py", title="Your run", icon=":material/upload_file:", url_path="your_run"
    ),
]

if os.environ.get("CLIPVIZ_REPLICA"):  # set by deploy/serve-local: which process serves this tab
    st.sidebar.caption(f"Server process {os.environ['CLIPVIZ_REPLICA']}")
# Chart text alternatives, keyboard-reachable formulas and readable code on every page;
# the browser code and what it does: pages/components/a11y/.
A11Y = Path(__file__).parent / "pages" / "components" / "a11y"
A11Y_JS, A11Y_CSS = (A11Y / "a11y.js").read_text(), (A11Y / "a11y.css").read_text()

page = st.navigation(PAGES, position="sidebar")
# Every page's URL is checked before the page reads it (url_guard; the keys of every
# page are declared once, in clipviz.app.urlkeys.PAGE_URLS).
guard_page(page.url_path)
with st.sidebar:
    a11y = st.components.v2.component(
        "clipviz_a11y", js=A11Y_JS, css=A11Y_CSS, isolate_styles=False
    )
    a11y(key="clipviz_a11y")
page.run()
