"""Hybrid-parallel DLRM training: ``run(TrainConfig) -> dict`` (also ``python -m hpcdlrm.train``).

Dense MLPs are data-parallel (one coalesced gradient all-reduce per step); embedding tables are
placed by a sharding plan (table-wise, column-wise or replicated) and exchanged with all-to-all.
"""

from __future__ import annotations

from typing import Any

from .config import TrainConfig

__all__ = ["TrainConfig", "run"]


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train on this process's ranks and return the result dict (see ``loop.run``). Picklable."""
    from .loop import run as _run  # noqa: PLC0415 - torch and the data stack load only when training

    return _run(cfg)
