"""Process-wide policy for the test run, as the app and the CLI set it where they start.

The library sets no thread policy of its own (``clipviz/__init__.py``): the
networks are tiny, and on a machine whose cores are busy, torch's default
thread pool spends more time handing tiny matrix products between threads
than computing them (a 1600-step run went from 0.3 s to minutes).
"""

import torch

torch.set_num_threads(1)
