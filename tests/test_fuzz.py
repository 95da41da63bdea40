"""Fuzz every input surface: every page's URL, the Lab's buttons, every CLI subcommand.

Bounded and reproducible: hypothesis runs a fixed number of examples
(``derandomize=True``, no example database) and the exhaustive parts are
products of small declared sets. Each test prints how many cases it ran
(``-rP`` shows them); none asserts a time, a run's time is bounded by
AppTest's timeout and, for the Lab, by the work budget (a counted cost).

* The URL of every page ``app.py`` declares: every declared key (the Lab's
  field table and link keys, ``clipviz.app.urlkeys.PAGE_URLS`` for the
  others) with every hostile value (``tests/hostile.py``) through the parser
  the page uses; then random hostile query strings through the whole app in
  AppTest: no exception element, no error that is not a validation message,
  nothing from the link rendered as Markdown, LaTeX or HTML.
* The Lab's Play / Pause / Step / Reset / Twin / fix / preset / setting
  callbacks: every ordered pair clicked within one script run (a double
  click, two buttons faster than the page redraws) and a walk through every
  ordered pair one run apart, with the fragment's ticks in between.
* Every subcommand of ``python -m clipviz``, in-process: every option with
  every hostile value, and random argument lists: exit 2 with one line on
  stderr, or a run the budget bounds.
"""

from __future__ import annotations

import ast
import contextlib
import io
import itertools
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs

import hypothesis.strategies as hs
import pytest
from hostile import (
    ABSURD_LAB_QUERIES,
    HOSTILE_KEYS,
    HOSTILE_VALUES,
    INJECTIONS,
    rendered_injections,
)
from hypothesis import HealthCheck, given, settings
from streamlit.testing.v1 import AppTest

from clipviz import cli
from clipviz.app import lab, urlkeys
from clipviz.engine import budget
from clipviz.engine.config import TrainConfig
from clipviz.engine.labstate import LAB_KEYS, LabState
from clipviz.tools import loadtest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"


def fuzz(examples: int) -> settings:
    """Hypothesis settings for the suite: ``examples`` cases, the same ones on every run."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def app_pages() -> dict[str, str]:
    """URL path -> page file, read from the ``st.Page`` declarations in ``app.py``."""
    pages = {}
    for node in ast.walk(ast.parse(APP.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "Page":
            script = node.args[0].value
            options = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            default = "" if options.get("default") else Path(script).stem
            pages[options.get("url_path", default)] = script
    return pages


PAGES = app_pages()


def report(what: str, cases: int) -> None:
    print(f"fuzz cases: {what}: {cases:,}")


# ---- one declaration per key, listed in the public interface ---------------------------


def test_every_page_of_the_app_declares_its_url_keys():
    assert len(PAGES) >= 8 and "lab" in PAGES and "" in PAGES
    assert set(PAGES) == set(urlkeys.PAGE_URLS), (
        "every page of app.py needs its URL keys declared in clipviz.app.urlkeys.PAGE_URLS "
        f"(missing: {set(PAGES) - set(urlkeys.PAGE_URLS)}; stale: "
        f"{set(urlkeys.PAGE_URLS) - set(PAGES)})"
    )


def test_the_contract_lists_every_url_key_of_every_page():
    text = (ROOT / "docs" / "CONTRACT.md").read_text()
    assert "## URL keys of every page" in text
    section = text.split("## URL keys of every page", 1)[1].split("\n## ", 1)[0]
    for url_path in urlkeys.PAGE_URLS:
        assert f"`/{url_path}`" in section, url_path
        for key in urlkeys.page_keys(url_path):
            assert f"`{key}`" in section, (url_path, key)


# ---- every key, every hostile value, through the parser its page uses ------------------


def parsed(url_path: str, params: dict) -> tuple[dict, list[str]]:
    """(what the page reads, the lines it shows) for ``params`` on ``url_path``'s page."""
    page = urlkeys.PAGE_URLS[url_path]
    own = {k: v for k, v in params.items() if not (page.lab_keys and k in LAB_KEYS)}
    good, problems = urlkeys.check_query(page.keys, own)
    lines = [urlkeys.plain_markdown(urlkeys.problem_line(p)) for p in problems]
    if page.lab_keys:
        state, lab_problems = LabState.from_query(
            {k: v for k, v in params.items() if k in LAB_KEYS}
        )
        assert not state.config.problems(), state.config  # valid, and inside the budget
        assert budget.problems_of(state.config) == []
        good |= state.to_params()
        lines += [lab.problem_text(p) for p in lab_problems]
    return good, lines


def assert_plain(lines: list[str]) -> None:
    for line in lines:
        assert "\n" not in line
        assert rendered_injections(line) == [], line
        assert len(line) <= 2 * urlkeys.MAX_SHOWN + 10  # escaped: at most one backslash each


def test_every_key_of_every_page_refuses_or_keeps_every_hostile_value():
    cases = 0
    for url_path in PAGES:
        for key in [*urlkeys.page_keys(url_path), *HOSTILE_KEYS]:
            for value in HOSTILE_VALUES:
                good, lines = parsed(url_path, {key: value})
                assert_plain(lines)
                # Whatever is kept reads back as itself: the widget gets a value it accepts.
                assert parsed(url_path, good) == (good, []), (url_path, key, value)
                cases += 1
    report("URL key x hostile value, every page, through its parser", cases)


def page_query(url_path: str):
    """Hypothesis: a hostile query string for ``url_path``'s page (repeated keys included)."""
    keys = [*urlkeys.page_keys(url_path), *HOSTILE_KEYS]
    value = (
        hs.sampled_from(HOSTILE_VALUES)
        | hs.text(max_size=30)
        | hs.from_regex(r"-?[0-9]{1,4}(\.[0-9]{1,3})?(e-?[0-9]{1,3})?", fullmatch=True)
    )
    one = value | hs.lists(value, min_size=2, max_size=3)  # a repeated key
    query = hs.dictionaries(hs.sampled_from(keys), one, min_size=1, max_size=8)
    if url_path == "lab":
        query = query | hs.sampled_from(ABSURD_LAB_QUERIES)
    return query


CODEC_EXAMPLES = 150


@pytest.mark.parametrize("url_path", list(PAGES))
def test_random_hostile_queries_are_parsed_without_raising(url_path):
    cases = 0

    @fuzz(CODEC_EXAMPLES)
    @given(query=page_query(url_path))
    def check(query):
        nonlocal cases
        good, lines = parsed(url_path, query)
        assert_plain(lines)
        assert parsed(url_path, good) == (good, [])
        cases += 1

    check()
    report(f"/{url_path} random queries through its parser", cases)


# ---- the whole app in AppTest ---------------------------------------------------------------

MARKDOWN_ELEMENTS = ("markdown", "caption", "warning", "error", "info", "success", "toast")
# An error element is the page's own content ("Exploded at step", the contract's
# explosion element) or a validation message; anything else is a defect.
VALIDATION = ("Ignored", "can't be run", "Please change a setting", "limit")
APPTEST_EXAMPLES = 3
APP_TIMEOUT = 120  # seconds: a hung page fails the test


def open_app(url_path: str, query: dict) -> AppTest:
    app = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT)
    app.query_params.update(query)
    if url_path:
        app.switch_page(PAGES[url_path])
    return app.run()


def assert_safe_page(app: AppTest, where) -> None:
    assert not app.exception, (where, [e.value for e in app.exception])
    for error in app.error:
        assert error.value.startswith("Exploded at step") or any(
            phrase in error.value for phrase in VALIDATION
        ), (where, error.value)
    for kind in MARKDOWN_ELEMENTS:
        for element in getattr(app, kind):
            body = element.value if kind != "toast" else element.proto.body
            assert rendered_injections(body) == [], (where, kind, body[:300])
    for warning in app.warning:
        assert "\n" not in warning.value.strip(), (where, warning.value)


@pytest.mark.parametrize("url_path", list(PAGES))
def test_hostile_links_open_every_page_with_messages_not_tracebacks(url_path):
    cases, slowest = 0, 0.0

    @fuzz(APPTEST_EXAMPLES)
    @given(query=page_query(url_path))
    def check(query):
        nonlocal cases, slowest
        start = time.perf_counter()
        app = open_app(url_path, query)
        slowest = max(slowest, time.perf_counter() - start)
        assert_safe_page(app, (url_path, query))
        if url_path == "lab":
            run = app.session_state["_lab_run"]
            assert budget.problems_of(run.config) == []  # what opened is bounded work
        cases += 1

    check()
    report(f"/{url_path} hostile links in AppTest (slowest {slowest:.1f} s)", cases)


def test_every_injection_through_every_page_key_is_shown_as_text():
    """One link per page with every declared key set to an injection: all shown escaped."""
    cases = 0
    for url_path in PAGES:
        keys = [k for k in urlkeys.page_keys(url_path) if urlkeys.PAGE_URLS[url_path].keys]
        keys = keys or ["zz"]
        query = {key: INJECTIONS[i % len(INJECTIONS)] for i, key in enumerate(keys)}
        query[INJECTIONS[0]] = INJECTIONS[3]  # a crafted key too
        assert_safe_page(open_app(url_path, query), (url_path, query))
        cases += len(query)
    query = {key: INJECTIONS[i % len(INJECTIONS)] for i, key in enumerate(sorted(LAB_KEYS))}
    app = open_app("lab", query)
    assert_safe_page(app, ("lab", query))
    assert len(app.warning) >= len(query) // 2  # each refused value named
    report("page x key with an injection, in AppTest", cases + len(query))


# ---- the Lab's buttons in any order, at any speed ------------------------------------------


def lab_session() -> AppTest:
    # Unscaled and unclipped, so it explodes within a few steps and fixes are offered.
    return open_app("lab", {"preset": "tutorial_unscaled"})


def press(app: AppTest, action: str) -> bool:
    """Do ``action`` as a learner would on the page as last drawn (no run yet).

    False when the page offers no way to do it now (a disabled button, which a
    browser cannot click; no fix offered); "Tick" presses nothing, and the next
    run is the fragment's tick (it runs with the page).
    """
    if action in ("Play", "Pause", "Step", "Reset"):
        [button] = [b for b in app.button if b.label == action]
        if button.disabled:
            return False
        button.click()
    elif action == "Twin":
        toggle = app.toggle(key="twin")
        toggle.set_value(not toggle.value)
    elif action == "Preset":
        select = app.selectbox(key="preset")
        other = "rnn_explodes" if select.value == "tutorial_unscaled" else "tutorial_unscaled"
        select.set_value(other)
    elif action == "Setting":
        slider = app.select_slider(key="lr")
        slider.set_value(0.02 if slider.value != 0.02 else 0.01)
    elif action == "Fix":
        offered = fixes_offered(app)
        if not offered:
            return False
        offered[0].click()
    return True


def fixes_offered(app: AppTest) -> list:
    return [b for b in app.button if (b.key or "").startswith("fix_")]


def offer_fixes(app: AppTest) -> None:
    """Bring the page to where fixes are offered (a run that exploded), as a learner
    would: the exploding preset, Play, and ticks until the run ends."""
    if fixes_offered(app):
        return
    if app.selectbox(key="preset").value != "tutorial_unscaled":
        app.selectbox(key="preset").set_value("tutorial_unscaled").run()
    [play] = [b for b in app.button if b.label == "Play"]
    if not play.disabled:
        play.click().run()
    for _ in range(20):
        if fixes_offered(app):
            return
        if app.session_state["_lab_run"].primary.explosion is not None:
            [pause] = [b for b in app.button if b.label == "Pause"]
            if not pause.disabled:  # a twin may still be playing
                pause.click()
        app.run()
    raise AssertionError("the unscaled preset did not explode")


def assert_consistent(app: AppTest, where) -> None:
    """No exception, and the run shown is the run the settings ask for, at the step shown."""
    assert not app.exception, (where, [e.value for e in app.exception])
    state = app.session_state
    run, player = state["_lab_run"], state["_lab_player"]
    assert run is not None and not run.closed, where
    wanted = TrainConfig.from_params(state["_lab_values"])[0]
    assert run.config == wanted, where
    assert (run.twin is not None) == bool(state["twin"]), where
    assert not (player.playing and run.done), where
    counter = app.get("progress")[0].proto.text
    assert counter.startswith(f"Step {run.step_count:,} of {run.total_steps:,}"), (where, counter)


ACTIONS = ("Play", "Pause", "Step", "Reset", "Twin", "Fix", "Preset", "Setting")


@pytest.mark.parametrize("first", ACTIONS)
def test_two_clicks_within_one_script_run_in_every_order(first):
    """A double click, or two buttons pressed before the page redraws: both callbacks
    run before one script run."""
    app = lab_session()
    for second in ACTIONS:
        if "Fix" in (first, second):
            offer_fixes(app)
        press(app, first)
        press(app, second)
        app.run()
        assert_consistent(app, (first, second))
    report(f"Lab: '{first}' then each action, within one script run", len(ACTIONS))


def de_bruijn(symbols: tuple[str, ...], n: int = 2) -> list[str]:
    """A shortest sequence holding every ``n``-long sequence of ``symbols`` exactly once."""
    k, a, out = len(symbols), [0] * len(symbols) * n, []

    def db(t: int, p: int) -> None:
        if t > n:
            if n % p == 0:
                out.extend(a[1 : p + 1])
        else:
            a[t] = a[t - p]
            db(t + 1, p)
            for j in range(a[t - p] + 1, k):
                a[t] = j
                db(t + 1, t)

    db(1, 1)
    return [symbols[i] for i in out]


def test_every_ordered_pair_of_actions_one_run_apart_with_ticks():
    walk = de_bruijn((*ACTIONS, "Tick"))
    walk.append(walk[0])  # the sequence is cyclic: close it
    app = lab_session()
    done = set()
    for i, action in enumerate(walk):
        if action == "Fix":
            offer_fixes(app)
        if press(app, action):
            done.add(action)
        app.run()
        assert_consistent(app, walk[max(0, i - 2) : i + 1])
    pairs = {tuple(walk[i : i + 2]) for i in range(len(walk) - 1)}
    assert pairs == set(itertools.product((*ACTIONS, "Tick"), repeat=2))
    assert done == {*ACTIONS, "Tick"}  # every action was really done at least once
    report("Lab: a walk through every ordered pair of actions", len(pairs))


# ---- the command line ----------------------------------------------------------------------


class WouldRun(Exception):
    """Raised where a command would start its work: its arguments passed every check."""


@pytest.fixture
def dry_cli(monkeypatch, tmp_path):
    """``cli.main`` with the work of each command replaced by a record of what it would do.

    It runs in an empty temporary folder: ``train --records FILE`` opens FILE before
    training, so the fuzz's values would otherwise become files in the repository."""
    from clipviz.engine import sweep
    from clipviz.engine.trainer import Trainer
    from clipviz.lessons import experiments

    monkeypatch.chdir(tmp_path)
    seen: dict = {}

    def record(name):
        def stop(*args, **kwargs):
            seen[name] = args[0]
            raise WouldRun

        return stop

    monkeypatch.setattr(Trainer, "run", lambda self, *a, **k: record("config")(self.config))
    monkeypatch.setattr(sweep, "run_sweep", record("spec"))
    monkeypatch.setattr(experiments, "reproduce", record("seeds"))
    monkeypatch.setattr(experiments, "bench", record("repeats"))
    # loadtest would start a server and its learners: record what it was asked instead
    monkeypatch.setattr(loadtest, "run_loadtest", lambda *a, **k: record("loadtest")(k))
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)

    def call(argv: list[str]) -> tuple[str, object]:
        seen.clear()
        err, out = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                code = cli.main(argv)
        except WouldRun:
            return "would run", dict(seen)
        except SystemExit as done:  # --help: argparse prints the usage and exits 0
            assert done.code == 0 and "usage:" in out.getvalue(), (argv, done.code)
            return "help", out.getvalue()
        lines = err.getvalue().strip().splitlines()
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err.getvalue())
            assert len(lines[0]) <= cli.MAX_MESSAGE + 10
            return "refused", lines[0]
        assert code == 0, (argv, code, err.getvalue())
        return "done", out.getvalue()

    return parser, call


def subcommands(parser) -> dict:
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _small_log() -> str:
    """A valid five-step gradient-norm log for ``diagnose FILE`` (written once)."""
    path = Path(tempfile.gettempdir()) / f"clipviz-fuzz-log-{os.getpid()}.csv"
    path.write_text("step,grad_norm\n1,0.5\n2,0.7\n3,1.2\n4,0.9\n5,3.0\n")
    return str(path)


def required_args(sub) -> list[str]:
    """The smallest valid arguments of a subcommand's required options and positionals."""
    fill = {"--vector": "2,-6,8", "--mode": "norm", "--threshold": "4"}
    args: list[str] = []
    for a in sub._actions:
        if not a.required:
            continue
        if a.option_strings:
            args += [a.option_strings[0], fill[a.option_strings[0]]]
        else:  # a positional: the only one is diagnose's FILE
            args.append(_small_log())
    return args


def assert_bounded(outcome: tuple[str, object]) -> None:
    kind, detail = outcome
    if kind != "would run":
        return
    if "config" in detail:
        assert budget.problems_of(detail["config"]) == []
    if "spec" in detail:
        spec = detail["spec"]
        assert budget.sweep_problem(spec.base, spec.networks) is None


def test_every_option_of_every_subcommand_with_every_hostile_value(dry_cli):
    parser, call = dry_cli
    cases = 0
    for name, sub in subcommands(parser).items():
        base = required_args(sub)
        options = [a for a in sub._actions if a.option_strings and a.nargs != 0]
        for action in options:
            if "-h" in action.option_strings:
                continue
            for value in (*HOSTILE_VALUES, "-6,8", "-1e-320", "--json", "-h"):
                assert_bounded(call([name, *base, action.option_strings[0], value]))
                cases += 1
    report("CLI: subcommand x option x hostile value", cases)


@fuzz(300)
@given(data=hs.data())
def test_random_argument_lists_exit_2_in_one_line_or_run_bounded(dry_cli, data):
    parser, call = dry_cli
    names = list(subcommands(parser))
    tokens = [
        *names,
        *[
            s
            for sub in subcommands(parser).values()
            for a in sub._actions
            for s in a.option_strings
        ],
        *HOSTILE_VALUES[:20],
        "1",
        "0.5",
        "norm",
        "lstm",
    ]
    argv = data.draw(hs.lists(hs.sampled_from(tokens) | hs.text(max_size=12), max_size=8))
    assert_bounded(call(argv))


def test_the_budget_refuses_over_budget_runs_on_the_command_line(dry_cli):
    _, call = dry_cli
    for query in ABSURD_LAB_QUERIES:
        argv = ["train"] + [x for k, v in query.items() for x in (f"--{k}", v)]
        kind, detail = call(argv)
        config, problems = TrainConfig.from_params(query)
        if problems:
            named = [k.replace("_", "-") for p in problems for k in p.key.split(", ")]
            assert kind == "refused" and any(f"--{k}" in detail for k in named), detail
        else:
            assert kind == "would run" and budget.problems_of(detail["config"]) == []


def test_the_link_codec_reads_a_query_string_exactly_as_streamlit_splits_it():
    """``parse_qs`` splits a raw query the way the browser's URL reaches the pages."""
    raw = "lr=0.1&lr=0.2&clip_mode=NORM&zz=%5Bx%5D(y)&batch-size=64"
    state, problems = LabState.from_query(parse_qs(raw, keep_blank_values=True))
    assert state.config.lr == 0.2 and state.config.clip_mode == "norm"
    assert state.config.batch_size == 64
    assert [p.key for p in problems] == ["zz"]


def test_the_contracts_key_table_is_the_one_the_code_declares():
    """docs/CONTRACT.md's table is ``urlkeys.key_table()`` verbatim, so a changed default
    or bound cannot leave the public interface stale."""
    text = (ROOT / "docs" / "CONTRACT.md").read_text()
    assert urlkeys.key_table() in text
