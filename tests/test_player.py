"""The Player state machine: play/pause/step/reset and the time budget of a tick.

A fake run and a fake clock make every test exact: a step of the fake run
advances the clock by a fixed cost, so the budget is tested without timing.
"""

from __future__ import annotations

import pytest

from clipviz.app.player import BURST, DEFAULT_SPEED, SPEEDS, UPDATES_PER_SECOND, Player, Tick
from clipviz.engine.config import PRESETS
from clipviz.engine.trainer import Trainer


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeRun:
    """``total`` steps; each costs ``cost`` seconds on ``clock``; explodes at ``explode_at``."""

    def __init__(self, total: int, cost: float, clock: Clock, explode_at: int | None = None):
        self.total, self.cost, self.clock, self.explode_at = total, cost, clock, explode_at
        self.step_count = 0
        self.calls: list[int] = []

    @property
    def done(self) -> bool:
        if self.explode_at is not None and self.step_count >= self.explode_at:
            return True
        return self.step_count >= self.total

    def step(self, n: int = 1) -> int:
        self.calls.append(n)
        taken = 0
        while taken < n and not self.done:
            self.step_count += 1
            self.clock.now += self.cost
            taken += 1
        return taken


@pytest.fixture
def clock() -> Clock:
    return Clock()


def tick_later(player: Player, run, clock: Clock, **kwargs) -> Tick:
    """A tick long after the last one (a full budget), on the fake clock."""
    clock.wall = getattr(clock, "wall", 0.0) + 1000.0
    return player.tick(run, clock, now=clock.wall, **kwargs)


def ticking(steps: int, **kwargs) -> Player:
    """A player whose tick trains ``steps`` steps (one chart update per tick)."""
    return Player(speed=steps, interval=1 / UPDATES_PER_SECOND, **kwargs)


def test_a_new_player_is_paused_with_the_default_speed():
    player = Player()
    assert player.state == "paused" and not player.playing
    assert player.speed == DEFAULT_SPEED in SPEEDS
    # a tick trains the steps of the chart updates until the next tick
    assert player.steps_per_tick == DEFAULT_SPEED * round(UPDATES_PER_SECOND * player.interval)


def test_play_pause_toggle(clock):
    run, player = FakeRun(100, 0.001, clock), Player()
    assert player.play(run) is True
    assert player.state == "playing"
    player.pause()
    assert player.state == "paused"
    assert player.toggle(run) is True
    assert player.toggle(run) is False


def test_play_refuses_a_finished_run(clock):
    run, player = FakeRun(3, 0.001, clock), Player()
    run.step(3)
    assert player.play(run) is False
    assert not player.playing


def test_a_paused_player_does_not_train(clock):
    run, player = FakeRun(100, 0.001, clock), Player()
    tick = tick_later(player, run, clock)
    assert tick == Tick(0, 0.0, False)
    assert run.step_count == 0


def test_step_takes_one_step_and_pauses(clock):
    run, player = FakeRun(100, 0.001, clock), Player()
    player.play(run)
    assert player.step(run) == 1
    assert run.step_count == 1
    assert not player.playing


def test_reset_pauses_and_forgets_the_speed_estimate(clock):
    run, player = FakeRun(100, 0.001, clock), Player()
    player.play(run)
    tick_later(player, run, clock)
    assert player.seconds_per_step is not None
    player.reset()
    assert not player.playing and player.seconds_per_step is None


def test_a_fast_run_takes_the_full_speed_in_few_chunks(clock):
    run, player = FakeRun(10_000, 0.0001, clock), ticking(200, time_budget=0.08)
    player.play(run)
    tick = tick_later(player, run, clock)
    assert tick.steps == 200 and run.step_count == 200
    assert len(run.calls) <= 3  # one step to measure, then large chunks
    assert tick.seconds == pytest.approx(0.02)


def test_a_slow_run_stops_at_the_time_budget(clock):
    run, player = FakeRun(10_000, 0.05, clock), ticking(500, time_budget=0.08)
    player.play(run)
    tick = tick_later(player, run, clock)
    # 50 ms a step: the first step measures the cost; 30 ms of budget are left,
    # less than a step, but a chunk is never empty; then the budget is spent.
    assert tick.steps == 2
    assert tick.seconds == pytest.approx(0.10)
    assert player.playing  # still playing: the next tick goes on


def test_a_step_slower_than_the_budget_still_makes_progress(clock):
    run, player = FakeRun(10, 0.5, clock), ticking(50, time_budget=0.08)
    player.play(run)
    for _ in range(3):
        assert tick_later(player, run, clock).steps == 1
    assert run.step_count == 3


def test_playing_stops_when_the_run_ends(clock):
    run, player = FakeRun(45, 0.001, clock), ticking(20, time_budget=1.0)
    player.play(run)
    ticks = [tick_later(player, run, clock) for _ in range(3)]
    assert [t.steps for t in ticks] == [20, 20, 5]
    assert ticks[-1].finished and not player.playing
    assert tick_later(player, run, clock).steps == 0


def test_playing_stops_at_an_explosion(clock):
    run = FakeRun(1000, 0.001, clock, explode_at=7)
    player = ticking(100, time_budget=1.0)
    player.play(run)
    tick = tick_later(player, run, clock)
    assert tick.steps == 7 and tick.finished and not player.playing


def test_set_speed_keeps_at_least_one_step():
    player = Player()
    player.set_speed(0)
    assert player.speed == 1
    player.set_speed(500)
    assert player.speed == 500


def test_a_tick_tops_up_what_the_browser_still_waits_for(clock):
    run, player = FakeRun(10_000, 0.0001, clock), ticking(100, time_budget=1.0)
    player.play(run)
    assert tick_later(player, run, clock, ahead=30).steps == 70
    assert tick_later(player, run, clock, ahead=100).steps == 0  # enough is waiting: no training
    assert tick_later(player, run, clock, ahead=500).steps == 0
    assert player.playing


def test_the_budget_counts_this_threads_cpu_time_by_default():
    import inspect
    import time

    assert inspect.signature(Player.tick).parameters["clock"].default is time.thread_time


def test_the_player_drives_a_real_trainer_to_its_explosion():
    trainer = Trainer(PRESETS["tutorial_unscaled"].config)
    player = ticking(500, time_budget=10.0)
    player.play(trainer)
    while player.playing:
        player.tick(trainer)
    assert trainer.exploded_at is not None
    assert trainer.step_count == trainer.exploded_at


def test_asking_faster_than_the_interval_does_not_buy_more_cpu(clock):
    """The budget refills with wall time: one session holds budget / interval of a core."""
    run, player = FakeRun(100_000, 0.001, clock), ticking(10_000, time_budget=0.05)
    player.interval = 0.2
    player.play(run)
    first = player.tick(run, clock, now=100.0)
    assert first.seconds == pytest.approx(0.05, abs=0.002)  # a full budget: 50 steps
    soon = player.tick(run, clock, now=100.02)  # asked again 20 ms later: 5 ms refilled
    assert soon.steps == pytest.approx(5, abs=1)
    later = player.tick(run, clock, now=100.12)  # 100 ms after that: half the budget
    assert later.steps == pytest.approx(25, abs=2)
    assert player.tick(run, clock, now=100.12).steps == 1  # none left: still one step
    # Late requests may spend up to BURST budgets, never more, and only as time passed.
    assert player.allowance(200.0) == BURST * player.time_budget
    assert player.allowance(100.12 + 0.3) == pytest.approx(1.5 * player.time_budget)
