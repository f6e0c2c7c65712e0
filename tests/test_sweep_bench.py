"""The simulated sweep behind ``python -m hpcdlrm.bench sweep``: the real optimizer, objective and capping
on surrogate curves (small budgets here; the benchmark's own figures come from the command)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hpcdlrm.sweep
from hpcdlrm.bench.sweep import _ratio, _runs, _wall_ratio, _within, have_optuna, ratio_interval
from hpcdlrm.bench.sweep import main as bench_main
from hpcdlrm.sweep.objective import Curve
from hpcdlrm.sweep.policy import (FROZEN_REASON, LIFT_REASON, DecayLifts, StopPolicy, curve_reason,
                                  early_stop_reason, lift_ahead, lift_reason, target_reason)
from hpcdlrm.sweep.sim import PRUNERS, TPE, UNIFORM, SimConfig, SimResult, random_points, run_sim
from hpcdlrm.sweep.space import load_space
from hpcdlrm.sweep.surrogate import Landscapes, outcome, simulate
from hpcdlrm.train import TrainConfig
from hpcdlrm.train.schedule import LRSchedule


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


def test_fitted_landscape_diverges_where_the_real_sweeps_did() -> None:
    """FITTED: LAMB blows up past ~0.09 whatever the warm-up and SGD learns best near lr 1 and never blows
    up from its dense lr within the space, but any run does past a sparse lr of ~85 (each edge drawn per
    run). DESIGNED, on which every figure on record was measured, differs on each point."""
    def diverged(landscape: Landscapes, seeds: range = range(20), **h: object) -> int:
        return sum(simulate(Hyper(**h), seed=s, landscape=landscape).diverged_at_s is not None for s in seeds)

    lamb = dict(dense_optimizer="lamb", batch_size=2048, sparse_lr=10.0)
    assert diverged(Landscapes.FITTED, lr=0.3, warmup_steps=200, **lamb) == 20
    assert diverged(Landscapes.DESIGNED, lr=0.3, warmup_steps=200, **lamb) == 0  # warm-up saves it there
    assert diverged(Landscapes.FITTED, lr=0.02, warmup_steps=0, **lamb) == 0
    assert 0 < diverged(Landscapes.FITTED, range(200), lr=0.09, **lamb) < 200  # at the edge: some runs only
    sgd = dict(dense_optimizer="sgd", batch_size=1024, warmup_steps=50)
    assert diverged(Landscapes.FITTED, lr=3.0, sparse_lr=30.0, **sgd) == 0
    assert diverged(Landscapes.FITTED, lr=1.0, sparse_lr=200.0, **sgd) == 20
    assert diverged(Landscapes.DESIGNED, lr=1.0, sparse_lr=200.0, **sgd) == 0
    best = {lr: simulate(Hyper(lr=lr, sparse_lr=30.0, decay_start=2000, decay_steps=3000, **sgd),
                         landscape=Landscapes.FITTED).auc.max() for lr in (0.1, 0.6, 3.0)}
    assert best[0.6] > max(best[0.1], best[3.0])
    designed = simulate(Hyper(lr=0.6, sparse_lr=30.0, decay_start=2000, decay_steps=3000, **sgd))
    assert designed.auc.max() < best[0.6]  # DESIGNED's SGD optimum is 4x lower (0.15 at this batch)


def test_surrogate_evaluation_of_a_model_whose_lr_is_0_repeats_its_value() -> None:
    """The default recipe's lr reaches 0 at step 900: every later evaluation is of the same weights, so
    it repeats the last value (a real evaluation does); before that each evaluation draws its own noise."""
    run = simulate(Hyper(lr=0.012, batch_size=1024, warmup_steps=24, decay_start=450, decay_steps=450,
                         dense_optimizer="lamb", sparse_lr=0.144), seed=3)
    after = run.steps > 900  # the first evaluation past step 900 still saw steps with lr > 0
    first = int(np.argmax(after))
    assert after.sum() > 10 and np.all(run.auc[first + 1:] == run.auc[first])
    assert np.unique(run.auc[:first]).size == first  # still training: no two evaluations alike


def test_space_points_map_to_the_surrogate_through_the_train_config() -> None:
    sp = load_space()
    pts = random_points(sp, 50, seed=0)
    for p in pts:
        sp.check_point(p)
        h = TrainConfig.from_dict({"data": "d", "out": "o", **sp.apply(p)})
        assert h.sparse_lr == pytest.approx(p["sparse_lr"])
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
    for r in rows:  # each goal's ratio comes with its seeds' interval
        if r["metric"] in ("sweep_trials_ratio_vs_random", "sweep_trials_ratio_vs_tpe", "sweep_wallclock_ratio_stopping"):
            assert len(r["ci"]) == 2 and r["ci"][0] <= r["ci"][1]
    tpe = {"sweep_trials_to_target_tpe", "sweep_trials_ratio_vs_tpe", "sweep_wallclock_to_target_tpe_pruned",
           "sweep_wallclock_ratio_vs_tpe_pruned"}
    if HAVE_OPTUNA:
        assert tpe <= names
        pruned = next(r for r in rows if r["metric"] == "sweep_wallclock_to_target_tpe_pruned")
        assert pruned["pruner"] in PRUNERS and {f"with_{p}" for p in PRUNERS} <= set(pruned)
    else:
        assert not tpe & names and "optuna is not installed" in out


def test_bench_runs_on_the_landscape_it_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--seeds", "2", "--budget", "6", "--workers", "2", "--yardstick", "300",
            "--optimizer", "RandomSearch"]
    goal = {}
    for name in ("designed", "fitted"):
        assert bench_main([*argv, "--landscape", name]) == 0
        rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
        first = next(r for r in rows if r["metric"] == "sweep_trials_to_target")
        assert first["landscape"] == name
        goal[name] = first["goal_s"]
    assert goal["designed"] != goal["fitted"]  # the yardstick is the landscape's own best time
    with pytest.raises(SystemExit) as e:
        bench_main([*argv, "--landscape", "real"])
    assert e.value.code == 2 and "'real': not one of designed, fitted" in capsys.readouterr().err


def test_the_previous_space_holds_the_same_recipe_and_the_bench_takes_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The default space sweeps the embeddings' lr itself (1-300); the one before, kept to reproduce the
    figures measured on it, swept it as a multiple of the dense lr. Both start from the same recipe."""
    previous = Path(hpcdlrm.sweep.__file__).parent / "space_emb_lr_scale.toml"
    space, before = load_space(), load_space(previous)
    assert "sparse_lr" in space.names and "emb_lr_scale" in before.names
    assert space.apply(space.defaults()) == pytest.approx(before.apply(before.defaults()))  # one recipe
    for p in random_points(space, 200, seed=3):
        assert 1.0 <= space.apply(p)["sparse_lr"] <= 300.0  # absolute, whatever the dense lr
    assert bench_main(["--json", "--seeds", "2", "--budget", "6", "--workers", "2", "--yardstick", "300",
                       "--optimizer", "RandomSearch", "--space", str(previous)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert next(r for r in rows if r["metric"] == "sweep_trials_to_target")["space"] == str(previous)


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
        for col in ("ratio_vs_random", "ratio_stopping"):  # each ratio comes with its seeds' interval
            lo, hi = s[f"{col}_ci"]
            assert lo <= s[col if col != "ratio_vs_random" else "value"] <= hi
    same_w = [s for s in settings if "workers=2 " in s["setting"]]
    assert same_w[0]["random"] == same_w[1]["random"]  # one baseline run serves every budget
    worst = next(r for r in rows if r["metric"] == "sweep_grid_worst_ratio_vs_random")
    assert worst["value"] == max(s["value"] for s in settings)
    assert worst["ci"] == next(s for s in settings if s["setting"] == worst["setting"])["ratio_vs_random_ci"]
    verdict = next(r for r in rows if r["metric"] == "sweep_grid_ratio_vs_random_interval")
    decided = [s["setting"] for s in settings if s["decided"]]
    assert sorted(verdict["met"] + verdict["missed"] + verdict["open"]) == sorted(decided)
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
    base = dict(budget=16, workers=4, target=0.795, limit_s=120.0, goal_s=1e9, seed=1, from_defaults=False)
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



def test_lift_ahead_reads_the_trials_own_schedule() -> None:
    """A lift is ahead while the warm-up runs or the lr will still fall to half before the horizon; an lr
    held constant (no decay) or already at 0 has none. Unknown schedule or steps: assume one."""
    pol = StopPolicy()
    decay = LRSchedule(0.1, warmup_steps=20, decay_start=400, decay_steps=400)  # at 0 from step 800
    at = lambda step: Curve((8.0, 9.0, 10.0), (0.70, 0.71, 0.72), (step - 20, step - 10, step))  # noqa: E731
    assert lift_ahead(at(200), decay, 40.0, pol)  # 20 steps/s: step 800 by 40 s, the decay done
    assert not lift_ahead(at(200), decay, 20.0, pol)  # step 400 by 20 s: the decay not begun
    assert lift_ahead(at(15), decay, 11.0, pol)  # still warming up
    assert not lift_ahead(at(200), LRSchedule(0.1, warmup_steps=20), 120.0, pol)  # constant lr
    assert not lift_ahead(at(900), decay, 120.0, pol)  # already at 0
    assert lift_ahead(at(200), None, 120.0, pol) and lift_ahead(Curve((10.0,), (0.7,)), decay, 120.0, pol)


def test_projection_is_optimistic_only_where_the_schedule_holds_a_lift() -> None:
    """0.76 rising 1e-3/s at 40 s: at 1x 0.79 comes at 70 s, beyond a 60 s horizon; at 1.5x at 60 s."""
    pol = StopPolicy()
    walls = (20.0, 25.0, 30.0, 35.0, 40.0)
    curve = lambda rate: Curve(walls, tuple(0.76 + 1e-3 * (w - 40.0) for w in walls),  # noqa: E731
                               tuple(int(w * rate) for w in walls))
    settled = LRSchedule(0.1, warmup_steps=10)  # constant after the warm-up: nothing lifts the plateau
    decaying = LRSchedule(0.1, warmup_steps=10, decay_start=1000, decay_steps=200)  # step 1000 at 50 s
    why = curve_reason(curve(20), 40.0, 0.79, t_star=50.0, limit_s=120.0, policy=pol, schedule=settled)
    assert why is not None and "even at 1x" in why and "incumbent's cap 60.0 s" in why
    assert curve_reason(curve(20), 40.0, 0.79, 50.0, 120.0, pol, schedule=decaying) is None  # 1.5x: 60 s
    unread = pol.ignoring_schedule()  # --no-schedule-stopping: 1.5x whatever the schedule
    assert curve_reason(curve(20), 40.0, 0.79, 50.0, 120.0, unread, schedule=settled) is None
    assert not (unread.frozen_stop or unread.lift_stop) and pol.frozen_stop and pol.lift_stop
    assert curve_reason(curve(20), 40.0, 0.79, 50.0, 120.0, pol) is None  # schedule unknown: 1.5x
    assert curve_reason(curve(20), 40.0, 0.79, 50.0, 120.0, StopPolicy(settled_optimism=1.5),
                        schedule=settled) is None


def test_a_trial_whose_lr_decayed_to_0_stops_unless_its_evaluation_noise_could_reach_the_target() -> None:
    """After the decay the model trains no more: only evaluation noise moves its AUC."""
    pol = StopPolicy()
    sched = LRSchedule(0.1, warmup_steps=10, decay_start=100, decay_steps=100)  # 0 from step 200
    walls = (6.0, 8.0, 10.0, 12.0, 14.0)
    steps = tuple(int(w * 20) for w in walls)  # 120 ... 280: the last three after step 200
    rising = (0.70, 0.74, 0.775, 0.7752, 0.7751)  # steep until the decay ended: a projection would keep it
    why = early_stop_reason(Curve(walls, rising, steps), 14.0, 0.79, None, 120.0, pol, schedule=sched)
    assert why is not None and why.startswith(FROZEN_REASON) and "step 200" in why
    # the same curve without its schedule: the projection (grace 24 s) keeps it
    assert early_stop_reason(Curve(walls, rising, steps), 14.0, 0.79, None, 120.0, pol) is None
    # within 4 of its evaluations' spreads of the target: noise could still reach it, so no stop
    noisy = (0.70, 0.74, 0.7885, 0.7875, 0.7895)
    assert early_stop_reason(Curve(walls, noisy, steps), 14.0, 0.79, None, 120.0, pol, schedule=sched) is None
    # two evaluations after the decay are too few to tell its spread; the rule's switches hold
    assert early_stop_reason(Curve(walls[:4], rising[:4], steps[:4]), 12.0, 0.79, None, 120.0, pol,
                             schedule=sched) is None
    for off in (StopPolicy(frozen_stop=False), StopPolicy(capping=False)):
        assert early_stop_reason(Curve(walls, rising, steps), 14.0, 0.79, None, 120.0, off, schedule=sched) is None
    assert early_stop_reason(Curve(walls, rising, steps), 14.0, 0.79, None, 120.0, pol, more_to_start=False,
                             schedule=sched) is None  # before an incumbent, only while trials are to start
    assert str(early_stop_reason(Curve(walls, rising, steps), 14.0, 0.79, 10.0, 120.0, pol, more_to_start=False,
                                 schedule=sched)).startswith(FROZEN_REASON)  # with one: the curve rule's place


def test_decay_lifts_bound_what_a_trial_mid_decay_can_still_gain() -> None:
    """Peers that ran their decay to its end say how much AUC the rest of a decay gave; a trial whose best
    plus 1.5x the largest such gain misses the target is stopped, one within it is kept."""
    sched = LRSchedule(0.1, warmup_steps=10, decay_start=100, decay_steps=100)  # decay: steps 100-200
    lifts = DecayLifts()
    steps = (50, 100, 125, 150, 175, 200, 250)
    peer = Curve(tuple(s / 10 for s in steps), (0.70, 0.75, 0.76, 0.77, 0.775, 0.78, 0.779), steps)
    for _ in range(4):
        lifts.add(peer, sched)
    lifts.add(Curve((5.0, 10.0), (0.70, 0.75), (50, 100)), sched)  # stopped before its decay ended: no count
    lifts.add(peer, None)  # schedule unknown: no count
    assert lifts.count == 4
    assert lifts.bound(0.5) == pytest.approx(0.01) and lifts.bound(0.0) == pytest.approx(0.03)
    assert lifts.bound(0.6) == pytest.approx(0.01)  # read at the phase before: 0.5 (the gain from there)
    pol = StopPolicy(lift_min_peers=4)
    mid = lambda best: Curve((10.0, 12.5, 15.0), (0.74, best - 0.001, best), (100, 125, 150))  # noqa: E731
    why = lift_reason(mid(0.77), 0.79, sched, lifts, pol)  # 0.77 + 1.5 x 0.01 < 0.79
    assert why is not None and why.startswith(LIFT_REASON) and "50% of its lr decay" in why
    assert lift_reason(mid(0.777), 0.79, sched, lifts, pol) is None  # 0.777 + 0.015 >= 0.79
    assert lift_reason(mid(0.77), 0.79, sched, lifts, StopPolicy()) is None  # 4 peers: fewer than the 5 needed
    assert lift_reason(mid(0.77), 0.79, sched, lifts, StopPolicy(lift_stop=False, lift_min_peers=4)) is None
    before = Curve((5.0, 7.5, 9.0), (0.70, 0.72, 0.73), (50, 75, 90))  # before its decay: not this rule's
    assert lift_reason(before, 0.79, sched, lifts, pol) is None
    assert lift_reason(mid(0.77), 0.79, LRSchedule(0.1), lifts, pol) is None  # no decay
    assert str(early_stop_reason(mid(0.77), 15.0, 0.79, None, 120.0, pol, schedule=sched,
                                 lifts=lifts)).startswith(LIFT_REASON)



def test_wall_clock_ratio_where_one_arm_misses_the_goal_in_half_its_sweeps() -> None:
    """A median of inf: that arm's sweeps did not find the goal in half the seeds."""
    inf = float("inf")
    assert _wall_ratio(50.0, 100.0) == 0.5
    assert _wall_ratio(inf, 100.0) == inf  # stopping lost the goal: not met
    assert _wall_ratio(100.0, inf) == 0.0  # only the sweeps with stopping found it: met
    assert _wall_ratio(inf, inf) == inf  # undecided


def test_ratio_interval_resamples_the_seeds_of_both_arms_together() -> None:
    """The bootstrap interval of a median ratio: paired seeds, inf (never found) kept without nan."""
    inf = float("inf")
    base = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
    assert ratio_interval(base, base, _ratio) == [1.0, 1.0]  # the same arm: every resample's ratio is 1
    assert ratio_interval([v / 2 for v in base], base, _ratio) == [0.5, 0.5]  # paired: not a spread of 2 arms
    lo, hi = ratio_interval([v * 0.4 for v in base], list(reversed(base)), _ratio)
    assert lo < 0.4 < hi  # values that do not move together: a spread around the point ratio
    # half the sweeps never found the goal: some resamples' medians are inf, and so is the interval's top
    lo, hi = ratio_interval([5.0, 6.0, 7.0, inf, inf, inf], [10.0] * 6, _ratio)
    assert lo == pytest.approx(0.6, abs=0.11) and hi == inf
    assert ratio_interval([5.0] * 4, [inf] * 4, _wall_ratio) == [0.0, 0.0]  # only the other arm never found it
