"""The per-step records as CSV: one format for every run that leaves the app.

The Training Lab's export, ``python -m clipviz train --records FILE.csv``
and ``GradientLog`` (the logger for your own training loop) all write this
format, and ``python -m clipviz diagnose`` and the ``/your_run`` page read
it back. One row per optimizer step. The first columns are the core every
writer fills (``docs/CONTRACT.md``: ``step, loss, grad_norm_before, grad_norm_after,
clip_threshold, clipped, skipped``); the others are filled where the writer
knows them and left empty otherwise:

* ``epoch`` (fractional), then every other per-step statistic of the trainer
  (``clipviz.engine.trainer.STEP_FIELDS``) under its own name;
* ``grad_norm[<layer>]``: the gradient norm of each layer (or parameter
  group) before clipping;
* ``epoch_train_loss`` / ``epoch_test_loss``: the whole-set losses, on the
  last step of each epoch.

With several runs in one file (a twin), a first column ``run`` names each row's run.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

CORE_COLUMNS = (
    "step",
    "loss",
    "grad_norm_before",
    "grad_norm_after",
    "clip_threshold",
    "clipped",
    "skipped",
)
# The trainer's record names that the CSV spells differently.
CSV_NAME = {"grad_norm": "grad_norm_before"}
RECORD_NAME = {v: k for k, v in CSV_NAME.items()}
EPOCH_COLUMNS = ("epoch_train_loss", "epoch_test_loss")


def layer_column(layer: str) -> str:
    return f"grad_norm[{layer}]"


def format_number(value: float) -> str:
    """Nine significant digits; nan and inf spelled as Python reads them back."""
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.9g}"


def header(step_fields: Sequence[str], layer_names: Sequence[str], *, several: bool) -> list[str]:
    """The columns for records with ``step_fields`` and ``layer_names``: core first."""
    names = [CSV_NAME.get(f, f) for f in step_fields]
    rest = ["epoch"] + [n for n in names if n not in CORE_COLUMNS]
    columns = ["run"] if several else []
    return (
        columns
        + list(CORE_COLUMNS)
        + rest
        + [layer_column(n) for n in layer_names]
        + list(EPOCH_COLUMNS)
    )


def rows(
    records: Mapping[str, np.ndarray],
    columns: Sequence[str],
    *,
    layer_names: Sequence[str] = (),
    epoch_losses: Mapping[int, tuple[float, float]] | None = None,
    run: str | None = None,
) -> Iterable[list[str]]:
    """CSV rows of one run's per-step ``records`` (``Trainer.records()`` names).

    ``epoch_losses`` maps the step that ends an epoch to its (train, test) loss.
    A column the records lack is left empty.
    """
    layers = records.get("layer_grad_norm")
    layer_index = {layer_column(n): i for i, n in enumerate(layer_names)}
    epoch_losses = epoch_losses or {}
    for i, step in enumerate(records["step"]):
        row = []
        for column in columns:
            if column == "run":
                row.append(run or "")
            elif column == "step":
                row.append(str(int(step)))
            elif column == "epoch" and "epoch" in records:
                row.append(f"{records['epoch'][i]:.6g}")
            elif column in layer_index and layers is not None:
                row.append(format_number(layers[i, layer_index[column]]))
            elif column in EPOCH_COLUMNS:
                losses = epoch_losses.get(int(step))
                row.append(format_number(losses[EPOCH_COLUMNS.index(column)]) if losses else "")
            else:
                name = RECORD_NAME.get(column, column)
                row.append(format_number(records[name][i]) if name in records else "")
        yield row


def to_csv(header_row: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header_row)
    writer.writerows(body)
    return out.getvalue()
