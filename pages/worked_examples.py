"""Worked examples: clipping by value and by norm, and the adaptive rules, one operation at a time.

Thin page: it reads widgets, keeps the step position and the last good input in
``st.session_state``, and shows what ``clipviz.lessons.worked`` and
``clipviz.lessons.adaptive`` compute and ``clipviz.figures.worked`` draws. No
arithmetic and no figure building here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import streamlit as st

from app_boot import ensure_router
from clipviz.figures import worked as figures
from clipviz.figures.style import ACCENT
from clipviz.lessons import adaptive, worked

ensure_router()

SOURCE = worked.SOURCE_EXAMPLE
SOURCE_VECTOR_TEXT = ", ".join(worked.format_number(x) for x in SOURCE.vector)
INPUT_DEFAULTS = {
    "worked_vector": SOURCE_VECTOR_TEXT,
    "worked_value_c": worked.format_number(SOURCE.value_threshold),
    "worked_norm_c": worked.format_number(SOURCE.norm_threshold),
}
# The adaptive rules' examples: AGC's matrices, and a history of norms with a spike.
RULE_DEFAULTS = {
    "worked_agc_w": adaptive.AGC_EXAMPLE_WEIGHTS,
    "worked_agc_g": adaptive.AGC_EXAMPLE_GRAD,
    "worked_agc_lambda": "0.01",
    "worked_agc_eps": "0.001",
    "worked_norms": adaptive.NORMS_EXAMPLE,
}
# The last input that parsed, shown while a field holds something unusable.
GOOD_DEFAULTS = {
    "worked_good_vector": SOURCE.vector,
    "worked_good_value_c": SOURCE.value_threshold,
    "worked_good_norm_c": SOURCE.norm_threshold,
    "worked_good_agc": (
        adaptive.parse_matrix(adaptive.AGC_EXAMPLE_WEIGHTS),
        adaptive.parse_matrix(adaptive.AGC_EXAMPLE_GRAD),
    ),
    "worked_good_agc_w": adaptive.parse_matrix(adaptive.AGC_EXAMPLE_WEIGHTS),
    "worked_good_agc_g": adaptive.parse_matrix(adaptive.AGC_EXAMPLE_GRAD),
    "worked_good_agc_lambda": 0.01,
    "worked_good_agc_eps": 0.001,
    "worked_good_norms": adaptive.parse_norms(adaptive.NORMS_EXAMPLE),
}


# Building a Plotly figure costs tens of milliseconds; a step click would rebuild four.
# Results are frozen (hashable) and the figures are never mutated, so they are shared.
@st.cache_resource(show_spinner=False, max_entries=512)
def _step_figure(result: worked.WorkedResult, step_index: int):
    return figures.step_figure(result, step_index)


@st.cache_resource(show_spinner=False, max_entries=256)
def _geometry_figure(by_value: worked.WorkedResult, by_norm: worked.WorkedResult):
    return figures.geometry_figure(by_value, by_norm)


@st.cache_resource(show_spinner=False, max_entries=256)
def _comparison_figure(comparison: worked.ClipComparison):
    return figures.comparison_figure(comparison)


def _num(x: float) -> str:
    """Lengths and factors for reading: five significant digits."""
    return worked.format_number(x, 5)


def _init_state() -> None:
    for key, value in {**INPUT_DEFAULTS, **RULE_DEFAULTS, **GOOD_DEFAULTS}.items():
        st.session_state.setdefault(key, value)
    st.session_state.setdefault("worked_try_seed", 0)


def _restore_source() -> None:
    for key, value in INPUT_DEFAULTS.items():
        st.session_state[key] = value


def _read(
    key: str,
    good_key: str,
    parse: Callable[[str], Any],
    label: str,
    show: Callable[[Any], str],
) -> Any:
    """Parse a text field; on a bad value say why and keep the last good one."""
    try:
        value = parse(st.session_state[key])
    except worked.WorkedInputError as error:
        last_good = show(st.session_state[good_key])
        st.error(f"**{label}:** {error} Still showing the last good value, {last_good}.")
        return st.session_state[good_key]
    st.session_state[good_key] = value
    return value


def _move(step_key: str, delta: int, n_steps: int) -> None:
    st.session_state[step_key] = max(0, min(n_steps - 1, st.session_state[step_key] + delta))


def _reset(step_key: str) -> None:
    st.session_state[step_key] = 0


def _stepper(result: worked.WorkedResult, prefix: str) -> None:
    """Back / Next through ``result.steps``; the position lives in ``{prefix}_step``."""
    step_key, signature_key = f"{prefix}_step", f"{prefix}_signature"
    signature = (result.input, result.threshold)
    st.session_state.setdefault(step_key, 0)
    if st.session_state.get(signature_key, signature) != signature:
        # A new vector or threshold is a new exercise: start from the first step.
        st.session_state[step_key] = 0
    st.session_state[signature_key] = signature
    n_steps = len(result.steps)
    k = max(0, min(n_steps - 1, st.session_state[step_key]))
    st.session_state[step_key] = k
    step = result.steps[k]

    with st.container(horizontal=True, vertical_alignment="center"):
        st.button(
            "Back",
            key=f"{prefix}_back",
            icon=":material/arrow_back:",
            on_click=_move,
            args=(step_key, -1, n_steps),
            disabled=k == 0,
        )
        st.button(
            "Next",
            key=f"{prefix}_next",
            icon=":material/arrow_forward:",
            type="primary",
            on_click=_move,
            args=(step_key, 1, n_steps),
            disabled=k == n_steps - 1,
        )
        st.button(
            "Start over",
            key=f"{prefix}_reset",
            type="tertiary",
            on_click=_reset,
            args=(step_key,),
            disabled=k == 0,
        )
    st.progress((k + 1) / n_steps, text=f"Step {k + 1} of {n_steps}: {step.title}")

    with st.container(border=True):
        st.latex(step.latex)
        st.markdown(step.sentence)
        st.latex(worked.step_vectors_latex(result, k, highlight_colour=ACCENT))
    st.plotly_chart(_step_figure(result, k), key=f"{prefix}_chart")

    if step.kind == "result":
        st.success(f"Result: g′ = {worked.format_vector(result.output)}")
        _result_notes(result)


def _result_notes(result: worked.WorkedResult) -> None:
    if result.mode == "value":
        if result.changed_indices:
            st.markdown(
                f"Note the length: {worked.format_number(result.norm_after)}, not "
                f"{worked.format_number(result.threshold)}. Clipping by value caps each "
                "component, not the length of the whole vector."
            )
        return
    note = worked.source_rounding_note(result)
    if note is None:
        return
    st.info(f"**About the source's numbers.** {note.summary}")
    st.dataframe(
        {
            "component": [f"g′{row.index + 1}" for row in note.rows],
            "source (factor 0.51)": [row.source for row in note.rows],
            "exact": [row.exact for row in note.rows],
            "source − exact": [row.difference for row in note.rows],
        },
        hide_index=True,
        column_config={
            "exact": st.column_config.NumberColumn(format="%.6f"),
            "source − exact": st.column_config.NumberColumn(format="%+.4f"),
        },
        key="worked_rounding_table",
    )


def _inputs() -> tuple[tuple[float, ...], float, float]:
    with st.container(border=True):
        left, middle, right = st.columns([3, 1, 1])
        left.text_input(
            "Gradient g (numbers separated by commas or spaces)",
            key="worked_vector",
            help="From 2 to 50 numbers, e.g. 2, -6, 8, -3, 5",
        )
        middle.text_input("Value threshold c", key="worked_value_c", help="Any number above 0")
        right.text_input("Norm threshold c", key="worked_norm_c", help="Any number above 0")
        st.button(
            "Back to the source's example",
            key="worked_restore",
            type="tertiary",
            icon=":material/restart_alt:",
            on_click=_restore_source,
        )
        vector = _read(
            "worked_vector",
            "worked_good_vector",
            worked.parse_vector,
            "Gradient",
            worked.format_vector,
        )
        value_c = _read(
            "worked_value_c",
            "worked_good_value_c",
            worked.parse_threshold,
            "Value threshold",
            worked.format_number,
        )
        norm_c = _read(
            "worked_norm_c",
            "worked_good_norm_c",
            worked.parse_threshold,
            "Norm threshold",
            worked.format_number,
        )
    return vector, value_c, norm_c


def _geometry() -> None:
    st.subheader("Geometry: where does the clipped gradient point?", divider="gray")
    st.markdown(
        "With two components a gradient is an arrow in the plane. Clipping by value pulls "
        "its tip into the square; clipping by norm pulls it back onto the circle along the "
        "arrow itself."
    )
    cols = st.columns(3)
    g1 = cols[0].slider("g₁", -10.0, 10.0, 8.0, 0.5, key="worked_geo_g1")
    g2 = cols[1].slider("g₂", -10.0, 10.0, 3.0, 0.5, key="worked_geo_g2")
    c = cols[2].slider("threshold c", 0.5, 10.0, 4.0, 0.5, key="worked_geo_c")
    by_value = worked.compute((g1, g2), "value", c)
    by_norm = worked.compute((g1, g2), "norm", c)
    st.plotly_chart(_geometry_figure(by_value, by_norm), key="worked_geo_chart")
    if by_value.angle_degrees is None:
        st.markdown("A zero gradient has no direction; move a slider away from 0.")
    else:
        st.markdown(
            f"**Clipping by value turned the arrow by {by_value.angle_degrees:.1f}°, clipping "
            f"by norm by {by_norm.angle_degrees:.1f}°:** value clipping can change the "
            "direction, norm clipping only ever shortens the arrow."
        )


def _combined(vector: tuple[float, ...], value_c: float, norm_c: float) -> None:
    st.subheader("Both rules: norm first, then value", divider="gray")
    st.markdown(
        "Keras 2.2, the version the tutorial used, applied `clipnorm` and then `clipvalue` "
        "when both were set. Here is that order on your gradient. Keras 3 no longer "
        "combines them: its optimizers accept only one of `clipnorm`, `clipvalue` and "
        "`global_clipnorm` and raise a `ValueError` when given two."
    )
    st.latex(
        r"g'' = \operatorname{clip}_{[-c_v,\,c_v]}\!\Big(g \cdot "
        r"\min\Big(1, \frac{c_n}{\lVert g \rVert}\Big)\Big)"
    )
    result = worked.compute(vector, "norm_value", norm_c, value_threshold=value_c)
    st.dataframe(
        {
            "component": [f"g{i + 1}" for i in range(len(vector))],
            "g": list(result.input),
            f"after norm (c = {worked.format_number(norm_c)})": list(result.intermediate),
            f"after value (c = {worked.format_number(value_c)})": list(result.output),
        },
        hide_index=True,
        key="worked_combined_table",
    )
    changed = [str(i + 1) for i in result.changed_by_value_stage]
    if changed and result.angle_degrees is not None:
        st.markdown(
            f"The value step still cut component {', '.join(changed)}, so the final gradient "
            f"has length {_num(result.norm_after)} and points {result.angle_degrees:.2f}° away "
            "from the original."
        )
    else:
        st.markdown(
            "Here the value step changed nothing: after the norm step every component was "
            f"already inside [-{worked.format_number(value_c)}, {worked.format_number(value_c)}]."
        )


def _global_vs_per_tensor(vector: tuple[float, ...], norm_c: float) -> None:
    st.subheader("One norm for all layers, or one per layer?", divider="gray")
    st.markdown(
        "A real gradient is split over many weight tensors. Libraries disagree on which "
        "norm they clip. Split your gradient into two layers to see the difference."
    )
    n = len(vector)
    if n > 2:
        split = st.slider(
            "Layer 1 holds the first k components", 1, n - 1, n // 2, key="worked_split"
        )
    else:
        split = 1
        st.caption("Layer 1 holds the first component, layer 2 the second.")
    comparison = worked.compare_global_and_per_tensor(vector[:split], vector[split:], norm_c)
    c = worked.format_number(norm_c)
    left, right = st.columns(2)
    with left.container(border=True):
        st.markdown("**Global norm**: PyTorch `clip_grad_norm_`, Keras 3 `global_clipnorm`")
        st.markdown(
            f"One length for everything, ‖g‖ = {_num(comparison.global_norm_before)}, "
            f"so one factor {_num(comparison.global_scale)} for both layers."
        )
        st.metric("length after", f"{_num(comparison.global_norm_after)}", border=False)
    with right.container(border=True):
        st.markdown("**Per tensor**: Keras 3 (and tf.keras 2.x) `clipnorm`")
        a, b = comparison.per_tensor_layers
        st.markdown(
            f"Each layer on its own: layer 1 has length {_num(a.norm_before)} and gets factor "
            f"{_num(a.scale)}, layer 2 has length {_num(b.norm_before)} and gets factor {_num(b.scale)}."
        )
        st.metric("length after", f"{_num(comparison.per_tensor_norm_after)}", border=False)
    st.plotly_chart(_comparison_figure(comparison), key="worked_compare_chart")
    if comparison.max_difference == 0:
        st.markdown("With these numbers both ways give the same gradient.")
    else:
        st.markdown(
            f"Per tensor, each layer is capped at {c} on its own, so the whole gradient may "
            f"stay longer than {c} (here {_num(comparison.per_tensor_norm_after)}) and its "
            f"direction turns by {comparison.per_tensor_angle_degrees:.2f}°. The global norm "
            "keeps the direction."
        )


def _difference(x: float) -> str:
    return "0 (identical)" if x == 0 else f"{x:.1e}"


def _torch_check(results: list[worked.WorkedResult]) -> None:
    st.subheader("Checked against PyTorch", divider="gray")
    st.markdown("The same clipping, run live by PyTorch on a float64 tensor:")
    for result in results:
        check = worked.torch_check(result)
        st.markdown(
            f"- `{check.function}` (c = {worked.format_number(result.threshold)}) gives "
            f"{worked.format_vector(check.output, 6)}; largest difference from the worked "
            f"arithmetic: **{_difference(check.max_abs_difference)}**"
        )
    st.caption(
        "PyTorch divides by ‖g‖ + 0.000001 to avoid dividing by zero, so its norm-clipped "
        "numbers are a hair smaller; clipping by value agrees to the last digit."
    )


# ---- the adaptive rules ----------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=512)
def _agc_figure(result: adaptive.AgcResult, step_index: int):
    return figures.agc_figure(result, step_index)


@st.cache_resource(show_spinner=False, max_entries=512)
def _history_figure(result: adaptive.HistoryResult, step_index: int):
    return figures.history_figure(result, step_index)


def _restore_rules(keys: tuple[str, ...]) -> None:
    for key in keys:
        st.session_state[key] = RULE_DEFAULTS[key]


def _rule_stepper(result, prefix: str, figure: Callable[[Any, int], Any]) -> None:
    """Back / Next through an adaptive rule's ``steps``, with its figure."""
    step_key, signature_key = f"{prefix}_step", f"{prefix}_signature"
    st.session_state.setdefault(step_key, 0)
    if st.session_state.get(signature_key, result.signature) != result.signature:
        st.session_state[step_key] = 0  # a new example starts from the first step
    st.session_state[signature_key] = result.signature
    n_steps = len(result.steps)
    k = max(0, min(n_steps - 1, st.session_state[step_key]))
    st.session_state[step_key] = k
    step = result.steps[k]
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button(
            "Back",
            key=f"{prefix}_back",
            icon=":material/arrow_back:",
            on_click=_move,
            args=(step_key, -1, n_steps),
            disabled=k == 0,
        )
        st.button(
            "Next",
            key=f"{prefix}_next",
            icon=":material/arrow_forward:",
            type="primary",
            on_click=_move,
            args=(step_key, 1, n_steps),
            disabled=k == n_steps - 1,
        )
        st.button(
            "Start over",
            key=f"{prefix}_reset",
            type="tertiary",
            on_click=_reset,
            args=(step_key,),
            disabled=k == 0,
        )
    st.progress((k + 1) / n_steps, text=f"Step {k + 1} of {n_steps}: {step.title}")
    with st.container(border=True):
        st.latex(step.latex)
        st.markdown(step.sentence)
    st.plotly_chart(figure(result, k), key=f"{prefix}_chart")


def _agc_inputs() -> tuple[tuple, tuple, float, float]:
    with st.container(border=True):
        left, right = st.columns(2)
        left.text_area(
            "Weights W (one row per unit; rows separated by ';' or new lines)",
            key="worked_agc_w",
            height=140,
            help=f"Up to {adaptive.MAX_UNITS} rows of up to {adaptive.MAX_INPUTS} numbers",
        )
        right.text_area(
            "Gradient G (the same shape)",
            key="worked_agc_g",
            height=140,
            help="One row per unit, as many numbers per row as W",
        )
        lam_col, eps_col, restore_col = st.columns([1, 1, 2], vertical_alignment="bottom")
        lam_col.text_input("λ (clip factor)", key="worked_agc_lambda", help="A number above 0")
        eps_col.text_input("ε (smallest weight norm)", key="worked_agc_eps", help="Above 0")
        restore_col.button(
            "Back to the example",
            key="worked_agc_restore",
            type="tertiary",
            icon=":material/restart_alt:",
            on_click=_restore_rules,
            args=(("worked_agc_w", "worked_agc_g", "worked_agc_lambda", "worked_agc_eps"),),
        )
        show_matrix = adaptive.format_matrix
        w = _read(
            "worked_agc_w", "worked_good_agc_w", adaptive.parse_weights, "Weights", show_matrix
        )
        g = _read(
            "worked_agc_g", "worked_good_agc_g", adaptive.parse_gradient, "Gradient", show_matrix
        )
        lam = _read(
            "worked_agc_lambda", "worked_good_agc_lambda", worked.parse_threshold, "λ",
            worked.format_number,
        )  # fmt: skip
        eps = _read(
            "worked_agc_eps", "worked_good_agc_eps", worked.parse_threshold, "ε",
            worked.format_number,
        )  # fmt: skip
        shape_problem = adaptive.shape_mismatch(w, g)
        if shape_problem:
            w, g = st.session_state["worked_good_agc"]
            st.error(
                f"**Gradient:** {shape_problem} Still showing the last good pair, "
                f"{len(w)} units of {len(w[0])} inputs."
            )
        else:
            st.session_state["worked_good_agc"] = (w, g)
    return w, g, lam, eps


def _agc() -> None:
    st.subheader("Adaptive gradient clipping (AGC), unit by unit", divider="gray")
    st.markdown(
        "AGC (Brock, De, Smith & Simonyan, 2021) judges every unit of a layer on its own. "
        "A unit is one output: a row of the weight matrix as PyTorch stores it, `[out, in]`; "
        "a bias vector counts as one unit. Its gradient may be at most the fraction λ of its "
        "weights' length. This is what trains deep networks without batch normalization: "
        "no step can change a unit by much more than λ of its size, whatever the scale of "
        "the gradient."
    )
    w, g, lam, eps = _agc_inputs()
    result = adaptive.agc_worked(w, g, lam, eps)
    _rule_stepper(result, "worked_agc", _agc_figure)
    difference = adaptive.agc_engine_check(result)
    st.caption(
        "The engine's AGC rule, which trains in the Lab in float32, gives the same clipped "
        f"gradient to within {difference:.1e} (float32 rounding); both agree with timm's "
        "`adaptive_clip_grad` in the tests."
    )


def _history() -> None:
    st.subheader("ZClip and AutoClip on a history of norms", divider="gray")
    st.markdown(
        "These two rules choose a global-norm threshold from the norms they have seen. "
        "Here is a short history with one spike in it; change the numbers to make your own."
    )
    with st.container(border=True):
        field, restore_col = st.columns([4, 1], vertical_alignment="bottom")
        field.text_input(
            "Gradient norms, step by step (numbers separated by commas)",
            key="worked_norms",
            help=f"From 2 to {adaptive.MAX_HISTORY} lengths, none negative",
        )
        restore_col.button(
            "Back to the example",
            key="worked_norms_restore",
            type="tertiary",
            icon=":material/restart_alt:",
            on_click=_restore_rules,
            args=(("worked_norms",),),
        )
        norms = _read(
            "worked_norms", "worked_good_norms", adaptive.parse_norms, "Norms",
            worked.format_vector,
        )  # fmt: skip
    zclip_tab, autoclip_tab = st.tabs(["ZClip", "AutoClip"])
    with zclip_tab:
        st.markdown(
            "ZClip (Kumar, Owen, Roy Chowdhury & Güra, 2025) was built for the loss spikes "
            "of large language-model pretraining. It keeps a running mean μ and variance σ² "
            "of the norm and clips only a norm that is a z-score outlier. Its default warm-up "
            "is 25 steps; this short history uses a shorter one."
        )
        a, b, c, d = st.columns(4)
        alpha = a.slider("α (EMA)", 0.5, 0.99, 0.97, 0.01, key="worked_zclip_alpha")
        z = b.slider("z threshold", 0.5, 5.0, 2.5, 0.1, key="worked_zclip_z")
        warmup_max = max(1, len(norms) - 1)
        warmup = c.slider(
            "Warm-up steps", 1, warmup_max, min(5, warmup_max), key="worked_zclip_warmup"
        )
        cap_on = d.toggle("Hard cap (max_grad_norm)", key="worked_zclip_cap_on")
        cap = d.number_input(
            "cap", 0.01, 1e6, 1.0, key="worked_zclip_cap", disabled=not cap_on,
            label_visibility="collapsed",
        )  # fmt: skip
        result = adaptive.zclip_worked(
            norms, alpha=alpha, z_thresh=z, warmup=int(warmup), cap=cap if cap_on else None
        )
        _rule_stepper(result, "worked_zclip", _history_figure)
        spikes = [r.step for r in result.rows if r.spike]
        st.markdown(
            adaptive.history_summary(result)
            + (f" Spikes at step {', '.join(map(str, spikes))}." if spikes else "")
        )
        st.caption(
            "The engine's ZClip rule gives the same clipped norms to within "
            f"{adaptive.history_engine_check(result):.1e} (relative; float32); both agree "
            "with the zclip package in the tests."
        )
    with autoclip_tab:
        st.markdown(
            "AutoClip (Seetharaman, Wichern, Pardo & Le Roux, 2020) removes the threshold "
            "from your hands: it clips at the p-th percentile of every norm so far, the "
            "current one included, as the authors' code does. (The PyPI package `autoclip` "
            "differs: it clips each tensor on its own by default and uses only the norms "
            "before the current step.)"
        )
        p = st.slider("Percentile p", 1.0, 100.0, 10.0, 1.0, format="%.0f", key="worked_autoclip_p")
        result = adaptive.autoclip_worked(norms, percentile=p)
        _rule_stepper(result, "worked_autoclip", _history_figure)
        st.markdown(adaptive.history_summary(result))
        st.caption(
            "The engine's AutoClip rule gives the same clipped norms to within "
            f"{adaptive.history_engine_check(result):.1e} (relative; float32); both agree "
            "with np.percentile in the tests."
        )


def _new_exercise() -> None:
    st.session_state["worked_try_seed"] = random.randrange(1, 1_000_000)
    st.session_state["worked_try_answer"] = ""
    st.session_state.pop("worked_try_checked", None)


def _mark_checked() -> None:
    st.session_state["worked_try_checked"] = st.session_state["worked_try_answer"]


def _try_it() -> None:
    st.subheader("Try it yourself", divider="gray")
    vector, mode, c = worked.random_example(st.session_state["worked_try_seed"])
    result = worked.compute(vector, mode, c)
    st.markdown(
        f"Clip this gradient **by {mode}** with c = {worked.format_number(c)}. Two decimals are enough."
    )
    st.latex(rf"g = {worked.vector_latex(vector)},\qquad c = {worked.format_number(c)}")
    st.text_input(
        "Your clipped vector",
        key="worked_try_answer",
        placeholder="numbers separated by commas",
    )
    with st.container(horizontal=True):
        st.button("Check", key="worked_try_check", type="primary", on_click=_mark_checked)
        st.button(
            "New example", key="worked_try_new", icon=":material/casino:", on_click=_new_exercise
        )
    checked = st.session_state.get("worked_try_checked")
    if checked is None or checked != st.session_state["worked_try_answer"]:
        return
    verdict = worked.check_answer(checked, result)
    if verdict.correct:
        st.success(verdict.message)
        return
    st.error(verdict.message)
    st.caption(
        " · ".join(
            f"component {miss.index + 1}: you wrote {worked.format_number(miss.given)}"
            for miss in verdict.misses
        )
    )
    if verdict.hint:
        st.info(f"**Hint:** {verdict.hint}")
    with st.expander("Show the answer"):
        st.markdown(f"g′ = {worked.format_vector(result.output)}")


_init_state()
st.title("Worked examples")
st.markdown(
    "Clipping is a little arithmetic done on the gradient before each weight update. "
    "Step through it number by number, first on the tutorial's own example, then on yours."
)

vector, value_c, norm_c = _inputs()
by_value = worked.compute(vector, "value", value_c)
by_norm = worked.compute(vector, "norm", norm_c)

value_tab, norm_tab = st.tabs(["Clip by value", "Clip by norm"])
with value_tab:
    st.latex(r"g'_i = \min\big(\max(g_i,\,-c),\; c\big)")
    st.markdown("Each component is forced into the range from −c to c, on its own.")
    _stepper(by_value, "worked_value")
with norm_tab:
    st.latex(
        r"g' = g \cdot \min\Big(1,\ \frac{c}{\lVert g \rVert}\Big), \qquad \lVert g \rVert = \sqrt{\textstyle\sum_i g_i^2}"
    )
    st.markdown(
        "If the whole vector is longer than c, every component is multiplied by the same "
        "factor, so the length becomes c and the direction stays (Pascanu, Mikolov & Bengio, 2013)."
    )
    _stepper(by_norm, "worked_norm")

_geometry()
_combined(vector, value_c, norm_c)
_global_vs_per_tensor(vector, norm_c)
_torch_check([by_value, by_norm])
_try_it()
st.header("The adaptive rules, step by step")
st.markdown(
    "Today's practice often lets the rule pick its own threshold. Three such rules, each "
    "worked exactly as its reference implementation does it."
)
_agc()
_history()
