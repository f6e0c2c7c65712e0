"""hpcdlrm: train and tune DLRM on Criteo across Slurm clusters of CPU nodes.

Flow, one direction only: data -> model -> train -> sweep -> report (bench and CLIs on top).
"""

import os

__version__ = "0.1.0"

# Large tensors (a step's gathered rows, activations, gradients: 100+ MB each at mlperf's batch) are
# fresh mmaps each step; on 4 KiB pages first touch costs ~30k page faults per 100 MB (a fifth of an
# mlperf step measured here). PyTorch's allocator asks for transparent huge pages when this is set
# before its first allocation, i.e. before torch is imported; an explicit setting wins.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
