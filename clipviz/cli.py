"""The command line: ``python -m clipviz {reproduce,train,worked,sweep,bench,diagnose,loadtest}``.

Every subcommand prints a readable table, or one JSON document with
``--json``. Bad arguments exit with status 2 and a one-line message naming
the argument; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

import numpy as np
import torch

from clipviz.engine import sweep
from clipviz.engine.config import FIELDS, PRESETS, ConfigProblem, TrainConfig


class UsageError(Exception):
    """A bad argument: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, exit 2
        raise UsageError(message)


def _positive_int(name: str, low: int = 1, high: int = 10_000):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be a whole number, got {text!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{name} must be between {low} and {high}, got {value}"
            )
        return value

    return parse


def _positive_float(name: str, low: float, high: float):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(
                f"{name} must be between {low:g} and {high:g}, got {text}"
            )
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m clipviz", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("reproduce", help="the reference experiment over several seeds")
    p.add_argument("--seeds", type=_positive_int("--seeds", 1, 100), default=5)
    p.add_argument(
        "--experiment",
        choices=list(REPRODUCIBLE),
        default="reference",
        help="reference: the MLP of the clipping tutorial (default); digits_lstm: an LSTM "
        "reading digits row by row, with and without clip-by-value",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train one configuration and report the outcome")
    p.add_argument("--preset", choices=list(PRESETS), default=None)
    for name, f in FIELDS.items():
        flags = [f"--{name.replace('_', '-')}"]
        if "_" in name:
            flags.append(f"--{name}")
        p.add_argument(
            *flags,
            dest=name,
            default=None,
            metavar=f.metadata["kind"].__name__.upper(),
            help=f.metadata["help"],
        )
    p.add_argument(
        "--records",
        metavar="FILE.csv",
        default=None,
        help="also write the per-step records there as CSV (clipviz.engine.records)",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("worked", help="clip one vector by value or by norm, step by step")
    p.add_argument(
        "--vector", required=True, help='numbers separated by commas, e.g. "2,-6,8,-3,5"'
    )
    p.add_argument("--mode", required=True, choices=["value", "norm"])
    p.add_argument("--threshold", required=True)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("sweep", help="train a grid of networks at once (stability map)")
    p.add_argument("--network", choices=["mlp", "rnn", "lstm"], default="mlp")
    p.add_argument(
        "--grid",
        type=_positive_int("--grid", 2, 64),
        default=None,
        help="cells per axis (default 16 for the MLP, 8 for recurrent nets)",
    )
    p.add_argument("--epochs", type=_positive_int("--epochs", 1, 1000), default=None)
    p.add_argument(
        "--clip-modes",
        "--clip_modes",
        dest="clip_modes",
        default="norm",
        help=(
            f"comma-separated maps to compute, from {', '.join(sweep.MAP_CLIP_MODES)} "
            "(default: norm); an adaptive rule's rows are its own setting "
            "(AutoClip's percentile, AGC's lambda, ZClip's z)"
        ),
    )
    for name, what in (("lr", "learning rate"), ("threshold", "clip threshold")):
        for end in ("min", "max"):
            p.add_argument(
                f"--{name}-{end}",
                f"--{name}_{end}",
                dest=f"{name}_{end}",
                type=float,
                default=None,
                help=f"{'lowest' if end == 'min' else 'highest'} {what} of the log grid",
            )
    p.add_argument(
        "--zclip-cap",
        "--zclip_cap",
        dest="zclip_cap",
        type=float,
        default=None,
        help="cap the zclip map's norms at this value as well (ZClip's max_grad_norm; default off)",
    )
    p.add_argument("--seed", type=_positive_int("--seed", 0, 2**31 - 1), default=1)
    p.add_argument("--threads", type=_positive_int("--threads", 1, 2), default=None)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "loadtest", help="many learners playing the Lab at once, over Streamlit's websocket"
    )
    p.add_argument("--sessions", type=_positive_int("--sessions", 1, 200), default=30)
    p.add_argument("--seconds", type=_positive_float("--seconds", 1, 3600), default=30.0)
    p.add_argument("--url", default=None, help="a running app on this machine (default: start one)")
    p.add_argument(
        "--path", default="/lab?preset=tutorial_clip_norm", help="the page each learner opens"
    )
    p.add_argument(
        "--settle-seconds",
        type=_positive_float("--settle-seconds", 0, 3600),
        default=180.0,
        help="how long to watch the server after every learner left",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("bench", help="time the fully recorded 1600-step reference run")
    p.add_argument("--repeats", type=_positive_int("--repeats", 1, 100), default=5)
    p.add_argument(
        "--keras", action="store_true", help="also time Keras 3 (torch backend) on the same fit"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "diagnose",
        help="signs, spikes and suggested clip thresholds of your own gradient-norm log (CSV)",
    )
    p.add_argument("file", help="a CSV with a step column and a gradient-norm column")
    for role, what in (
        ("step", "the step number"),
        ("norm", "the gradient norm (before clipping)"),
        ("loss", "the loss"),
    ):
        p.add_argument(
            f"--{role}-column",
            f"--{role}_column",
            dest=f"{role}_column",
            default=None,
            help=f"the column holding {what} (default: guessed from the header)",
        )
    p.add_argument("--run", default=None, help="the run to read, in a file of several")
    p.add_argument(
        "--steps-per-epoch",
        "--steps_per_epoch",
        dest="steps_per_epoch",
        type=_positive_int("--steps-per-epoch", 1, 10_000_000),
        default=None,
        help="steps in an epoch, for the signs judged per epoch (default: from an epoch column)",
    )
    p.add_argument("--json", action="store_true")
    return parser


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string, in every subcommand, that takes a value."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _value_options(sub)
        elif action.option_strings and action.nargs != 0:
            found.update(action.option_strings)
    return found


def _attach_values(argv: list[str], value_options: set[str]) -> list[str]:
    """``--lr -inf`` -> ``--lr=-inf``: a value that starts with ``-`` is still a value.

    argparse reads ``-inf`` or ``-6,8`` after an option as another option
    and fails with "expected one argument"; written as ``--lr=-inf`` it is
    the value, and goes on to the option's own check.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        following = argv[i + 1] if i + 1 < len(argv) else None
        if (
            token in value_options
            and following is not None
            and following.startswith("-")
            and following not in value_options
            and not following.startswith("--")
        ):
            out.append(f"{token}={following}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


MAX_MESSAGE = 300  # characters of an error line (a bad value may be 5,000 long)


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line, at most ``limit`` characters: a value typed with a
    newline in it, or a very long one, still gives the one-line error of the
    interface."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The process's policy (not the library's): one thread for the tiny networks
    # of train/reproduce/bench; the sweep raises it for its batched products.
    torch.set_num_threads(1)
    try:
        parser = build_parser()
        args = parser.parse_args(_attach_values(argv, _value_options(parser)))
        output = COMMANDS[args.command](args)
    except UsageError as error:
        print(f"error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if output is not None:
        print(output)
    return 0


# ---- commands --------------------------------------------------------------


def _json(document: dict) -> str:
    return json.dumps(document, indent=2, allow_nan=False, default=_clean)


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {value!r}")


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN"
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


REPRODUCIBLE = ("reference", "digits_lstm")


def cmd_reproduce(args) -> str:
    if args.experiment == "digits_lstm":
        return reproduce_digits(args)
    from clipviz.lessons.experiments import reproduce

    rows = [r.as_row() for r in reproduce(args.seeds)]
    if args.json:
        return _json({"seeds": args.seeds, "rows": rows})
    body = table(
        [
            "experiment",
            "runs",
            "exploded",
            "train MSE (median)",
            "test MSE (median)",
            "published train",
            "published test",
        ],
        [
            [
                r["experiment"],
                r["runs"],
                r["exploded_runs"],
                r["train_mse_median"],
                r["test_mse_median"],
                r["published_outcome"] or r["published_train_mse"],
                r["published_outcome"] or r["published_test_mse"],
            ]
            for r in rows
        ],
    )
    notes = "\n".join(f"  {r['experiment']}: {r['note']}" for r in rows)
    return f"{body}\n\nMSE in the target's original units; published figures: Keras 2.2, one run.\nWhy ours differ:\n{notes}"


def reproduce_digits(args) -> str:
    """``reproduce --experiment digits_lstm``: both digits presets over seeds 0..N-1, at
    their learning rate and higher ones, and the verdict on the source's claim."""
    from clipviz.lessons import digits

    if args.seeds > digits.MAX_SEEDS:
        raise UsageError(
            f"argument --seeds: the digits_lstm experiment runs at most {digits.MAX_SEEDS} "
            f"seeds, got {args.seeds}"
        )
    study = digits.run_study(args.seeds)
    rows = study.rows()
    verdict = digits.verdict(study)
    if args.json:
        return _json(
            {
                "experiment": "digits_lstm",
                "seeds": args.seeds,
                "rows": rows,
                "verdict": verdict.as_dict(),
            }
        )

    def pct(value) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    clip_value = digits.preset_config("value").clip_value

    body = table(
        [
            "experiment",
            "lr",
            "clipping",
            "runs",
            "failed",
            "test acc (median)",
            "test acc (min..max)",
            "train acc (median)",
            "test loss (median)",
        ],
        [
            [
                r["experiment"],
                f"{r['lr']:g}",
                "none" if r["clip_mode"] == "none" else f"value {clip_value:g}",
                r["runs"],
                r["failed_runs"],
                pct(r["test_accuracy_median"]),
                f"{pct(r['test_accuracy_min'])}..{pct(r['test_accuracy_max'])}",
                pct(r["train_accuracy_median"]),
                r["test_loss_median"],
            ]
            for r in rows
        ],
    )
    return (
        f"{body}\n\nLoss: cross-entropy on the test digits. Failed: exploded or ended below "
        f"{100 * digits.FAIL_ACCURACY:.0f}% test accuracy (guessing gets 10%).\n\n"
        + "\n".join(verdict.sentences)
    )


def config_from_args(args) -> TrainConfig:
    params = {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}
    if args.preset:
        params["preset"] = args.preset
    config, problems = TrainConfig.from_params(params)
    if problems:
        raise UsageError(_problem_line(problems[0]))
    return config


def _problem_line(problem: ConfigProblem) -> str:
    return f"argument --{problem.key.replace('_', '-')}: {problem.message}"


def cmd_train(args) -> str:
    from clipviz.engine.trainer import Trainer
    from clipviz.lessons import fixes
    from clipviz.lessons.diagnose import signs_of

    config = config_from_args(args)
    out = _open_for_writing(args.records) if args.records else None
    trainer = Trainer(config).run()
    if out is not None:
        from clipviz.app.export import records_csv

        with out:
            out.write(records_csv(trainer))
    result = trainer.result()
    findings = signs_of(trainer)
    tried = fixes.verify_fixes(config) if result.exploded_at or findings else []
    document = {
        **result.as_dict(),
        "signs": [{"sign": f.key, "step": f.step, "detail": f.detail} for f in findings],
        "fixes": [v.as_dict() for v in fixes.offered(tried)],
        "fixes_tried": [v.as_dict() for v in tried],
    }
    if args.json:
        return _json(document)
    lines = [f"{config.label()}"]
    lines += [
        f"  {k:<20} {_fmt(v)}"
        for k, v in document.items()
        if k not in ("config", "signs", "fixes", "fixes_tried")
    ]
    lines.append("  signs" + ("" if findings else "                none"))
    lines += [f"    step {f.step:>6}  {f.sign.title}: {f.detail}" for f in findings]
    if tried:
        lines.append("  fixes (each trained to the end from the same start)")
        lines += [
            f"    {'works' if v.works else 'fails'}  {v.fix.label}: {v.outcome}" for v in tried
        ]
    return "\n".join(lines)


def _open_for_writing(path: str):
    """The file ``--records`` names, opened before training so a bad path fails at once."""
    try:
        return open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed by the caller)
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise UsageError(f"argument --records: cannot write {path!r}: {reason}") from None


def cmd_worked(args) -> str:
    from clipviz.lessons.worked import WorkedInputError, compute, parse_threshold, parse_vector

    try:
        vector = parse_vector(args.vector)
    except WorkedInputError as error:
        raise UsageError(f"argument --vector: {error}") from None
    try:
        threshold = parse_threshold(args.threshold)
    except WorkedInputError as error:
        raise UsageError(f"argument --threshold: {error}") from None
    result = compute(vector, args.mode, threshold)
    return _json(result.as_dict()) if args.json else result.table()


def cmd_sweep(args) -> str:
    return run_sweep_command(args, as_json=args.json)


def cmd_loadtest(args) -> str:
    from clipviz.tools import loadtest

    if not args.path.startswith("/"):
        raise UsageError(f"--path must start with /, got {args.path!r}")
    progress = None if args.json else (lambda text: print(f"... {text}", file=sys.stderr))
    try:
        result = loadtest.run_loadtest(
            sessions=args.sessions,
            seconds=args.seconds,
            url=args.url,
            path=args.path,
            settle_seconds=args.settle_seconds,
            progress=progress,
        )
    except loadtest.LoadTestError as error:
        raise UsageError(str(error)) from None
    return _json(result) if args.json else loadtest.format_report(result)


def cmd_bench(args) -> str:
    from clipviz.lessons.experiments import bench

    if args.keras:
        try:
            import keras  # noqa: F401
        except ImportError:
            raise UsageError("argument --keras: the keras package is not installed") from None
    result = bench(args.repeats, keras=args.keras).as_dict()
    if args.json:
        return _json(result)
    return "\n".join(f"{k:<22} {v}" for k, v in result.items())


# ---- sweep --------------------------------------------------------------


def spec_from_args(args) -> sweep.SweepSpec:
    """A validated ``SweepSpec`` from the ``sweep`` subcommand's arguments."""

    def given(name: str, default):
        value = getattr(args, name, None)
        return default if value is None else value

    modes = tuple(m.strip() for m in str(given("clip_modes", "norm")).split(",") if m.strip())
    lr_low, lr_high = sweep.LR_RANGE[args.network]
    spec = sweep.SweepSpec(
        network=args.network,
        grid=given("grid", sweep.DEFAULT_GRID[args.network]),
        epochs=given("epochs", None),
        clip_modes=modes,
        lr_range=(given("lr_min", lr_low), given("lr_max", lr_high)),
        threshold_range=(
            given("threshold_min", sweep.THRESHOLD_RANGE[0]),
            given("threshold_max", sweep.THRESHOLD_RANGE[1]),
        ),
        seed=given("seed", 1),
        zclip_cap=given("zclip_cap", None),
    )
    return spec.validated()


def run_sweep_command(args, *, as_json: bool) -> str:
    """The ``sweep`` subcommand: the JSON document, or a summary table per clip mode."""
    try:
        spec = spec_from_args(args)
    except sweep.SweepError as error:
        raise UsageError(f"argument --{error.key}: {error.message}") from None
    result = sweep.run_sweep(spec, threads=getattr(args, "threads", None))
    if as_json:
        return _json(result.as_dict())
    return summary_table(result)


def summary_table(result: sweep.SweepResult) -> str:
    """Per clip mode: how many cells trained, went nowhere, diverged; the best cell."""
    rows = []
    for mode, m in result.maps.items():
        counts = m.counts()
        losses = np.where(np.isfinite(m.final_loss), m.final_loss, np.inf)
        best = np.unravel_index(int(np.argmin(losses)), losses.shape)
        finite = bool(np.isfinite(losses[best]))
        rows.append(
            [
                mode,
                m.final_loss.size,
                counts["trained"],
                counts["no_progress"],
                counts["diverged"],
                float(m.final_loss[best]) if finite else None,
                f"{m.lrs[best[1]]:.3g}" if finite else "-",
                f"{m.thresholds[best[0]]:.3g}" if finite and m.thresholds is not None else "-",
            ]
        )
    body = table(
        [
            "clip mode",
            "cells",
            "trained",
            "no progress",
            "diverged",
            "best train MSE",
            "at lr",
            "threshold / setting",
        ],
        rows,
    )
    spec, base = result.spec, result.base
    per_network_ms = 1000 * result.seconds / result.networks
    ranges = [f"threshold {spec.thresholds[0]:.3g}..{spec.thresholds[-1]:.3g}"]
    ranges += [
        f"{m.row_key} {m.thresholds[0]:.3g}..{m.thresholds[-1]:.3g}"
        for mode, m in result.maps.items()
        if mode in sweep.PARAMETER_RANGE
    ]
    return (
        f"{spec.network.upper()}, {spec.grid} x {spec.grid} grid, {base.epochs} epochs "
        f"({result.steps} steps each), seed {spec.seed}\n"
        f"lr {result.maps[next(iter(result.maps))].lrs[0]:.3g}..{spec.lrs[-1]:.3g}, "
        f"{', '.join(ranges)} (log grids)\n\n"
        f"{body}\n\n"
        f"{result.networks} networks in {result.seconds:.2f} s "
        f"({per_network_ms:.2f} ms per network)\n"
        "no progress: finite, but the final training loss is not below the initial one."
    )


# ---- diagnose -------------------------------------------------------------------


def cmd_diagnose(args) -> str:
    import os

    from clipviz.engine import budget
    from clipviz.engine.csvtable import size_text
    from clipviz.lessons import yourrun

    path = args.file
    try:
        size = os.path.getsize(path)
        if size > budget.MAX_LOG_FILE_BYTES:
            raise UsageError(
                f"{path}: the file is {size_text(size)}, above the limit of "
                f"{size_text(budget.MAX_LOG_FILE_BYTES)}"
            )
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a file") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot be read ({error.strerror or error})") from None
    except ValueError:  # a NUL byte in the name
        raise UsageError(f"{path!r}: not a file name") from None
    log = yourrun.read_log(
        data, filename=os.path.basename(path), max_bytes=budget.MAX_LOG_FILE_BYTES
    )
    if isinstance(log, list):
        raise UsageError(f"{path}: {log[0]}")
    mapping = log.guess
    if args.step_column or args.norm_column or args.loss_column:
        guess = mapping or yourrun.ColumnMap("", "")
        mapping = yourrun.ColumnMap(
            args.step_column or guess.step,
            args.norm_column or guess.grad_norm,
            args.loss_column or guess.loss,
        )
        if not mapping.step or not mapping.grad_norm:
            missing = "--norm-column" if not mapping.grad_norm else "--step-column"
            raise UsageError(f"{path}: no column could be guessed; name it with {missing}")
    chosen = yourrun.select(log, mapping, args.run)
    if isinstance(chosen, list):
        raise UsageError(f"{path}: {chosen[0]}")
    result = yourrun.diagnose(chosen, steps_per_epoch=args.steps_per_epoch)
    if args.json:
        return _json(result.as_dict())
    return diagnosis_table(result, path)


def _norm(value: float) -> str:
    """A gradient norm for the table: 0.0123, 2.5, 8,451, 4.78e+06."""
    if not math.isfinite(value) or abs(value) >= 1e6:
        return f"{value:.3g}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def diagnosis_table(result, path: str) -> str:
    """``diagnose``'s readable report."""
    log, columns = result.log, result.log.mapping
    what = f"gradient norm {columns.grad_norm!r}, step {columns.step!r}"
    what += f", loss {columns.loss!r}" if columns.loss else ", no loss"
    lines = [f"{path}: {result.steps:,} steps ({log.source} log; {what})"]
    if log.run is not None:
        lines.append(f"run: {log.run}")
    if result.exploded_at is not None:
        lines.append(
            f"exploded at step {result.exploded_at}: the loss or the norm is no longer finite"
        )
    lines.append("")
    if result.findings:
        lines.append("Signs of exploding gradients")
        lines.append(
            table(
                ["step", "sign", "detail"],
                [[f.step, f.sign.title, f.detail] for f in result.findings],
            )
        )
    else:
        lines.append("Signs of exploding gradients: none found")
    rule = result.spikes.rule
    spikes = result.spikes.steps
    lines.append("")
    lines.append(
        f"Spikes: {len(spikes)} (z-score above {rule.z:g} against a moving mean and spread, "
        f"alpha {rule.alpha:g}, after a warm-up of {rule.warmup} steps, as ZClip sees them)"
    )
    if spikes:
        shown = ", ".join(str(s) for s in spikes[:30])
        lines.append(
            f"  at steps {shown}" + (f" and {len(spikes) - 30} more" if len(spikes) > 30 else "")
        )
    lines.append("")
    lines.append(
        "Gradient norm percentiles: "
        + ", ".join(f"{p}th {_norm(v)}" for p, v in result.percentiles.items())
    )
    lines.append("")
    lines.append(
        "Suggested clip thresholds (a percentile of your norms; the steps it would have clipped)"
    )
    lines.append(
        table(
            ["threshold", "percentile", "steps clipped"],
            [
                [_norm(t.threshold), f"{t.percentile:g}th", f"{t.clipped_fraction:.1%}"]
                for t in result.thresholds
            ],
        )
    )
    if result.notes:
        lines.append("")
        lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


COMMANDS = {
    "reproduce": cmd_reproduce,
    "train": cmd_train,
    "worked": cmd_worked,
    "sweep": cmd_sweep,
    "bench": cmd_bench,
    "diagnose": cmd_diagnose,
    "loadtest": cmd_loadtest,
}
