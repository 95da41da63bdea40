"""Every page in real Chromium: it renders, shows its key content, and raises nothing.

The first request goes to a deep link on a freshly started server of its own:
Streamlit's first page load decides how pages are routed, and a shared link
(``/cliff``, ``/lab?preset=...``) must still get the app's navigation and
layout (see ``app_boot.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, _free_port, _wait_healthy
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
NAV_TITLES = [
    "Home",
    "Training Lab",
    "Worked examples",
    "Tutorial",
    "Recurrent nets",
    "The cliff",
    "Stability map",
    "In practice",
    "Your run",
]

# path -> a text the page shows once it has computed its content
PAGES = {
    "": "Exploding gradients, and how clipping tames them",
    "worked_examples": "Worked examples",
    "tutorial": "Exploded at step",
    "recurrent": "Exploded at step",
    "cliff": "The cliff",
    "stability_map": "Stability map",
    "in_practice": "In practice",
    "lab?preset=tutorial_clip_norm": "Training Lab",
    "your_run": "Your run, diagnosed",
}


@pytest.fixture(scope="module")
def fresh_url():
    """A server no request has reached yet (the session server may have served others)."""
    port = _free_port()
    log = Path(tempfile.mkdtemp()) / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("[data-testid='stSidebarNav']", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=120_000)


def test_a_deep_link_on_a_fresh_server_gets_the_apps_navigation(page: Page, fresh_url: str):
    open_page(page, f"{fresh_url}/cliff")
    nav = page.locator("[data-testid='stSidebarNav']").inner_text()
    for title in NAV_TITLES:
        assert title in nav
    assert "app" not in nav.split()  # not the raw file names of a pages/ folder
    expect(page.get_by_role("heading", name="The cliff")).to_be_visible()


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_without_an_exception(page: Page, base_url: str, path: str):
    open_page(page, f"{base_url}/{path}")
    expect(page.get_by_text(PAGES[path]).first).to_be_visible(timeout=120_000)
    assert page.locator("[data-testid='stException']").count() == 0
    if path not in ("", "worked_examples", "lab?preset=tutorial_clip_norm", "your_run"):
        expect(page.locator("[data-testid='stPlotlyChart']").first).to_be_visible(timeout=120_000)
    assert page.locator("[data-testid='stException']").count() == 0
