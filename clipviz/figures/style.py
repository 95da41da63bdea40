"""One palette and one layout for every chart in clipviz.

Colours are the Okabe-Ito set, safe for the common forms of colour blindness.
Clipped runs always wear ``CLIPPED`` and unclipped runs ``UNCLIPPED``, on every
page, so a learner can carry the meaning from chart to chart.
"""

from __future__ import annotations

import functools

import plotly.graph_objects as go
import plotly.io as pio

CLIPPED = "#0072B2"  # blue
UNCLIPPED = "#D55E00"  # vermillion
THRESHOLD = "#555555"  # dashed reference lines (thresholds, targets)
TRAIN = "#009E73"  # bluish green
TEST = "#CC79A7"  # reddish purple
ACCENT = "#E69F00"  # orange: highlights, the current step
NEUTRAL = "#999999"
SEQUENCE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]
# Sequential colour scale for heatmaps of magnitudes (perceptually uniform).
HEAT = "Viridis"
FONT = "Source Sans Pro, sans-serif"


def run_colour(clipped: bool) -> str:
    """The colour every chart uses for a clipped (or an unclipped) run."""
    return CLIPPED if clipped else UNCLIPPED


# Colour is never the only cue (issue 16; WCAG 1.4.1): where clipped and unclipped runs
# share a chart, their markers differ in shape too.
CLIPPED_SYMBOL = "circle"
UNCLIPPED_SYMBOL = "diamond"


def run_symbol(clipped: bool) -> str:
    """The marker shape of a clipped (or an unclipped) run's points."""
    return CLIPPED_SYMBOL if clipped else UNCLIPPED_SYMBOL


def base_layout(fig: go.Figure, *, title: str | None = None, height: int = 340) -> go.Figure:
    """Apply the shared look: white background, light grid, legend on top."""
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 15}} if title else None,
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 50 if title else 20, "b": 50},
        font={"family": FONT, "size": 13},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1.0},
        hoverlabel={"namelength": -1},
    )
    return fig


@functools.lru_cache(maxsize=1)
def _template_spec() -> dict:
    return pio.templates["plotly_white"].to_plotly_json()


def layout_spec(*, title: str | None = None, height: int = 340, template: bool = True) -> dict:
    """``base_layout``'s look as a plain dict, with the template expanded.

    For figures built without Plotly's validation (``go.Figure(..., _validate=False)``):
    live charts redrawn several times a second, where validating the template
    alone costs tens of milliseconds per figure. ``template=False`` leaves the
    template out (Streamlit's chart theme styles the figure anyway): the
    template's per-trace defaults cost plotly.js time on every redraw.
    """
    spec = {
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 50 if title else 20, "b": 50},
        "font": {"family": FONT, "size": 13},
        "legend": {
            "orientation": "h",
            "yanchor": "bottom",
            "y": 1.02,
            "xanchor": "right",
            "x": 1.0,
        },
        "hoverlabel": {"namelength": -1},
    }
    if template:
        spec["template"] = _template_spec()
    if title:
        spec["title"] = {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 15}}
    return spec
