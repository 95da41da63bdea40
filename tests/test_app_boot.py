"""app_boot: the server's allocator setting and the garbage collector's freeze."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import app_boot

ROOT = Path(__file__).resolve().parents[1]
glibc = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the mmap threshold is a glibc setting"
)


@glibc
def test_fixing_the_mmap_threshold_is_accepted_by_glibc():
    assert app_boot.fix_mmap_threshold() is True
    assert app_boot.fix_mmap_threshold(app_boot.MMAP_THRESHOLD) is True


@glibc
def test_limiting_the_malloc_arenas_is_accepted_by_glibc():
    assert app_boot.limit_arenas() is True
    assert app_boot.limit_arenas(app_boot.ARENA_MAX) is True


@glibc
def test_a_block_above_the_threshold_goes_back_to_the_system_when_freed():
    """With the threshold fixed, freeing a 16 MiB block shrinks the process at once."""
    script = f"""
import ctypes, ctypes.util, sys
sys.path.insert(0, {str(ROOT)!r})
import app_boot
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
sizes = []
for _ in range(3):  # by default the first free raises the threshold past 16 MiB
    block = libc.malloc(16 << 20)
    ctypes.memset(block, 1, 16 << 20)
    libc.free(block)
    sizes.append(rss())
print(sizes[-1] - sizes[0])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert abs(int(out.stdout)) < 8, out.stdout


def test_importing_app_boot_does_not_import_the_library():
    """app_boot is imported by app.py before anything heavy; it must stay light."""
    out = subprocess.run(
        [sys.executable, "-c", "import app_boot, sys; print('torch' in sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_ensure_router_freezes_the_collector_once():
    gc.unfreeze()
    app_boot._frozen = False
    try:
        app_boot.ensure_router()
        frozen = gc.get_freeze_count()
        assert app_boot._frozen and frozen > 1000  # everything imported so far
        app_boot.ensure_router()
        assert gc.get_freeze_count() == frozen  # not again
    finally:
        gc.unfreeze()
