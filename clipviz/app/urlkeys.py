"""Every URL query key of every page, declared once, parsed by one function.

The Training Lab's keys are ``TrainConfig``'s fields (``clipviz.engine.config``)
plus ``preset``, ``twin`` and ``twin_clip_mode`` (``clipviz.app.lab``). The other
pages bind a few widgets of their own to the URL (``rec_*`` on /recurrent,
``cliff_*`` on /cliff); they are declared here, with their types and bounds,
in the same metadata form as ``TrainConfig``'s fields, and parsed by the same
``config.parse_value``. The pages take their widget bounds from these
declarations, so a link can never ask a widget for a value it would refuse.

``check_query`` validates one page's query parameters and never raises: it
returns the good values, written the way the widgets read them, and one
``ConfigProblem`` per bad one. ``plain_markdown`` makes any text safe to show
in Streamlit's Markdown (escaped, one line, truncated), so a value echoed
from a link can never render as a link, bold text, LaTeX or HTML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clipviz.engine.config import FIELDS, PRESETS, ConfigProblem, echo, format_value, parse_value
from clipviz.lessons import cliff
from clipviz.lessons.recurrent import MAX_PAGE_STEPS

# Keys Streamlit itself reads from a URL: never ours to judge.
STREAMLIT_KEYS = frozenset({"embed", "embed_options"})


@dataclass(frozen=True)
class UrlKey:
    """One page's URL key: its type, default, bounds or options, and what it sets."""

    kind: type  # int, float or str
    default: Any
    help: str
    low: float | None = None  # inclusive bounds
    high: float | None = None
    options: tuple | None = None  # the only values allowed (numbers or labels)

    @property
    def meta(self) -> dict[str, Any]:
        """The key in ``TrainConfig``'s field-metadata form (for ``parse_value``)."""
        meta: dict[str, Any] = {"kind": self.kind, "help": self.help, "choices": None}
        if self.kind is str and self.options is not None:
            meta["choices"] = tuple(self.options)
        if self.low is not None:
            meta["ge"] = self.low
        if self.high is not None:
            meta["le"] = self.high
        return meta

    def parse(self, raw: Any) -> str:
        """The value as the widget reads it from the URL; ValueError in one line."""
        value = parse_value(self.meta, raw)
        if self.kind is not str and self.options is not None:
            if value not in self.options:
                shown = ", ".join(format_value(o) for o in self.options)
                raise ValueError(f"{echo(raw)} is not one of the choices ({shown})")
            value = self.options[self.options.index(value)]
        if self.kind is int:
            return str(int(value))
        return value if self.kind is str else format_value(float(value))


# ---- /recurrent ---------------------------------------------------------------------

RECURRENT_LR_OPTIONS = (
    0.001,
    0.003,
    0.01,
    0.03,
    0.05,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.7,
    1.0,
    1.5,
    2.0,
)
RECURRENT_HIDDEN_OPTIONS = (4, 8, 16, 32, 64)
# A bound radio writes its label into the URL, so these are the labels.
RECURRENT_CLIP_LABELS = {
    "none": "no clipping",
    "norm": "global norm",
    "layerwise_value": "per-layer ranges",
}

# Each rec_* widget sets one TrainConfig field (its label is the field table's); the page
# opens on the rnn_explodes preset. The per-layer ranges are not part of that preset:
# they open at Graves's (2013) 10 and 100.
RECURRENT_FIELDS = {
    "rec_seq_len": "seq_len",
    "rec_hidden": "hidden_size",
    "rec_radius": "recurrent_scale",
    "rec_tbptt": "tbptt",
    "rec_lr": "lr",
    "rec_momentum": "momentum",
    "rec_clip_mode": "clip_mode",
    "rec_clip_norm": "clip_norm",
    "rec_clip_value": "clip_value",
    "rec_clip_value_output": "clip_value_output",
    "rec_seed": "seed",
}
RECURRENT_OPENING = PRESETS["rnn_explodes"].config.replace(clip_value=10.0, clip_value_output=100.0)
RECURRENT_DEFAULTS: dict[str, Any] = {
    key: getattr(RECURRENT_OPENING, name) for key, name in RECURRENT_FIELDS.items()
} | {"rec_steps": RECURRENT_OPENING.total_steps_estimate()}


def _rec(key: str, kind: type, **bounds: Any) -> UrlKey:
    name = RECURRENT_FIELDS.get(key)
    label = FIELDS[name].metadata["label"].lower() if name else "training steps"
    default = RECURRENT_DEFAULTS[key]
    if key == "rec_clip_mode":
        default = RECURRENT_CLIP_LABELS[default]
    return UrlKey(kind, default, label, **bounds)


RECURRENT: dict[str, UrlKey] = {
    "rec_seq_len": _rec("rec_seq_len", int, low=10, high=300),
    "rec_hidden": _rec("rec_hidden", int, options=RECURRENT_HIDDEN_OPTIONS),
    "rec_radius": _rec("rec_radius", float, low=0.5, high=2.5),
    "rec_tbptt": _rec("rec_tbptt", int, low=0, high=499),
    "rec_lr": _rec("rec_lr", float, options=RECURRENT_LR_OPTIONS),
    "rec_momentum": _rec("rec_momentum", float, low=0.0, high=0.95),
    "rec_clip_mode": _rec("rec_clip_mode", str, options=tuple(RECURRENT_CLIP_LABELS.values())),
    "rec_clip_norm": _rec("rec_clip_norm", float, low=0.0, high=1e6),
    "rec_clip_value": _rec("rec_clip_value", float, low=0.0, high=1e6),
    "rec_clip_value_output": _rec("rec_clip_value_output", float, low=0.0, high=1e6),
    "rec_steps": _rec("rec_steps", int, low=10, high=MAX_PAGE_STEPS),
    "rec_seed": _rec("rec_seed", int, low=0, high=9999),
}

# ---- /cliff -----------------------------------------------------------------------------

CLIFF_LR_OPTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
W0, B0 = cliff.DEFAULT_START

CLIFF: dict[str, UrlKey] = {
    "cliff_w0": UrlKey(float, W0, "start w", low=cliff.W_RANGE[0], high=cliff.W_RANGE[1]),
    "cliff_b0": UrlKey(float, B0, "start b", low=cliff.B_RANGE[0], high=cliff.B_RANGE[1]),
    "cliff_T": UrlKey(int, cliff.DEFAULT_T, "time steps T", low=5, high=100),
    "cliff_lr": UrlKey(float, cliff.DEFAULT_LR, "learning rate", options=CLIFF_LR_OPTIONS),
    "cliff_threshold": UrlKey(
        float, cliff.DEFAULT_THRESHOLD, "clipping threshold c", low=0.0, high=1000.0
    ),
    "cliff_steps": UrlKey(int, cliff.DEFAULT_STEPS, "descent steps", low=1, high=300),
}

# Pages whose URL carries no keys of their own (anything there is reported).
NO_KEYS: dict[str, UrlKey] = {}


def check_query(
    keys: Mapping[str, UrlKey], params: Mapping[str, Any], *, also_allowed: frozenset = frozenset()
) -> tuple[dict[str, str], list[ConfigProblem]]:
    """(good values by key, problems) for one page's query parameters; never raises.

    A repeated key counts by its last value (as Streamlit reads it). Keys in
    ``also_allowed`` (another validator's, such as the Lab keys the stability
    map reads) and Streamlit's own are passed over; any other unknown key is
    a problem.
    """
    good: dict[str, str] = {}
    problems: list[ConfigProblem] = []
    for key, raw in params.items():
        if isinstance(raw, list | tuple):
            raw = raw[-1] if raw else ""
        key = str(key)
        if key in STREAMLIT_KEYS or key in also_allowed:
            continue
        if key not in keys:
            problems.append(ConfigProblem(echo(key)[1:-1], "is not a setting of this page"))
            continue
        try:
            good[key] = keys[key].parse(raw)
        except ValueError as error:
            problems.append(ConfigProblem(key, str(error)))
    return good, problems


def problem_line(problem: ConfigProblem, fallback: str = "the default") -> str:
    """One line for a page: which link parameter was ignored, and why (plain text)."""
    return f"Ignored {problem.key} from the link: {problem.message}. Using {fallback} instead."


# ---- echoing user text safely -------------------------------------------------------------

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:&=\"'^%@])")
MAX_SHOWN = 300


def plain_markdown(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` escaped for Streamlit's Markdown: one line, at most ``limit`` characters.

    Every ASCII punctuation character Markdown, Streamlit's extensions
    (``:red[...]``, ``:material/...:``, ``$...$`` LaTeX) or HTML could read
    as syntax is backslash-escaped, which CommonMark defines to show the
    character itself; ``:`` gets a zero-width joiner after it as well, since
    Streamlit's shortcode and colour directives read escaped colons too.
    """
    one_line = " ".join(str(text).split())
    if len(one_line) > limit:
        one_line = one_line[: limit - 1] + "…"
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", one_line)
    return escaped.replace(r"\:", "\\:\u200b")
