"""Home: what exploding gradients are, their signs, the fixes, and a map of the app."""

import streamlit as st

from app_boot import ensure_router
from clipviz.lessons import story

ensure_router()

st.title("Exploding gradients, and how clipping tames them")
st.markdown(
    "Train small networks live, push them until their gradients blow up, and watch "
    "gradient clipping keep them on the rails. Every number on these pages is computed "
    "as you watch."
)

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Why gradients explode")
    st.markdown(
        "Backpropagation computes the gradient of the loss by the chain rule: one factor "
        "per layer, or per time step in a recurrent net unrolled through time. When those "
        "factors are larger than 1, their product grows exponentially with depth or with "
        "sequence length."
    )
    st.latex(
        r"\frac{\partial L}{\partial h_0} = \frac{\partial L}{\partial h_T}"
        r"\prod_{t=1}^{T} \frac{\partial h_t}{\partial h_{t-1}}"
        r"\qquad\Rightarrow\qquad \left\|\frac{\partial L}{\partial h_0}\right\| \le"
        r"\left\|\frac{\partial L}{\partial h_T}\right\| \lambda^{T}"
    )
    st.markdown(
        "Here $\\lambda$ is the largest size (norm) of any one factor "
        "$\\partial h_t / \\partial h_{t-1}$. The inequality is a ceiling, not a forecast: "
        "with every factor's size below 1 the gradient must fade; above 1 it is free to "
        "grow exponentially, and whether it does depends on how the factors line up "
        "(Pascanu, Mikolov & Bengio, 2013)."
    )
    st.markdown(
        "A huge gradient makes a huge weight update. The weights are thrown far from where "
        "they were, usually somewhere the loss is worse, and a few such steps later the "
        "numbers overflow to `inf` and `NaN`. From then on the network predicts `NaN` "
        "forever (Goodfellow, Bengio & Courville, *Deep Learning*, 2016, sections 8.2 and 10.11)."
    )
    st.markdown(
        "Common triggers: a learning rate that is too high; a target that is not scaled "
        "(large errors make large gradients); a loss that allows large errors; and long "
        "input sequences in recurrent nets (Pascanu, Mikolov & Bengio, 2013)."
    )
with right:
    st.subheader("Clipping in one line each")
    st.markdown("**By norm**: if the whole gradient is longer than $c$, shrink it to length $c$.")
    st.latex(r"g \leftarrow g \cdot \min\!\left(1, \frac{c}{\lVert g \rVert}\right)")
    st.markdown("**By value**: force every component into $[-c, c]$.")
    st.latex(r"g_i \leftarrow \max(-c, \min(c, g_i))")
    st.caption(
        "Norm clipping keeps the direction; value clipping can turn it. Clipping fixes "
        "numerical stability only: it does not make a model more accurate, and it can hide "
        "a deeper problem such as a bad initialisation."
    )

st.divider()
st.subheader("A checklist for a run that misbehaves")
st.markdown(
    "Tick what you see in your own run. Each line links to a Training Lab configuration "
    "that shows it (the link opens in a new tab). The Lab names these signs on a live run "
    "as they appear, with the step of each, and offers only fixes it has tried."
)
signs_col, fixes_col = st.columns(2, gap="large")


def _checklist(items: tuple[story.ChecklistItem, ...], prefix: str, see: str) -> None:
    for i, item in enumerate(items):
        st.checkbox(f"**{item.title}**", key=f"{prefix}_{i}")
        links = " · ".join(f"[{link.label} ↗]({link.url})" for link in item.links)
        st.caption(f"{item.why}  \n{see}: {links}. {item.note}")


with signs_col:
    st.markdown("##### Signs of exploding gradients")
    _checklist(story.SIGN_CHECKLIST, "sign", "See it")
with fixes_col:
    st.markdown("##### Fixes")
    _checklist(story.FIX_CHECKLIST, "fix", "Try it")
    st.caption(
        "Pick a clipping threshold by trial and error, from common values (norm 1.0, "
        "value 0.5), or by first watching typical gradient norms. Pascanu et al. (2013) "
        "found training not very sensitive to it."
    )

st.divider()
st.subheader("Map of the app")
MAP = [
    ("pages/lab.py", "Training Lab", "Pick a network and its settings; train it live."),
    (
        "pages/worked_examples.py",
        "Worked examples",
        "Clip a vector by value and by norm, one operation at a time.",
    ),
    (
        "pages/tutorial.py",
        "Tutorial",
        "The reference experiment retold in six chapters, ours beside the published numbers.",
    ),
    (
        "pages/recurrent.py",
        "Recurrent nets",
        "Gradients through time: RNN against LSTM, and truncated backpropagation.",
    ),
    (
        "pages/cliff.py",
        "The cliff",
        "Pascanu's one-unit recurrent net: a wall in the loss, and clipped descent.",
    ),
    (
        "pages/stability_map.py",
        "Stability map",
        "Many networks trained at once: where training diverges.",
    ),
    (
        "pages/in_practice.py",
        "In practice",
        "The clipping mistakes practitioners make, each run live in real PyTorch.",
    ),
    (
        "pages/your_run.py",
        "Your run",
        "Upload your own run's gradient norms: signs, spikes, thresholds.",
    ),
]


for start in range(0, len(MAP), 3):  # rows of three cards
    for col, (page, title, blurb) in zip(st.columns(3), MAP[start : start + 3], strict=False):
        with col, st.container(border=True):
            st.page_link(page, label=f"**{title}**")
            st.caption(blurb)

st.caption(
    "Sources: R. Pascanu, T. Mikolov, Y. Bengio, *On the difficulty of training recurrent "
    "neural networks*, ICML 2013 · I. Goodfellow, Y. Bengio, A. Courville, *Deep Learning*, "
    "MIT Press 2016 · A. Graves, *Generating Sequences With Recurrent Neural Networks*, 2013 · "
    "J. Brownlee's tutorials on exploding gradients and gradient clipping (2017, 2019)."
)
