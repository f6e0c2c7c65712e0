"""hpcdlrm.env.detect over every launcher branch: ranks, and which node a rank says it ran on."""

from __future__ import annotations

import socket

import pytest

from hpcdlrm import env
from hpcdlrm.env import detect, expand_hostlist, node_name

HOST = socket.gethostname()
NODE = "n2" if HOST != "n2" else "n7"  # a Slurm node name that differs from this host's name

TORCHRUN = {"RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "n1", "MASTER_PORT": "29511",
            "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
SLURM_STEP = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4",
              "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURM_LOCALID": "1",
              "SLURM_JOB_ID": "42"}
MPI = {"PMI_RANK": "2", "PMI_SIZE": "4"}
OMPI = {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "0"}
SUBMITIT_LOCAL = {"SUBMITIT_LOCAL_GLOBALID": "1", "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_NTASKS": "2",
                  "SUBMITIT_LOCAL_JOB_ID": "4242"}
BRANCHES = {"torchrun": TORCHRUN, "srun-step": SLURM_STEP, "mpi": MPI, "ompi": OMPI, "single": {},
            "submitit-local": SUBMITIT_LOCAL}
LAUNCHER = {"torchrun": "torchrun", "srun-step": "slurm", "mpi": "mpi", "ompi": "mpi", "single": "single",
            "submitit-local": "submitit"}


@pytest.mark.parametrize("branch", sorted(BRANCHES))
def test_every_branch_records_the_slurm_node_name_inside_slurm(branch: str) -> None:
    # submitit's multi-task trials export torchrun variables inside a Slurm job: the node name must win there too
    info = detect({**BRANCHES[branch], "SLURMD_NODENAME": NODE, "SLURM_JOB_ID": "42"})
    assert info.launcher == LAUNCHER[branch]
    assert info.hostname == NODE != HOST
    assert info.job_id == "42"


@pytest.mark.parametrize("branch", sorted(BRANCHES))
def test_every_branch_records_the_host_name_outside_slurm(branch: str) -> None:
    env = {k: v for k, v in BRANCHES[branch].items() if not k.startswith("SLURM_JOB")}
    info = detect(env)
    assert info.launcher == LAUNCHER[branch]
    assert info.hostname == HOST


def test_an_empty_node_name_falls_back_to_the_host_name() -> None:
    assert node_name({"SLURMD_NODENAME": ""}) == HOST
    assert node_name({"SLURMD_NODENAME": "c-17"}) == "c-17"


def test_ranks_of_each_branch() -> None:
    t = detect(TORCHRUN)
    assert (t.rank, t.world_size, t.local_rank, t.local_world_size, t.master_addr, t.master_port) == \
        (1, 4, 1, 2, "n1", 29511)
    s = detect(SLURM_STEP)
    assert (s.rank, s.world_size, s.local_rank, s.local_world_size, s.master_addr, s.nodes) == \
        (3, 4, 1, 2, "n1", ("n1", "n2"))
    m = detect(MPI)
    assert (m.rank, m.world_size, m.master_addr) == (2, 4, None)
    # submitit's local executor: its tasks on this host agree on one address and port per job
    loc = detect(SUBMITIT_LOCAL)
    assert (loc.rank, loc.world_size, loc.local_rank, loc.master_addr) == (1, 2, 1, "127.0.0.1")
    assert loc.master_port == detect({**SUBMITIT_LOCAL, "SUBMITIT_LOCAL_GLOBALID": "0"}).master_port
    assert loc.master_port != detect({**SUBMITIT_LOCAL, "SUBMITIT_LOCAL_JOB_ID": "4243"}).master_port
    # a plain batch script (no step id) is one process, whatever SLURM_NTASKS says
    b = detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "9", "SLURMD_NODENAME": NODE})
    assert (b.launcher, b.world_size, b.hostname) == ("single", 1, NODE)


def test_slurm_job_and_preemption_signal() -> None:
    import signal

    from hpcdlrm.env import in_slurm_job, preempt_signal

    assert in_slurm_job({"SLURM_JOB_ID": "5"}) and not in_slurm_job({})
    assert preempt_signal({}) == signal.SIGUSR2
    assert preempt_signal({"SUBMITIT_PREEMPT_SIGNAL": "TERM"}) == signal.SIGTERM
    assert preempt_signal({"SUBMITIT_PREEMPT_SIGNAL": "NOPE"}) is None


def test_expand_hostlist() -> None:
    assert expand_hostlist("n[1-3,7],gpu01") == ["n1", "n2", "n3", "n7", "gpu01"]
    assert expand_hostlist("c[08-10]") == ["c08", "c09", "c10"]


def test_only_env_reads_the_launchers_variables() -> None:
    """env.py is the one module that reads SLURM_*/RANK/...: no other module names such a variable."""
    import ast
    import re
    from pathlib import Path

    launcher = re.compile(r"^(SLURMD?_[A-Z_]+|RANK|WORLD_SIZE|LOCAL_(WORLD_SIZE|RANK)|MASTER_(ADDR|PORT)|"
                          r"PMIX?_[A-Z_]+|OMPI_[A-Z_]+|SUBMITIT_[A-Z_]+)$")
    pkg = Path(__file__).resolve().parents[1] / "hpcdlrm"
    found = [f"{p.relative_to(pkg)}:{n.lineno} {n.value}" for p in pkg.rglob("*.py") if p.name != "env.py"
             for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Constant)
             and isinstance(n.value, str) and launcher.match(n.value)]
    assert not found, found


def test_mpich_starts_on_ofi_under_slurm_pmi2_unless_told_otherwise() -> None:
    # Slurm's pmi2 agent garbles long PMI requests that arrive in pieces; MPICH over UCX sends nine
    # ~1 KB ones at start-up, over OFI one short one (see env.mpi_start_defaults).
    assert env.mpi_start_defaults({"SLURM_MPI_TYPE": "pmi2"}) == {"MPIR_CVAR_CH4_NETMOD": "ofi"}
    assert env.mpi_start_defaults({"SLURM_MPI_TYPE": "pmi2", "MPIR_CVAR_CH4_NETMOD": "ucx"}) == {}
    assert env.mpi_start_defaults({"SLURM_MPI_TYPE": "pmix"}) == {}
    assert env.mpi_start_defaults({}) == {}  # mpiexec (Hydra) reads whole requests
