"""clipviz: a library for teaching exploding gradients and gradient clipping.

The library holds every computation and every figure of the app; the pages in
``pages/`` only read widgets and call into it. Nothing here imports streamlit.
Its layers, lowest first (a module imports only its own layer and those
below; ``tests/test_architecture.py`` enforces it):

* ``engine``  -- configuration, data, models, clipping rules, the trainer, sweeps
* ``lessons`` -- what the pages teach: signs and fixes, the tutorial's story,
  the worked arithmetic, the cliff, recurrent nets
* ``figures`` -- Plotly builders, pure functions of results
* ``app``     -- what the pages share that is not widgets: the Lab's state and
  its URL codec, the player, URL keys, export
* ``cli``     -- the command line (``python -m clipviz``)

``clipviz.GradientLog`` (``clipviz.engine.gradlog``), the logger for your own
training loop, is the one name exported here; it is imported on first use, so
``import clipviz`` stays light (no torch).

The library sets no process-wide policy (threads, memory): the app
(``app_boot``) and the command line set their own where they start.
"""

__version__ = "0.2.0"

__all__ = ["GradientLog", "__version__"]


def __getattr__(name: str):
    """Import ``GradientLog`` (and torch with it) only when someone asks for it."""
    if name == "GradientLog":
        from clipviz.engine.gradlog import GradientLog

        return GradientLog
    raise AttributeError(f"module 'clipviz' has no attribute {name!r}")
