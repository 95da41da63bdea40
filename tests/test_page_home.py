"""AppTest for the home page: the checklist of signs and fixes, each Lab link's claim
checked by training its configuration, and a map that links every page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clipviz.lessons import story
from clipviz.lessons.diagnose import FIX_NOTES, SIGNS

APP = str(Path(__file__).resolve().parents[1] / "app.py")
LINK = re.compile(r"\[([^\]]+)\]\((lab\?[^)\s]*)\)")
PAGES = (
    "lab",
    "worked_examples",
    "tutorial",
    "recurrent",
    "cliff",
    "stability_map",
    "in_practice",
    "your_run",
)
CLAIMS = {
    f"{item.title}: {link.label}": link
    for item in story.SIGN_CHECKLIST + story.FIX_CHECKLIST
    for link in item.links
}


@pytest.fixture(scope="module")
def at() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()  # home is the default page
    assert not app.exception, [e.value for e in app.exception]
    return app


def page_urls(at: AppTest) -> list[str]:
    texts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    return [url for t in texts for _, url in LINK.findall(t)]


def test_home_keeps_its_explanations(at: AppTest) -> None:
    assert at.title[0].value.startswith("Exploding gradients")
    assert len(at.latex) >= 3
    assert any(s.value == "Map of the app" for s in at.subheader)


def test_the_checklist_lists_every_sign_and_fix(at: AppTest) -> None:
    labels = [c.label for c in at.checkbox]
    assert labels == [f"**{s.title}**" for s in SIGNS] + [f"**{t}**" for t, _ in FIX_NOTES]
    at.checkbox[0].check().run()
    assert at.checkbox[0].value and not at.exception


def test_every_lab_link_on_the_page_makes_a_checked_claim(at: AppTest) -> None:
    urls = page_urls(at)
    assert set(urls) == {link.url for link in CLAIMS.values()}, (
        "each checklist link is shown, and nothing unchecked"
    )


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_each_link_shows_what_the_checklist_says(claim: str) -> None:
    """Open the link's query as the Lab does (the codec), train, find the signs."""
    check = story.verify_link(CLAIMS[claim])
    assert check.ok, (claim, check.problems, check.signs, check.exploded_at)


def test_the_map_links_every_page(at: AppTest) -> None:
    targets = [link.proto.page for link in at.get("page_link")]
    assert sorted(targets) == sorted(PAGES)
