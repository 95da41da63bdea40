"""The one configuration of a training run, and its round-trips.

``TrainConfig`` is a frozen dataclass holding every Training Lab setting of
the public interface (``docs/CONTRACT.md``) plus the network-specific ones. The page widgets, the URL query
parameters, the command line and the tests all build it here, so a setting is
declared once: its field, its default, its allowed values and its validation.

Invalid input never raises out of the public parsers: ``from_params`` returns
the config built from the good values plus a list of ``ConfigProblem``\\ s that
name each bad key and say what is wrong in one line.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from clipviz.engine import budget

NETWORKS = ("mlp", "lstm", "rnn")
OPTIMIZERS = ("sgd", "adam")
TARGET_SCALINGS = ("none", "standardize", "normalize")
CLIP_MODES = (
    "none",
    "norm",
    "norm_per_tensor",
    "value",
    "norm_value",
    "layerwise_value",
    "autoclip",
    "agc",
    "zclip",
)
# The adaptive rules, and the setting of each that its stability map varies.
ADAPTIVE_MODES = ("autoclip", "agc", "zclip")
RULE_PARAMETER = {"autoclip": "autoclip_percentile", "agc": "agc_lambda", "zclip": "zclip_z"}
ACTIVATIONS = ("relu", "tanh")
TASKS = ("adding", "digits")
# The MLP's shipped data sets (clipviz.engine.data); "reference" is the tutorial's.
DATA_SETS = ("reference", "diabetes", "friedman", "regression_noisy", "regression_large")

# Bounds keep one session's work bounded on a shared 2-core machine.
MAX_STEPS = 200_000
MAX_SEQ_LEN = 500
MAX_WIDTH = 512
MAX_DEPTH = 12
MAX_HIDDEN = 256
MAX_BATCH = 1000
MAX_ZCLIP_WARMUP = 1000  # ZClip keeps its warm-up norms: (warm-up, lanes) numbers

CLIP_MODE_LABELS = {
    "none": "no clipping",
    "norm": "clip by global norm (PyTorch clip_grad_norm_)",
    "norm_per_tensor": "clip each tensor's norm (Keras 3 clipnorm)",
    "value": "clip by value (clip_grad_value_)",
    "norm_value": "global norm, then value (Keras 2.2 order)",
    "layerwise_value": "value ranges per layer (Graves 2013)",
    "autoclip": "AutoClip: norm at a percentile of past norms (Seetharaman et al. 2020)",
    "agc": "adaptive clipping per unit, AGC (Brock et al. 2021)",
    "zclip": "ZClip: clip norm spikes by z-score (Kumar et al. 2025)",
}


# The groups of settings, in the order the Lab's sidebar shows them; a teacher's
# link can hide a whole group (``LabState.hide``).
GROUPS = {
    "network": "Network",
    "data": "Data",
    "optimizer": "Optimizer",
    "clipping": "Clipping",
}


def _always(config: TrainConfig) -> bool:
    return True


def _meta(
    kind: type,
    help: str,
    choices: tuple[str, ...] | None = None,
    *,
    label: str | None = None,
    hint: str = "",
    group: str = "optimizer",
    widget: str | None = None,
    relevant: Callable[[TrainConfig], bool] = _always,
    step: float | None = None,
    format: str | None = None,
    ui_low: float | None = None,
    ui_high: float | None = None,
    **bounds: Any,
) -> dict:
    """A field's metadata: everything the validator, the CLI and the Lab's widget need.

    ``kind``/``choices``/bounds (``gt``, ``ge``, ``lt``, ``le``) validate; ``help``
    is the one-line CLI help. For the Lab's sidebar (``clipviz.app.lab.SETTINGS``):
    ``label`` and ``hint`` (the widget's tooltip), ``group`` (its section),
    ``widget`` (``select``, ``number``, ``lr_slider`` or ``toggle``; by default
    from the kind), ``relevant`` (whether the setting matters for a config: also
    what ``relevant_keys`` and the links carry), ``step``/``format`` and
    ``ui_low``/``ui_high`` (friendlier widget bounds for open intervals).
    """
    if widget is None:
        widget = "select" if choices else ("toggle" if kind is bool else "number")
    return {
        "kind": kind,
        "help": help,
        "choices": choices,
        "label": label or help[0].upper() + help[1:],
        "hint": hint or help[0].upper() + help[1:] + ".",
        "group": group,
        "widget": widget,
        "relevant": relevant,
        "step": step,
        "format": format,
        "ui_low": ui_low,
        "ui_high": ui_high,
        **bounds,
    }


def _mlp(c: TrainConfig) -> bool:
    return c.network == "mlp"


def _recurrent(c: TrainConfig) -> bool:
    return c.network != "mlp"


def _regression(c: TrainConfig) -> bool:
    return c.network == "mlp" or c.task == "adding"


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run. Defaults are the reference experiment.

    The reference experiment (Brownlee's gradient-clipping tutorial, after the
    scikit-learn ``make_regression`` problem): MLP 20 -> 25 ReLU -> 1, SGD with
    lr 0.01 and momentum 0.9, batch 32, 100 epochs, unscaled target.
    Each field's metadata (``_meta``) declares its validation, its CLI help and
    its Lab widget, so a new setting is one entry here.
    """

    network: str = field(
        default="mlp",
        metadata=_meta(
            str,
            "network",
            NETWORKS,
            group="network",
            hint="mlp: the tutorial's dense net; lstm / rnn: recurrent nets reading sequences.",
        ),
    )
    # MLP
    depth: int = field(
        default=1,
        metadata=_meta(
            int,
            "hidden layers",
            group="network",
            relevant=_mlp,
            hint="More layers, more factors in the gradient's product.",
            ge=1,
            le=MAX_DEPTH,
        ),
    )
    width: int = field(
        default=25,
        metadata=_meta(
            int,
            "hidden units",
            label="Units per hidden layer",
            group="network",
            relevant=_mlp,
            hint="Width of every hidden layer.",
            ge=1,
            le=MAX_WIDTH,
        ),
    )
    activation: str = field(
        default="relu",
        metadata=_meta(
            str,
            "activation",
            ACTIVATIONS,
            group="network",
            relevant=_mlp,
            hint="The hidden layers' nonlinearity.",
        ),
    )
    # Recurrent nets
    task: str = field(
        default="adding",
        metadata=_meta(
            str,
            "recurrent task",
            TASKS,
            label="Task",
            group="network",
            relevant=_recurrent,
            hint="adding: sum the two marked numbers of a sequence; digits: read 8x8 images "
            "row by row and name the digit.",
        ),
    )
    seq_len: int = field(
        default=50,
        metadata=_meta(
            int,
            "sequence length",
            group="network",
            relevant=lambda c: _recurrent(c) and c.task == "adding",
            hint="Time steps the gradient must travel back.",
            ge=2,
            le=MAX_SEQ_LEN,
        ),
    )
    hidden_size: int = field(
        default=16,
        metadata=_meta(
            int,
            "recurrent hidden units",
            label="Hidden units",
            group="network",
            relevant=_recurrent,
            hint="Size of the recurrent state.",
            ge=1,
            le=MAX_HIDDEN,
        ),
    )
    recurrent_scale: float = field(
        default=1.0,
        metadata=_meta(
            float,
            "RNN recurrent weight scale (spectral radius)",
            label="Recurrent weight scale",
            group="network",
            relevant=lambda c: c.network == "rnn",
            hint="The spectral radius of the recurrent weights at the start. Above 1, the "
            "recurrent Jacobians can grow the gradient back through time.",
            step=0.1,
            format="%g",
            ui_low=0.05,
            gt=0.0,
            le=10.0,
        ),
    )
    tbptt: int = field(
        default=0,
        metadata=_meta(
            int,
            "truncate backprop to the last k time steps (0 = full)",
            label="Truncate backprop (steps)",
            group="network",
            relevant=_recurrent,
            hint="Backpropagate through the last k time steps only; 0 = the whole sequence.",
            ge=0,
            le=MAX_SEQ_LEN,
        ),
    )
    # Data
    data: str = field(
        default="reference",
        metadata=_meta(
            str,
            "data set (MLP)",
            DATA_SETS,
            label="Data set",
            group="data",
            relevant=_mlp,
            hint="reference: the tutorial's make_regression problem; the others ship with "
            "scikit-learn or are generated, offline.",
        ),
    )
    target_scaling: str = field(
        default="none",
        metadata=_meta(
            str,
            "target scaling",
            TARGET_SCALINGS,
            group="data",
            relevant=_regression,
            hint="The unscaled reference target runs from about -440 to 580: large errors, "
            "large gradients. Standardize or normalize it on the training rows.",
        ),
    )
    n_train: int = field(
        default=500,
        metadata=_meta(
            int,
            "training examples (recurrent tasks)",
            label="Training sequences",
            group="data",
            relevant=_recurrent,
            hint="Examples per epoch.",
            ge=16,
            le=5000,
        ),
    )
    seed: int = field(
        default=1,
        metadata=_meta(
            int,
            "random seed",
            label="Seed",
            group="data",
            hint="Initial weights and batch order.",
            ge=0,
            le=2**31 - 1,
        ),
    )
    # Optimizer
    optimizer: str = field(
        default="sgd",
        metadata=_meta(str, "optimizer", OPTIMIZERS, hint="SGD with momentum, or Adam."),
    )
    lr: float = field(
        default=0.01,
        metadata=_meta(
            float,
            "learning rate",
            label="Learning rate (log scale)",
            widget="lr_slider",
            hint="Step size. Each mark is 1, 2, 3 or 5 times a power of ten.",
            gt=0.0,
            le=100.0,
        ),
    )
    momentum: float = field(
        default=0.9,
        metadata=_meta(
            float,
            "SGD momentum",
            label="Momentum",
            relevant=lambda c: c.optimizer == "sgd",
            hint="Fraction of the last update carried on.",
            step=0.05,
            format="%g",
            ui_high=0.999,
            ge=0.0,
            lt=1.0,
        ),
    )
    batch_size: int = field(
        default=32,
        metadata=_meta(int, "batch size", hint="Examples per optimizer step.", ge=1, le=MAX_BATCH),
    )
    epochs: int = field(
        default=100,
        metadata=_meta(int, "epochs", hint="Passes over the training set.", ge=1, le=5000),
    )
    weight_decay: float = field(
        default=0.0,
        metadata=_meta(
            float,
            "L2 weight decay",
            label="Weight decay (L2)",
            hint="A penalty (wd/2)·||w||² on the loss, pulling the weights towards 0.",
            step=1e-3,
            format="%g",
            ge=0.0,
            le=10.0,
        ),
    )
    # Clipping
    clip_mode: str = field(
        default="none",
        metadata=_meta(str, "clipping mode", CLIP_MODES, label="Clip mode", group="clipping"),
    )
    clip_norm: float = field(
        default=1.0,
        metadata=_meta(
            float,
            "clip norm",
            label="Clip norm c",
            group="clipping",
            relevant=lambda c: c.uses_clip_norm or (c.clip_mode == "zclip" and c.zclip_cap),
            hint="Largest gradient norm allowed.",
            step=0.1,
            format="%g",
            ui_low=1e-4,
            gt=0.0,
            le=1e9,
        ),
    )
    clip_value: float = field(
        default=5.0,
        metadata=_meta(
            float,
            "clip value",
            label="Clip value c",
            group="clipping",
            relevant=lambda c: c.uses_clip_value,
            hint="Each component forced into [-c, c].",
            step=0.5,
            format="%g",
            ui_low=1e-4,
            gt=0.0,
            le=1e9,
        ),
    )
    clip_value_output: float = field(
        default=100.0,
        metadata=_meta(
            float,
            "clip value of the output layer (layerwise_value)",
            label="Clip value, output layer",
            group="clipping",
            relevant=lambda c: c.clip_mode == "layerwise_value",
            hint="Graves (2013) allowed the output layer [-100, 100].",
            step=10.0,
            format="%g",
            ui_low=1e-4,
            gt=0.0,
            le=1e9,
        ),
    )
    # The adaptive rules (clipviz.engine.clipping).
    autoclip_percentile: float = field(
        default=10.0,
        metadata=_meta(
            float,
            "AutoClip: percentile of the norms so far to clip at",
            label="AutoClip percentile p",
            group="clipping",
            relevant=lambda c: c.clip_mode == "autoclip",
            hint="Clip at the p-th percentile of every gradient norm seen so far, this "
            "step's included (Seetharaman et al. 2020).",
            step=1.0,
            format="%g",
            gt=0.0,
            le=100.0,
        ),
    )
    agc_lambda: float = field(
        default=0.01,
        metadata=_meta(
            float,
            "AGC: clip factor lambda (unit gradient / unit weight norm)",
            label="AGC λ",
            group="clipping",
            relevant=lambda c: c.clip_mode == "agc",
            hint="A unit's gradient may be at most λ times its weights' norm (Brock et al. 2021).",
            step=0.01,
            format="%g",
            ui_low=1e-4,
            gt=0.0,
            le=100.0,
        ),
    )
    agc_eps: float = field(
        default=1e-3,
        metadata=_meta(
            float,
            "AGC: smallest weight norm a unit is measured with",
            label="AGC ε",
            group="clipping",
            relevant=lambda c: c.clip_mode == "agc",
            hint="Units with smaller weights count as this norm, so a zero-initialised unit "
            "can still move.",
            step=1e-3,
            format="%g",
            ui_low=1e-6,
            gt=0.0,
            le=100.0,
        ),
    )
    zclip_alpha: float = field(
        default=0.97,
        metadata=_meta(
            float,
            "ZClip: EMA smoothing of the norm's mean and variance",
            label="ZClip α",
            group="clipping",
            relevant=lambda c: c.clip_mode == "zclip",
            hint="How slowly the running mean and variance of the norm forget the past.",
            step=0.01,
            format="%g",
            ui_low=0.5,
            ui_high=0.999,
            gt=0.0,
            lt=1.0,
        ),
    )
    zclip_z: float = field(
        default=2.5,
        metadata=_meta(
            float,
            "ZClip: z-score above which a norm is a spike",
            label="ZClip z threshold",
            group="clipping",
            relevant=lambda c: c.clip_mode == "zclip",
            hint="A norm this many standard deviations above the running mean is a spike.",
            step=0.5,
            format="%g",
            ui_low=0.1,
            gt=0.0,
            le=1000.0,
        ),
    )
    zclip_warmup: int = field(
        default=25,
        metadata=_meta(
            int,
            "ZClip: steps collected before the EMA starts",
            label="ZClip warm-up steps",
            group="clipping",
            relevant=lambda c: c.clip_mode == "zclip",
            hint="Steps whose norms seed the running mean and variance; nothing is clipped "
            "before (unless the cap is on).",
            ge=1,
            le=MAX_ZCLIP_WARMUP,
        ),
    )
    zclip_cap: bool = field(
        default=False,
        metadata=_meta(
            bool,
            "ZClip: also cap the norm at clip_norm (its max_grad_norm)",
            label="ZClip hard cap at the clip norm",
            group="clipping",
            relevant=lambda c: c.clip_mode == "zclip",
            hint="Also cap every norm at the clip norm c, warm-up included (ZClip's "
            "max_grad_norm).",
        ),
    )
    skip_nonfinite: bool = field(
        default=False,
        metadata=_meta(
            bool,
            "skip a step whose loss or gradient is not finite",
            label="Skip non-finite steps",
            group="clipping",
            hint="Skip a step whose loss or gradient is not finite, as torch.amp's GradScaler "
            "and optax.apply_if_finite do, instead of ending the run.",
        ),
    )

    # ---- derived -------------------------------------------------------
    @property
    def is_recurrent(self) -> bool:
        return self.network in ("lstm", "rnn")

    @property
    def sequence_length(self) -> int:
        """Time steps a recurrent net reads: ``seq_len`` for the adding problem, the
        image's rows for digits (0 for the MLP)."""
        if not self.is_recurrent:
            return 0
        return budget.DIGITS_ROWS if self.task == "digits" else self.seq_len

    @property
    def uses_clip_norm(self) -> bool:
        return self.clip_mode in ("norm", "norm_per_tensor", "norm_value")

    @property
    def uses_clip_value(self) -> bool:
        return self.clip_mode in ("value", "norm_value", "layerwise_value")

    @property
    def clipped(self) -> bool:
        return self.clip_mode != "none"

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def canonical(self) -> TrainConfig:
        """The same run with every setting that does not matter for it at its default
        (an LSTM's unused RNN weight scale, an MLP's unused sequence length): two
        configs that train alike are then equal, and a link, which carries only the
        relevant settings, opens exactly this config."""
        relevant = set(self.relevant_keys())
        changes = {
            k: getattr(DEFAULT, k)
            for k in FIELD_NAMES
            if k not in relevant and getattr(self, k) != getattr(DEFAULT, k)
        }
        return dataclasses.replace(self, **changes) if changes else self

    def relevant_keys(self) -> tuple[str, ...]:
        """The fields that matter for this config (training ignores the others), in
        declaration order: each field's ``relevant`` predicate decides."""
        return tuple(k for k in FIELD_NAMES if FIELDS[k].metadata["relevant"](self))

    def label(self) -> str:
        """A short human label, e.g. 'MLP, lr 0.01, clip by global norm 1'."""
        parts = [self.network.upper(), f"lr {self.lr:g}"]
        if self.clip_mode == "none":
            parts.append("no clipping")
        elif self.clip_mode == "norm":
            parts.append(f"clip norm {self.clip_norm:g}")
        elif self.clip_mode == "norm_per_tensor":
            parts.append(f"clip norm {self.clip_norm:g} per tensor")
        elif self.clip_mode == "value":
            parts.append(f"clip value {self.clip_value:g}")
        elif self.clip_mode == "norm_value":
            parts.append(f"clip norm {self.clip_norm:g} + value {self.clip_value:g}")
        elif self.clip_mode == "layerwise_value":
            parts.append(f"clip value {self.clip_value:g} / output {self.clip_value_output:g}")
        elif self.clip_mode == "autoclip":
            parts.append(f"AutoClip at the {self.autoclip_percentile:g}th percentile")
        elif self.clip_mode == "agc":
            parts.append(f"AGC lambda {self.agc_lambda:g}")
        else:
            cap = f", cap {self.clip_norm:g}" if self.zclip_cap else ""
            parts.append(f"ZClip z {self.zclip_z:g}{cap}")
        if self.skip_nonfinite:
            parts.append("skipping non-finite steps")
        if self.target_scaling != "none" and "target_scaling" in self.relevant_keys():
            parts.append(f"{self.target_scaling}d target")
        if self.network == "mlp" and self.data != "reference":
            parts.append(f"{self.data} data")
        return ", ".join(parts)

    # ---- validation ----------------------------------------------------
    def problems(self, *, data_shape: budget.DataShape | None = None) -> list[ConfigProblem]:
        """Every way this config is invalid (empty when it is valid).

        ``data_shape`` is the MLP's data when it is not the shipped set
        ``data`` names: an uploaded CSV is costed by its own rows and columns.
        """
        found = []
        for f in fields(self):
            message = _check_value(f, getattr(self, f.name))
            if message:
                found.append(ConfigProblem(f.name, message))
        if any(p.key == "data" for p in found):
            return found  # the budget below needs a known data set
        shape = None if self.is_recurrent else data_shape
        steps = self.total_steps_estimate(shape.n_train if shape else None)
        if steps > MAX_STEPS:
            found.append(
                ConfigProblem(
                    "epochs", f"{steps:,} training steps is too many (at most {MAX_STEPS:,})"
                )
            )
        # The work and memory budget (clipviz.engine.budget): products of fields that
        # each field's own bounds cannot see.
        found += [ConfigProblem(key, message) for key, message in budget.problems_of(self, shape)]
        if self.is_recurrent and self.tbptt >= self.sequence_length:
            found.append(
                ConfigProblem(
                    "tbptt", f"must be below the sequence length {self.sequence_length} (or 0)"
                )
            )
        return found

    def validated(self, *, data_shape: budget.DataShape | None = None) -> TrainConfig:
        """Return self, or raise ``ConfigError`` naming every problem."""
        found = self.problems(data_shape=data_shape)
        if found:
            raise ConfigError(found)
        return self

    def total_steps_estimate(self, n_train: int | None = None) -> int:
        """Optimizer steps of the whole run; ``n_train`` overrides the MLP's training rows."""
        if self.network == "mlp":
            shape = budget.DATA_SHAPES.get(self.data, budget.DATA_SHAPES["reference"])
            n_train = n_train or shape.n_train
            return max(1, self.epochs) * math.ceil(n_train / max(1, self.batch_size))
        n_train = min(self.n_train, 1000) if self.task == "digits" else self.n_train
        return max(1, self.epochs) * math.ceil(n_train / max(1, self.batch_size))

    # ---- round trips ---------------------------------------------------
    def to_params(
        self, *, only_relevant: bool = True, skip_defaults: bool = False
    ) -> dict[str, str]:
        """String parameters, as used in URLs and on the command line."""
        keys = self.relevant_keys() if only_relevant else FIELD_NAMES
        out = {}
        for key in keys:
            value = getattr(self, key)
            if skip_defaults and value == getattr(DEFAULT, key):
                continue
            out[key] = format_value(value)
        return out

    def to_cli_args(self) -> list[str]:
        args = []
        for key, value in self.to_params().items():
            args += [f"--{key.replace('_', '-')}", value]
        return args

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], *, base: TrainConfig | None = None
    ) -> tuple[TrainConfig, list[ConfigProblem]]:
        """Build a config from string (or typed) values, never raising.

        A ``preset`` key, if present, is applied first; explicit keys override
        it. Keys may use ``-`` or ``_``. Unknown keys are reported; a bad value
        is reported and the base's value kept.
        """
        config = base or DEFAULT
        problems: list[ConfigProblem] = []
        normalised = {str(k).replace("-", "_"): v for k, v in params.items()}
        preset = normalised.pop("preset", None)
        if preset not in (None, ""):
            if isinstance(preset, list | tuple):
                preset = preset[-1]
            if preset in PRESETS:
                config = PRESETS[preset].config
            else:
                problems.append(
                    ConfigProblem(
                        "preset",
                        f"unknown preset {echo(preset)}; choose one of {', '.join(PRESETS)}",
                    )
                )
        changes = {}
        for key, raw in normalised.items():
            if key not in FIELDS:
                problems.append(ConfigProblem(echo(key)[1:-1], "is not a setting"))
                continue
            if isinstance(raw, list | tuple):  # repeated URL parameter: last wins
                raw = raw[-1]
            try:
                value = parse_value(FIELDS[key], raw)
            except ValueError as error:
                problems.append(ConfigProblem(key, str(error)))
                continue
            changes[key] = value
        config = dataclasses.replace(config, **changes).canonical()
        # Cross-field checks (the budget, tbptt against the sequence): values valid
        # one by one but not together. They are one problem, naming every limit
        # passed, and the keys blamed fall back to the defaults (all of them, if
        # the combination is still too large).
        together = config.problems()
        if together:
            keys = list(dict.fromkeys(p.key for p in together))
            problems.append(ConfigProblem(", ".join(keys), "; ".join(p.message for p in together)))
            config = dataclasses.replace(config, **{k: getattr(DEFAULT, k) for k in keys})
            if config.problems():
                config = DEFAULT
        return config, problems


@dataclass(frozen=True)
class ConfigProblem:
    """One bad setting: which key, and what is wrong, in one line."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(ValueError):
    """Raised by ``TrainConfig.validated`` with every problem found."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


FIELDS = {f.name: f for f in fields(TrainConfig)}
FIELD_NAMES = tuple(FIELDS)
DEFAULT = TrainConfig()


def format_value(value: Any) -> str:
    if isinstance(value, bool):  # URL and command-line spelling: true / false
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 1e-4 or value == 0 else repr(value)
    return str(value)


ECHO_CHARS = 40  # how much of a bad value a message repeats


def echo(raw: Any) -> str:
    """A bad value as a message repeats it: quoted, one line, at most ``ECHO_CHARS`` long."""
    text = " ".join(str(raw).split())
    if len(text) > ECHO_CHARS:
        text = text[: ECHO_CHARS - 1] + "…"
    return repr(text)


def parse_value(f: dataclasses.Field | Mapping[str, Any], raw: Any) -> Any:
    """Parse one value of field ``f`` (or of a field's metadata); raise ValueError in one line.

    Every URL key of every page is parsed here (``clipviz.app.urlkeys`` declares
    the keys that are not ``TrainConfig`` fields with the same metadata).
    """
    meta = f.metadata if isinstance(f, dataclasses.Field) else f
    kind = meta["kind"]
    text = str(raw).strip()
    if kind is str:
        value: Any = text.lower()
    elif kind is bool:
        value = _parse_bool(text)
    elif kind is int:
        if isinstance(raw, bool):
            raise ValueError(f"expected a whole number, got {echo(raw)}")
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {echo(text)}") from None
        if not math.isfinite(number) or number != int(number):
            raise ValueError(f"expected a whole number, got {echo(text)}")
        value = int(number)
    else:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {echo(text)}") from None
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {echo(text)}")
        if value != 0 and abs(value) < FLOAT32_TINY:
            raise ValueError(
                f"{echo(text)} is too small: training computes in float32, whose smallest "
                f"normal number is {FLOAT32_TINY:.3g}, so it would act as 0"
            )
    message = _check_meta(meta, value)
    if message:
        raise ValueError(message)
    return value


FLOAT32_TINY = 1.1754943508222875e-38  # numpy.finfo(numpy.float32).tiny


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {echo(text)}")


def _check_value(f: dataclasses.Field, value: Any) -> str | None:
    return _check_meta(f.metadata, value)


def _check_meta(meta: Mapping[str, Any], value: Any) -> str | None:
    if meta.get("choices") is not None:
        if value not in meta["choices"]:
            return f"unknown value {echo(value)}; choose one of {', '.join(meta['choices'])}"
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if isinstance(value, float) and value != 0 and abs(value) < FLOAT32_TINY:
        return f"{value!r} is too small for float32 (it would act as 0)"
    if "gt" in meta and not value > meta["gt"]:
        return f"must be greater than {meta['gt']:g}, got {_beside(value, meta['gt'])}"
    if "ge" in meta and not value >= meta["ge"]:
        return f"must be at least {meta['ge']:g}, got {_beside(value, meta['ge'])}"
    if "lt" in meta and not value < meta["lt"]:
        return f"must be below {meta['lt']:g}, got {_beside(value, meta['lt'])}"
    if "le" in meta and not value <= meta["le"]:
        return f"must be at most {meta['le']:g}, got {_beside(value, meta['le'])}"
    return None


def _beside(value: Any, bound: float) -> str:
    """``value`` as a message shows it next to ``bound``: every digit when the short
    form would look equal to it ("must be at least 3, got 2.999999999997", not "got 3")."""
    shown = format_value(value)
    return repr(value) if shown == f"{bound:g}" else shown


# ---- presets ------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """A named starting configuration, with a sentence on what it shows."""

    name: str
    title: str
    description: str
    config: TrainConfig


def _preset(name: str, title: str, description: str, **changes: Any) -> Preset:
    return Preset(name, title, description, dataclasses.replace(DEFAULT, **changes).canonical())


# Recurrent presets: the adding problem, SGD with momentum 0.9, batches of 128 from
# 2,048 training sequences. Each pair differs only in clipping. Tuned so that for every
# seed 0..4 the unclipped run overflows float32 within a few dozen steps, and the run
# clipped by global norm stays finite and learns the task: its test MSE ends below half
# the mean guess's (tests/test_presets.py). Measured: in both nets the oversized steps
# push the units to saturation, after which the output layer's steps overshoot more
# each time until the numbers overflow; the RNN's gradient grows back through time
# (spectral radius 1.5), the LSTM's fades.
_LSTM_LONG = dict(
    network="lstm", task="adding", seq_len=20, hidden_size=32, lr=1.0, momentum=0.9,
    batch_size=64, epochs=30, n_train=2048, target_scaling="none",
)  # fmt: skip
_RNN_LONG = dict(
    network="rnn", task="adding", seq_len=20, hidden_size=32, recurrent_scale=1.5, lr=0.2,
    momentum=0.9, batch_size=64, epochs=60, n_train=2048, target_scaling="none",
)  # fmt: skip
LSTM_CLIP_NORM = 0.5
RNN_CLIP_NORM = 0.1

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        _preset(
            "tutorial_unscaled",
            "Tutorial: unscaled target, no clipping",
            "The reference MLP on a target that runs to several hundred on either side of zero. "
            "It blows up within a few steps.",
        ),
        _preset(
            "tutorial_clip_norm",
            "Tutorial: clip by norm at 1.0",
            "The same run with the global gradient norm capped at 1.0. It trains.",
            clip_mode="norm",
            clip_norm=1.0,
        ),
        _preset(
            "tutorial_clip_value",
            "Tutorial: clip by value at 5.0",
            "The same run with every gradient component clamped into [-5, 5]. It trains.",
            clip_mode="value",
            clip_value=5.0,
        ),
        _preset(
            "tutorial_scaled",
            "Tutorial: standardized target",
            "No clipping, but the target is standardized on the training rows. It trains.",
            target_scaling="standardize",
        ),
        _preset(
            "lstm_long_explodes",
            "LSTM, explodes",
            "An LSTM reads 20-step sequences of the adding problem, trained by SGD with "
            "learning rate 1 and momentum 0.9: steps too large for it. Its gradient fades "
            "back through time, yet a few oversized updates push its gates to saturation; "
            "from then on each update of the output layer overshoots further than the last, "
            "and within a few dozen steps the numbers pass float32's range.",
            **_LSTM_LONG,
        ),
        _preset(
            "lstm_long_clipped",
            "LSTM, clipped",
            "The same LSTM, the only change: the global gradient norm is capped at 1. The "
            "oversized gradients are scaled down, the run stays finite and it learns the "
            "task, ending far below the error of always guessing the mean.",
            **_LSTM_LONG,
            clip_mode="norm",
            clip_norm=LSTM_CLIP_NORM,
        ),
        _preset(
            "rnn_explodes",
            "Vanilla RNN, explodes",
            "A tanh RNN whose recurrent weights start with spectral radius 1.5 reads 20-step "
            "sequences, trained by SGD with learning rate 0.2 and momentum 0.9: steps too "
            "large for it. Its gradient grows back through time; within a few steps an "
            "update driven by the recurrent weights' gradient throws the net into "
            "saturation, the output layer's updates then overshoot further each step, and "
            "within a few dozen steps the numbers pass float32's range.",
            **_RNN_LONG,
        ),
        _preset(
            "rnn_clipped",
            "Vanilla RNN, clipped",
            "The same RNN, the only change: the global gradient norm is capped at 0.1, about "
            "the size of its gradient once training has settled. The oversized gradients "
            "are scaled down, the run stays finite and it learns the task, ending far "
            "below the error of always guessing the mean.",
            **_RNN_LONG,
            clip_mode="norm",
            clip_norm=RNN_CLIP_NORM,
        ),
    ]
}

# The second source's experiment (the article on how gradient clipping helps against
# exploding gradients): a Keras LSTM(10) reads each image one row per time step and is
# trained without clipping, then with `clipvalue`. Stated there and kept: 10 LSTM units,
# batches of 32, 10 epochs, pixels scaled to [0, 1], clip by value, whose example value
# in its text is 0.5. Our copy of the article lost its compile lines, so the optimizer
# and learning rate are ours: SGD with momentum 0.9 as in the reference experiment, at
# the learning rate 0.1 at which both runs learn the digits in 10 epochs (over 80% test
# accuracy for seeds 0..4). Our data set is scikit-learn's 1,797 8x8 digits (1,000 to
# train), so an epoch is 32 steps, not the article's 500. The two presets differ only
# in clip_mode, so as a twin in the Lab they start from the same weights and see the
# same batches. ``clipviz.lessons.digits`` runs them over several seeds.
_DIGITS_LSTM = dict(
    network="lstm", task="digits", hidden_size=10, seq_len=8, n_train=1000, batch_size=32,
    epochs=10, optimizer="sgd", lr=0.1, momentum=0.9, clip_value=0.5, target_scaling="none",
)  # fmt: skip
_DIGITS_NOTE = (
    " The source states the 10 units, batch 32, 10 epochs and clip by value (0.5 is its "
    "example value); it does not show its optimizer, so SGD with learning rate 0.1 and "
    "momentum 0.9 are our choice."
)
PRESETS.update(
    {
        p.name: p
        for p in [
            _preset(
                "digits_lstm_noclip",
                "LSTM reads digits row by row, no clipping",
                "An LSTM with 10 units reads each 8x8 digit one row per time step and names "
                "the digit, as in the source that clips by value, here without clipping. "
                "It learns: most test digits right after 10 epochs (guessing gets 10%)."
                + _DIGITS_NOTE,
                **_DIGITS_LSTM,
            ),
            _preset(
                "digits_lstm_clipvalue",
                "LSTM reads digits row by row, clip by value 0.5",
                "The same LSTM with every gradient component clamped into [-0.5, 0.5], "
                "the source's clipvalue. Twin it with the unclipped run to compare: on these "
                "digits few gradient components reach 0.5, so clipping changes few steps."
                + _DIGITS_NOTE,
                **_DIGITS_LSTM,
                clip_mode="value",
            ),
        ]
    }
)


def preset_config(name: str) -> TrainConfig:
    try:
        return PRESETS[name].config
    except KeyError:
        raise ConfigError(
            [
                ConfigProblem(
                    "preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}"
                )
            ]
        ) from None
