"""/your_run in real Chromium: a file goes through the real uploader (the server's upload
endpoint, its XSRF token and its size limit), a bad file gets its message while the last
good log stays, and a file over the limit is refused before it reaches the page."""

from __future__ import annotations

import numpy as np
import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def open_your_run(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/your_run")
    page.wait_for_selector("[data-testid='stFileUploader']", timeout=120_000)
    page.wait_for_selector(IDLE, timeout=120_000)


def choose_file(page: Page, name: str, data: bytes) -> None:
    page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(
        {"name": name, "mimeType": "text/csv", "buffer": data}
    )


def good_log() -> bytes:
    norms = 2.0 + 0.1 * np.sin(np.arange(120) / 4.0)
    norms[89] = 40.0
    rows = ["step,grad_norm,loss"] + [f"{i + 1},{float(v)!r},1.0" for i, v in enumerate(norms)]
    return ("\n".join(rows) + "\n").encode()


def test_an_upload_is_diagnosed_and_a_bad_one_keeps_it(page: Page, base_url: str):
    open_your_run(page, base_url)
    choose_file(page, "mine.csv", good_log())
    expect(page.get_by_text("mine.csv: 120 steps")).to_be_visible(timeout=120_000)
    expect(page.locator("[data-testid='stPlotlyChart']").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("at step 90.")).to_be_visible()

    choose_file(page, "words.csv", b"a,b\nx,y\nz,w\n")
    expect(page.get_by_text("no column holds numbers only")).to_be_visible(timeout=120_000)
    expect(page.get_by_text("mine.csv: 120 steps")).to_be_visible()
    expect(page.get_by_text("last log that could be read, mine.csv")).to_be_visible()
    assert page.locator("[data-testid='stException']").count() == 0


def test_a_file_over_the_upload_limit_never_reaches_the_page(page: Page, base_url: str):
    open_your_run(page, base_url)
    big = b"step,grad_norm\n" + b"1,1\n" * (6 * 2**20 // 4)  # 6 MB, the limit is 5
    choose_file(page, "big.csv", big)
    uploader = page.locator("[data-testid='stFileUploader']")
    # Streamlit's own refusal (server.maxUploadSize = 5, .streamlit/config.toml).
    expect(uploader.get_by_text("File must be 5.0MB or smaller.")).to_be_visible(timeout=30_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    assert page.get_by_text("big.csv:").count() == 0  # never diagnosed
    assert page.locator("[data-testid='stException']").count() == 0
