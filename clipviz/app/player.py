"""Play, pause, step and reset a live training run: a small state machine.

After the ``Player`` of TensorFlow Playground (``playground.ts``): the page
owns one ``Player``; a timer calls ``tick`` while it is playing, and the
buttons call ``play``, ``pause``, ``step`` and ``reset``. Pure Python and no
Streamlit, so it is tested on its own (``tests/test_player.py``); the Training
Lab runs ``tick`` inside a fragment that reruns every ``interval`` seconds.

How playback is paced (the Lab's live chart, ``clipviz.app.stream``): the
browser draws the chart, up to ``UPDATES_PER_SECOND`` times a second, each
time showing ``speed`` more optimizer steps of what it has received. The
server does not draw: every ``interval`` seconds it trains the steps the
browser will show until the next tick (``steps_per_tick``, a few chart
updates' worth) and sends them. So the chart moves smoothly at a rate the
server does not pay for, and the server's work per learner is the training
plus one small message per tick.

A tick trains at most ``time_budget`` seconds of this thread's CPU time
(``time.thread_time``: time spent waiting for other sessions does not
count), so one session holds at most ``time_budget / interval`` of a core
however slow its network: an LSTM over long sequences trains fewer steps
per tick and its chart moves slower, and the other learners keep theirs.
Every tick takes at least one step, so a run always makes progress. A tick
trains nothing while the browser still has more than a tick's steps
waiting to be sent (``ahead``), so training never runs far ahead of the chart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

# The speed control: optimizer steps shown per chart update.
SPEEDS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
DEFAULT_SPEED = 20
UPDATES_PER_SECOND = 25  # chart updates the browser draws per second while it has steps
INTERVAL = 0.2  # seconds between server ticks while playing
TIME_BUDGET = 0.05  # CPU seconds of training per tick: a session's share is 1/4 of a core


@dataclass
class Usage:
    """What every tick in this process has done so far (read by ``serve.py``'s usage route)."""

    ticks: int = 0
    steps: int = 0
    training_cpu_seconds: float = 0.0

    def add(self, tick: Tick) -> None:
        with _USAGE_LOCK:
            self.ticks += 1
            self.steps += tick.steps
            self.training_cpu_seconds += tick.seconds

    def snapshot(self) -> dict:
        with _USAGE_LOCK:
            return asdict(self)


_USAGE_LOCK = threading.Lock()
USAGE = Usage()


class Steppable(Protocol):
    """What the player drives: a ``Trainer``, a ``TwinRun`` or ``clipviz.app.lab.LabRun``."""

    @property
    def done(self) -> bool: ...

    def step(self, n: int = 1) -> int: ...


@dataclass(frozen=True)
class Tick:
    """What one tick did."""

    steps: int  # optimizer steps taken
    seconds: float  # time spent training
    finished: bool  # the run reached its end (or exploded) during this tick


@dataclass
class Player:
    """Playing or paused; how much to train per tick; what the buttons do.

    ``speed`` is the number of optimizer steps per chart update.
    ``seconds_per_step`` is a running estimate of one step's cost, measured
    while playing; it sizes the chunks a tick trains in, so a fast network
    takes many steps per chunk and a slow one a single step.
    """

    speed: int = DEFAULT_SPEED
    time_budget: float = TIME_BUDGET
    interval: float = INTERVAL
    playing: bool = False
    seconds_per_step: float | None = None

    @property
    def state(self) -> str:
        return "playing" if self.playing else "paused"

    @property
    def run_every(self) -> float | None:
        """The fragment's rerun interval: ``interval`` while playing, else None."""
        return self.interval if self.playing else None

    @property
    def steps_per_tick(self) -> int:
        """Steps a tick trains: the chart updates until the next tick, ``speed`` steps each."""
        return self.speed * max(1, round(UPDATES_PER_SECOND * self.interval))

    def set_speed(self, steps_per_update: int) -> None:
        self.speed = max(1, int(steps_per_update))

    def play(self, run: Steppable) -> bool:
        """Start playing; returns False (and stays paused) if the run is already over."""
        self.playing = not run.done
        return self.playing

    def pause(self) -> None:
        self.playing = False

    def toggle(self, run: Steppable) -> bool:
        if self.playing:
            self.pause()
        else:
            self.play(run)
        return self.playing

    def step(self, run: Steppable, n: int = 1) -> int:
        """Pause and take ``n`` steps by hand; returns the steps taken."""
        self.pause()
        return run.step(n)

    def reset(self) -> None:
        """Pause and forget the speed estimate; the caller builds a fresh run from step 0."""
        self.pause()
        self.seconds_per_step = None

    def tick(
        self,
        run: Steppable,
        clock: Callable[[], float] = time.thread_time,
        *,
        ahead: int = 0,
    ) -> Tick:
        """One timer tick: train within the budget; stop playing when the run ends.

        ``ahead`` is how many trained steps are still waiting to be sent to
        the browser; the tick trains only what tops them up to ``steps_per_tick``.
        """
        if not self.playing:
            return Tick(0, 0.0, run.done)
        start = clock()
        taken = 0
        target = self.steps_per_tick - max(0, ahead)
        while taken < target and not run.done:
            elapsed = clock() - start
            if taken and elapsed >= self.time_budget:
                break
            wanted = target - taken
            if self.seconds_per_step:
                affordable = int((self.time_budget - elapsed) / self.seconds_per_step)
                chunk = max(1, min(wanted, affordable))
            else:
                chunk = 1  # first measure what one step costs
            chunk_start = clock()
            done_now = run.step(chunk)
            if done_now <= 0:
                break
            self._measure((clock() - chunk_start) / done_now)
            taken += done_now
        finished = run.done
        if finished:
            self.pause()
        tick = Tick(taken, clock() - start, finished)
        USAGE.add(tick)
        return tick

    def _measure(self, seconds_per_step: float) -> None:
        if self.seconds_per_step is None:
            self.seconds_per_step = seconds_per_step
        else:  # a running average: smooth, but follows a change of network quickly
            self.seconds_per_step = 0.5 * self.seconds_per_step + 0.5 * seconds_per_step
