"""Play, pause, step and reset a live training run: a small state machine.

After the ``Player`` of TensorFlow Playground (``playground.ts``): the page
owns one ``Player``; a timer calls ``tick`` while it is playing, and the
buttons call ``play``, ``pause``, ``step`` and ``reset``. Pure Python and no
Streamlit, so it is tested on its own (``tests/test_player.py``); the Training
Lab runs ``tick`` inside a fragment that reruns every ``interval`` seconds.

A tick trains up to ``steps_per_tick`` optimizer steps but stops once it has
spent ``time_budget`` seconds, so a slow network (an LSTM over long sequences
takes milliseconds per step) never freezes the page: the charts still redraw
several times a second, with fewer steps between redraws. Every tick takes at
least one step, so a run always makes progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# The speed control: optimizer steps per tick.
SPEEDS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
DEFAULT_SPEED = 20
TIME_BUDGET = 0.08  # seconds of training per tick
INTERVAL = 0.12  # seconds between ticks while playing


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

    ``seconds_per_step`` is a running estimate of one step's cost, measured
    while playing; it sizes the chunks a tick trains in, so a fast network
    takes many steps per chunk and a slow one a single step.
    """

    steps_per_tick: int = DEFAULT_SPEED
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

    def set_speed(self, steps_per_tick: int) -> None:
        self.steps_per_tick = max(1, int(steps_per_tick))

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

    def tick(self, run: Steppable, clock: Callable[[], float] = time.perf_counter) -> Tick:
        """One timer tick: train within the budget; stop playing when the run ends."""
        if not self.playing:
            return Tick(0, 0.0, run.done)
        start = clock()
        taken = 0
        while taken < self.steps_per_tick and not run.done:
            elapsed = clock() - start
            if taken and elapsed >= self.time_budget:
                break
            wanted = self.steps_per_tick - taken
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
        return Tick(taken, clock() - start, finished)

    def _measure(self, seconds_per_step: float) -> None:
        if self.seconds_per_step is None:
            self.seconds_per_step = seconds_per_step
        else:  # a running average: smooth, but follows a change of network quickly
            self.seconds_per_step = 0.5 * self.seconds_per_step + 0.5 * seconds_per_step
