"""``SweepConfig``: every setting of a sweep, as one plain dataclass. Its fields are the CLI's flags (built
by ``train.config.add_arguments``, as TrainConfig's are) and the record the store keeps; a default that
depends on where trials run (``None`` here) is filled by :meth:`SweepConfig.resolve`, and only there.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import env
from ..errors import ConfigError
from ..io import check_out_dir
from .objective import OBJECTIVES
from .optim import DEFAULT_OPTIMIZER, OPTIMIZERS

TRAIN_ENTRY = "hpcdlrm.train:run"
SURROGATE_ENTRY = "hpcdlrm.sweep.surrogate:run"
# Entries stored by hpcdlrm 0.1 (functions of a train argv): the same trainers.
LEGACY_ENTRIES = {"hpcdlrm.train.__main__:main": TRAIN_ENTRY, "hpcdlrm.sweep.surrogate:main": SURROGATE_ENTRY}
EXECUTORS = ("auto", "slurm", "local")
# Defaults that depend on the executor: (local, slurm).
BY_EXECUTOR = {"time_min": (2.0, 30.0), "budget": (8, 48), "poll_s": (0.5, 2.0)}
# Settings a resumed sweep must share with the stored one (the optimizer's history depends on them).
FIXED_ON_RESUME = ("space", "objective", "target_auc", "optimizer", "entry")


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected integers like 4 or 4,2, got {text!r}") from e


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",")]


def _f(default: Any, help: str = "", **meta: Any) -> Any:  # noqa: A002 - mirrors argparse's name
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class SweepConfig:
    out: str = _f("hpcdlrm-sweep", "sweep directory; rerun to resume")
    data: str | None = _f(None, "dataset directory [a cached synthetic dataset]")
    partitions: list[str] = _f([""], "Slurm partition(s), comma separated (implies --executor slurm)",
                               flag="--partition", parse=_names, metavar="NAME[,NAME]")
    parallel: list[int] = _f([2], "trials in flight (per partition: 4,2) [2]", parse=_ints, metavar="N[,N]")
    nodes: int = _f(1, "nodes per trial", metavar="N")
    tasks_per_node: int = _f(1, "ranks per node", metavar="N")
    cpus_per_task: int | None = _f(None, "cores per rank [local: cores / (parallel x ranks); slurm: 1]",
                                   metavar="N")
    time_min: float | None = _f(None, "job time limit per trial, minutes [local 2, slurm 30]; training stops "
                                      "itself before it (its --max-time: the limit less start-up and signal "
                                      "slack)", flag="--time", metavar="MINUTES")
    budget: int | None = _f(None, "trials in total, across restarts [local 8, slurm 48]", metavar="N")
    space_file: str | None = _f(None, "search-space TOML [space.toml shipped with hpcdlrm; see `space`]",
                                flag="--space")
    optimizer: str = _f(DEFAULT_OPTIMIZER, "nevergrad optimizer", choices=OPTIMIZERS)
    objective: str = _f("time_to_target", "what the optimizer minimises", choices=OBJECTIVES)
    target_auc: float | None = _f(None, "target validation AUC [synthetic data: from its manifest]")
    executor: str = _f("auto", "auto: slurm when --partition is given or inside a Slurm job, else local",
                       choices=EXECUTORS)
    seed: int = _f(0, "seed of the optimizer and of every trial")
    max_failures: int = _f(5, "stop submitting once more than N trials failed (or were lost)", metavar="N")
    median_stopping: bool = _f(False, "stop trials below the median AUC-vs-time curve")
    capping: bool = _f(True, "cap trials at the incumbent's time to target (--no-capping: do not)")
    target_stopping: bool = _f(True, "before any trial reached the target, stop a trial whose learning curve "
                                     "misses it within the time limit, while trials are left to start (the "
                                     "target rule; --no-target-stopping: do not)")
    schedule_stopping: bool = _f(True, "the stopping rules read each trial's lr schedule: stop a trial whose lr "
                                       "decayed to 0 short of the target, or whose decay left cannot lift it "
                                       "there (by the most finished trials gained), and project at 1x once its "
                                       "lr has settled (--no-schedule-stopping: do not; 1.5x throughout)")
    export: str | None = _f(None, "also write SWEEP_DIR/trials.{csv,json} at the end", choices=("csv", "json"))
    report: bool = _f(True, "write SWEEP_DIR/report/ (PNG reports, refreshed live; --no-report: do not)")
    report_every: float = _f(30.0, "refresh the reports at most every S seconds", metavar="S")
    entry: str = _f(TRAIN_ENTRY, hidden=True)  # module:function each task runs (tests/demos: the surrogate)
    poll_s: float | None = _f(None, flag="--poll", hidden=True)  # how often the driver reads trial files
    # --- not flags
    space: dict[str, dict[str, Any]] = _f({}, cli=False)  # validated space (Space.to_dict)
    train_args: list[str] = _f([], cli=False)  # extra train flags, after `--`, as given
    data_identity: dict[str, Any] | None = _f(None, cli=False)  # Manifest.identity(): a resume on other data
    laptop_args: list[str] = _f([], cli=False)  # train flags the default dataset is sized for (below the rest)
    cap_margin: float = _f(0.2, cli=False)
    scheduler_poll_s: float | None = _f(None, cli=False)  # how often it asks Slurm (one squeue for all jobs)
    lost_grace_s: float = _f(60.0, cli=False)  # a job gone from the scheduler gets this long for its files
    submit_burst: int = _f(8, cli=False)  # at most this many submissions per poll: spreads sbatch calls out

    @property
    def num_workers(self) -> int:
        return sum(self.parallel)

    @property
    def local(self) -> bool:
        return self.executor != "slurm"

    def _pick(self, name: str) -> Any:
        value = getattr(self, name)
        return BY_EXECUTOR[name][0 if self.local else 1] if value is None else value

    @property
    def signal_delay_s(self) -> int:
        """submitit's warning signal (checkpoint and requeue) comes this long before the job limit."""
        return int(min(90.0, max(10.0, 0.05 * self._pick("time_min") * 60.0)))

    @property
    def limit_s(self) -> float:
        """Training time limit per trial (its --max-time): the job limit less start-up, the final
        evaluation and the warning signal, so a trial ends on its own before Slurm or submitit act."""
        job_s = self._pick("time_min") * 60.0
        return max(job_s * 0.5, job_s - 2 * self.signal_delay_s - max(30.0, 0.05 * job_s))

    def resolve(self, cpu_count: int | None = None) -> "SweepConfig":
        """Fill the defaults that depend on where trials run (idempotent); validates first what they
        are computed from. Returns self."""
        self.entry = LEGACY_ENTRIES.get(self.entry, self.entry)
        if self.executor == "auto":
            self.executor = "slurm" if self.partitions != [""] or env.in_slurm_job() else "local"
        if self.executor == "local" and self.partitions != [""]:
            raise ConfigError(f"--partition {','.join(self.partitions)}: partitions are Slurm's; with "
                              f"--executor local every trial runs on this machine (drop one of the two)")
        if len(self.parallel) == 1 and len(self.partitions) > 1:
            self.parallel = self.parallel * len(self.partitions)
        self._check_counts()
        if self.scheduler_poll_s is None:  # a --poll given (tests) speeds the scheduler queries up too
            self.scheduler_poll_s = 15.0 if self.poll_s is None else max(1.0, 5 * self.poll_s)
        for name in BY_EXECUTOR:
            setattr(self, name, self._pick(name))
        if self.cpus_per_task is None:
            cores = cpu_count or os.cpu_count() or 1
            self.cpus_per_task = max(1, cores // (self.num_workers * self.tasks_per_node)) if self.local else 1
        return self

    def _check_counts(self) -> None:
        if len(self.partitions) != len(self.parallel):
            raise ConfigError(f"--parallel: give one count per partition ({len(self.partitions)} partitions: "
                              f"{self.partitions}), got {self.parallel}")
        for name, v in (("--nodes", self.nodes), ("--tasks-per-node", self.tasks_per_node),
                        *(("--parallel", p) for p in self.parallel),
                        *((f"--{n.replace('_', '-')}", getattr(self, n)) for n in ("budget", "cpus_per_task")
                          if getattr(self, n) is not None)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {v!r}")

    def validate(self, *, data_known: bool = True) -> None:
        """``data_known=False``: everything but what the dataset decides (the default target)."""
        self._check_counts()
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"--objective: {self.objective!r} is not one of {list(OBJECTIVES)}")
        if self.objective == "time_to_target" and self.target_auc is None and data_known:
            raise ConfigError("--objective time_to_target needs --target-auc (MLPerf's DLRM target on "
                              "Criteo Terabyte is 0.8025); synthetic data gets a default from its manifest")
        if self.target_auc is not None and not 0.5 < self.target_auc <= 1.0:
            raise ConfigError(f"--target-auc: must be in (0.5, 1], got {self.target_auc}")
        if self.time_min is not None and not self.time_min > 0:
            raise ConfigError(f"--time: must be > 0 minutes, got {self.time_min}")
        if self.max_failures < 0:
            raise ConfigError(f"--max-failures: must be >= 0, got {self.max_failures}")
        if not self.report_every >= 0:
            raise ConfigError(f"--report-every: must be >= 0 seconds, got {self.report_every}")
        if self.executor == "local" and self.nodes > 1:
            raise ConfigError(f"--nodes {self.nodes}: the local executor runs on one node; use "
                              f"--tasks-per-node for several ranks, or run under Slurm (--partition)")
        check_sweep_out(Path(self.out))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepConfig":
        """A stored config (older versions' too: unknown keys dropped, legacy entries mapped)."""
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        cfg.entry = LEGACY_ENTRIES.get(cfg.entry, cfg.entry)
        return cfg

    def check_resume(self, stored: "SweepConfig") -> None:
        """A rerun on an existing SWEEP_DIR must keep what the stored trials' losses depend on."""
        diff = [k for k in FIXED_ON_RESUME if getattr(self, k) != getattr(stored, k)]
        if diff:
            shipped = _shipped_space(stored.space) if "space" in diff else None
            parts = []
            for k in diff:
                was, now = repr(getattr(stored, k)), repr(getattr(self, k))
                if k == "space" and shipped:  # name the files, not two dicts of a dozen parameters
                    was, now = shipped, str(self.space_file)
                parts.append(f"{k}: stored {was}, now {now}")
            detail = "; ".join(parts)
            hint = f" (add --space {shipped})" if shipped else ""
            raise ConfigError(f"{self.out} holds a sweep with other settings ({detail}); rerun with the same "
                              f"options to resume it{hint}, or pick a new --out")


def _shipped_space(space: dict[str, Any] | None) -> str | None:
    """The space file shipped with hpcdlrm (the default, or an earlier default kept beside it) that reads as
    ``space``: a sweep started before the default space changed resumes with ``--space`` that file."""
    from .space import DEFAULT_SPACE, load_space  # noqa: PLC0415

    return next((str(f) for f in sorted(DEFAULT_SPACE.parent.glob("space*.toml"))
                 if space is not None and load_space(f).to_dict() == space), None)


def check_sweep_out(out: Path) -> None:
    """Refuse a --out that cannot be a sweep directory (a file, not writable, a dataset)."""
    check_out_dir(out, "--out")
    if (out / "manifest.json").exists():
        raise ConfigError(f"--out {out}: is a dataset directory (it holds manifest.json); give the sweep "
                          f"its own directory")
