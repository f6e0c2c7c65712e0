"""How a run ended: ``Status`` (one enum for the trainer, the sweep driver, its store, the surrogate and
the reports) and ``RunResult`` (what ``hpcdlrm.train.run`` returns and ``RUN_DIR/result.json`` holds).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ..io import write_json_atomic

RESULT_FILE = "result.json"


class Status(str, Enum):
    """A run's or a sweep trial's state. A ``str`` so that stored and printed forms are the plain value."""

    PENDING = "pending"
    RUNNING = "running"
    REACHED_TARGET = "reached_target"
    COMPLETED = "completed"
    CAPPED = "capped"
    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    DIVERGED = "diverged"
    FAILED = "failed"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:  # as its value: "failed" and Status.FAILED are the same dict key
        return hash(self.value)

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def meaning(self) -> str:
        return MEANING[self]

    @property
    def finished(self) -> bool:
        """Ended for good (not waiting, running, or about to be resubmitted)."""
        return self not in (Status.PENDING, Status.RUNNING)

    @property
    def penalised(self) -> bool:
        """Told to a sweep's optimizer as a penalty above every censored miss."""
        return self in (Status.FAILED, Status.DIVERGED)

    @property
    def is_failure(self) -> bool:
        """Counts towards a sweep's ``--max-failures``."""
        return self in (Status.FAILED, Status.LOST)

    @property
    def is_final_run(self) -> bool:
        """A training run that ended like this is done: rerunning its command returns the stored result."""
        return self in (Status.COMPLETED, Status.REACHED_TARGET, Status.DIVERGED)


MEANING: dict[Status, str] = {
    Status.PENDING: "stored by the sweep, not submitted yet (or about to be resubmitted)",
    Status.RUNNING: "submitted; the job is queued or training",
    Status.REACHED_TARGET: "validation AUC reached --target-auc; time and samples to target recorded",
    Status.COMPLETED: "trained all its epochs/samples without reaching the target",
    Status.CAPPED: "stopped early by the sweep (adaptive capping or median stopping); partial curve kept",
    Status.TIMEOUT: "stopped by its time limit (--max-time, or Slurm's job limit); partial curve kept",
    Status.PREEMPTED: "stopped by a signal (SIGTERM/SIGUSR1: preemption, node drain) after a checkpoint; "
                      "rerun the same command to resume (a sweep resubmits it, up to 3 times)",
    Status.DIVERGED: "the loss became NaN/inf",
    Status.FAILED: "an error (bad data, a crash, a user's scancel); the reason says which",
    Status.LOST: "the job ended without any result (killed with its node, OOM); not told to the optimizer",
}


@dataclass
class RunResult:
    """One run's outcome. ``to_dict``/``from_dict`` are the ``result.json`` form (status as its value)."""

    status: Status
    reason: str | None = None  # why it stopped, when it did not simply finish
    error: str | None = None  # FAILED: the error, as the trainer printed it
    best_auc: float | None = None
    last_eval: dict[str, float] | None = None
    time_to_target_s: float | None = None  # training wall clock, evaluations included (MLPerf)
    samples_to_target: int | None = None
    samples_per_s: float | None = None
    steps: int = 0
    samples: int = 0
    epochs: float = 0.0
    wall_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    resumed_from_step: int | None = None
    ceiling_auc: float | None = None
    gap_closed: float | None = None
    rank: int | None = None  # FAILED: the rank that recorded it
    config: dict[str, Any] = field(default_factory=dict)  # the TrainConfig, as a dict
    dataset: dict[str, Any] | None = None  # the dataset's identity (a resume on other data is refused)
    plan: dict[str, Any] | None = None
    env: dict[str, Any] = field(default_factory=dict)  # hosts, ranks, launcher, backend, versions, job id
    extra: dict[str, Any] = field(default_factory=dict)  # producer-specific fields (the surrogate's)

    @property
    def interrupted(self) -> bool:
        return self.status is Status.PREEMPTED

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["status"] = self.status.value
        d["interrupted"] = self.interrupted  # readers of hpcdlrm <= 0.1 looked for this flag
        extra = d.pop("extra")
        return {**extra, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunResult":
        """Parse a result.json object; ValueError when its status is missing or unknown. Older files
        wrote a signal stop as ``timeout`` with ``interrupted: true``: that is ``preempted``."""
        status = Status(d.get("status"))
        if status is Status.TIMEOUT and d.get("interrupted"):
            status = Status.PREEMPTED
        names = {f.name for f in dataclasses.fields(cls)} - {"status", "extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k not in ("status", "interrupted")}
        return cls(status=status, extra=extra, **known)

    def write(self, run_dir: str | Path) -> None:
        write_json_atomic(Path(run_dir) / RESULT_FILE, self.to_dict())

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunResult | None":
        """RUN_DIR/result.json; None when absent. ValueError (naming the file) when unreadable."""
        path = Path(run_dir) / RESULT_FILE
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: unreadable ({e})") from e
        if not isinstance(d, dict):
            raise ValueError(f"{path}: not a JSON object")
        try:
            return cls.from_dict(d)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from e
