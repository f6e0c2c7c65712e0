"""``python -m hpcdlrm.bench sweep [--json] [--grid]``: how fast the sweep finds a fast configuration.

On the training surrogate (``hpcdlrm.sweep.surrogate``: AUC-vs-time curves shaped by lr, warm-up,
decay, batch size, optimizer and embedding lr, with noise), the real sweep loop (``hpcdlrm.sweep.sim``:
the real optimizer, objective and stopping rules, P simulated workers) runs ``--seeds`` times per setting:

* trials to target: completed trials until one reaches the target AUC within ``--goal`` x the best
  time to target found in a large uniform sample of the space. The chosen optimizer against random
  search (independent uniform draws) and Optuna's TPE (its default sampler), all with the same
  capping, surrogate, workers and budget. Sweeps that never get there count as budget + 1.
* sweep wall-clock to target (simulated seconds until the goal is found; never found counts as
  infinite in the median): hpcdlrm (optimizer, capping, learning-curve stopping, the target rule)
  against TPE with the best of Optuna's pruners (median, ASHA, Hyperband; fed the best AUC every 2 s of
  training), and against the same sweep without any early stopping. The false-stop rate is the share of
  stopped trials that would have reached the target within the incumbent's cap (before one: the limit).
* sweep wall-clock for the whole budget, with and without adaptive capping.

Goals: trials <= 1/2 of random search's and <= 0.8 of TPE's; stopping halves the wall-clock.
``--grid`` runs the settings grid (targets x workers x budgets, ``--seeds`` each; sweeps stop at the
goal) and prints every setting's three ratios (trials vs random, vs TPE; wall-clock to the goal with
stopping vs none) and the worst ones; random search and TPE, which do not know the budget, are
watched past it so their medians are measured rather than cut off at budget + 1 (see :func:`grid`).
Narrow it with ``--targets``, ``--workers-grid``, ``--budgets`` to run it in pieces. Every ratio held
against a goal comes with its 90% bootstrap interval over the seeds (``ci``; in the grid's rows
``..._ci``: a 20-seed median of trials to the goal moves by 0.1-0.3 of the ratio with the seed set), and
each goal's ``..._interval`` line sorts the grid's decided settings into met (the whole interval within
the goal), missed (wholly past it) and open (the seeds do not decide it: run more).

``--landscape fitted`` runs it all on the surrogate's landscape fitted to real sweeps (its lr optima and
divergence edges; ``sweep.surrogate.Landscapes``, checked by ``bench surrogate-fit``) instead of the
designed one every figure on record was measured on.

The search itself is measured: no sweep here starts from the space's defaults, and the defaults that
seed some optimizers' first point (CMA, (1+1)) sit mid-range (``Space.uninformed``): the shipped
default is a known good recipe for the synthetic data, so every method would "find" it at trial 1.
Optuna is optional (``pip install 'hpcdlrm[bench]'``): without it the TPE lines are skipped, said so.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import time
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from ..sweep.optim import DEFAULT_OPTIMIZER, OPTIMIZERS
from ..sweep.policy import StopPolicy
from ..sweep.sim import PRUNERS, TPE, UNIFORM, SimConfig, SimResult, best_time, run_sim
from ..sweep.space import Space, load_space
from ..sweep.surrogate import Landscapes
from ._util import emit, landscape_arg

GRID_TARGETS = (0.785, 0.79, 0.795)
GRID_WORKERS = (2, 4, 16)
GRID_BUDGETS = (16, 48, 200)
RANDOM_HORIZON = 2000  # trials random search is watched for (its median at the hardest target: ~155)
NO_STOP = StopPolicy(capping=False, curve=False)
# Capping alone: the arm that measures trials to target (the optimizer's own efficiency) and capping's
# wall-clock. Every curve rule off, named, so a new default rule does not change what it measures.
CAPPING = StopPolicy(curve=False, target_stop=False, frozen_stop=False, lift_stop=False)
STOPPING = StopPolicy()  # capping + every curve rule (learning curve, target, frozen, decay lift): the driver's default
NO_TARGET_RULE = StopPolicy(target_stop=False)  # capping + learning curve (--no-target-stopping)
INTERVAL = 0.9  # the two-sided level of each ratio's bootstrap interval
DRAWS = 2000  # bootstrap resamples of the seeds


def have_optuna() -> bool:
    return importlib.util.find_spec("optuna") is not None


def _runs(space: Space, base: SimConfig, seeds: int, **kw: Any) -> list[SimResult]:
    """``seeds`` sweeps from ``base.seed`` on (the bench's ``--first-seed``)."""
    return [run_sim(space, replace(base, seed=seed, **kw)) for seed in range(base.seed, base.seed + seeds)]


def _trials(runs: list[SimResult], budget: int) -> list[int]:
    """Per seed: trials to the goal (not found: budget + 1)."""
    return [r.trials_to_goal or budget + 1 for r in runs]


def _ttg(runs: list[SimResult], budget: int) -> float:
    return statistics.median(_trials(runs, budget))


def _wtg(runs: list[SimResult]) -> float:
    return statistics.median(_found_s(runs))


def _spread(runs: list[SimResult], budget: int) -> dict[str, Any]:
    vals = _trials(runs, budget)
    return {"mean": round(statistics.fmean(vals), 1), "not_found": sum(r.trials_to_goal is None for r in runs)}


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if math.isfinite(a) and math.isfinite(b) and b > 0 else math.inf


def _wall_ratio(a: float, b: float) -> float:
    """Wall-clock to the goal, ``a`` against ``b``: medians over seeds, inf where the goal was not found
    in half of them. Only ``b`` unfound: ``a``'s sweeps reach it in a finite median time, ``b``'s never
    within the budget, so the ratio is 0 (met), not unknown."""
    return 0.0 if math.isfinite(a) and not math.isfinite(b) else _ratio(a, b)


def ratio_interval(a: Sequence[float], b: Sequence[float], ratio: Callable[[float, float], float],
                   level: float = INTERVAL, draws: int = DRAWS, seed: int = 0) -> list[float]:
    """The percentile-bootstrap interval of ``ratio(median(a), median(b))`` over the seeds.

    ``a[i]`` and ``b[i]`` are the two arms' values on seed ``i`` (the same seeds: resampled together).
    Values are per-seed trials or seconds to the goal (not found: budget + 1 or inf). A 20-seed median
    of such heavy-tailed values moves by 0.1-0.3 of the ratio with the seed set (README), so a ratio
    whose whole interval is past its goal misses it; one whose interval straddles the goal is not
    decided by this many seeds."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    idx = np.random.default_rng(seed).integers(0, len(x), (draws, len(x)))
    # np.median of a row holding inf is inf (or the mean of two infs): no nan for these values
    got = [ratio(float(u), float(v)) for u, v in zip(np.median(x[idx], axis=1), np.median(y[idx], axis=1))]
    tail = (1 - level) / 2 * 100
    # inverted_cdf picks sample values: interpolating between a finite ratio and inf would give nan
    return [round(float(q), 3) for q in np.percentile(got, [tail, 100 - tail], method="inverted_cdf")]


def _found_s(runs: list[SimResult]) -> list[float]:
    """Per seed: wall-clock to the goal (inf: not found)."""
    return [r.wallclock_to_goal_s if r.wallclock_to_goal_s is not None else math.inf for r in runs]


def _within(runs: list[SimResult], budget: int) -> list[int]:
    """Trials to the goal of sweeps watched past ``budget``, as a ``budget``-trial sweep sees them
    (not found within it: budget + 1)."""
    return [r.trials_to_goal if r.trials_to_goal is not None and r.trials_to_goal <= budget else budget + 1
            for r in runs]


def _stopping_row(space: Space, cfg: SimConfig, seeds: int) -> dict[str, Any]:
    """Wall-clock to the goal with the driver's default stopping rules against none, and without the
    target rule too (``--no-target-stopping``), with the found counts and every rule's (false) stops."""
    stop = _runs(space, cfg, seeds, policy=STOPPING)
    none = _runs(space, cfg, seeds, policy=NO_STOP)
    tgt = _runs(space, cfg, seeds, policy=NO_TARGET_RULE)
    w_stop, w_none, w_tgt = _wtg(stop), _wtg(none), _wtg(tgt)
    return {"wallclock_stopping": round(w_stop, 1), "wallclock_no_stopping": round(w_none, 1),
            "ratio_stopping": _wall_ratio(w_stop, w_none), "ratio_stopping_no_target_rule": _wall_ratio(w_tgt, w_none),
            "ratio_stopping_ci": ratio_interval(_found_s(stop), _found_s(none), _wall_ratio),
            "decided_wallclock": math.isfinite(min(w_stop, w_none)),
            "decided_wallclock_no_target_rule": math.isfinite(min(w_tgt, w_none)),
            "found_stopping": sum(r.wallclock_to_goal_s is not None for r in stop),
            "found_no_target_rule": sum(r.wallclock_to_goal_s is not None for r in tgt),
            "found_no_stopping": sum(r.wallclock_to_goal_s is not None for r in none),
            "stopped": sum(r.stopped for r in stop), "false_stops": sum(r.false_stops for r in stop),
            "stopped_no_target_rule": sum(r.stopped for r in tgt),
            "false_stops_no_target_rule": sum(r.false_stops for r in tgt),
            "target_rule_stops": sum(r.target_stopped for r in stop),
            "target_rule_false_stops": sum(r.target_false_stops for r in stop),
            "by_rule": {rule: [sum(r.by_rule.get(rule, (0, 0))[i] for r in stop) for i in (0, 1)]
                        for rule in sorted({k for r in stop for k in r.by_rule})}}


def grid(space: Space, a: argparse.Namespace) -> int:
    """Every setting's ratios, then the worst over the decided settings (and over all).

    The optimizer runs each setting's budget (it may use it: a sweep's budget picks its algorithm) and a
    sweep that never finds the goal counts as budget + 1. Random search and TPE do not know the budget:
    a budget only cuts their sweep short, so each (target, workers) runs them once to a horizon
    (``RANDOM_HORIZON``; TPE to the grid's largest budget) and reads every budget off that one run. Their
    medians are then measured, not censored at budget + 1 (which made a baseline that finds the goal in
    4 of 20 sweeps of 48 look as if it needed 49 trials when it needs ~155); the ratio against the
    censored median is printed beside it (``..._within_budget``). A setting is decided when some method
    finds the goal within the budget in half the seeds; where none does, the median trials to target
    of a sweep of that budget do not exist and the setting is listed as undecided (with found counts).
    Where the optimizer misses the goal in half its sweeps its ratio is inf (its median is unknown).
    Wall-clock to the goal, with stopping (capping + learning curve: the driver's default) against
    none, is decided where either finds the goal in half the seeds."""
    tpe = have_optuna()
    if not tpe:
        print("optuna is not installed (pip install 'hpcdlrm[bench]'): TPE ratios skipped")
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    quick = dict(policy=CAPPING, from_defaults=False, stop_at_goal=True)
    where = ("" if a.landscape is Landscapes.DESIGNED else f" landscape={a.landscape.name.lower()}") + (
        f" space={a.space}" if a.space else "")
    for target in a.targets:
        goal_s = a.goal * best_time(space, target, a.limit, samples=a.yardstick, landscape=a.landscape)
        for workers in a.workers_grid:
            seen = SimConfig(UNIFORM, RANDOM_HORIZON, workers, target, a.limit, goal_s, seed=a.first_seed,
                             landscape=a.landscape, **quick)  # type: ignore[arg-type]
            if a.stopping_only:
                for budget in a.budgets:
                    row = {"setting": f"target={target} workers={workers} budget={budget}{where}",
                           **_stopping_row(space, replace(seen, optimizer=a.optimizer, budget=budget), a.seeds)}
                    emit("sweep_grid_setting", row["ratio_stopping"], "ratio_stopping", a.json,
                         **{k: v for k, v in row.items() if k != "ratio_stopping"})
                    rows.append(row)
                continue
            base_runs = {"random": _runs(space, seen, a.seeds)}
            if tpe:
                base_runs["tpe"] = _runs(space, replace(seen, optimizer=TPE, budget=max(a.budgets)), a.seeds)
            horizon = {"random": RANDOM_HORIZON, "tpe": max(a.budgets)}
            for budget in a.budgets:
                cfg = replace(seen, optimizer=a.optimizer, budget=budget)
                opt = _runs(space, cfg, a.seeds)
                t_opt = _ttg(opt, budget)

                def vs(u: float, v: float, budget: int = budget) -> float:  # as ratio_vs_*: inf when not found
                    return _ratio(u, v) if u <= budget else math.inf
                row: dict[str, Any] = {"setting": f"target={target} workers={workers} budget={budget}{where}",
                                       "opt": t_opt, "found_opt": sum(r.trials_to_goal is not None for r in opt)}
                decided = t_opt <= budget
                for k, runs in base_runs.items():
                    med = _ttg(runs, horizon[k])
                    within = statistics.median(_within(runs, budget))
                    decided |= within <= budget
                    row.update({k: med, f"{k}_censored": med > horizon[k], f"found_{k}": sum(
                        v <= budget for v in _within(runs, budget)), f"ratio_vs_{k}": _ratio(t_opt, med) if t_opt <= budget else math.inf,
                        f"ratio_vs_{k}_within_budget": _ratio(t_opt, within),
                        f"ratio_vs_{k}_ci": ratio_interval(_trials(opt, budget), _trials(runs, horizon[k]), vs)})
                row.update(decided=decided, **_stopping_row(space, cfg, a.seeds))
                emit("sweep_grid_setting", row["ratio_vs_random"], "ratio_vs_random", a.json,
                     **{k: v for k, v in row.items() if k != "ratio_vs_random"})
                rows.append(row)
    worst = [("random", "ratio_vs_random", 0.5, "decided"), ("random", "ratio_vs_random_within_budget", 0.5, "decided"),
             ("tpe", "ratio_vs_tpe", 0.8, "decided"), ("tpe", "ratio_vs_tpe_within_budget", 0.8, "decided"),
             ("stopping", "ratio_stopping", 0.5, "decided_wallclock"),
             ("stopping", "ratio_stopping_no_target_rule", 0.5, "decided_wallclock_no_target_rule")]
    for what, col, goal, flag in worst:
        if (what == "tpe" and not tpe) or (a.stopping_only and what != "stopping"):
            continue
        name = "wallclock_ratio_stopping" if col == "ratio_stopping" else col
        for scope, sel in (("", rows), ("_decided", [r for r in rows if r[flag]])):
            if not sel:
                continue
            w = max(sel, key=lambda r: r[col])
            emit(f"sweep_grid_worst_{name}{scope}", w[col], "ratio", a.json, setting=w["setting"],
                 goal=f"<={goal}", met=w[col] <= goal, optimizer=a.optimizer, seeds=a.seeds, settings=len(sel),
                 **({"ci": w[f"{col}_ci"]} if f"{col}_ci" in w else {}))
        if rows and f"{col}_ci" in rows[0]:  # do the seeds decide the goal? each decided setting's interval
            sel = [r for r in rows if r[flag]]
            emit(f"sweep_grid_{name}_interval", len(sel),
                 "settings", a.json, goal=f"<={goal}", level=INTERVAL,
                 met=[r["setting"] for r in sel if r[f"{col}_ci"][1] <= goal],
                 missed=[r["setting"] for r in sel if r[f"{col}_ci"][0] > goal],
                 open=[r["setting"] for r in sel if r[f"{col}_ci"][0] <= goal < r[f"{col}_ci"][1]])
    decided_w = [r for r in rows if r["decided_wallclock"]]
    emit("sweep_grid_stopping_met", sum(r["ratio_stopping"] <= 0.5 for r in decided_w), "settings", a.json,
         of=len(decided_w), without_target_rule=sum(r["ratio_stopping_no_target_rule"] <= 0.5 for r in decided_w),
         stopped=sum(r["stopped"] for r in rows), false_stops=sum(r["false_stops"] for r in rows),
         target_rule_stops=sum(r["target_rule_stops"] for r in rows),
         target_rule_false_stops=sum(r["target_rule_false_stops"] for r in rows),
         by_rule={k: [sum(r["by_rule"].get(k, (0, 0))[i] for r in rows) for i in (0, 1)]
                  for k in sorted({k for r in rows for k in r["by_rule"]})})
    emit("sweep_bench_runtime", round(time.perf_counter() - t0, 1), "s", a.json,
         undecided=[r["setting"] for r in rows if not r.get("decided", True)],
         undecided_wallclock=[r["setting"] for r in rows if not r["decided_wallclock"]])
    return 0


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def main(argv: list[str]) -> int:
    if "--real" in argv:  # the same comparison on real trials: `bench sweep-real`, whose flags follow
        from . import sweep_real  # noqa: PLC0415

        return sweep_real.main([x for x in argv if x != "--real"])
    p = argparse.ArgumentParser(prog="python -m hpcdlrm.bench sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--real", action="store_true",  # dispatched above; declared for --help
                   help="short real sweeps instead of the surrogate: the same as `bench sweep-real` (its flags)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, choices=OPTIMIZERS)
    p.add_argument("--seeds", type=int, default=20, help="sweeps per setting [20]")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds from this one on [0]: choose rules on other seeds than the ones reported")
    p.add_argument("--budget", type=int, default=100, help="trials per sweep [100]")
    p.add_argument("--workers", type=int, default=4, help="trials in flight (P) [4]")
    p.add_argument("--target", type=float, default=0.79, help="target AUC on the surrogate's scale [0.79]")
    p.add_argument("--limit", type=float, default=120.0, help="per-trial time limit, simulated s [120]")
    p.add_argument("--goal", type=float, default=1.5, help="found = within this x the best time [1.5]")
    p.add_argument("--yardstick", type=int, default=20_000, help="uniform samples for the best time [20000]")
    p.add_argument("--grid", action="store_true", help="run the settings grid and print the worst ratios")
    p.add_argument("--targets", type=_floats, default=GRID_TARGETS, help="grid targets [0.785,0.79,0.795]")
    p.add_argument("--workers-grid", type=_ints, default=GRID_WORKERS, help="grid workers [2,4,16]")
    p.add_argument("--budgets", type=_ints, default=GRID_BUDGETS, help="grid budgets [16,48,200]")
    p.add_argument("--stopping-only", action="store_true",
                   help="--grid: only the wall-clock with stopping vs none (no random/TPE baselines: minutes, not hours)")
    p.add_argument("--landscape", type=landscape_arg, default=Landscapes.DESIGNED, metavar="{designed,fitted}",
                   help="the surrogate's lr optima and divergence edges: designed (every figure on record) or "
                        "fitted to real sweeps (sweep.surrogate.Landscapes) [designed]")
    p.add_argument("--space", help="search space file, as the sweep's --space [the sweep's default space]")
    a = p.parse_args(argv)
    space = load_space(a.space).uninformed()
    if a.grid:
        return grid(space, a)
    t0 = time.perf_counter()
    best = best_time(space, a.target, a.limit, samples=a.yardstick, landscape=a.landscape)
    goal_s = a.goal * best
    base = SimConfig(a.optimizer, a.budget, a.workers, a.target, a.limit, goal_s, from_defaults=False,
                     seed=a.first_seed, landscape=a.landscape)
    opt = _runs(space, base, a.seeds, policy=CAPPING)
    rnd = _runs(space, base, a.seeds, optimizer=UNIFORM, policy=CAPPING, stop_at_goal=True)
    nocap = _runs(space, base, a.seeds, policy=NO_STOP)
    common = {"optimizer": a.optimizer, "seeds": a.seeds, "budget": a.budget, "workers": a.workers,
              "target": a.target, "goal_s": round(goal_s, 2), "landscape": a.landscape.name.lower(),
              **({"space": a.space} if a.space else {})}
    t_opt, t_rnd = _ttg(opt, a.budget), _ttg(rnd, a.budget)
    emit("sweep_trials_to_target", t_opt, "trials", a.json, **common, **_spread(opt, a.budget))
    emit("sweep_trials_to_target_random", t_rnd, "trials", a.json, **common, **_spread(rnd, a.budget))
    emit("sweep_trials_ratio_vs_random", round(t_opt / t_rnd, 3), "ratio", a.json, goal="<=0.5",
         met=t_opt / t_rnd <= 0.5, ci=ratio_interval(_trials(opt, a.budget), _trials(rnd, a.budget), _ratio))
    tpe = have_optuna()
    if tpe:
        tp = _runs(space, base, a.seeds, optimizer=TPE, policy=CAPPING, stop_at_goal=True)
        t_tpe = _ttg(tp, a.budget)
        emit("sweep_trials_to_target_tpe", t_tpe, "trials", a.json, **common, **_spread(tp, a.budget))
        emit("sweep_trials_ratio_vs_tpe", round(t_opt / t_tpe, 3), "ratio", a.json, goal="<=0.8",
             met=t_opt / t_tpe <= 0.8,
             ci=ratio_interval(_trials(opt, a.budget), _trials(tp, a.budget), _ratio))
    else:
        print("optuna is not installed (pip install 'hpcdlrm[bench]'): TPE lines skipped")
    w_cap = statistics.median(r.wallclock_s for r in opt)
    w_nocap = statistics.median(r.wallclock_s for r in nocap)
    emit("sweep_wallclock_capped", round(w_cap, 1), "sim_s", a.json, **common,
         capped_trials=statistics.median(r.capped for r in opt))
    emit("sweep_wallclock_uncapped", round(w_nocap, 1), "sim_s", a.json, **common)
    emit("sweep_wallclock_ratio_capping", round(w_cap / w_nocap, 3), "ratio", a.json, goal="<=0.5",
         met=w_cap / w_nocap <= 0.5)
    # wall-clock to the goal: what a user waits for
    stop = _runs(space, base, a.seeds, policy=STOPPING, stop_at_goal=True)
    w_stop, w_cap_goal, w_none = _wtg(stop), _wtg(opt), _wtg(nocap)
    stopped = sum(r.stopped for r in stop)
    false = sum(r.false_stops for r in stop)
    emit("sweep_wallclock_to_target", round(w_stop, 1), "sim_s", a.json, **common,
         rule="capping+curve+target+frozen+decay lift",
         found=sum(r.wallclock_to_goal_s is not None for r in stop), capping_only=round(w_cap_goal, 1),
         no_stopping=round(w_none, 1))
    emit("sweep_curve_false_stop_rate", round(false / max(stopped, 1), 4), "ratio", a.json, stopped=stopped,
         false_stops=false)
    emit("sweep_wallclock_ratio_stopping", _wall_ratio(w_stop, w_none), "ratio", a.json, goal="<=0.5",
         met=_wall_ratio(w_stop, w_none) <= 0.5, vs="no early stopping", vs_capping_only=_ratio(w_stop, w_cap_goal),
         ci=ratio_interval(_found_s(stop), _found_s(nocap), _wall_ratio))
    if tpe:
        by = {pr: _wtg(_runs(space, base, a.seeds, optimizer=TPE, pruner=pr, policy=NO_STOP, stop_at_goal=True))
              for pr in PRUNERS}
        pr_best = min(by, key=lambda k: by[k])
        emit("sweep_wallclock_to_target_tpe_pruned", round(by[pr_best], 1), "sim_s", a.json, **common,
             pruner=pr_best, **{f"with_{k}": round(v, 1) for k, v in by.items()})
        emit("sweep_wallclock_ratio_vs_tpe_pruned", _ratio(w_stop, by[pr_best]), "ratio", a.json,
             pruner=pr_best)
    emit("sweep_bench_runtime", round(time.perf_counter() - t0, 1), "s", a.json, best_time_s=round(best, 2))
    return 0
