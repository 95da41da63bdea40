"""clipviz: a library for teaching exploding gradients and gradient clipping.

The library holds every computation and every figure of the app; the pages in
``pages/`` only read widgets and call into it. Nothing here imports streamlit.
"""

import torch

# The networks here are tiny: one thread avoids thread hand-off costs that
# dominate at these sizes, and leaves the second core to the web server.
# The sweep raises it for its large batched matrix products.
torch.set_num_threads(1)

__version__ = "0.1.0"
