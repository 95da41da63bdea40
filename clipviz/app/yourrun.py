"""What the ``/your_run`` page needs that is not widgets: its state, and its words.

One browser session holds at most two logs, in its own session state and
nowhere else (never on disk, never in a cache shared by sessions):

* ``YourRun.current``: the last log that could be read and diagnosed, with
  the columns it was read with; it stays on the page while a bad file or a
  bad choice of columns is reported above it.
* ``YourRun.candidate``: the log being set up (just uploaded, its columns not
  yet chosen); it becomes ``current`` as soon as its columns read.

``YourRun.load`` takes an upload's bytes (or an example's) and
``YourRun.choose`` a choice of columns; both return nothing and leave a
one-line ``problem`` when something is wrong. The text helpers turn a
diagnosis into the page's sentences; everything that comes from a file is
escaped (``plain_markdown``), so a column named ``**x**`` shows as typed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipviz.app.urlkeys import plain_markdown
from clipviz.lessons import yourrun
from clipviz.lessons.yourrun import ColumnMap, LogFile, RunDiagnosis, RunLog, SpikeRule

NO_LOSS = "(no loss column)"

GRADLOG_SNIPPET = """\
from clipviz import GradientLog

log = GradientLog(model, path="run.csv")
for x, y in batches:
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    log.step(loss, optimizer)  # after backward(), before you clip
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # if you clip
    optimizer.step()
log.close()
"""


@dataclass(frozen=True)
class Loaded:
    """A log read from a file, and the name to call it by."""

    log: LogFile
    name: str


@dataclass(frozen=True)
class Chosen:
    """A log with its columns chosen: ready to diagnose."""

    loaded: Loaded
    run_log: RunLog


class YourRun:
    """One session's logs: the last good one, and the one being set up (module docstring)."""

    def __init__(self) -> None:
        self.current: Chosen | None = None
        self.candidate: Loaded | None = None
        self.problem: str | None = None
        self.columns_problem = False  # the problem is the candidate's columns, not a file

    def load(self, data: bytes, name: str) -> None:
        """Read an upload; a bad file leaves ``problem`` and keeps the current log."""
        log = yourrun.read_log(data, filename=name)
        if isinstance(log, list):
            self.problem = f"{name} could not be read: {log[0]}"
            self.columns_problem = False
            return
        self.candidate = Loaded(log, name)
        self.problem = None
        self.choose(log.guess, None)

    def choose(self, mapping: ColumnMap | None, run: str | None) -> None:
        """Read the candidate with these columns; a bad choice leaves ``problem``."""
        if self.candidate is None:
            return
        chosen = yourrun.select(self.candidate.log, mapping, run)
        if isinstance(chosen, list):
            self.problem = f"{self.candidate.name}: {chosen[0]}"
            self.columns_problem = True
            return
        self.current = Chosen(self.candidate, chosen)
        self.problem = None
        self.columns_problem = False

    @property
    def shows_last_good(self) -> bool:
        """A problem is reported while an older log is still shown."""
        return self.problem is not None and self.current is not None


def mapping_of(step: str | None, norm: str | None, loss: str | None) -> ColumnMap | None:
    """The columns chosen on the page; None until both the step and the norm are chosen."""
    if step is None or norm is None:
        return None
    return ColumnMap(step, norm, None if loss in (None, NO_LOSS) else loss)


def diagnose(chosen: Chosen, rule: SpikeRule, steps_per_epoch: int | None = None) -> RunDiagnosis:
    return yourrun.diagnose(chosen.run_log, rule=rule, steps_per_epoch=steps_per_epoch)


# ---- words -----------------------------------------------------------------------------


def problem_text(problem: str) -> str:
    return plain_markdown(problem)


def summary_text(diagnosis: RunDiagnosis, name: str) -> str:
    """'**run.csv**: 1,600 steps, read as a clipviz log (step `step`, ...).'"""
    log, columns = diagnosis.log, diagnosis.log.mapping
    parts = [
        f"step {plain_markdown(repr(columns.step))}",
        f"gradient norm {plain_markdown(repr(columns.grad_norm))}",
        f"loss {plain_markdown(repr(columns.loss))}" if columns.loss else "no loss",
    ]
    run = f", run {plain_markdown(repr(log.run))}" if log.run is not None else ""
    return (
        f"**{plain_markdown(name)}**: {diagnosis.steps:,} steps, read as a "
        f"{plain_markdown(log.source)} log ({', '.join(parts)}{run})."
    )


def clipping_text(diagnosis: RunDiagnosis) -> str | None:
    """What the log says about its own clipping, when it says anything."""
    extra = diagnosis.log.extra
    parts = []
    if "clipped" in extra:
        share = float(np.mean(extra["clipped"] > 0))
        parts.append(f"your run clipped {share:.1%} of its steps")
    threshold = extra.get("clip_threshold")
    if threshold is not None and np.isfinite(threshold).any():
        values = np.unique(threshold[np.isfinite(threshold)])
        shown = (
            f"{values[0]:.4g}" if values.size == 1 else f"{values.min():.4g}..{values.max():.4g}"
        )
        parts.append(f"at a threshold of {shown}")
    if not parts:
        return None
    return (
        "According to the log, " + " ".join(parts) + ". The norms here are the ones before "
        "clipping, so the suggestions below can sit far above the threshold you used."
    )


def finding_lines(diagnosis: RunDiagnosis) -> list[str]:
    """One numbered line per sign (the numbers match the chart's 'sign N' marks)."""
    return [
        f"{i}. **{f.sign.title}** from step {f.step}: {plain_markdown(f.detail)}. *{f.sign.why}*"
        for i, f in enumerate(diagnosis.findings, start=1)
    ]


def spike_text(diagnosis: RunDiagnosis, limit: int = 25) -> str:
    spikes = diagnosis.spikes
    rule = spikes.rule
    if not spikes.steps:
        judged = diagnosis.steps - rule.warmup
        if judged <= 0:
            return (
                f"No spikes can be judged: the log has {diagnosis.steps} steps and the "
                f"detector's warm-up takes the first {rule.warmup}."
            )
        return f"No step's z-score passed {rule.z:g}: no spikes."
    shown = ", ".join(str(s) for s in spikes.steps[:limit])
    more = f" and {len(spikes.steps) - limit} more" if len(spikes.steps) > limit else ""
    return (
        f"**{len(spikes.steps)} spike{'s' if len(spikes.steps) != 1 else ''}**, at step"
        f"{'s' if len(spikes.steps) != 1 else ''} {shown}{more}."
    )


def threshold_rows(diagnosis: RunDiagnosis) -> list[dict]:
    """The suggested thresholds as table rows (numbers left as numbers for sorting)."""
    return [
        {
            "percentile": f"{t.percentile:g}th",
            "threshold": t.threshold,
            "steps it would have clipped": 100 * t.clipped_fraction,
        }
        for t in diagnosis.thresholds
    ]
