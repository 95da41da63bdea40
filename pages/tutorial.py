"""Tutorial: the reference experiment retold as a guided story in six chapters.

Widgets and layout only. The runs come from ``clipviz.lessons.story`` (cached here per
chapter and seed), the charts from ``clipviz.figures``.
"""

import math

import streamlit as st

from app_boot import ensure_router
from clipviz.figures.training import grad_norm_figure, loss_figure
from clipviz.figures.tutorial import (
    chapter_trace,
    extension_figure,
    signs_timeline_figure,
    target_figure,
)
from clipviz.lessons import story
from clipviz.lessons.diagnose import SIGNS

ensure_router()

MAX_SEED = 2**31 - 1


@st.cache_data(show_spinner="Generating the data and taking a first step…", max_entries=16)
def _data(seed: int) -> story.DataSummary:
    return story.data_summary(seed)


@st.cache_data(show_spinner="Training…", max_entries=64)
def _chapter(key: str, seed: int) -> story.ChapterRun:
    return story.chapter_run(key, seed)


@st.cache_data(show_spinner=False, max_entries=4000)
def _extension_run(group: str, index: int, seed: int) -> story.RunOutcome:
    return story.extension_run(group, index, seed)


@st.cache_resource
def _finished_grids() -> set:
    """(first seed, seeds) of extension grids some session finished: shown without a click."""
    return set()


def _mse(value: float | None) -> str:
    if value is None:
        return "not run"
    if not math.isfinite(value):
        return "NaN"
    # Three decimals, as the tutorial printed its results; no decimals once they stop meaning much.
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3f}"


def _seed_input(number: int, label: str = "Seed") -> int:
    return int(
        st.number_input(
            label,
            min_value=0,
            max_value=MAX_SEED,
            value=story.DEFAULT_SEED,
            step=1,
            key=f"seed_ch{number}",
            help="Change it to re-run this chapter with other initial weights and batch order.",
        )
    )


def _chapter_header(number: int, title: str, anchor: str, *, seeded: bool = True) -> int | None:
    """The chapter's title, with its seed control on the right when it has one."""
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    left.header(f"{number}. {title}", anchor=anchor, divider="gray")
    if not seeded:
        return None
    with right:
        return _seed_input(number)


def _lab_link(query: str, text: str = "Open this run in the Training Lab") -> None:
    st.markdown(f"[{text} ↗]({story.lab_url(query)})")


def _outcome(run: story.ChapterRun) -> None:
    if run.exploded:
        st.error(
            f"Exploded at step {run.exploded_at} of {run.total_steps:,} "
            f"(epoch {run.explosion_epoch}): {run.explosion}."
        )
    else:
        st.success(
            f"No explosion in {run.total_steps:,} steps. Final MSE in the target's original "
            f"units: train {_mse(run.final_train_mse)}, test {_mse(run.final_test_mse)}."
        )


def _versus_published(run: story.ChapterRun) -> None:
    """Our final MSE beside the tutorial's one published Keras run."""
    published = story.published_numbers(story.CHAPTER_BY_KEY[run.chapter].experiment)
    cols = st.columns(4)
    cols[0].metric(f"Our train MSE (seed {run.config.seed})", _mse(run.final_train_mse))
    cols[1].metric(f"Our test MSE (seed {run.config.seed})", _mse(run.final_test_mse))
    if published is None:
        cols[2].metric("Published train MSE", "not run")
        cols[3].metric("Published test MSE", "not run")
    else:
        cols[2].metric("Published train MSE", _mse(published[0]))
        cols[3].metric("Published test MSE", _mse(published[1]))


def _still_flagged(run: story.ChapterRun) -> None:
    if not run.findings:
        st.caption(f"The Lab's sign detector finds none of its {len(SIGNS)} signs in this run.")
        return
    named = "; ".join(f"{f.sign.title} (from step {f.step})" for f in run.findings)
    st.caption(f"The Lab's sign detector reports: {named}.")


def _fell(run: story.ChapterRun) -> str:
    """When the epoch training MSE first went under the tutorial's landmark of 100."""
    if run.epoch_below_100 is None:
        return f"never fell below {story.SUB_100:g}"
    return f"fell below {story.SUB_100:g} in epoch {run.epoch_below_100}"


def _run_charts(run: story.ChapterRun, revision: str) -> None:
    left, right = st.columns(2)
    left.plotly_chart(
        loss_figure([chapter_trace(run)], revision=f"{revision}-loss"),
        key=f"{revision}_loss",
        width="stretch",
    )
    right.plotly_chart(
        grad_norm_figure([chapter_trace(run)], revision=f"{revision}-grad"),
        key=f"{revision}_grad",
        width="stretch",
    )


# ---- the page ---------------------------------------------------------------

st.title("The tutorial, reproduced")
st.markdown(
    "This page retells Jason Brownlee's tutorial *How to Avoid Exploding Gradients With "
    "Gradient Clipping* (Machine Learning Mastery, 2019) in six short chapters. It trained its "
    "network in Keras; here every run is trained live, in PyTorch, by the same engine as "
    "the Training Lab, so each number below is computed as the page opens. Each chapter "
    "opens in the Lab with one click, and each can be re-run with another seed."
)
st.markdown(
    "[1. The data](#the-data) · [2. Explodes](#explodes) · [3. Standardized](#standardized) "
    "· [4. Clip by norm](#clip-by-norm) · [5. Clip by value](#clip-by-value) "
    "· [6. Extensions](#extensions)"
)

# 1 -------------------------------------------------------------------------
_chapter_header(1, "The data", "the-data", seeded=False)
data = _data(story.DEFAULT_SEED)
st.markdown(
    f"scikit-learn's `make_regression` draws 1,000 examples with {data.n_features} input "
    "features, ten of them informative, a little noise and a fixed random state, so everyone "
    "gets the same rows. The first 500 rows train the network; the last 500 test it."
)
left, right = st.columns([3, 2], gap="large")
with left:
    st.plotly_chart(target_figure(data.y_train, data.y_test), key="target_figure", width="stretch")
with right:
    for col, (label, value) in zip(
        st.columns(4),
        [
            ("Smallest", data.minimum),
            ("Largest", data.maximum),
            ("Mean", data.mean),
            ("Std. dev.", data.std),
        ],
        strict=True,
    ):
        col.metric(label, f"{value:,.0f}")
    st.markdown(
        "An untrained network outputs values near zero, so its first errors are the size "
        "of the targets: hundreds. The gradient of the squared error grows with the error "
        "itself,"
    )
    st.latex(r"\frac{\partial L}{\partial \hat y_i} = \frac{2}{B}\,(\hat y_i - y_i),")
    st.markdown(
        "so a target in the hundreds makes gradients in the hundreds. Here is the very first "
        f"update of the tutorial's network (seed {story.DEFAULT_SEED}):"
    )
    st.table(
        {
            "target": ["raw", "standardized"],
            "first batch MSE": [
                f"{data.unscaled.loss:,.0f}",
                f"{data.standardized.loss:.3g}",
            ],
            "gradient norm": [
                f"{data.unscaled.grad_norm:,.0f}",
                f"{data.standardized.grad_norm:.3g}",
            ],
            "largest component": [
                f"{data.unscaled.max_abs_grad:,.1f}",
                f"{data.standardized.max_abs_grad:.3g}",
            ],
        },
        hide_index=True,
    )
_lab_link("preset=tutorial_unscaled", "Train on this data in the Training Lab")

# 2 -------------------------------------------------------------------------
seed = _chapter_header(2, "The MLP on the raw target explodes", "explodes")
unscaled = _chapter("unscaled", seed)
st.markdown(
    "The tutorial's network: 20 inputs, one hidden layer of 25 ReLU units, one linear "
    "output. Mean squared error, SGD with learning rate 0.01 and momentum 0.9, batches of "
    "32, 100 epochs. The target is used as it is, and nothing is clipped."
)
_outcome(unscaled)
if unscaled.findings:
    first = unscaled.first_finding
    lead = (
        f", {unscaled.exploded_at - first.step} steps before the explosion"
        if unscaled.exploded and unscaled.exploded_at > first.step
        else ""
    )
    st.markdown(f"**The first sign: {first.sign.title}**, at step {first.step}{lead}.")
    st.markdown(
        "\n".join(
            f"{i}. Step {f.step}: **{f.sign.title}**: {f.detail}."
            for i, f in enumerate(unscaled.findings, start=1)
        )
    )
st.plotly_chart(
    signs_timeline_figure(chapter_trace(unscaled), unscaled.findings),
    key="signs_timeline",
    width="stretch",
)
published = story.published_numbers("no_clip")
st.caption(
    "The loop feeds itself: a large gradient makes a large update, larger weights make "
    "larger errors, and larger errors make an even larger gradient, until float32 "
    "overflows. "
    + (
        "The tutorial's Keras run ended in NaN as well."
        if published and math.isnan(published[1])
        else ""
    )
)
_lab_link(unscaled.lab_query)

# 3 -------------------------------------------------------------------------
seed = _chapter_header(3, "Standardize the target: it trains", "standardized")
standardized = _chapter("standardized", seed)
st.markdown(
    f"The usual cure for a regression MLP: subtract the training target's mean "
    f"({data.train_mean:.1f}) and divide by its standard deviation ({data.train_std:.1f}), "
    "train on that, and scale the predictions "
    "back. The errors now start near 1, and so does the gradient: its first norm is "
    f"**{standardized.first_grad_norm:.3g}** instead of **{unscaled.first_grad_norm:,.0f}**."
)
_outcome(standardized)
_versus_published(standardized)
_run_charts(standardized, "ch3")
st.caption(
    "The loss is shown in the target's original units (the MSE on the standardized scale "
    f"times {data.train_std:.1f}², the variance it was divided by), so it compares directly with "
    "the other chapters. The tutorial did not run this case here; scaling has a tutorial "
    "of its own."
)
_lab_link(standardized.lab_query)

# 4 -------------------------------------------------------------------------
seed = _chapter_header(4, "Clip by norm at 1.0", "clip-by-norm")
clip_norm = _chapter("clip_norm", seed)
left, right = st.columns([3, 2], gap="large")
with left:
    st.markdown(
        "Back to the raw target, and no scaling. This time, whenever the gradient of all "
        "weights together is longer than 1, it is shrunk to length 1 before the update. Its "
        "direction is kept. The tutorial's Keras 2.2 wrote this `clipnorm=1.0`; in today's "
        "Keras that argument clips each weight tensor on its own, and the rule used here is "
        "`global_clipnorm=1.0` (tf.keras since 2.4, and Keras 3). PyTorch: "
        "`clip_grad_norm_(params, 1.0)`."
    )
with right:
    st.latex(r"g \leftarrow g \cdot \min\!\left(1, \frac{c}{\lVert g \rVert}\right), \quad c = 1")
_outcome(clip_norm)
_versus_published(clip_norm)
st.markdown(
    f"The raw gradient norm reached **{clip_norm.max_grad_norm:,.0f}**, and clipping changed "
    f"the gradient at **{clip_norm.clipped_share:.0%}** of the steps. The training MSE "
    f"was {clip_norm.initial_train_mse:,.0f} before the first update and {_fell(clip_norm)}; "
    f"the tutorial describes {story.CHAPTER_BY_KEY['clip_norm'].published_curve}."
)
st.markdown(
    f"Clipping caps the gradient, not the step. With momentum "
    f"{clip_norm.config.momentum:g} the update is the learning rate times a velocity that "
    "adds up the clipped gradients of past steps, so it can be longer than "
    "$\\eta c$ and need not point along the latest clipped gradient; its length is at most"
)
st.latex(
    r"\lVert \Delta w \rVert \le \frac{\eta\, c}{1 - m} = "
    + f"\\frac{{{clip_norm.config.lr:g} \\times {clip_norm.config.clip_norm:g}}}"
    + f"{{1 - {clip_norm.config.momentum:g}}} = {clip_norm.update_bound:g}"
)
st.markdown(
    f"In this run the longest update measured **{clip_norm.max_update_norm:.3g}** "
    f"({clip_norm.max_update_norm / clip_norm.update_bound:.0%} of that bound)."
)
_run_charts(clip_norm, "ch4")
_still_flagged(clip_norm)
_lab_link(clip_norm.lab_query)

# 5 -------------------------------------------------------------------------
seed = _chapter_header(5, "Clip by value at 5.0", "clip-by-value")
clip_value = _chapter("clip_value", seed)
left, right = st.columns([3, 2], gap="large")
with left:
    st.markdown(
        "Instead of shrinking the whole gradient, clamp every component into [-5, 5] on its "
        "own. Keras writes this `clipvalue=5.0`; PyTorch `clip_grad_value_(params, 5.0)`. "
        "Large components are cut and small ones kept, so the direction can change."
    )
with right:
    st.latex(r"g_i \leftarrow \max\bigl(-c, \min(c, g_i)\bigr), \quad c = 5")
_outcome(clip_value)
_versus_published(clip_value)
st.markdown(
    f"Clamping changed the gradient at **{clip_value.clipped_share:.0%}** of the steps and "
    f"turned it by a median of **{clip_value.median_angle_deg:.0f}°** (clipping by norm turns "
    f"it by {clip_norm.median_angle_deg:.0f}°). The training MSE {_fell(clip_value)}; "
    f"the tutorial describes {story.CHAPTER_BY_KEY['clip_value'].published_curve}."
)
_run_charts(clip_value, "ch5")
_still_flagged(clip_value)
_lab_link(clip_value.lab_query)

with st.container(border=True):
    st.markdown(
        "**Why our numbers are not the published ones.** The tutorial printed a single "
        "Keras 2.2 run per setting; ours come from PyTorch, with other seeds, another batch "
        "order and other float rounding, and a value-clipped run in particular ends far from "
        "where the next seed ends (chapter 6). Keras 2.2's `clipnorm` rescaled the global norm "
        "of all gradients together, as PyTorch's `clip_grad_norm_` does, while tf.keras and "
        "Keras 3 clip each weight tensor separately (`global_clipnorm`, in tf.keras since 2.4 "
        "and in Keras 3, is the old rule), so the same script run today is a slightly "
        "different experiment."
    )
    _lab_link(
        story.lab_query(clip_norm.config.replace(clip_mode="norm_per_tensor")),
        "See per-tensor clipping (today's Keras clipnorm) in the Lab",
    )

# 6 -------------------------------------------------------------------------
_chapter_header(6, "The suggested extensions, over several seeds", "extensions", seeded=False)
st.markdown(
    "The tutorial closes with three ideas to try: other norm thresholds, other value ranges, "
    "and both kinds of clipping in the same run. Here each setting trains once per seed. "
    "Every dot is one run's final test MSE, the box spans the middle half of the runs, and "
    "a star marks the tutorial's single published run."
)
controls = st.columns([1, 1, 3], vertical_alignment="bottom")
n_seeds = int(
    controls[0].number_input(
        "Seeds per setting",
        min_value=1,
        max_value=10,
        value=story.DEFAULT_GRID_SEEDS,
        key="seeds_ch6",
        help="More seeds show the spread better and take longer.",
    )
)
first_seed = int(
    controls[1].number_input(
        "First seed",
        min_value=0,
        max_value=MAX_SEED - 10,
        value=0,
        key="seed_ch6",
        help="Runs use this seed and the next ones.",
    )
)
seeds = list(range(first_seed, first_seed + n_seeds))
settings = [(g, i) for g in story.EXTENSION_GROUPS for i in range(len(g.settings))]
grid_key = (first_seed, n_seeds)
n_runs = len(settings) * n_seeds
finished = grid_key in _finished_grids()
clicked = controls[2].button(
    f"Trained: {n_runs} runs" if finished else f"Run the comparison ({n_runs} training runs)",
    key="run_ch6",
    type="primary",
    disabled=finished,
)
if finished or clicked:
    progress = st.progress(0.0, text="Training…")
    outcomes: dict[str, dict[int, list[story.RunOutcome]]] = {}
    for done, (group, index) in enumerate(settings):
        outcomes.setdefault(group.key, {})[index] = [
            _extension_run(group.key, index, s) for s in seeds
        ]
        progress.progress(
            (done + 1) / len(settings), text=f"Trained {(done + 1) * n_seeds} of {n_runs} runs"
        )
    progress.empty()
    _finished_grids().add(grid_key)
    summaries = {
        g.key: story.summarise_extension(g.key, outcomes[g.key]) for g in story.EXTENSION_GROUPS
    }
    st.plotly_chart(
        extension_figure(story.extension_panels(summaries, seeds)),
        key="extension_figure",
        width="stretch",
    )
    best = [story.lowest_median(summaries[g.key]) for g in story.EXTENSION_GROUPS[1:]]
    st.markdown(
        "Lowest median test MSE in each group: "
        + "; ".join(f"**{s.setting.text}** ({_mse(s.median())})" for s in best if s)
        + ". Norm 1 then value 5 is the same as norm 1 alone, run for run: once the whole "
        "gradient has length 1, no single component can exceed 5."
    )
    every = [s for group in summaries.values() for s in group]
    st.markdown("**Ours beside the published numbers** (medians over the seeds above)")
    st.dataframe(
        [
            {
                "experiment": row.experiment,
                "published train": _mse(row.published_train_mse),
                "published test": _mse(row.published_test_mse),
                "our runs": row.runs,
                "exploded": row.exploded,
                "our median train": _mse(row.median_train_mse),
                "our median test": _mse(row.median_test_mse),
            }
            for row in story.published_comparison(every)
        ],
        hide_index=True,
        width="stretch",
    )
    labels = {s.setting.text: s for s in every}
    pick = st.selectbox(
        "Open one of these settings in the Lab", options=list(labels), key="lab_pick_ch6"
    )
    _lab_link(
        story.lab_query(labels[pick].setting.config.replace(seed=first_seed)),
        f"Open it with seed {first_seed} in the Training Lab",
    )
else:
    st.info(
        f"This trains {n_runs} networks. It takes a while the first time; after that the "
        "results are kept for every visitor."
    )

st.caption(
    f"Source: {story.SOURCE}. The Keras numbers are the ones printed there; see also "
    "R. Pascanu, T. Mikolov, Y. Bengio, *On the difficulty of training recurrent neural "
    "networks*, ICML 2013, for clipping by norm."
)
