"""One trial as the driver submits it: a TrainConfig pickled to submitit, ``hpcdlrm.train.run(cfg)`` on every
task, a RunResult back. Two real local tasks find each other through ``hpcdlrm.env`` alone (the trial
exports no torchrun variables)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hpcdlrm.data.synth import ClickModelConfig, generate
from hpcdlrm.sweep.executors import LocalBackend, Resources
from hpcdlrm.sweep.trial import TaskEnd, TrialRun, read_result
from hpcdlrm.train import RunResult, Status, TrainConfig

pytestmark = pytest.mark.slow


def test_two_local_tasks_train_one_run_from_the_config(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(data, 4096, eval_rows=1024, seed=1, model=ClickModelConfig(table_sizes=(5, 7, 11) + (3,) * 23))
    run_dir = tmp_path / "trial" / "run"
    cfg = TrainConfig.from_dict({"data": str(data), "out": str(run_dir), "arch_mlp_bot": "13-16-8",
                                 "arch_mlp_top": "16-1", "emb_dim": 8, "batch_size": 256, "eval_batch_size": 512,
                                 "epochs": 1.0, "threads": 1, "sharding": "column"})
    job = LocalBackend().submit(TrialRun(cfg), tmp_path / "trial" / "submitit", Resources(tasks_per_node=2, time_min=3))
    deadline = time.time() + 240
    while not job.done() and time.time() < deadline:
        time.sleep(0.5)
    ends = job.results()
    assert sorted(e.rank for e in ends) == [0, 1] and all(isinstance(e, TaskEnd) for e in ends)
    assert all(e.result.status is Status.COMPLETED for e in ends), [e.result for e in ends]
    stored = read_result(run_dir)
    assert isinstance(stored, RunResult) and stored.status is Status.COMPLETED
    assert stored.env["ranks"] == 2 and stored.env["launcher"] == "submitit" and stored.plan["kind"] == "column"
    assert stored.config == cfg.to_dict()


def test_a_user_error_in_the_trial_is_its_one_line_reason(tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict({"data": str(tmp_path / "nope"), "out": str(tmp_path / "run")})
    end = TrialRun(cfg)()  # in this process: no launcher, one rank
    assert end.result.status is Status.FAILED and end.rank == 0
    assert end.result.error is not None and "\n" not in end.result.error and "nope" in end.result.error
    assert not end.result.error.startswith(("DataError", "ConfigError"))  # as the CLI prints it
    assert read_result(tmp_path / "run") is None  # a refusal writes nothing: the driver keeps what the task returned


def test_the_surrogate_takes_the_train_config_and_returns_its_result(tmp_path: Path) -> None:
    from hpcdlrm.sweep.surrogate import run as surrogate_run

    cfg = TrainConfig.from_dict({"data": "(none)", "out": str(tmp_path / "run"), "lr": 0.03, "sparse_lr": 18.0,
                                 "batch_size": 4096, "target_auc": 0.79, "max_time": 40.0, "warmup_steps": 20,
                                 "decay_start": 200, "decay_steps": 200})
    r = surrogate_run(cfg, speed=1e6)
    assert isinstance(r, RunResult) and r.status in (Status.REACHED_TARGET, Status.TIMEOUT, Status.COMPLETED)
    assert read_result(tmp_path / "run") == r and r.config == cfg.to_dict()
    assert (r.time_to_target_s is not None) == (r.status is Status.REACHED_TARGET)
    assert surrogate_run(cfg, speed=1.0) == r  # finished: a rerun returns its result at once
    slow = TrainConfig.from_dict({**cfg.to_dict(), "out": str(tmp_path / "slow"), "max_time": 1.0})
    assert surrogate_run(slow, speed=1e6).status is Status.TIMEOUT  # it obeys --max-time...
    over = TrainConfig.from_dict({**slow.to_dict(), "out": str(tmp_path / "over"), "target_auc": 0.9999})
    assert surrogate_run(over, speed=1e6, ignore_max_time=True).wall_s > 1.0  # ...unless told not to (tests)
