"""Hybrid-parallel DLRM training: ``run(TrainConfig) -> RunResult`` (also ``python -m hpcdlrm.train``).

Dense MLPs are data-parallel (one coalesced gradient all-reduce per step); embedding tables are
placed by a sharding plan (table-wise, column-wise or replicated) and exchanged with all-to-all.
"""

from __future__ import annotations

from .config import TrainConfig
from .result import RunResult, Status

__all__ = ["RunResult", "Status", "TrainConfig", "run"]


def run(cfg: TrainConfig) -> RunResult:
    """Train on this process's ranks and return how the run ended (also written to RUN_DIR/result.json).
    Raises after recording a ``failed`` result when anything goes wrong. Picklable."""
    from .loop import run as _run  # noqa: PLC0415 - torch and the data stack load only when training

    return _run(cfg)
