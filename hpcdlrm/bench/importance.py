"""``python -m hpcdlrm.bench importance [--json]``: does a short sweep's importance name the right knob?

On the training surrogate (``hpcdlrm.sweep.surrogate``) the true importance is known: the first-order
share of the objective's variance (of its ranks, as the report fits) that each parameter explains over
the search space, measured here on ``--truth-samples`` uniform points by binning each parameter. Each
seed then runs a ``--budget``-trial sweep (the real optimizer, asked and told in rounds of ``--workers``,
the space's defaults first as the driver does; ``--uninformed``: defaults moved mid-range, as ``bench sweep``;
``--uniform``: independent uniform trials instead, to judge the estimator apart from where an optimizer
samples), turns its trials into the records a sweep store holds and asks the report's ``importance_info``
(fANOVA: a Gaussian process at these sizes, jackknife error bars) for its ranking.

Figure: in how many seeds the report ranks the truly most important parameter first (goal: >= 8 of 10).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import numpy as np

from ..report.importance import average_ranks, importance_info
from ..sweep.objective import Curve, trial_loss
from ..sweep.optim import DEFAULT_OPTIMIZER, OPTIMIZERS, Optimizer
from ..sweep.records import SweepData, SweepInfo, Trial
from ..sweep.sim import random_points
from ..sweep.space import Space, load_space
from ..sweep.surrogate import Landscapes, outcome, simulate
from ..train.config import TrainConfig
from ._util import emit, landscape_arg

TRUTH_BINS = 16


def evaluate(space: Space, point: dict[str, Any], target: float, limit_s: float, seed: int,
             landscape: Landscapes = Landscapes.DESIGNED) -> Trial:
    """One surrogate trial under the sweep's objective, as the store would record it (no capping)."""
    run = simulate(TrainConfig(**space.apply(point)), seed=seed, landscape=landscape)
    res = outcome(run, target, limit_s)
    keep = run.wall_s <= res["ran_s"]
    loss = trial_loss("time_to_target", res["status"], best_auc=res["best_auc"],
                      time_to_target_s=res["time_to_target_s"], ran_s=res["ran_s"],
                      curve=Curve(tuple(run.wall_s[keep]), tuple(run.auc[keep])), target=target, limit_s=limit_s)
    return Trial(0, res["status"], dict(point), objective=loss, best_auc=res["best_auc"],
                 time_to_target_s=res["time_to_target_s"])


def true_shares(space: Space, target: float, limit_s: float, n: int, seed: int = 777,
                landscape: Landscapes = Landscapes.DESIGNED) -> dict[str, float]:
    """First-order variance share of rank(loss) per parameter over uniform points (log-uniform for log
    parameters, as the report encodes them; a ranged parameter, the lr per dense optimizer, as its place in
    its range, as the report's importance encodes it): Var(E[rank | x_i]) / Var(rank), E in quantile bins."""
    points = random_points(space, n, seed)
    loss = np.array([evaluate(space, p, target, limit_s, seed * 1_000_003 + i, landscape).objective
                     for i, p in enumerate(points)])
    y = average_ranks(loss)
    out = {}
    for p in space.params:
        col = np.array([pt[p.name] for pt in points], dtype=object)
        if p.kind == "choice":
            groups = [col == c for c in p.choices]
        else:
            if p.by is not None:
                x = np.array([space.encode(pt)[p.name] for pt in points])
            else:
                x = np.log(col.astype(float)) if p.kind == "log" else col.astype(float)
            edges = np.quantile(x, np.linspace(0, 1, TRUTH_BINS + 1)[1:-1])
            b = np.searchsorted(edges, x)
            groups = [b == k for k in range(TRUTH_BINS)]
        v = sum(g.mean() * (y[g].mean() - y.mean()) ** 2 for g in groups if g.any())
        out[p.name] = float(v / y.var())
    return out


def sweep(space: Space, optimizer: str, budget: int, workers: int, target: float, limit_s: float,
          seed: int, uniform: bool = False, landscape: Landscapes = Landscapes.DESIGNED) -> SweepData:
    """A ``budget``-trial sweep on the surrogate, in rounds of ``workers`` asks then their tells
    (``uniform``: ``budget`` independent uniform points, no optimizer)."""
    info = SweepInfo(f"importance-{seed}", [], space.to_dict(), "uniform" if uniform else optimizer,
                     "time_to_target", target, 0.0)
    trials: list[Trial] = []
    if uniform:
        for i, point in enumerate(random_points(space, budget, 10_000 + seed)):
            t = evaluate(space, point, target, limit_s, seed * 100_003 + i, landscape)
            t.id, t.ended_at = i + 1, float(i + 1)
            trials.append(t)
        return SweepData(info, trials, [])
    opt = Optimizer(space, optimizer, budget=budget, num_workers=workers, seed=seed)
    opt.suggest(space.defaults())
    while len(trials) < budget:
        asked = [opt.ask() for _ in range(min(workers, budget - len(trials)))]
        for cand, point in asked:
            t = evaluate(space, point, target, limit_s, seed * 100_003 + len(trials), landscape)
            t.id, t.ended_at = len(trials) + 1, float(len(trials) + 1)
            trials.append(t)
            opt.tell(point, t.objective, cand)
    return SweepData(info, trials, [])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m hpcdlrm.bench importance", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, choices=OPTIMIZERS)
    p.add_argument("--seeds", type=int, default=10, help="sweeps [10]")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds FIRST..FIRST+SEEDS-1 [0]: screen a change on other seeds than the figure's 0-9")
    p.add_argument("--budget", type=int, default=24, help="trials per sweep [24]")
    p.add_argument("--workers", type=int, default=4, help="trials asked per round [4]")
    p.add_argument("--target", type=float, default=0.79, help="target AUC on the surrogate's scale [0.79]")
    p.add_argument("--limit", type=float, default=120.0, help="per-trial time limit, simulated s [120]")
    p.add_argument("--uninformed", action="store_true",
                   help="defaults mid-range (Space.uninformed, as bench sweep): the optimizer starts at the centre")
    p.add_argument("--uniform", action="store_true",
                   help="trials drawn uniformly, no optimizer: the estimator alone, on an even sample")
    p.add_argument("--truth-samples", type=int, default=4000, help="uniform points for the true shares [4000]")
    p.add_argument("--landscape", type=landscape_arg, default=Landscapes.DESIGNED, metavar="{designed,fitted}",
                   help="the surrogate's landscape (as bench sweep) [designed]")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    space = load_space().uninformed() if a.uninformed else load_space()
    truth = true_shares(space, a.target, a.limit, a.truth_samples, landscape=a.landscape)
    ranked = sorted(truth, key=truth.get, reverse=True)
    top = ranked[0]
    emit("importance_true_top", round(truth[top], 3), "share", a.json, param=top, landscape=a.landscape.name.lower(),
         ranking=",".join(f"{k}={truth[k]:.3f}" for k in ranked))
    firsts: Counter[str] = Counter()
    hits = 0
    for seed in range(a.first_seed, a.first_seed + a.seeds):
        info = importance_info(sweep(space, a.optimizer, a.budget, a.workers, a.target, a.limit, seed,
                                     a.uniform, a.landscape))
        if info.fanova_mean is None:
            firsts["(none)"] += 1
            continue
        order = np.argsort(info.fanova_mean)[::-1]
        first = info.names[order[0]]
        firsts[first] += 1
        hits += first == top
        if not a.json:
            print(f"  seed {seed}: " + ", ".join(f"{info.names[i]} {info.fanova_mean[i]:.2f}±{info.fanova_std[i]:.2f}"
                                                 for i in order[:3]), flush=True)
    emit("importance_top_first", hits, "seeds", a.json, of=a.seeds, goal=f">={0.8 * a.seeds:g}",
         met=hits >= 0.8 * a.seeds, budget=a.budget, firsts=dict(firsts), first_seed=a.first_seed,
         trials="uniform" if a.uniform else a.optimizer)
    emit("importance_bench_runtime", round(time.perf_counter() - t0, 1), "s", a.json)
    return 0
