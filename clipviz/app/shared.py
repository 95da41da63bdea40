"""Results computed once per server and shared by every session.

A classroom opens the same page in the same minute: thirty sessions asking
for the same stability map must not train it thirty times. ``SharedResults``
is a small bounded store (least recently used out first) with one rule more
than a dict: when several threads ask for the same missing key at once, the
first computes it and the others wait for that result instead of computing
their own (a "single flight"). A computation that fails is not stored; each
waiting caller then tries again itself.

Streamlit's own ``st.cache_data`` and ``st.cache_resource`` do the same for a
function's return value (they hold a lock per argument key while computing),
and the pages use them wherever a plain cached call fits. This class is for
the results a page computes with a progress bar of its own (the stability
map's sweeps), where the waiting sessions should say why they wait. ``clipviz.app.background.Once``
is the other shape of the same sharing: one value, computed on its own thread while
the pages poll it without blocking (the recurrent page's digits study, too long to
hold a page for); a ``SharedResults`` caller computes or waits in its own script run.
Pure Python, no Streamlit (``tests/test_shared.py``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class _Flight:
    def __init__(self):
        self.done = threading.Event()
        self.failed = False


class SharedResults(Generic[V]):
    """At most ``max_entries`` results by key; concurrent misses of one key compute once."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._results: OrderedDict[Hashable, V] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self._lock = threading.Lock()
        self.computed = 0  # how many computations ran (for tests and tools)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._results

    def get(
        self,
        key: Hashable,
        compute: Callable[[], V],
        *,
        on_wait: Callable[[], None] | None = None,
        timeout: float | None = None,
    ) -> V:
        """The result for ``key``: stored, computed here, or awaited from another thread.

        ``on_wait`` is called (once) before waiting for another thread's
        computation, e.g. to say so on the page; ``timeout`` bounds that wait,
        after which this caller computes the result itself.
        """
        while True:
            with self._lock:
                if key in self._results:
                    self._results.move_to_end(key)
                    return self._results[key]
                flight = self._flights.get(key)
                mine = flight is None
                if mine:
                    flight = self._flights[key] = _Flight()
            if mine:
                return self._compute(key, compute, flight)
            if on_wait is not None:
                on_wait()
                on_wait = None
            if not flight.done.wait(timeout):
                return compute()  # waited long enough: do not depend on the other one
            if flight.failed:
                return self._compute_alone(key, compute)

    def _compute(self, key: Hashable, compute: Callable[[], V], flight: _Flight) -> V:
        try:
            value = compute()
        except BaseException:
            flight.failed = True
            raise
        else:
            self._store(key, value)
            return value
        finally:
            with self._lock:
                self._flights.pop(key, None)
                self.computed += 1
            flight.done.set()

    def _compute_alone(self, key: Hashable, compute: Callable[[], V]) -> V:
        value = compute()
        with self._lock:
            self.computed += 1
        self._store(key, value)
        return value

    def _store(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._results[key] = value
            self._results.move_to_end(key)
            while len(self._results) > self.max_entries:
                self._results.popitem(last=False)
