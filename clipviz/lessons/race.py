"""The rule race: one network, every clipping rule, trained in lock-step.

``run_race(config)`` trains ``config`` once per rule in ``RACE_MODES`` (no
clipping, the two classic rules and the three adaptive ones), every run from
the same initial weights on the same batches (same seed, same batch size),
stepping them together in chunks, so the only difference between two runs is
the rule. The Training Lab overlays their loss and gradient norms and tabulates
what each did (``RaceEntry``).

A rule's own settings are the config's (``clip_norm``, ``clip_value``,
``autoclip_percentile``, ``agc_lambda``, the ZClip settings). The runs differ in
their rule, so each is its own trainer rather than a lane of one: lanes share
one rule and differ in its thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from clipviz.engine.config import CLIP_MODE_LABELS, TrainConfig
from clipviz.engine.result import RunResult
from clipviz.engine.trainer import Trainer

RACE_MODES = ("none", "norm", "value", "autoclip", "agc", "zclip")
CHUNK = 50  # steps each runner takes before the next one catches up


@dataclass(frozen=True)
class RaceEntry:
    """One rule's run in the race, and what it did."""

    mode: str
    result: RunResult

    @property
    def label(self) -> str:
        return CLIP_MODE_LABELS[self.mode]

    @property
    def outcome(self) -> str:
        """What the run did, in a few computed words."""
        result = self.result
        if result.exploded_at is not None:
            return f"explodes at step {result.exploded_at:,}"
        if result.learned:
            return "learns"
        return "stays finite, does not learn"

    def shown_row(self) -> dict[str, str]:
        """The row as a learner reads it: numbers written out, a dash where there is none."""
        row = self.row()
        final, largest = row["final test loss"], row["largest ‖g‖"]
        return {
            "rule": row["rule"],
            "outcome": row["outcome"],
            "exploded at step": "—"
            if row["exploded at step"] is None
            else f"{row['exploded at step']:,}",
            "final test loss": "—" if final is None else f"{final:.4g}",
            "steps clipped": f"{row['steps clipped']:.0%}",
            "largest ‖g‖": f"{largest:.3g}" if math.isfinite(largest) else "overflow",
        }

    def row(self) -> dict:
        """The outcomes table's row (losses in the target's original units)."""
        result = self.result
        final = result.final_test_mse
        return {
            "rule": self.mode,
            "outcome": self.outcome,
            "exploded at step": result.exploded_at,
            "final test loss": final if math.isfinite(final) else None,
            "steps clipped": result.clipped_fraction,
            "largest ‖g‖": result.max_grad_norm,
        }


def race_configs(config: TrainConfig) -> list[TrainConfig]:
    """The race's runs: ``config`` with each rule in turn (same seed, same batches)."""
    return [config.replace(clip_mode=mode) for mode in RACE_MODES]


def run_race(config: TrainConfig) -> list[RaceEntry]:
    """Train every rule on ``config`` to the end, in lock-step, fully recorded."""
    trainers = [Trainer(c) for c in race_configs(config)]
    while not all(t.done for t in trainers):
        for trainer in trainers:
            trainer.step(CHUNK)
    return [
        RaceEntry(mode, trainer.result())
        for mode, trainer in zip(RACE_MODES, trainers, strict=True)
    ]
