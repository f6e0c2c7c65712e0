"""PNG reports of sweeps: pure extraction (``extract``, ``importance``) plus thin matplotlib renderers.

Reads only the stored records (``hpcdlrm.sweep.records``); never torch, submitit or nevergrad.

    python -m hpcdlrm.report SWEEP_DIR [SWEEP_DIR ...] [--out DIR]
"""

from __future__ import annotations

from hpcdlrm.report.builder import ReportConfig as ReportConfig
from hpcdlrm.report.builder import build as build

__all__ = ["ReportConfig", "build"]
