"""The cliff: a one-unit recurrent net's loss surface, and gradient descent on it with and
without clipping (Pascanu, Mikolov & Bengio 2013, Fig. 6). Widgets and layout only; the
numbers come from `clipviz.lessons.cliff`, the charts from `clipviz.figures.cliff`.
"""

from __future__ import annotations

import streamlit as st

from app_boot import ensure_router
from clipviz.app import urlkeys
from clipviz.figures import cliff as figures
from clipviz.lessons import cliff
from url_guard import guard_query

ensure_router()
guard_query("cliff", urlkeys.CLIFF)

LR_OPTIONS = list(urlkeys.CLIFF_LR_OPTIONS)
KEYS = urlkeys.CLIFF  # every URL key's bounds, declared once


@st.cache_data(show_spinner=False, max_entries=32)
def cached_surface(
    w_range: tuple[float, float], b_range: tuple[float, float], resolution: int, T: int
) -> cliff.Surface:
    return cliff.surface(w_range, b_range, resolution, T)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_sweep(start: tuple[float, float], lr: float, steps: int, T: int) -> cliff.ThresholdSweep:
    return cliff.threshold_sweep(start, lr, steps, T)


st.title("The cliff")
st.markdown(
    "Why do gradients sometimes explode, and why does clipping help? Pascanu, Mikolov & "
    'Bengio (2013), *"On the difficulty of training recurrent neural networks"*, answer '
    "with a picture you can compute by hand. Take a recurrent net with a single unit and "
    "just two parameters, a weight $w$ and a bias $b$. It starts at $x_0 = 0.5$ and feeds "
    "its own output back in, $T$ times:"
)
st.latex(r"x_t = w\,\sigma(x_{t-1}) + b, \qquad x_0 = 0.5, \qquad t = 1, \dots, T")
st.markdown("We want the final output $\\sigma(x_T)$ to be 0.7, so the loss is")
st.latex(r"L(w, b) = \bigl(\sigma(x_T) - 0.7\bigr)^2")
st.markdown(
    "**Why a wall appears.** Each step applies the same map $x \\mapsto w\\,\\sigma(x) + b$. "
    "Its slope $w\\,\\sigma'(x)$ is at most $w/4$, because $\\sigma'$ peaks at $1/4$. "
    f"So for $w \\le {cliff.BISTABLE_MIN_W:g}$ the unit has a single resting state. For any "
    f"$w > {cliff.BISTABLE_MIN_W:g}$ there is a band of biases $b$ where it has two, a low one "
    "and a high one, with a tipping point between them where the slope is above 1. Where "
    "$x_T$ ends up depends on which side of the tipping point the start $x_0 = 0.5$ lies. "
    "The tipping point can pass through the start only if the slope there is above 1, "
    "$w\\,\\sigma'(0.5) > 1$, that is for "
    f"$w > 1/\\sigma'(0.5) \\approx {cliff.WALL_MIN_W:.4f}$. There, on the line "
    "$b = 0.5 - w\\,\\sigma(0.5)$, nudging $w$ or $b$ moves the tipping point across the "
    "start: $x_T$ flips from one state to the other and the loss jumps. Near the line, a "
    "tiny change is multiplied once per step,"
)
st.latex(
    r"\frac{\partial x_T}{\partial x_0} = \prod_{t=1}^{T} w\,\sigma'(x_{t-1}),"
    rf"\qquad w\,\sigma'(0.5) > 1 \text{{ when }} w > {cliff.WALL_MIN_W:.4f},"
)
st.markdown(
    "and with every factor above 1 the gradient grows exponentially in $T$. On the map "
    "below that line is the cliff: a bright plateau that drops suddenly to a darker side, "
    "with the lowest loss hugging the foot of the wall. Goodfellow, Bengio & Courville "
    "(*Deep Learning*, 2016) use the same picture to explain gradient clipping."
)

st.subheader("Descend with and without clipping")
st.caption(
    "Both runs start at the same point and take plain gradient-descent steps. The clipped one "
    "rescales the gradient whenever its length is above the threshold c: "
    "g ← g · c / ‖g‖, so no step is longer than learning rate × c."
)
default_w, default_b = cliff.DEFAULT_START
row1 = st.columns(3)
start_w = row1[0].slider(
    "start w",
    *cliff.W_RANGE,
    value=default_w,
    step=0.05,
    key="cliff_w0",
    bind="query-params",
    help="Recurrent weight where both descents begin.",
)
start_b = row1[1].slider(
    "start b",
    *cliff.B_RANGE,
    value=default_b,
    step=0.05,
    key="cliff_b0",
    bind="query-params",
    help="Bias where both descents begin.",
)
T = row1[2].slider(
    "time steps T",
    KEYS["cliff_T"].low,
    KEYS["cliff_T"].high,
    value=cliff.DEFAULT_T,
    key="cliff_T",
    bind="query-params",
    help="How many times the unit is applied. More steps make the wall steeper.",
)
row2 = st.columns(3)
lr = row2[0].select_slider(
    "learning rate",
    options=LR_OPTIONS,
    value=cliff.DEFAULT_LR,
    key="cliff_lr",
    bind="query-params",
)
threshold = row2[1].number_input(
    "clipping threshold c",
    min_value=KEYS["cliff_threshold"].low,
    max_value=KEYS["cliff_threshold"].high,
    value=cliff.DEFAULT_THRESHOLD,
    step=0.1,
    format="%.3g",
    key="cliff_threshold",
    bind="query-params",
    help="The largest gradient norm allowed before rescaling. Must be above 0.",
)
steps = row2[2].slider(
    "descent steps",
    KEYS["cliff_steps"].low,
    KEYS["cliff_steps"].high,
    value=cliff.DEFAULT_STEPS,
    key="cliff_steps",
    bind="query-params",
)


problems = cliff.validate(lr, threshold, steps, T)
if problems:
    st.error("These settings can't be run yet. " + " ".join(problems), icon="⚠️")
else:
    unclipped, clipped = cliff.compare((start_w, start_b), lr, threshold, steps, T)
    w_range, b_range = cliff.view_ranges(clipped)
    surf = cached_surface(w_range, b_range, cliff.DEFAULT_RESOLUTION, T)
    st.plotly_chart(
        figures.surface_figure(surf, unclipped, clipped, cliff.wall_label_point(surf)),
        key="cliff_map",
    )
    st.caption(
        "Colour is the loss on a log scale; hover for exact values, drag to zoom, double-click "
        "to reset. The wall is far thinner than one pixel, so whether a step lands on its face "
        "is partly luck: move the start a little and the steps may hop over it instead."
    )
    numbers = st.columns(3)
    numbers[0].metric("Largest step, no clipping", f"{unclipped.largest_step:.3g}")
    numbers[1].metric("Largest step, clipped", f"{clipped.largest_step:.3g}")
    numbers[2].metric("Steps clipped", f"{clipped.clipped_count} of {clipped.steps}")
    numbers = st.columns(3)
    numbers[0].metric("Final loss, no clipping", f"{unclipped.final_loss:.3g}")
    numbers[1].metric("Final loss, clipped", f"{clipped.final_loss:.3g}")
    has_wall = start_w > cliff.WALL_MIN_W
    numbers[2].metric(
        "Wall's steepest gradient",
        f"{cliff.wall_steepness(start_w, T):.3g}" if has_wall else "no wall here",
        help=f"The largest gradient norm found when crossing the wall at w = {start_w:g}, "
        "the start's w. Raise T and watch it grow.",
    )
    st.info(" ".join(cliff.summary(unclipped, clipped)))

    st.plotly_chart(figures.steps_figure(unclipped, clipped), key="cliff_steps_chart")

    with st.expander("How much does the threshold matter?"):
        sweep = cached_sweep((start_w, start_b), lr, steps, T)
        st.markdown(
            "Pascanu et al. found that training was not very sensitive to the threshold: a "
            "wide range of values worked. The chart repeats the clipped descent from your start "
            f"for {sweep.thresholds.size} thresholds and shows the lowest loss each one "
            "reached.\n\n"
            "Too small a threshold clips every step and the descent crawls. Too large a "
            "threshold rarely acts, and the run is thrown off like the unclipped one.\n\n"
            + cliff.sweep_summary(sweep, unclipped)
        )
        st.plotly_chart(
            figures.threshold_sweep_figure(sweep, unclipped, current=threshold),
            key="cliff_sweep_chart",
        )

    # Opt-in: a 3-D chart is heavy to draw in the browser on every slider move.
    if st.toggle("Show the landscape in 3-D", key="cliff_show_3d"):
        st.plotly_chart(figures.surface_3d_figure(surf, unclipped, clipped), key="cliff_3d")

with st.expander("Key takeaways", expanded=True):
    st.markdown(
        "- Repeating the same step many times turns a small slope into a wall: the gradient "
        "there grows like a product of $T$ factors.\n"
        "- A gradient step that lands on the wall is huge and throws the parameters far away, "
        "often to a flat place from which descent never returns.\n"
        "- Clipping the gradient norm keeps the direction but caps each step at "
        "learning rate × threshold, so the descent stays where it was."
    )
