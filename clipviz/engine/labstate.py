"""The Training Lab's state as a link: one codec, ``LabState.from_query`` / ``to_query``.

What the Lab shows is a ``TrainConfig`` plus a few things that are not
training settings: the preset it came from, the twin run and how the twin
clips, and a teacher's trims (``hide``: controls to hide; ``autoplay``: start
playing when the page opens). Every link to the Lab that the app writes (the
address bar, the share link, the tutorial's and the home page's links, the
stability map's "Open in the Lab", the exported scripts' header) is
``LabState.to_query()``, and every link the Lab reads goes through
``LabState.from_query``, so a configuration has exactly one way to be written.

The written form: ``preset=<name>`` while the settings are exactly that
preset's, then every relevant setting that differs from the defaults (so the
link still holds when the preset later changes), then the twin and teacher
keys. Bad values never raise: ``from_query`` returns the state built from the
good values and one ``ConfigProblem`` per bad one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from clipviz.engine.config import (
    CLIP_MODES,
    DEFAULT,
    FIELDS,
    GROUPS,
    PRESETS,
    ConfigProblem,
    TrainConfig,
    echo,
    parse_value,
)

CUSTOM = "custom"  # the preset picker's entry for "my own settings"
TWIN_KEY = "twin"
TWIN_MODE_KEY = "twin_clip_mode"
HIDE_KEY = "hide"
AUTOPLAY_KEY = "autoplay"
PRESET_KEY = "preset"
# What a teacher's link can hide besides single settings: whole groups of the
# sidebar, the twin controls, and the share-and-export section.
HIDE_GROUPS = (*GROUPS, "twin", "export")
HIDEABLE = (*HIDE_GROUPS, *FIELDS)

# The link's keys that are not ``TrainConfig`` fields, declared in the fields'
# metadata form: one parser (``config.parse_value``) reads every key of the Lab's
# URL, and the public interface lists them all (``clipviz.app.urlkeys``).
LINK_KEYS: dict[str, dict] = {
    PRESET_KEY: {
        "kind": str,
        "help": "a named starting configuration; settings in the same link override it",
        "choices": (CUSTOM, *PRESETS),
        "default": CUSTOM,
    },
    TWIN_KEY: {
        "kind": bool,
        "help": "train a twin in lock-step (same start, same batches) that differs only "
        "in clipping",
        "choices": None,
        "default": False,
    },
    TWIN_MODE_KEY: {
        "kind": str,
        "help": "how the twin clips (by default: not at all if you clip, else by norm)",
        "choices": CLIP_MODES,
        "default": None,
    },
    HIDE_KEY: {
        "kind": str,
        "help": "comma-separated settings or groups whose controls a teacher's link hides",
        "choices": None,
        "each_of": HIDEABLE,
        "default": "",
    },
    AUTOPLAY_KEY: {
        "kind": bool,
        "help": "start playing when the page opens",
        "choices": None,
        "default": False,
    },
}
LAB_KEYS = frozenset({*LINK_KEYS, *FIELDS})


def default_twin_mode(config: TrainConfig) -> str:
    """The comparison a twin makes by default: unclipped if you clip, else clip by norm."""
    return "none" if config.clipped else "norm"


@dataclass(frozen=True)
class LabState:
    """Everything a link to the Lab says."""

    config: TrainConfig = DEFAULT
    preset: str = CUSTOM  # a preset's name while ``config`` is exactly that preset
    twin: bool = False
    twin_clip_mode: str | None = None  # None: the default comparison for this config
    hide: tuple[str, ...] = ()  # setting keys and groups a teacher's link hides
    autoplay: bool = False

    def __post_init__(self) -> None:
        # One state, one form: the config without settings that do not matter for
        # it (a link does not carry them), a preset name only while it describes
        # the config, and a twin mode only when it differs from the config's own.
        object.__setattr__(self, "config", self.config.canonical())
        if self.preset not in PRESETS or PRESETS[self.preset].config != self.config:
            object.__setattr__(self, "preset", CUSTOM)
        mode = self.twin_clip_mode
        if mode is not None and (mode not in CLIP_MODES or mode == self.config.clip_mode):
            object.__setattr__(self, "twin_clip_mode", None)
        hide = tuple(dict.fromkeys(k for k in self.hide if k in HIDEABLE))
        object.__setattr__(self, "hide", hide)

    @classmethod
    def of_preset(cls, name: str, **changes) -> LabState:
        return cls(PRESETS[name].config, name, **changes)

    def replace(self, **changes) -> LabState:
        return dataclasses.replace(self, **changes)

    # ---- derived -----------------------------------------------------------
    @property
    def effective_twin_mode(self) -> str:
        return self.twin_clip_mode or default_twin_mode(self.config)

    @property
    def twin_config(self) -> TrainConfig | None:
        """The twin's configuration: yours with another clip mode (None without a twin)."""
        if not self.twin:
            return None
        return self.config.replace(clip_mode=self.effective_twin_mode)

    def hides(self, key: str) -> bool:
        """Whether a teacher's link hides ``key`` (a setting, or a whole group)."""
        if key in self.hide:
            return True
        if key in FIELDS:
            return FIELDS[key].metadata["group"] in self.hide
        return False

    # ---- the link ----------------------------------------------------------
    def to_params(self) -> dict[str, str]:
        """The link's parameters, in the one written form (see the module docstring)."""
        out: dict[str, str] = {}
        if self.preset != CUSTOM:
            out[PRESET_KEY] = self.preset
        out.update(self.config.to_params(skip_defaults=True))
        if self.twin:
            out[TWIN_KEY] = "true"
            if self.twin_clip_mode is not None:
                out[TWIN_MODE_KEY] = self.twin_clip_mode
        if self.hide:
            out[HIDE_KEY] = ",".join(self.hide)
        if self.autoplay:
            out[AUTOPLAY_KEY] = "true"
        return out

    def to_query(self) -> str:
        """The query string (without '?') that opens exactly this state."""
        return urlencode(self.to_params(), safe=",")

    def url(self, page: str = "/lab") -> str:
        query = self.to_query()
        return f"{page}?{query}" if query else page

    @classmethod
    def from_query(cls, params: Mapping[str, object]) -> tuple[LabState, list[ConfigProblem]]:
        """The state a link asks for, and one problem per bad value; never raises.

        ``params`` maps keys to a value or a list of values (a repeated key: the
        last counts, as Streamlit reads it). ``preset`` is applied first and
        explicit settings override it. A bad value falls back to the default;
        settings that are each valid but too large together are refused as one
        problem naming the limit (``TrainConfig.from_params``).
        """
        raw = {str(k).replace("-", "_"): _last(v) for k, v in params.items()}
        problems: list[ConfigProblem] = []
        twin = _flag(raw.pop(TWIN_KEY, None), TWIN_KEY, problems)
        autoplay = _flag(raw.pop(AUTOPLAY_KEY, None), AUTOPLAY_KEY, problems)
        twin_mode = _parsed(raw.pop(TWIN_MODE_KEY, None), TWIN_MODE_KEY, problems)
        hide: list[str] = []
        if HIDE_KEY in raw:
            for part in str(raw.pop(HIDE_KEY)).split(","):
                part = part.strip().lower()
                if not part:
                    continue
                if part in HIDEABLE:
                    hide.append(part)
                else:
                    problems.append(
                        ConfigProblem(
                            HIDE_KEY,
                            f"cannot hide {echo(part)}: name a setting or one of "
                            f"{', '.join(HIDE_GROUPS)}",
                        )
                    )
        # Read like every other key (" Tutorial_Unscaled " is the preset too);
        # ``from_params`` applies it first and lets the link's settings override it.
        preset = _parsed(raw.pop(PRESET_KEY, None), PRESET_KEY, problems)
        if preset != CUSTOM:
            raw[PRESET_KEY] = preset
        config, found = TrainConfig.from_params(raw)
        problems += found
        bad = {key for p in found for key in p.key.split(", ")}
        ignored = []
        for key, value in raw.items():
            if key in bad or key not in FIELDS:
                continue
            try:
                wanted = parse_value(FIELDS[key], value)
            except ValueError:  # pragma: no cover - from_params reported it already
                continue
            if getattr(config, key) != wanted:  # a cross-field check fell back to defaults
                ignored.append(key)
        if ignored:
            problems.append(
                ConfigProblem(
                    ", ".join(ignored),
                    "ignored: together with the setting named above they do not fit",
                )
            )
        state = cls(config, preset, twin, twin_mode, tuple(hide), autoplay)
        return state, problems


def _last(value):
    if isinstance(value, list | tuple):
        return value[-1] if value else ""
    return value


def _parsed(value, key: str, problems: list[ConfigProblem]):
    """``value`` of the link key ``key`` parsed by its declaration, or its default
    (absent or empty: silently; bad: with a problem)."""
    meta = LINK_KEYS[key]
    if value is None or not str(value).strip():
        return meta["default"]
    try:
        return parse_value(meta, value)
    except ValueError as error:
        problems.append(ConfigProblem(key, str(error)))
        return meta["default"]


def _flag(value, key: str, problems: list[ConfigProblem]) -> bool:
    return bool(_parsed(value, key, problems))


def lab_url(config: TrainConfig, page: str = "/lab") -> str:
    """A link that opens ``config`` in the Lab (its preset's name when it is one)."""
    config = config.canonical()
    preset = next((n for n, p in PRESETS.items() if p.config == config), CUSTOM)
    return LabState(config, preset).url(page)
