"""Training Lab: pick a network and its settings, then train it live and watch it explode (or not).

Widgets and layout only. The run is a ``clipviz.app.lab.LabRun`` kept in session
state, driven by a ``clipviz.app.player.Player``. The four charts are one
figure (``lab_figure_spec``) drawn by plotly.js in a small component.
The live area is a fragment; while playing, the chart asks for its next
steps when it runs low, which reruns the fragment alone: it trains them
within a CPU budget and streams only them to the chart, which the browser
keeps and animates (pacing: ``clipviz.app.player``; the stream:
``clipviz.app.stream``; the browser's side: ``pages/components/live_chart/``).
Every setting is a widget keyed by its ``TrainConfig`` field and bound to the
URL (CONTRACT.md); the URL is validated once when the page opens, and each
problem is shown before it falls back to the default.
"""

from __future__ import annotations

import dataclasses

import streamlit as st
from streamlit.errors import StreamlitAPIException

from app_boot import ensure_router, watch_session
from clipviz.app import export, lab, stream
from clipviz.app.player import SPEEDS, UPDATES_PER_SECOND, Player
from clipviz.app.urlkeys import plain_markdown
from clipviz.engine.config import (
    ACTIVATIONS,
    CLIP_MODE_LABELS,
    CLIP_MODES,
    DEFAULT,
    FIELDS,
    NETWORKS,
    OPTIMIZERS,
    PRESETS,
    TARGET_SCALINGS,
    TASKS,
    TrainConfig,
    format_value,
)
from clipviz.figures.training import lab_figure_spec, stream_stride
from pages.components import live_chart as live_chart_files

ensure_router()

RUN, PLAYER, VALUES, PROBLEMS, RUN_ID, CHART = (
    "_lab_run",
    "_lab_player",
    "_lab_values",
    "_lab_url_problems",
    "_lab_run_id",
    "_lab_chart_cursor",
)
CHART_HEIGHT = 860  # the figure; the twin's colour key adds a line above it
PLOTLY_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
}
state = st.session_state


# ---- state changes (widget callbacks run before the script) -------------------------


def current_values() -> dict:
    """Every setting's latest value: the widgets' where they exist, else remembered."""
    values = dict(state.get(VALUES) or lab_values(DEFAULT))
    values.update({key: state[key] for key in FIELDS if key in state})
    return values


def lab_values(config: TrainConfig) -> dict:
    return {key: getattr(config, key) for key in FIELDS}


def load_config(config: TrainConfig, preset: str = lab.CUSTOM) -> None:
    """Put ``config`` into every setting widget (before they are drawn)."""
    for key, value in lab_values(config).items():
        state[key] = value
    state[VALUES] = lab_values(config)
    state["preset"] = preset


def replace_run(new: lab.LabRun | None) -> None:
    """Put ``new`` in place of the current run, whose tensors are freed at once."""
    old = state.get(RUN)
    if old is not None and old is not new:
        old.close()
    state[RUN] = new


def reset_run() -> None:
    state[PLAYER].reset()
    replace_run(None)


def on_preset() -> None:
    name = state["preset"]
    state.pop(PROBLEMS, None)
    if name in PRESETS:
        load_config(PRESETS[name].config, name)


def on_setting() -> None:
    state["preset"] = lab.CUSTOM  # the settings no longer are the preset's
    state.pop(PROBLEMS, None)


def wanted_configs() -> tuple[TrainConfig, TrainConfig | None]:
    """The run the settings ask for now: (config, twin config or None)."""
    config = TrainConfig.from_params(current_values())[0]
    if not state.get(lab.TWIN_KEY, False):
        return config, None
    mode = state.get(lab.TWIN_MODE_KEY)
    if mode not in CLIP_MODES or mode == config.clip_mode:
        mode = lab.default_twin_mode(config)
    return config, lab.twin_config(config, mode)


def current_run() -> lab.LabRun:
    """The run to play, built now if a Reset (or nothing yet) left none.

    Callbacks run before the script, so a click right after Reset, or two
    clicks inside one script run, find no run: they build the one the
    settings ask for, exactly as the script would, instead of failing.
    """
    run = state.get(RUN)
    if run is None or run.closed:
        run = build_run(*wanted_configs())
        replace_run(run)
    return run


def on_play() -> None:
    run = current_run()
    if run.done:  # Play after the end starts a new run
        state[PLAYER].reset()
        run = build_run(run.config, run.twin_config)
        replace_run(run)
    state[PLAYER].play(run)


def on_step() -> None:
    state[PLAYER].step(current_run(), 1)


def on_fix(fix) -> None:
    load_config(fix.apply(current_run().config))
    reset_run()
    st.rerun()  # from the fragment's button: redraw the sidebar too


def build_run(config: TrainConfig, twin: TrainConfig | None) -> lab.LabRun:
    state[RUN_ID] = state.get(RUN_ID, 0) + 1
    run = lab.LabRun(config, twin)
    watch_session(run)  # a closed tab's run is freed (app_boot)
    return run


# ---- opening the page: read and validate the URL once ------------------------------


def open_page() -> None:
    params = {key: st.query_params.get_all(key) for key in st.query_params}
    query = lab.parse_query(params)
    load_config(query.config, query.preset)
    state[lab.TWIN_KEY] = query.twin
    state[lab.TWIN_MODE_KEY] = query.twin_clip_mode or lab.default_twin_mode(query.config)
    state[PLAYER] = state.get(PLAYER) or Player()
    replace_run(None)
    state[PROBLEMS] = [lab.problem_text(p) for p in query.problems]
    shown = {key: values[-1] if values else "" for key, values in params.items()}
    if shown != query.canonical:
        # Bound widgets would read the URL as it is: give them its cleaned form.
        try:
            st.query_params.from_dict(query.canonical)
        except StreamlitAPIException:  # already bound: the values above win
            return
        st.rerun()


if "network" not in state:
    open_page()


# ---- sidebar: the settings ------------------------------------------------------------


def select(label: str, key: str, options, help: str, **kwargs):
    return st.selectbox(
        label,
        options,
        index=list(options).index(getattr(DEFAULT, key)),
        key=key,
        bind="query-params",
        on_change=on_setting,
        help=help,
        **kwargs,
    )


def number(label: str, key: str, help: str, *, low=None, high=None, **kwargs):
    """A number widget whose bounds are the field's (``low``/``high`` for open bounds).

    A link may hold any valid value, even one past the friendly bounds given
    for an open interval (a clip norm of 1e-6): the bounds then widen to it.
    """
    meta = FIELDS[key].metadata
    current = state.get(key, getattr(DEFAULT, key))
    low = min(meta["ge"] if low is None else low, current)
    high = max(meta["le"] if high is None else high, current)
    return st.number_input(
        label,
        min_value=low,
        max_value=high,
        value=getattr(DEFAULT, key),
        key=key,
        bind="query-params",
        on_change=on_setting,
        help=help,
        **kwargs,
    )


values = current_values()
for key, value in values.items():  # a widget coming back keeps its last value
    state.setdefault(key, value)
shown = TrainConfig.from_params(values)[0]

with st.sidebar:
    st.selectbox(
        "Preset",
        lab.PRESET_OPTIONS,
        key="preset",
        bind="query-params",
        on_change=on_preset,
        help="A prepared configuration. Changing any setting makes it your own (custom).",
    )
    if state["preset"] in PRESETS:
        st.caption(PRESETS[state["preset"]].description)

    st.subheader("Network")
    select("Network", "network", NETWORKS, "mlp: the tutorial's dense net; lstm / rnn: recurrent")
    if shown.network == "mlp":
        number("Hidden layers", "depth", "More layers, more factors in the gradient's product.")
        number("Units per hidden layer", "width", "Width of every hidden layer.")
        select("Activation", "activation", ACTIVATIONS, "The hidden layers' nonlinearity.")
    else:
        select("Task", "task", TASKS, "adding: sum two marked numbers; digits: read 8x8 images.")
        if shown.task == "adding":
            number("Sequence length", "seq_len", "Time steps the gradient must travel back.")
        number("Hidden units", "hidden_size", "Size of the recurrent state.")
        if shown.network == "rnn":
            number(
                "Recurrent weight scale",
                "recurrent_scale",
                "Above 1, the recurrent Jacobians tend to grow the gradient.",
                low=0.05,
                step=0.1,
                format="%g",
            )
        number("Truncate backprop (steps)", "tbptt", "0 = through the whole sequence.")

    st.subheader("Data")
    if "target_scaling" in shown.relevant_keys():
        select(
            "Target scaling",
            "target_scaling",
            TARGET_SCALINGS,
            "The unscaled target spans about -400..400: large errors, large gradients.",
        )
    if shown.is_recurrent:
        number("Training sequences", "n_train", "Examples per epoch.")
    number("Seed", "seed", "Initial weights and batch order.")

    st.subheader("Optimizer")
    select("Optimizer", "optimizer", OPTIMIZERS, "SGD with momentum, or Adam.")
    st.select_slider(
        "Learning rate (log scale)",
        lab.lr_options(state.get("lr")),
        value=DEFAULT.lr,
        format_func=lab.lr_label,
        key="lr",
        bind="query-params",
        on_change=on_setting,
        help="Step size. Each mark is 1, 2, 3 or 5 times a power of ten.",
    )
    if shown.optimizer == "sgd":
        number(
            "Momentum",
            "momentum",
            "Fraction of the last update carried on.",
            high=0.999,
            step=0.05,
            format="%g",
        )
    number("Batch size", "batch_size", "Examples per optimizer step.")
    number("Epochs", "epochs", "Passes over the training set.")
    number(
        "Weight decay (L2)", "weight_decay", "Penalty pulling weights to 0.", step=1e-3, format="%g"
    )

    st.subheader("Clipping")
    select(
        "Clip mode",
        "clip_mode",
        CLIP_MODES,
        " · ".join(f"{mode}: {CLIP_MODE_LABELS[mode]}" for mode in CLIP_MODES),
    )
    label = CLIP_MODE_LABELS[shown.clip_mode]
    st.caption(label[0].upper() + label[1:])
    if shown.uses_clip_norm:
        number(
            "Clip norm c",
            "clip_norm",
            "Largest gradient norm allowed.",
            low=1e-4,
            step=0.1,
            format="%g",
        )
    if shown.uses_clip_value:
        number(
            "Clip value c",
            "clip_value",
            "Each component forced into [-c, c].",
            low=1e-4,
            step=0.5,
            format="%g",
        )
    if shown.clip_mode == "layerwise_value":
        number(
            "Clip value, output layer",
            "clip_value_output",
            "Graves (2013) allowed the output layer [-100, 100].",
            low=1e-4,
            step=10.0,
            format="%g",
        )

config, problems = TrainConfig.from_params(current_values())
state[VALUES] = lab_values(config)

# ---- main area -------------------------------------------------------------------------

st.title("Training Lab")
st.caption(
    "Train a small network live. Push the learning rate or leave the target unscaled until "
    "the gradients explode, then switch on clipping and watch it hold."
)
for text in state.get(PROBLEMS) or []:
    st.warning(text, icon=":material/warning:")  # lab.problem_text: escaped already
for problem in problems:
    st.warning(plain_markdown(f"{problem}. Using {format_value(getattr(config, problem.key))}."))

# The twin is part of what is trained, so it is read before the run is built;
# its widgets are drawn with the other controls below.
twin_on = bool(state.get(lab.TWIN_KEY, False))
twin_modes = [m for m in CLIP_MODES if m != config.clip_mode]
if state.get(lab.TWIN_MODE_KEY) not in twin_modes:
    state[lab.TWIN_MODE_KEY] = lab.default_twin_mode(config)
twin_config = lab.twin_config(config, state[lab.TWIN_MODE_KEY]) if twin_on else None

player: Player = state[PLAYER]
run: lab.LabRun | None = state.get(RUN)
if run is None or run.config != config or run.twin_config != twin_config:
    if run is not None and run.step_count > 0:
        st.toast(lab.RESET_NOTICE, icon=":material/restart_alt:")
    player.reset()
    run = build_run(config, twin_config)
    replace_run(run)

with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
    st.button("Play", type="primary", on_click=on_play, disabled=player.playing)
    st.button("Pause", on_click=player.pause, disabled=not player.playing)
    st.button("Step", on_click=on_step, disabled=run.done, help="One optimizer step.")
    st.button("Reset", on_click=reset_run, help="Back to step 0, same settings.")
    speed = st.select_slider(
        "Speed (steps per chart update)",
        SPEEDS,
        value=player.speed,
        key="speed",
        width=230,
        help="Optimizer steps the chart moves on at each of its updates (about 25 a "
        "second). Slow networks train fewer, so every learner's page stays responsive.",
    )
    player.set_speed(speed)
    st.toggle(
        "Twin run",
        key=lab.TWIN_KEY,
        bind="query-params",
        help="Train a copy in lock-step (same start, same batches) that differs only in clipping.",
    )
    if twin_on:
        st.selectbox(
            "Twin clip mode",
            twin_modes,
            key=lab.TWIN_MODE_KEY,
            bind="query-params",
            width=190,
            help="How the twin clips; everything else is yours.",
        )


# The live chart (pages/components/live_chart/): registered on every run (an
# identical definition is kept). Without the asset routes of serve.py, plotly.js
# comes through a loader component instead, once per session.
live_chart = st.components.v2.component(
    "clipviz_live_chart",
    html=live_chart_files.HTML,
    js=live_chart_files.component_js(),
    isolate_styles=False,
)
plotly_loader = (
    None
    if live_chart_files.served()
    else st.components.v2.component("clipviz_plotly_loader", js=live_chart_files.loader_js())
)


def more_requested() -> None:
    """The browser asks for the next steps, saying which it holds: go on from there.

    It holds what it says even when an update got lost on the way (Streamlit
    may skip drawing a message when two arrive at once): then the steps go
    again from there, with every layout entry, or the whole figure when it
    holds nothing of this run.
    """
    cursor = state.get(CHART)
    asked = (state.get("lab_charts") or {}).get("more") or {}
    have = asked.get("have")
    if cursor is None or have == cursor.steps:
        return
    if asked.get("revision") == cursor.revision and isinstance(have, int) and have < cursor.steps:
        state[CHART] = dataclasses.replace(cursor, steps=have, layout={})
    else:
        state[CHART] = dataclasses.replace(cursor, revision="")  # the whole figure next


def chart_payload(run: lab.LabRun, player: Player) -> bytes:
    """This tick's update of the live chart: the whole figure for a new run, else the new steps."""
    stride = stream_stride(run.total_steps)
    update = stream.next_update(
        lambda start: run.traces(start, stride),
        lambda traces: lab_figure_spec(traces, revision=run.id, height=CHART_HEIGHT),
        revision=run.id,
        steps_done=run.step_count,
        finished=run.done,
        cursor=state.get(CHART),
        stride=stride,
        every={
            "playing": player.playing,
            "speed": player.speed,
            "tick": player.interval,
            "fps": UPDATES_PER_SECOND,
        },
        meta={
            "config": PLOTLY_CONFIG,
            "key": run.colour_key() if run.twin is not None else [],
            "plotly": live_chart_files.plotly_url(),
        },
    )
    state[CHART] = update.cursor
    return update.payload


def live_area() -> None:
    """Status, explosion and charts: redrawn every tick while playing."""
    run = current_run()  # a tick may land between a Reset and the next script run
    player: Player = state[PLAYER]
    cursor = state.get(CHART)
    sent = cursor.steps if cursor is not None and cursor.revision == run.id else 0
    if player.playing and player.tick(run, ahead=run.step_count - sent).finished:
        st.rerun()  # the run ended: stop the timer and refresh the buttons
    st.progress(run.progress, text=run.counter_text())

    diagnosis = lab.diagnose(run.primary)
    if diagnosis is not None:
        st.error(diagnosis.headline)
        with st.container(border=True):
            st.markdown(diagnosis.where)
            if diagnosis.findings:
                st.markdown(
                    "Signs found:\n"
                    + "\n".join(f"- {lab.finding_text(f)}" for f in diagnosis.findings)
                )
            shown_fixes = diagnosis.fixes[:4]
            if shown_fixes:
                st.markdown("**Try a fix** (changes the settings and resets the run):")
                columns = st.columns(len(shown_fixes))
                for column, fix in zip(columns, shown_fixes, strict=True):
                    column.button(
                        fix.label,
                        key=f"fix_{fix.key}",
                        help=fix.why,
                        on_click=on_fix,
                        args=(fix,),
                        width="stretch",
                    )
    if run.twin is not None and run.twin.explosion is not None:
        label = lab.clip_label(run.twin_config)
        st.warning(
            f"The twin ({label}) blew up at step {run.twin.explosion.step}: "
            f"{run.twin.explosion.describe()}."
        )

    live_chart(
        data=chart_payload(run, player),
        key="lab_charts",
        height=CHART_HEIGHT + (28 if run.twin is not None else 0),
        on_more_change=more_requested,
    )


# No timer: while playing, the chart asks for its next steps when it runs low
# (pages/components/live_chart/live_chart.js), which reruns this fragment alone.
st.fragment(live_area)()

with st.expander("How to read the charts"):
    st.markdown(
        "**Loss**: the thin line is the loss of each batch; the thick lines are the loss on "
        "the whole training and test sets after each epoch. Trouble looks like a loss that "
        "stalls, jumps by orders of magnitude, or ends in a gap (NaN).\n\n"
        "**Gradient norm**: the length of the whole gradient at each step, before and after "
        "clipping. Clipping by norm rescales any gradient longer than the threshold $c$ "
        "(Pascanu, Mikolov & Bengio, 2013):"
    )
    st.latex(r"g \leftarrow g \cdot \min\!\left(1, \frac{c}{\lVert g \rVert}\right)")
    st.markdown(
        "**Gradient norm per layer**: which layer's gradient is largest, step by step "
        "(brighter is larger, on a log scale).\n\n"
        "**Weights**: the length of all weights together, and how far each update moves them "
        "relative to that length. Updates far above a thousandth of the weights are "
        "a warning sign; an explosion shows as both curves shooting up."
    )

# ---- share and export -------------------------------------------------------------------

st.subheader("Share and export")
query = config.to_query()
if twin_on:
    query += f"&{lab.TWIN_KEY}=true&{lab.TWIN_MODE_KEY}={twin_config.clip_mode}"
page_url = (st.context.url or "/lab").split("?")[0]
st.markdown("A link that opens exactly this configuration:")
st.code(f"{page_url}?{query}", language=None, wrap_lines=True)
csv_col, torch_col, keras_col = st.columns(3)
csv_col.download_button(
    "Per-step records (CSV)",
    data=lambda run=run: export.records_csv(run.labelled()),
    file_name=f"clipviz_{config.network}_records.csv",
    mime="text/csv",
    on_click="ignore",
    width="stretch",
)
torch_code = export.pytorch_script(config)
keras_code = export.keras_script(config)
torch_col.download_button(
    "PyTorch script",
    torch_code,
    file_name=export.script_filename(config, "pytorch"),
    mime="text/x-python",
    on_click="ignore",
    width="stretch",
)
keras_col.download_button(
    "Keras 3 script",
    keras_code,
    file_name=export.script_filename(config, "keras"),
    mime="text/x-python",
    on_click="ignore",
    width="stretch",
)
with st.expander("The PyTorch script: it trains this configuration and prints the Lab's losses"):
    st.code(torch_code, language="python")
with st.expander("The Keras 3 script"):
    st.code(keras_code, language="python")

if plotly_loader is not None:
    plotly_loader(key="plotly_loader")
