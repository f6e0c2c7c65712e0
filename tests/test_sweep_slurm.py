"""Trials as real multi-node Slurm jobs (tests/slurm/cluster.sh up: nodes n1, n2, partition xeon)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcdlrm.sweep.__main__ import SURROGATE_ENTRY
from hpcdlrm.sweep.config import SweepConfig
from hpcdlrm.sweep.driver import Driver
from hpcdlrm.sweep.executors import SlurmBackend
from hpcdlrm.sweep.optim import Optimizer
from hpcdlrm.sweep.records import SweepInfo
from hpcdlrm.sweep.space import load_space
from hpcdlrm.sweep.store import Store, load_sweep

pytestmark = pytest.mark.slurm
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_two_node_trials_through_submitit(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "hpcdlrm.sweep", "--out", str(out), "--partition", "xeon", "--nodes", "2",
           "--tasks-per-node", "1", "--budget", "3", "--parallel", "2", "--time", "1", "--entry", SURROGATE_ENTRY,
           "--poll", "0.5", "--no-report", "--no-target-stopping", "--", "--speed", "10"]
    # --no-target-stopping: every trial's job runs its course (a trial the driver stops is cancelled, so it has
    # no result to check here); the rules themselves are tested without Slurm.
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert p.returncode == 0, p.stderr[-3000:]
    data = load_sweep(out)
    assert len(data.trials) == 3
    for t in data.trials:
        assert t.executor == "slurm" and t.slurm_job_id and t.slurm_job_id == t.job_id
        assert t.status in ("timeout", "reached_target", "capped", "completed"), (t.status, t.reason)
        assert sorted(t.hosts) == ["n1", "n2"] and t.nodes == 2 and t.ranks == 2
        assert t.result is not None and t.result["env"]["ranks"] == 2  # both tasks ran, rank 0 wrote
        assert t.result["env"]["slurm_job_id"] == t.slurm_job_id
        folder = Path(t.run_dir).parent / "submitit"
        assert len(list(folder.glob(f"{t.job_id}_*_result.pkl"))) == 2  # one result per task
        script = (folder / f"{t.job_id}_submission.sh").read_text()
        assert "#SBATCH --nodes=2" in script and "#SBATCH --partition=xeon" in script
        assert "--kill-on-bad-exit=1" in script


def one_trial_driver(tmp_path: Path, store: Store) -> Driver:
    space = load_space()
    cfg = SweepConfig(out=str(tmp_path), space=space.to_dict(), executor="slurm", partitions=["xeon"],
                      parallel=[1], budget=1, time_min=1.0, target_auc=0.79, entry=SURROGATE_ENTRY,
                      train_args=["--speed", "2"], poll_s=0.3, scheduler_poll_s=1.0, lost_grace_s=3.0)
    store.init_sweep(SweepInfo("k", [], cfg.space, cfg.optimizer, cfg.objective, 0.79, 0.0), cfg.to_dict())
    d = Driver(cfg, space, store, {"xeon": SlurmBackend()}, Optimizer(space, "RandomSearch", budget=1,
                                                                       num_workers=1, seed=0))
    d.resume()
    d.fill()
    return d


def poll_until(d: Driver, done: object, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:  # type: ignore[operator]
        d.poll()
        time.sleep(0.3)
    assert done(), "timed out"  # type: ignore[operator]


def task_pids(folder: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"submitit.core._submit" in cmd and str(folder).encode() in cmd:
            pids.append(int(proc.name))
    return pids


def test_a_job_whose_task_dies_without_result_is_noticed(tmp_path: Path) -> None:
    """No sacct needed: the job leaves squeue without result files; after a grace it is recorded failed."""
    import signal

    with Store(tmp_path) as store:
        d = one_trial_driver(tmp_path, store)
        job_id = store.trial(1).job_id
        poll_until(d, lambda: bool(d.store.metrics(1)))
        pids = task_pids(Path(store.trial(1).run_dir).parent / "submitit")
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)  # like the OOM killer: no result.json, no result pickle
        poll_until(d, lambda: not d.live)
        t = store.trial(1)
    # Slurm records the killed step as FAILED: the job's own error (outcome row 11), with its log's tail
    assert t.status == "failed" and job_id in t.reason and "FAILED" in t.reason, t.reason


def test_an_interrupted_job_is_resubmitted_and_resumes(tmp_path: Path) -> None:
    """A preemption notice or node drain (here: SIGTERM to the job's steps, the job not cancelled) stops
    the run with ``interrupted``; the driver runs the same trial again in a new job and it continues
    where its metrics ended. (A plain scancel is the user's decision: never requeued.)"""
    with Store(tmp_path) as store:
        d = one_trial_driver(tmp_path, store)
        first = store.trial(1).job_id
        poll_until(d, lambda: len(d.store.metrics(1, "auc")) >= 2)
        subprocess.run(["scancel", "--signal=TERM", first], check=True, timeout=30)
        poll_until(d, lambda: not d.live)
        t = store.trial(1)
        assert t.job_id != first and store.requeues(1) == 1
    assert t.status in ("timeout", "reached_target", "completed"), (t.status, t.reason)
    walls = [m.wall_s for m in load_sweep(tmp_path).metrics if m.trial_id == 1 and m.name == "auc"]
    assert walls == sorted(walls) and len(walls) == len(set(walls))  # one continuous curve
