"""The simulated sweep behind ``python -m hpcdlrm.bench sweep``: the real optimizer, objective and capping
on surrogate curves (small budgets here; the benchmark's own figures come from the command)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpcdlrm.bench.sweep import _runs, _within, have_optuna
from hpcdlrm.bench.sweep import main as bench_main
from hpcdlrm.sweep.objective import Curve
from hpcdlrm.sweep.policy import StopPolicy, curve_reason, early_stop_reason, target_reason
from hpcdlrm.sweep.sim import PRUNERS, TPE, UNIFORM, SimConfig, SimResult, random_points, run_sim
from hpcdlrm.sweep.space import load_space
from hpcdlrm.sweep.surrogate import outcome, simulate
from hpcdlrm.train import TrainConfig


def Hyper(**fields: object) -> TrainConfig:  # noqa: N802 - the surrogate reads the trainer's own config
    return TrainConfig(**{"dense_optimizer": "sgd", **fields})  # type: ignore[arg-type]

HAVE_OPTUNA = have_optuna()


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
    cap = run_sim(sp, SimConfig(UNIFORM, policy=StopPolicy(capping=True, curve=False, target_stop=False), **base))
    nocap = run_sim(sp, SimConfig(UNIFORM, policy=StopPolicy(capping=False, curve=False), **base))
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
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    names = {r["metric"] for r in rows}
    assert {"sweep_trials_to_target", "sweep_trials_to_target_random", "sweep_trials_ratio_vs_random",
            "sweep_wallclock_capped", "sweep_wallclock_uncapped", "sweep_wallclock_ratio_capping",
            "sweep_wallclock_to_target", "sweep_curve_false_stop_rate", "sweep_wallclock_ratio_stopping"} <= names
    assert all({"metric", "value", "unit"} <= set(r) for r in rows)
    tpe = {"sweep_trials_to_target_tpe", "sweep_trials_ratio_vs_tpe", "sweep_wallclock_to_target_tpe_pruned",
           "sweep_wallclock_ratio_vs_tpe_pruned"}
    if HAVE_OPTUNA:
        assert tpe <= names
        pruned = next(r for r in rows if r["metric"] == "sweep_wallclock_to_target_tpe_pruned")
        assert pruned["pruner"] in PRUNERS and {f"with_{p}" for p in PRUNERS} <= set(pruned)
    else:
        assert not tpe & names and "optuna is not installed" in out


def test_bench_grid_prints_each_setting_and_the_worst(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--json", "--grid", "--seeds", "3", "--targets", "0.785", "--workers-grid", "2,3",
                       "--budgets", "6,12", "--yardstick", "300", "--optimizer", "BudgetDE"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    settings = [r for r in rows if r["metric"] == "sweep_grid_setting"]
    assert [s["setting"] for s in settings] == [f"target=0.785 workers={w} budget={b}" for w in (2, 3) for b in (6, 12)]
    for s in settings:
        # random search does not know the budget: its median is read off one long run, not cut at budget + 1
        assert s["random"] >= 0.99 * s["opt"] / s["ratio_vs_random_within_budget"]  # >= the cut-off median
        assert not s["random_censored"] and s["found_random"] <= 3
        if s["opt"] > int(s["setting"].rsplit("=", 1)[1]):  # missed in most sweeps: its median is unknown
            assert s["value"] == float("inf")
        else:
            assert s["value"] == pytest.approx(s["opt"] / s["random"], abs=1e-3)
        assert {"ratio_stopping", "wallclock_stopping", "wallclock_no_stopping", "false_stops"} <= set(s)
    same_w = [s for s in settings if "workers=2 " in s["setting"]]
    assert same_w[0]["random"] == same_w[1]["random"]  # one baseline run serves every budget
    worst = next(r for r in rows if r["metric"] == "sweep_grid_worst_ratio_vs_random")
    assert worst["value"] == max(s["value"] for s in settings)
    assert any(r["metric"] == "sweep_grid_worst_wallclock_ratio_stopping" for r in rows)
    assert any(r["metric"] == "sweep_grid_worst_ratio_vs_tpe" for r in rows) == HAVE_OPTUNA


def test_grid_stopping_only_compares_the_rules_without_baselines(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--json", "--grid", "--stopping-only", "--seeds", "2", "--targets", "0.785", "--workers-grid",
                       "4", "--budgets", "8", "--yardstick", "300"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (s,) = [r for r in rows if r["metric"] == "sweep_grid_setting"]
    assert "random" not in s and "opt" not in s  # no baselines run
    assert s["target_rule_false_stops"] <= s["target_rule_stops"] <= s["stopped"] and s["false_stops"] <= s["stopped"]
    assert s["found_stopping"] <= 2 and s["found_no_stopping"] <= 2
    met = next(r for r in rows if r["metric"] == "sweep_grid_stopping_met")
    assert met["of"] == int(s["decided_wallclock"]) and met["stopped"] == s["stopped"]
    assert not any(r["metric"].startswith("sweep_grid_worst_ratio_vs") for r in rows)


def test_first_seed_moves_the_seeds_a_bench_runs() -> None:
    """--first-seed: rules are chosen on other seeds than the ones reported (seeds 20-39 vs 0-19)."""
    sp = load_space().uninformed()
    base = SimConfig(UNIFORM, budget=6, workers=2, target=0.79, limit_s=120.0, goal_s=1e9, seed=5, from_defaults=False)
    got = _runs(sp, base, 2)
    assert got == [run_sim(sp, SimConfig(**{**base.__dict__, "seed": s})) for s in (5, 6)]
    assert got != _runs(sp, SimConfig(**{**base.__dict__, "seed": 0}), 2)


def test_within_budget_reads_a_long_run_as_a_short_sweep_sees_it() -> None:
    runs = [SimResult(t, None, 0.0, None, 0) for t in (3, 9, None, 12)]
    assert _within(runs, 10) == [3, 9, 11, 11]


@pytest.mark.skipif(not HAVE_OPTUNA, reason="needs the bench extra (optuna)")
def test_tpe_runs_the_same_sweep_and_its_pruner_stops_trials() -> None:
    sp = load_space().uninformed()
    base = dict(budget=14, workers=3, target=0.79, limit_s=120.0, goal_s=1e9, seed=2, from_defaults=False)
    plain = run_sim(sp, SimConfig(TPE, policy=StopPolicy(capping=False), **base))
    assert plain.stopped == 0 and plain.capped == 0 and plain.wallclock_s > 0
    pruned = run_sim(sp, SimConfig(TPE, pruner="median", policy=StopPolicy(capping=False), **base))
    assert pruned.stopped > 0 and pruned.wallclock_s < plain.wallclock_s
    with pytest.raises(ValueError, match="pruner"):
        run_sim(sp, SimConfig(UNIFORM, pruner="median", **base))


def test_learning_curve_stopping_on_the_surrogate() -> None:
    sp = load_space().uninformed()
    base = dict(budget=24, workers=4, target=0.79, limit_s=120.0, goal_s=1e9, seed=1, from_defaults=False)
    cap = run_sim(sp, SimConfig(UNIFORM, policy=StopPolicy(curve=False, target_stop=False), **base))
    lc = run_sim(sp, SimConfig(UNIFORM, policy=StopPolicy(curve=True, target_stop=False), **base))
    assert cap.stopped == 0 and lc.stopped > 0
    assert lc.wallclock_s < cap.wallclock_s
    assert lc.false_stops <= lc.stopped // 4  # the rule is conservative: few stops that would have won


def test_target_rule_on_the_surrogate_stops_before_any_incumbent_and_counts_its_false_stops() -> None:
    sp = load_space().uninformed()
    base = dict(budget=16, workers=4, target=0.795, limit_s=120.0, goal_s=1e9, seed=2, from_defaults=False)
    off = run_sim(sp, SimConfig(UNIFORM, policy=StopPolicy(target_stop=False), **base))
    on = run_sim(sp, SimConfig(UNIFORM, policy=StopPolicy(target_stop=True), **base))
    assert off.target_stopped == 0 and on.target_stopped > 0 and on.stopped >= on.target_stopped
    assert on.wallclock_s < off.wallclock_s
    assert on.target_false_stops <= on.false_stops and on.target_false_stops <= on.target_stopped // 4


def test_curve_rule_stops_a_hopeless_curve_and_keeps_a_promising_one() -> None:
    pol = StopPolicy(curve=True)
    flat = Curve((2.0, 4.0, 6.0, 8.0), (0.70, 0.701, 0.7015, 0.702))
    steep = Curve((2.0, 4.0, 6.0, 8.0), (0.70, 0.72, 0.74, 0.76))
    why = curve_reason(flat, 8.0, 0.79, t_star=20.0, limit_s=120.0, policy=pol)
    assert why is not None and why.startswith("learning curve:") and "incumbent's cap 24.0 s" in why
    assert curve_reason(steep, 8.0, 0.79, t_star=20.0, limit_s=120.0, policy=pol) is None  # 0.79 by ~11 s
    assert curve_reason(flat, 8.0, 0.79, t_star=20.0, limit_s=120.0, policy=StopPolicy(curve=False)) is None
    assert curve_reason(flat, 3.0, 0.79, t_star=20.0, limit_s=120.0, policy=pol) is None  # grace: 0.2 x 24 s
    assert curve_reason(Curve((2.0, 4.0), (0.70, 0.70)), 4.0, 0.79, 20.0, 120.0, pol) is None  # 2 evals only
    # before any incumbent there is no cap: the curve rule waits (the target rule's job)
    assert curve_reason(flat, 30.0, 0.79, t_star=None, limit_s=120.0, policy=pol) is None


def test_target_rule_stops_before_any_incumbent_against_the_time_limit() -> None:
    pol = StopPolicy(target_stop=True)
    # 0.70 and rising 1e-4/s at 30 s: even at 2x, 0.79 only after 480 s, beyond the 120 s limit
    flat = Curve((10.0, 20.0, 30.0), (0.698, 0.699, 0.700))
    # 0.74 rising 2e-3/s: at 2x, 0.79 by ~42 s, within the limit: kept
    rising = Curve((10.0, 20.0, 30.0), (0.70, 0.72, 0.74))
    why = target_reason(flat, 30.0, 0.79, t_star=None, limit_s=120.0, policy=pol)
    assert why is not None and why.startswith("target projection:") and "after the time limit 120.0 s" in why
    assert target_reason(rising, 30.0, 0.79, None, 120.0, pol) is None
    assert target_reason(flat, 20.0, 0.79, None, 120.0, pol) is None  # grace: 0.2 x 120 s
    assert target_reason(flat, 30.0, 0.79, None, 120.0, StopPolicy(target_stop=False)) is None
    assert target_reason(flat, 30.0, 0.79, None, 120.0, StopPolicy(target_stop=True, capping=False)) is None
    # once an incumbent exists the curve rule (against its cap) speaks, with its own reason
    assert target_reason(flat, 30.0, 0.79, t_star=20.0, limit_s=120.0, policy=pol) is None
    assert str(early_stop_reason(flat, 30.0, 0.79, 20.0, 120.0, pol)).startswith("learning curve:")
    assert str(early_stop_reason(flat, 30.0, 0.79, None, 120.0, pol)).startswith("target projection:")


def test_target_rule_lets_trials_run_once_the_whole_budget_is_started() -> None:
    """A pre-incumbent stop only frees a worker for a trial yet to start: with none left (a 1-trial sweep,
    or the last trials of a budget) a trial runs to its limit, as a Slurm-limited trial is meant to."""
    pol = StopPolicy(target_stop=True)
    flat = Curve((10.0, 20.0, 30.0), (0.698, 0.699, 0.700))
    assert target_reason(flat, 30.0, 0.79, None, 120.0, pol, more_to_start=True) is not None
    assert target_reason(flat, 30.0, 0.79, None, 120.0, pol, more_to_start=False) is None
    assert early_stop_reason(flat, 30.0, 0.79, None, 120.0, pol, more_to_start=False) is None
    # the curve rule (an incumbent's cap) still stops: the incumbent already exists
    assert str(early_stop_reason(flat, 30.0, 0.79, 20.0, 120.0, pol, more_to_start=False)).startswith("learning")

