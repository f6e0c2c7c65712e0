"""``SweepConfig``: every setting of a sweep, as one plain dataclass (the CLI fills it, the store keeps it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .objective import OBJECTIVES
from .optim import DEFAULT_OPTIMIZER
from .trial import TRAIN_ENTRY

# Settings a resumed sweep must share with the stored one (the optimizer's history depends on them).
FIXED_ON_RESUME = ("space", "objective", "target_auc", "optimizer", "entry")


@dataclass
class SweepConfig:
    out: str = "hpcdlrm-sweep"
    data: str | None = None
    space: dict[str, dict[str, Any]] = field(default_factory=dict)  # validated space (Space.to_dict)
    space_file: str | None = None
    executor: str = "local"  # resolved: "local" | "slurm"
    partitions: list[str] = field(default_factory=lambda: [""])  # "" = the default partition
    parallel: list[int] = field(default_factory=lambda: [2])  # trials in flight, per partition
    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int = 1
    time_min: float = 10.0  # Slurm/local job limit per trial; training gets a bit less (limit_s)
    budget: int = 8
    optimizer: str = DEFAULT_OPTIMIZER
    objective: str = "time_to_target"
    target_auc: float | None = None
    seed: int = 0
    max_failures: int = 5
    median_stopping: bool = False
    capping: bool = True
    cap_margin: float = 0.2
    entry: str = TRAIN_ENTRY  # what each task runs: module:function taking the train argv
    train_args: list[str] = field(default_factory=list)  # extra train flags, after `--`
    poll_s: float = 1.0  # how often the driver looks at metrics and result files
    scheduler_poll_s: float = 15.0  # how often it asks Slurm (one squeue for all jobs)
    lost_grace_s: float = 60.0  # a job gone from the scheduler gets this long for its result files
    submit_burst: int = 8  # at most this many submissions per poll: spreads sbatch calls out

    @property
    def num_workers(self) -> int:
        return sum(self.parallel)

    @property
    def signal_delay_s(self) -> int:
        """submitit's warning signal (checkpoint and requeue) comes this long before the job limit."""
        return int(min(90.0, max(10.0, 0.05 * self.time_min * 60.0)))

    @property
    def limit_s(self) -> float:
        """Training time limit per trial (its --max-time): the job limit less start-up, the final
        evaluation and the warning signal, so a trial ends on its own before Slurm or submitit act."""
        job_s = self.time_min * 60.0
        return max(job_s * 0.5, job_s - 2 * self.signal_delay_s - max(30.0, 0.05 * job_s))

    def validate(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"--objective: {self.objective!r} is not one of {list(OBJECTIVES)}")
        if self.objective == "time_to_target" and self.target_auc is None:
            raise ConfigError("--objective time_to_target needs --target-auc (MLPerf's DLRM target on "
                              "Criteo Terabyte is 0.8025); synthetic data gets a default from its manifest")
        if self.target_auc is not None and not 0.5 < self.target_auc <= 1.0:
            raise ConfigError(f"--target-auc: must be in (0.5, 1], got {self.target_auc}")
        if len(self.partitions) != len(self.parallel):
            raise ConfigError(f"--parallel: give one count per partition ({len(self.partitions)} partitions: "
                              f"{self.partitions}), got {self.parallel}")
        for name, v in (("--budget", self.budget), ("--nodes", self.nodes), ("--tasks-per-node", self.tasks_per_node),
                        ("--cpus-per-task", self.cpus_per_task), *(("--parallel", p) for p in self.parallel)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {v!r}")
        if not self.time_min > 0:
            raise ConfigError(f"--time: must be > 0 minutes, got {self.time_min}")
        if self.max_failures < 0:
            raise ConfigError(f"--max-failures: must be >= 0, got {self.max_failures}")
        if self.executor == "local" and self.nodes > 1:
            raise ConfigError(f"--nodes {self.nodes}: the local executor runs on one node; use "
                              f"--tasks-per-node for several ranks, or run under Slurm (--partition)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def check_resume(self, stored: "SweepConfig") -> None:
        """A rerun on an existing SWEEP_DIR must keep what the stored trials' losses depend on."""
        diff = [k for k in FIXED_ON_RESUME if getattr(self, k) != getattr(stored, k)]
        if diff:
            detail = "; ".join(f"{k}: stored {getattr(stored, k)!r}, now {getattr(self, k)!r}" for k in diff)
            raise ConfigError(f"{self.out} holds a sweep with other settings ({detail}); rerun with the same "
                              f"options to resume it, or pick a new --out")
