"""Who am I among the ranks? The one module that reads launcher variables (Slurm, MPI, torchrun).

Everything else receives a :class:`RankInfo` as an argument, so data and training code never read
``SLURM_*``/``PMI_*`` themselves and can be tested with any rank/world size in one process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from dataclasses import dataclass, field
from typing import Mapping

from .errors import DistributedError


@dataclass(frozen=True)
class RankInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launcher: str = "single"  # single | slurm | mpi | torchrun | submitit (submitit's local executor)
    hostname: str = field(default_factory=socket.gethostname)  # detect() fills the Slurm node name
    master_addr: str | None = None  # None: not known from the environment (mpi: agree via mpi4py)
    master_port: int | None = None
    job_id: str | None = None
    nodes: tuple[str, ...] = ()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def expand_hostlist(spec: str) -> list[str]:
    """Expand a Slurm node list such as ``n[1-3,7],gpu01`` into host names (``scontrol show hostnames``)."""
    hosts: list[str] = []
    for m in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?(?:,|$)", spec):
        prefix, ranges = m.group(1), m.group(2)
        if ranges is None:
            hosts.append(prefix)
            continue
        for part in ranges.split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                width = len(lo)
                hosts.extend(f"{prefix}{i:0{width}d}" for i in range(int(lo), int(hi) + 1))
            else:
                hosts.append(prefix + part)
    return hosts


def _int(env: Mapping[str, str], *names: str) -> int | None:
    for n in names:
        v = env.get(n)
        if v not in (None, ""):
            try:
                return int(v)
            except ValueError as e:
                raise DistributedError(f"environment variable {n}={v!r} is not an integer") from e
    return None


def _slurm_port(job_id: str | None, step_id: str | None) -> int:
    # Deterministic per job step, so every rank derives the same port without talking (as submitit does).
    seed = int(job_id or 0) * 7 + int(step_id if step_id and step_id.isdigit() else 0)
    return 20000 + seed % 40000


def node_name(env: Mapping[str, str] | None = None) -> str:
    """This process's node as the scheduler names it: Slurm's ``SLURMD_NODENAME`` inside a Slurm job or
    step, else the host name. The two differ wherever a site aliases nodes (NodeHostname, front ends), and
    users read node names in ``squeue``/``sacct``, so every record of where a rank ran uses this."""
    env = os.environ if env is None else env
    return env.get("SLURMD_NODENAME") or socket.gethostname()


def detect(env: Mapping[str, str] | None = None) -> RankInfo:
    """Read the rank layout from the launcher's environment.

    Order: torchrun-style ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``; a Slurm job *step* (``srun``; a
    plain batch script has ``SLURM_NTASKS`` but is only one process, so ``SLURM_STEP_ID`` is required);
    submitit's local executor (``SUBMITIT_LOCAL_GLOBALID``: its tasks on this host); an MPI launcher
    (``PMI_RANK``/``OMPI_COMM_WORLD_RANK``); else one plain process.
    """
    env = os.environ if env is None else env
    host = node_name(env)
    rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if rank is not None and world is not None and env.get("MASTER_ADDR"):
        return RankInfo(
            rank=rank, world_size=world,
            local_rank=_int(env, "LOCAL_RANK") or 0,
            local_world_size=_int(env, "LOCAL_WORLD_SIZE") or 1,
            launcher="torchrun", hostname=host,
            master_addr=env["MASTER_ADDR"], master_port=_int(env, "MASTER_PORT") or 29500,
            job_id=env.get("SLURM_JOB_ID"),
        )
    if env.get("SLURM_STEP_ID") is not None and env.get("SLURM_PROCID") is not None:
        nodes = tuple(expand_hostlist(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", host)))
        world = _int(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS") or 1
        tasks_per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or "1"
        local_world = int(re.match(r"\d+", tasks_per_node).group(0)) if re.match(r"\d+", tasks_per_node) else 1
        return RankInfo(
            rank=_int(env, "SLURM_PROCID") or 0, world_size=world,
            local_rank=_int(env, "SLURM_LOCALID") or 0, local_world_size=local_world,
            launcher="slurm", hostname=host,
            master_addr=env.get("MASTER_ADDR") or (nodes[0] if nodes else host),
            master_port=_int(env, "MASTER_PORT") or _slurm_port(env.get("SLURM_JOB_ID"), env.get("SLURM_STEP_ID")),
            job_id=env.get("SLURM_JOB_ID"), nodes=nodes,
        )
    if env.get("SUBMITIT_LOCAL_GLOBALID") is not None and env.get("SUBMITIT_LOCAL_NTASKS") is not None:
        world = _int(env, "SUBMITIT_LOCAL_NTASKS") or 1
        job = env.get("SUBMITIT_LOCAL_JOB_ID")  # the controller's pid: one port per job, as for Slurm
        return RankInfo(
            rank=_int(env, "SUBMITIT_LOCAL_GLOBALID") or 0, world_size=world,
            local_rank=_int(env, "SUBMITIT_LOCAL_LOCALID") or 0, local_world_size=world,
            launcher="submitit", hostname=host, master_addr="127.0.0.1",
            master_port=_slurm_port(job if job and job.isdigit() else None, None),
            job_id=env.get("SLURM_JOB_ID"),
        )
    rank = _int(env, "PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
    world = _int(env, "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
    if rank is not None and world is not None:
        return RankInfo(
            rank=rank, world_size=world,
            local_rank=_int(env, "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK") or 0,
            local_world_size=_int(env, "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE") or 1,
            launcher="mpi", hostname=host,
            master_addr=env.get("MASTER_ADDR"), master_port=_int(env, "MASTER_PORT"),
            job_id=env.get("SLURM_JOB_ID"),
        )
    return RankInfo(hostname=host, job_id=env.get("SLURM_JOB_ID"))


def preempt_signal(env: Mapping[str, str] | None = None) -> int | None:
    """The signal submitit binds to checkpoint-and-requeue in this job (``SUBMITIT_PREEMPT_SIGNAL``,
    default USR2); None when the name is not a signal here."""
    env = os.environ if env is None else env
    return getattr(signal, "SIG" + env.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


def in_slurm_job(env: Mapping[str, str] | None = None) -> bool:
    """Is this process inside a Slurm allocation (a batch script or a step)?"""
    env = os.environ if env is None else env
    return bool(env.get("SLURM_JOB_ID"))


def mpi_start_defaults(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment defaults MPI must see at MPI_Init (the caller's own settings win).

    Under ``srun --mpi=pmi2``, Slurm's PMI agent reads each request with a single ``read()`` ("TODO: read
    until newline" in its pmi1.c): a long request that arrives in two pieces is parsed as two garbled
    ones ("mpi/pmi2: value not properly terminated", "invalid client request") and the rank waits
    forever for the answer. MPICH over UCX publishes a ~9 KB address in nine ~1 KB PMI puts; over OFI it
    is one 67-byte put. So MPICH-family MPIs start on OFI there (Intel MPI and Cray MPICH do anyway;
    Open MPI ignores the variable).
    """
    env = os.environ if env is None else env
    if env.get("SLURM_MPI_TYPE") == "pmi2" and "MPIR_CVAR_CH4_NETMOD" not in env:
        return {"MPIR_CVAR_CH4_NETMOD": "ofi"}
    return {}


def mpi_comm():  # type: ignore[no-untyped-def]
    """The MPI world communicator, or None when mpi4py or an MPI library is missing.

    Imported lazily: a single-process run must not need MPI at all.
    """
    os.environ.update(mpi_start_defaults())  # read by MPI_Init, which importing mpi4py.MPI runs
    try:
        from mpi4py import MPI  # noqa: PLC0415
    except (ImportError, RuntimeError):
        return None
    return MPI.COMM_WORLD
