"""Recurrent nets: gradients through time, vanilla RNN versus LSTM, truncated BPTT and
per-layer clipping. Widgets and layout only: the numbers come from `clipviz.lessons.recurrent`,
the charts from `clipviz.figures.recurrent` and `clipviz.figures.training`.
"""

from __future__ import annotations

import functools
import hashlib

import streamlit as st

from app_boot import ensure_router
from clipviz.app import background, urlkeys
from clipviz.engine.config import FIELDS, PRESETS, ConfigProblem, TrainConfig
from clipviz.engine.labstate import LabState
from clipviz.figures import recurrent as figures
from clipviz.lessons import digits, recurrent
from url_guard import guard_query

ensure_router()
guard_query("recurrent", urlkeys.RECURRENT)

PRESET_NAMES = ("rnn_explodes", "rnn_clipped", "lstm_long_explodes", "lstm_long_clipped")
# Everything the widgets do not set (the adding problem, the data, the batch size) comes
# from the preset the page opens on.
BASE = urlkeys.RECURRENT_OPENING
# Labels are short: a bound radio writes its label into the URL.
CLIP_MODES = urlkeys.RECURRENT_CLIP_LABELS
LR_OPTIONS = list(urlkeys.RECURRENT_LR_OPTIONS)
HIDDEN_OPTIONS = list(urlkeys.RECURRENT_HIDDEN_OPTIONS)
KEYS = urlkeys.RECURRENT  # every URL key's bounds, declared once


def bounded(widget, label: str, key: str, **kwargs):
    """A widget bound to the URL key ``key``, with that key's declared bounds."""
    return widget(
        label,
        min_value=KEYS[key].low,
        max_value=KEYS[key].high,
        key=key,
        bind="query-params",
        **kwargs,
    )


PROBE_RADII = (0.8, 1.0, 1.2, 1.5)
# The page opens on the rnn_explodes preset: the RNN explodes, the LSTM does not. Every
# widget's default, URL key and label come from the field table (urlkeys.RECURRENT_FIELDS).
DEFAULTS = urlkeys.RECURRENT_DEFAULTS | {"rec_twins": True}
LABELS = {  # a config key -> the widget a learner would change (the field table's label)
    name: FIELDS[name].metadata["label"] for name in urlkeys.RECURRENT_FIELDS.values()
}


@st.cache_data(show_spinner=False, max_entries=24)
def cached_comparison(
    params: tuple[tuple[str, str], ...], steps: int, twins: bool
) -> recurrent.Comparison:
    config, _ = TrainConfig.from_params(dict(params), base=BASE)
    return recurrent.compare_networks(config, steps, twins=twins)


@st.cache_data(show_spinner=False, max_entries=1)
def cached_truncation() -> recurrent.TruncationStudy:
    """The truncation study: fixed settings, so computed once per server."""
    return recurrent.truncation_study()


@st.cache_data(show_spinner=False, max_entries=64)
def cached_bound(probe_params: tuple[tuple[str, str], ...], radius: float) -> recurrent.BoundProbe:
    config, _ = TrainConfig.from_params(dict(probe_params), base=BASE)
    return recurrent.bound_through_time(config.replace(recurrent_scale=radius))


@st.cache_data(show_spinner=False, max_entries=256)
def cached_probe(probe_params: tuple[tuple[str, str], ...], network: str, radius: float):
    config, _ = TrainConfig.from_params(dict(probe_params), base=BASE)
    return recurrent.probe_through_time(config.replace(network=network, recurrent_scale=radius))


def apply_preset(name: str) -> None:
    """Set every widget to a preset's values and ask for a run (an on_click callback)."""
    cfg = PRESETS[name].config
    values = {
        key: getattr(cfg, field)
        for key, field in urlkeys.RECURRENT_FIELDS.items()
        if field in cfg.relevant_keys()  # the thresholds of other modes stay as they are
    }
    st.session_state.update(values, rec_steps=recurrent.page_steps(cfg), rec_request_run=True)


def problem_text(problem: ConfigProblem) -> str:
    return f"**{LABELS.get(problem.key, problem.key)}** {urlkeys.plain_markdown(problem.message)}."


for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)

# ---- the idea ------------------------------------------------------------------------

st.title("Recurrent nets: gradients through time")
st.markdown(
    "A recurrent net reads a sequence one step at a time and feeds its hidden state "
    "$h_t$ back into itself. To train it, backpropagation through time unrolls the steps "
    "into one very deep network and sends the error gradient from the last step, where "
    "the loss is read, back to the first. On the way, the gradient is multiplied once per "
    "step by the recurrent Jacobian $J_k = \\partial h_k / \\partial h_{k-1}$. For a "
    "vanilla tanh RNN, $h_k = \\tanh(W_x x_k + W_h h_{k-1} + b)$, and over a sequence of "
    "$T$ steps:"
)
st.latex(
    r"\frac{\partial L}{\partial h_t} = \frac{\partial L}{\partial h_{T-1}}\,"
    r"J_{T-1} J_{T-2} \cdots J_{t+1},"
    r"\qquad J_k = \operatorname{diag}\!\left(1 - h_k^2\right) W_h"
)
st.markdown(
    "The same matrix $W_h$ appears in every factor, and each tanh slope $1 - h_k^2$ is at "
    "most 1. So every factor stretches the gradient by at most $\\sigma_{\\max}$, the "
    "largest singular value of $W_h$, and over $T - 1 - t$ steps back"
)
st.latex(
    r"\left\lVert \frac{\partial L}{\partial h_t} \right\rVert \le "
    r"\sigma_{\max}(W_h)^{\,T-1-t}\, \left\lVert \frac{\partial L}{\partial h_{T-1}} \right\rVert ."
)
st.markdown(
    "This is an upper bound, not a prediction. Pascanu, Mikolov & Bengio (2013) state it "
    "with the largest singular value of $W_h$ and the bound on the activation's slope (1 "
    "for tanh): if $\\sigma_{\\max}$ is below 1 the gradient must fade, and only if it is "
    "above 1 can it explode. The net here starts with $W_h$ equal to $\\rho$ times a "
    "random orthogonal matrix, so at the start every singular value and the spectral "
    "radius (the largest size of an eigenvalue) are all $\\rho$, and the bound is the "
    "familiar $\\rho^{\\,T-1-t}$ picture. That picture holds at initialisation only: "
    "training changes $W_h$, and then the singular value, not the spectral radius, bounds "
    "the growth. The tanh slopes below 1 usually keep the measured growth far below the "
    "bound, as the chart below shows. Bengio, Simard & Frasconi (1994) traced the "
    "difficulty of learning long-range dependencies to this product; Pascanu et al. showed "
    "how its growing side produces the sudden huge gradients that gradient clipping was "
    "designed to tame."
)

# ---- settings --------------------------------------------------------------------------

st.subheader("Set up the experiment")
st.caption(
    "Both networks learn the adding problem in the form Le, Jaitly & Hinton (2015) used, a "
    "variant of a task of Hochreiter & Schmidhuber (1997): every step carries a random "
    "number between 0 and 1 and a marker, one step in each half of the sequence is "
    "marked, and the target is the sum of the two marked numbers, so the net must "
    "remember the first one across at least half the sequence. They share the data, the seed (so the same batches), the hidden size, "
    "the optimizer and the clipping; the spectral radius applies to the RNN only."
)
st.markdown("**Quick start** with a preset (it sets the controls below and runs):")
preset_columns = st.columns(len(PRESET_NAMES))
for column, name in zip(preset_columns, PRESET_NAMES, strict=True):
    preset = PRESETS[name]
    column.button(
        preset.title,
        key=f"rec_preset_{name}",
        on_click=apply_preset,
        args=(name,),
        help=preset.description,
        use_container_width=True,
    )
    column.markdown(f"[Open in the Lab ↗]({LabState.of_preset(name).url()})")

left, middle, right = st.columns(3, gap="large")
with left:
    seq_len = bounded(
        st.slider,
        LABELS["seq_len"],
        "rec_seq_len",
        step=5,
        help="Time steps per sequence: the number of Jacobians in the product.",
    )
    radius = bounded(
        st.slider,
        LABELS["recurrent_scale"],
        "rec_radius",
        step=0.05,
        help="The RNN's recurrent weights start as a random orthogonal matrix times ρ, "
        "so all their eigenvalues have size ρ. The LSTM keeps its usual orthogonal start.",
    )
    hidden = st.select_slider(
        LABELS["hidden_size"], options=HIDDEN_OPTIONS, key="rec_hidden", bind="query-params"
    )
    tbptt = bounded(
        st.number_input,
        LABELS["tbptt"],
        "rec_tbptt",
        step=5,
        help="Let the gradient flow back through the last k time steps only. "
        "Must be below the sequence length.",
    )
with middle:
    lr = st.select_slider(LABELS["lr"], options=LR_OPTIONS, key="rec_lr", bind="query-params")
    momentum = bounded(
        st.slider,
        LABELS["momentum"],
        "rec_momentum",
        step=0.05,
    )
    steps = bounded(
        st.slider,
        "Training steps",
        "rec_steps",
        step=2,
        help=f"Batches of {BASE.batch_size} sequences; a run stops early if it explodes.",
    )
    seed = bounded(
        st.number_input,
        LABELS["seed"],
        "rec_seed",
        step=1,
    )
with right:
    clip_mode = st.radio(
        LABELS["clip_mode"],
        options=list(CLIP_MODES),
        format_func=CLIP_MODES.get,
        key="rec_clip_mode",
        bind="query-params",
        help="Global norm: PyTorch's clip_grad_norm_, as Pascanu, Mikolov & Bengio (2013) "
        "proposed. Per-layer ranges: value clipping with a wider range for the output "
        "layer, as Graves (2013) did. More about both below the charts.",
    )
    clip_norm = bounded(
        st.number_input,
        LABELS["clip_norm"],
        "rec_clip_norm",
        step=0.5,
        format="%g",
        disabled=clip_mode != "norm",
        help="Global norm clipping: if the whole gradient is longer than c, scale it to "
        "length c. Must be above 0.",
    )
    range_columns = st.columns(2)
    clip_value = bounded(
        range_columns[0].number_input,
        LABELS["clip_value"],
        "rec_clip_value",
        step=1.0,
        format="%g",
        disabled=clip_mode != "layerwise_value",
        help="Per-layer clipping: every gradient component of the input and recurrent "
        "weights is clamped into [−c, c]. Graves (2013) used 10.",
    )
    clip_value_output = bounded(
        range_columns[1].number_input,
        LABELS["clip_value_output"],
        "rec_clip_value_output",
        step=10.0,
        format="%g",
        disabled=clip_mode != "layerwise_value",
        help="Every gradient component of the output layer is clamped into [−c, c]. "
        "Graves (2013) used 100.",
    )
    twins = st.toggle(
        "Also train each net without clipping",
        key="rec_twins",
        disabled=clip_mode == "none",
        help="Same start, same batches, no clipping: the vermillion lines in the loss charts.",
    )

params = {
    "network": "rnn",
    "seq_len": seq_len,
    "hidden_size": hidden,
    "recurrent_scale": radius,
    "tbptt": tbptt,
    "lr": lr,
    "momentum": momentum,
    "clip_mode": clip_mode,
    "seed": seed,
}
# Only the thresholds the chosen mode uses: a disabled field can't block a run.
if clip_mode == "norm":
    params["clip_norm"] = clip_norm
if clip_mode == "layerwise_value":
    params.update(clip_value=clip_value, clip_value_output=clip_value_output)
config, problems = TrainConfig.from_params(params, base=BASE)
lstm_problems = (
    []
    if problems
    else config.replace(network="lstm", epochs=recurrent.epochs_for(config, steps)).problems()
)
run_key = (tuple(sorted(config.to_params(only_relevant=False).items())), steps, twins)
messages = [problem_text(p) for p in problems]
# The page also trains an LSTM on the same settings: it must fit the budget too.
messages += [
    f"**Run length** the LSTM on these settings: {urlkeys.plain_markdown(p.message)}; "
    "try a shorter sequence or fewer hidden units."
    for p in lstm_problems
]
problems = problems or lstm_problems
if not problems:
    messages += [
        f"**Run length** {m}." for m in recurrent.page_run_problems(config, steps, twins=twins)
    ]

if messages:
    st.error(
        "These settings can't be run yet:\n\n" + "\n".join(f"- {m}" for m in messages),
        icon="⚠️",
    )
    run_clicked = False
else:
    run_clicked = st.button("Run", type="primary", key="rec_run", icon="▶️")
    # The first visit shows the default run at once; a preset button asks for its run.
    if run_clicked or st.session_state.pop("rec_request_run", False):
        st.session_state["rec_last_run"] = run_key
    st.session_state.setdefault("rec_last_run", run_key)
st.session_state.pop("rec_request_run", None)

# ---- before training: the product at the initial weights ------------------------------

if not problems:
    with st.expander("Before any training: the gradient through time at the start", True):
        radii = tuple(sorted({*PROBE_RADII, round(radius, 2)}))
        # The probe depends only on the data, the net's shape and the seed.
        probe_params = (
            ("hidden_size", str(hidden)),
            ("seed", str(seed)),
            ("seq_len", str(seq_len)),
        )
        by_radius = {r: cached_probe(probe_params, "rnn", r) for r in radii}
        lstm_probe = cached_probe(probe_params, "lstm", 1.0)
        curves = {figures.radius_label(r): by_radius[r] for r in radii}
        curves["LSTM"] = lstm_probe
        colours = figures.radius_colours(list(radii))
        st.plotly_chart(
            figures.through_time_figure(
                curves,
                title=f"‖∂L/∂hₜ‖ at the initial weights, one batch, T = {seq_len}",
                colours={**colours, "LSTM": "#000000"},
                dashes={"LSTM": "dash", figures.radius_label(radius): "solid"},
            ),
            key="rec_probe_chart",
        )
        growth = {r: recurrent.growth_factor(by_radius[r]) for r in radii}
        st.caption(
            "Read the lines from right to left, the way the gradient travels. Growth from "
            "the last step back to step 0: "
            + "; ".join(f"ρ = {r:g}: {recurrent.format_factor(g)} times" for r, g in growth.items())
            + f"; LSTM: {recurrent.format_factor(recurrent.growth_factor(lstm_probe))} times."
        )
        bound = cached_bound(probe_params, round(radius, 2))
        st.plotly_chart(
            figures.bound_figure(
                bound, title=f"RNN, ρ = {radius:g}: measured ‖∂L/∂hₜ‖ against the bound"
            ),
            key="rec_bound_chart",
        )
        st.caption(recurrent.describe_bound(bound))

# ---- results -------------------------------------------------------------------------

last = st.session_state.get("rec_last_run")
if last is not None:
    if last != run_key:
        st.warning(
            "You changed the settings. Press **Run** to train with them; the results below "
            "are still those of the previous run."
        )
    last_config, _ = TrainConfig.from_params(dict(last[0]), base=BASE)
    with st.spinner("Training the RNN and the LSTM…"):
        comparison = cached_comparison(*last)

    st.subheader("What happened")
    st.caption(f"This run: {recurrent.settings_text(last_config)}, {last[1]} training steps.")
    st.info("\n\n".join(recurrent.describe(comparison)))

    same_scale = st.toggle(
        "One colour scale for both heatmaps",
        value=True,
        key="rec_same_scale",
        help="On: the same colour means the same gradient size in both maps. Off: each "
        "map uses its own range, which shows detail inside a calm map.",
    )
    shared = figures.shared_log_range(*(r.hidden_grad_norm for r in comparison.runs))
    columns = st.columns(2, gap="large")
    for column, run in zip(columns, comparison.runs, strict=True):
        with column:
            st.markdown(f"#### {run.name}")
            if run.exploded_at is not None:
                st.error(f"Exploded at step {run.exploded_at}: {run.explosion}.")
            else:
                # "learned" only where the progress detector agrees (RunResult.learned)
                box = st.success if run.learned else st.warning
                box(
                    f"{run.steps} steps without exploding; it {recurrent.verdict(run)}. "
                    f"Training loss {run.initial_loss:.3g} → {run.final_loss:.3g}."
                )
            st.plotly_chart(
                figures.hidden_grad_heatmap(
                    run.hidden_grad_norm,
                    title=f"{run.name}: log₁₀ ‖∂L/∂hₜ‖ per time step and training step",
                    log_range=shared if same_scale else None,
                    exploded_at=run.exploded_at,
                    tbptt=run.config.tbptt,
                ),
                key=f"rec_heatmap_{run.network}",
            )
            st.plotly_chart(figures.loss_figure(run), key=f"rec_loss_{run.network}")
    st.caption(
        "Heatmaps: each row is one training step, each column one time step of the "
        "sequence; bright means a large gradient, and the two ends of the colour scale "
        "also stand for anything beyond them (hover a cell for its exact value). "
        "Grey cells got no gradient: before a truncation cut, or where the gradient "
        "vanished, for instance behind tanh units pushed to exactly ±1, which pass nothing "
        "back. Loss charts: blue is a clipped run, vermillion an "
        "unclipped one; thin lines are batch losses, markers the whole training and test "
        "sets after each epoch."
    )

    most = max(run.steps for run in comparison.runs)
    largest = comparison.rnn.largest_growth()
    st.markdown("**Through time at one training step**")
    curve_step = st.slider(
        "Training step",
        1,
        max(most, 2),
        value=largest[0] if largest else 1,
        # A new run gets a new slider, which starts at the RNN's largest growth.
        key="rec_curve_step_" + hashlib.sha1(repr(last).encode()).hexdigest()[:10],
        help="Starts at the training step where the RNN's gradient grew most through time.",
    )
    st.plotly_chart(figures.step_curves_figure(comparison.runs, curve_step), key="rec_curve_chart")

    st.markdown("**Gradient norm per layer**")
    columns = st.columns(2, gap="large")
    for column, run in zip(columns, comparison.runs, strict=True):
        column.plotly_chart(figures.layer_figure(run), key=f"rec_layers_{run.network}")
    with st.expander("Gradient norm before and after clipping"):
        columns = st.columns(2, gap="large")
        for column, run in zip(columns, comparison.runs, strict=True):
            column.plotly_chart(figures.grad_norm_figure(run), key=f"rec_grad_{run.network}")

# ---- the fixes -------------------------------------------------------------------------

st.subheader("Why the LSTM stays calmer")
st.markdown(
    "Hochreiter & Schmidhuber (1997) built the LSTM around a cell state that is updated by "
    "addition rather than by a matrix product. The forget gate $f_t$ came later, from "
    "Gers, Schmidhuber & Cummins (2000); the 1997 cell kept its state as it was, as if "
    "$f_t = 1$. The cell as it is used today:"
)
st.latex(r"c_t = f_t \odot c_{t-1} + i_t \odot g_t, \qquad h_t = o_t \odot \tanh(c_t)")
st.markdown(
    "Along the cell, the gradient is multiplied by the forget gate $f_t$, a number between "
    "0 and 1, instead of by $W_h$. On that path it cannot grow, and it fades only as fast "
    "as the net chooses to forget. An LSTM can still blow up, for another reason: steps "
    "that are too large. The `lstm_long_explodes` preset takes them (learning rate "
    f"{PRESETS['lstm_long_explodes'].config.lr:g} with momentum "
    f"{PRESETS['lstm_long_explodes'].config.momentum:g}); its gradient fades back through "
    "time, yet a few oversized steps push its gates to saturation, and then the output "
    "layer runs away. Run it and the words under *What happened* give the steps."
)

st.subheader("Truncated backpropagation through time")
st.markdown(
    "Williams & Peng (1990) let the gradient flow back only $k$ steps from where the loss "
    "is read. The product then has at most $k$ factors, so its bound is "
    "$\\sigma_{\\max}^{\\,k}$ instead of $\\sigma_{\\max}^{\\,T-1}$, and each step "
    "costs less. What it costs: the gradient of every link longer than $k$ steps is "
    "missing, so the direction the net follows is biased towards short links."
)
st.markdown(
    "It does not make long links unlearnable. The weights are shared across time, so a "
    "rule learned inside the window, such as *when the marker is on, store the number*, "
    "acts at every time step, including the ones the gradient never reached. Learning the "
    "long link just gets harder and slower. The run below shows it: one LSTM trained three "
    "times from the same start on the same batches, with full backpropagation and with two "
    "cuts that never reach the first marked number."
)
with st.spinner("Training the LSTM with full and truncated backpropagation…"):
    study = cached_truncation()
st.plotly_chart(figures.truncation_figure(study), key="rec_truncation_chart")
st.caption(
    f"Settings: {recurrent.settings_text(study.config, rnn=False, truncation=False)}, "
    f"{int(study.runs[0].steps[-1])} training steps; the test MSE is measured every "
    f"{int(study.runs[0].steps[1])} steps. " + " ".join(recurrent.describe_truncation(study))
)
st.markdown(
    f"Set *{LABELS['tbptt']}* in the experiment above and the heatmaps turn grey to the left of "
    "the cut: no gradient reaches those time steps."
)

st.subheader("Per-layer clipping, next to global norm clipping")
st.markdown(
    "Global norm clipping (Pascanu, Mikolov & Bengio 2013; PyTorch's `clip_grad_norm_`) "
    "treats all gradients as one vector: if it is longer than $c$, everything is scaled "
    "down by the same factor, so the direction is kept. When the recurrent weights' "
    "gradient is a million times larger than the output layer's, the output layer's share "
    "is scaled down a millionfold too and it barely learns while the explosion lasts."
)
st.markdown(
    "Graves (2013), training deep LSTMs to generate handwriting, clipped each derivative "
    "into a range instead, a wider one for the output layer, $[-100, 100]$, than for the "
    "LSTM layers, $[-10, 10]$. The *per-layer ranges* mode here clamps every "
    "gradient component of the output layer into $[-c_{out}, c_{out}]$ and of the input "
    "and recurrent weights into $[-c, c]$. (Graves clipped the derivatives flowing through "
    "the layers during backpropagation; clamping the weights' gradients is the form the "
    "libraries offer.) Clamping components can turn the gradient's direction; it never "
    "scales one layer down because another exploded."
)

with st.expander("Key takeaways", expanded=True):
    st.markdown(
        "- Backpropagation through time multiplies by the same recurrent Jacobian once per "
        "step: a spectral radius above 1 lets the gradient grow exponentially with the "
        "distance back in time, below 1 it fades.\n"
        "- Longer sequences mean more factors, so more room to explode (or vanish).\n"
        "- Fixes that act on the product: LSTM cells, a smaller radius at the start, "
        "truncating backpropagation to k steps. A fix that acts on the step: clipping, "
        "which caps how far one update can move the weights without changing the model.\n"
        "- Clipping makes training numerically stable; it does not make the net learn the "
        "long dependency. That still takes enough steps, a suitable model and data."
    )

# ---- a claim tested: clip-by-value on an LSTM reading digits -------------------------

DIGITS_CLIPPED = PRESETS["digits_lstm_clipvalue"].config


@st.cache_resource(show_spinner=False)
def digits_runs() -> background.Once[digits.Study]:
    """The chapter's runs, trained once per server on a thread of their own: every learner
    reads the same runs, and nobody's page waits for them (see clipviz.app.background)."""
    return background.Once(
        functools.partial(digits.run_study, digits.DEFAULT_SEEDS), name="digits study"
    )


st.subheader("A claim tested: does clipping by value help an LSTM read images?")
st.markdown(
    "The article *How can gradient clipping help avoid the exploding gradient problem?* "
    "trains a small Keras LSTM with 10 units that reads each 28×28 Fashion-MNIST image one "
    "row per time step, once without clipping and once with clipping by value, and from "
    "one run of each concludes that clipping can improve training. One run of each cannot "
    "tell an effect from luck: another seed moves the result too. So here is the same "
    "experiment, repeated over several seeds."
)
st.markdown(
    f"The net reads scikit-learn's 8×8 handwritten digits, one row of 8 pixels per time "
    f"step, and names the digit (10 classes: guessing is right 10% of the time). Taken from "
    f"the article: {DIGITS_CLIPPED.hidden_size} LSTM units, batches of "
    f"{DIGITS_CLIPPED.batch_size}, {DIGITS_CLIPPED.epochs} epochs, pixels scaled to [0, 1], "
    f"and clipping by value at $c = {DIGITS_CLIPPED.clip_value:g}$, the value its text gives "
    "as the example. Each gradient component is clamped into $[-c, c]$:"
)
st.latex(r"g_i \;\leftarrow\; \min\bigl(\max(g_i,\,-c),\; c\bigr)")
st.markdown(
    "Our copy of the article lost the lines that set its optimizer, so these are our "
    f"choice: SGD with learning rate {DIGITS_CLIPPED.lr:g} and momentum "
    f"{DIGITS_CLIPPED.momentum:g}, as in the tutorial's reference experiment, at which both "
    f"runs learn the digits in {DIGITS_CLIPPED.epochs} epochs. With "
    f"{DIGITS_CLIPPED.n_train:,} training digits an epoch is "
    f"{DIGITS_CLIPPED.total_steps_estimate() // DIGITS_CLIPPED.epochs} steps, not the "
    "article's 500. The clipped and the unclipped run of each seed start from the same "
    "weights and see the same batches. "
    "[Open the pair in the Lab ↗](/lab?preset=digits_lstm_clipvalue&twin=true)"
)


def show_digits_chapter(study: digits.Study) -> None:
    """The runs' charts, the verdict and the table."""
    verdict = digits.verdict(study)

    st.markdown(f"**At learning rate {study.base_lr:g}, over {len(study.seeds)} seeds**")
    st.plotly_chart(figures.study_curves_figure(study), key="rec_digits_curves")
    with st.container(border=True, key="rec_digits_verdict"):
        st.markdown("**Verdict.** " + " ".join(verdict.sentences[:3]))

    st.markdown("**When would clipping by value help?**")
    top_lr = study.higher_lrs[-1]
    st.markdown(
        "Clipping by value changes a step only where a gradient component is larger than $c$, "
        "so it helps when a rare step brings a huge gradient: the cliff of Pascanu, Mikolov & "
        "Bengio (2013), the vanilla RNN on long sequences above, the unscaled target of the "
        "tutorial. A higher learning rate makes every step larger instead. Clipping bounds how "
        "far one weight can move in a step, with learning rate $\\eta$ and momentum $\\mu$, to"
    )
    st.latex(r"|\Delta w_i| \;\le\; \frac{\eta\, c}{1 - \mu}")
    st.markdown(
        f"which at learning rate {top_lr:g} is {digits.step_bound(top_lr):g}, against "
        f"{digits.step_bound(study.base_lr):g} at {study.base_lr:g}. To find out whether some "
        "learning rate makes the unclipped runs fail while the clipped ones hold, the same pairs "
        f"were trained at learning rates {' and '.join(f'{lr:g}' for lr in study.higher_lrs)}:"
    )
    st.plotly_chart(figures.study_lr_figure(study), key="rec_digits_lr")
    with st.container(border=True, key="rec_digits_higher"):
        st.markdown(" ".join(verdict.sentences[3:]))
    with st.expander("Every setting's numbers"):
        st.dataframe(study.table(), hide_index=True, key="rec_digits_table")
        st.caption(
            "Failed: exploded, or ended below "
            f"{100 * digits.FAIL_ACCURACY:.0f}% test accuracy. The runs at learning rate "
            f"{study.base_lr:g} are exactly the presets' (the Lab and `python -m clipviz train` "
            "give the same numbers). The higher rates share one batched trainer per seed: same "
            "start, same batches, but float rounding that differs slightly from a single run's, "
            "and at rates this unstable such tiny differences can move a run's end by several "
            "points. Reproduce the table with `python -m clipviz reproduce --experiment "
            "digits_lstm`."
        )


RUNS_COUNT = 2 * (1 + len(digits.HIGHER_LR_FACTORS)) * digits.DEFAULT_SEEDS
job = digits_runs()
study = job.result(wait=1.0)  # at once when the runs are done (after the first visit)
if job.error:
    st.error(f"The runs of this section could not be trained: {job.error}")
elif study is None:

    @st.fragment(run_every=2.0)
    def waiting_for_the_runs() -> None:
        """Polls until the runs are done, then redraws the whole page once with them."""
        if job.done:
            st.rerun()
        st.markdown(
            f"*Training the {RUNS_COUNT} LSTMs of this section, once for everyone on this "
            f"server: {job.seconds:.0f} s so far. The results appear here when they are "
            "done; the rest of the page works meanwhile.*"
        )

    waiting_for_the_runs()
else:
    show_digits_chapter(study)
