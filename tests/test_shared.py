"""Results computed once per server (clipviz.app.shared): threads asking at once wait for one."""

from __future__ import annotations

import threading
import time

import pytest

from clipviz.app.shared import SharedResults


class Slow:
    """A computation that takes ``seconds`` and counts its calls."""

    def __init__(self, seconds: float = 0.3, fail: bool = False):
        self.seconds, self.fail, self.calls = seconds, fail, 0
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.calls += 1
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("no result")
        return object()


def ask_at_once(store, key, compute, n: int, **kwargs):
    results, errors, waited = [None] * n, [None] * n, [False] * n
    start = threading.Barrier(n)

    def ask(i):
        start.wait()
        try:
            results[i] = store.get(key, compute, on_wait=lambda: waited.__setitem__(i, True))
        except RuntimeError as error:
            errors[i] = error

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    return results, errors, waited


def test_sessions_asking_for_the_same_missing_result_wait_for_one_computation():
    store, compute = SharedResults(4), Slow()
    results, errors, waited = ask_at_once(store, "map", compute, 8)
    assert compute.calls == 1 and store.computed == 1
    assert all(r is results[0] for r in results)  # one shared object
    assert sum(waited) == 7 and not any(errors)
    assert store.get("map", Slow()) is results[0]  # and it is kept


def test_different_results_are_computed_side_by_side():
    store, compute = SharedResults(4), Slow(0.4)
    threads = [threading.Thread(target=store.get, args=(k, compute)) for k in "ab"]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert compute.calls == 2
    assert time.monotonic() - began < 0.8 * 2  # not one after the other (sleeps overlap)


def test_a_failed_computation_is_not_kept_and_a_waiter_tries_itself():
    store, failing = SharedResults(4), Slow(0.2, fail=True)
    results, errors, _ = ask_at_once(store, "map", failing, 3)
    assert all(isinstance(e, RuntimeError) for e in errors)  # each one tried and failed
    assert "map" not in store
    assert store.get("map", Slow(0.0)) is not None


def test_the_store_keeps_the_most_recently_used_results():
    store = SharedResults(2)
    for key in "abc":
        store.get(key, object)
    assert "a" not in store and "b" in store and "c" in store
    store.get("b", object)
    store.get("d", object)
    assert "c" not in store and "b" in store


def test_a_waiter_with_a_timeout_computes_for_itself():
    store, compute = SharedResults(2), Slow(1.0)
    worker = threading.Thread(target=store.get, args=("map", compute))
    worker.start()
    time.sleep(0.1)
    assert store.get("map", lambda: "mine", timeout=0.05) == "mine"
    worker.join(30)
    assert compute.calls == 1


@pytest.mark.parametrize("n", [2, 30])
def test_a_classroom_of_threads_computes_once(n):
    store, compute = SharedResults(1), Slow(0.2)
    ask_at_once(store, ("grid", 32), compute, n)
    assert compute.calls == 1


@pytest.mark.slow
def test_two_sessions_opening_the_tutorial_at_once_train_each_chapter_once(monkeypatch):
    """The tutorial's chapters go through st.cache_data, which holds a lock per key while
    computing: two sessions opening the page together share one computation of each."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from clipviz.lessons import story

    page = str(Path(__file__).resolve().parents[1] / "pages" / "tutorial.py")
    calls: dict[str, int] = {}
    lock = threading.Lock()
    original = story.chapter_run

    def counting(key, seed):
        with lock:
            calls[key] = calls.get(key, 0) + 1
        return original(key, seed)

    monkeypatch.setattr(story, "chapter_run", counting)
    # A seed no other test uses, so nothing is cached yet.
    monkeypatch.setattr(story, "DEFAULT_SEED", 917)
    apps: list = [None, None]

    def open_page(i):
        app = AppTest.from_file(page, default_timeout=300)
        app.run()
        apps[i] = app

    threads = [threading.Thread(target=open_page, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert all(app is not None and not app.exception for app in apps)
    assert calls and set(calls.values()) == {1}, calls
