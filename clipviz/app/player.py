"""Play, pause, step and reset a live training run: a small state machine.

After the ``Player`` of TensorFlow Playground (``playground.ts``): the page
owns one ``Player``; ``tick`` trains while it is playing, and the buttons
call ``play``, ``pause``, ``step`` and ``reset``. Pure Python and no
Streamlit, so it is tested on its own (``tests/test_player.py``).

How the Training Lab paces playback (its live chart: ``clipviz.app.stream``
and ``pages/components/live_chart/``): the browser draws the chart, up to
``UPDATES_PER_SECOND`` times a second, each time showing ``speed`` more
optimizer steps of what it has received. When fewer than about a tick's
steps are left to show, it asks for more (saying which steps it holds); the
server answers with one tick: it trains the steps of ``interval`` seconds of
chart (``steps_per_tick``) and sends them. So the chart moves smoothly at a
rate the server does not pay for, the server's work per learner is the
training plus one small message per tick, and a browser that cannot keep up
(or a hidden tab, which draws nothing) asks for nothing.

A tick trains at most ``time_budget`` seconds of this thread's CPU time
(``time.thread_time``: waiting for other sessions does not count), and the
budget refills with wall time at ``time_budget`` per ``interval``: however
fast a browser asks, one session holds at most ``time_budget / interval`` of
a core (a quarter), whatever its network. A request that comes late (the
round trip through the browser took longer than ``interval``) may spend up to
``BURST`` budgets, so the quarter of a core is not lost to the round trip. An
LSTM over long sequences trains fewer steps per tick and its chart moves slower; the other learners keep
theirs. Every tick takes at least one step, so a run always makes progress.
A tick trains only what tops up the steps the browser has not received yet
(``ahead``) to a tick's worth, so training never runs far ahead of the chart.
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
INTERVAL = 0.2  # seconds of chart a tick trains (the browser asks about this often)
TIME_BUDGET = 0.05  # CPU seconds of training per tick; refills per INTERVAL: 1/4 of a core
BURST = 2  # a tick may spend up to this many budgets when its request came late


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

# Ticks train one at a time in a process: many sessions' threads training at once
# hand Python's GIL back and forth at every small torch operation, and a step then
# costs several times its CPU (measured with 30 learners: about 6 ms a step instead
# of 0.7). In turn, each tick runs at full speed, and the budget still bounds each
# session's share. A tick that waited TRAINING_WAIT seconds trains anyway.
TRAINING = threading.Lock()
TRAINING_WAIT = 5.0


class Steppable(Protocol):
    """What the player drives: a ``Trainer`` or ``clipviz.app.lab.LabRun``."""

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
    last_tick: float | None = None  # wall time of the last tick that trained

    @property
    def state(self) -> str:
        return "playing" if self.playing else "paused"

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
        self.last_tick = None

    def allowance(self, now: float) -> float:
        """CPU seconds the next tick may train: the budget, refilled with wall time."""
        if self.last_tick is None:
            return self.time_budget
        refilled = self.time_budget * (now - self.last_tick) / self.interval
        return max(0.0, min(BURST * self.time_budget, refilled))

    def tick(
        self,
        run: Steppable,
        clock: Callable[[], float] = time.thread_time,
        *,
        ahead: int = 0,
        now: float | None = None,
    ) -> Tick:
        """One tick: train within the allowance; stop playing when the run ends.

        ``ahead`` is how many trained steps the browser has not received yet;
        the tick trains only what tops them up to ``steps_per_tick``. ``now``
        is the wall time (``time.monotonic`` by default) that refills the budget.
        """
        if not self.playing:
            return Tick(0, 0.0, run.done)
        now = time.monotonic() if now is None else now
        budget = self.allowance(now)
        # One session trains at a time (see the module's note); a bounded wait.
        locked = TRAINING.acquire(timeout=TRAINING_WAIT)
        try:
            return self._train(run, clock, budget, ahead, now)
        finally:
            if locked:
                TRAINING.release()

    def _train(self, run: Steppable, clock, budget: float, ahead: int, now: float) -> Tick:
        start = clock()
        taken = 0
        target = self.steps_per_tick - max(0, ahead)
        while taken < target and not run.done:
            elapsed = clock() - start
            if taken and elapsed >= budget:
                break
            wanted = target - taken
            if self.seconds_per_step:
                affordable = int((budget - elapsed) / self.seconds_per_step)
                chunk = max(1, min(wanted, affordable))
            else:
                chunk = 1  # first measure what one step costs
            chunk_start = clock()
            done_now = run.step(chunk)
            if done_now <= 0:
                break
            self._measure((clock() - chunk_start) / done_now)
            taken += done_now
        if taken:
            self.last_tick = now
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
