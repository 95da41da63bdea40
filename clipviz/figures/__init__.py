"""Plotly figure builders: pure functions from computed results to figures.

One module per topic (``lab``, ``worked``, ``cliff``, ...); shared colours and
layout live in ``style``. Nothing here trains or imports streamlit.
"""
