"""In practice: the clipping mistakes practitioners make, each one run live in real PyTorch.

Thin page: every number comes from ``clipviz.lessons.practice`` (and
``practice_ddp`` for the two worker processes), every chart from
``clipviz.figures.practice``, and each code box is the source of the function
that produced the numbers beside it (``practice.source``), so what is shown is
what ran.

The cases depend on no control, so each is computed once per server
(``st.cache_data``) and shared by every session. Two take seconds: the
data-parallel case starts two worker processes that import torch, and the
Keras check imports Keras. They run once per server in one background thread,
one after the other, and appear when done; the rest of the page never waits
for them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

import pandas as pd
import streamlit as st

from app_boot import ensure_router
from clipviz.figures import practice as figures
from clipviz.lessons import practice, practice_ddp

ensure_router()

CASES = [
    "The returned norm is the norm before clipping",
    "Keras `clipnorm` is per tensor",
    "Mixed precision: unscale before you clip",
    "Gradient accumulation: clip once, after the loop",
    "Data-parallel training: clip after the all-reduce",
    "Non-finite norms: inf zeroes, NaN spreads",
    "Below the threshold: multiplied by exactly 1.0",
    "Choosing the threshold from observed norms",
]


# ---- computed once per server -----------------------------------------------------------


@st.cache_data(show_spinner="Running case 1 in PyTorch…")
def _returned_norm() -> practice.ReturnedNormResult:
    return practice.run_returned_norm()


@st.cache_data(show_spinner="Running case 2 in PyTorch…")
def _keras_comparison() -> practice.KerasResult:
    return practice.run_keras_comparison()


@st.cache_data(show_spinner="Running case 3 in PyTorch…")
def _amp() -> practice.AmpResult:
    return practice.run_amp()


@st.cache_data(show_spinner="Running case 4 in PyTorch…")
def _accumulation() -> practice.AccumulationResult:
    return practice.run_accumulation()


@st.cache_data(show_spinner="Running case 6 in PyTorch…")
def _nonfinite() -> practice.NonFiniteResult:
    return practice.run_nonfinite()


@st.cache_data(show_spinner="Running case 7 in PyTorch…")
def _below_threshold() -> practice.BelowThresholdResult:
    return practice.run_below_threshold()


@st.cache_data(show_spinner="Running case 8 in PyTorch…")
def _warmup() -> practice.WarmupResult:
    return practice.run_warmup()


# Building a Plotly figure costs tens of milliseconds (more under load); the figures
# depend only on the cached results, so they are built once and shared: never mutated.
@st.cache_resource(show_spinner=False)
def _returned_norm_figure():
    return figures.returned_norm_figure(_returned_norm())


@st.cache_resource(show_spinner=False)
def _keras_figure():
    return figures.keras_figure(_keras_comparison())


@st.cache_resource(show_spinner=False)
def _amp_figure():
    return figures.amp_figure(_amp())


@st.cache_resource(show_spinner=False)
def _accumulation_figure():
    return figures.accumulation_figure(_accumulation())


@st.cache_resource(show_spinner=False, max_entries=8)
def _warmup_figure(percentile: int):
    return figures.warmup_figure(_warmup(), percentile)


@st.cache_resource(show_spinner="Loading PyTorch's optimizers (once per server)…")
def _prepared_seconds() -> float:
    return practice.prepare()


@st.cache_resource(show_spinner=False)
def _turns() -> threading.Lock:
    # The two slow jobs take turns, so they never hold both cores at once.
    return threading.Lock()


def _in_background(function: Callable, *args) -> Future:
    """Run ``function(*args)`` in a daemon thread (a server stopping mid-run does not
    wait for it; the library ends the processes it started) and return its future."""
    future: Future = Future()

    def work() -> None:
        with _turns():
            try:
                future.set_result(function(*args))
            except BaseException as error:  # shown on the page, never raised into it
                future.set_exception(error)

    threading.Thread(target=work, name="in_practice", daemon=True).start()
    return future


@st.cache_resource(show_spinner=False)
def _ddp_job() -> Future:
    return _in_background(practice_ddp.run_ddp)


@st.cache_resource(show_spinner=False)
def _keras_job() -> Future:
    return _in_background(practice.run_keras, _keras_comparison().grads)


# ---- layout helpers ---------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _ran_in(seconds: float) -> None:
    st.caption(
        f"Ran in {_ms(seconds)} on this server, once; every visitor sees the same run (cached)."
    )


def _case(
    number: int,
    question: str,
    wrong: Callable,
    right: Callable,
    *,
    wrong_title: str = "The usual code",
    right_title: str = "The fix",
    verdicts: bool = True,
) -> None:
    """The case's heading, its question, and both functions' source side by side
    (marked wrong and right, unless ``verdicts`` is False: two steps of one recipe)."""
    st.subheader(f"{number}. {CASES[number - 1]}", anchor=f"case-{number}", divider="gray")
    st.markdown(f"**The question.** {question}")
    left, right_column = st.columns(2, gap="medium")
    with left:
        st.markdown(f":orange[**✗ {wrong_title}**]" if verdicts else f"**{wrong_title}**")
        st.code(practice.source(wrong), language="python", wrap_lines=True)
    with right_column:
        st.markdown(f":blue[**✓ {right_title}**]" if verdicts else f"**{right_title}**")
        st.code(practice.source(right), language="python", wrap_lines=True)


def _background(job_function: Callable[[], Future], what: str, key: str):
    """The result of a background job, or ``None`` while it runs (with a note that
    refreshes itself) or when it failed (with the reason and a button to retry)."""
    job = job_function()
    if not job.done():

        @st.fragment(run_every=1.0)
        def _poll() -> None:
            if job.done():
                st.rerun()  # the whole page, now with the result
            st.info(
                f"{what} is running on the server (once per server; a few seconds, "
                "longer when the machine is busy). It appears here when done.",
                icon=":material/hourglass_top:",
            )

        _poll()
        return None
    error = job.exception()
    if error is not None:
        st.error(f"{what} failed: {error}")
        if st.button("Run it again", key=key):
            job_function.clear()
            st.rerun()
        return None
    return job.result()


def _fmt(x: float, digits: int = 5) -> str:
    return f"{x:.{digits}g}"


# ---- the page -------------------------------------------------------------------------------

prepared_seconds = _prepared_seconds()
# Start the two slow jobs now, the workers first, rather than when the page reaches them.
_ddp_job()
_keras_job()

st.title("In practice")
st.markdown(
    "The questions people keep filing in the PyTorch, Keras, Lightning and Transformers "
    "issue trackers, each answered by running it. Every case puts the usual code beside "
    "the fix, runs both on this server in real PyTorch (`torch.nn.utils`, `torch.optim`, "
    "`torch.amp`, `torch.distributed`; not this app's own engine) and shows what came out."
)
st.markdown(
    "The network is the tutorial's small MLP (20 → 25 ReLU → 1) on its unscaled "
    "regression target, so a gradient's norm is in the hundreds and a threshold of "
    f"$c = {practice.THRESHOLD:g}$ clips every step: each mistake shows at full size. "
    "**The code in the boxes is read from the very functions that ran.**"
)
with st.container(border=True):
    st.markdown("**The cases**")
    columns = st.columns(2)
    for i, title in enumerate(CASES):
        columns[i // 4].markdown(f"{i + 1}. [{title}](#case-{i + 1})")

# ---- 1 ----
one = _returned_norm()
_case(
    1,
    f"I clip at {one.threshold:g} and log what `clip_grad_norm_` returns, and it says "
    f"{one.logged_wrong[0]:.0f}. Is clipping broken?",
    practice.log_returned_norm,
    practice.log_norm_after,
    wrong_title="Logs the return value",
    right_title="Logs the norm after clipping",
)
steps = len(one.norm_after)
cols = st.columns(4)
cols[0].metric("Logged by the usual code, step 0", _fmt(one.logged_wrong[0]))
cols[1].metric("Measured after clipping, step 0", f"{one.norm_after[0]:.7f}")
cols[2].metric("Steps whose log shows ‖g‖ > c", f"{one.steps_logged_above} of {steps}")
cols[3].metric("Weights of the twin runs", "identical" if one.weights_identical else "differ")
st.plotly_chart(_returned_norm_figure(), key="practice_chart_1")
st.markdown(
    "Clipping worked: measured right after the call, the norm is $c$ at every step. The "
    "return value is, by design, the total norm *before* clipping: it was added in "
    "pytorch#1032 (2017) so a loop could log whether clipping happened and how the norm "
    "moves. The surprise keeps being reported (ray-project/ray#4965, "
    f"verl-project/verl#2282). Two twin runs, one per function, trained for {steps} steps "
    "from the same weights on the same batches and ended with "
    f"{'bit-identical' if one.weights_identical else 'different'} weights: only the log "
    "differed."
)
st.caption(
    r"After clipping the norm is $c\,\lVert g\rVert / (\lVert g\rVert + 10^{-6})$ in "
    "float32: a hair below $c$."
)
_ran_in(one.seconds)

# ---- 2 ----
two = _keras_comparison()
_case(
    2,
    f"I moved from PyTorch's `clip_grad_norm_(params, {two.threshold:g})` to Keras's "
    f"`clipnorm={two.threshold:g}` and training changed. Aren't they the same?",
    practice.keras_clipnorm,
    practice.keras_global_clipnorm,
    wrong_title="Keras clipnorm: each tensor on its own",
    right_title="Keras global_clipnorm: PyTorch's rule",
)
cols = st.columns(4)
cols[0].metric("Norm before, all tensors", _fmt(two.total_before))
cols[1].metric("After PyTorch / global_clipnorm", _fmt(two.total_global))
cols[2].metric("After Keras clipnorm", _fmt(two.total_per_tensor))
cols[3].metric("Direction turned by clipnorm", f"{two.angle_per_tensor:.1f}°")
chart_column, text_column = st.columns([3, 2], gap="medium")
with chart_column:
    st.plotly_chart(_keras_figure(), key="practice_chart_2")
with text_column:
    st.markdown(
        "`clip_grad_norm_` and `global_clipnorm` shrink all tensors by one factor, "
        f"{two.threshold:g}/‖g‖, and keep the direction. `clipnorm` gives each tensor its "
        f"own factor: each of the {len(two.names)} ends at length {two.threshold:g}, so the "
        f"whole is {_fmt(two.total_per_tensor, 3)} long, the small output bias weighs as "
        "much as the big hidden weight, and the direction turns."
    )
with st.expander("The numbers per tensor"):
    st.dataframe(
        pd.DataFrame(
            {
                "tensor": two.names,
                "‖g‖ before": two.norms_before,
                "after clip_grad_norm_": two.norms_torch,
                "after global_clipnorm": two.norms_global,
                "after clipnorm": two.norms_per_tensor,
            }
        ),
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(format="%.4g")
            for c in (
                "‖g‖ before",
                "after clip_grad_norm_",
                "after global_clipnorm",
                "after clipnorm",
            )
        },
    )
keras_run = _background(_keras_job, "Real Keras, in a process of its own,", "practice_keras_retry")
if keras_run is not None:
    st.success(
        f"Checked with real Keras {keras_run.version} (torch backend), run once on this "
        "server in a process of its own: both optimizers applied exactly these clipped "
        f"gradients (largest difference {keras_run.max_difference_from_formulas:.1e}). "
        f"Importing Keras took {keras_run.import_seconds:.1f} s, the whole check "
        f"{keras_run.seconds:.1f} s."
    )
st.markdown(
    "Keras 2.2, the tutorial's Keras, clipped the global norm with `clipnorm`; tf.keras "
    "2.x and Keras 3 clip each weight tensor separately (reported in tensorflow#29108 "
    "and #36001 and keras-team/keras#13575), and `global_clipnorm` is the global rule. "
    "The step-by-step arithmetic of both rules is on the worked examples page:"
)
st.page_link(
    "pages/worked_examples.py",
    label="Worked examples: one norm for all layers, or one per layer?",
    icon=":material/calculate:",
)
with st.expander("Keras's two rules, from its source (they computed the numbers above)"):
    st.latex(
        r"\texttt{clipnorm}:\ g_k \leftarrow \frac{c\, g_k}{\max(\lVert g_k\rVert, c)}"
        r"\qquad \texttt{global\_clipnorm}:\ g_k \leftarrow g_k \cdot c"
        r"\min\!\left(\frac{1}{\lVert g\rVert}, \frac{1}{c}\right)"
    )
    st.markdown(
        "Importing Keras takes seconds, so the page computes both rules from Keras 3's "
        "source in NumPy at once, and the real optimizers above confirm them."
    )
    st.code(practice.source(practice.keras_clipnorm_formula), language="python", wrap_lines=True)
    st.code(
        practice.source(practice.keras_global_clipnorm_formula), language="python", wrap_lines=True
    )
_ran_in(two.seconds)

# ---- 3 ----
three = _amp()
wrong_amp, right_amp = three.wrong, three.right
k = right_amp.first_taken
skipped = right_amp.skipped_count
_case(
    3,
    "With `torch.amp` and a `GradScaler` I clip at 1.0, and my loss curve goes flat. Why?",
    practice.amp_clip_scaled,
    practice.amp_unscale_clip,
    wrong_title="Clips the scaled gradient",
    right_title="unscale_, then clip",
)
numbers_column, table_column = st.columns([1, 2], gap="medium")
with numbers_column:
    st.metric("Loss scale S at the start", f"{three.init_scale:,.0f}")
    st.metric("Steps skipped (inf/NaN found)", f"{skipped} of {len(right_amp.skipped)}")
with table_column:
    st.markdown(f"**Step {k}, the first one taken** ($S$ = {right_amp.scale[k]:,.0f})")
    st.dataframe(
        pd.DataFrame(
            {
                "order": ["clip, then unscale (usual code)", "unscale_, then clip (fix)"],
                "norm the clip saw": [wrong_amp.seen_norm[k], right_amp.seen_norm[k]],
                "length of the gradient applied": [
                    wrong_amp.applied_norm[k],
                    right_amp.applied_norm[k],
                ],
            }
        ),
        hide_index=True,
        column_config={
            "norm the clip saw": st.column_config.NumberColumn(format="%.5g"),
            "length of the gradient applied": st.column_config.NumberColumn(format="%.5g"),
        },
    )
st.markdown(
    f"`scaler.scale(loss)` multiplies the loss by $S$ so that small float16 gradients do "
    f"not underflow; every gradient is then $S$ times too large until it is unscaled. "
    f"Clipped before that, `clip_grad_norm_` compares $S\\lVert g\\rVert$ with $c$, so it "
    f"clips every step, and when `scaler.step` later divides by $S$ what is left has "
    f"length $c/S$: at step {k}, $S$ = {wrong_amp.scale[k]:,.0f} and the gradient applied "
    f"was {_fmt(wrong_amp.applied_norm[k])} long instead of {_fmt(right_amp.applied_norm[k])}. "
    "In true units the threshold became $c/S$: training crawls. "
    "Lightning fixed this very order in its mixed-precision plugin "
    '(Lightning-AI/pytorch-lightning#9599: "the loss converged very slow"); '
    'NVIDIA/apex#1512 describes the "extremely small gradients" it gives.'
)
st.plotly_chart(_amp_figure(), key="practice_chart_3")
st.markdown(
    f"**Skipped steps.** The scaler starts at $S$ = {three.init_scale:,.0f}. Float16's "
    f"largest number is {practice.FLOAT16_MAX:,.0f}, so the first scaled backward passes "
    "overflow; `unscale_` "
    "finds the inf/NaN, `scaler.step` skips the step (the weights did not move: measured) "
    f"and `update()` halves $S$. Here {skipped} of {len(right_amp.skipped)} steps were "
    "skipped"
    + (
        ", the same ones in both runs: the check does not depend on the order."
        if wrong_amp.skipped == right_amp.skipped
        else f" with the fix, {wrong_amp.skipped_count} with the usual code."
    )
)
st.caption(
    'Runs on this CPU: `torch.autocast("cpu", dtype=torch.float16)` and '
    '`torch.amp.GradScaler("cpu")` work in the pinned torch, so nothing in this case is '
    "simulated. Loss scaling: Micikevicius et al., *Mixed Precision Training*, ICLR 2018; "
    "the order is PyTorch's documented one (AMP examples, gradient clipping)."
)
_ran_in(three.seconds)

# ---- 4 ----
four = _accumulation()
_case(
    4,
    f"I accumulate gradients over {four.n_micro} micro-batches and call `clip_grad_norm_` "
    "after each `backward()`. Isn't that the same as clipping the whole batch?",
    practice.clip_inside_loop,
    practice.clip_after_loop,
    wrong_title="Clips inside the accumulation loop",
    right_title="Clips once, after the loop",
)
example_column, model_column = st.columns([3, 2], gap="medium")
with example_column:
    st.plotly_chart(_accumulation_figure(), key="practice_chart_4")
with model_column:
    wx, wy = four.example_wrong
    rx, ry = four.example_right
    (ax, ay), (bx, by) = four.example_grads
    st.markdown(
        "**transformers#986's example**, rerun through both functions: micro-gradients "
        f"({ax:g}, {ay:g}) and ({bx:g}, {by:g}), $c = {four.threshold:g}$. Inside the loop gives "
        f"({wx:.3f}, {wy:.3f}), leaning toward the last micro-batch; after the loop gives "
        f"({rx:.3f}, {ry:.3f}), the direction of the sum."
    )
    st.markdown(
        f"**On the MLP**, a batch of 32 in {four.n_micro} micro-batches (loss divided by "
        f"{four.n_micro}): the two updates differ by **{four.angle:.1f}°**. The one "
        f"clipped inside the loop points along the last micro-batch's own gradient "
        f"({four.angle_wrong_to_last:.1f}° from it): each clip shrinks what has been "
        "summed so far to length $c$, then the next micro-batch, "
        f"{min(four.micro_norms):.0f} to {max(four.micro_norms):.0f} long, swamps it."
    )
cols = st.columns(3)
cols[0].metric("Accumulated gradient, before clipping", _fmt(four.accumulated_norm))
cols[1].metric("Angle between the two updates", f"{four.angle:.1f}°")
cols[2].metric("Usual code: angle to the last micro-batch", f"{four.angle_wrong_to_last:.1f}°")
st.caption(
    "Also reported as transformers#1563 (fixed in 2019) and, five years on, "
    "facebookresearch/lingua#59. Clipping once after the loop clips exactly the gradient "
    "of the whole batch, as training without accumulation would."
)
_ran_in(four.seconds)

# ---- 5 ----
st.subheader(f"5. {CASES[4]}", anchor="case-5", divider="gray")
st.markdown(
    "**The question.** In data-parallel training, should each worker clip its own "
    "gradient, or clip after the gradients are averaged?"
)
left, right_column = st.columns(2, gap="medium")
with left:
    st.markdown(":orange[**✗ Each worker clips, then averages**]")
    st.code(practice.source(practice_ddp.clip_then_average), language="python", wrap_lines=True)
with right_column:
    st.markdown(":blue[**✓ Average, then clip**]")
    st.code(practice.source(practice_ddp.average_then_clip), language="python", wrap_lines=True)
    st.markdown(":blue[**✓ With DistributedDataParallel: clip after `backward()`**]")
    st.code(
        practice.source(practice_ddp.ddp_backward_then_clip), language="python", wrap_lines=True
    )
ddp = _background(_ddp_job, "The two-worker run (torch.distributed, gloo)", "practice_ddp_retry")
if ddp is not None:
    cols = st.columns(5)
    cols[0].metric("Local norms, workers 0, 1", " and ".join(f"{n:.0f}" for n in ddp.local_norms))
    cols[1].metric("Norm of the average", _fmt(ddp.mean_local_norm))
    cols[2].metric("Update: average, clip", _fmt(ddp.right_norm, 4))
    cols[3].metric("Update: clip, average", _fmt(ddp.wrong_norm, 4))
    cols[4].metric("Angle between them", f"{ddp.angle:.1f}°")
    st.markdown(
        f"Two worker processes joined a `gloo` process group on 127.0.0.1, each with the "
        f"same MLP and half of one batch (worker 0 the rows with smaller targets). Clipped "
        f"alone, each worker's gradient gets the same length whatever its size, so the "
        f"small shard weighs as much as the large one: the update turns by "
        f"{ddp.angle:.1f}° and is {_fmt(ddp.wrong_norm, 3)} long instead of "
        f"{_fmt(ddp.right_norm, 3)}."
    )
    st.markdown(
        "**DistributedDataParallel averages the gradients inside `backward()`**, bucket by "
        "bucket while the backward pass runs. Right after `backward()`, each worker's "
        "gradient equalled the average of the two local gradients (largest difference "
        f"{ddp.ddp_difference_from_mean:.1e}), and `clip_grad_norm_` returned "
        f"{' and '.join(_fmt(n) for n in ddp.ddp_returned_norms)} on the two workers: the "
        "norm of the global gradient. So with DDP, clipping after `backward()` is right "
        "by construction."
    )
    st.caption(
        f"The whole run (start two processes, import torch, join the group, compute, shut "
        f"down) took {ddp.seconds:.1f} s, of which joining the group "
        f"{ddp.join_seconds:.2f} s; it ran once on this server and is shared by every "
        "visitor."
    )
with st.expander("Where the mistake comes back"):
    st.markdown(
        "- **Accumulation under `no_sync()`**: the gradients are averaged only in the last "
        "micro-batch's `backward()`; clip after that one (huggingface/accelerate#641, "
        "huggingface/diffusers#721).\n"
        "- **Sharded training** (FSDP, ZeRO, tensor, pipeline or expert parallelism): each "
        "rank holds only part of the gradient, so a plain `clip_grad_norm_` sees a local "
        "norm. The norm must be summed across ranks first, which is what FSDP's own "
        "`clip_grad_norm_` method does (see pytorch/torchtitan#596 and "
        "hpcaitech/ColossalAI#2192 for the pipeline and expert cases).\n"
        "- **Hand-written all-reduce loops** and gradient hooks that clip per parameter, "
        "as in the usual code above."
    )

# ---- 6 ----
six = _nonfinite()
_case(
    6,
    "My loss spiked and then every weight was NaN, though I clip gradients. Doesn't "
    "clipping protect against that?",
    practice.clip_and_step,
    practice.step_if_finite,
    wrong_title="Clips and steps",
    right_title="Skips the step when the norm is not finite",
)
rows = []
for case in six.cases:
    if case.nan_weights_after_step:
        weights = f"{case.nan_weights_after_step} NaN"
    else:
        weights = "moved" if case.weights_moved else "unchanged (step wasted)"
    rows.append(
        {
            "entry set to": case.label,
            "norm returned": _fmt(case.norm),
            "gradient after clipping": (
                f"{case.zeros_after} zero, {case.nans_after} NaN (of {case.entries})"
            ),
            "usual code: weights": weights,
            "fix: the step": "skipped" if case.skipped else "taken",
            "fix: weights": "unchanged" if case.right_weights_unchanged else "moved",
            "error_if_nonfinite": "raised" if case.raised else "did not raise",
        }
    )
st.dataframe(pd.DataFrame(rows), hide_index=True)
huge = six.cases[0]
if huge.norm == float("inf"):  # what this machine's float32 norm gave
    finite_too = (
        "Even a finite entry can do it: $10^{20}$ squared does not fit in float32, so the "
        "norm came out inf and the whole gradient was silently zeroed."
    )
else:
    finite_too = f"A huge but finite entry kept the norm finite here ({_fmt(huge.norm)})."
st.markdown(
    "With a non-finite norm the clip factor $c/(\\lVert g\\rVert + 10^{-6})$ is 0 (inf) "
    "or NaN. An inf makes every finite entry exactly 0 and turns the inf itself into NaN "
    "($\\infty \\cdot 0$), which the step writes into a weight. A single NaN makes every "
    f"entry NaN, and every weight with it. {finite_too} Clipping keeps finite steps "
    "short; it cannot repair a non-finite one."
)
left, right_column = st.columns(2, gap="medium")
with left:
    st.markdown("**Or make it loud:** `error_if_nonfinite=True` raises instead.")
    st.code(practice.source(practice.clip_or_raise), language="python", wrap_lines=True)
with right_column:
    st.markdown("**It raised, with this message:**")
    st.code(six.cases[1].raised, language=None, wrap_lines=True)
st.caption(
    "Skipping the step is the usual remedy: `GradScaler` does it on its own (case 3) and "
    "`optax.apply_if_finite` does it in JAX. The injected entry is the one simulated thing "
    f"here (the clean gradient's norm is {_fmt(six.clean_norm)}); in a real overflow many "
    "entries go inf or NaN at once."
)
_ran_in(six.seconds)

# ---- 7 ----
seven = _below_threshold()
_case(
    7,
    "My gradient's norm is below `max_norm`, yet `clip_grad_norm_` still writes to my "
    "gradients. Should I guard it with `if norm > max_norm`?",
    practice.clip_if_needed,
    practice.clip_always,
    wrong_title="Guards the clip with an if",
    right_title="Just calls it",
)
cols = st.columns(4)
cols[0].metric("Norm ‖g‖", _fmt(seven.norm))
cols[1].metric("Threshold c", _fmt(seven.threshold))
cols[2].metric("Factor min(c/(‖g‖+10⁻⁶), 1)", repr(seven.coefficient))
cols[3].metric(
    "clip_always: gradient after",
    "unchanged" if seven.always_bitwise_equal else "changed",
    help="Compared bit for bit with torch.equal, tensor by tensor.",
)
st.markdown(
    "PyTorch computes the factor as a tensor and always multiplies. Below the threshold "
    "the factor is exactly 1.0, and $x \\cdot 1.0 = x$ exactly in floating point: the "
    f"gradient was written {seven.always_writes} times (one per tensor) and came out bit "
    "for bit the same. It is done this way on purpose, as a comment in "
    "`torch/nn/utils/clip_grad.py` says: an `if norm > max_norm` in Python needs the "
    "norm's value on the CPU, and on a GPU that makes the CPU wait for the device at "
    "every step. The guard gives the same result, just slower on a GPU. This server has "
    "no GPU, so that wait cannot be measured here (transformers#41431 asked the same)."
)
_ran_in(seven.seconds)

# ---- 8 ----
eight = _warmup()
_case(
    8,
    "Which threshold should I use?",
    practice.warmup_norms,
    practice.train_clipped,
    wrong_title="First: watch the norms, no clipping",
    right_title="Then: clip at a threshold taken from them",
    verdicts=False,
)
st.markdown(
    "The sources' advice: run a while without clipping, look at the typical gradient "
    "norms, and put the threshold above the typical ones, so that only the rare large "
    "steps are shortened. Pascanu, Mikolov & Bengio (2013) found training not very "
    f"sensitive to the exact value. Here a healthy warm-up of {eight.steps} steps "
    f"(standardized target, SGD with learning rate {practice.LEARNING_RATE:g} and "
    f"momentum {practice.MOMENTUM:g}), then the same "
    "run again, clipped at each percentile of the warm-up's norms."
)
percentile = st.segmented_control(
    "Clip at the warm-up's percentile",
    [choice.percentile for choice in eight.choices],
    default=90,
    format_func=lambda q: f"p{q}",
    key="practice_percentile",
)
if percentile is None:  # the selection was cleared: keep showing the default
    percentile = 90
chosen = next(choice for choice in eight.choices if choice.percentile == percentile)
cols = st.columns(4)
cols[0].metric(f"Threshold at p{percentile}", _fmt(chosen.threshold, 4))
cols[1].metric("Warm-up steps it would clip", f"{chosen.clipped_fraction:.0%}")
cols[2].metric("Loss after the clipped run", _fmt(chosen.final_loss, 4))
cols[3].metric("Loss after the warm-up, unclipped", _fmt(eight.final_loss, 4))
st.plotly_chart(_warmup_figure(percentile), key="practice_chart_8")
st.dataframe(
    pd.DataFrame(
        {
            "percentile": [f"p{c.percentile}" for c in eight.choices],
            "threshold c": [c.threshold for c in eight.choices],
            "warm-up steps clipped": [f"{c.clipped_fraction:.1%}" for c in eight.choices],
            "loss after a clipped run": [c.final_loss for c in eight.choices],
        }
    ),
    hide_index=True,
    column_config={
        "threshold c": st.column_config.NumberColumn(format="%.4g"),
        "loss after a clipped run": st.column_config.NumberColumn(format="%.4g"),
    },
)
median, highest = eight.choices[0], eight.choices[-1]
st.markdown(
    "A threshold at the median clips half the steps, which acts like a smaller learning "
    "rate; a high percentile only trims the few largest steps and keeps the run protected "
    f"against a spike. Here the run clipped at p{median.percentile} ended at loss "
    f"{_fmt(median.final_loss, 3)}, the one clipped at p{highest.percentile} at "
    f"{_fmt(highest.final_loss, 3)}, the unclipped warm-up at {_fmt(eight.final_loss, 3)} "
    "(mean squared error on the 500 training rows, in units of the standardized target)."
)
_ran_in(eight.seconds)

st.divider()
st.caption(
    f"Before the first case, loading the data and building PyTorch's first optimizer "
    f"(which imports `torch._dynamo`) took {prepared_seconds:.1f} s, once per server."
)
st.caption(
    "Sources: R. Pascanu, T. Mikolov, Y. Bengio, *On the difficulty of training recurrent "
    "neural networks*, ICML 2013 · P. Micikevicius et al., *Mixed Precision Training*, "
    "ICLR 2018 · the PyTorch documentation of `clip_grad_norm_` and its AMP examples · the "
    "tracker threads named in each case (pytorch/pytorch, keras-team/keras, "
    "tensorflow/tensorflow, Lightning-AI/pytorch-lightning, huggingface/transformers, "
    "huggingface/accelerate), which the page answers by running them."
)
