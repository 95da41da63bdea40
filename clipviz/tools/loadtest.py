"""``python -m clipviz loadtest``: a classroom of learners playing the Lab at once, without browsers.

Each learner is a websocket client that speaks Streamlit's own protocol, with
the protobuf classes shipped in the streamlit package (``BackMsg``,
``ForwardMsg``), the way the browser does:

1. it connects to ``/_stcore/stream`` and asks for the page (a ``rerun_script``
   with the link's query string, ``/lab?preset=tutorial_clip_norm`` by default);
2. when the first script run has finished, it presses Play: a ``rerun_script``
   whose ``widget_states`` hold the Play button's trigger (the button's widget
   id comes from the button element the server sent);
3. it plays the chart as ``pages/components/live_chart/live_chart.js`` does:
   it applies each live-chart payload (JSON in the component element) to what
   it holds, advances a simulated animation (``speed`` steps per chart update,
   ``fps`` updates a second) and, when fewer than a tick and a half of steps
   are left to show, asks for more with the component's ``more`` trigger
   (a ``rerun_script`` of the live fragment whose ``widget_states`` hold the
   trigger's JSON value: the revision and the steps it holds);
4. it counts the chart updates the browser would draw (frames that show new
   steps, by live_chart.js's own rule), the server's updates (payloads that
   bring new steps), the steps and the bytes received, reads the progress
   bar, and when the run ends presses Play again, which starts a new run,
   until its time is up.

The tool starts the app itself (``streamlit run serve.py`` on a free loopback
port, stopped by its pid at the end) unless ``--url`` points at one; with its
own server it also reads the server's CPU time and resident memory from
``/proc`` (before the learners, at the peak, and ``--settle-seconds`` after
every learner has disconnected). Server CPU per (server) update and bytes per
update are per message the server sent; CPU is reported with and without
training: the training's share is what the server counted itself
(``serve.py``'s ``/clipviz-usage``: the CPU time of its ticks' training), or,
against a server without that route, the steps shown times one step's CPU
cost measured in this process on the same configuration.

Every loop is bounded in count and time. Loopback only: ``--url`` must name
127.0.0.1 or localhost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 120
WARMUP_SECONDS = 120
CONNECT_SECONDS = 60
RECEIVE_SECONDS = 1.0  # a receive waits at most this long before the loop looks at the clock
MAX_MESSAGES = 2_000_000  # per learner: a bound on the receive loop, far above any real run
MAX_PLAYS = 1000  # per learner: runs started
SAMPLE_SECONDS = 0.5  # how often the server's memory is read
PUMP_SECONDS = 0.05  # how often a learner's simulated browser draws the frames that are due
MAX_FRAMES_PER_CALL = 100
LOW_TICKS = 1.5  # as live_chart.js: ask for more when fewer ticks' steps are left
REQUEST_AGAIN_SECONDS = 8.0  # as live_chart.js: an unanswered request is repeated
COUNTER = re.compile(r"Step ([\d,]+) of ([\d,]+)")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class LoadTestError(Exception):
    """The load test could not run (no server, a protocol surprise): one line for the user."""


@dataclass
class Chart:
    """The live chart as a browser holds it: what it received, and what it has shown."""

    component_id: str = ""
    fragment_id: str = ""
    revision: str = ""
    seq: int = 0
    have: int = 0  # steps received
    shown: int = 0  # steps drawn (the animation, simulated)
    playing: bool = False
    speed: int = 20
    fps: float = 25.0
    tick: float = 0.2
    asked_at: float | None = None
    asked_seq: int = -1
    rtt: float | None = None  # seconds an answer takes (a running average)
    next_frame: float = 0.0
    frames: int = 0  # chart updates drawn (frames that showed new steps)

    @property
    def trigger_id(self) -> str:
        # Streamlit's id of a components-v2 element's trigger widget (see
        # streamlit/components/v2/bidi_component/main.py, _make_trigger_id).
        return f"$$STREAMLIT_INTERNAL_KEY_{self.component_id}__events"


@dataclass
class Learner:
    """What one learner saw."""

    index: int
    connected_at: float | None = None
    played_at: float | None = None
    ended_at: float | None = None
    updates: int = 0  # server payloads that brought new steps
    steps: int = 0  # steps received, over every run
    bytes: int = 0  # websocket bytes received while playing
    requests: int = 0  # requests for more steps
    first_run_seconds: float | None = None  # Play to the end of the first run
    runs_finished: int = 0
    error: str | None = None
    stop_after_updates: int | None = None  # the warm-up learner leaves after a few updates
    # protocol state
    page_hash: str = ""
    play_id: str | None = None
    step_now: int = 0
    total: int = 0
    run_started: float | None = None
    chart: Chart = field(default_factory=Chart)

    @property
    def playing_seconds(self) -> float:
        if self.played_at is None or self.ended_at is None:
            return 0.0
        return max(1e-9, self.ended_at - self.played_at)


# ---- the protocol -----------------------------------------------------------------


def _protos():
    # Streamlit's protobuf classes; imported here so that importing clipviz never
    # loads streamlit (tests/test_architecture.py).
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    return BackMsg, ForwardMsg, WidgetState


def rerun_message(
    query: str,
    page_name: str,
    page_hash: str,
    *,
    fragment_id: str = "",
    trigger: str | None = None,
    event: tuple[str, str, dict] | None = None,
    url: str = "",
) -> bytes:
    """A ``rerun_script`` BackMsg, as the browser sends it.

    ``trigger``: a button's widget id (a click). ``event``: (trigger widget id,
    event name, value) of a component's ``setTriggerValue``, which reruns the
    component's fragment (``fragment_id``) alone.
    """
    BackMsg, _, WidgetState = _protos()
    msg = BackMsg()
    state = msg.rerun_script
    state.query_string = query
    state.page_name = page_name
    state.page_script_hash = page_hash
    if fragment_id:
        state.fragment_id = fragment_id
    if trigger is not None:
        state.widget_states.widgets.append(WidgetState(id=trigger, trigger_value=True))
    if event is not None:
        widget_id, name, value = event
        payload = json.dumps({"event": name, "value": value})
        state.widget_states.widgets.append(WidgetState(id=widget_id, json_trigger_value=payload))
    state.context_info.url = url
    state.context_info.timezone = "UTC"
    state.context_info.locale = "en-US"
    return msg.SerializeToString()


def read_message(data: bytes, learner: Learner) -> dict:
    """What a ForwardMsg tells a learner: returns events the client acts on."""
    _, ForwardMsg, _ = _protos()
    msg = ForwardMsg()
    msg.ParseFromString(data)
    kind = msg.WhichOneof("type")
    events: dict = {}
    if kind == "new_session":
        learner.page_hash = msg.new_session.page_script_hash or learner.page_hash
    elif kind == "script_finished":
        events["script_finished"] = msg.script_finished
    elif kind == "page_not_found":
        events["error"] = "page not found"
    elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
        element = msg.delta.new_element
        which = element.WhichOneof("type")
        if which == "button" and element.button.label == "Play":
            learner.play_id = element.button.id
        elif which == "progress":
            match = COUNTER.search(element.progress.text)
            if match:
                learner.step_now = int(match.group(1).replace(",", ""))
                learner.total = int(match.group(2).replace(",", ""))
        elif which == "bidi_component" and element.bidi_component.component_name.endswith(
            "live_chart"
        ):
            learner.chart.component_id = element.bidi_component.id
            learner.chart.fragment_id = msg.delta.fragment_id or learner.chart.fragment_id
            events["chart"] = json.loads(element.bidi_component.bytes or b"{}")
        elif which == "exception":
            events["error"] = element.exception.message or "exception"
    return events


def take_payload(chart: Chart, payload: dict, now: float) -> tuple[int, bool]:
    """Apply a chart payload as the browser does: (new steps taken, ask again now?)."""
    kind, start, stop = payload.get("kind"), payload.get("from", 0), payload.get("to", 0)
    revision, seq = payload.get("revision", ""), payload.get("seq", 0)
    if seq <= chart.seq and revision == chart.revision:
        return 0, False  # seen already
    answered = chart.asked_at is not None and chart.asked_seq < seq
    chart.seq = seq
    chart.playing = bool(payload.get("playing"))
    chart.speed = max(1, int(payload.get("speed", chart.speed)))
    chart.fps = float(payload.get("fps", chart.fps))
    chart.tick = float(payload.get("tick", chart.tick))
    new = 0
    if kind == "full":
        chart.revision, chart.have, chart.shown = revision, stop, stop
    elif revision == chart.revision and start == chart.have:
        new, chart.have = stop - start, stop
    elif revision == chart.revision and start < chart.have:
        return 0, False  # steps it holds (the answer to a repeated request)
    else:
        return 0, True  # a missed update: say what it holds, at once
    if new and answered:
        took = now - chart.asked_at
        chart.rtt = took if chart.rtt is None else 0.7 * chart.rtt + 0.3 * took
    if not chart.playing:
        chart.shown = chart.have
    return new, False


def awaiting(chart: Chart) -> bool:
    return chart.asked_at is not None and chart.asked_seq == chart.seq


def steps_for_next_update(chart: Chart, now: float) -> int:
    """live_chart.js's stepsForNextUpdate: the chosen speed, spread while an answer
    is awaited, or catching up."""
    waiting = chart.have - chart.shown
    frames_per_tick = max(1.0, chart.fps * chart.tick)
    if waiting > 2 * chart.speed * frames_per_tick:
        return math.ceil(waiting / frames_per_tick)
    if not awaiting(chart):
        return min(chart.speed, waiting)
    answer = chart.asked_at + (chart.tick if chart.rtt is None else chart.rtt)
    frames_left = max(1, round((answer - now) * chart.fps))
    return max(1, min(chart.speed, math.ceil(waiting / frames_left)))


def animate(chart: Chart, now: float) -> bool:
    """Draw the frames due by ``now`` as the browser would; True when it should ask for more."""
    if not chart.playing:
        chart.next_frame = now
        return False
    frames = 0
    while chart.next_frame <= now and frames < MAX_FRAMES_PER_CALL:
        if chart.shown < chart.have:
            chart.shown = min(
                chart.have, chart.shown + steps_for_next_update(chart, chart.next_frame)
            )
            chart.frames += 1
        chart.next_frame += 1 / chart.fps
        frames += 1
    if chart.next_frame <= now:  # far behind (a stalled client): skip ahead
        chart.next_frame = now
    low = chart.have - chart.shown < LOW_TICKS * chart.speed * chart.fps * chart.tick
    return low and not (awaiting(chart) and now - chart.asked_at < REQUEST_AGAIN_SECONDS)


async def _learner(index: int, base: str, path: str, deadline: float, out: Learner) -> None:
    import websockets

    parts = urllib.parse.urlsplit(f"{base}{path}")
    ws_url = f"ws://{parts.netloc}/_stcore/stream"
    query, page = parts.query, parts.path.strip("/")
    page_url = f"{base}{path}"
    chart = out.chart

    async with websockets.connect(
        ws_url,
        subprotocols=["streamlit"],
        max_size=None,
        open_timeout=CONNECT_SECONDS,
        origin=f"http://{parts.netloc}",
    ) as ws:
        out.connected_at = time.monotonic()
        await ws.send(rerun_message(query, page, "", url=page_url))

        async def ask() -> None:
            chart.asked_at, chart.asked_seq = time.monotonic(), chart.seq
            out.requests += 1
            value = {"revision": chart.revision, "have": chart.have}
            await ws.send(
                rerun_message(
                    query,
                    page,
                    out.page_hash,
                    fragment_id=chart.fragment_id,
                    event=(chart.trigger_id, "more", value),
                )
            )

        async def play() -> None:
            # The browser's animation, simulated (``animate``): frames at `fps`, each
            # showing up to `speed` new steps; it asks for more when it runs low.
            start = time.monotonic()
            for _ in range(int((deadline - start) / PUMP_SECONDS) + 1):
                await asyncio.sleep(PUMP_SECONDS)
                now = time.monotonic()
                if now >= deadline:
                    return
                if chart.component_id and animate(chart, now):
                    await ask()

        animation = asyncio.create_task(play())
        plays = 0
        try:
            for _ in range(MAX_MESSAGES):
                now = time.monotonic()
                if now >= deadline:
                    break
                try:
                    data = await asyncio.wait_for(
                        ws.recv(), timeout=min(RECEIVE_SECONDS, deadline - now)
                    )
                except TimeoutError:
                    continue
                if isinstance(data, str):
                    continue
                if out.played_at is not None:
                    out.bytes += len(data)
                events = read_message(data, out)
                if "error" in events:
                    out.error = events["error"]
                if "chart" in events:
                    new, again = take_payload(chart, events["chart"], now)
                    if new and out.run_started is not None:
                        out.updates += 1
                        out.steps += new
                    if again:
                        await ask()
                if out.stop_after_updates is not None and out.updates >= out.stop_after_updates:
                    break
                finished = out.total and out.step_now >= out.total and chart.have >= out.total
                if out.run_started is not None and finished:
                    if out.first_run_seconds is None:
                        out.first_run_seconds = time.monotonic() - out.run_started
                    out.runs_finished += 1
                    out.run_started = None
                script_done = events.get("script_finished") in (0, 3)
                if script_done and out.run_started is None and out.play_id and plays < MAX_PLAYS:
                    # Play (again): the first time, and after each run has ended.
                    plays += 1
                    out.run_started = time.monotonic()
                    if out.played_at is None:
                        out.played_at = out.run_started
                    await ws.send(rerun_message(query, page, out.page_hash, trigger=out.play_id))
        finally:
            animation.cancel()
            out.ended_at = time.monotonic()


async def _classroom(
    base: str, path: str, sessions: int, seconds: float, *, stop_after_updates: int | None = None
) -> list[Learner]:
    learners = [Learner(i, stop_after_updates=stop_after_updates) for i in range(sessions)]
    deadline = time.monotonic() + seconds

    async def run(learner: Learner) -> None:
        try:
            await _learner(learner.index, base, path, deadline, learner)
        except Exception as error:  # one learner's failure is reported, not fatal
            learner.error = f"{type(error).__name__}: {error}"
            learner.ended_at = learner.ended_at or time.monotonic()

    await asyncio.wait_for(
        asyncio.gather(*(run(learner) for learner in learners)),
        timeout=seconds + CONNECT_SECONDS + 30,
    )
    return learners


# ---- the server ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(base: str, proc: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LoadTestError(f"the app exited with status {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise LoadTestError(f"the app at {base} was not healthy after {timeout:.0f} s")


@contextlib.contextmanager
def started_app(entry: str = "serve.py", log: Path | None = None):
    """``streamlit run <entry>`` on a free loopback port; yields (base URL, pid); stops it."""
    port = _free_port()
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            entry,
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, STARTUP_SECONDS)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        if log:
            out.close()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MemorySampler:
    """Reads a process's RSS every ``SAMPLE_SECONDS`` in a background task; keeps the peak."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self.peak: float | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and self.pid is not None:
            value = rss_mb(self.pid)
            if value is not None:
                self.peak = value if self.peak is None else max(self.peak, value)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)


def server_usage(base: str) -> dict | None:
    """The server's tick totals (``serve.py``'s ``/clipviz-usage``); None without that route."""
    try:
        with urllib.request.urlopen(f"{base}/clipviz-usage", timeout=5) as response:
            usage = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return usage if isinstance(usage, dict) and "training_cpu_seconds" in usage else None


def training_cpu_per_step(path: str, steps: int = 400) -> float:
    """CPU seconds one step of the link's run costs here (the configuration's trainer alone)."""
    import torch

    from clipviz.engine.labstate import LabState
    from clipviz.engine.trainer import Trainer

    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    config = LabState.from_query(query)[0].config
    torch.set_num_threads(1)

    trainer = Trainer(config)
    trainer.step(20)  # warm up
    start = time.thread_time()
    taken = trainer.step(steps)
    return (time.thread_time() - start) / max(1, taken)


# ---- the report ---------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _spread(values: list[float]) -> dict:
    return {"median": _percentile(values, 0.5), "p10": _percentile(values, 0.1)}


def run_loadtest(
    *,
    sessions: int,
    seconds: float,
    url: str | None = None,
    path: str = "/lab?preset=tutorial_clip_norm",
    settle_seconds: float = 180.0,
    log: Path | None = None,
    progress=None,
) -> dict:
    """Run the load test; returns the report (the JSON document of ``--json``)."""
    say = progress or (lambda text: None)
    if url is not None:
        host = urllib.parse.urlsplit(url).hostname or ""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise LoadTestError(f"--url must be on this machine (127.0.0.1), got {host!r}")
        wait_healthy(url.rstrip("/"), None, 10)
        context = contextlib.nullcontext((url.rstrip("/"), None))
    else:
        context = started_app(log=log)
    per_step = training_cpu_per_step(path)
    with context as (base, pid):
        say(f"warming up {base}{path}")
        # Imports, data, the first page and the first ticks: not counted.
        warm = asyncio.run(_classroom(base, path, 1, WARMUP_SECONDS, stop_after_updates=5))
        if warm[0].error or not warm[0].updates:
            raise LoadTestError(f"the warm-up learner saw no chart update ({warm[0].error})")
        time.sleep(2.0)
        rss_start, cpu_start = (rss_mb(pid), cpu_seconds(pid)) if pid else (None, None)
        usage_start = server_usage(base)
        say(f"{sessions} learners for {seconds:g} s")

        async def measured() -> tuple[list[Learner], MemorySampler]:
            sampler, stop = MemorySampler(pid), asyncio.Event()
            sampling = asyncio.create_task(sampler.run(stop))
            try:
                learners = await _classroom(base, path, sessions, seconds)
            finally:
                stop.set()
                await sampling
            return learners, sampler

        learners, sampler = asyncio.run(measured())
        cpu_end = cpu_seconds(pid) if pid else None
        usage_end = server_usage(base)
        training = None
        if usage_start is not None and usage_end is not None:
            training = usage_end["training_cpu_seconds"] - usage_start["training_cpu_seconds"]
        rss_after = idle_percent = None
        if pid and settle_seconds > 0:
            say(f"every learner gone: waiting {settle_seconds:g} s")
            quiet = min(10.0, settle_seconds)
            time.sleep(max(0.0, settle_seconds - quiet))
            cpu_before_quiet = cpu_seconds(pid)
            time.sleep(quiet)
            rss_after = rss_mb(pid)
            if cpu_before_quiet is not None:
                idle_percent = 100 * (cpu_seconds(pid) - cpu_before_quiet) / quiet
    return report(
        learners,
        sessions=sessions,
        seconds=seconds,
        per_step=per_step,
        cpu=None if cpu_start is None or cpu_end is None else cpu_end - cpu_start,
        rss={"start": rss_start, "peak": sampler.peak, "after_disconnect": rss_after},
        idle_percent=idle_percent,
        training_cpu=training,
    )


def report(
    learners: list[Learner],
    *,
    sessions: int,
    seconds: float,
    per_step: float,
    cpu: float | None,
    rss: dict,
    idle_percent: float | None,
    training_cpu: float | None = None,
) -> dict:
    """The report's numbers. ``training_cpu``: the server's own count of its training
    CPU seconds; without it, the steps shown times ``per_step`` (measured here)."""
    playing = [learner for learner in learners if learner.played_at is not None]
    drawn = [learner.chart.frames / learner.playing_seconds for learner in playing]
    updates = [learner.updates / learner.playing_seconds for learner in playing]
    steps = [learner.steps / learner.playing_seconds for learner in playing]
    total_updates = sum(learner.updates for learner in learners)
    total_steps = sum(learner.steps for learner in learners)
    total_bytes = sum(learner.bytes for learner in learners)
    first_runs = [x.first_run_seconds for x in learners if x.first_run_seconds is not None]
    cpu_per_update = cpu_per_update_total = None
    if training_cpu is None:
        training_cpu = total_steps * per_step
    if cpu is not None and total_updates:
        cpu_per_update_total = 1000 * cpu / total_updates
        cpu_per_update = 1000 * max(0.0, cpu - training_cpu) / total_updates
    start, peak = rss.get("start"), rss.get("peak")
    return {
        "sessions": sessions,
        "seconds": seconds,
        "updates_per_second": _spread(drawn),
        "server_updates_per_second": _spread(updates),
        "steps_per_second": _spread(steps),
        "first_run_seconds": {
            "median": _percentile(first_runs, 0.5),
            "p90": _percentile(first_runs, 0.9),
            "max": max(first_runs) if first_runs else None,
            "finished": len(first_runs),
        },
        "server_cpu_ms_per_update": cpu_per_update,
        "server_cpu_ms_per_update_with_training": cpu_per_update_total,
        "training_ms_per_step": 1000 * training_cpu / total_steps if total_steps else None,
        "bytes_per_update": total_bytes / total_updates if total_updates else None,
        "rss_mb": {
            "start": start,
            "peak": peak,
            "per_session": (peak - start) / sessions if start and peak else None,
            "after_disconnect": rss.get("after_disconnect"),
        },
        "cpu_percent_after_disconnect": idle_percent,
        "updates": total_updates,
        "steps": total_steps,
        "errors": sorted({x.error for x in learners if x.error}),
    }


def format_report(result: dict) -> str:
    """The report as a readable table."""

    def f(value, digits=1):
        return "-" if value is None else f"{value:.{digits}f}"

    ups, sps, rss, first = (
        result["updates_per_second"],
        result["steps_per_second"],
        result["rss_mb"],
        result["first_run_seconds"],
    )
    server = result["server_updates_per_second"]
    rows = [
        ("learners", str(result["sessions"]), f"{result['seconds']:g} s each"),
        ("chart updates / s", f(ups["median"]), f"p10 {f(ups['p10'])} (drawn in the browser)"),
        ("server updates / s", f(server["median"]), f"p10 {f(server['p10'])} (messages)"),
        ("steps / s", f(sps["median"], 0), f"p10 {f(sps['p10'], 0)}"),
        (
            "first run, Play to end",
            f"{f(first['median'])} s",
            f"max {f(first['max'])} s, {first['finished']} finished",
        ),
        (
            "server CPU / update",
            f"{f(result['server_cpu_ms_per_update'], 2)} ms",
            f"with training {f(result['server_cpu_ms_per_update_with_training'], 2)} ms",
        ),
        ("bytes / update", f(result["bytes_per_update"], 0), f"{result['updates']} server updates"),
        ("server RSS", f"{f(rss['start'], 0)} MB", f"peak {f(rss['peak'], 0)} MB"),
        ("RSS per learner", f"{f(rss['per_session'])} MB", ""),
        (
            "after disconnect",
            f"{f(rss['after_disconnect'], 0)} MB",
            f"CPU {f(result['cpu_percent_after_disconnect'])} %",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{name.ljust(width)}  {value:>10}  {extra}" for name, value, extra in rows]
    if result["errors"]:
        lines.append("errors: " + "; ".join(result["errors"]))
    return "\n".join(lines)
