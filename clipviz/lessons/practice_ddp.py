"""Case 5 of the practice page: in data-parallel training, clip after the all-reduce.

Two real worker processes (``torch.multiprocessing`` with the ``spawn`` start
method) join a ``torch.distributed`` process group on the ``gloo`` backend over
the loopback interface (127.0.0.1, a free port). Each holds the same copy of
the reference MLP and half of one batch of 32 rows (worker 0 the rows with the
smaller targets, worker 1 the larger, so their gradients differ as they do when
shards are not alike). Each worker:

1. computes its local gradient and its norm;
2. ``clip_then_average`` (wrong): clips the local gradient, then all-reduces;
3. ``average_then_clip`` (right): all-reduces, then clips;
4. wraps the model in ``DistributedDataParallel``: its ``backward()`` already
   averages the gradient across workers (the all-reduce runs inside backward,
   bucket by bucket), so a ``clip_grad_norm_`` after it sees the global norm
   (``ddp_backward_then_clip``).

Equal halves and a mean loss make the averaged gradient equal to the gradient
of the whole batch, which the tests compute in one process with plain autograd.

The workers are spawned from a fresh Python process (``practice.run_module``),
never from the caller: ``spawn`` runs the parent's ``__main__`` again in each
child, and in a Streamlit server that is the page script. Starting processes
that import torch takes seconds, so the page runs this once per server, in the
background, and shows how long it took. Every process is always ended: after
``timeout`` seconds the workers are terminated, and the fresh process's whole
session with them.
"""

from __future__ import annotations

import datetime
import os
import queue
import socket
import time
import traceback
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import clip_grad_norm_

from clipviz.lessons import practice

WORLD_SIZE = 2


def clip_then_average(model, c: float) -> None:
    # clips with this worker's own norm only
    clip_grad_norm_(model.parameters(), c)
    # sum over the workers, then average
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= dist.get_world_size()


def average_then_clip(model, c: float) -> None:
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= dist.get_world_size()
    # clips with the norm of the global gradient
    clip_grad_norm_(model.parameters(), c)


def ddp_backward_then_clip(ddp_model, data, c):
    x, y = data
    loss = F.mse_loss(ddp_model(x), y)
    # DDP averages the gradients across workers
    # inside backward()
    loss.backward()
    params = list(ddp_model.parameters())
    # (a copy, for the page)
    grads = [p.grad.clone() for p in params]
    # so the clip sees the global gradient
    norm = clip_grad_norm_(params, c)
    return grads, norm


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_interface() -> str | None:
    """The loopback interface's name (``lo`` on Linux, ``lo0`` on macOS), if any."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except (OSError, AttributeError):
        return None
    return next((n for n in names if n.startswith("lo")), None)


def _vector(model: nn.Module) -> np.ndarray:
    return practice.flat(practice.grads_of(model)).numpy()


def _worker(rank: int, port: int, state: dict, data: list, c: float, results) -> None:
    """One worker process: join the group, run the three variants, report, leave."""
    try:
        start = time.perf_counter()
        torch.set_num_threads(1)
        interface = loopback_interface()
        if interface:  # this process's own environment: keep gloo on the loopback
            os.environ["GLOO_SOCKET_IFNAME"] = interface
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=WORLD_SIZE,
            timeout=datetime.timedelta(seconds=60),
        )
        joined = time.perf_counter()
        x, y = data[rank]

        def fresh() -> nn.Module:
            model = practice.small_model()
            model.load_state_dict(state)
            return model

        model = fresh()
        practice.mse(model, (x, y)).backward()
        local = _vector(model)
        clip_then_average(model, c)
        wrong = _vector(model)

        model = fresh()
        practice.mse(model, (x, y)).backward()
        average_then_clip(model, c)
        right = _vector(model)

        ddp_model = nn.parallel.DistributedDataParallel(fresh())
        after_backward, returned = ddp_backward_then_clip(ddp_model, (x, y), c)
        results.put(
            (
                "ok",
                rank,
                {
                    "local": local,
                    "wrong": wrong,
                    "right": right,
                    "ddp_after_backward": practice.flat(after_backward).numpy(),
                    "ddp_returned_norm": float(returned),
                    "ddp_after_clip": _vector(ddp_model.module),
                    "join_seconds": joined - start,
                    "work_seconds": time.perf_counter() - joined,
                },
            )
        )
    except BaseException:  # report anything, so the parent never waits in vain
        results.put(("error", rank, traceback.format_exc(limit=3).strip().splitlines()[-1]))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@dataclass(frozen=True)
class DDPResult:
    """What the two workers measured. Vectors are the flattened gradients, float64."""

    threshold: float
    local: tuple[np.ndarray, ...]  # each worker's own gradient (half a batch)
    local_norms: tuple[float, ...]
    wrong: np.ndarray  # clip each worker, then average (identical on both workers)
    right: np.ndarray  # average, then clip
    wrong_norm: float
    right_norm: float
    angle: float  # degrees between wrong and right
    ddp_after_backward: tuple[np.ndarray, ...]  # per worker: .grad right after DDP's backward
    ddp_returned_norms: tuple[float, ...]  # per worker: clip_grad_norm_'s return under DDP
    ddp_after_clip: tuple[np.ndarray, ...]
    mean_local_norm: float  # the norm of the average of the local gradients
    ddp_difference_from_mean: float  # largest |DDP's gradient after backward - local mean|
    join_seconds: float  # the slower worker's process-group set-up
    seconds: float  # the whole run: spawn, import torch, join, compute, tear down


def spawn_workers(payload: tuple) -> list[dict]:
    """Start the two workers with ``torch.multiprocessing`` (``spawn``) and collect
    their reports, rank by rank. Runs in the fresh process ``run_ddp`` starts.

    The workers are always ended: after ``timeout`` seconds, or as soon as one
    fails, the rest are terminated.
    """
    state, halves, c, timeout = payload
    results = mp.get_context("spawn").Queue()
    workers = mp.start_processes(
        _worker,
        args=(free_port(), state, halves, c, results),
        nprocs=WORLD_SIZE,
        join=False,
        daemon=True,
        start_method="spawn",
    )
    reports: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(reports) < WORLD_SIZE:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"the two workers did not finish within {timeout:.0f} s")
            try:
                message = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in workers.processes):
                    raise RuntimeError("a worker process died without reporting") from None
                continue
            if message[0] != "ok":
                raise RuntimeError(f"worker {message[1]} failed: {message[2]}")
            reports[message[1]] = message[2]
    finally:
        for process in workers.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        results.close()
    return [reports[rank] for rank in range(WORLD_SIZE)]


def run_ddp(c: float = practice.THRESHOLD, timeout: float = 120.0) -> DDPResult:
    """Run the two workers and collect what they measured.

    They are started from a fresh Python process (``practice.run_module``):
    ``spawn`` re-imports the parent's ``__main__`` in each child, and under
    Streamlit that is the page script. Raises ``RuntimeError`` with a one-line
    reason if a worker fails or the run takes longer than ``timeout`` seconds;
    every process is ended either way.
    """
    start = time.perf_counter()
    model = practice.small_model()
    x, y = practice.batch(0)
    # Worker 0 gets the 16 rows with the smaller targets, worker 1 the larger: shards
    # that differ, as when data is not shuffled across workers.
    order = torch.argsort(y[:, 0].abs())
    halves = [(x[rows].clone(), y[rows].clone()) for rows in order.chunk(WORLD_SIZE)]
    r = practice.run_module(
        "clipviz.lessons.practice_ddp",
        "spawn_workers",
        (model.state_dict(), halves, c, timeout),
        timeout + 30.0,  # the fresh process's own start, around the workers' deadline
    )
    wrong, right = r[0]["wrong"], r[0]["right"]
    mean = np.mean([w["local"] for w in r], axis=0)
    wrong_t, right_t = torch.from_numpy(wrong).double(), torch.from_numpy(right).double()
    return DDPResult(
        threshold=c,
        local=tuple(w["local"] for w in r),
        local_norms=tuple(float(np.linalg.norm(w["local"])) for w in r),
        wrong=wrong,
        right=right,
        wrong_norm=float(np.linalg.norm(wrong)),
        right_norm=float(np.linalg.norm(right)),
        angle=practice.angle_degrees(wrong_t, right_t),
        ddp_after_backward=tuple(w["ddp_after_backward"] for w in r),
        ddp_returned_norms=tuple(w["ddp_returned_norm"] for w in r),
        ddp_after_clip=tuple(w["ddp_after_clip"] for w in r),
        mean_local_norm=float(np.linalg.norm(mean)),
        ddp_difference_from_mean=max(
            float(np.max(np.abs(w["ddp_after_backward"] - mean))) for w in r
        ),
        join_seconds=max(w["join_seconds"] for w in r),
        seconds=time.perf_counter() - start,
    )
