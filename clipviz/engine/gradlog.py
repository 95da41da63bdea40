"""``GradientLog``: log the gradient norms of your own PyTorch training loop.

Plain PyTorch; no Streamlit, nothing from the rest of the app. It writes one
row per optimizer step in the CSV format the Training Lab exports
(``clipviz.engine.records``), which ``python -m clipviz diagnose`` and the
``/your_run`` page read back::

    from clipviz import GradientLog

    log = GradientLog(model, path="run.csv")
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        log.step(loss, optimizer)  # after backward(), before any clipping
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # optional
        optimizer.step()
    log.close()  # or use it as a context manager: with GradientLog(...) as log:

With AMP, call ``log.step`` after ``scaler.unscale_(optimizer)`` (before it
the gradients are multiplied by the loss scale), and step with
``scaler.step(optimizer)`` as usual.

What is measured, and when (the honest part):

* ``log.step(loss, optimizer)`` reads the gradients as they are then: the
  total norm ``grad_norm_before`` (the same number as
  ``torch.nn.utils.get_total_norm`` of the gradients), one norm per group of
  parameters (``grad_norm[<group>]``, a group being the module that holds the
  parameter, e.g. ``encoder.layer1``), the largest component, and the loss.
* The first call registers two hooks on the optimizer
  (``register_step_pre_hook`` / ``register_step_post_hook``). Just before the
  optimizer steps, the pre-hook reads the gradients again: whatever you did
  in between (``clip_grad_norm_``, ``clip_grad_value_``, anything) shows as
  ``grad_norm_after``; ``clipped`` is 1 when that norm differs from the one
  before (a clip that changes nothing is not counted), ``clip_scale`` is their
  ratio. It also copies the weights, and the post-hook measures how far the
  step moved them (``update_norm``, ``update_ratio`` = update / weight norm)
  and the weight norm after the step.
* A step the optimizer never took is ``skipped``: AMP's ``GradScaler`` skips
  ``optimizer.step()`` when the gradients hold inf or NaN, so its hooks do not
  fire. A row is complete when the optimizer has stepped; a row whose step
  never came is written, as skipped (update 0), at the next ``log.step`` or at
  ``close``.
* ``clip_threshold`` is written when you tell the log (``clip_threshold=``);
  a log cannot see the number you passed to ``clip_grad_norm_``.

Calling ``log.step`` only every k steps logs only those steps. The
hook-only form, ``GradientLog(model, path, optimizer=optimizer)`` without any
``log.step`` call, logs every optimizer step from the hooks alone: the
gradient as the optimizer sees it (after any clipping, so ``clipped`` is
left empty), the weights and the update, but not the loss.

Costs: a few norms per step, and one copy of the weights (for the update);
pass ``updates=False`` to skip the copy (no update columns then).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable
from typing import IO, Any

import numpy as np
import torch

from clipviz.engine import records

# The per-step columns GradientLog fills (records' names; grad_norm is written
# grad_norm_before). clip_threshold and skipped are core columns of every writer.
FIELDS = (
    "loss",
    "grad_norm",
    "grad_norm_after",
    "clip_scale",
    "clipped",
    "weight_norm",
    "update_norm",
    "update_ratio",
    "max_abs_grad",
    "above_one_fraction",
)


def module_group(name: str) -> str:
    """The default group of a parameter: its module's name ('encoder.layer1.weight' -> 'encoder.layer1')."""
    return name.rsplit(".", 1)[0] if "." in name else name


def _norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.linalg.vector_norm(t) for t in tensors]


def _total(norms: list[torch.Tensor]) -> float:
    """The norm of the per-tensor norms, as torch.nn.utils.get_total_norm forms it."""
    if not norms:
        return 0.0
    if len({n.dtype for n in norms}) > 1:  # mixed precisions: add up in float64
        norms = [n.double() for n in norms]
    return float(torch.linalg.vector_norm(torch.stack(norms)))


class GradientLog:
    """Per-step gradient statistics of a PyTorch training loop, written as CSV (module docstring)."""

    def __init__(
        self,
        model: torch.nn.Module,
        path: str | os.PathLike | None = None,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        clip_threshold: float | None = None,
        group: Callable[[str], str] = module_group,
        updates: bool = True,
    ):
        self.path = path
        self.clip_threshold = clip_threshold
        self.updates = updates
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.parameters = [p for _, p in named]
        self.groups = tuple(dict.fromkeys(group(n) for n in self.names))
        self._group_of = [self.groups.index(group(n)) for n in self.names]
        self.columns = records.header(FIELDS, self.groups, several=False)
        self.rows: list[dict[str, Any]] = []  # every finished row, also kept in memory
        self._pending: dict[str, Any] | None = None
        self._explicit = False  # log.step has been called: the hooks only complete rows
        self._hooked: list[int] = []  # ids of the optimizers whose hooks are registered
        self._handles: list[Any] = []
        self._weights_before: list[torch.Tensor] | None = None
        self._file: IO[str] | None = None
        self._writer: Any = None
        self._closed = False
        if optimizer is not None:
            self._hook(optimizer)

    # ---- the loop's calls ------------------------------------------------------
    def step(self, loss: torch.Tensor | float | None, optimizer: torch.optim.Optimizer) -> float:
        """Log this step's gradients and loss; call after ``backward()``, before clipping.

        Returns the total gradient norm (before clipping), like ``clip_grad_norm_``.
        """
        self._check_open()
        self._explicit = True
        self._hook(optimizer)
        if self._pending is not None:  # the optimizer did not step since the last call
            self._finish(skipped=True)
        grads = self._grads()
        per_tensor = _norms([g for _, g in grads])
        total = _total(per_tensor)
        row = self._new_row()
        row["loss"] = None if loss is None else float(torch.as_tensor(loss).detach().float())
        row["grad_norm"] = total
        row["layers"] = self._group_norms(grads, per_tensor)
        row["max_abs_grad"] = max(
            (float(torch.linalg.vector_norm(g, ord=math.inf)) for _, g in grads), default=0.0
        )
        self._pending = row
        return total

    def close(self) -> None:
        """Write the last row and close the file; remove the hooks."""
        if self._closed:
            return
        if self._pending is not None:
            self._finish(skipped=not self._pending.get("stepped", False))
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._file is not None:
            self._file.close()
        self._closed = True

    def __enter__(self) -> GradientLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- results ----------------------------------------------------------------
    def records(self) -> dict[str, np.ndarray]:
        """The finished rows as arrays in ``Trainer.records()`` names (NaN where unknown)."""
        out: dict[str, np.ndarray] = {"step": np.array([r["step"] for r in self.rows], dtype=int)}
        for name in (*FIELDS, "clip_threshold", "skipped"):
            out[name] = np.array([_number(r.get(name)) for r in self.rows], dtype=float)
        out["layer_grad_norm"] = np.array([r["layers"] for r in self.rows], dtype=float).reshape(
            len(self.rows), len(self.groups)
        )
        return out

    def csv_text(self) -> str:
        """Every finished row as CSV text (the same as the file)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self._cells(r) for r in self.rows)
        return out.getvalue()

    # ---- hooks ---------------------------------------------------------------------
    def _hook(self, optimizer: torch.optim.Optimizer) -> None:
        if id(optimizer) in self._hooked:
            return
        self._hooked.append(id(optimizer))
        self._handles.append(optimizer.register_step_pre_hook(self._before_optimizer_step))
        self._handles.append(optimizer.register_step_post_hook(self._after_optimizer_step))

    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        if self._closed:
            return
        row = self._pending
        if row is None:
            if self._explicit:  # logging every k steps: this step is not logged
                return
            row = self._pending = self._new_row()  # the hook-only form
        grads = self._grads()
        per_tensor = _norms([g for _, g in grads])
        after = _total(per_tensor)
        if "grad_norm" not in row:  # hook-only: the gradient the optimizer sees
            row["grad_norm"] = after
            row["layers"] = self._group_norms(grads, per_tensor)
            row["max_abs_grad"] = max(
                (float(torch.linalg.vector_norm(g, ord=math.inf)) for _, g in grads), default=0.0
            )
        else:
            before = row["grad_norm"]
            row["clipped"] = float(not _same(after, before))
            row["clip_scale"] = after / before if before > 0 else 1.0
        row["grad_norm_after"] = after
        numel = sum(g.numel() for _, g in grads)
        # NaN counts as above 1, as in the Trainer's records.
        above = sum(int((~(g.abs() <= 1)).sum()) for _, g in grads)
        row["above_one_fraction"] = above / numel if numel else 0.0
        if self.updates:
            if self._weights_before is None:
                self._weights_before = [p.detach().clone() for p in self.parameters]
            else:
                for copy, p in zip(self._weights_before, self.parameters, strict=True):
                    copy.copy_(p.detach())
        row["stepped"] = False

    def _after_optimizer_step(self, optimizer, args, kwargs) -> None:
        row = self._pending
        if self._closed or row is None or "stepped" not in row:
            return
        row["stepped"] = True
        if self.updates and self._weights_before is not None:
            moved = [
                p.detach() - w for p, w in zip(self.parameters, self._weights_before, strict=True)
            ]
            row["update_norm"] = _total(_norms(moved))
        self._finish(skipped=False)

    # ---- rows ----------------------------------------------------------------------
    def _new_row(self) -> dict[str, Any]:
        return {"step": len(self.rows) + 1, "clip_threshold": self.clip_threshold}

    def _grads(self) -> list[tuple[int, torch.Tensor]]:
        return [(i, p.grad.detach()) for i, p in enumerate(self.parameters) if p.grad is not None]

    def _group_norms(self, grads, per_tensor) -> list[float]:
        squares = [0.0] * len(self.groups)
        seen = [False] * len(self.groups)
        for (i, _), norm in zip(grads, per_tensor, strict=True):
            g = self._group_of[i]
            squares[g] += float(norm.double()) ** 2
            seen[g] = True
        return [math.sqrt(s) if ok else math.nan for s, ok in zip(squares, seen, strict=True)]

    def _finish(self, *, skipped: bool) -> None:
        row = self._pending
        self._pending = None
        row.pop("stepped", None)
        row["skipped"] = float(skipped)
        if skipped:
            row["update_norm"] = 0.0 if self.updates else None
        weights = _total(_norms([p.detach() for p in self.parameters]))
        row["weight_norm"] = weights
        if row.get("update_norm") is not None and weights > 0:
            row["update_ratio"] = row["update_norm"] / weights
        self.rows.append(row)
        self._write(row)

    def _cells(self, row: dict[str, Any]) -> list[str]:
        layer_index = {records.layer_column(g): i for i, g in enumerate(self.groups)}
        cells = []
        for column in self.columns:
            if column == "step":
                cells.append(str(row["step"]))
            elif column in layer_index:
                value = row.get("layers", [math.nan] * len(self.groups))[layer_index[column]]
                cells.append("" if math.isnan(value) else records.format_number(value))
            else:
                value = row.get(records.RECORD_NAME.get(column, column))
                cells.append("" if value is None else records.format_number(value))
        return cells

    def _write(self, row: dict[str, Any]) -> None:
        if self.path is None:
            return
        if self._file is None:
            self._file = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115
            self._writer = csv.writer(self._file, lineterminator="\n")
            self._writer.writerow(self.columns)
        self._writer.writerow(self._cells(row))
        self._file.flush()  # a crashed run keeps its log up to the last step

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this GradientLog is closed")


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)
