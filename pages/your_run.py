"""Your run, diagnosed: upload a gradient-norm log of your own training, see its signs, spikes
and the thresholds its norms suggest. Widgets and layout only; the reading and the numbers
come from `clipviz.lessons.yourrun`, the page's state and words from `clipviz.app.yourrun`,
the charts from `clipviz.figures.yourrun`. The upload stays in this session's memory.
"""

from __future__ import annotations

import streamlit as st

from app_boot import ensure_router
from clipviz.app import yourrun as page
from clipviz.figures import yourrun as figures
from clipviz.lessons import yourrun
from clipviz.lessons.yourrun import EXAMPLES, SpikeRule

ensure_router()

STATE, SEEN = "_your_run", "_your_run_seen"
MAPPING_KEYS = ("your_run_step", "your_run_norm", "your_run_loss", "your_run_run")
PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
state = st.session_state
if STATE not in state:
    state[STATE] = page.YourRun()
session: page.YourRun = state[STATE]


def forget_mapping() -> None:
    """A new log: its column pickers start again from its own guess."""
    for key in MAPPING_KEYS:
        state.pop(key, None)


def on_example(name: str) -> None:
    session.load(yourrun.example_log(name), EXAMPLES[name].title)
    forget_mapping()


st.title("Your run, diagnosed")
st.markdown(
    "Did *your* training run have exploding gradients, and where would a clipping threshold "
    "sit? Give this page the gradient norms your run logged, one row per step, and it looks "
    "for the same signs the Training Lab looks for, finds the steps whose norm jumped out of "
    "line, and turns the norms you observed into thresholds, each with the share of steps "
    "it would have clipped. Choosing a threshold by first watching the typical norms is the "
    "sources' own advice."
)
st.markdown(
    "Any CSV with a step column and a gradient-norm column will do: the Lab's CSV export, "
    "`python -m clipviz train --records`, the logger below, a TensorBoard scalar export "
    "(`Wall time,Step,Value`) or a Weights & Biases panel export. Your file stays in this "
    "browser session's memory only: it is not saved, and no one else sees it."
)
with st.expander("Log your own PyTorch loop with `clipviz.GradientLog`"):
    st.code(page.GRADLOG_SNIPPET, language="python")
    st.caption(
        "It records, per optimizer step, the total gradient norm (the same number as "
        "`torch.nn.utils.get_total_norm`), the norm of each module, the norm after your "
        "clipping, the loss, the weight norm and the size of the update, and marks steps that "
        "AMP's GradScaler skipped. With AMP, call `log.step` after `scaler.unscale_(optimizer)`."
    )

upload_col, example_col = st.columns([3, 2], gap="large")
with upload_col:
    upload = st.file_uploader(
        "Your gradient-norm log (CSV)",
        key="your_run_file",
        help="UTF-8 text, comma-, semicolon- or tab-separated, with a header row; at most 5 MB.",
    )
with example_col:
    st.markdown("No log at hand? Try one made by the Lab:")
    for name, example in EXAMPLES.items():
        st.button(
            example.title,
            key=f"your_run_example_{name}",
            on_click=on_example,
            args=(name,),
            help=f"{example.description} Open it in the Lab: /lab?{example.query}",
            width="stretch",
        )

if upload is not None and state.get(SEEN) != upload.file_id:
    state[SEEN] = upload.file_id
    session.load(upload.getvalue(), upload.name)
    forget_mapping()
elif upload is None:
    state.pop(SEEN, None)

# ---- the columns ---------------------------------------------------------------------
candidate = session.candidate
if candidate is not None:
    log = candidate.log
    guess = log.guess
    names = list(log.table.names)
    with st.expander(
        f"Columns of {candidate.name}", expanded=guess is None or session.columns_problem
    ):
        cols = st.columns(4 if log.runs else 3)
        step_col = cols[0].selectbox(
            "step",
            names,
            index=names.index(guess.step) if guess else None,
            placeholder="choose a column",
            key="your_run_step",
        )
        norm_col = cols[1].selectbox(
            "gradient norm (before clipping)",
            names,
            index=names.index(guess.grad_norm) if guess else None,
            placeholder="choose a column",
            key="your_run_norm",
        )
        loss_options = [page.NO_LOSS, *names]
        loss_col = cols[2].selectbox(
            "loss",
            loss_options,
            index=loss_options.index(guess.loss) if guess and guess.loss else 0,
            key="your_run_loss",
        )
        run = None
        if log.runs:
            run = cols[3].selectbox("run", list(log.runs), key="your_run_run")
        st.caption(
            f"{log.table.n_rows:,} rows and {len(names)} columns; the header looks like a "
            f"{log.kind} log. The gradient norm should be the one before clipping."
        )
    mapping = page.mapping_of(step_col, norm_col, loss_col)
    if mapping is not None and (
        session.current is None
        or session.current.loaded is not candidate
        or session.current.run_log.mapping != mapping
        or session.current.run_log.run != run
    ):
        session.choose(mapping, run)

if session.problem is not None:
    st.error(page.problem_text(session.problem), icon=":material/error:")

with st.expander("Spike detector settings (ZClip's defaults)"):
    rule_cols = st.columns(4)
    alpha = rule_cols[0].number_input(
        "alpha (memory of the averages)", 0.5, 0.999, 0.97, 0.01, key="your_run_alpha"
    )
    z = rule_cols[1].number_input("z (spike above)", 0.5, 10.0, 2.5, 0.1, key="your_run_z")
    warmup = rule_cols[2].number_input("warm-up steps", 1, 10_000, 25, 1, key="your_run_warmup")
    per_epoch = rule_cols[3].number_input(
        "steps per epoch",
        1,
        10_000_000,
        value=None,
        placeholder="from the log",
        key="your_run_steps_per_epoch",
        help="The signs judged per epoch (does the loss improve?) need it. By default it "
        "comes from an epoch column, or the log is cut into 100 parts.",
    )

current = session.current
if current is None:
    st.info("Upload a log, or try an example, to see its diagnosis here.", icon=":material/upload:")
    st.stop()

diagnosis = page.diagnose(current, SpikeRule(alpha=alpha, z=z, warmup=int(warmup)), per_epoch)
if session.shows_last_good:
    st.caption(f"Below: the last log that could be read, {current.loaded.name}.")
st.success(page.summary_text(diagnosis, current.loaded.name), icon=":material/check_circle:")
for note in diagnosis.notes:
    st.caption(page.problem_text(note))
if (clipping := page.clipping_text(diagnosis)) is not None:
    st.caption(clipping)

metric_cols = st.columns(5)
metric_cols[0].metric("Steps", f"{diagnosis.steps:,}")
metric_cols[1].metric("Median norm", f"{diagnosis.percentiles['50']:.4g}")
metric_cols[2].metric("99th percentile", f"{diagnosis.percentiles['99']:.4g}")
metric_cols[3].metric("Spikes", f"{len(diagnosis.spikes.steps):,}")
metric_cols[4].metric(
    "Not finite from step",
    "never" if diagnosis.exploded_at is None else f"{diagnosis.exploded_at:,}",
)

st.subheader("The gradient norm, step by step")
st.plotly_chart(figures.norm_figure(diagnosis), config=PLOTLY_CONFIG, key="your_run_norms")

signs_col, spikes_col = st.columns(2, gap="large")
with signs_col:
    st.markdown("##### Signs of exploding gradients")
    lines = page.finding_lines(diagnosis)
    if lines:
        st.markdown("\n".join(lines))
    else:
        st.markdown(
            "None found. The Lab's detector looks for a loss that does not improve, jumps "
            "wildly or turns NaN, weights that grow fast or turn NaN, and gradients above 1 "
            "at nearly every component; each needs its column in the log."
        )
with spikes_col:
    st.markdown("##### Spikes")
    st.markdown(page.spike_text(diagnosis))
    st.markdown(
        "A spike is a step whose norm stands far above the recent ones, judged as ZClip "
        "(Kumar et al., 2025) judges it: by its z-score against moving averages of the norm's "
        "mean and spread, which the first steps (the warm-up) start."
    )
    st.latex(
        r"z_t = \frac{g_t - \mu_{t-1}}{\sigma_{t-1} + \epsilon}, \qquad "
        r"\begin{aligned} \mu_t &= \alpha\,\mu_{t-1} + (1-\alpha)\,\tilde g_t \\ "
        r"\sigma_t^2 &= \alpha\,\sigma_{t-1}^2 + (1-\alpha)\,(\tilde g_t - \mu_t)^2 "
        r"\end{aligned}"
    )
    st.caption(
        f"A spike is z above {z:g}; the averages then take in the norm ZClip would have clipped "
        r"it to, $\tilde g_t$, instead of the spike itself."
    )

st.subheader("How large are your norms?")
dist_col, table_col = st.columns([3, 2], gap="large")
with dist_col:
    st.plotly_chart(
        figures.distribution_figure(diagnosis), config=PLOTLY_CONFIG, key="your_run_hist"
    )
with table_col:
    st.markdown("##### Suggested thresholds")
    st.dataframe(
        page.threshold_rows(diagnosis),
        hide_index=True,
        width="stretch",
        column_config={
            "threshold": st.column_config.NumberColumn(format="%.4g"),
            "steps it would have clipped": st.column_config.ProgressColumn(
                format="%.1f%%", min_value=0, max_value=100
            ),
        },
        key="your_run_thresholds",
    )
    st.caption(
        "Each threshold is a percentile of the norms you logged, and clips exactly the "
        "steps whose norm is above it. Clipping at the 90th percentile trims the largest "
        "tenth of the steps; AutoClip (Seetharaman et al., 2020) clips at the 10th, so "
        "most steps. Pascanu et al. (2013) found training not very sensitive to the choice; "
        "clipping steadies a run, it does not fix a learning rate or a target that is too "
        "large."
    )
