"""Home: what exploding gradients are, their signs, the fixes, and a map of the app."""

import streamlit as st

from clipviz.diagnose import FIX_NOTES, SIGNS

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
        r"\qquad\Rightarrow\qquad \left\|\frac{\partial L}{\partial h_0}\right\| \sim \lambda^{T}"
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
signs_col, fixes_col = st.columns(2, gap="large")
with signs_col:
    st.subheader("Signs to watch for")
    for sign in SIGNS:
        st.markdown(f"- **{sign.title}.** {sign.why}")
with fixes_col:
    st.subheader("Fixes")
    for title, why in FIX_NOTES:
        st.markdown(f"- **{title}.** {why}")
    st.caption(
        "Pick a clipping threshold by trial and error, from common values (norm 1.0, "
        "value 0.5), or by first watching typical gradient norms. Pascanu et al. (2013) "
        "found training not very sensitive to it."
    )

st.divider()
st.subheader("Map of the app")
MAP = [
    (
        "pages/worked_examples.py",
        "Worked examples",
        "Clip a vector by value and by norm, one operation at a time.",
    ),
    (
        "pages/cliff.py",
        "The cliff",
        "Pascanu's one-unit recurrent net: a wall in the loss, and clipped descent.",
    ),
]
cols = st.columns(len(MAP))
for col, (page, title, blurb) in zip(cols, MAP, strict=True):
    with col, st.container(border=True):
        st.page_link(page, label=f"**{title}**")
        st.caption(blurb)

st.caption(
    "Sources: R. Pascanu, T. Mikolov, Y. Bengio, *On the difficulty of training recurrent "
    "neural networks*, ICML 2013 · I. Goodfellow, Y. Bengio, A. Courville, *Deep Learning*, "
    "MIT Press 2016 · A. Graves, *Generating Sequences With Recurrent Neural Networks*, 2013 · "
    "J. Brownlee's tutorials on exploding gradients and gradient clipping (2017, 2019)."
)
