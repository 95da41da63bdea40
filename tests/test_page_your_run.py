"""AppTest for /your_run: uploads (AppTest drives st.file_uploader), examples, column mapping,
every bad file's message with the last good log kept, and sessions that never see each
other's upload (nor any file on disk)."""

from __future__ import annotations

import os
import pathlib
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from clipviz.app import yourrun as page
from clipviz.lessons import yourrun
from clipviz.lessons.yourrun import EXAMPLES

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "your_run.py")


def fresh() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def upload(app: AppTest, name: str, data: bytes) -> AppTest:
    app.file_uploader(key="your_run_file").set_value((name, data, "text/csv")).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def norm_log(n: int = 120, spike_at: int | None = 90, marker: str = "") -> bytes:
    norms = 2.0 + 0.1 * np.sin(np.arange(n) / 4.0)
    if spike_at:
        norms[spike_at - 1] = 40.0
    rows = [f"step,grad_norm,loss{marker}"] + [
        f"{i + 1},{float(v)!r},{5.0 - i / n!r}" for i, v in enumerate(norms)
    ]
    return ("\n".join(rows) + "\n").encode()


def shown(app: AppTest) -> str:
    return " ".join(s.value for s in app.success)


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def test_the_page_opens_with_an_uploader_and_examples():
    app = fresh()
    assert app.file_uploader(key="your_run_file").label == "Your gradient-norm log (CSV)"
    assert [b.label for b in app.button] == [e.title for e in EXAMPLES.values()]
    assert "Upload a log" in app.info[0].value
    assert not app.error and not app.get("plotly_chart")


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_an_example_shows_its_diagnosis(name):
    app = fresh()
    app.button(key=f"your_run_example_{name}").click().run()
    assert not app.exception and not app.error
    expected = yourrun.diagnose_bytes(yourrun.example_log(name))
    assert f"{expected.steps:,} steps" in shown(app)
    assert metric(app, "Steps") == f"{expected.steps:,}"
    assert metric(app, "Spikes") == f"{len(expected.spikes.steps):,}"
    assert metric(app, "Median norm") == f"{expected.percentiles['50']:.4g}"
    assert len(app.get("plotly_chart")) == 2
    text = " ".join(m.value for m in app.markdown)
    for finding in expected.findings:
        assert f"**{finding.sign.title}** from step {finding.step}" in text
    table = app.dataframe[0].value
    assert list(table["threshold"]) == [t.threshold for t in expected.thresholds]
    assert list(table["steps it would have clipped"]) == [
        100 * t.clipped_fraction for t in expected.thresholds
    ]


def test_an_uploaded_log_is_diagnosed():
    app = upload(fresh(), "mine.csv", norm_log())
    assert "**mine\\.csv**: 120 steps" in shown(app)
    assert metric(app, "Spikes") == "1"
    assert "at step 90." in " ".join(m.value for m in app.markdown)


BAD_FILES = [
    ("empty.csv", b"", "the file is empty"),
    ("sheet.xlsx", b"PK\x03\x04\x14\x00\x06\x00", "zip archive"),
    ("latin.csv", b"step,grad_norm\n1,2\n2,\xe93\n", "not UTF\\-8 text"),
    ("one.csv", b"grad_norm\n1\n2\n3\n", "only one column"),
    ("words.csv", b"a,b\nx,y\nz,w\n", "no column holds numbers only"),
    ("short.csv", b"step,grad_norm\n1,2\n", "too few rows"),
    ("text.csv", b"step,grad_norm\n1,2\n2,big\n3,2\n", "not a number on line 3"),
    ("back.csv", b"step,grad_norm\n1,2\n5,2\n3,2\n", "steps must increase"),
    ("negative.csv", b"step,grad_norm\n1,2\n2,-2\n3,2\n", "never negative"),
    ("ragged.csv", b"step,grad_norm\n1,2\n2,3,4\n", "line 3 has 3 fields"),
    ("huge.csv", b"step,grad_norm\n" + b"1,1\n" * (5 * 2**20 // 4), "above the limit of 5 MB"),
]


@pytest.mark.parametrize("name, data, words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_each_bad_file_gets_its_message_and_the_last_good_log_stays(name, data, words):
    app = upload(fresh(), "good.csv", norm_log())
    assert "**good\\.csv**: 120 steps" in shown(app)
    upload(app, name, data)
    errors = [e.value for e in app.error]
    assert len(errors) == 1 and words in errors[0], errors
    assert "Traceback" not in errors[0]
    # The last good log is still the one shown, and said to be.
    assert "**good\\.csv**: 120 steps" in shown(app)
    assert any("last log that could be read, good.csv" in c.value for c in app.caption)
    # An example afterwards clears the message.
    app.button(key="your_run_example_explodes").click().run()
    assert not app.error


def test_a_bad_file_first_shows_its_message_and_no_diagnosis():
    app = upload(fresh(), "empty.csv", b"")
    assert "the file is empty" in app.error[0].value
    assert not app.success and "Upload a log" in app.info[0].value


def test_columns_another_tool_names_are_chosen_by_hand():
    data = b"iteration_no,gnorm,objective\n" + b"".join(
        f"{i},{1.5 + (i % 5) / 10},{3 - i / 100}\n".encode() for i in range(60)
    )
    app = upload(fresh(), "other.csv", data)
    assert "no column looks like a gradient norm" in app.error[0].value
    app.selectbox(key="your_run_step").set_value("iteration_no")
    app.selectbox(key="your_run_norm").set_value("gnorm")
    app.selectbox(key="your_run_loss").set_value("objective").run()
    assert not app.exception and not app.error
    assert "**other\\.csv**: 60 steps" in shown(app)
    chosen = yourrun.select(
        yourrun.read_log(data), yourrun.ColumnMap("iteration_no", "gnorm", "objective")
    )
    expected = yourrun.diagnose(chosen)
    assert metric(app, "Median norm") == f"{expected.percentiles['50']:.4g}"


def test_a_twin_export_lets_you_pick_the_run():
    from clipviz.app.export import records_csv
    from clipviz.app.lab import LabRun
    from clipviz.engine.config import TrainConfig

    clipped = TrainConfig(clip_mode="norm", epochs=2)
    twin = LabRun(clipped, clipped.replace(clip_mode="none"))
    twin.step(40)
    data = records_csv([("clipped", twin.primary), ("unclipped", twin.twin)]).encode()
    app = upload(fresh(), "twin.csv", data)
    assert app.selectbox(key="your_run_run").options == ["clipped", "unclipped"]
    assert "run \\'clipped\\'" in shown(app)
    assert metric(app, "Steps") == f"{twin.primary.step_count:,}"
    app.selectbox(key="your_run_run").set_value("unclipped").run()
    assert "run \\'unclipped\\'" in shown(app)
    # The unclipped twin explodes early and stops there.
    assert metric(app, "Steps") == f"{twin.twin.step_count:,}"
    assert metric(app, "Not finite from step") == f"{twin.twin.exploded_at:,}"


def test_changing_the_spike_settings_changes_the_spikes():
    app = upload(fresh(), "mine.csv", norm_log())
    assert metric(app, "Spikes") == "1"
    app.number_input(key="your_run_warmup").set_value(100).run()
    assert metric(app, "Spikes") == "0"  # the spike at step 90 is inside the warm-up now


def _files_containing(token: bytes, roots: list[pathlib.Path], since: float) -> list[str]:
    found = []
    for root in roots:
        for folder, _, files in os.walk(root):
            if "/.git" in folder or "/proc" in folder:
                continue
            for file in files:
                path = os.path.join(folder, file)
                try:
                    if os.path.getmtime(path) < since or os.path.getsize(path) > 50 * 2**20:
                        continue
                    with open(path, "rb") as f:
                        if token in f.read():
                            found.append(path)
                except OSError:
                    continue
    return found


def test_two_sessions_never_see_each_others_upload_nor_does_the_disk():
    token = uuid.uuid4().hex
    start = time.time() - 1
    first = upload(fresh(), f"secret_{token}.csv", norm_log(marker=f"_{token}"))
    assert token in shown(first) or any(token in c.value for c in first.caption)
    second = fresh()
    assert not second.success and "Upload a log" in second.info[0].value
    assert second.session_state["_your_run"].current is None
    # Nothing in a cache either: the library keeps no upload.
    assert token.encode() not in repr(yourrun.example_log.cache_info()).encode()
    # And no byte of it on disk: no file written since the upload holds the token.
    roots = [ROOT, pathlib.Path(tempfile.gettempdir())]
    assert _files_containing(token.encode(), roots, start) == []


def test_the_page_state_helper_keeps_the_last_good_log():
    session = page.YourRun()
    session.load(norm_log(), "a.csv")
    assert session.current.loaded.name == "a.csv" and session.problem is None
    session.load(b"", "b.csv")
    assert session.problem == "b.csv could not be read: the file is empty"
    assert session.current.loaded.name == "a.csv" and session.shows_last_good
