"""A value computed once per server process on a worker thread, which pages poll.

Some page content takes many seconds to compute and is the same for every
learner: the digits chapter of /recurrent trains thirty LSTMs. Computed inside
the page script, it would hold the first visitor's page (and every widget they
touch) until it is done. ``Once`` computes it on its own thread instead: the
first reader starts it, every reader gets ``None`` until it is ready (waiting
at most the few seconds it asks for), and nobody computes it twice. A page
keeps one ``Once`` per server in ``st.cache_resource`` and polls it with a
fragment; this module itself imports no streamlit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Once(Generic[T]):
    """``compute()`` run at most once, on a daemon thread started by the first reader."""

    def __init__(self, compute: Callable[[], T], *, name: str = "background computation"):
        self._compute = compute
        self._name = name
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._value: T | None = None
        self.error: str | None = None  # one line, if ``compute`` raised

    def start(self) -> None:
        """Start computing, unless it has started already (safe from any thread)."""
        with self._lock:
            if self._thread is not None:
                return
            self._started_at = time.perf_counter()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._compute()
        except Exception as exc:  # reported to readers as one line, never re-raised
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._finished_at = time.perf_counter()
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def result(self, wait: float = 0.0) -> T | None:
        """The value, waiting at most ``wait`` seconds for it; None while it is computing
        (or if it failed: see ``error``). Starts the computation if nobody has."""
        self.start()
        self._done.wait(wait)
        return self._value if self.done else None

    @property
    def seconds(self) -> float:
        """How long it has been computing (or took, once done); 0 before it starts."""
        if self._started_at is None:
            return 0.0
        end = self._finished_at if self._finished_at is not None else time.perf_counter()
        return end - self._started_at
