"""What the Training Lab page needs that is not widgets: its run, its URL, its words.

* ``parse_query`` validates the URL's query parameters once, when the page
  opens: it returns the configuration to start from, every problem in one
  line each (so the page can say what it ignored), and the parameters worth
  keeping in the URL, written the way the widgets write them.
* ``LabRun`` is the run the page plays: one ``Trainer``, or two in lock-step
  when the twin is on (same initial weights, same batches; ``TwinRun``).
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
from collections.abc import Mapping
from dataclasses import dataclass, field

from clipviz.app import urlkeys
from clipviz.app.urlkeys import plain_markdown
from clipviz.engine.config import (
    CLIP_MODES,
    DEFAULT,
    FIELDS,
    PRESETS,
    ConfigProblem,
    TrainConfig,
    echo,
    format_value,
    parse_value,
)
from clipviz.engine.trainer import Explosion, Trainer, TwinRun
from clipviz.figures.style import run_colour
from clipviz.figures.training import FAINT, RunTrace
from clipviz.lessons.diagnose import Finding, Fix, signs_of, suggest_fixes

CUSTOM = "custom"  # the preset picker's entry for "my own settings"
PRESET_OPTIONS = (CUSTOM, *PRESETS)
TWIN_KEY = "twin"
TWIN_MODE_KEY = "twin_clip_mode"
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


# ---- the URL -------------------------------------------------------------------


@dataclass(frozen=True)
class QueryState:
    """What the page starts from, read from the URL's query parameters."""

    config: TrainConfig
    preset: str  # a preset name or CUSTOM
    twin: bool
    twin_clip_mode: str | None  # None: the default comparison for this config
    problems: list[ConfigProblem] = field(default_factory=list)
    canonical: dict[str, str] = field(default_factory=dict)  # the params to keep in the URL


def _last(value):
    if isinstance(value, list | tuple):
        return value[-1] if value else ""
    return value


def parse_query(params: Mapping[str, object]) -> QueryState:
    """Validate the Lab's query parameters; never raises.

    ``preset`` is applied first and explicit settings override it (as in
    ``TrainConfig.from_params``). Every bad value becomes a problem and falls
    back to the default. ``canonical`` is the URL to show instead: every
    setting that differs from the defaults, in the form the widgets write
    (``lr=1e-1`` becomes ``lr=0.1``), plus the preset's name while the
    settings are exactly the preset's.
    """
    raw = {str(k).replace("-", "_"): _last(v) for k, v in params.items()}
    problems: list[ConfigProblem] = []

    twin = False
    if TWIN_KEY in raw:
        text = str(raw.pop(TWIN_KEY)).strip().lower()
        if text in ("true", "1", "yes", "on"):
            twin = True
        elif text not in ("false", "0", "no", "off", ""):
            problems.append(ConfigProblem(TWIN_KEY, f"expected true or false, got {echo(text)}"))
    twin_mode = None
    if TWIN_MODE_KEY in raw:
        text = str(raw.pop(TWIN_MODE_KEY)).strip().lower()
        if text in CLIP_MODES:
            twin_mode = text
        else:
            problems.append(
                ConfigProblem(
                    TWIN_MODE_KEY,
                    f"unknown value {echo(text)}; choose one of {', '.join(CLIP_MODES)}",
                )
            )

    preset = str(raw.get("preset", "")).strip()
    if preset.lower() in ("", CUSTOM):
        raw.pop("preset", None)
    config, found = TrainConfig.from_params(raw)
    problems += found
    bad = {p.key for p in found}
    for key, value in raw.items():
        if key in bad or key not in FIELDS:
            continue
        try:
            wanted = parse_value(FIELDS[key], value)
        except ValueError:  # pragma: no cover - from_params reported it already
            continue
        if getattr(config, key) != wanted:  # a cross-field check fell back to the defaults
            problems.append(ConfigProblem(key, "ignored: it does not fit the other settings"))
    # Every setting that differs from the defaults is written out, so the link
    # still holds when the preset picker later turns to "custom"; the preset is
    # kept only while the settings are exactly the preset's.
    canonical = config.to_params(skip_defaults=True)
    if preset in PRESETS and PRESETS[preset].config == config:
        canonical = {"preset": preset, **canonical}
    else:
        preset = CUSTOM
    if twin:
        canonical[TWIN_KEY] = "true"
    if twin_mode is not None and twin_mode != config.clip_mode:
        canonical[TWIN_MODE_KEY] = twin_mode
    elif twin_mode is not None:
        twin_mode = None
    return QueryState(config, preset, twin, twin_mode, problems, canonical)


def problem_text(problem: ConfigProblem) -> str:
    """One line for the page: which link parameter was ignored, and why.

    Escaped Markdown (``urlkeys.plain_markdown``): the key and the value come
    from the link, so they must show as typed, never as a link or LaTeX.
    """
    return plain_markdown(urlkeys.problem_line(problem, _fallback(problem.key)))


def _fallback(key: str) -> str:
    if key in FIELDS:
        return f"the default ({format_value(getattr(DEFAULT, key))})"
    return "the default"


# ---- the run ---------------------------------------------------------------------


def default_twin_mode(config: TrainConfig) -> str:
    """The comparison a twin makes by default: unclipped if you clip, else clip by norm."""
    return "none" if config.clipped else "norm"


def twin_config(config: TrainConfig, mode: str | None = None) -> TrainConfig:
    return config.replace(clip_mode=mode or default_twin_mode(config))


def clip_label(config: TrainConfig) -> str:
    """A short legend name that says how a run clips: 'clip norm 1', 'no clipping'."""
    return config.label().split(", ")[2]


class LabRun:
    """The run the Lab plays: a trainer, or two in lock-step for a twin comparison.

    The two trainers of a twin share the seed, so they start from the same
    weights and see the same batches (``TwinRun``). They are independent
    after that, so stepping each by ``n`` in turn is the same as alternating
    single steps, and much faster. A run is done when every trainer is done;
    an exploded trainer stops while its twin goes on.
    """

    def __init__(self, config: TrainConfig, twin: TrainConfig | None = None):
        self.config = config
        self.twin_config = twin
        self.id = uuid.uuid4().hex[:12]  # this run, for the live chart (its stream's revision)
        if twin is None:
            self.trainers = [Trainer(config)]
        else:
            pair = TwinRun(config, twin)
            self.trainers = [pair.primary, pair.twin]

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
        return f"Step {self.step_count:,} of {self.total_steps:,} · epoch {shown} of {epochs:,}"

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
                RunTrace.from_trainer(trainer, label, secondary=i > 0, start=start, stride=stride),
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
    """What the page shows when a run explodes."""

    headline: str  # starts with "Exploded at step N"
    where: str  # which quantity and layer went non-finite, and the norm just before
    findings: list[Finding]
    fixes: list[Fix]


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


def diagnose(trainer: Trainer) -> Diagnosis | None:
    """The diagnosis of an exploded trainer (None if it has not exploded)."""
    explosion = trainer.explosion
    if explosion is None:
        return None
    findings = signs_of(trainer)
    fixes = suggest_fixes(trainer.config, findings, exploded=True)
    return Diagnosis(headline(explosion), where_text(explosion), findings, fixes)


def finding_text(finding: Finding) -> str:
    return f"**{finding.sign.title}** (step {finding.step}): {finding.detail}."
