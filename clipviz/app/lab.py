"""What the Training Lab page needs that is not widgets: its run, its URL, its words.

* ``SETTINGS`` is the sidebar, generated from ``TrainConfig``'s field table:
  one ``Setting`` per field with its label, hint, group, widget and when it is
  relevant; a new setting is one field in ``clipviz.engine.config``. The URL
  is read and written by the one codec, ``clipviz.engine.labstate.LabState``.
* ``LabRun`` is the run the page plays: one ``Trainer``, or two in lock-step
  when the twin is on (same seed: same initial weights, same batches).
* ``diagnose`` turns an explosion into what the page shows: the headline
  ``Exploded at step N``, the signs found and where, and one-click fixes.
* ``lr_options`` is the learning-rate slider's log grid, with the current
  value added when a link or a fix asks for one between grid points.
* ``LabRun.traces(start, stride)`` are what the live chart streams
  (``clipviz.app.stream``): the records after step ``start``. The chart
  itself is browser code (``pages/components/live_chart/``): ``st.plotly_chart``
  (Streamlit 1.67) derives a chart's identity from its data, so every redraw
  would mount a new chart, with a blank frame (a flicker) and a lost zoom.

No Streamlit here; ``pages/lab.py`` is the thin page on top.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from clipviz.app import urlkeys
from clipviz.app.urlkeys import plain_markdown
from clipviz.engine.config import (
    DEFAULT,
    FIELDS,
    GROUPS,
    PRESETS,
    ConfigProblem,
    TrainConfig,
    format_value,
)
from clipviz.engine.data import Dataset
from clipviz.engine.labstate import (
    CUSTOM,
    LabState,
)
from clipviz.engine.result import Explosion
from clipviz.engine.trainer import Trainer
from clipviz.figures.style import run_colour
from clipviz.figures.training import FAINT, RunTrace
from clipviz.lessons.diagnose import Finding, signs_of
from clipviz.lessons.fixes import VerifiedFix

PRESET_OPTIONS = (CUSTOM, *PRESETS)
RESET_NOTICE = "Settings changed, so the run started again from step 0."

# The learning-rate slider: 1, 2, 3 and 5 per decade, from 1e-4 to 10.
LR_MIN, LR_MAX = 1e-4, 10.0
LR_GRID = tuple(
    float(f"{m}e{e}") for e in range(-4, 1) for m in (1, 2, 3, 5) if float(f"{m}e{e}") <= LR_MAX
) + (LR_MAX,)


def lr_options(current: float | None = None) -> list[float]:
    """The slider's options: the log grid, plus ``current`` if it is off the grid."""
    options = set(LR_GRID)
    if current is not None and math.isfinite(current) and current > 0:
        options.add(float(current))
    return sorted(options)


def lr_label(value: float) -> str:
    """How a learning rate is shown (and written in the URL): ``format_value``."""
    return format_value(float(value))


# ---- the sidebar, generated from the field table -------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting's widget, read off its ``TrainConfig`` field metadata."""

    key: str
    label: str
    hint: str
    group: str  # a key of ``GROUPS``
    widget: str  # "select", "number", "lr_slider" or "toggle"
    options: tuple | None
    low: float | None  # the widget's bounds (a link may widen them to its value)
    high: float | None
    step: float | None
    format: str | None
    relevant: Callable[[TrainConfig], bool]
    default: object

    @classmethod
    def of_field(cls, f: dataclasses.Field) -> Setting:
        meta = f.metadata
        low = meta.get("ui_low")
        if low is None:
            low = meta.get("ge", meta.get("gt"))
        high = meta.get("ui_high")
        if high is None:
            high = meta.get("le", meta.get("lt"))
        return cls(
            key=f.name,
            label=meta["label"],
            hint=meta["hint"],
            group=meta["group"],
            widget=meta["widget"],
            options=meta.get("choices"),
            low=low,
            high=high,
            step=meta.get("step"),
            format=meta.get("format"),
            relevant=meta["relevant"],
            default=f.default,
        )

    def shown(self, state: LabState) -> bool:
        """Drawn for this state: it matters for the config, and no teacher hid it."""
        return self.relevant(state.config) and not state.hides(self.key)


SETTINGS: tuple[Setting, ...] = tuple(Setting.of_field(f) for f in dataclasses.fields(TrainConfig))


def settings_by_group(
    settings: Sequence[Setting] | None = None,
) -> dict[str, list[Setting]]:
    """The sidebar's sections, in ``GROUPS`` order, each with its settings in field order."""
    settings = SETTINGS if settings is None else settings
    groups: dict[str, list[Setting]] = {group: [] for group in GROUPS}
    for setting in settings:
        groups.setdefault(setting.group, []).append(setting)
    return groups


# ---- the URL ----------------------------------------------------------------------

SESSION_LINK = "lab_link"  # session key: the Lab's state as a query, for the other pages


def state_in_session(query: str | None) -> LabState | None:
    """The Lab state another page finds in the session (``SESSION_LINK``), if any."""
    if not query:
        return None
    state, problems = LabState.from_query(parse_qs(query, keep_blank_values=True))
    return None if problems else state


def problem_text(problem: ConfigProblem) -> str:
    """One line for the page: which link parameter was ignored, and why.

    Escaped Markdown (``urlkeys.plain_markdown``): the key and the value come
    from the link, so they must show as typed, never as a link or LaTeX.
    """
    return plain_markdown(urlkeys.problem_line(problem, _fallback(problem.key)))


def _fallback(key: str) -> str:
    if key in FIELDS:
        return f"the default ({format_value(getattr(DEFAULT, key))})"
    return "the defaults" if ", " in key else "the default"


def setting_problem_text(problem: ConfigProblem, config: TrainConfig) -> str:
    """One line for settings changed on the page that do not work: the value kept.

    Escaped Markdown: a typed value can hold any characters."""
    keys = [k for k in problem.key.split(", ") if k in FIELDS]
    kept = ", ".join(f"{k} {format_value(getattr(config, k))}" for k in keys)
    return plain_markdown(f"{problem}. Using {kept or 'the defaults'}.")


# ---- the run ---------------------------------------------------------------------


def clip_label(config: TrainConfig) -> str:
    """A short legend name that says how a run clips: 'clip norm 1', 'no clipping'."""
    return config.label().split(", ")[2]


class LabRun:
    """The run the Lab plays: a trainer, or two in lock-step for a twin comparison.

    The two trainers of a twin share the seed, so they start from the same
    weights and see the same batches. They are independent
    after that, so stepping each by ``n`` in turn is the same as alternating
    single steps, and much faster. A run is done when every trainer is done;
    an exploded trainer stops while its twin goes on.
    """

    def __init__(
        self, config: TrainConfig, twin: TrainConfig | None = None, dataset: Dataset | None = None
    ):
        """``dataset``: train on it instead of the data ``config`` names (an uploaded CSV,
        ``clipviz.engine.data.UploadedData.dataset(config.target_scaling)``); both
        runs of a twin train on it."""
        self.config = config
        self.twin_config = twin
        if twin is not None and (twin.seed, twin.batch_size) != (config.seed, config.batch_size):
            raise ValueError("a twin must share the seed and batch size to see the same batches")
        self.dataset = dataset
        self.id = uuid.uuid4().hex[:12]  # this run, for the live chart (its stream's revision)
        self.trainers = [Trainer(c, dataset=dataset) for c in (config, twin) if c is not None]

    def close(self) -> None:
        """Let go of the trainers (and their tensors) now, not at the next full GC.

        Old runs can stay reachable for a while from a page's previous script
        run (Streamlit keeps the last state, and a page's module globals are
        freed only by Python's cycle collector); a closed run costs nothing.
        """
        self.trainers = []

    @property
    def closed(self) -> bool:
        return not self.trainers

    @property
    def primary(self) -> Trainer:
        return self.trainers[0]

    @property
    def twin(self) -> Trainer | None:
        return self.trainers[1] if len(self.trainers) > 1 else None

    @property
    def done(self) -> bool:
        return all(t.done for t in self.trainers)  # a closed run is done

    def step(self, n: int = 1) -> int:
        return max(t.step(n) for t in self.trainers)

    @property
    def step_count(self) -> int:
        return max(t.step_count for t in self.trainers)

    @property
    def total_steps(self) -> int:
        return self.primary.total_steps

    @property
    def progress(self) -> float:
        return min(1.0, self.step_count / max(1, self.total_steps))

    def counter_text(self) -> str:
        """'Step 320 of 1,600 · epoch 10 of 100'."""
        trainer = (
            self.primary if self.twin is None else max(self.trainers, key=lambda t: t.step_count)
        )
        epoch = trainer.step_count / trainer.batches_per_epoch
        epochs = self.config.epochs
        shown = f"{epoch:.0f}" if epoch == int(epoch) else f"{epoch:.1f}"
        text = f"Step {self.step_count:,} of {self.total_steps:,} · epoch {shown} of {epochs:,}"
        skipped = int(self.primary.skipped_steps[0]) if not self.closed else 0
        if skipped:
            text += f" · {skipped:,} step{'s' if skipped != 1 else ''} skipped (not finite)"
        return text

    def labelled(self) -> list[tuple[str, Trainer]]:
        """(legend name, trainer) pairs; the twin's name says what differs."""
        if self.closed:
            return []
        if self.twin is None:
            return [(clip_label(self.config), self.primary)]
        return [
            (f"{clip_label(self.config)} (yours)", self.primary),
            (f"{clip_label(self.twin_config)} (twin)", self.twin),
        ]

    def colour_key(self) -> list[tuple[str, str, float]]:
        """(colour, legend name, opacity) of each run, for a key above the charts."""
        traces = self.traces()
        shared = len({t.clipped for t in traces}) < len(traces)
        return [
            (run_colour(t.clipped), t.label, FAINT if t.secondary and shared else 1.0)
            for t in traces
        ]

    def traces(self, start: int = 0, stride: int | None = None) -> list[RunTrace]:
        """Each run's trace, with the records after step ``start`` (streamed with a ``stride``)."""
        name = loss_name(self.config)
        return [
            dataclasses.replace(
                RunTrace.from_result(
                    trainer.result(), label, secondary=i > 0, start=start, stride=stride
                ),
                loss_name=name,
            )
            for i, (label, trainer) in enumerate(self.labelled())
        ]


def loss_name(config: TrainConfig) -> str:
    """The loss and its units, as the charts' axis says it: 'MSE, target units²'."""
    if config.is_recurrent and config.task == "digits":
        return "cross-entropy, nats"
    if config.target_scaling == "none":
        return "MSE, target units²"
    return f"MSE, {config.target_scaling}d units"


# ---- explosions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    """What the page says about a run so far: the explosion, if any, and the signs."""

    headline: str | None  # "Exploded at step N: ..." once the run exploded
    where: str | None  # which quantity and layer went non-finite, and the norm just before
    findings: list[Finding]

    @property
    def exploded(self) -> bool:
        return self.headline is not None

    @property
    def troubled(self) -> bool:
        """Exploded or showing a sign: then fixes are worth trying."""
        return self.exploded or bool(self.findings)


def headline(explosion: Explosion) -> str:
    return f"Exploded at step {explosion.step}: {explosion.describe()}."


def where_text(explosion: Explosion) -> str:
    """Which quantity went non-finite first, in which layer, and the norm just before."""
    what = {
        "loss": "The loss was the first number to overflow",
        "gradient": "The gradient was the first to overflow",
        "weights": "The weights were the first to overflow",
    }[explosion.quantity]
    if explosion.layer:
        what += f", in the layer **{explosion.layer}**"
    what += "."
    if explosion.grad_norm_before is not None:
        what += (
            f" One step earlier the gradient norm was already **{explosion.grad_norm_before:.4g}**."
        )
    return what


def diagnose(trainer: Trainer) -> Diagnosis:
    """The signs a run shows so far (live, at every tick), and its explosion if any."""
    explosion = trainer.explosion
    findings = signs_of(trainer)
    if explosion is None:
        return Diagnosis(None, None, findings)
    return Diagnosis(headline(explosion), where_text(explosion), findings)


def finding_text(finding: Finding) -> str:
    return f"**{finding.sign.title}** (step {finding.step}): {finding.detail}."


def fix_caption(verified: VerifiedFix) -> str:
    """Under a fix's button: what it did when it was tried."""
    return f"Tried: {verified.outcome}."


NO_FIX_WORKS = (
    "None of the usual fixes works on its own here: each was tried from the same start on "
    "the same batches, and this is what it did."
)
