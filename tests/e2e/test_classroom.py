"""Serving a classroom: many learners on one server, and several servers behind nginx.

* The load test (``python -m clipviz loadtest``) speaks Streamlit's websocket
  protocol: two learners for a few seconds against the test server get chart
  updates and see the steps advance.
* ``deploy/serve-local 2 PORT`` starts two processes behind Debian's nginx: two
  browser contexts play the Lab through nginx; each stays on one process (every
  response it gets names the same process, and the sidebar of its session shows
  that process's number), while the two land on different processes (the second
  carries a routing cookie nginx sends to the other process, found by asking it).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, _free_port
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

STARTUP_SECONDS = 240
COOKIE = "clipviz_replica"


def test_the_load_test_speaks_streamlits_protocol(app_server):
    from clipviz.tools import loadtest

    # On a thread of its own: Playwright's sync API may keep an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        result = pool.submit(
            loadtest.run_loadtest, sessions=2, seconds=6, url=app_server.base_url, settle_seconds=0
        ).result()
    assert result["errors"] == []
    assert result["sessions"] == 2
    assert result["updates"] > 0 and result["steps"] > 0  # played: new steps arrived
    assert result["updates_per_second"]["p10"] > 0  # both learners, not one
    assert 0 < result["bytes_per_update"] < 20_000


# ---- two processes behind nginx ----------------------------------------------------------


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """``deploy/serve-local 2 PORT``; yields (base URL, {process port: process number})."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-local") / "serve-local.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "deploy" / "serve-local"), "2", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, for the last-resort stop below
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline and "clipviz: http" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        line = next(x for x in log.read_text().splitlines() if x.startswith("clipviz: http"))
        ports = re.search(r"\((\d+) processes: ([\d ]+);", line).group(2).split()
        yield base, {p: i + 1 for i, p in enumerate(ports)}
    finally:
        proc.terminate()  # the script stops its processes by their pids
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def process_of(base: str, cookie: str | None = None) -> str:
    request = urllib.request.Request(f"{base}/_stcore/health")
    if cookie is not None:
        request.add_header("Cookie", f"{COOKIE}={cookie}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["X-Clipviz-Replica"].rsplit(":", 1)[1]


def play_through_nginx(page: Page, base: str, seen: list[str]) -> None:
    page.on(
        "response",
        lambda r: (
            seen.append(r.headers.get("x-clipviz-replica", "?").rsplit(":", 1)[-1])
            if r.url.startswith(base)
            else None
        ),
    )
    page.goto(f"{base}/lab?preset=tutorial_clip_norm")
    # A fresh process imports torch and the data on its first page: give it time.
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-script-state='notRunning']", timeout=180_000
    )
    page.wait_for_selector(".clipviz-live-chart .main-svg", timeout=180_000)
    page.get_by_role("button", name="Play", exact=True).click()


DRAWN_JS = (
    "() => { const gd = document.querySelector('.clipviz-live-chart');"
    " const line = ((gd && gd._fullData) || []).find((t) => t.name === 'batch loss');"
    " return line ? line._length : 0; }"
)


def drawn(page: Page) -> int:
    return page.evaluate(DRAWN_JS)


def test_each_browser_stays_on_one_process_and_two_can_differ(browser, classroom):
    base, number_of = classroom
    first = browser.new_context(viewport={"width": 1400, "height": 1000})
    second = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        # The first browser arrives without a cookie: nginx picks a process for it.
        page_a, seen_a = first.new_page(), []
        play_through_nginx(page_a, base, seen_a)
        mine = seen_a[0]
        # The second carries a routing key that nginx sends to the other process.
        key = next(f"probe-{i}" for i in range(64) if process_of(base, f"probe-{i}") != mine)
        second.add_cookies([{"name": COOKIE, "value": key, "url": base}])
        page_b, seen_b = second.new_page(), []
        play_through_nginx(page_b, base, seen_b)

        for page in (page_a, page_b):
            page.wait_for_function(f"() => ({DRAWN_JS})() >= 100", timeout=120_000)
            assert drawn(page) >= 100  # it plays: the websocket through nginx works
        assert set(seen_a) == {mine}, seen_a
        assert len(set(seen_b)) == 1 and seen_b[0] != mine, seen_b
        # The session (the websocket) runs on the same process as the page's requests.
        for page, seen in ((page_a, seen_a), (page_b, seen_b)):
            sidebar = page.locator("[data-testid='stSidebar']")
            expect(sidebar.get_by_text(f"Server process {number_of[seen[0]]}")).to_be_visible()
        cookies = {c["name"]: c["value"] for c in first.cookies()}
        assert COOKIE in cookies  # nginx gave the first browser its key
        assert process_of(base, cookies[COOKIE]) == mine  # and the key leads back to it
    finally:
        first.close()
        second.close()


def test_serve_local_refuses_bad_arguments():
    script = str(ROOT / "deploy" / "serve-local")
    for args in ([], ["0", "8000"], ["2", "80"], ["two", "8000"]):
        out = subprocess.run(["bash", script, *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and "usage:" in out.stderr, (args, out.stderr)


def test_the_nginx_configuration_is_valid(tmp_path: Path):
    nginx = "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        pytest.skip("no nginx")
    text = (ROOT / "deploy" / "nginx.conf.template").read_text()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        text.replace("@USER@", "")
        .replace("@TEMP@", str(tmp_path))
        .replace("@LISTEN@", "127.0.0.1:1")
        .replace("@SERVERS@", "server 127.0.0.1:2; server 127.0.0.1:3;")
    )
    out = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
