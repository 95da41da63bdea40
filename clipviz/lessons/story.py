"""The tutorial retold as a story: each chapter's computation, and the home checklist.

The ``/tutorial`` page retells J. Brownlee's "How to Avoid Exploding Gradients
With Gradient Clipping" (Machine Learning Mastery, 2019) in six chapters:
the data, the unscaled MLP that explodes, a standardized target, clipping by
norm at 1.0, clipping by value at 5.0, and the tutorial's suggested
extensions over several seeds. Every function here is a pure function of its
arguments that returns plain, picklable results, so a page can cache it with
``st.cache_data`` keyed by (chapter, seed). Nothing here imports streamlit.

The home page's checklist of signs and fixes also lives here
(``SIGN_CHECKLIST``, ``FIX_CHECKLIST``): each item links to a Training Lab
configuration and states what that configuration shows, in a form
``verify_link`` can check by training it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import numpy as np

from clipviz.engine.config import DEFAULT, PRESETS, TrainConfig
from clipviz.engine.data import reference_arrays
from clipviz.engine.labstate import CUSTOM, LabState
from clipviz.engine.result import RunResult
from clipviz.engine.trainer import Trainer
from clipviz.lessons.diagnose import FIX_NOTES, SIGN_BY_KEY, Finding, signs_of
from clipviz.lessons.experiments import EXPERIMENT_BY_NAME, EXPERIMENTS, Experiment

SOURCE = (
    'J. Brownlee, "How to Avoid Exploding Gradients With Gradient Clipping", '
    "Machine Learning Mastery, 2019"
)
DEFAULT_SEED = DEFAULT.seed
DEFAULT_GRID_SEEDS = 5
SUB_100 = 100.0  # the tutorial describes how fast the MSE falls below 100


# ---- links to the Training Lab -------------------------------------------


def lab_state(config: TrainConfig) -> LabState:
    """The Lab state that opens ``config``: under its preset's name when it is one."""
    config = config.canonical()
    preset = next((n for n, p in PRESETS.items() if p.config == config), CUSTOM)
    return LabState(config, preset)


def lab_query(config: TrainConfig) -> str:
    """The query string that opens exactly ``config`` in the Lab (``LabState.to_query``)."""
    return lab_state(config).to_query()


def lab_url(config_or_query: TrainConfig | str) -> str:
    """A relative link to the Lab (relative, so it works under any base path)."""
    query = config_or_query if isinstance(config_or_query, str) else lab_query(config_or_query)
    return f"lab?{query}" if query else "lab"


def config_from_query(query: str) -> TrainConfig:
    """The configuration a Lab link opens (raises ValueError on a bad link)."""
    state, problems = LabState.from_query(parse_qs(query, keep_blank_values=True))
    if problems:
        raise ValueError("; ".join(str(p) for p in problems))
    return state.config


# ---- chapter 1: the data ---------------------------------------------------


@dataclass(frozen=True)
class FirstStep:
    """The untrained network's first update on one target scaling."""

    target_scaling: str
    loss: float  # MSE of the first batch, in the units the network trains on
    grad_norm: float  # global L2 norm of the first gradient
    max_abs_grad: float  # the largest single gradient component
    target_std: float  # standard deviation of the training target it sees


@dataclass(frozen=True)
class DataSummary:
    """The tutorial's regression target and why its scale matters."""

    y_train: np.ndarray  # (500,) original units
    y_test: np.ndarray  # (500,)
    minimum: float
    maximum: float
    mean: float
    std: float
    train_mean: float  # what standardizing subtracts (fitted on the training rows)
    train_std: float  # and divides by
    n_features: int
    unscaled: FirstStep
    standardized: FirstStep


def _first_step(config: TrainConfig) -> FirstStep:
    trainer = Trainer(config)
    trainer.step(1)
    rec = trainer.records()
    return FirstStep(
        target_scaling=config.target_scaling,
        loss=float(rec["loss"][0]),
        grad_norm=float(rec["grad_norm"][0]),
        max_abs_grad=float(rec["max_abs_grad"][0]),
        target_std=float(trainer.data.y_train.std()),
    )


def data_summary(seed: int = DEFAULT_SEED) -> DataSummary:
    """The target's spread, and the first gradient of the MLP on it, unscaled and standardized."""
    x, y = reference_arrays()
    base = DEFAULT.replace(seed=seed)
    return DataSummary(
        y_train=y[:500].copy(),
        y_test=y[500:].copy(),
        minimum=float(y.min()),
        maximum=float(y.max()),
        mean=float(y.mean()),
        std=float(y.std()),
        train_mean=float(y[:500].mean()),
        train_std=float(y[:500].std()),
        n_features=int(x.shape[1]),
        unscaled=_first_step(base),
        standardized=_first_step(base.replace(target_scaling="standardize")),
    )


# ---- chapters 2 to 5: one run each -------------------------------------------


@dataclass(frozen=True)
class Chapter:
    key: str
    number: int
    title: str
    experiment: str  # name in clipviz.lessons.experiments.EXPERIMENTS
    published_curve: str = ""  # how the tutorial describes its loss curve, if it does

    @property
    def config(self) -> TrainConfig:
        return EXPERIMENT_BY_NAME[self.experiment].config

    @property
    def published(self) -> Experiment:
        return EXPERIMENT_BY_NAME[self.experiment]


RUN_CHAPTERS: tuple[Chapter, ...] = (
    Chapter("unscaled", 2, "The MLP on the raw target explodes", "no_clip"),
    Chapter("standardized", 3, "Standardize the target: it trains", "standardized_target"),
    Chapter(
        "clip_norm",
        4,
        "Clip by norm at 1.0",
        "clip_norm_1",
        "a fall from above 20,000 to below 100 within about 20 epochs",
    ),
    Chapter(
        "clip_value",
        5,
        "Clip by value at 5.0",
        "clip_value_5",
        "an MSE under 100 within a few epochs",
    ),
)
CHAPTER_BY_KEY = {c.key: c for c in RUN_CHAPTERS}


@dataclass(frozen=True)
class ChapterRun:
    """One fully recorded run of a chapter's configuration, and what it shows.

    The numbers are read off the run's ``RunResult``; MSEs are in the target's
    original units, as the tutorial prints them (charts draw the result with
    ``original_units=True`` for the same reason).
    """

    chapter: str
    result: RunResult
    findings: tuple[Finding, ...]

    @property
    def config(self) -> TrainConfig:
        return self.result.config

    @property
    def total_steps(self) -> int:
        return self.result.total_steps

    @property
    def batches_per_epoch(self) -> int:
        return self.result.batches_per_epoch

    @property
    def exploded_at(self) -> int | None:
        return self.result.exploded_at

    @property
    def exploded(self) -> bool:
        return self.exploded_at is not None

    @property
    def explosion(self) -> str | None:
        """E.g. "the loss became NaN or infinite"."""
        return self.result.explosion.describe() if self.result.explosion else None

    @property
    def explosion_quantity(self) -> str | None:
        return self.result.explosion.quantity if self.result.explosion else None

    @property
    def explosion_layer(self) -> str | None:
        return self.result.explosion.layer if self.result.explosion else None

    @property
    def final_train_mse(self) -> float:
        return self.result.final_train_mse

    @property
    def final_test_mse(self) -> float:
        return self.result.final_test_mse

    @property
    def initial_train_mse(self) -> float:
        """Before the first update."""
        return float(self.result.to_original_mse(self.result.initial_train_loss))

    @property
    def first_grad_norm(self) -> float:
        norms = self.result.records["grad_norm"]
        return float(norms[0]) if norms.size else math.nan

    @property
    def max_grad_norm(self) -> float:
        """The largest finite gradient norm before clipping."""
        return self.result.max_grad_norm

    @property
    def clipped_share(self) -> float:
        """The fraction of steps at which clipping changed the gradient."""
        return self.result.clipped_fraction

    @property
    def median_angle_deg(self) -> float:
        """The median angle between the raw and the clipped gradient."""
        cosine = self.result.records["cosine"]
        cosine = cosine[np.isfinite(cosine)]
        if not cosine.size:
            return 0.0
        return float(np.degrees(np.arccos(np.clip(np.median(cosine), -1, 1))))

    @property
    def max_update_norm(self) -> float:
        """The longest weight update of the run: ||w_t - w_{t-1}||."""
        records = self.result.records
        updates = records["update_ratio"] * records["weight_norm"]
        finite = updates[np.isfinite(updates)]
        return float(finite.max()) if finite.size else math.nan

    @property
    def update_bound(self) -> float:
        """For SGD with momentum m and gradients clipped to norm c: every update is at most
        lr c / (1 - m) long, since the velocity sums m^k times gradients of length <= c."""
        config = self.config
        return config.lr * config.clip_norm / (1 - config.momentum)

    @property
    def epoch_below_100(self) -> int | None:
        """The first epoch whose whole-set train MSE is below 100."""
        train = self.result.to_original_mse(self.result.epochs["train_loss"])
        below = np.nonzero(np.isfinite(train) & (train < SUB_100))[0]
        return int(below[0]) + 1 if below.size else None

    @property
    def first_finding(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    @property
    def explosion_epoch(self) -> int | None:
        if self.exploded_at is None:
            return None
        return math.ceil(self.exploded_at / self.batches_per_epoch)

    @property
    def lab_query(self) -> str:
        return lab_query(self.config)


def chapter_run(key: str, seed: int = DEFAULT_SEED) -> ChapterRun:
    """Train chapter ``key``'s configuration with ``seed``, fully recorded."""
    config = CHAPTER_BY_KEY[key].config.replace(seed=seed)
    trainer = Trainer(config).run()
    return ChapterRun(chapter=key, result=trainer.result(), findings=tuple(signs_of(trainer)))


def published_numbers(experiment: str) -> tuple[float, float] | None:
    """(train, test) MSE the tutorial printed (NaN, NaN when it printed NaN); None if not run."""
    e = EXPERIMENT_BY_NAME[experiment]
    if e.published_train_mse is None or e.published_test_mse is None:
        return None
    return e.published_train_mse, e.published_test_mse


# ---- chapter 6: the suggested extensions over several seeds -----------------


@dataclass(frozen=True)
class Setting:
    """One box of the extension chart: a configuration run over several seeds."""

    group: str
    label: str  # the chart's tick label (may hold a <br>)
    config: TrainConfig  # seed is replaced per run

    @property
    def text(self) -> str:
        """The setting in words, e.g. 'clip by norm at 1' or 'no clipping, raw target'."""
        cfg = self.config
        if cfg.clip_mode == "norm":
            return f"clip by norm at {cfg.clip_norm:g}"
        if cfg.clip_mode == "value":
            return f"clip by value at {cfg.clip_value:g}"
        if cfg.clip_mode == "norm_value":
            return f"clip by norm at {cfg.clip_norm:g}, then by value at {cfg.clip_value:g}"
        target = "raw" if cfg.target_scaling == "none" else f"{cfg.target_scaling}d"
        return f"no clipping, {target} target"


@dataclass(frozen=True)
class SettingGroup:
    key: str
    title: str
    settings: tuple[Setting, ...]


def _group(key: str, title: str, items: list[tuple[str, dict]]) -> SettingGroup:
    return SettingGroup(
        key,
        title,
        tuple(Setting(key, label, DEFAULT.replace(**changes)) for label, changes in items),
    )


EXTENSION_GROUPS: tuple[SettingGroup, ...] = (
    _group(
        "baseline",
        "No clipping",
        [("raw<br>target", {}), ("standardized<br>target", {"target_scaling": "standardize"})],
    ),
    _group(
        "norm",
        "Clip by norm at c",
        [(f"{c:g}", {"clip_mode": "norm", "clip_norm": c}) for c in (0.1, 0.5, 1, 2, 5, 10)],
    ),
    _group(
        "value",
        "Clip by value into [-c, c]",
        [(f"{c:g}", {"clip_mode": "value", "clip_value": c}) for c in (0.5, 1, 2, 5, 10)],
    ),
    _group(
        "norm_value",
        "Norm, then value: c / c",
        [
            (f"{n:g} / {v:g}", {"clip_mode": "norm_value", "clip_norm": n, "clip_value": v})
            for n, v in ((1, 5), (5, 1), (10, 0.5), (10, 5))
        ],
    ),
)
GROUP_BY_KEY = {g.key: g for g in EXTENSION_GROUPS}


def extension_settings() -> tuple[Setting, ...]:
    return tuple(s for g in EXTENSION_GROUPS for s in g.settings)


@dataclass(frozen=True)
class RunOutcome:
    """The end of one run: where it exploded (if it did) and its final MSE."""

    seed: int
    exploded_at: int | None
    train_mse: float  # original units; NaN when it exploded
    test_mse: float


def extension_run(group: str, index: int, seed: int) -> RunOutcome:
    """Train one setting of the extension grid with one seed (summary recording).

    A single-lane run, exactly as ``python -m clipviz reproduce`` and the Lab
    train it, so each number here can be reproduced from its Lab link.
    """
    config = GROUP_BY_KEY[group].settings[index].config.replace(seed=seed)
    trainer = Trainer(config, record="summary").run()
    train, test = trainer.final_losses()
    return RunOutcome(seed, trainer.exploded_at, float(train[0]), float(test[0]))


@dataclass(frozen=True)
class SettingSummary:
    setting: Setting
    outcomes: tuple[RunOutcome, ...]
    published_test_mse: float | None  # the tutorial's one Keras run, when it ran this

    @property
    def exploded(self) -> int:
        return sum(o.exploded_at is not None for o in self.outcomes)

    @property
    def test_mse(self) -> np.ndarray:
        return np.array([o.test_mse for o in self.outcomes], dtype=float)

    def median(self, which: str = "test") -> float:
        values = np.array([getattr(o, f"{which}_mse") for o in self.outcomes], dtype=float)
        finite = values[np.isfinite(values)]
        return float(np.median(finite)) if finite.size else math.nan


def experiment_for(config: TrainConfig) -> Experiment | None:
    """The published experiment with this configuration (any seed), if there is one."""
    for e in EXPERIMENTS:
        if e.config.replace(seed=config.seed) == config:
            return e
    return None


def summarise_extension(
    group: str, outcomes: dict[int, list[RunOutcome]]
) -> tuple[SettingSummary, ...]:
    """Per-setting summaries of one group; ``outcomes[index]`` lists that setting's runs."""
    out = []
    for i, setting in enumerate(GROUP_BY_KEY[group].settings):
        e = experiment_for(setting.config)
        published = None
        if (
            e is not None
            and e.published_test_mse is not None
            and math.isfinite(e.published_test_mse)
        ):
            published = e.published_test_mse
        out.append(SettingSummary(setting, tuple(outcomes.get(i, ())), published))
    return tuple(out)


def lowest_median(summaries: tuple[SettingSummary, ...]) -> SettingSummary | None:
    """The setting of a group with the lowest median final test MSE (None if all exploded)."""
    finite = [s for s in summaries if math.isfinite(s.median())]
    return min(finite, key=lambda s: s.median()) if finite else None


@dataclass(frozen=True)
class Box:
    """One box of the extensions figure (``figures.tutorial.extension_figure``): a setting's final test MSE over its seeds."""

    label: str
    values: Sequence[float]  # final test MSE per seed; NaN for a run that exploded
    seeds: Sequence[int]
    clipped: bool
    published: float | None = None  # the tutorial's one Keras run, when it ran this setting


@dataclass(frozen=True)
class Panel:
    title: str
    boxes: Sequence[Box]


def extension_panels(
    summaries: dict[str, tuple[SettingSummary, ...]], seeds: list[int]
) -> list[Panel]:
    """What ``extension_figure`` draws: one panel per group, one box per setting."""
    return [
        Panel(
            group.title,
            [
                Box(
                    s.setting.label,
                    s.test_mse.tolist(),
                    seeds,
                    clipped=s.setting.config.clipped,
                    published=s.published_test_mse,
                )
                for s in summaries[group.key]
            ],
        )
        for group in EXTENSION_GROUPS
        if group.key in summaries
    ]


@dataclass(frozen=True)
class Comparison:
    """One published experiment: the tutorial's numbers beside our medians over seeds."""

    experiment: str  # its title
    published_train_mse: float | None  # NaN: printed as NaN; None: not run there
    published_test_mse: float | None
    runs: int
    exploded: int
    median_train_mse: float  # NaN when every run exploded
    median_test_mse: float


def published_comparison(summaries: list[SettingSummary]) -> list[Comparison]:
    """One row per published experiment that the extension grid also ran."""
    rows = []
    for e in EXPERIMENTS:
        match = [s for s in summaries if s.setting.config.replace(seed=e.config.seed) == e.config]
        if match:
            s = match[0]
            rows.append(
                Comparison(
                    e.title,
                    e.published_train_mse,
                    e.published_test_mse,
                    len(s.outcomes),
                    s.exploded,
                    s.median("train"),
                    s.median("test"),
                )
            )
    return rows


# ---- the home page's checklist ---------------------------------------------------


@dataclass(frozen=True)
class LabLink:
    """A Lab configuration and what running it shows (checked by ``verify_link``)."""

    label: str
    config: TrainConfig
    explodes: bool | None = None  # None: not part of the claim
    shows: tuple[str, ...] = ()  # sign keys find_signs must report
    lacks: tuple[str, ...] = ()  # sign keys find_signs must not report
    learns: bool | None = None  # the progress detector (RunResult.learned) must agree

    @property
    def query(self) -> str:
        return lab_query(self.config)

    @property
    def url(self) -> str:
        return lab_url(self.config)


@dataclass(frozen=True)
class ChecklistItem:
    title: str
    why: str
    links: tuple[LabLink, ...]
    note: str = ""  # what to look for, in one line


@dataclass(frozen=True)
class LinkCheck:
    link: LabLink
    exploded_at: int | None
    signs: tuple[str, ...]
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_link(link: LabLink) -> LinkCheck:
    """Train the configuration the link opens (read back through the Lab-state codec,
    as the Lab reads it) and check each part of its claim."""
    trainer = Trainer(config_from_query(link.query)).run()
    findings = signs_of(trainer)
    keys = tuple(dict.fromkeys(f.key for f in findings))
    problems = []
    if link.explodes is not None and link.explodes != (trainer.exploded_at is not None):
        problems.append(
            f"expected {'an explosion' if link.explodes else 'no explosion'}, "
            f"exploded_at={trainer.exploded_at}"
        )
    problems += [f"sign {k!r} not found (found {keys})" for k in link.shows if k not in keys]
    problems += [f"sign {k!r} found but should not be" for k in link.lacks if k in keys]
    if link.learns is not None:
        result = trainer.result()
        if link.learns != result.learned:
            problems.append(
                f"expected it {'to learn' if link.learns else 'not to learn'}: final test "
                f"loss {result.final_test_loss:.4g}, mean guess {result.mean_guess_test_loss:.4g}"
            )
    return LinkCheck(link, trainer.exploded_at, keys, tuple(problems))


_UNSCALED = PRESETS["tutorial_unscaled"].config
# A vanilla RNN on the adding problem (recurrent weights of spectral radius 1.5),
# written out key by key so the link keeps its meaning if the presets are retuned.
_RNN = DEFAULT.replace(
    network="rnn",
    task="adding",
    seq_len=100,
    hidden_size=16,
    recurrent_scale=1.5,
    lr=0.1,
    momentum=0.9,
    batch_size=32,
    epochs=5,
    n_train=512,
    target_scaling="none",
)
# The tutorial's net at a learning rate fifty times too large, clipped by value:
# nothing overflows, but its first steps kill every ReLU unit.
_DEAD = DEFAULT.replace(lr=0.5, clip_mode="value", clip_value=5.0)


def _sign(key: str, note: str, *links: LabLink) -> ChecklistItem:
    sign = SIGN_BY_KEY[key]
    return ChecklistItem(sign.title, sign.why, links, note)


SIGN_CHECKLIST: tuple[ChecklistItem, ...] = (
    _sign(
        "no_progress",
        "Clipping keeps every number finite, yet the loss stays where it started: the first "
        "oversized steps pushed every ReLU unit below zero on every row (see the next sign), "
        "so the net can only output one constant.",
        LabLink(
            "clip by value 5 at lr 0.5",
            _DEAD,
            explodes=False,
            shows=("no_progress",),
            learns=False,
        ),
    ),
    _sign(
        "loss_swings",
        "The batch loss leaps tenfold in one update a few steps before it overflows.",
        LabLink("the tutorial's unscaled run", _UNSCALED, explodes=True, shows=("loss_swings",)),
    ),
    _sign(
        "loss_nan",
        "The run stops with a red 'Exploded at step' message.",
        LabLink("the tutorial's unscaled run", _UNSCALED, explodes=True, shows=("loss_nan",)),
    ),
    _sign(
        "weights_grow",
        "The weight norm multiplies tenfold within a few updates, before anything turns NaN.",
        LabLink("the tutorial's unscaled run", _UNSCALED, explodes=True, shows=("weights_grow",)),
    ),
    _sign(
        "weights_nan",
        "Watch the weight-norm chart: its line ends where the weights overflow.",
        LabLink("the tutorial's unscaled run", _UNSCALED, explodes=True, shows=("weights_nan",)),
    ),
    _sign(
        "dead_units",
        "The same run as 'the loss does not improve': the Lab names the layer whose units "
        "all died, and the step by which they had.",
        LabLink(
            "clip by value 5 at lr 0.5",
            _DEAD,
            explodes=False,
            shows=("dead_units",),
        ),
    ),
    _sign(
        "grads_above_one",
        "From the first steps, nearly every node's error gradient is far above 1, and stays "
        "there until the run overflows.",
        LabLink(
            "the tutorial's unscaled run",
            _UNSCALED,
            explodes=True,
            shows=("grads_above_one",),
        ),
    ),
)

_FIX_WHY = dict(FIX_NOTES)


def _fix(title: str, note: str, *links: LabLink) -> ChecklistItem:
    return ChecklistItem(title, _FIX_WHY[title], links, note)


FIX_CHECKLIST: tuple[ChecklistItem, ...] = (
    _fix(
        "Scale the target",
        "The same network and learning rate train once the target is standardized.",
        LabLink(
            "standardized target", PRESETS["tutorial_scaled"].config, explodes=False, learns=True
        ),
    ),
    _fix(
        "Lower the learning rate",
        "At lr 0.001 instead of 0.01 the unscaled run trains without clipping.",
        LabLink("lr 0.001, unscaled", DEFAULT.replace(lr=0.001), explodes=False, learns=True),
    ),
    _fix(
        "Use fewer layers",
        "At lr 0.001, four hidden layers explode while one trains.",
        LabLink("4 hidden layers", DEFAULT.replace(lr=0.001, depth=4), explodes=True),
        LabLink("1 hidden layer", DEFAULT.replace(lr=0.001, depth=1), explodes=False, learns=True),
    ),
    _fix(
        "Use a smaller batch size",
        "Not a sure cure: on this problem at lr 0.003 a batch of 8 explodes sooner, and a "
        "batch of 128 trains.",
        LabLink("batch 8", DEFAULT.replace(lr=0.003, batch_size=8), explodes=True),
        LabLink(
            "batch 128",
            DEFAULT.replace(lr=0.003, batch_size=128),
            explodes=False,
            learns=True,
        ),
    ),
    _fix(
        "Truncate backpropagation through time",
        "A vanilla RNN on 100-step sequences: with full backpropagation its weights grow "
        "tenfold within a few updates; cut hard, after 2 steps, they stay within ten times "
        "their start. The cut leaves out the gradient of every longer link, so long-range "
        "links get harder and slower to learn (not impossible: the weights are shared "
        "across time); the Recurrent page shows a run.",
        LabLink("RNN, full backprop", _RNN, shows=("weights_grow",)),
        LabLink("RNN, truncated to 2 steps", _RNN.replace(tbptt=2), lacks=("weights_grow",)),
    ),
    _fix(
        "Use LSTM units",
        "The rnn_explodes preset's vanilla RNN overflows within a few dozen steps; the "
        "same task and settings with LSTM units stay finite and learn it.",
        LabLink("vanilla RNN", PRESETS["rnn_explodes"].config, explodes=True),
        LabLink(
            "LSTM instead",
            PRESETS["rnn_explodes"].config.replace(network="lstm"),
            explodes=False,
            learns=True,
        ),
    ),
    _fix(
        "Penalise large weights",
        "Not enough on its own here: an L2 penalty is tiny next to gradients in the "
        "hundreds, so the unscaled run still explodes.",
        LabLink(
            "unscaled, weight decay 0.01",
            _UNSCALED.replace(weight_decay=0.01),
            explodes=True,
        ),
    ),
    _fix(
        "Clip the gradient",
        "The unscaled run trains with either kind of clipping.",
        LabLink(
            "clip by norm 1", PRESETS["tutorial_clip_norm"].config, explodes=False, learns=True
        ),
        LabLink(
            "clip by value 5", PRESETS["tutorial_clip_value"].config, explodes=False, learns=True
        ),
    ),
)
