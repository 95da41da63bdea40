"""The security posture the README states ("Security"), each claim checked here.

* XSRF protection is on, and users never see a traceback or a file path
  (the effective Streamlit configuration, read after loading
  ``.streamlit/config.toml``; an exception still reaches the tests).
* No user-controlled text is rendered as HTML: every ``unsafe_allow_html=True``
  and every component's HTML or script is a constant or comes from an
  allow-listed builder that escapes what it is given (an AST scan of the
  sources, and the builders fed hostile text).
* No ``eval``, ``exec`` or unpickling of anything a user sends (an AST scan).
* Uploads are capped by the budget, kept in memory by Streamlit, and never
  written to disk by our code (an AST scan for file writes).
* The URL guard still reaches the values Streamlit seeds bound widgets from.
"""

from __future__ import annotations

import ast
import inspect
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clipviz.engine import budget
from pages.components import live_chart as live_chart_files

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    [ROOT / "app.py", ROOT / "app_boot.py", ROOT / "url_guard.py"]
    + list((ROOT / "pages").rglob("*.py"))
    + list((ROOT / "clipviz").rglob("*.py"))
)


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def calls(path: Path):
    """Every call in a source file, with its dotted name ('st.markdown', 'pickle.loads')."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node, dotted(node.func)


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return dotted(node.func) + "()"
    return ""


# ---- the effective configuration ----------------------------------------------------------


@pytest.fixture
def effective_config(monkeypatch):
    """Streamlit's configuration as ``streamlit run`` in the repository root sees it."""
    from streamlit import config

    monkeypatch.chdir(ROOT)
    config.get_config_options(force_reparse=True)
    yield config
    monkeypatch.undo()
    config.get_config_options(force_reparse=True)


def test_the_config_file_states_the_security_settings():
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["enableXsrfProtection"] is True
    assert settings["client"]["showErrorDetails"] == "none"
    assert settings["server"]["maxUploadSize"] * 2**20 <= budget.MAX_UPLOAD_BYTES


def test_xsrf_protection_is_on(effective_config):
    assert effective_config.get_option("server.enableXsrfProtection") is True
    # Streamlit needs CORS protection on too, or it turns XSRF protection off.
    assert effective_config.get_option("server.enableCORS") is True


def test_users_never_see_a_traceback_or_a_path_but_tests_still_catch_it(effective_config, tmp_path):
    assert effective_config.get_option("client.showErrorDetails") == "none"
    script = tmp_path / "boom.py"
    secret = str(tmp_path / "secret_module.py")
    script.write_text(f"raise ValueError({secret!r})\n")
    app = AppTest.from_file(str(script)).run()
    assert app.exception  # a test still sees that the page failed
    shown = app.exception[0]
    assert secret not in shown.value and "Traceback" not in shown.value
    assert not shown.stack_trace  # and no frames, no file paths


def test_uploads_are_capped_and_kept_in_memory(effective_config):
    assert effective_config.get_option("server.maxUploadSize") * 2**20 <= budget.MAX_UPLOAD_BYTES
    from streamlit.web.server import server

    # Streamlit holds uploaded files in memory, never in a temporary file.
    assert "MemoryUploadedFileManager(" in inspect.getsource(server)


# ---- HTML: only escaping builders feed it ------------------------------------------------

# The functions allowed to produce HTML that is rendered unescaped; each escapes every
# piece of text it is given (checked with hostile text below). Add a builder here only
# with such a check.
HTML_BUILDERS = {"component_js", "loader_js"}
COMPONENT_CONTENT = ("html", "js", "css")


# What a user controls, as it appears in source: an UPPER_CASE name assigned from any of
# these is not a constant.
USER_INPUT = ("query_params", "file_uploader", "session_state", "getvalue", "text_input",
              "text_area", "chat_input", "camera_input", "data_editor", "environ", "argv",
              "state[", "state.get")  # fmt: skip


def _assigned_from_user_input(tree: ast.AST | None, name: str) -> bool:
    """True when ``name`` is assigned anywhere in ``tree`` from something a user controls."""
    if tree is None:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign) and node.value:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if name in names and any(s in ast.unparse(node.value) for s in USER_INPUT):
                return True
    return False


def _constant_or_builder(node: ast.AST, tree: ast.AST | None = None) -> bool:
    """A string literal, a module constant (UPPER_CASE, not assigned from user input) or a
    call to an allowed builder."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    name = dotted(node)
    last = name.split(".")[-1].rstrip("()")
    if isinstance(node, ast.Name | ast.Attribute):
        return last.isupper() and not _assigned_from_user_input(tree, last)
    return isinstance(node, ast.Call) and last in HTML_BUILDERS


def unsafe_html_sites(sources: list[Path] = SOURCES) -> list[tuple[str, int, str, bool]]:
    """(file, line, call, fed only by constants or allowed builders) of every HTML sink."""
    sites = []
    for path in sources:
        tree = ast.parse(path.read_text(), str(path))
        for node, name in calls(path):
            keywords = {k.arg: k.value for k in node.keywords}
            unsafe = keywords.get("unsafe_allow_html")
            if (
                unsafe is not None
                and not (isinstance(unsafe, ast.Constant) and unsafe.value is False)
                or name.endswith("html")
                and name.split(".")[0] in ("st", "components")
            ):
                content = node.args[0] if node.args else keywords.get("body")
                ok = content is not None and _constant_or_builder(content, tree)
                sites.append((relative(path), node.lineno, name, ok))
            elif name.endswith("components.v2.component") or name.endswith(
                "components.declare_component"
            ):
                parts = [keywords[k] for k in COMPONENT_CONTENT if k in keywords]
                ok = all(_constant_or_builder(p, tree) for p in parts)
                sites.append((relative(path), node.lineno, name, ok))
    return sites


def test_html_is_rendered_only_from_constants_and_escaping_builders():
    sites = unsafe_html_sites()
    assert sites, "the scan found no HTML sink at all: it is looking in the wrong place"
    bad = [site for site in sites if not site[3]]
    assert not bad, (
        "unsafe_allow_html / st.html / a component fed by something other than a constant "
        f"or an escaping builder ({sorted(HTML_BUILDERS)}): {bad}"
    )


def test_the_html_scan_flags_text_from_the_link_or_an_upload(tmp_path):
    page = tmp_path / "page.py"
    page.write_text(
        "import streamlit as st\n"
        "name = st.query_params.get('name', '')\n"
        "st.markdown(f'<b>{name}</b>', unsafe_allow_html=True)\n"
        "st.html(st.file_uploader('f').getvalue().decode())\n"
        "st.markdown(live_chart.loader_js(), unsafe_allow_html=True)\n"
        "st.markdown('**fine**')\n"
        "BANNER = st.query_params.get('banner', '')\n"
        "st.markdown(BANNER, unsafe_allow_html=True)\n"
        "UPLOADED = upload.getvalue().decode()\n"
        "st.components.v2.component('x', html=UPLOADED)\n"
        "st.markdown(name, unsafe_allow_html=flag)\n"
        "SCRIPT = Path('pages/components/x.js').read_text()\n"
        "st.components.v2.component('y', js=SCRIPT)\n"
    )
    assert [(line, ok) for _, line, _, ok in unsafe_html_sites([page])] == [
        (3, False),  # from the link
        (4, False),  # from an upload
        (5, True),  # an allowed builder (no argument a user controls)
        (8, False),  # a "constant" read from the link
        (10, False),  # a "constant" read from an upload
        (11, False),  # unsafe_allow_html given anything but False
        (13, True),  # the app's own file
    ]


def test_the_html_builders_take_nothing_a_user_controls():
    """The live chart's scripts are files of the repository (and the asset URLs of this
    server): their builders take no argument, so no text from a link or an upload can
    reach them."""
    for builder in (live_chart_files.component_js, live_chart_files.loader_js):
        assert not inspect.signature(builder).parameters, builder
    assert (live_chart_files.HERE / "live_chart.html").read_text() == live_chart_files.HTML


JS_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(")


def test_component_scripts_never_turn_data_into_html_or_code():
    """The Lab's live chart gets the figure as JSON and hands it to Plotly; the colour key
    of the runs (their names may come from an upload's column) is data, drawn as text."""
    scripts = {relative(p): p.read_text() for p in (ROOT / "pages").rglob("*.js")}
    assert "pages/components/live_chart/live_chart.js" in scripts
    for where, source in scripts.items():
        for sink in JS_SINKS:
            assert sink not in source, (where, sink)
    chart = scripts["pages/components/live_chart/live_chart.js"]
    assert "JSON.parse(" in chart
    assert "swatch.textContent" in chart and "container.append(swatch, ` ${label}`)" in chart


# ---- no code execution, no unpickling, no files from user input ---------------------------

CODE_EXECUTION = {
    "eval",
    "exec",
    "compile",
    "__import__",
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "torch.load",
    "pandas.read_pickle",
    "pd.read_pickle",
    "yaml.load",
    "yaml.unsafe_load",
    "joblib.load",
    "dill.load",
    "dill.loads",
    "runpy.run_path",
    "runpy.run_module",
}
# Each allowed use, and why no user input can reach it.
ALLOWED_EXECUTION = {
    # The router re-runs its own app.py (a fixed path) for a deep link on a fresh server.
    ("app_boot.py", "runpy.run_path"),
    # The app's own objects, pickled to a fresh worker process through a private
    # temporary directory (mode 0700); /in_practice has no inputs at all.
    ("clipviz/lessons/practice.py", "pickle.loads"),
}


def test_no_eval_exec_or_unpickling_outside_the_allowed_uses():
    found = set()
    for path in SOURCES:
        for node, name in calls(path):
            if name in CODE_EXECUTION or (
                name.endswith(".load")
                and any(
                    k.arg == "allow_pickle" and getattr(k.value, "value", False) is True
                    for k in node.keywords
                )
            ):
                found.add((relative(path), name))
    assert found - ALLOWED_EXECUTION == set(), found - ALLOWED_EXECUTION
    assert found >= ALLOWED_EXECUTION, "an allowed use is gone: drop it from the list"


WRITES = {"open", "write_text", "write_bytes", "save", "savez", "to_csv", "to_pickle", "copy",
          "copyfile", "mkstemp", "NamedTemporaryFile", "TemporaryDirectory", "mkdtemp"}  # fmt: skip
# Files written on purpose, never from an upload.
ALLOWED_WRITES = {
    # ``train --records FILE`` (docs/CONTRACT.md): the file a command-line user names on
    # their own machine.
    "clipviz/cli.py",
    # The fresh worker process's private temporary directory (see above).
    "clipviz/lessons/practice.py",
    # ``loadtest``: the log of the Streamlit server it starts, where its caller asks.
    "clipviz/tools/loadtest.py",
    # ``GradientLog(model, path=...)``: a CSV the user's own training loop writes where
    # they ask; no page uses it (checked below).
    "clipviz/engine/gradlog.py",
}


def _writes(node: ast.Call, name: str) -> bool:
    last = name.split(".")[-1]
    if last not in WRITES:
        return False
    if last == "open":  # reading is fine
        mode = node.args[1] if len(node.args) > 1 else None
        mode = next((k.value for k in node.keywords if k.arg == "mode"), mode)
        text = mode.value if isinstance(mode, ast.Constant) else "r"
        return any(c in text for c in "wax+")
    if last == "to_csv":  # records.to_csv(header, rows) builds a string; a path writes
        return name.startswith(("df", "frame", "pd")) or bool(
            [k for k in node.keywords if k.arg == "path_or_buf"]
        )
    if last == "copy":
        return name.startswith("shutil")
    return True


def test_no_page_or_library_code_writes_files_except_the_allowed_ones():
    found = {
        (relative(path), node.lineno, name)
        for path in SOURCES
        for node, name in calls(path)
        if _writes(node, name)
    }
    outside = {site for site in found if site[0] not in ALLOWED_WRITES}
    assert not outside, f"files written (an upload must never reach disk): {sorted(outside)}"
    assert found, "the scan found no write at all: it is looking in the wrong place"
    # The app never calls GradientLog (pages show how to use it, as text).
    app_sources = [ROOT / "app.py", *(ROOT / "pages").rglob("*.py")]
    app_sources += list((ROOT / "clipviz" / "app").rglob("*.py"))
    for path in app_sources:
        assert not [name for _, name in calls(path) if name.endswith("GradientLog")], path
        imports = [
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Import | ast.ImportFrom) and "gradlog" in ast.unparse(node)
        ]
        assert not imports, path


# ---- the URL guard and Streamlit's internals ----------------------------------------------


def test_the_url_guard_reaches_the_values_streamlit_seeds_widgets_from():
    """``url_guard`` rewrites Streamlit's private query-parameter store; an upgrade that
    moves it must fail here, not silently let bad values reach the widgets."""
    from streamlit.runtime.state.query_params import QueryParams

    params = QueryParams()
    assert isinstance(params._query_params, dict)
    assert isinstance(params._initial_query_params, dict)
    assert callable(params._send_query_param_msg)


def test_a_bad_value_is_gone_from_the_link_and_the_widget_starts_at_its_default():
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    app.query_params.update({"cliff_T": "inf", "cliff_steps": "40"})
    app.switch_page("pages/cliff.py").run()
    assert not app.exception
    assert "cliff_T" not in app.query_params and app.query_params["cliff_steps"] == "40"
    assert app.session_state["cliff_T"] == 50 and app.session_state["cliff_steps"] == 40
