"""Keep deep links working on a freshly started server, and the server's memory flat.

Streamlit decides at the first page load whether the app uses the old
"pages/ folder" navigation: until some run has called ``st.navigation``, a
``pages/`` folder beside ``app.py`` switches it on. So when the very first
request after a start is a deep link (a shared ``/lab?preset=...``), Streamlit
runs ``pages/lab.py`` on its own, without ``app.py``: no page config, and a
sidebar of raw file names. Every page calls ``ensure_router()`` first; in that
situation it switches the old mode off and runs ``app.py`` in the same script
run (so widget events are kept), whose ``st.navigation`` runs the requested
page, and then ends the outer run.

It also freezes the garbage collector's view of everything imported so far
(torch, plotly, scikit-learn: some 300,000 long-lived objects). Streamlit
collects garbage after every script run; without the freeze each collection
walks them all (~0.2 s, which would cap the Lab's live charts at a few redraws
a second), and with the collection switched off the cycles that reruns leave
behind pile up instead (the server grew by ~100 MB over ten Play/Reset cycles).

And it fixes glibc's mmap threshold at 4 MiB. By default glibc raises that
threshold each time a large block is freed (up to 32 MiB), so the large,
short-lived buffers of every tick (figures, their JSON, the messages sent)
come to be carved out of its per-thread arenas. Streamlit runs every script
run, so every tick of the Lab, in a fresh thread, and on a busy machine those
threads spread over many arenas, each keeping its freed space: the server grew
from ~500 to ~700 MB over twenty Play/Reset cycles under load. With the
threshold fixed, blocks of 4 MiB and more go straight back to the system and
the server stays flat, at ~450 MB, under the same load; the stability map's
sweeps (tensors of a few MiB) run as fast as before. Measured with the Lab's
browser test, which prints the server's memory.

And it frees what closed tabs leave behind (``watch_session``): a thread
wakes every ``SWEEP_SECONDS`` and closes the Lab runs of sessions that have
not been connected for ``server.disconnectedSessionTTL`` seconds
(``clipviz.app.sessions``), then returns the freed memory to the system.
"""

import ctypes
import ctypes.util
import gc
import runpy
import threading
from pathlib import Path

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx

from clipviz.app.sessions import Closable, Janitor

APP = Path(__file__).with_name("app.py")


M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
MMAP_THRESHOLD = 4 << 20


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


def _mallopt(parameter: int, value: int) -> bool:
    """glibc's mallopt; False where there is none (musl, macOS, Windows) or it refuses."""
    mallopt = getattr(_libc(), "mallopt", None)
    return mallopt is not None and bool(mallopt(parameter, value))


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Serve blocks of ``size`` bytes and more by mmap, always; False where impossible.
    Setting the threshold also switches off glibc's dynamic raising of it.
    It takes effect at once, for every thread.
    """
    return _mallopt(M_MMAP_THRESHOLD, size)


M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h
ARENA_MAX = 2


def limit_arenas(count: int = ARENA_MAX) -> bool:
    """At most ``count`` malloc arenas for all threads; False where impossible.

    glibc gives threads that allocate at once arenas of their own (up to 8 per
    core), and an arena keeps much of its freed memory. Five heavy Lab tabs
    played at once and closed left the server at 524 MB from 424 (+24 %, three
    minutes later). Set here, arenas made before this import stay: 482 MB
    (+14 %). Set for the whole process (``MALLOC_ARENA_MAX=2`` in the
    environment, as ``deploy/`` does): 434 MB (+3 %), measured the same way.
    """
    return _mallopt(M_ARENA_MAX, count)


fix_mmap_threshold()  # on the first import, which app.py and every page do first
limit_arenas()


def release_free_memory() -> None:
    """Collect cycles and hand glibc's free heap pages back to the system (where it can)."""
    gc.collect()
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


SWEEP_SECONDS = 5.0
_janitor: Janitor | None = None
_janitor_lock = threading.Lock()


def _connected(session_id: str) -> bool:
    return Runtime.exists() and Runtime.instance().is_active_session(session_id)


def _sweep_forever(janitor: Janitor) -> None:
    stop = threading.Event()
    while not stop.wait(SWEEP_SECONDS):
        try:
            if janitor.sweep():
                release_free_memory()
        except Exception:  # a sweep must never end the sweeper
            continue


def janitor() -> Janitor:
    """The process's janitor, started on first use (grace: the session TTL)."""
    global _janitor
    with _janitor_lock:
        if _janitor is None:
            grace = float(st.get_option("server.disconnectedSessionTTL"))
            _janitor = Janitor(_connected, grace)
            threading.Thread(
                target=_sweep_forever, args=(_janitor,), name="clipviz-janitor", daemon=True
            ).start()
        return _janitor


def watch_session(resource: Closable) -> None:
    """Close ``resource`` (a Lab run) once this session's tab has been gone a while."""
    ctx = get_script_run_ctx()
    if ctx is not None and Runtime.exists():
        janitor().watch(ctx.session_id, resource)


_frozen = False


def set_thread_policy() -> None:
    """One torch thread per server process: the networks are tiny, so thread
    hand-offs would cost more than they save, and the second core is left to
    the web server and the other sessions. (Set here, where the process
    starts, not in the library; the CLI sets its own.)"""
    import torch  # already imported by the page that calls ensure_router

    torch.set_num_threads(1)


def ensure_router() -> None:
    global _frozen
    if not _frozen:  # once per process, after the first page's heavy imports
        set_thread_policy()
        gc.collect()
        gc.freeze()
        _frozen = True
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(APP), run_name="__main__")
        st.stop()
