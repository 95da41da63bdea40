"""``clipviz.app.background.Once``: computed once, on its own thread, whoever asks."""

from __future__ import annotations

import threading

from clipviz.app.background import Once


def test_computes_once_however_many_threads_ask():
    calls, release = [], threading.Event()

    def compute() -> int:
        calls.append(1)
        release.wait(5)
        return 42

    once = Once(compute)
    assert once.result() is None and not once.done  # started, not finished
    readers = [threading.Thread(target=once.result, kwargs={"wait": 5}) for _ in range(8)]
    for reader in readers:
        reader.start()
    release.set()
    for reader in readers:
        reader.join(10)
    assert once.result(wait=5) == 42 and once.done
    assert len(calls) == 1 and once.error is None
    assert once.seconds > 0


def test_an_error_is_one_line_and_never_raised():
    def compute() -> int:
        raise ValueError("no data")

    once = Once(compute)
    assert once.result(wait=5) is None
    assert once.done and once.error == "ValueError: no data"
