"""Free what a closed browser tab leaves behind on the server.

Streamlit keeps a disconnected session for ``server.disconnectedSessionTTL``
seconds, so a learner whose network blinks comes back to the same run; a
tab that was closed never comes back. Its training stops at once anyway
(the live chart's ticks come from the browser), but its run's tensors would
stay in memory until Streamlit drops the session, which it does only the
next time another session connects or leaves.

A ``Janitor`` remembers which session owns which closable resource (a Lab
run) and, at each ``sweep``, closes the resources of every session that has
not been connected for ``grace`` seconds. Whether a session is connected is
asked of ``is_connected`` (Streamlit's runtime, in ``app_boot``), so this
module stays pure and testable (``tests/test_sessions.py``). Resources are
held weakly: a run that its page has already replaced is not kept alive here.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class Closable(Protocol):
    def close(self) -> None: ...


@dataclass
class _Owner:
    resources: weakref.WeakSet = field(default_factory=weakref.WeakSet)
    last_connected: float = 0.0


class Janitor:
    """Closes the resources of sessions gone for more than ``grace`` seconds."""

    def __init__(
        self,
        is_connected: Callable[[str], bool],
        grace: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.is_connected = is_connected
        self.grace = grace
        self.clock = clock
        self._owners: dict[str, _Owner] = {}
        self._lock = threading.Lock()  # pages (script threads) and the sweeper share it

    def watch(self, session_id: str, resource: Closable) -> None:
        """Close ``resource`` once session ``session_id`` has been gone for ``grace`` seconds."""
        with self._lock:
            owner = self._owners.setdefault(session_id, _Owner(last_connected=self.clock()))
            owner.resources.add(resource)
            owner.last_connected = self.clock()

    @property
    def sessions(self) -> int:
        return len(self._owners)

    def sweep(self) -> int:
        """Close what sessions gone too long left; returns how many resources were closed."""
        now = self.clock()
        closing = []
        with self._lock:
            for session_id, owner in list(self._owners.items()):
                if not owner.resources:  # every run already replaced and collected
                    del self._owners[session_id]
                elif self.is_connected(session_id):
                    owner.last_connected = now
                elif now - owner.last_connected >= self.grace:
                    closing += list(owner.resources)
                    del self._owners[session_id]
        for resource in closing:
            resource.close()
        return len(closing)
