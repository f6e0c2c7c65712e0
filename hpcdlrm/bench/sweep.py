"""``python -m hpcdlrm.bench sweep [--json]``: how fast the sweep finds a fast configuration.

On the training surrogate (``hpcdlrm.sweep.surrogate``: AUC-vs-time curves shaped by lr, warm-up,
decay, batch size, optimizer and embedding lr, with noise), the real sweep loop (``hpcdlrm.sweep.sim``:
the real optimizer, objective and capping, P simulated workers) runs ``--seeds`` times per setting:

* trials to target: completed trials until one reaches the target AUC within ``--goal`` x the best
  time to target found in a large uniform sample of the space; the chosen optimizer against random
  search (independent uniform draws). Sweeps that never get there count as budget + 1.
* sweep wall-clock: simulated seconds for the whole budget on P workers, with and without
  adaptive capping, for the chosen optimizer.

Goals: the optimizer needs <= 1/2 of random search's trials; capping halves the wall-clock.

The search itself is measured: no sweep here starts from the space's defaults, and the defaults that
seed some optimizers' first point (CMA, (1+1)) sit mid-range (``Space.uninformed``): the shipped
default is a known good recipe for the synthetic data, so every method would "find" it at trial 1.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from ..sweep.optim import DEFAULT_OPTIMIZER, OPTIMIZERS
from ..sweep.policy import StopPolicy
from ..sweep.sim import UNIFORM, SimConfig, SimResult, best_time, run_sim
from ..sweep.space import load_space
from ._util import emit


def _runs(space: Any, name: str, a: argparse.Namespace, goal_s: float, capping: bool) -> list[SimResult]:
    return [run_sim(space, SimConfig(name, a.budget, a.workers, a.target, a.limit, goal_s,
                                     StopPolicy(capping=capping), seed, from_defaults=False))
            for seed in range(a.seeds)]


def _ttg(runs: list[SimResult], budget: int) -> float:
    return statistics.median(r.trials_to_goal or budget + 1 for r in runs)


def _spread(runs: list[SimResult], budget: int) -> dict[str, Any]:
    vals = [r.trials_to_goal or budget + 1 for r in runs]
    return {"mean": round(statistics.fmean(vals), 1), "not_found": sum(r.trials_to_goal is None for r in runs)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m hpcdlrm.bench sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, choices=OPTIMIZERS)
    p.add_argument("--seeds", type=int, default=40, help="sweeps per setting (medians are noisy below ~30) [40]")
    p.add_argument("--budget", type=int, default=100, help="trials per sweep [100]")
    p.add_argument("--workers", type=int, default=4, help="trials in flight (P) [4]")
    p.add_argument("--target", type=float, default=0.79, help="target AUC on the surrogate's scale [0.79]")
    p.add_argument("--limit", type=float, default=120.0, help="per-trial time limit, simulated s [120]")
    p.add_argument("--goal", type=float, default=1.5, help="found = within this x the best time [1.5]")
    p.add_argument("--yardstick", type=int, default=20_000, help="uniform samples for the best time [20000]")
    a = p.parse_args(argv)
    space = load_space().uninformed()
    t0 = time.perf_counter()
    best = best_time(space, a.target, a.limit, samples=a.yardstick)
    goal_s = a.goal * best
    opt = _runs(space, a.optimizer, a, goal_s, capping=True)
    rnd = _runs(space, UNIFORM, a, goal_s, capping=True)
    nocap = _runs(space, a.optimizer, a, goal_s, capping=False)
    common = {"optimizer": a.optimizer, "seeds": a.seeds, "budget": a.budget, "workers": a.workers,
              "goal_s": round(goal_s, 2)}
    t_opt, t_rnd = _ttg(opt, a.budget), _ttg(rnd, a.budget)
    emit("sweep_trials_to_target", t_opt, "trials", a.json, **common, **_spread(opt, a.budget))
    emit("sweep_trials_to_target_random", t_rnd, "trials", a.json, **common, **_spread(rnd, a.budget))
    emit("sweep_trials_ratio_vs_random", round(t_opt / t_rnd, 3), "ratio", a.json, goal="<=0.5",
         met=t_opt / t_rnd <= 0.5)
    w_cap = statistics.median(r.wallclock_s for r in opt)
    w_nocap = statistics.median(r.wallclock_s for r in nocap)
    emit("sweep_wallclock_capped", round(w_cap, 1), "sim_s", a.json, **common,
         capped_trials=statistics.median(r.capped for r in opt))
    emit("sweep_wallclock_uncapped", round(w_nocap, 1), "sim_s", a.json, **common)
    emit("sweep_wallclock_ratio_capping", round(w_cap / w_nocap, 3), "ratio", a.json, goal="<=0.5",
         met=w_cap / w_nocap <= 0.5)
    to_goal = [r.wallclock_to_goal_s for r in opt if r.wallclock_to_goal_s is not None]
    to_goal_nc = [r.wallclock_to_goal_s for r in nocap if r.wallclock_to_goal_s is not None]
    if to_goal and to_goal_nc:
        emit("sweep_wallclock_to_target_capped", round(statistics.median(to_goal), 1), "sim_s", a.json,
             found=len(to_goal), uncapped=round(statistics.median(to_goal_nc), 1), found_uncapped=len(to_goal_nc))
    emit("sweep_bench_runtime", round(time.perf_counter() - t0, 1), "s", a.json, best_time_s=round(best, 2))
    return 0
