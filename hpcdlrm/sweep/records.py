"""What a sweep stores, as plain dataclasses: the contract between the sweep store and the reports.

The report layer reads only these (``SweepData``), never live optimizer or executor objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..train.result import Status

# Trial lifecycle: one ``Status`` for the trainer, the driver, the store and the reports (its members and
# what each means: ``hpcdlrm.train.result.MEANING``, the README's table).
STATUSES = tuple(s.value for s in Status)
FINISHED = frozenset(s for s in Status if s.finished)


def incumbent(trials: "list[Trial]", objective: str) -> "Trial | None":
    """The best finished, measured trial (never a failed or diverged one: its objective is a penalty):
    fastest to the target, else the lowest objective (highest AUC). The one rule for the driver's
    summary, ``status`` and the reports."""
    told = [t for t in trials if Status(t.status).finished and not Status(t.status).penalised
            and t.objective is not None and math.isfinite(t.objective)]
    if objective == "auc":  # its objective is -best AUC (-0.5 for a trial never evaluated: not measured)
        told = [t for t in told if t.best_auc is not None]
        return max(told, key=lambda t: (t.best_auc, -t.id)) if told else None
    if objective == "time_to_target":
        hit = [t for t in told if t.status == Status.REACHED_TARGET and t.time_to_target_s is not None]
        if hit:
            return min(hit, key=lambda t: (t.time_to_target_s, t.id))
    return min(told, key=lambda t: (t.objective, t.id)) if told else None


@dataclass
class Trial:
    id: int
    status: Status
    params: dict[str, Any]
    reason: str | None = None
    objective: float | None = None  # the value told to the optimizer (minimised)
    best_auc: float | None = None
    time_to_target_s: float | None = None
    samples_per_s: float | None = None
    slurm_job_id: str | None = None
    partition: str | None = None
    hosts: list[str] = field(default_factory=list)
    ranks: int = 1
    nodes: int = 1
    submitted_at: float | None = None  # unix seconds
    started_at: float | None = None
    ended_at: float | None = None
    result: dict[str, Any] | None = None  # the trial's result.json, verbatim
    # Added by the sweep engine (optional; older readers may ignore them):
    run_dir: str | None = None  # the trial's RUN_DIR (metrics.jsonl, result.json, checkpoints)
    executor: str | None = None  # "local" | "slurm"
    job_id: str | None = None  # the executor's id: Slurm job id, or the local controller's pid
    max_time_s: float | None = None  # the training time limit the trial was given (capping lowers it)
    config: dict[str, Any] | None = None  # the trial's TrainConfig (as a dict): what it was run with

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass
class MetricPoint:
    trial_id: int
    step: int
    samples: int
    wall_s: float
    name: str  # "loss", "auc", "logloss", "samples_per_s", ...
    value: float


@dataclass
class SweepInfo:
    """``space`` maps a parameter name to ``{"kind": "log"|"float"|"int"|"choice", "low", "high",
    "choices", "default"}`` (absent keys where they do not apply)."""

    name: str
    command: list[str]
    space: dict[str, dict[str, Any]]
    optimizer: str
    objective: str  # "time_to_target" | "auc"
    target_auc: float | None
    created_at: float
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None


@dataclass
class SweepData:
    info: SweepInfo
    trials: list[Trial]
    metrics: list[MetricPoint]
