"""Figures for the worked clipping examples: pure functions of ``clipviz.lessons.worked`` results.

* ``step_figure``: the vector as bars, before and after, the component in work framed;
* ``geometry_figure``: a 2-D gradient, the value box ``[-c, c]^2``, the norm circle of
  radius ``c`` and both clipped arrows with the angle each turned;
* ``comparison_figure``: global-norm versus per-tensor-norm clipping of two layers;
* ``agc_figure``: AGC's units, each gradient's length before and after against its bound;
* ``history_figure``: ZClip or AutoClip on a history of norms, with the threshold it used.

Colours: the original gradient wears ``UNCLIPPED``; norm clipping wears ``CLIPPED``
(as clipped runs do everywhere in the app); value clipping, a different rule, wears
``VALUE_CLIPPED``; the component in work is framed in ``ACCENT``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from clipviz.figures.style import ACCENT, CLIPPED, SEQUENCE, THRESHOLD, UNCLIPPED, base_layout
from clipviz.lessons.adaptive import AgcResult, HistoryResult
from clipviz.lessons.worked import ClipComparison, WorkedResult, format_number, progress_at

ORIGINAL = UNCLIPPED
NORM_CLIPPED = CLIPPED
VALUE_CLIPPED = SEQUENCE[2]  # bluish green
PER_TENSOR = SEQUENCE[3]  # reddish purple
MODE_COLOURS = {"value": VALUE_CLIPPED, "norm": NORM_CLIPPED, "norm_value": VALUE_CLIPPED}
NEUTRAL_FILL = "rgba(153, 153, 153, 0.15)"  # ZClip's warm-up band


def _exact(x: float) -> str:
    """Every digit a float64 holds, for hover labels."""
    return repr(float(x))


def _labels(n: int) -> list[str]:
    return [f"g{_subscript(i + 1)}" for i in range(n)]


def _subscript(k: int) -> str:
    return str(k).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def step_figure(result: WorkedResult, step_index: int, *, height: int = 260) -> go.Figure:
    """Bars of the vector a step reads and of what is worked out so far.

    The component in work is framed in ``ACCENT``; for value clipping the lines at
    ``-c`` and ``c`` show the allowed band.
    """
    progress = progress_at(result, step_index)
    n = len(progress.source)
    labels = _labels(n)
    fig = go.Figure()
    fig.add_bar(
        x=labels,
        y=list(progress.source),
        name=f"{progress.source_name} (before)",
        marker={"color": ORIGINAL, "opacity": 0.45},
        customdata=[_exact(v) for v in progress.source],
        hovertemplate="%{x} = %{customdata}<extra>" + progress.source_name + "</extra>",
    )
    if progress.partial_name is not None:
        colour = THRESHOLD if progress.partial_kind == "square" else MODE_COLOURS.get(result.mode)
        name = "squares gᵢ²" if progress.partial_kind == "square" else "after clipping"
        fig.add_bar(
            x=labels,
            y=[v if v is not None else 0.0 for v in progress.partial],
            name=name,
            marker={"color": colour},
            customdata=["not yet" if v is None else _exact(v) for v in progress.partial],
            hovertemplate="%{x}: %{customdata}<extra>" + name + "</extra>",
        )
    # Shapes are added directly: add_vrect / add_hline are many times slower.
    if progress.index is not None:
        fig.add_shape(
            type="rect",
            xref="x",
            yref="paper",
            x0=progress.index - 0.5,
            x1=progress.index + 0.5,
            y0=0,
            y1=1,
            line={"width": 0},
            fillcolor=ACCENT,
            opacity=0.15,
            layer="below",
        )
    value_c = result.threshold if result.mode == "value" else result.value_threshold
    if value_c is not None and progress.partial_kind != "square":
        for level, text in ((value_c, "c"), (-value_c, "−c")):
            fig.add_shape(
                type="line",
                xref="paper",
                yref="y",
                x0=0,
                x1=1,
                y0=level,
                y1=level,
                line={"color": THRESHOLD, "dash": "dash", "width": 1.5},
            )
            fig.add_annotation(
                xref="paper",
                yref="y",
                x=1.0,
                y=level,
                xanchor="left",
                text=f"{text} = {format_number(level)}",
                showarrow=False,
                font={"color": THRESHOLD},
            )
    base_layout(fig, height=height)
    fig.update_layout(
        barmode="group",
        bargap=0.25,
        margin={"l": 50, "r": 70, "t": 30, "b": 40},
        showlegend=True,
    )
    fig.update_yaxes(title_text="value", zeroline=True, zerolinecolor="#888888")
    fig.update_xaxes(title_text="component")
    return fig


def _arrow(
    fig: go.Figure,
    vector: Sequence[float],
    name: str,
    colour: str,
    width: float,
    *,
    opacity: float = 1.0,
) -> None:
    x, y = float(vector[0]), float(vector[1])
    length = math.hypot(x, y)
    fig.add_scatter(
        x=[0.0, x],
        y=[0.0, y],
        mode="lines+markers",
        name=name,
        opacity=opacity,
        line={"color": colour, "width": width},
        marker={
            "symbol": "arrow",
            "angleref": "previous",
            "size": [0, 12 + 2 * width],
            "color": colour,
        },
        customdata=[[_exact(0), _exact(0), _exact(0)], [_exact(x), _exact(y), _exact(length)]],
        hovertemplate=(
            "g₁ = %{customdata[0]}<br>g₂ = %{customdata[1]}<br>length = %{customdata[2]}"
            f"<extra>{name}</extra>"
        ),
    )


def _nice_step(reach: float) -> float:
    """A round tick spacing giving about three ticks on each side of zero."""
    raw = reach / 3
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _angle_text(angle: float | None) -> str:
    return "no direction" if angle is None else f"turned {angle:.1f}°"


def _angle_arc(fig: go.Figure, original: Sequence[float], clipped: Sequence[float]) -> None:
    """An arc from the original direction to the clipped one, labelled with the angle."""
    start = math.atan2(original[1], original[0])
    turn = (math.atan2(clipped[1], clipped[0]) - start + math.pi) % (2 * math.pi) - math.pi
    if abs(math.degrees(turn)) < 0.5:
        return
    radius = 0.5 * min(math.hypot(*original), math.hypot(*clipped))
    points = [start + turn * k / 40 for k in range(41)]
    fig.add_scatter(
        x=[radius * math.cos(a) for a in points],
        y=[radius * math.sin(a) for a in points],
        mode="lines",
        line={"color": VALUE_CLIPPED, "width": 1.5},
        showlegend=False,
        hoverinfo="skip",
    )
    # The label sits just beyond the clipped arrow, away from the original one.
    beyond = start + turn + math.copysign(0.3, turn)
    fig.add_annotation(
        x=radius * math.cos(beyond),
        y=radius * math.sin(beyond),
        text=f"{abs(math.degrees(turn)):.1f}°",
        showarrow=False,
        font={"color": VALUE_CLIPPED, "size": 13},
    )


def geometry_figure(
    value_result: WorkedResult, norm_result: WorkedResult, *, height: int = 500
) -> go.Figure:
    """A 2-D gradient clipped both ways, drawn to scale (equal axes).

    ``value_result`` and ``norm_result`` are ``compute`` results for the same
    two-component vector in ``value`` and ``norm`` mode. The legend carries the angle
    each clipped arrow turned away from the original; an arc marks the value one.
    """
    g = value_result.input
    c_value, c_norm = value_result.threshold, norm_result.threshold
    fig = go.Figure()
    fig.add_scatter(
        x=[-c_value, c_value, c_value, -c_value, -c_value],
        y=[-c_value, -c_value, c_value, c_value, -c_value],
        mode="lines",
        name=f"value box [−c, c]², c = {format_number(c_value)}",
        line={"color": VALUE_CLIPPED, "dash": "dash", "width": 1.5},
        fill="toself",
        fillcolor="rgba(0, 158, 115, 0.06)",
        hoverinfo="skip",
    )
    angles = [2 * math.pi * k / 240 for k in range(241)]
    fig.add_scatter(
        x=[c_norm * math.cos(a) for a in angles],
        y=[c_norm * math.sin(a) for a in angles],
        mode="lines",
        name=f"norm circle, radius c = {format_number(c_norm)}",
        line={"color": NORM_CLIPPED, "dash": "dot", "width": 1.5},
        hoverinfo="skip",
    )
    # The original is drawn wide and light underneath: the norm-clipped arrow lies on it.
    _arrow(fig, g, "original g", ORIGINAL, 7, opacity=0.55)
    _arrow(
        fig,
        value_result.output,
        f"clipped by value: {_angle_text(value_result.angle_degrees)}",
        VALUE_CLIPPED,
        3,
    )
    _arrow(
        fig,
        norm_result.output,
        f"clipped by norm: {_angle_text(norm_result.angle_degrees)}",
        NORM_CLIPPED,
        3,
    )
    if value_result.angle_degrees is not None:
        _angle_arc(fig, g, value_result.output)

    reach = max(abs(g[0]), abs(g[1]), c_value, c_norm, 1e-9) * 1.15
    tick = _nice_step(reach)
    base_layout(fig, height=height)
    fig.update_layout(
        margin={"l": 60, "r": 10, "t": 10, "b": 50},
        legend={
            "orientation": "v",
            "x": 1.02,
            "xanchor": "left",
            "y": 1.0,
            "yanchor": "top",
        },
    )
    fig.update_xaxes(
        title_text="g₁ (first component)",
        range=[-reach, reach],
        dtick=tick,
        zeroline=True,
        zerolinecolor="#888888",
        constrain="domain",
    )
    fig.update_yaxes(
        title_text="g₂ (second component)",
        range=[-reach, reach],
        dtick=tick,
        zeroline=True,
        zerolinecolor="#888888",
        scaleanchor="x",
        scaleratio=1,
        constrain="domain",
    )
    return fig


def comparison_figure(comparison: ClipComparison, *, height: int = 300) -> go.Figure:
    """Grouped bars: the gradient, clipped by the global norm, clipped per tensor."""
    original = [x for layer in comparison.global_layers for x in layer.input]
    labels = _labels(len(original))
    fig = go.Figure()
    for values, name, colour in (
        (original, "original g", ORIGINAL),
        (comparison.global_output, "global norm (one factor)", NORM_CLIPPED),
        (comparison.per_tensor_output, "per tensor (a factor per layer)", PER_TENSOR),
    ):
        fig.add_bar(
            x=labels,
            y=list(values),
            name=name,
            marker={"color": colour, "opacity": 0.5 if colour == ORIGINAL else 1.0},
            customdata=[_exact(v) for v in values],
            hovertemplate="%{x} = %{customdata}<extra>" + name + "</extra>",
        )
    first_layer_size = len(comparison.global_layers[0].input)
    fig.add_shape(
        type="line",
        xref="x",
        yref="paper",
        x0=first_layer_size - 0.5,
        x1=first_layer_size - 0.5,
        y0=0,
        y1=1,
        line={"color": THRESHOLD, "dash": "dot", "width": 1.5},
    )
    for layer, (x0, x1) in zip(
        comparison.global_layers,
        ((-0.5, first_layer_size - 0.5), (first_layer_size - 0.5, len(original) - 0.5)),
        strict=True,
    ):
        fig.add_annotation(
            x=(x0 + x1) / 2,
            y=1.0,
            yref="paper",
            yanchor="bottom",
            text=layer.name,
            showarrow=False,
            font={"color": THRESHOLD},
        )
    base_layout(fig, height=height)
    fig.update_layout(
        barmode="group",
        margin={"l": 50, "r": 20, "t": 60, "b": 40},
        legend={"y": 1.12},
    )
    fig.update_yaxes(title_text="value", zeroline=True, zerolinecolor="#888888")
    fig.update_xaxes(title_text="component")
    return fig


# ---- the adaptive rules ----------------------------------------------------------------


def _focus_band(fig: go.Figure, x: float) -> None:
    fig.add_shape(
        type="rect",
        xref="x",
        yref="paper",
        x0=x - 0.5,
        x1=x + 0.5,
        y0=0,
        y1=1,
        line={"width": 0},
        fillcolor=ACCENT,
        opacity=0.15,
        layer="below",
    )


def agc_figure(result: AgcResult, step_index: int, *, height: int = 300) -> go.Figure:
    """Per unit: the gradient's length before and after AGC, and the unit's bound.

    At step ``step_index`` of ``result.steps`` only the units worked so far
    show their clipped length; the unit in work is banded. Log y axis: the
    bounds of units with small weights (or none, where ε sets it) lie decades
    below the others.
    """
    focus, done = result.steps[step_index].focus, min(step_index, len(result.units))
    labels = [f"unit {u.index + 1}" for u in result.units]
    after = [math.sqrt(sum(v * v for v in u.grad_after)) for u in result.units]
    fig = go.Figure()
    fig.add_bar(
        x=labels,
        y=[u.grad_norm for u in result.units],
        name="‖Gᵢ‖ before",
        marker={"color": ORIGINAL, "opacity": 0.55},
        customdata=[_exact(u.grad_norm) for u in result.units],
        hovertemplate="%{x}: ‖Gᵢ‖ = %{customdata}<extra>before</extra>",
    )
    fig.add_bar(
        x=labels,
        y=[a if u.index < done else None for u, a in zip(result.units, after, strict=True)],
        name="‖Gᵢ′‖ after AGC",
        marker={"color": NORM_CLIPPED},
        customdata=[
            f"{_exact(a)} (× {_exact(u.scale)})" for u, a in zip(result.units, after, strict=True)
        ],
        hovertemplate="%{x}: ‖Gᵢ′‖ = %{customdata}<extra>after</extra>",
    )
    fig.add_scatter(
        x=labels,
        y=[u.bound for u in result.units],
        mode="markers",
        name="bound λ·max(‖Wᵢ‖, ε)",
        marker={"symbol": "line-ew-open", "size": 44, "color": THRESHOLD, "line": {"width": 3}},
        customdata=[
            f"{format_number(result.clip_factor)} × {_exact(u.floor)} = {_exact(u.bound)}"
            for u in result.units
        ],
        hovertemplate="%{x}: bound = %{customdata}<extra></extra>",
    )
    if focus is not None:
        _focus_band(fig, focus)
    base_layout(fig, height=height)
    fig.update_layout(barmode="group", bargap=0.3, margin={"l": 60, "r": 20, "t": 40, "b": 40})
    fig.update_yaxes(type="log", title_text="length (log scale)", exponentformat="power")
    fig.update_xaxes(title_text="unit (a row of the weight matrix)")
    return fig


def history_figure(result: HistoryResult, step_index: int, *, height: int = 320) -> go.Figure:
    """The norms a rule saw, what it let through, and its threshold at each step.

    At step ``step_index`` of ``result.steps`` the threshold and the clipped
    norms are drawn up to the step in work, which is banded in ``ACCENT``.
    Log y axis: a spike sits a decade or more above the rest. ZClip's warm-up
    is shaded.
    """
    focus, done = result.steps[step_index].focus, min(step_index, len(result.rows))
    steps = [r.step for r in result.rows]
    worked_rows = result.rows[:done]
    fig = go.Figure()
    if result.rule == "zclip":
        warm = [r.step for r in result.rows if r.phase == "warm-up"]
        if warm:
            fig.add_shape(
                type="rect",
                xref="x",
                yref="paper",
                x0=0.5,
                x1=warm[-1] + 0.5,
                y0=0,
                y1=1,
                line={"width": 0},
                fillcolor=NEUTRAL_FILL,
                layer="below",
            )
            fig.add_annotation(
                x=(warm[-1] + 1) / 2,
                y=1.0,
                xref="x",
                yref="paper",
                yanchor="bottom",
                text="warm-up: only watching"
                if dict(result.settings)["cap"] is None
                else "warm-up",
                showarrow=False,
                font={"color": THRESHOLD, "size": 12},
            )
    fig.add_scatter(
        x=steps[:done],
        y=[r.threshold for r in worked_rows],
        mode="lines",
        line={"color": THRESHOLD, "dash": "dash", "shape": "hvh", "width": 1.5},
        name="threshold used",
        customdata=["none" if r.threshold is None else _exact(r.threshold) for r in worked_rows],
        hovertemplate="step %{x}: threshold %{customdata}<extra></extra>",
        connectgaps=False,
    )
    fig.add_scatter(
        x=steps,
        y=[r.norm for r in result.rows],
        mode="lines+markers",
        line={"color": ORIGINAL, "width": 1},
        marker={"size": 8},
        name="‖g‖ before",
        customdata=[_exact(r.norm) for r in result.rows],
        hovertemplate="step %{x}: ‖g‖ = %{customdata}<extra>before</extra>",
    )
    fig.add_scatter(
        x=steps[:done],
        y=[r.clipped_norm for r in worked_rows],
        mode="markers",
        marker={"color": NORM_CLIPPED, "size": 9, "symbol": "diamond"},
        name="‖g‖ after",
        customdata=[
            f"{_exact(r.clipped_norm)}" + (" (clipped)" if r.clipped else "") for r in worked_rows
        ],
        hovertemplate="step %{x}: %{customdata}<extra>after</extra>",
    )
    if focus is not None:
        _focus_band(fig, focus + 1)
    base_layout(fig, height=height)
    fig.update_layout(margin={"l": 60, "r": 20, "t": 40, "b": 40})
    fig.update_yaxes(type="log", title_text="gradient norm (log scale)", dtick="D2")
    fig.update_xaxes(title_text="step", dtick=1 if len(steps) <= 20 else 5)
    return fig
