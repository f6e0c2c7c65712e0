"""The sweep loop on a simulated clock: the real optimizer, objective and capping policy, with the
surrogate's curves instead of training jobs. Trials run on P simulated workers and finish in time
order, exactly the asynchronous tell-then-ask of the driver, so a 100-trial sweep takes seconds.

Used by ``python -m hpcdlrm.bench sweep`` to compare optimizers and capping.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from .objective import Curve, trial_loss
from .optim import Optimizer, uniform_points
from .policy import StopPolicy, cap_time, trial_limit
from .space import Space
from ..train.config import TrainConfig
from ..train.result import Status
from .surrogate import SimRun, outcome, simulate


@dataclass(frozen=True)
class SimConfig:
    optimizer: str
    budget: int
    workers: int
    target: float
    limit_s: float
    goal_s: float  # "found": a trial reached the target within this many seconds
    policy: StopPolicy = field(default_factory=StopPolicy)
    seed: int = 0
    from_defaults: bool = True  # try the space's defaults first, as the driver does


@dataclass(frozen=True)
class SimResult:
    trials_to_goal: int | None  # trials finished when the first goal-meeting one came in
    wallclock_to_goal_s: float | None
    wallclock_s: float  # the whole budget
    best_time_s: float | None
    capped: int


@dataclass
class _Running:
    tid: int
    start: float
    point: dict
    cand: object
    run: SimRun
    natural: dict  # outcome under the limit it was given at submission

    def end(self, cap: float | None, now: float) -> tuple[float, bool]:
        """Absolute end time, and whether capping ends it (before its natural end). A cap that a
        new incumbent moved into the past stops the trial now, as the driver's next poll would."""
        nat = self.natural["ran_s"]
        if cap is not None and cap < nat:
            return max(self.start + cap, now), True
        return self.start + nat, False


UNIFORM = "UniformRandom"  # the textbook baseline: independent uniform (log-uniform) draws


class _Uniform:
    """Random search as Bergstra & Bengio define it. (nevergrad's RandomSearch draws around the
    space's default point instead, which flatters it whenever the default is good.)"""

    def __init__(self, space: Space, budget: int, seed: int) -> None:
        self._points = iter(random_points(space, budget, seed))

    def ask(self) -> tuple[None, dict]:
        return None, next(self._points)

    def suggest(self, point: dict) -> None:
        self._points = itertools.chain([point], self._points)

    def tell(self, point: dict, loss: float, candidate: object = None) -> None:
        pass


def run_sim(space: Space, cfg: SimConfig) -> SimResult:
    opt = (_Uniform(space, cfg.budget, cfg.seed) if cfg.optimizer == UNIFORM else
           Optimizer(space, cfg.optimizer, budget=cfg.budget, num_workers=cfg.workers, seed=cfg.seed))
    now, asked, done, capped = 0.0, 0, 0, 0
    t_star: float | None = None
    running: list[_Running] = []
    to_goal: tuple[int, float] | None = None

    def submit() -> None:
        nonlocal asked
        cand, point = opt.ask()
        asked += 1
        run = simulate(TrainConfig(**space.apply(point)), seed=cfg.seed * 100_003 + asked)
        limit = trial_limit(cfg.limit_s, t_star, cfg.policy)
        running.append(_Running(asked, now, point, cand, run, outcome(run, cfg.target, limit)))

    if cfg.from_defaults:
        opt.suggest(space.defaults())  # as the driver: a new sweep tries the defaults first
    while asked < min(cfg.workers, cfg.budget):
        submit()
    while running:
        cap = cap_time(t_star, cfg.policy)
        ends = [r.end(cap, now) for r in running]
        k = min(range(len(running)), key=lambda i: ends[i][0])
        r, (now, was_capped) = running.pop(k), ends[k]
        res = outcome(r.run, cfg.target, now - r.start) if was_capped else r.natural
        shortened = res["status"] is Status.TIMEOUT and res["ran_s"] < cfg.limit_s  # given a capped limit
        status = Status.CAPPED if was_capped or shortened else res["status"]
        capped += status is Status.CAPPED
        keep = r.run.wall_s <= res["ran_s"]
        curve = Curve(tuple(r.run.wall_s[keep]), tuple(r.run.auc[keep]))
        loss = trial_loss("time_to_target", status, best_auc=res["best_auc"],
                          time_to_target_s=res["time_to_target_s"], ran_s=res["ran_s"], curve=curve,
                          target=cfg.target, limit_s=cfg.limit_s)
        opt.tell(r.point, loss, r.cand)
        done += 1
        ttt = res["time_to_target_s"]
        if ttt is not None:
            t_star = ttt if t_star is None else min(t_star, ttt)
            if to_goal is None and ttt <= cfg.goal_s:
                to_goal = (done, now)
        if asked < cfg.budget:
            submit()
    return SimResult(to_goal[0] if to_goal else None, to_goal[1] if to_goal else None, now, t_star, capped)


def random_points(space: Space, n: int, seed: int) -> list[dict]:
    """``n`` uniform points (log-uniform for log parameters), without nevergrad's per-sample cost."""
    return uniform_points(space, n, seed)


def best_time(space: Space, target: float, limit_s: float, samples: int = 20_000, seed: int = 12345) -> float:
    """The best time-to-target in a large uniform sample of the space: the bench's yardstick."""
    best = math.inf
    for i, point in enumerate(random_points(space, samples, seed)):
        res = outcome(simulate(TrainConfig(**space.apply(point)), seed=i), target, limit_s)
        if res["time_to_target_s"] is not None:
            best = min(best, res["time_to_target_s"])
    return best
