"""Plotly figure builders: pure functions from computed results to figures.

One module per topic (``training`` for the Lab's and the tutorial's run charts,
``tutorial``, ``worked``, ``cliff``, ``recurrent``, ``stability``, ``practice``,
``race``, ``yourrun``); shared colours and layout live in ``style``. Nothing here trains or imports streamlit.
"""
