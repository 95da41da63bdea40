"""The load test's own logic, without a server (clipviz.tools.loadtest).

Its websocket messages are Streamlit's protobuf classes, parsed back here with
those classes; its simulated browser follows live_chart.js's rules (a payload
seen twice is ignored, a gap asks again); its report's numbers are hand
arithmetic on made-up learners. No clock is read: every time is a given number.
"""

from __future__ import annotations

import json

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from clipviz.cli import main
from clipviz.tools import loadtest


def test_a_play_click_and_a_chart_request_are_streamlit_back_messages():
    click = BackMsg.FromString(loadtest.rerun_message("preset=x", "lab", "h1", trigger="play-id"))
    assert click.rerun_script.query_string == "preset=x"
    assert click.rerun_script.page_script_hash == "h1"
    (widget,) = click.rerun_script.widget_states.widgets
    assert (widget.id, widget.trigger_value) == ("play-id", True)

    chart = loadtest.Chart(component_id="c1")
    ask = BackMsg.FromString(
        loadtest.rerun_message(
            "", "lab", "h1", fragment_id="f1", event=(chart.trigger_id, "more", {"have": 40})
        )
    )
    assert ask.rerun_script.fragment_id == "f1"
    (widget,) = ask.rerun_script.widget_states.widgets
    assert widget.id.endswith("c1__events")
    assert json.loads(widget.json_trigger_value) == {"event": "more", "value": {"have": 40}}


def test_the_counter_and_the_play_button_are_read_from_forward_messages():
    learner = loadtest.Learner(0)
    msg = ForwardMsg()
    msg.delta.new_element.progress.text = "Step 1,234 of 1,600"
    loadtest.read_message(msg.SerializeToString(), learner)
    assert (learner.step_now, learner.total) == (1234, 1600)
    msg = ForwardMsg()
    msg.delta.new_element.button.label = "Play"
    msg.delta.new_element.button.id = "the-play-button"
    loadtest.read_message(msg.SerializeToString(), learner)
    assert learner.play_id == "the-play-button"


def test_payloads_are_taken_once_in_order_and_a_gap_asks_again():
    chart = loadtest.Chart()
    full = {"kind": "full", "revision": "r", "seq": 1, "from": 0, "to": 0, "playing": True}
    assert loadtest.take_payload(chart, full, 0.0) == (0, False)
    delta = {"kind": "delta", "revision": "r", "seq": 2, "from": 0, "to": 40, "playing": True}
    assert loadtest.take_payload(chart, delta, 0.1) == (40, False)
    assert loadtest.take_payload(chart, delta, 0.2) == (0, False)  # seen already
    gap = {"kind": "delta", "revision": "r", "seq": 4, "from": 80, "to": 120, "playing": True}
    assert loadtest.take_payload(chart, gap, 0.3) == (0, True)  # steps 41..80 went missing
    assert chart.have == 40


def test_the_animation_shows_speed_steps_per_frame_and_asks_when_low():
    # 60 steps waiting, fewer than two ticks' worth (2 x 10 steps x 4 frames): no catching up
    chart = loadtest.Chart(revision="r", have=60, shown=0, playing=True, speed=10, fps=20.0)
    chart.tick = 0.2
    ask = loadtest.animate(chart, now=0.5)  # frames at 0, 0.05, ..., 0.5: eleven of them
    assert chart.frames == 6 and chart.shown == 60  # six frames of 10 steps; then nothing new
    assert ask  # nothing left to show: ask for more

    behind = loadtest.Chart(revision="r", have=100, shown=0, playing=True, speed=10, fps=20.0)
    loadtest.animate(behind, now=0.0)  # more than two ticks behind: 100 / 4 frames a tick
    assert behind.shown == 25


def test_the_report_is_arithmetic_on_what_the_learners_saw():
    learners = []
    for i, (frames, updates, steps) in enumerate([(100, 50, 1000), (40, 20, 400)]):
        learner = loadtest.Learner(i, played_at=0.0, ended_at=10.0)
        learner.chart.frames, learner.updates, learner.steps = frames, updates, steps
        learner.bytes = 1000 * updates
        learners.append(learner)
    result = loadtest.report(
        learners,
        sessions=2,
        seconds=10,
        per_step=0.001,
        cpu=5.0,
        rss={"start": 400.0, "peak": 440.0, "after_disconnect": 401.0},
        idle_percent=0.5,
    )
    assert result["updates_per_second"]["median"] == pytest.approx(7.0)  # (10 + 4) / 2
    assert result["updates_per_second"]["p10"] == pytest.approx(4.6)  # 4 + 0.1 * (10 - 4)
    assert result["steps_per_second"]["median"] == pytest.approx(70.0)
    # 5 s of CPU, 1.4 s of it training (1400 steps at 1 ms), over 70 updates
    assert result["server_cpu_ms_per_update"] == pytest.approx(1000 * 3.6 / 70)
    assert result["server_cpu_ms_per_update_with_training"] == pytest.approx(1000 * 5 / 70)
    assert result["bytes_per_update"] == pytest.approx(1000)
    assert result["rss_mb"]["per_session"] == pytest.approx(20.0)
    text = loadtest.format_report(result)
    assert "chart updates / s" in text and "7.0" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["loadtest", "--sessions", "0"], "--sessions"),
        (["loadtest", "--seconds", "abc"], "--seconds"),
        (["loadtest", "--url", "http://example.com:8501"], "127.0.0.1"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and message in err[-1]
