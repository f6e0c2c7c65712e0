"""``python -m hpcdlrm.bench sweep-real [--json]``: the optimizer comparison of ``bench sweep``, on real trials.

Short real sweeps of the embedded default task (``python -m hpcdlrm.sweep``'s synthetic data, model and
target; the real driver, local executor, capping) for the sweep's optimizer, uniform random search and,
when ``optuna`` imports, Optuna's TPE through its ask/tell interface on the same space: the very optimizer
objects ``bench sweep`` compares on the surrogate (``sweep.sim.make_optimizer``). Every method gets
the same seeds, budget and trials in flight. As in ``bench sweep`` the search itself is measured: the space's
defaults (a known good recipe that reaches the target) are not tried first and sit mid-range
(``Space.uninformed``).

Figures (medians over seeds): trials finished until the first one reached the target (budget + 1 when none
did), the ratios of the sweep's optimizer to random and to TPE, and the best time to target found. Real
training: minutes per seed and method on 2 cores, noisy; not a CI test.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from ..sweep.__main__ import _parser, build_config
from ..sweep.driver import Driver
from ..sweep.executors import make_backend
from ..sweep.optim import DEFAULT_OPTIMIZER, OPTIMIZERS
from ..sweep.records import SweepInfo
from ..sweep.sim import TPE as OPTUNA_TPE
from ..sweep.sim import UNIFORM, SimConfig, SimOptimizer, make_optimizer
from ..sweep.store import Store, load_sweep
from ..sweep.template import TrialTemplate
from ..train.result import Status
from ._util import emit

RANDOM, TPE = "random", "tpe"
NO_STOP = "nostop"  # --stopping: the sweep's optimizer again, with --no-capping (no early stopping at all)


class NoDefaults:
    """An optimizer without the driver's "defaults first" suggestion (the search itself is measured)."""

    def __init__(self, opt: SimOptimizer) -> None:
        self._opt = opt

    def ask(self) -> tuple[Any, dict[str, Any]]:
        return self._opt.ask()

    def suggest(self, point: dict[str, Any]) -> None:
        pass

    def tell(self, point: dict[str, Any], loss: float, candidate: Any = None) -> None:
        self._opt.tell(point, loss, candidate)

    def restore(self, finished: Sequence[tuple[dict[str, Any], float | None]],
                unfinished: Sequence[dict[str, Any]]) -> None:
        """The driver's resume (a kept sweep): the sweep's optimizer rebuilds itself; the others are told
        the finished trials (random search and TPE of a finished kept sweep ask nothing more)."""
        restore = getattr(self._opt, "restore", None)
        if restore is not None:
            restore(finished, unfinished)
            return
        for point, loss in finished:
            if loss is not None:
                self._opt.tell(point, loss)


def tpe_available() -> bool:
    return importlib.util.find_spec("optuna") is not None


def one_sweep(method: str, seed: int, a: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Run one real sweep; its trials to target, best time to target and wall-clock."""
    argv = ["--out", str(out), "--seed", str(seed), "--budget", str(a.budget), "--parallel", str(a.parallel),
            "--executor", "local", "--no-report", "--time", str(a.time)] + (["--no-capping"] if method == NO_STOP else [])
    if a.target_auc is not None:
        argv += ["--target-auc", str(a.target_auc)]
    if a.entry:
        argv += ["--entry", a.entry, "--poll", "0.2"]
    cfg, space = build_config(_parser().parse_args(argv), [])
    space = space.uninformed()
    template = TrialTemplate.build(cfg, space)
    sim_name = {RANDOM: UNIFORM, TPE: OPTUNA_TPE, NO_STOP: a.optimizer}.get(method, method)  # as bench sweep
    opt = NoDefaults(make_optimizer(space, SimConfig(sim_name, a.budget, cfg.num_workers, float(cfg.target_auc or 0),
                                                     cfg.limit_s, 0.0, seed=seed)))
    t0 = time.time()
    with Store(cfg.out) as store:
        if store.sweep_config() is None:  # else a kept sweep (--keep): resumed, finished ones return at once
            store.init_sweep(SweepInfo(out.name, ["bench", "sweep-real", method], cfg.space, method, cfg.objective,
                                       cfg.target_auc, t0), cfg.to_dict())
        Driver(cfg, space, store, {p: make_backend(cfg.executor) for p in cfg.partitions}, opt,
               template=template).run()
    trials = sorted((t for t in load_sweep(cfg.out).trials if t.ended_at is not None), key=lambda t: t.ended_at)
    hit = next((i + 1 for i, t in enumerate(trials) if t.status is Status.REACHED_TARGET), None)
    times = [t.time_to_target_s for t in trials if t.time_to_target_s is not None]
    aucs = [t.best_auc for t in trials if t.best_auc is not None]
    start = min(t.submitted_at or t.ended_at for t in trials)  # type: ignore[type-var]
    # When each trial that reached the target ended (it ends there), from the sweep's start, with its time.
    reached = [(t.ended_at - start, t.time_to_target_s) for t in trials  # type: ignore[operator]
               if t.status is Status.REACHED_TARGET and t.time_to_target_s is not None]
    return {"trials_to_target": hit or a.budget + 1, "found": hit is not None,
            "best_ttt_s": min(times) if times else None, "best_auc": max(aucs) if aucs else None,
            "target": cfg.target_auc,
            "wall_s": max(t.ended_at for t in trials) - start,  # type: ignore[type-var]
            "reached": reached}


def to_goal_s(run: dict[str, Any], goal_s: float) -> float:
    """The sweep's wall-clock until a trial reached the target within ``goal_s`` of training (inf: never)."""
    return min((end for end, ttt in run["reached"] if ttt <= goal_s), default=float("inf"))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m hpcdlrm.bench sweep-real", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, choices=OPTIMIZERS)
    p.add_argument("--seeds", type=int, default=3, help="sweeps per method [3]")
    p.add_argument("--first-seed", type=int, default=0, help="seeds run: FIRST-SEED .. FIRST-SEED+SEEDS-1 [0]")
    p.add_argument("--budget", type=int, default=8, help="trials per sweep [8]")
    p.add_argument("--parallel", type=int, default=2, help="trials in flight [2]")
    p.add_argument("--time", type=float, default=2.0, help="job limit per trial, minutes [2]")
    p.add_argument("--target-auc", type=float, help="[the default sweep's target]")
    p.add_argument("--methods", default=None, help="comma separated subset of optimizer,random,tpe [all available]")
    p.add_argument("--stopping", action="store_true",
                   help="also run the sweep's optimizer with --no-capping and print the wall-clock (whole sweep, and "
                        "to a near-best configuration) with the default early stopping vs none, as bench sweep")
    p.add_argument("--goal", type=float, default=1.5,
                   help="--stopping: a near-best configuration reaches the target within this x the best time "
                        "any sweep of the run found [1.5, as bench sweep]")
    p.add_argument("--entry", help=argparse.SUPPRESS)  # tests: the training surrogate instead of training
    p.add_argument("--keep", help="keep the sweep directories under this folder, and resume those already there "
                                  "(run methods or seeds in separate calls, then all together for the ratios) "
                                  "[a temporary folder, removed]")
    a = p.parse_args(argv)
    methods = [a.optimizer, RANDOM] + ([TPE] if tpe_available() else [])
    if a.methods:
        wanted = {m.strip() for m in a.methods.split(",")}
        methods = [m for m in methods if m in wanted or (m == a.optimizer and "optimizer" in wanted)]
    if a.stopping and NO_STOP not in methods:
        methods.append(NO_STOP)
    if not tpe_available():
        print("optuna is not installed: TPE left out (pip install 'hpcdlrm[bench]')", flush=True)
    if not methods:
        print(f"error: --methods {a.methods}: none of optimizer, random, tpe (tpe needs optuna)", file=sys.stderr)
        return 2
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="hpcdlrm-sweep-real-"))
    t0 = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    try:
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            for m in methods:
                r = one_sweep(m, seed, a, root / f"{m}-s{seed}")
                runs[m].append(r)
                if not a.json:
                    print(f"  seed {seed} {m}: trials to target {r['trials_to_target']}, best time to target "
                          f"{r['best_ttt_s']} s, sweep {r['wall_s']:.0f} s", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    med = {m: statistics.median(r["trials_to_target"] for r in rs) for m, rs in runs.items() if m != NO_STOP}
    target = next(iter(runs.values()))[0]["target"]
    for m, rs in runs.items():
        if m == NO_STOP:
            continue
        best = [r["best_ttt_s"] for r in rs if r["best_ttt_s"] is not None]
        emit(f"sweep_real_trials_to_target_{'optimizer' if m == a.optimizer else m}", med[m], "trials", a.json,
             method=m, seeds=a.seeds, first_seed=a.first_seed, budget=a.budget, parallel=a.parallel, target=target,
             per_seed=[r["trials_to_target"] for r in rs],  # paired across methods: the same seeds
             best_auc=[None if r["best_auc"] is None else round(r["best_auc"], 4) for r in rs],
             found=sum(r["found"] for r in rs), best_ttt_s=round(statistics.median(best), 2) if best else None,
             sweep_s=round(statistics.median(r["wall_s"] for r in rs), 1))
    for base in (RANDOM, TPE):
        if base in med and a.optimizer in med:
            emit(f"sweep_real_trials_ratio_vs_{base}", round(med[a.optimizer] / med[base], 3), "ratio", a.json)
    if NO_STOP in runs and a.optimizer in runs:
        # As bench sweep: the whole sweep's wall-clock, and the wall-clock until a near-best configuration
        # (time to target within --goal x the best any sweep of this run found; early stopping acts only
        # once some trial reached the target, so it cannot hasten the first one).
        pair = (runs[a.optimizer], runs[NO_STOP])
        walls = [statistics.median(r["wall_s"] for r in rs) for rs in pair]
        emit("sweep_real_wallclock_ratio_capping", round(walls[0] / walls[1], 3), "ratio", a.json,
             with_s=round(walls[0], 1), without_s=round(walls[1], 1),
             per_seed=[(round(x["wall_s"]), round(y["wall_s"])) for x, y in zip(*pair)])
        best = min((ttt for rs in pair for r in rs for _, ttt in r["reached"]), default=math.inf)
        goal = a.goal * best
        to_goal = [[to_goal_s(r, goal) for r in rs] for rs in pair]
        # A sweep without stopping that never got there ran its whole wall-clock without: at least that long.
        # Its median is then a lower bound, and the ratio an upper bound ("<=").
        bound = [y if math.isfinite(y) else r["wall_s"] for y, r in zip(to_goal[1], pair[1])]
        censored = not all(math.isfinite(y) for y in to_goal[1])
        with_, without = statistics.median(to_goal[0]), statistics.median(bound)
        emit("sweep_real_wallclock_ratio_stopping", round(with_ / without, 3) if math.isfinite(with_) else math.inf,
             "ratio" + (" (at most: censored)" if censored else ""), a.json, goal_s=round(goal, 2),
             with_s=round(with_, 1), without_s=round(without, 1), censored=censored,
             found=[sum(math.isfinite(x) for x in g) for g in to_goal],
             per_seed=[(round(x, 1), round(y, 1)) for x, y in zip(*to_goal)])
    emit("sweep_real_bench_runtime", round(time.perf_counter() - t0, 1), "s", a.json)
    return 0
