"""Check a page's URL before its widgets read it (the Streamlit side of ``clipviz.app.urlkeys``).

A widget bound to the URL (``bind="query-params"``) seeds itself from the
query string of the page load, and Streamlit 1.67 parses that value itself:
``?rec_seed=inf`` raises ``OverflowError`` out of ``st.number_input``, and an
out-of-range or misspelt value is dropped without a word. ``guard_page`` runs
in the router (``app.py``) before every page, on every script run: it looks
the page up in ``clipviz.app.urlkeys.PAGE_URLS`` and validates every key with
``clipviz.app.urlkeys.check_query``, removes each bad value from both the URL
and the values the widgets will be seeded from (so they start at their
defaults), writes good values the way the widgets read them, and shows one
plain-text warning per problem, naming the key and the value. (The Lab checks
its own URL with its codec when it opens; ``PageUrl.self_checked``.)

``guard_query`` is the same check called by a page itself; under the router it
does nothing (the router has checked that page already), so a page run on its
own (an AppTest of one page file) is still checked.

The seeding values live in Streamlit's ``QueryParams`` object, reached
through the script-run context; ``tests/test_security.py`` fails if a
Streamlit upgrade moves them.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from clipviz.app import urlkeys
from clipviz.engine.config import format_value


def _rewrite(changes: Mapping[str, str | None]) -> None:
    """Set (or, for None, remove) query parameters, including the widgets' seed values."""
    ctx = get_script_run_ctx()
    if ctx is None:  # not inside a script run (bare mode): nothing is seeded from a URL
        return
    with ctx.session_state.query_params() as qp:
        for key, value in changes.items():
            if value is None:
                qp._query_params.pop(key, None)
                qp._initial_query_params.pop(key, None)
            else:
                qp._query_params[key] = value
                qp._initial_query_params[key] = [value]
        qp._send_query_param_msg()


ROUTED = "_url_guard_routed"  # session key: the router checks every page of this session


def guard_page(url_path: str) -> None:
    """The router's check of the page about to run (``url_path`` as in ``app.py``).

    A page missing from ``urlkeys.PAGE_URLS`` is left alone (its own keys
    would otherwise be thrown away); ``tests/test_fuzz.py`` fails for it.
    """
    page = urlkeys.PAGE_URLS.get(url_path)
    if page is None or page.self_checked:
        return
    st.session_state[ROUTED] = True
    _guard(url_path or "home", page.keys, page.also_allowed)


def guard_query(
    page: str,
    keys: Mapping[str, urlkeys.UrlKey],
    *,
    also_allowed: frozenset = frozenset(),
) -> None:
    """A page's own check of its URL: done by the router already, unless the page runs alone."""
    if not st.session_state.get(ROUTED):
        _guard(page, keys, also_allowed)


def _guard(page: str, keys: Mapping[str, urlkeys.UrlKey], also_allowed: frozenset) -> None:
    """Validate ``page``'s URL, clean it before any widget reads it, and show what was ignored.

    The warnings stay on the page for the rest of the visit (the cleaned URL
    no longer holds the bad values, so they are remembered in the session).
    """
    memory = f"_url_problems_{page}"
    params = {key: st.query_params.get_all(key) for key in st.query_params}
    good, problems = urlkeys.check_query(keys, params, also_allowed=also_allowed)
    changes: dict[str, str | None] = {}
    for key, values in params.items():
        if key in urlkeys.STREAMLIT_KEYS or key in also_allowed:
            continue
        if key not in good:
            changes[key] = None
        elif values != [good[key]]:  # repeated, or written another way ("1e-1")
            changes[key] = good[key]
    if changes:
        _rewrite(changes)
    if problems:
        st.session_state[memory] = [
            urlkeys.problem_line(p, _fallback(keys, p.key)) for p in problems
        ]
    for text in st.session_state.get(memory, []):
        st.warning(urlkeys.plain_markdown(text), icon=":material/warning:")


def _fallback(keys: Mapping[str, urlkeys.UrlKey], key: str) -> str:
    if key in keys and keys[key].default is not None:
        return f"the default ({format_value(keys[key].default)})"
    return "the default"
