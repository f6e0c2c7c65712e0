"""The simulated sweep behind ``python -m hpcdlrm.bench sweep``: the real optimizer, objective and capping
on surrogate curves (small budgets here; the benchmark's own figures come from the command)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpcdlrm.bench.sweep import main as bench_main
from hpcdlrm.sweep.policy import StopPolicy
from hpcdlrm.sweep.sim import UNIFORM, SimConfig, random_points, run_sim
from hpcdlrm.sweep.space import load_space
from hpcdlrm.sweep.surrogate import outcome, simulate
from hpcdlrm.train import TrainConfig


def Hyper(**fields: object) -> TrainConfig:  # noqa: N802 - the surrogate reads the trainer's own config
    return TrainConfig(**{"dense_optimizer": "sgd", **fields})  # type: ignore[arg-type]


def test_surrogate_curves_respond_to_the_parameters() -> None:
    good = simulate(Hyper(lr=0.15, batch_size=1024, decay_start=2000, decay_steps=3000, sparse_lr=0.3))
    low_lr = simulate(Hyper(lr=0.003, batch_size=1024, decay_start=2000, decay_steps=3000, sparse_lr=0.006))
    early_decay = simulate(Hyper(lr=0.15, batch_size=1024, decay_start=10, decay_steps=20, sparse_lr=0.3))
    assert good.auc.max() > low_lr.auc.max() + 0.05 and good.auc.max() > early_decay.auc.max() + 0.05
    assert np.all(np.diff(good.wall_s) > 0) and good.auc.max() < 0.81
    blown = simulate(Hyper(lr=30.0, batch_size=1024, warmup_steps=0, dense_optimizer="sgd"))
    assert blown.diverged_at_s is not None and outcome(blown, 0.79, 120)["status"] == "diverged"
    assert simulate(Hyper(batch_size=8192)).samples_per_s > simulate(Hyper(batch_size=1024)).samples_per_s
    res = outcome(good, 0.75, 120)
    assert res["status"] == "reached_target" and res["time_to_target_s"] <= 120


def test_space_points_map_to_the_surrogate_through_the_train_config() -> None:
    sp = load_space()
    pts = random_points(sp, 50, seed=0)
    for p in pts:
        sp.check_point(p)
        h = TrainConfig.from_dict({"data": "d", "out": "o", **sp.apply(p)})
        assert h.sparse_lr == pytest.approx(p["lr"] * p["emb_lr_scale"])
        assert h.decay_start >= h.warmup_steps


def test_capping_shortens_the_simulated_sweep() -> None:
    sp = load_space()
    base = dict(budget=16, workers=4, target=0.79, limit_s=120.0, goal_s=40.0, seed=3)
    cap = run_sim(sp, SimConfig(UNIFORM, policy=StopPolicy(capping=True), **base))
    nocap = run_sim(sp, SimConfig(UNIFORM, policy=StopPolicy(capping=False), **base))
    assert nocap.capped == 0 and cap.capped > 0
    assert cap.wallclock_s < nocap.wallclock_s
    assert cap.best_time_s == nocap.best_time_s  # same points (uniform draws), same winner


def test_simulated_sweep_with_the_real_optimizer() -> None:
    r = run_sim(load_space(), SimConfig("SmallPSO", budget=12, workers=3, target=0.79, limit_s=120.0,
                                        goal_s=1e9, seed=0))
    assert r.wallclock_s > 0 and (r.trials_to_goal is None or 1 <= r.trials_to_goal <= 12)


def test_bench_prints_the_documented_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--json", "--seeds", "2", "--budget", "8", "--workers", "2", "--yardstick", "300",
                       "--optimizer", "RandomSearch"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = {r["metric"] for r in rows}
    assert {"sweep_trials_to_target", "sweep_trials_to_target_random", "sweep_trials_ratio_vs_random",
            "sweep_wallclock_capped", "sweep_wallclock_uncapped", "sweep_wallclock_ratio_capping"} <= names
    assert all({"metric", "value", "unit"} <= set(r) for r in rows)
