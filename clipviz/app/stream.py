"""The Training Lab's live chart as a stream: the whole figure once, then only what is new.

The browser keeps the figure. ``next_update`` decides what it is sent at each
tick, from the run's records and a ``Cursor`` (what the browser holds):

* a **full** update when the browser holds nothing of this run (``revision``
  is the run's id: a new run, new settings, a reset) or asks to be sent
  everything again: the figure of every step so far, as ``build`` draws it;
* else a **delta**: the figure of the new steps only, ``build`` applied to
  that slice of the records, sent as points to append to each trace (matched
  by ``uid`` and kept in the full figure's order), plus the top-level layout
  entries that changed (an explosion's marker, the empty chart's note gone).

The format knows nothing about which traces the Lab draws: any trace the
builder adds is streamed the same way. Per trace, the per-point arrays
(``POINT_KEYS``: x, y, customdata... of a scatter; x, z, customdata of a
heatmap, whose rows are its layers) are appended; a 1-D array grows at its
end, a 2-D array (layers x steps) grows every row at its end. When a slice's
traces are not the ones the browser holds (a builder that adds a trace as the
run goes), the update falls back to a full one, so nothing is ever drawn wrong.

Numbers travel as little-endian float32 in base64 (the trainer records
float32, so nothing is lost; NaN stays NaN, a gap in a line); integer
sequences such as steps 321, 322, ... as ``{"range": [first, step, count]}``.
A delta carries at most ``max_bytes``: when more steps are waiting, it takes
the first ones and leaves the rest to the next tick.

Every payload carries ``seq`` (it grows by one per update: the browser
ignores a payload it has seen, as when Streamlit redraws the element) and
``from``/``to`` steps, so the browser can tell a missed update and ask for a
full one. ``every`` is merged into every payload (the pacing: playing or
not, the speed) and ``meta`` into full ones only (the colour key, the
plotly.js config).

Pure Python, no Streamlit (``tests/test_stream.py``); ``pages/lab.py`` keeps
the cursor in the session and hands the payload to the live-chart component.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from clipviz.figures.training import RunTrace

MAX_UPDATE_BYTES = 16_000  # a delta's size limit: well under a 20 KB websocket message
POINT_KEYS = {
    "scatter": ("x", "y", "customdata", "text", "hovertext"),
    "heatmap": ("x", "z", "customdata", "text"),
}
SHRINK_ATTEMPTS = 4  # a delta over max_bytes is rebuilt at most this often, smaller each time


@dataclass(frozen=True)
class Cursor:
    """What the browser holds of the chart (as far as the server knows)."""

    revision: str  # the run it holds
    steps: int  # it holds steps 1..steps
    uids: tuple[str, ...]  # its traces, in order
    layout: Mapping = field(default_factory=dict)  # the layout as sent (to send only changes)
    seq: int = 0  # the last update sent


@dataclass(frozen=True)
class Update:
    """One tick's payload for the browser, and the cursor after it."""

    payload: bytes  # UTF-8 JSON
    cursor: Cursor
    kind: str  # "full" or "delta"
    start: int  # the steps sent: start + 1 .. stop
    stop: int


def next_update(
    traces_from: Callable[[int], Sequence[RunTrace]],
    build: Callable[[list[RunTrace]], dict],
    *,
    revision: str,
    steps_done: int,
    finished: bool,
    cursor: Cursor | None,
    stride: int = 1,
    every: Mapping | None = None,
    meta: Mapping | None = None,
    max_bytes: int = MAX_UPDATE_BYTES,
) -> Update:
    """What the browser needs now, given what it holds (``cursor``, None for nothing).

    ``traces_from(n)`` gives the run's traces with the records after step
    ``n``; ``build`` draws a list of traces as ``{"data", "layout"}``;
    ``steps_done`` is how far the run has trained and ``finished`` whether
    it has ended. A delta sends whole blocks of ``stride`` steps only (the
    thinning's blocks, ``clipviz.figures.training``), except at the end of a
    run, so a long run thins the same slice by slice as it would whole.
    """
    every = dict(every or {})
    seq = (cursor.seq if cursor is not None else 0) + 1
    if cursor is None or cursor.revision != revision or cursor.steps > steps_done:
        return _full(traces_from, build, revision, steps_done, seq, every, meta)

    start = cursor.steps
    stop = steps_done if finished else start + (steps_done - start) // stride * stride
    traces = list(traces_from(start)) if stop > start else []
    for attempt in range(SHRINK_ATTEMPTS + 1):
        figure = build([window(t, stop) for t in traces]) if stop > start else None
        if figure is not None and _uids(figure) != cursor.uids:
            return _full(traces_from, build, revision, steps_done, seq, every, meta)
        body, layout = _delta(figure, cursor)
        payload = _encode(
            {"kind": "delta", "revision": revision, "seq": seq, "from": start, "to": stop}
            | every
            | body
        )
        if len(payload) <= max_bytes or stop - start <= stride or attempt == SHRINK_ATTEMPTS:
            break
        # Too big: keep the share of the steps that fits, in whole blocks, and
        # leave the rest for the next tick.
        fitting = int((stop - start) * 0.9 * max_bytes / len(payload)) // stride * stride
        stop = start + max(stride, fitting)
    new_cursor = dataclasses.replace(cursor, steps=max(start, stop), layout=layout, seq=seq)
    return Update(payload, new_cursor, "delta", start, max(start, stop))


def _full(traces_from, build, revision, steps_done, seq, every, meta) -> Update:
    figure = build(list(traces_from(0)))
    layout = figure["layout"]
    payload = _encode(
        {"kind": "full", "revision": revision, "seq": seq, "from": 0, "to": steps_done}
        | every
        | {"meta": dict(meta or {})}
        | {"data": [_encode_trace(trace) for trace in figure["data"]], "layout": figure["layout"]}
    )
    cursor = Cursor(revision, steps_done, _uids(figure), layout, seq)
    return Update(payload, cursor, "full", 0, steps_done)


def _delta(figure: dict | None, cursor: Cursor) -> tuple[dict, Mapping]:
    """The points to append per trace index, and the layout entries that changed."""
    if figure is None:
        return {}, cursor.layout
    appended = {}
    for index, trace in enumerate(figure["data"]):
        points = {
            key: _encode_array(trace[key])
            for key in POINT_KEYS.get(trace.get("type", "scatter"), ("x", "y"))
            if key in trace and _length(trace[key]) > 0
        }
        if points:
            appended[str(index)] = points
    layout = figure["layout"]  # plain values (no arrays): compared as they are
    changed = {key: value for key, value in layout.items() if value != cursor.layout.get(key)}
    removed = {key: None for key in cursor.layout if key not in layout}
    body = {"traces": appended}
    if changed or removed:
        body["layout"] = changed | removed
    return body, layout


def window(trace: RunTrace, stop: int) -> RunTrace:
    """``trace`` cut after step ``stop``: its records, epochs and explosion up to there."""
    steps = trace.records.get("step")
    records = trace.records
    if steps is not None and len(steps) and steps[-1] > stop:
        keep = int(np.searchsorted(steps, stop, side="right"))
        records = {key: values[:keep] for key, values in records.items()}
    epochs = trace.epochs
    if epochs and len(epochs.get("epoch", ())) and trace.batches_per_epoch:
        ended = np.asarray(epochs["epoch"]) * trace.batches_per_epoch <= stop
        if not ended.all():
            epochs = {key: np.asarray(values)[ended] for key, values in epochs.items()}
    exploded = trace.exploded_at if trace.exploded_at is None or trace.exploded_at <= stop else None
    return dataclasses.replace(trace, records=records, epochs=epochs, exploded_at=exploded)


# ---- encoding ---------------------------------------------------------------------------


def _uids(figure: dict) -> tuple[str, ...]:
    return tuple(
        str(trace.get("uid") or (trace.get("type"), trace.get("name"))) for trace in figure["data"]
    )


def _length(values) -> int:
    shape = np.shape(values)
    return shape[-1] if shape else 0


def _encode_trace(trace: dict) -> dict:
    keys = POINT_KEYS.get(trace.get("type", "scatter"), ("x", "y"))
    return {
        key: _encode_array(value) if key in keys or isinstance(value, np.ndarray) else value
        for key, value in trace.items()
    }


def _encode_array(values):
    """A numeric array as float32 base64 (or a range); other sequences as JSON lists."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        return array.tolist()
    if array.ndim == 1 and len(array) >= 2 and array.dtype.kind in "biu":
        step = int(array[1] - array[0])
        if np.array_equal(array, array[0] + step * np.arange(len(array))):
            return {"range": [int(array[0]), step, len(array)]}
    data = np.ascontiguousarray(array, dtype="<f4")
    return {"f32": base64.b64encode(data.tobytes()).decode("ascii"), "shape": list(array.shape)}


def decode_array(encoded) -> np.ndarray:
    """The inverse of the encoding (what the browser does), for tests and tools."""
    if isinstance(encoded, dict) and "range" in encoded:
        first, step, count = encoded["range"]
        return first + step * np.arange(count)
    if isinstance(encoded, dict) and "f32" in encoded:
        flat = np.frombuffer(base64.b64decode(encoded["f32"]), dtype="<f4")
        return flat.reshape(encoded["shape"]).astype(float)
    return np.asarray(encoded)


def _default(value):
    if isinstance(value, np.ndarray):
        return _encode_array(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot send {type(value).__name__}")


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=_default, allow_nan=False)


def _encode(payload: Mapping) -> bytes:
    return _json(payload).encode()
