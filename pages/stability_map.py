"""Stability map: many networks trained at once, and where training diverges.

Widgets and layout only: the networks are trained by ``clipviz.engine.sweep``, the
heatmaps drawn by ``clipviz.figures.stability``. Results are kept in a small
process-wide store keyed by the settings (``clipviz.app.shared``), so revisiting
a map is instant, and a classroom opening the page at once trains each map once:
the first session computes it, the others wait for its result.

The learner's current Lab configuration is the Lab's state the Lab page
leaves in the session (``clipviz.app.lab.SESSION_LINK``, written by the one
Lab-state codec) or else this page's own URL query parameters (the Lab's
keys, e.g. ``?lr=0.01&clip_mode=norm``), read by the same codec.
"""

from __future__ import annotations

import streamlit as st

from app_boot import ensure_router
from clipviz.app import lab as lab_page
from clipviz.app import urlkeys
from clipviz.app.shared import SharedResults
from clipviz.engine import sweep
from clipviz.engine.config import ADAPTIVE_MODES, FIELDS, RULE_PARAMETER, TrainConfig
from clipviz.engine.data import dataset_for
from clipviz.engine.labstate import LAB_KEYS, LabState, lab_url
from clipviz.figures import stability as figures
from clipviz.lessons import adaptive
from url_guard import guard_query

ensure_router()
# The page's only URL keys are the Lab's (``learner_config``); anything else is reported.
guard_query("stability_map", urlkeys.NO_KEYS, also_allowed=LAB_KEYS)

GRIDS = [8, 12, 16, 24, 32]
EPOCHS = [5, 10, 20, 30, 50, 100]
LR_STOPS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0]
THRESHOLD_STOPS = [1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5]
TARGET_CLIPS = {"norm": "clip by norm, c = 1 (the tutorial's)", "value": "clip by value, c = 5"}
MAX_STORED = 12
SHORT_MODES = {
    "none": "no clipping",
    "norm": "clip by norm",
    "value": "clip by value",
    "autoclip": "AutoClip",
    "agc": "AGC",
    "zclip": "ZClip",
}
ZCLIP_CAPS = {0.0: "off: ZClip alone", 1.0: "at norm 1, the tutorial's clip"}
SETTING_NAMES = {"autoclip": "percentile p", "agc": "λ", "zclip": "z"}
TUTORIAL_LR = 0.01  # the reference experiment's learning rate
SETTING_LABELS = {
    "grid": "Cells per axis",
    "epochs": "Epochs per network",
    "lr-min": "Learning rates, low end",
    "lr-max": "Learning rates, high end",
    "threshold-min": "Clip thresholds, low end",
    "threshold-max": "Clip thresholds, high end",
    "seed": "Seed",
    "zclip-cap": "ZClip's cap",
}
CHART_CONFIG = {"displayModeBar": False}


# ---- computing, with a progress bar, once per setting ---------------------------


@st.cache_resource(show_spinner=False)
def _store() -> SharedResults:
    """Finished sweeps of every session, newest last (bounded; one computation per map)."""
    return SharedResults(MAX_STORED)


def computed(spec, run, what: str):
    """The result of ``run(spec)``: stored, computed under a progress bar, or awaited."""
    text = f"Training {spec.networks:,} networks for {what}…"
    slot = st.empty()

    def compute():
        bar = slot.progress(0.0, text=text)
        return run(spec, progress=lambda fraction: bar.progress(fraction, text=text))

    def waiting():
        slot.info(f"Another learner's page is training these {spec.networks:,} networks; waiting…")

    try:
        return _store().get(spec, compute, on_wait=waiting)
    finally:
        slot.empty()


def _fmt(value: float) -> str:
    return f"{value:.3g}"


# ---- the learner's Lab configuration ----------------------------------------------


def learner_config() -> tuple[TrainConfig | None, list[str]]:
    """The Lab's configuration (left in the session by the Lab), or one in this page's URL."""
    in_session = lab_page.state_in_session(st.session_state.get(lab_page.SESSION_LINK))
    if in_session is not None:
        return in_session.config, []
    params = {k: st.query_params.get_all(k) for k in st.query_params if k in LAB_KEYS}
    if not params:
        return None, []
    state, problems = LabState.from_query(params)
    return state.config, [str(p) for p in problems]


def differences(config: TrainConfig, base: TrainConfig) -> list[str]:
    """Settings of the learner's run that these maps hold fixed at other values."""
    keys = ["target_scaling", "optimizer", "momentum", "batch_size", "epochs", "seed"]
    keys += ["depth", "width", "activation", "weight_decay"]
    return [
        f"{FIELDS[k].metadata['help']} {getattr(config, k)} (map: {getattr(base, k)})"
        for k in keys
        if getattr(config, k) != getattr(base, k)
    ]


def clip_marker(config: TrainConfig | None) -> figures.Marker | None:
    if config is None or config.network != "mlp" or config.clip_mode not in sweep.MAP_CLIP_MODES:
        return None
    y = {"none": None, "norm": config.clip_norm, "value": config.clip_value}[config.clip_mode]
    return figures.Marker(config.clip_mode, config.lr, y, f"your Lab run: {config.label()}")


def rule_marker(config: TrainConfig | None) -> figures.Marker | None:
    if config is None or config.network != "mlp" or config.clip_mode not in ADAPTIVE_MODES:
        return None
    y = float(getattr(config, RULE_PARAMETER[config.clip_mode]))
    return figures.Marker(config.clip_mode, config.lr, y, f"your Lab run: {config.label()}")


def target_marker(config: TrainConfig | None, clip_modes) -> figures.Marker | None:
    if config is None or config.network != "mlp" or config.clip_mode not in clip_modes:
        return None
    std = float(dataset_for(config).y_train.double().std(unbiased=False))
    return figures.Marker(config.clip_mode, config.lr, std, f"your Lab run: {config.label()}")


# ---- selecting a cell ---------------------------------------------------------------


def _select_clip_cell() -> None:
    """Chart click -> the cell pickers (runs before the next script run)."""
    event = st.session_state.get("clip_map_chart")
    cell = figures.cell_from_selection(event["selection"]["points"] if event else [])
    if cell is not None:
        st.session_state["cell_mode"] = cell.clip_mode
        st.session_state["cell_lr"] = cell.col
        if cell.clip_mode != "none":
            st.session_state["cell_threshold"] = cell.row


def _select_rule_cell() -> None:
    event = st.session_state.get("rule_map_chart")
    cell = figures.cell_from_selection(event["selection"]["points"] if event else [])
    if cell is not None:
        st.session_state["rule_cell_mode"] = cell.clip_mode
        st.session_state["rule_cell_lr"] = cell.col
        st.session_state["rule_cell_row"] = cell.row


def _select_target_cell() -> None:
    event = st.session_state.get("target_map_chart")
    cell = figures.cell_from_selection(event["selection"]["points"] if event else [])
    if cell is not None:
        st.session_state["target_cell"] = cell


def _keep_valid(key: str, options: list, default) -> None:
    if st.session_state.get(key) not in options:
        st.session_state[key] = default


def current_clip_cell(result: sweep.SweepResult) -> figures.Cell:
    modes, grid = list(result.maps), len(result.spec.lrs)
    _keep_valid("cell_mode", modes, "norm" if "norm" in modes else modes[0])
    _keep_valid("cell_lr", list(range(grid)), grid // 2)
    _keep_valid("cell_threshold", list(range(grid)), grid // 2)
    mode = st.session_state["cell_mode"]
    row = 0 if mode == "none" else st.session_state["cell_threshold"]
    return figures.Cell(mode, row, st.session_state["cell_lr"])


def describe_outcome(status: str, exploded_at: int, loss: float, start: float, unit: str) -> str:
    if status == "diverged":
        return (
            f"**Diverged** at step {exploded_at}: the loss or gradient became NaN or infinite."
            if exploded_at
            else "**Diverged**: the final weights give a loss that is not finite."
        )
    end, begin = figures.fmt_number(loss), figures.fmt_number(start)
    if status == "no_progress":
        return f"**No progress**: it ended at {unit} {end}, no lower than the start ({begin})."
    return f"**Trained**: final {unit} {end} (it started at {begin})."


# ---- the page --------------------------------------------------------------------------

st.title("Stability map")
st.markdown(
    "Each square of these maps is one network: the tutorial's MLP on its unscaled target, "
    "trained with one learning rate and one clip threshold. All of them start from the same "
    "weights and see the same batches; they are trained together as one batched tensor "
    "program, so a whole map takes seconds. The maps show where training works, where it "
    "goes nowhere, and where it blows up."
)

with st.form("map_settings"):
    left, middle, right = st.columns(3)
    grid = left.select_slider("Cells per axis", GRIDS, value=16, key="map_grid")
    epochs = left.select_slider("Epochs per network", EPOCHS, value=30, key="map_epochs")
    lr_range = middle.select_slider(
        "Learning rates", LR_STOPS, value=(1e-4, 1.0), format_func=_fmt, key="map_lr_range"
    )
    threshold_range = middle.select_slider(
        "Clip thresholds c",
        THRESHOLD_STOPS,
        value=(1e-2, 1e3),
        format_func=_fmt,
        key="map_threshold_range",
    )
    seed = right.number_input("Seed", 0, 9999, value=1, step=1, key="map_seed")
    target_clip = right.radio(
        "Target-scale map: compare with",
        list(TARGET_CLIPS),
        format_func=TARGET_CLIPS.get,
        key="map_target_clip",
    )
    rules_column, cap_column = st.columns([2, 1])
    rules = rules_column.multiselect(
        "Adaptive rules to map (each adds a map over its own setting)",
        list(ADAPTIVE_MODES),
        format_func=SHORT_MODES.get,
        key="map_rules",
    )
    zclip_cap = cap_column.radio(
        "ZClip's hard cap (its max_grad_norm)",
        list(ZCLIP_CAPS),
        format_func=ZCLIP_CAPS.get,
        key="map_zclip_cap",
    )
    st.form_submit_button("Compute maps", type="primary")

spec = sweep.SweepSpec(
    grid=int(grid),
    epochs=int(epochs),
    lr_range=(float(lr_range[0]), float(lr_range[1])),
    threshold_range=(float(threshold_range[0]), float(threshold_range[1])),
    seed=int(seed),
)
target_spec = sweep.TargetSpec(
    grid=int(grid),
    epochs=int(epochs),
    clip_modes=("none", target_clip),
    lr_range=spec.lr_range,
    seed=int(seed),
)
rules_spec = sweep.SweepSpec(
    grid=int(grid),
    epochs=int(epochs),
    clip_modes=tuple(m for m in ADAPTIVE_MODES if m in rules),
    lr_range=spec.lr_range,
    seed=int(seed),
    zclip_cap=float(zclip_cap) or None,
)
try:
    spec.validated()
    target_spec.validated()
    if rules_spec.clip_modes:
        rules_spec.validated()
except sweep.SweepError as error:
    label = SETTING_LABELS.get(error.key, error.key)
    st.error(f"Please change a setting. {label}: {error.message}.")
    st.stop()

result = computed(spec, sweep.run_sweep, "the learning rate × threshold maps")
lab, lab_problems = learner_config()

# ---- learning rate x clip threshold -------------------------------------------------

st.subheader("Learning rate × clip threshold")
st.caption(
    "Colour: training MSE at the end, in the target's units (darker is better; the scale "
    "stops at the starting loss). Grey: the run diverged to NaN or infinity. Hover for "
    "numbers; click a cell to pick it below."
)
cell = current_clip_cell(result)
marker = clip_marker(lab)
st.plotly_chart(
    figures.clip_maps_figure(result, marker=marker, selected=cell),
    key="clip_map_chart",
    on_select=_select_clip_cell,
    selection_mode="points",
    config=CHART_CONFIG,
)
if lab is not None:
    if marker is None:
        st.caption(
            f"Your Lab run ({lab.label()}) is not on these maps: they show the MLP with no "
            "clipping, clipping by global norm and clipping by value."
        )
    else:
        changed = differences(lab, result.base)
        note = f" It differs from the maps in: {'; '.join(changed)}." if changed else ""
        st.caption(f"★ marks your Lab run: {lab.label()}.{note}")
for problem in lab_problems:
    st.caption(urlkeys.plain_markdown(f"Ignored in this page's link: {problem}"))

st.markdown("**Inspect a cell** (or click one on the map)")
pick_mode, pick_lr, pick_threshold = st.columns([1, 2, 2])
pick_mode.radio("Map", list(result.maps), format_func=SHORT_MODES.get, key="cell_mode")
pick_lr.select_slider(
    "Learning rate",
    list(range(len(spec.lrs))),
    format_func=lambda i: _fmt(result.maps[cell.clip_mode].lrs[i]),
    key="cell_lr",
)
pick_threshold.select_slider(
    "Clip threshold c",
    list(range(len(spec.thresholds))),
    format_func=lambda i: _fmt(spec.thresholds[i]),
    key="cell_threshold",
    disabled=cell.clip_mode == "none",
)
chosen = result.maps[cell.clip_mode]
config = result.cell_config(cell.clip_mode, cell.row, cell.col)
text, button = st.columns([3, 1])
text.markdown(
    f"{config.label()}, {config.epochs} epochs: "
    + describe_outcome(
        str(chosen.status[cell.row, cell.col]),
        int(chosen.exploded_at[cell.row, cell.col]),
        float(chosen.final_loss[cell.row, cell.col]),
        chosen.initial_loss,
        "train MSE",
    )
)
button.link_button("Open in the Lab", lab_url(config, "./lab"), type="primary")

# ---- what it shows -----------------------------------------------------------------------


def boundary_sentence(result: sweep.SweepResult) -> str:
    none = result.maps.get("none")
    if none is None:
        return ""
    trained, diverged = none.lr_boundary()
    if diverged is not None and trained is not None:
        return (
            "Without clipping the boundary is one learning rate: the largest that trained "
            f"here is {_fmt(trained)}, the smallest that diverged {_fmt(diverged)}. "
        )
    if diverged is not None:
        return "Without clipping every learning rate on this map diverged. "
    return "Without clipping no run on this map diverged; widen the learning-rate range. "


counts = {mode: m.counts() for mode, m in result.maps.items()}
clipped_diverged = sum(c["diverged"] for mode, c in counts.items() if mode != "none")
clipped_total = sum(m.final_loss.size for mode, m in result.maps.items() if mode != "none")
st.markdown(
    f"**Where the boundary lies.** {boundary_sentence(result)}"
    f"With clipping, {clipped_diverged} of {clipped_total} runs diverged. A clipped gradient "
    "is never longer than c (c·√P with value clipping, for P weights), so every step is "
    "bounded and the weights cannot be thrown to infinity. What matters then is roughly the "
    "product lr × c, so the good region is a diagonal band. Below it the steps are short and "
    "the net creeps. Above it the net is flung to where every ReLU unit is off, and it "
    "predicts a constant: *no progress*, the top colour. Clipping saves a run from NaN; it "
    "does not make every setting train."
)
st.markdown(
    "**The boundary is intricate.** Near the edge, neighbouring cells disagree and the "
    "pattern does not smooth out as you add cells: Sohl-Dickstein (2024, *The boundary of "
    "neural network trainability is fractal*) zoomed into maps like these and found "
    "structure at every scale. The same sensitivity means a cell on the edge can end "
    "differently when opened in the Lab: a last-digit difference in rounding, which grows "
    "step by step there. Away from the edge, a cell and its single run agree."
)

# ---- learning rate x target scale ---------------------------------------------------------

st.subheader("Learning rate × target scale")
st.markdown(
    "The same net on the same inputs, with the target multiplied so that its standard "
    "deviation is the row's value. Colour: training loss at the end divided by the loss at "
    "the start (1 means no progress), which makes rows of different scales comparable."
)
target = computed(target_spec, sweep.run_target_sweep, "the target-scale maps")
selected_target = st.session_state.get("target_cell")
st.plotly_chart(
    figures.target_maps_figure(
        target, marker=target_marker(lab, target.maps), selected=selected_target
    ),
    key="target_map_chart",
    on_select=_select_target_cell,
    selection_mode="points",
    config=CHART_CONFIG,
)
if isinstance(selected_target, figures.Cell) and selected_target.clip_mode in target.maps:
    tm = target.maps[selected_target.clip_mode]
    r, c = selected_target.row, selected_target.col
    if r < tm.loss_ratio.shape[0] and c < tm.loss_ratio.shape[1]:
        outcome = describe_outcome(
            str(tm.status[r, c]),
            int(tm.exploded_at[r, c]),
            float(tm.loss_ratio[r, c]),
            1.0,
            "loss ratio",
        )
        st.markdown(
            f"Selected: lr {_fmt(tm.lrs[c])}, target std {_fmt(tm.target_stds[r])}, "
            f"{figures.PANEL_TITLES['none'] if tm.threshold is None else f'clip by {tm.clip_mode} {tm.threshold:g}'}. "
            + outcome
        )
        lab_config = target.cell_config(selected_target.clip_mode, r, c)
        if lab_config is not None:
            st.link_button("Open in the Lab", lab_url(lab_config, "./lab"))
        else:
            st.caption(
                "The Lab offers the unscaled target (the dotted 'tutorial target' row) and a "
                "standardized one; other scales exist only on this map."
            )
st.markdown(
    "**Why the scale matters.** The gradient of the squared error is proportional to the "
    "error, and at the start the error is as large as the target. Multiply the target by 10 "
    "and the first gradients grow about tenfold, so the largest learning rate that survives "
    "shrinks about tenfold: without clipping the boundary runs diagonally. Standardizing the "
    "target moves the tutorial's net from the unstable corner into the safe one. With "
    "clipping nothing explodes at any scale, but a large target with a small learning rate "
    "barely moves: clipped steps are short, and there is far to go."
)
# ---- the adaptive rules ---------------------------------------------------------------

st.subheader("Adaptive rules: learning rate × each rule's own setting")
st.markdown(
    "Modern practice often does not pick a fixed threshold at all. Three rules choose "
    "theirs as training goes, each exactly as its reference implementation does it:"
)
st.markdown(
    "- **AutoClip** (Seetharaman, Wichern, Pardo & Le Roux, 2020) was made so that nobody has "
    "to tune a threshold. It remembers every gradient norm so far and clips at their p-th "
    "percentile, the current norm included (p = 10 by default).\n"
    "- **AGC**, adaptive gradient clipping (Brock, De, Smith & Simonyan, 2021), is what let "
    "deep residual networks train *without batch normalization* (their NFNets). It clips "
    "each unit on its own, relative to that unit's weights, so no step can change a unit by "
    "much more than the fraction λ of its size.\n"
    "- **ZClip** (Kumar, Owen, Roy Chowdhury & Güra, 2025) is aimed at the loss spikes of "
    "large language-model pretraining. It keeps a running mean and variance of the norm and "
    "clips only a norm that stands out by more than z standard deviations."
)
st.latex(
    r"\text{AutoClip: } c_t = \operatorname{percentile}_p\big(\|g_1\|,\dots,\|g_t\|\big)"
    r"\qquad \text{AGC: } \|G_i\| \le \lambda \max(\|W_i\|, \epsilon)"
    r"\qquad \text{ZClip: } z_t = \frac{\|g_t\| - \mu_t}{\sigma_t + 10^{-6}} > z"
)
st.markdown(
    "A fourth habit of large runs is to **skip** a step whose gradient is not finite instead "
    "of stopping: mixed-precision training does it on every overflow (PyTorch's `GradScaler`, "
    "optax's `apply_if_finite`), and the PaLM team (Chowdhery et al., 2022) went back to a "
    "checkpoint and skipped the batches around each loss spike. In clipviz it is the switch "
    "`skip_nonfinite`, which combines with any rule; the worked examples step through each "
    "rule's arithmetic."
)
if not rules_spec.clip_modes:
    st.info(
        "Pick the adaptive rules to map in the settings above and press **Compute maps**. "
        "Each map trains as many networks as the clip-by-norm map."
    )
else:
    rules_result = computed(rules_spec, sweep.run_sweep, "the adaptive rules' maps")
    st.caption(
        "The same networks, learning rates and colours as the maps above; the rows are now "
        "each rule's own setting. Hover for numbers; click a cell to pick it below."
    )
    modes = list(rules_result.maps)
    _keep_valid("rule_cell_mode", modes, modes[0])
    _keep_valid("rule_cell_lr", list(range(grid)), grid // 2)
    _keep_valid("rule_cell_row", list(range(grid)), grid // 2)
    rule_cell = figures.Cell(
        st.session_state["rule_cell_mode"],
        st.session_state["rule_cell_row"],
        st.session_state["rule_cell_lr"],
    )
    st.plotly_chart(
        figures.adaptive_maps_figure(rules_result, marker=rule_marker(lab), selected=rule_cell),
        key="rule_map_chart",
        on_select=_select_rule_cell,
        selection_mode="points",
        config=CHART_CONFIG,
    )
    chosen_rule = rules_result.maps[rule_cell.clip_mode]
    pick_rule, pick_rule_lr, pick_rule_row = st.columns([1, 2, 2])
    pick_rule.radio("Map", modes, format_func=SHORT_MODES.get, key="rule_cell_mode")
    pick_rule_lr.select_slider(
        "Learning rate",
        list(range(len(chosen_rule.lrs))),
        format_func=lambda i: _fmt(chosen_rule.lrs[i]),
        key="rule_cell_lr",
    )
    pick_rule_row.select_slider(
        f"The rule's setting ({SETTING_NAMES[rule_cell.clip_mode]})",
        list(range(len(chosen_rule.thresholds))),
        format_func=lambda i: _fmt(chosen_rule.thresholds[i]),
        key="rule_cell_row",
    )
    rule_config = rules_result.cell_config(rule_cell.clip_mode, rule_cell.row, rule_cell.col)
    text, button = st.columns([3, 1])
    text.markdown(
        f"{rule_config.label()}, {rule_config.epochs} epochs: "
        + describe_outcome(
            str(chosen_rule.status[rule_cell.row, rule_cell.col]),
            int(chosen_rule.exploded_at[rule_cell.row, rule_cell.col]),
            float(chosen_rule.final_loss[rule_cell.row, rule_cell.col]),
            chosen_rule.initial_loss,
            "train MSE",
        )
    )
    button.link_button("Open in the Lab", lab_url(rule_config, "./lab"), type="primary")
    for mode, m in rules_result.maps.items():
        st.markdown(adaptive.map_paragraph(mode, m, result.maps.get("none"), rules_spec.zclip_cap))

st.caption(
    f"Last computed: {result.networks + target.networks:,} networks in "
    f"{result.seconds + target.seconds:.1f} s on this machine's CPU. On the command line: "
    "`python -m clipviz sweep --grid 32 --epochs 100 --clip-modes none,norm,value` "
    "(or `--clip-modes autoclip,agc,zclip` for the adaptive rules)."
)
