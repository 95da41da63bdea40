"""Hostile links and button races, replayed in real Chromium against `streamlit run`.

The AppTest fuzz (tests/test_fuzz.py) covers thousands of cases without a
browser; this replays a small, fixed sample of them where a learner meets
them, so what the browser does (URL seeding of bound widgets, a click
landing while a fragment tick runs, Markdown rendered to HTML) is covered
too. Each case asserts that no exception box and no traceback text appear,
that no injected link, image or script reaches the page, and that the page
still responds afterwards. Case counts are printed.

* ``test_hostile_links_on_every_page``: one link per page with every key the
  page reads set to a hostile value (numbers past float and integer limits,
  underflow, a 5,000-character string, Markdown/HTML/LaTeX injections) and a
  crafted key, plus the Lab's over-budget link from issue 16.
* ``test_button_races_on_the_lab``: Reset then Play at once; Step, Reset,
  Play; a double click on Play; a preset change while playing.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlencode

import pytest
from hostile import ABSURD_LAB_QUERIES, INJECTIONS
from playwright.sync_api import Page, expect

from clipviz.app import urlkeys

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
COUNTER = re.compile(r"Step ([\d,]+) of ([\d,]+)")
# A sample of tests/hostile.py: every class once (limits, underflow, non-numbers, length,
# Unicode, each kind of injection).
SAMPLE = (
    "inf",
    "1e309",
    "nan",
    "-0",
    "1e-320",
    "9" * 25,
    " ",
    "é😀",
    "x" * 5000,
    *INJECTIONS,
)
PAGES = ("", "lab", "worked_examples", "tutorial", "recurrent", "cliff", "stability_map",
         "in_practice", "your_run")  # fmt: skip


def hostile_query(url_path: str) -> dict[str, str]:
    keys = sorted(urlkeys.page_keys(url_path)) if url_path in urlkeys.PAGE_URLS else []
    query = {key: SAMPLE[i % len(SAMPLE)] for i, key in enumerate(keys)}
    query["zz"] = "1e309"  # an unknown key
    query[INJECTIONS[0]] = INJECTIONS[3]  # a crafted key
    return query


def settle(page: Page, timeout: float = 120_000) -> None:
    page.wait_for_selector("[data-testid='stSidebarNav']", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=timeout)


def assert_safe(page: Page, where) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, where
    text = page.locator("[data-testid='stApp']").inner_text()
    assert "Traceback" not in text and 'File "' not in text, where
    # Nothing injected became markup: no foreign link, image or script, no KaTeX from a value.
    assert page.locator("[data-testid='stMain'] a[href*='evil.example']").count() == 0, where
    assert page.locator("img[src='x'], img[src*='evil.example']").count() == 0, where
    assert page.evaluate("() => window.__pwned === undefined"), where


def responds(page: Page) -> None:
    """The page still answers: the sidebar's navigation takes us to the home page."""
    page.get_by_role("link", name="Home").first.click()
    expect(
        page.get_by_text("Exploding gradients, and how clipping tames them").first
    ).to_be_visible(timeout=60_000)


def test_hostile_links_on_every_page(page: Page, base_url: str, capsys) -> None:
    cases, keys = 0, 0
    start = time.monotonic()
    links = [(p, hostile_query(p)) for p in PAGES]
    links += [("lab", ABSURD_LAB_QUERIES[2]), ("stability_map", ABSURD_LAB_QUERIES[0])]
    times = {}
    for url_path, query in links:
        opened = time.monotonic()
        page.goto(f"{base_url}/{url_path}?{urlencode(query)}")
        settle(page)
        times[url_path] = round(time.monotonic() - opened, 1)
        assert_safe(page, (url_path, sorted(query)))
        cases += 1
        keys += len(query)
    responds(page)
    assert_safe(page, "after the links")
    with capsys.disabled():
        print(
            f"\nbrowser fuzz: {cases} hostile links ({keys} hostile key=value pairs) on "
            f"{len(PAGES)} pages in {time.monotonic() - start:.0f} s (per page, s: {times})"
        )


def steps(page: Page) -> tuple[int, int]:
    done, total = COUNTER.search(page.locator("[data-testid='stProgress']").inner_text()).groups()
    return int(done.replace(",", "")), int(total.replace(",", ""))


def button(page: Page, name: str):
    return page.get_by_role("button", name=name, exact=True)


def race(page: Page, *names: str) -> None:
    """Click the buttons one after another without waiting for the server in between
    (``force``: a click may land on a button a rerun is just disabling)."""
    for name in names:
        button(page, name).click(force=True, timeout=5_000)


def still_works(page: Page, where) -> None:
    """After a race: no error, and Pause, Reset and Step still do what they say."""
    page.wait_for_timeout(1_000)
    assert_safe(page, where)
    if button(page, "Pause").is_enabled():
        button(page, "Pause").click()
    page.wait_for_selector(IDLE, timeout=30_000)
    button(page, "Reset").click()
    expect(page.get_by_text(re.compile(r"Step 0 of"))).to_be_visible(timeout=30_000)
    button(page, "Step").click()
    expect(page.get_by_text(re.compile(r"Step 1 of"))).to_be_visible(timeout=30_000)
    assert_safe(page, where)


def test_button_races_on_the_lab(page: Page, base_url: str, capsys) -> None:
    page.goto(f"{base_url}/lab?preset=tutorial_clip_norm")
    settle(page)
    # The idle state may be seen between the link's first run and the rerun that
    # cleans it: the race starts once the buttons are there.
    expect(button(page, "Reset")).to_be_visible(timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    start = time.monotonic()
    sequences = [
        ("Reset", "Play"),
        ("Step", "Reset", "Play"),
        ("Play", "Pause", "Play", "Reset", "Step"),
    ]
    for sequence in sequences:
        race(page, *sequence)
        still_works(page, sequence)

    button(page, "Play").dblclick(force=True)
    still_works(page, "double click on Play")

    # A preset change while playing: the keyboard picks the next preset in the list.
    button(page, "Play").click()
    page.wait_for_timeout(500)
    preset = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first
    preset.locator("input").click()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    still_works(page, "preset change while playing")
    assert steps(page)[0] == 1
    with capsys.disabled():
        print(
            f"\nbrowser button races: {len(sequences) + 2} sequences on /lab "
            f"in {time.monotonic() - start:.0f} s"
        )
