"""clipviz: the entry point and router. Run with ``streamlit run app.py``.

Each page is one file in ``pages/``; this file only declares them, in the
order of the sidebar, and sets what every page shares.
"""

import streamlit as st

st.set_page_config(
    page_title="clipviz: exploding gradients and gradient clipping",
    page_icon="✂️",
    layout="wide",
    initial_sidebar_state="expanded",
)

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", url_path="home", default=True),
    st.Page(
        "pages/worked_examples.py", title="Worked examples", icon="🧮", url_path="worked_examples"
    ),
    st.Page("pages/cliff.py", title="The cliff", icon="⛰️", url_path="cliff"),
]

st.navigation(PAGES, position="sidebar").run()
