"""The live chart's stream (clipviz.app.stream): payloads that add up to the whole figure.

A browser is mimicked in plain Python (its own decoder, no code shared with
the app's): it takes the first full payload, appends every delta's points to
the traces and applies the layout changes. After a run played in uneven
ticks, what it holds must equal the figure drawn from the run's records in
one go; and no payload after the first may exceed the size limit.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from clipviz.app import stream
from clipviz.app.lab import LabRun
from clipviz.engine.config import PRESETS
from clipviz.engine.labstate import LabState
from clipviz.figures.training import (
    MAX_MARKERS,
    RunTrace,
    lab_figure_spec,
    stream_stride,
    streamed_slice,
)

REFERENCE = PRESETS["tutorial_clip_norm"].config


# ---- a browser, in Python -------------------------------------------------------------


def decode(value):
    if isinstance(value, dict) and "range" in value:
        first, step, count = value["range"]
        return [first + step * i for i in range(count)]
    if isinstance(value, dict) and "f32" in value:
        flat = np.frombuffer(base64.b64decode(value["f32"]), dtype="<f4").astype(float)
        return flat.reshape(value["shape"]).tolist()
    return value


class Browser:
    """Holds the figure as the live chart does: full payloads replace it, deltas grow it."""

    def __init__(self):
        self.data, self.layout, self.have, self.revision = None, None, 0, None
        self.payloads: list[dict] = []

    def receive(self, payload: bytes) -> dict:
        message = json.loads(payload)
        self.payloads.append(message)
        if message["kind"] == "full":
            self.revision = message["revision"]
            self.data = [{k: decode(v) for k, v in trace.items()} for trace in message["data"]]
            self.layout = dict(message["layout"])
        else:
            assert message["revision"] == self.revision and message["from"] == self.have
            for index, points in message.get("traces", {}).items():
                trace = self.data[int(index)]
                for key, value in points.items():
                    new = decode(value)
                    if new and isinstance(new[0], list):  # layers x steps: grow each row
                        trace[key] = [old + row for old, row in zip(trace[key], new, strict=True)]
                    else:
                        trace[key] = list(trace[key]) + new
            for key, value in message.get("layout", {}).items():
                if value is None:
                    self.layout.pop(key, None)
                else:
                    self.layout[key] = value
        self.have = message["to"]
        return message


def as_float32(values) -> np.ndarray:
    return np.asarray(values, dtype=float).astype(np.float32)


def assert_same_figure(held: Browser, figure: dict) -> None:
    assert [t.get("uid") for t in held.data] == [t.get("uid") for t in figure["data"]]
    for mine, whole in zip(held.data, figure["data"], strict=True):
        for key in stream.POINT_KEYS[whole["type"]]:
            if key not in whole:
                continue
            expected = as_float32(whole[key])
            got = as_float32(mine[key])
            assert got.shape == expected.shape, (whole["uid"], key)
            np.testing.assert_array_equal(got, expected, err_msg=f"{whole['uid']} {key}")
    assert json.loads(json.dumps(figure["layout"])) == held.layout


def play(run, chunks, *, max_bytes=stream.MAX_UPDATE_BYTES, browser=None, every=None):
    """Train ``run`` in ``chunks`` of steps, streaming after each; returns the browser."""
    browser = browser or Browser()
    stride = stream_stride(run.total_steps)
    cursor = None

    def update():
        nonlocal cursor
        result = stream.next_update(
            lambda start: run.traces(start, stride),
            lambda traces: lab_figure_spec(traces, revision=run.id),
            revision=run.id,
            steps_done=run.step_count,
            finished=run.done,
            cursor=cursor,
            stride=stride,
            max_bytes=max_bytes,
            every=every,
        )
        cursor = result.cursor
        browser.receive(result.payload)
        return result

    update()
    for chunk in chunks:
        run.step(chunk)
        update()
        if run.done:
            break
    for _ in range(200):  # what the byte limit left over is sent on later ticks
        if cursor.steps >= run.step_count:
            break
        update()
    return browser


def whole_figure(run) -> dict:
    return lab_figure_spec(run.traces(0, stream_stride(run.total_steps)), revision=run.id)


# ---- the tests ------------------------------------------------------------------------


def test_a_played_run_adds_up_to_the_figure_of_its_whole_records():
    run = LabRun(REFERENCE)
    browser = play(run, [1, 7, 80, 333, 100, 20, 500, 1000])
    assert run.done and browser.have == 1600
    assert_same_figure(browser, whole_figure(run))
    kinds = [p["kind"] for p in browser.payloads]
    assert kinds[0] == "full" and set(kinds[1:]) == {"delta"}
    loss = next(t for t in browser.data if t.get("name") == "batch loss")
    assert len(loss["x"]) == 1600  # the browser keeps every step of the reference run
    markers = next(t for t in browser.data if t.get("name") == "clipped steps")
    assert 0 < len(markers["x"]) <= MAX_MARKERS  # one per block, not one per clipped step


def test_every_payload_after_the_first_is_small_whatever_the_run_length():
    run = LabRun(REFERENCE)
    sizes = []
    browser = Browser()
    original = browser.receive

    def measured(payload):
        sizes.append(len(payload))
        return original(payload)

    browser.receive = measured
    play(run, [1600], browser=browser)  # everything trained in one tick
    assert max(sizes[1:]) <= stream.MAX_UPDATE_BYTES
    assert len(sizes) > 3  # so it went in several payloads
    assert_same_figure(browser, whole_figure(run))


def test_a_small_byte_limit_splits_the_steps_and_still_adds_up():
    run = LabRun(REFERENCE.replace(epochs=10))
    browser = play(run, [160], max_bytes=3000)
    deltas = [p for p in browser.payloads if p["kind"] == "delta" and p["to"] > p["from"]]
    assert len(deltas) >= 5
    assert_same_figure(browser, whole_figure(run))


def test_a_twin_explosion_reaches_the_layout_and_the_empty_note_goes():
    config = REFERENCE
    run = LabRun(config, LabState(config, twin=True).twin_config)
    browser = play(run, [5, 10, 30])
    first = browser.payloads[0]
    notes = [a["text"] for a in first["layout"]["annotations"]]
    assert "No steps yet: press Play or Step" in notes
    assert run.twin.exploded_at is not None
    texts = [a["text"] for a in browser.layout["annotations"]]
    assert f"exploded at step {run.twin.exploded_at}" in texts
    assert "No steps yet: press Play or Step" not in texts
    assert_same_figure(browser, whole_figure(run))


def test_an_adaptive_rule_streams_its_threshold_line():
    # AutoClip's threshold moves step by step: the streamed chart draws the one it used.
    run = LabRun(REFERENCE.replace(clip_mode="autoclip", epochs=10))
    browser = play(run, [3, 40, 77])
    assert_same_figure(browser, whole_figure(run))
    line = next(t for t in browser.data if t.get("name") == "threshold the rule used")
    used = run.primary.records()["clip_threshold"]
    np.testing.assert_array_equal(as_float32(line["y"]), as_float32(used))
    assert all(p["kind"] == "delta" for p in browser.payloads[1:])  # no full redraws


def test_skipped_steps_stream_their_marks():
    # Unscaled targets with skip_nonfinite: some steps overflow and are skipped.
    config = PRESETS["tutorial_unscaled"].config.replace(skip_nonfinite=True, epochs=20)
    run = LabRun(config)
    browser = play(run, [3, 5, 7, 11, 20])
    assert_same_figure(browser, whole_figure(run))
    skipped = np.flatnonzero(np.nan_to_num(run.primary.records()["skipped"]) > 0) + 1
    marks = next(t for t in browser.data if t.get("name") == "skipped steps (not finite)")
    assert set(np.asarray(marks["x"], dtype=int)) <= set(skipped.tolist())
    assert len(skipped) > 0 and len(marks["x"]) > 0
    assert all(p["kind"] == "delta" for p in browser.payloads[1:])


def test_a_classifier_streams_its_accuracy_per_epoch():
    config = PRESETS["digits_lstm_clipvalue"].config.replace(epochs=2)
    run = LabRun(config)
    browser = play(run, [7, 30, 200])
    assert_same_figure(browser, whole_figure(run))
    accuracy = next(t for t in browser.data if t.get("name") == "test accuracy (epoch, %)")
    expected = 100 * run.primary.epoch_records()["test_accuracy"]
    np.testing.assert_allclose(accuracy["y"], expected, rtol=1e-6)
    assert all(p["kind"] == "delta" for p in browser.payloads[1:])


def test_a_delta_carries_only_the_new_steps_and_what_changed():
    run = LabRun(REFERENCE)
    browser = play(run, [40, 40], every={"playing": True, "speed": 20})
    last = browser.payloads[-1]
    assert (last["from"], last["to"]) == (40, 80)
    assert last["playing"] is True and last["speed"] == 20
    assert "layout" not in last  # nothing in the layout changed between steps 40 and 80
    loss_index = next(i for i, t in enumerate(browser.data) if t.get("name") == "batch loss")
    x = decode(last["traces"][str(loss_index)]["x"])
    assert x == list(range(41, 81))
    assert last["traces"][str(loss_index)]["x"] == {"range": [41, 1, 40]}


def test_nothing_new_is_a_tiny_payload_and_a_new_run_is_sent_whole():
    run = LabRun(REFERENCE)
    cursor = None
    kwargs = {"build": lambda t: lab_figure_spec(t, revision=run.id), "stride": 1}
    first = stream.next_update(
        lambda s: run.traces(s, 1),
        revision=run.id,
        steps_done=0,
        finished=False,
        cursor=cursor,
        **kwargs,
    )
    idle = stream.next_update(
        lambda s: run.traces(s, 1),
        revision=run.id,
        steps_done=0,
        finished=False,
        cursor=first.cursor,
        **kwargs,
    )
    assert idle.kind == "delta" and len(idle.payload) < 200
    assert json.loads(idle.payload)["seq"] == json.loads(first.payload)["seq"] + 1
    other = LabRun(REFERENCE.replace(seed=2))
    again = stream.next_update(
        lambda s: other.traces(s, 1),
        lambda t: lab_figure_spec(t, revision=other.id),
        revision=other.id,
        steps_done=0,
        finished=False,
        cursor=idle.cursor,
    )
    assert again.kind == "full" and json.loads(again.payload)["seq"] == 3


def test_a_slice_whose_traces_differ_falls_back_to_a_full_payload():
    run = LabRun(REFERENCE)
    run.step(10)
    first = stream.next_update(
        lambda s: run.traces(s, 1),
        lambda t: lab_figure_spec(t, revision=run.id),
        revision=run.id,
        steps_done=10,
        finished=False,
        cursor=None,
    )
    run.step(10)

    def with_an_extra_trace(traces):
        figure = lab_figure_spec(traces, revision=run.id)
        extra = {"type": "scatter", "uid": "extra", "x": [1], "y": [2]}
        return {**figure, "data": [*figure["data"], extra]}

    update = stream.next_update(
        lambda s: run.traces(s, 1),
        with_an_extra_trace,
        revision=run.id,
        steps_done=20,
        finished=False,
        cursor=first.cursor,
    )
    assert update.kind == "full" and update.cursor.uids[-1] == "extra"


# ---- long runs: blocks of steps ----------------------------------------------------------


def synthetic_trace(steps: int, stride: int, seed: int = 0) -> RunTrace:
    rng = np.random.default_rng(seed)
    loss = np.exp(rng.normal(size=steps))
    loss[steps // 3] = np.nan  # a gap
    grad = np.exp(rng.normal(size=steps) * 3)
    records = {
        "step": np.arange(1, steps + 1),
        "loss": loss,
        "grad_norm": grad,
        "grad_norm_after": np.minimum(grad, 1.0),
        "clipped": (grad > 1).astype(float),
        "weight_norm": np.cumsum(rng.random(steps)),
        "update_ratio": rng.random(steps) / 100,
        "layer_grad_norm": np.exp(rng.normal(size=(steps, 2))),
    }
    return RunTrace(
        "clip norm 1",
        True,
        records,
        layer_names=("layer 1", "layer 2"),
        clip_norm=1.0,
        batches_per_epoch=16,
        stride=stride,
        planned_steps=steps,
    )


def cut(trace: RunTrace, start: int) -> RunTrace:
    return streamed_slice(trace, start) if start else trace


@pytest.mark.parametrize("stride", [1, 3, 7])
def test_block_thinning_streams_the_same_as_the_whole_run(stride):
    total = 1000
    whole = synthetic_trace(total, stride)
    browser, cursor = Browser(), None
    build = lambda traces: lab_figure_spec(traces, revision="r")  # noqa: E731
    for done in [0, 5, 40, 41, 300, 301, 302, 999, 1000]:
        shown = stream.window(whole, done)
        for _ in range(50):  # ticks until what the byte limit held back is sent
            result = stream.next_update(
                lambda start, shown=shown: [cut(shown, start)],
                build,
                revision="r",
                steps_done=done,
                finished=done == total,
                cursor=cursor,
                stride=stride,
            )
            cursor = result.cursor
            browser.receive(result.payload)
            assert cursor.steps % stride == 0 or done == total  # whole blocks until the end
            if done - cursor.steps < stride:
                break
    assert_same_figure(browser, build([whole]))
    loss = next(t for t in browser.data if t.get("name") == "batch loss")
    assert len(loss["x"]) <= 2 * -(-total // stride)  # at most two points per block


def test_the_stride_keeps_every_step_up_to_the_limit_and_bounds_longer_runs():
    assert stream_stride(1600) == 1
    assert stream_stride(10_000) == 1
    assert stream_stride(10_001) == 2
    assert stream_stride(200_000) == 20


# ---- the encoding -------------------------------------------------------------------------


def test_numbers_travel_as_float32_ranges_and_rows_and_come_back():
    steps = np.arange(5, 105)
    values = np.array([1.5, np.nan, 3e-8, -2.0])
    rows = np.arange(6, dtype=float).reshape(2, 3)
    assert stream._encode_array(steps) == {"range": [5, 1, 100]}
    np.testing.assert_array_equal(stream.decode_array(stream._encode_array(steps)), steps)
    back = stream.decode_array(stream._encode_array(values))
    np.testing.assert_array_equal(back, values.astype(np.float32))  # NaN stays NaN
    assert stream.decode_array(stream._encode_array(rows)).shape == (2, 3)
    assert stream._encode_array(["layer 1", "layer 2"]) == ["layer 1", "layer 2"]
    np.testing.assert_array_equal(decode(stream._encode_array(rows)), rows)


def test_a_primary_that_exploded_keeps_its_panels_while_its_twin_goes_on():
    """Once the learner's run has exploded, its later slices are empty while the twin
    trains on: they must not bring back the "no steps yet" note (a bug the browser
    showed over the exploded run's heatmap)."""
    config = PRESETS["tutorial_unscaled"].config
    run = LabRun(config, LabState(config, twin=True).twin_config)
    browser = play(run, [5, 20, 50, 100])
    assert run.primary.exploded_at is not None and run.twin.exploded_at is None
    assert run.step_count > run.primary.exploded_at  # the twin went on after it
    texts = [a["text"] for a in browser.layout["annotations"]]
    assert "No steps yet: press Play or Step" not in texts
    assert f"exploded at step {run.primary.exploded_at}" in texts
    assert_same_figure(browser, whole_figure(run))
