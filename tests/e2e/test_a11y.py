"""Accessibility in real Chromium: axe-core on every page, and the Lab by keyboard alone.

* ``test_axe_finds_no_critical_or_serious_violation``: axe-core (shipped by the
  pip package ``axe-playwright-python``) audits every page of the router once
  it has computed its content, and the Lab twice: idle, and after its
  unscaled run has played to the explosion (charts, alerts, the diagnosis and
  the fixes on screen). It prints the violations per impact for each page and
  asserts none is critical or serious.
* ``test_the_lab_plays_pauses_steps_and_resets_by_keyboard``: Tab moves the
  focus to each button, Enter or Space presses it; the step counter shows that
  each press did what it says.
* ``test_every_chart_has_a_text_alternative``: every Plotly chart is announced
  as a figure with a one-line summary of what it shows (pages/components/a11y).
"""

from __future__ import annotations

import re
import time

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
IMPACTS = ("critical", "serious", "moderate", "minor")
EXPLODED = re.compile(r"Exploded at step \d+")
COUNTER = re.compile(r"Step ([\d,]+) of ([\d,]+)")

# path -> a text the page shows once it has computed its content (every page of app.py).
PAGES = {
    "": "Exploding gradients, and how clipping tames them",
    "lab": "Training Lab",
    "lab?preset=tutorial_unscaled&autoplay=true": EXPLODED,
    "worked_examples": "Worked examples",
    "tutorial": EXPLODED,
    "recurrent": EXPLODED,
    "cliff": "The cliff",
    "stability_map": "Stability map",
    "in_practice": "In practice",
    "your_run": "Your run, diagnosed",
}
CHARTED = ("lab", "tutorial", "recurrent", "cliff", "stability_map", "in_practice")


def open_page(page: Page, url: str, shows: str | re.Pattern) -> None:
    page.goto(url)
    page.wait_for_selector("[data-testid='stSidebarNav']", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=120_000)
    expect(page.get_by_text(shows).first).to_be_visible(timeout=120_000)
    if url.split("/")[-1].split("?")[0] in CHARTED:
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=120_000)
    time.sleep(1.5)  # the a11y check runs once a second; let charts finish drawing


def audit(page: Page) -> dict[str, list[dict]]:
    """axe-core's violations on the page as it is now, grouped by impact."""
    results = Axe().run(page).response
    grouped: dict[str, list[dict]] = {impact: [] for impact in IMPACTS}
    for violation in results["violations"]:
        grouped.setdefault(violation["impact"] or "minor", []).append(violation)
    return grouped


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        targets = [" ".join(map(str, n["target"])) for n in v["nodes"][:3]]
        lines.append(f"  {v['id']} ({len(v['nodes'])} nodes): {v['help']} at {targets}")
        if v["nodes"]:
            lines.append(f"    {v['nodes'][0].get('failureSummary', '')[:300]!r}")
    return "\n".join(lines)


@pytest.mark.parametrize("path", list(PAGES))
def test_axe_finds_no_critical_or_serious_violation(
    page: Page, base_url: str, path: str, capsys
) -> None:
    open_page(page, f"{base_url}/{path}", PAGES[path])
    assert page.locator("[data-testid='stException']").count() == 0
    grouped = audit(page)
    counts = {impact: sum(len(v["nodes"]) for v in grouped[impact]) for impact in IMPACTS}
    rules = {impact: sorted(v["id"] for v in grouped[impact]) for impact in IMPACTS}
    with capsys.disabled():
        print(f"\naxe /{path}: nodes by impact {counts}; rules {rules}")
    bad = grouped["critical"] + grouped["serious"]
    assert not bad, f"/{path}: critical or serious violations:\n{describe(bad)}"


def steps(page: Page) -> tuple[int, int]:
    done, total = COUNTER.search(page.locator("[data-testid='stProgress']").inner_text()).groups()
    return int(done.replace(",", "")), int(total.replace(",", ""))


def focused_button(page: Page) -> str:
    return page.evaluate(
        "() => { const e = document.activeElement;"
        " return e && e.tagName === 'BUTTON' ? e.innerText.trim() : ''; }"
    )


def tab_to(page: Page, name: str, limit: int = 200) -> None:
    """Press Tab until the focused element is the button ``name`` (fails after ``limit``)."""
    for _ in range(limit):
        if focused_button(page) == name:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached the button {name!r}")


def settle(page: Page) -> None:
    page.wait_for_selector(IDLE, timeout=30_000)


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_the_lab_plays_pauses_steps_and_resets_by_keyboard(page: Page, base_url: str) -> None:
    open_page(page, f"{base_url}/lab?preset=tutorial_clip_norm", "Training Lab")
    assert steps(page)[0] == 0
    page.evaluate("() => document.activeElement && document.activeElement.blur()")

    tab_to(page, "Step")
    page.keyboard.press("Enter")
    assert wait_for(lambda: steps(page)[0] > 0, 30), "Enter on Step did not step"
    settle(page)
    stepped = steps(page)[0]

    tab_to(page, "Play")
    page.keyboard.press("Space")
    assert wait_for(lambda: steps(page)[0] > stepped + 10, 30), "Space on Play did not play"
    # Playing turns Play into Pause; the focus may move, so Tab to it again.
    tab_to(page, "Pause")
    page.keyboard.press("Enter")
    settle(page)
    time.sleep(1.0)
    paused = steps(page)[0]
    time.sleep(1.5)
    assert steps(page)[0] == paused, "Enter on Pause did not pause"
    assert 0 < paused < steps(page)[1]

    tab_to(page, "Reset")
    page.keyboard.press("Space")
    assert wait_for(lambda: steps(page)[0] == 0, 30), "Space on Reset did not reset"
    assert page.locator("[data-testid='stException']").count() == 0


def test_every_chart_has_a_text_alternative(page: Page, base_url: str) -> None:
    open_page(page, f"{base_url}/tutorial", EXPLODED)
    labels = page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')].map("
        "(gd) => [gd.getAttribute('role'), gd.getAttribute('aria-label')])"
    )
    assert labels, "no chart on the tutorial"
    for role, label in labels:
        assert role == "figure"
        assert label and label.startswith("Chart") and "Axes: " in label
        assert "Click to enter" not in label  # plotly.js's placeholders are not titles, label
    # The label names what is drawn: the title of each chart as plotly.js holds it.
    titles = page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')].map("
        "(gd) => ((gd._fullLayout.title || {}).text || '').replace(/<[^>]*>/g, ' ')"
        ".replace(/\\s+/g, ' ').trim())"
    )
    for (_, label), title in zip(labels, titles, strict=True):
        assert title in label, (title, label)
