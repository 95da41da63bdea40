"""Freeing closed tabs' runs (clipviz.app.sessions), with a fake clock and fake sessions."""

from __future__ import annotations

import gc

from clipviz.app.lab import LabRun
from clipviz.app.sessions import Janitor
from clipviz.engine.config import PRESETS


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Resource:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_a_session_gone_longer_than_the_grace_gets_its_runs_closed():
    clock, connected = Clock(), {"a": True, "b": True}
    janitor = Janitor(lambda sid: connected.get(sid, False), grace=30, clock=clock)
    a, b = Resource(), Resource()
    janitor.watch("a", a)
    janitor.watch("b", b)
    connected["a"] = False  # tab a closed
    clock.now += 10
    assert janitor.sweep() == 0 and not a.closed  # within the grace: it may come back
    clock.now += 25
    assert janitor.sweep() == 1
    assert a.closed and not b.closed
    assert janitor.sessions == 1


def test_a_session_that_comes_back_within_the_grace_keeps_its_run():
    clock, connected = Clock(), {"a": True}
    janitor = Janitor(lambda sid: connected.get(sid, False), grace=30, clock=clock)
    run = Resource()
    janitor.watch("a", run)
    connected["a"] = False
    clock.now += 20
    janitor.sweep()
    connected["a"] = True  # the network came back
    clock.now += 20
    janitor.sweep()
    connected["a"] = False
    clock.now += 20  # 40 s since it left first, but only 20 since last seen
    assert janitor.sweep() == 0 and not run.closed


def test_runs_are_held_weakly_and_a_real_lab_run_frees_its_trainers():
    clock, connected = Clock(), {}
    janitor = Janitor(lambda sid: connected.get(sid, False), grace=0, clock=clock)
    janitor.watch("gone", Resource())  # nobody keeps it: collected, nothing to close
    gc.collect()
    run = LabRun(PRESETS["tutorial_clip_norm"].config)
    run.step(3)
    janitor.watch("closed-tab", run)
    clock.now += 1
    assert janitor.sweep() == 1
    assert run.closed and run.trainers == [] and janitor.sessions == 0
