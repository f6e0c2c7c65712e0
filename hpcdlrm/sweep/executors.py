"""Where trials run: thin adapters over submitit's Slurm and local executors.

The driver sees only :class:`Backend`: submit a callable into a trial folder, re-attach to a job by
id after a restart, and ask the states of all its jobs in ONE query per poll (``squeue`` once for
every Slurm job; ``sacct`` is not needed: it is often absent, and without accounting submitit's own
``job.result()`` waits forever on a job that died without a result). A job counts as *ended* when
the scheduler no longer runs it; its result pickles then decide between collected and lost. Where
accounting exists, jobs that just ended get one batched ``sacct`` for the record: who cancelled
them (``CANCELLED by uid 0``), or how long a ``TIMEOUT`` ran against its limit.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pwd
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import submitit
from submitit.core.utils import JobPaths

from ..env import expand_hostlist
from ..errors import ConfigError
from . import slurm_states



class JobLike(Protocol):
    job_id: str

    def done(self, force_check: bool = False) -> bool: ...

    def results(self) -> list[Any]: ...

    def cancel(self, check: bool = True) -> None: ...


class ExecutorLike(Protocol):
    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JobLike: ...


@dataclass(frozen=True)
class Resources:
    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int = 1
    time_min: float = 10.0
    partition: str | None = None
    mem_gb: float | None = None
    signal_delay_s: int = 90  # submitit's USR2 (checkpoint + requeue) this long before the limit
    env: tuple[tuple[str, str], ...] = ()  # variables for the trial's processes (e.g. OMP_NUM_THREADS)

    @property
    def setup(self) -> list[str]:
        """The same variables as sbatch-script lines."""
        return [f"export {k}={shlex.quote(v)}" for k, v in self.env]

    @property
    def ranks(self) -> int:
        return self.nodes * self.tasks_per_node


@dataclass
class JobState:
    state: str  # "pending" | "running" | "ended" | "unknown"
    hosts: list[str] = field(default_factory=list)
    detail: str = ""  # the scheduler's state name / reason, for the record
    slurm_state: str = ""  # Slurm's state name (CANCELLED, TIMEOUT, ...); "" when unknown or not Slurm


class Backend(Protocol):
    kind: str

    def submit(self, fn: Callable[[], Any], folder: Path, res: Resources) -> JobLike: ...

    def reattach(self, job_id: str, folder: Path, ntasks: int) -> JobLike: ...

    def states(self, jobs: dict[str, JobLike]) -> dict[str, JobState]: ...


def result_pickles(folder: Path, job_id: str, ntasks: int) -> list[Path]:
    return [JobPaths(folder, job_id, task_id=i).result_pickle for i in range(ntasks)]


def log_paths(folder: Path, job_id: str) -> tuple[Path, Path]:
    """Rank 0's stdout and stderr (submitit writes one pair per task)."""
    p = JobPaths(folder, job_id, task_id=0)
    return p.stdout, p.stderr


@contextlib.contextmanager
def _environ(pairs: tuple[tuple[str, str], ...]) -> Iterator[None]:
    """Set environment variables for the duration (a child started inside inherits them)."""
    old = {k: os.environ.get(k) for k, _ in pairs}
    os.environ.update(dict(pairs))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point fd 2 at ``path`` while a child is started: submitit's local controller inherits our stderr,
    and its noise (a KeyboardInterrupt traceback whenever a trial is cancelled) belongs with the trial."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


# --------------------------------------------------------------------------------------- local
def _pid_alive(pid: int, marker: str) -> bool:
    """Is ``pid`` a live (non-zombie) process whose command line contains ``marker``?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker.encode() in f.read()
    except (OSError, IndexError):
        return False


class ReattachedLocalJob:
    """A local job whose controller outlived the driver that started it (we only have its pid).

    submitit keeps a LocalJob's process handle in memory only; after a driver restart the job is
    found again by pid, checked to still be *that* controller (its command line names the folder),
    and its results are read from the pickles like any other job.
    """

    def __init__(self, folder: Path, job_id: str, ntasks: int) -> None:
        self.job_id, self.folder, self.ntasks = job_id, folder, ntasks
        self._job: Any = submitit.local.local.LocalJob(folder, job_id, tasks=list(range(ntasks)))

    def alive(self) -> bool:
        return self.job_id.isdigit() and _pid_alive(int(self.job_id), str(self.folder))

    def done(self, force_check: bool = False) -> bool:
        return not self.alive()

    def results(self) -> list[Any]:
        return self._job.results()

    def cancel(self, check: bool = True) -> None:
        if self.alive():
            os.kill(int(self.job_id), signal.SIGINT)  # what LocalJob.cancel sends to its controller


class LocalBackend:
    """Trials as local processes via submitit's LocalExecutor (one node; ``tasks_per_node`` ranks)."""

    kind = "local"

    def submit(self, fn: Callable[[], Any], folder: Path, res: Resources) -> JobLike:
        if res.nodes > 1:
            raise ConfigError(f"--nodes {res.nodes}: the local executor runs on one node; use "
                              f"--tasks-per-node for several ranks, or --executor slurm")
        ex = submitit.LocalExecutor(folder=folder)
        # No `setup` lines: they make submitit start the controller through a shell, whose pid (the
        # job id) then does not pass a cancel on to the controller. Thread caps go in the environment.
        ex.update_parameters(tasks_per_node=res.tasks_per_node, timeout_min=res.time_min,
                             signal_delay_s=res.signal_delay_s)
        with submitit.helpers.clean_env(), _environ(res.env), _stderr_to(folder / "controller.err"):
            return ex.submit(fn)

    def reattach(self, job_id: str, folder: Path, ntasks: int) -> JobLike:
        return ReattachedLocalJob(folder, job_id, ntasks)

    def states(self, jobs: dict[str, JobLike]) -> dict[str, JobState]:
        out = {}
        for jid, job in jobs.items():
            running = job.alive() if isinstance(job, ReattachedLocalJob) else not job.done()
            out[jid] = JobState("running" if running else "ended", [os.uname().nodename])
        return out


# --------------------------------------------------------------------------------------- slurm
def slurm_available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


class SlurmBackend:
    """Trials as Slurm jobs via submitit's SlurmExecutor: ``nodes x tasks_per_node`` ranks under srun."""

    kind = "slurm"

    def __init__(self, query_timeout_s: float = 60.0) -> None:
        if not slurm_available():
            raise ConfigError("Slurm was asked for (--partition/--executor slurm) but `sbatch`/`squeue` are "
                              "not on PATH; to run trials on this machine use --executor local")
        self.query_timeout_s = query_timeout_s

    def check(self, partitions: Sequence[str] = ()) -> None:
        """Refuse to start a sweep that could submit nothing: one ``scontrol ping`` (the controller answers),
        then one ``sinfo -p NAME`` per partition (it exists)."""
        try:
            p = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=self.query_timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ConfigError(f"Slurm controller not reachable (`scontrol ping`: {e}); to run trials on this "
                              f"machine use --executor local") from e
        words = " ".join((p.stdout + " " + p.stderr).split())
        if p.returncode != 0 or " UP" not in f" {words}":
            raise ConfigError(f"Slurm controller not answering (`scontrol ping`: {words or f'exit {p.returncode}'})"
                              f"; to run trials on this machine use --executor local")
        for name in (p for p in partitions if p):
            self._check_partition(name)

    def _check_partition(self, name: str) -> None:
        try:
            p = subprocess.run(["sinfo", "-h", "-p", name, "-o", "%P"], capture_output=True, text=True,
                               timeout=self.query_timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ConfigError(f"--partition {name}: `sinfo` failed ({e})") from e
        if p.returncode != 0 or not p.stdout.strip():
            why = " ".join(p.stderr.split()) or "sinfo lists no such partition"
            raise ConfigError(f"--partition {name}: not a partition of this cluster ({why}; `sinfo -s` lists them)")

    def submit(self, fn: Callable[[], Any], folder: Path, res: Resources) -> JobLike:
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
        params: dict[str, Any] = dict(
            nodes=res.nodes, ntasks_per_node=res.tasks_per_node, cpus_per_task=res.cpus_per_task,
            time=max(1, int(math.ceil(res.time_min))), job_name=f"hpcdlrm-{folder.parent.name}",
            signal_delay_s=res.signal_delay_s,
            # one rank failing takes the step down instead of leaving the others in a collective
            srun_args=["--kill-on-bad-exit=1"], setup=res.setup,
        )
        if res.partition:
            params["partition"] = res.partition
        if res.mem_gb:
            params["mem"] = f"{int(res.mem_gb)}GB"
        ex.update_parameters(**params)
        # A driver inside an sbatch job must not hand its SLURM_* variables to the trial jobs. sbatch's
        # refusal is printed by submitit to stderr and raised as its message: the driver reports the latter.
        with submitit.helpers.clean_env(), contextlib.redirect_stderr(io.StringIO()):
            return ex.submit(fn)

    def reattach(self, job_id: str, folder: Path, ntasks: int) -> JobLike:
        return submitit.SlurmJob(folder, job_id, tasks=list(range(ntasks)))

    def states(self, jobs: dict[str, JobLike]) -> dict[str, JobState]:
        if not jobs:
            return {}
        cmd = ["squeue", "-h", "-t", "all", "-o", "%i|%T|%N|%r", "-j", ",".join(jobs)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.query_timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            return {jid: JobState("unknown", detail=f"squeue: {e}") for jid in jobs}
        if p.returncode != 0 and "Invalid job id" not in p.stderr:
            return {jid: JobState("unknown", detail=f"squeue: {p.stderr.strip()}") for jid in jobs}
        seen = parse_squeue(p.stdout)
        out = {jid: seen.get(jid, JobState("ended", detail="no longer known to squeue")) for jid in jobs}
        ended = [jid for jid, st in out.items() if st.state == "ended"]
        for jid, acct in self._accounting(ended).items():
            out[jid] = _merge(out[jid], acct)
        return out

    def _accounting(self, ids: list[str]) -> dict[str, JobState]:
        """Final states of ended jobs from ``sacct`` (one query): who cancelled, run time against the
        limit. Only ended jobs are asked about, so a sweep costs one sacct per job, not per poll.
        Without accounting (no sacct, or it errs) the squeue states stand: {}."""
        if not ids or shutil.which("sacct") is None:
            return {}
        cmd = ["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", "JobIDRaw,State,ExitCode,Elapsed,Timelimit"]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.query_timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        return parse_sacct(p.stdout) if p.returncode == 0 else {}


def parse_squeue(text: str) -> dict[str, JobState]:
    """``%i|%T|%N|%r`` lines -> job id -> state (array/het suffixes are kept as squeue prints them)."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3:
            continue
        jid, st, nodes = parts[0], parts[1].upper(), parts[2]
        hosts = expand_hostlist(nodes) if nodes and nodes != "(null)" else []
        if st in slurm_states.ENDED:
            state = "ended"
        elif st in slurm_states.WAITING:
            state = "pending"
        else:  # RUNNING, CONFIGURING, COMPLETING, ...
            state = "running"
        out[jid] = JobState(state, hosts, st + (f" ({parts[3]})" if len(parts) > 3 and parts[3] != "None" else ""),
                            slurm_state=st)
    return out


def _uid_name(uid: str) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(int(uid)).pw_name})"
    except (KeyError, ValueError):
        return f"uid {uid}"


def parse_sacct(text: str) -> dict[str, JobState]:
    """``JobIDRaw|State|ExitCode|Elapsed|Timelimit`` lines -> job id -> state with a readable detail:
    ``CANCELLED by uid 0 (root)``, ``TIMEOUT after 00:01:28 (time limit 00:01:00)``, ``FAILED (exit code 1:0)``."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 5 or not parts[1]:
            continue
        jid, state, code, elapsed, limit = parts[:5]
        name, _, by = state.partition(" by ")
        if by:
            detail = f"{name} by {_uid_name(by.strip())}"
        elif name == "TIMEOUT":
            detail = f"TIMEOUT after {elapsed} (time limit {limit})"
        else:
            detail = name if code in ("", "0:0") else f"{name} (exit code {code})"
        out[jid] = JobState("ended" if name in slurm_states.ENDED else "running", detail=detail, slurm_state=name)
    return out


def _merge(seen: JobState, acct: JobState) -> JobState:
    """squeue's view of an ended job, with sacct's detail when both agree it ended (sacct may lag)."""
    if acct.state != "ended" or (seen.slurm_state and seen.slurm_state != acct.slurm_state):
        return seen
    return JobState("ended", seen.hosts, acct.detail, acct.slurm_state)


def make_backend(kind: str) -> Backend:
    if kind == "local":
        return LocalBackend()
    if kind == "slurm":
        return SlurmBackend()
    raise ConfigError(f"--executor: {kind!r} is not one of ['auto', 'slurm', 'local']")
