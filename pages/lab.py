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
URL (``docs/CONTRACT.md``); the URL is validated once when the page opens, and each
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
from clipviz.engine import data
from clipviz.engine.config import (
    CLIP_MODE_LABELS,
    CLIP_MODES,
    DEFAULT,
    FIELDS,
    GROUPS,
    PRESETS,
    TrainConfig,
)
from clipviz.engine.labstate import (
    CUSTOM,
    TWIN_KEY,
    TWIN_MODE_KEY,
    LabState,
    default_twin_mode,
)
from clipviz.figures.race import race_figure
from clipviz.figures.training import lab_figure_spec, stream_stride
from clipviz.lessons import fixes
from clipviz.lessons import race as clipviz_race
from pages.components import live_chart as live_chart_files

ensure_router()

RUN, PLAYER, VALUES, PROBLEMS, RUN_ID, TEACHER, CHART, BUTTONS = (
    "_lab_run",
    "_lab_player",
    "_lab_values",
    "_lab_url_problems",
    "_lab_run_id",
    "_lab_teacher",  # (hide, autoplay) from the link: not widgets, kept for the share link
    "_lab_chart_cursor",
    "_lab_buttons",  # (playing, run finished) as the Play/Pause/Step buttons were drawn
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


def load_config(config: TrainConfig, preset: str = CUSTOM) -> None:
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
    state["preset"] = CUSTOM  # the settings no longer are the preset's
    state.pop(PROBLEMS, None)


def wanted_state(config: TrainConfig | None = None) -> LabState:
    """The Lab state the widgets (and the link's teacher keys) ask for now."""
    if config is None:
        config = TrainConfig.from_params(current_values())[0]
    hide, autoplay = state.get(TEACHER, ((), False))
    return LabState(
        config,
        state.get("preset", CUSTOM),
        bool(state.get(TWIN_KEY, False)),
        state.get(TWIN_MODE_KEY),
        hide,
        autoplay,
    )


def current_run() -> lab.LabRun:
    """The run to play, built now if a Reset (or nothing yet) left none.

    Callbacks run before the script, so a click right after Reset, or two
    clicks inside one script run, find no run: they build the one the
    settings ask for, exactly as the script would, instead of failing.
    """
    run = state.get(RUN)
    if run is None or run.closed:
        wanted = wanted_state()
        run = build_run(wanted.config, wanted.twin_config)
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
    run = lab.LabRun(config, twin, dataset=uploaded_dataset(config))
    watch_session(run)  # a closed tab's run is freed (app_boot)
    return run


# ---- your own data: an uploaded CSV, kept in this session only -------------------------

UPLOAD, UPLOAD_TABLE, UPLOAD_ERRORS, UPLOAD_DATASET = (
    "_lab_upload",  # data.UploadedData: the last good choice of columns
    "_lab_upload_table",  # the CSV as read, to pick columns from
    "_lab_upload_errors",  # what is wrong with the latest file or choice
    "_lab_upload_dataset",  # (upload, target scaling, Dataset): one Dataset per choice
)


def uploaded_dataset(config: TrainConfig):
    """The uploaded data this run trains on (None: the shipped data set of ``config``).

    The Dataset is built once per upload and target scaling, so a run is not
    rebuilt at every script run; uploads train the MLP only."""
    upload = state.get(UPLOAD)
    if upload is None or config.network != "mlp":
        return None
    kept = state.get(UPLOAD_DATASET)
    if kept is None or kept[0] is not upload or kept[1] != config.target_scaling:
        kept = (upload, config.target_scaling, upload.dataset(config.target_scaling))
        state[UPLOAD_DATASET] = kept
    return kept[2]


def choose_upload_columns() -> None:
    """Turn the table and the chosen columns into data; keep the last good data on a problem."""
    table = state.get(UPLOAD_TABLE)
    if table is None:
        return
    chosen = data.choose_columns(
        table,
        state.get("upload_target"),
        state.get("upload_features"),
        filename=state.get("_lab_upload_name", ""),
    )
    if isinstance(chosen, list):
        state[UPLOAD_ERRORS] = chosen
        return
    state[UPLOAD_ERRORS] = []
    state[UPLOAD] = chosen
    state["preset"] = CUSTOM
    reset_run()


def on_upload() -> None:
    """A file was chosen (or removed): read it; nothing of it is written anywhere."""
    file = state.get("upload_file")
    if file is None:  # removed: back to the shipped data set
        for key in (UPLOAD, UPLOAD_TABLE, UPLOAD_ERRORS, UPLOAD_DATASET):
            state.pop(key, None)
        reset_run()
        return
    table = data.read_upload(file.getvalue())
    if isinstance(table, list):
        state[UPLOAD_ERRORS] = table  # the last good data stays in use
        return
    unusable = data.unusable_columns(table)
    if unusable:
        state[UPLOAD_ERRORS] = unusable
        return
    state[UPLOAD_TABLE] = table
    state["_lab_upload_name"] = file.name
    target, features = data.guess_columns(table)
    state["upload_target"], state["upload_features"] = target, list(features)
    choose_upload_columns()


def upload_controls(config: TrainConfig) -> None:
    """The uploader and the column pickers, at the end of the Data section."""
    st.file_uploader(
        "Your data (CSV)",
        type=["csv", "txt"],
        key="upload_file",
        on_change=on_upload,
        help=data.upload_limits_text(),
    )
    table = state.get(UPLOAD_TABLE)
    if table is not None:
        names = list(table.numeric_names or table.names)
        if state.get("upload_target") not in names:
            state["upload_target"] = names[-1]
        st.selectbox("Target column", names, key="upload_target", on_change=choose_upload_columns)
        st.multiselect(
            "Feature columns",
            [n for n in names if n != state["upload_target"]],
            key="upload_features",
            on_change=choose_upload_columns,
        )
    for message in state.get(UPLOAD_ERRORS) or []:
        st.error(plain_markdown(message), icon=":material/error:")
    upload = state.get(UPLOAD)
    if upload is not None:
        if config.network == "mlp":
            st.caption(plain_markdown(f"Training on your data: {upload.describe()}."))
        else:
            st.caption("Your uploaded data trains the MLP only; this network uses its own task.")


# ---- opening the page: read and validate the URL once ------------------------------


def open_page() -> None:
    params = {key: st.query_params.get_all(key) for key in st.query_params}
    opened, problems = LabState.from_query(params)
    load_config(opened.config, opened.preset)
    state[TWIN_KEY] = opened.twin
    state[TWIN_MODE_KEY] = opened.effective_twin_mode
    state[TEACHER] = (opened.hide, opened.autoplay)
    state[PLAYER] = state.get(PLAYER) or Player()
    replace_run(None)
    if opened.autoplay:  # a teacher's link: start playing at once
        state[PLAYER].play(current_run())
    state[PROBLEMS] = [lab.problem_text(p) for p in problems]
    shown = {key: values[-1] if values else "" for key, values in params.items()}
    canonical = opened.to_params()
    if shown != canonical:
        # Bound widgets would read the URL as it is: give them its cleaned form.
        try:
            st.query_params.from_dict(canonical)
        except StreamlitAPIException:  # already bound: the values above win
            return
        st.rerun()


if "network" not in state:
    open_page()


# ---- sidebar: the settings, generated from TrainConfig's field table ----------------


def setting_widget(setting: lab.Setting) -> None:
    """The widget of one setting, keyed by its field and bound to the URL."""
    common = dict(
        key=setting.key,
        bind="query-params",
        on_change=on_setting,
        help=setting.hint,
    )
    if setting.widget == "select":
        options = list(setting.options)
        st.selectbox(
            setting.label,
            options,
            index=options.index(setting.default),
            **common,
        )
    elif setting.widget == "lr_slider":
        st.select_slider(
            setting.label,
            lab.lr_options(state.get(setting.key)),
            value=setting.default,
            format_func=lab.lr_label,
            **common,
        )
    elif setting.widget == "toggle":
        st.toggle(setting.label, value=setting.default, **common)
    else:
        # A link may hold any valid value, even one past the friendly bounds of an
        # open interval (a clip norm of 1e-6): the bounds then widen to it.
        current = state.get(setting.key, setting.default)
        low = setting.low if setting.low is None else min(setting.low, current)
        high = setting.high if setting.high is None else max(setting.high, current)
        extra = {}
        if setting.step is not None:
            extra["step"] = setting.step
        if setting.format is not None:
            extra["format"] = setting.format
        st.number_input(
            setting.label,
            min_value=low,
            max_value=high,
            value=setting.default,
            **common,
            **extra,
        )


values = current_values()
for key, value in values.items():  # a widget coming back keeps its last value
    state.setdefault(key, value)
config, problems = TrainConfig.from_params(values)  # once per script run
state[VALUES] = lab_values(config)
shown = wanted_state(config)

with st.sidebar:
    if not shown.hides("preset"):
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
    for group, settings in lab.settings_by_group().items():
        visible = [s for s in settings if s.shown(shown)]
        if not visible:
            continue
        st.subheader(GROUPS[group])
        for setting in visible:
            setting_widget(setting)
            if setting.key == "clip_mode":
                label = CLIP_MODE_LABELS[shown.config.clip_mode]
                st.caption(label[0].upper() + label[1:])
        if group == "data" and shown.config.network == "mlp":
            upload_controls(shown.config)
    if shown.hide:
        st.caption("Some controls are hidden by the link you opened.")

# ---- main area -------------------------------------------------------------------------

st.title("Training Lab")
st.caption(
    "Train a small network live. Push the learning rate or leave the target unscaled until "
    "the gradients explode, then switch on clipping and watch it hold."
)
for text in state.get(PROBLEMS) or []:
    st.warning(text, icon=":material/warning:")  # lab.problem_text: escaped already
for problem in problems:
    st.warning(lab.setting_problem_text(problem, config))

# The twin is part of what is trained, so it is read before the run is built;
# its widgets are drawn with the other controls below.
twin_modes = [m for m in CLIP_MODES if m != config.clip_mode]
if state.get(TWIN_MODE_KEY) not in twin_modes:
    state[TWIN_MODE_KEY] = default_twin_mode(config)
shown = wanted_state(config)  # the state this run shows, for the link and the other pages
state[lab.SESSION_LINK] = shown.to_query()
twin_on, twin_config = shown.twin, shown.twin_config

player: Player = state[PLAYER]
run: lab.LabRun | None = state.get(RUN)
dataset = uploaded_dataset(config)
if (
    run is None
    or run.config != config
    or run.twin_config != twin_config
    or run.dataset is not dataset
):
    if run is not None and run.step_count > 0:
        st.toast(lab.RESET_NOTICE, icon=":material/restart_alt:")
    player.reset()
    run = build_run(config, twin_config)
    replace_run(run)

state[BUTTONS] = (player.playing, run.done)
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
    if not shown.hides("twin"):
        st.toggle(
            "Twin run",
            key=TWIN_KEY,
            bind="query-params",
            help="Train a copy in lock-step (same start, same batches) that differs only in "
            "clipping.",
        )
    if twin_on and not shown.hides("twin"):
        st.selectbox(
            "Twin clip mode",
            twin_modes,
            key=TWIN_MODE_KEY,
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
            "steps": run.total_steps,  # the step axis grows by round numbers up to this
            "plotly": live_chart_files.plotly_url(),
        },
    )
    state[CHART] = update.cursor
    return update.payload


@st.cache_data(max_entries=64, show_spinner="Trying the usual fixes on this run…")
def verified_fixes(config: TrainConfig) -> list:
    """Every candidate fix trained to the end: once per configuration per server."""
    return fixes.verify_fixes(config)


def signs_line(diagnosis: lab.Diagnosis) -> str:
    """One line above the chart, always there (so the chart never jumps)."""
    if not diagnosis.findings:
        return "No signs of exploding gradients so far."
    return "Signs so far: " + " · ".join(
        f"{f.sign.title} (step {f.step:,})" for f in diagnosis.findings
    )


def diagnosis_panel(run: lab.LabRun, diagnosis: lab.Diagnosis, playing: bool) -> None:
    """Below the chart: each sign with its step and why, and the fixes that were tried."""
    if not diagnosis.troubled:
        return
    with st.container(border=True):
        if diagnosis.exploded:
            st.markdown(diagnosis.where)
        if diagnosis.findings:
            st.markdown(
                "**Signs found**, in the order they appeared:\n"
                + "\n".join(f"- {lab.finding_text(f)} *{f.sign.why}*" for f in diagnosis.findings)
            )
        if playing:
            st.caption("Fixes are tried when the run pauses or ends.")
            return
        tried = verified_fixes(run.config)
        working = fixes.offered(tried)[:4]
        if working:
            st.markdown(
                "**Fixes that work here**, each tried from the same start on the same "
                "batches (a click changes the settings and resets the run):"
            )
            columns = st.columns(len(working))
            for column, verified in zip(columns, working, strict=True):
                column.button(
                    verified.fix.label,
                    key=f"fix_{verified.fix.key}",
                    help=verified.fix.why,
                    on_click=on_fix,
                    args=(verified.fix,),
                    width="stretch",
                )
                column.caption(lab.fix_caption(verified))
        elif tried:
            st.markdown(lab.NO_FIX_WORKS)
            for verified in tried:
                st.markdown(f"- **{verified.fix.label}**: {verified.outcome}.")


def live_area() -> None:
    """Status, explosion, signs and charts: redrawn every tick while playing."""
    run = current_run()  # a tick may land between a Reset and the next script run
    player: Player = state[PLAYER]
    cursor = state.get(CHART)
    sent = cursor.steps if cursor is not None and cursor.revision == run.id else 0
    if player.playing:
        player.tick(run, ahead=run.step_count - sent)
    if state.get(BUTTONS, (player.playing, run.done)) != (player.playing, run.done):
        # The buttons show another state: the run ended, or a click's callback ran in
        # this fragment's run (a click and the chart's request for more steps can reach
        # the server together and run as one fragment run). Redraw the whole page.
        st.rerun()
    st.progress(run.progress, text=run.counter_text())

    diagnosis = lab.diagnose(run.primary)
    if diagnosis.exploded:
        st.error(diagnosis.headline)
    st.caption(signs_line(diagnosis))
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
    diagnosis_panel(run, diagnosis, player.playing)


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

# ---- the rule race ------------------------------------------------------------------------

RACE_KEY = "_lab_race"  # the config the learner last raced


@st.cache_data(max_entries=32, show_spinner="Racing six clipping rules on these settings…")
def race(config: TrainConfig) -> list:
    """Every rule on ``config``, in lock-step: once per configuration per server."""
    return clipviz_race.run_race(config)


def rule_race(config: TrainConfig) -> None:
    """One click: the same network under every clipping rule, overlaid."""
    st.subheader("Rule race")
    st.markdown(
        "Train these settings once per clipping rule (none, norm, value, AutoClip, AGC, "
        "ZClip), all from the same start on the same batches, and compare what each rule "
        "does with the same gradients. Each rule uses its own settings from the sidebar."
    )
    if st.button("Race the rules", key="race", help="Six full runs, side by side."):
        state[RACE_KEY] = config
    if state.get(RACE_KEY) != config:
        return
    entries = race(config)
    st.plotly_chart(race_figure(entries), key="race_chart", width="stretch")
    st.dataframe([entry.shown_row() for entry in entries], hide_index=True)
    st.caption(
        "AutoClip (Seetharaman et al. 2020) clips at a percentile of the norms seen so far; "
        "AGC (Brock et al. 2021) clips each unit's gradient relative to its weights; ZClip "
        "(Kumar et al. 2025) clips norms that spike above a running mean. Losses are in the "
        "target's own units."
    )


if not shown.hides("clipping"):
    rule_race(config)

# ---- share and export -------------------------------------------------------------------


def share_and_export(shown: LabState, run: lab.LabRun) -> None:
    """The share link (the codec's form of what is shown) and the downloads."""
    config = shown.config
    st.subheader("Share and export")
    page_url = (st.context.url or "/lab").split("?")[0]
    upload = run.dataset is not None and state.get(UPLOAD)
    note = export.share_note(upload) if upload else None
    st.markdown("A link that opens exactly this configuration:")
    st.code(shown.url(page_url), language=None, wrap_lines=True)
    if note:
        st.caption(plain_markdown(note))
    csv_col, torch_col, keras_col = st.columns(3)
    csv_col.download_button(
        "Per-step records (CSV)",
        data=lambda run=run: export.records_csv(run.labelled()),
        file_name=f"clipviz_{config.network}_records.csv",
        mime="text/csv",
        on_click="ignore",
        width="stretch",
    )
    torch_code = export.pytorch_script(config, upload or None)
    keras_code = export.keras_script(config, upload or None)
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
    with st.expander(
        "The PyTorch script: it trains this configuration and prints the Lab's losses"
    ):
        st.code(torch_code, language="python")
    with st.expander("The Keras 3 script"):
        st.code(keras_code, language="python")


if not shown.hides("export"):
    share_and_export(shown, run)

if plotly_loader is not None:
    plotly_loader(key="plotly_loader")
