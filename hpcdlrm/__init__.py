"""hpcdlrm: train and tune DLRM on Criteo across Slurm clusters of CPU nodes.

Flow, one direction only: data -> model -> train -> sweep -> report (bench and CLIs on top).
"""

__version__ = "0.1.0"
