"""The sweep loop on a simulated clock: the real optimizer, objective and stopping policy, with the
surrogate's curves instead of training jobs. Trials run on P simulated workers and finish in time
order, exactly the asynchronous tell-then-ask of the driver, so a 100-trial sweep takes seconds.

Besides hpcdlrm's own optimizers it runs the baselines the benchmark compares with: independent
uniform random search, and Optuna's TPE (optionally with one of Optuna's pruners, fed the best AUC so
far on a fixed time grid: pruning by wall time, as Optuna users do for time budgets).

Used by ``python -m hpcdlrm.bench sweep`` to compare optimizers and stopping rules.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from .objective import Curve, trial_loss
from .optim import Optimizer, uniform_points
from .policy import (TARGET_REASON, TOLD_AT_LIMIT, DecayLifts, StopPolicy, cap_time, early_stop_reason, rule_of,
                     trial_limit)
from .space import Space
from .surrogate import Landscapes, SimRun, outcome, simulate
from ..train.config import TrainConfig
from ..train.schedule import LRSchedule
from ..train.result import Status

UNIFORM = "UniformRandom"  # the textbook baseline: independent uniform (log-uniform) draws
TPE = "OptunaTPE"  # Optuna's default sampler (TPESampler with its defaults, seeded)
PRUNERS = ("median", "asha", "hyperband")  # Optuna pruners the benchmark can put beside TPE
CHECK_S = 2.0  # simulated seconds between early-stopping checks (the driver polls about that often)


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
    pruner: str | None = None  # TPE only: one of PRUNERS
    stop_at_goal: bool = False  # end the sweep once the goal is found (trials to target only: cheaper)
    landscape: Landscapes = Landscapes.DESIGNED  # the surrogate's lr optima and divergence edges


@dataclass(frozen=True)
class SimResult:
    trials_to_goal: int | None  # trials finished when the first goal-meeting one came in
    wallclock_to_goal_s: float | None
    wallclock_s: float  # the whole budget
    best_time_s: float | None
    capped: int  # stopped by capping
    stopped: int = 0  # stopped early by a curve rule (learning curve or pruner)
    false_stops: int = 0  # ...of which would have reached the target within the incumbent's cap (or the limit)
    by_rule: dict[str, tuple[int, int]] = field(default_factory=dict)  # rule -> (stops, false stops)

    @property
    def target_stopped(self) -> int:
        """Of ``stopped``: by the target rule (before any incumbent)."""
        return self.by_rule.get(TARGET_REASON, (0, 0))[0]

    @property
    def target_false_stops(self) -> int:
        """...of which would have reached the target within the time limit."""
        return self.by_rule.get(TARGET_REASON, (0, 0))[1]


class SimOptimizer(Protocol):
    def ask(self) -> tuple[Any, dict[str, Any]]: ...
    def suggest(self, point: dict[str, Any]) -> None: ...
    def tell(self, point: dict[str, Any], loss: float, candidate: Any = None) -> None: ...


@dataclass
class _Running:
    tid: int
    start: float
    point: dict
    cand: object
    run: SimRun
    natural: dict  # outcome under the limit it was given at submission
    schedule: LRSchedule  # its dense lr schedule (the projection rules read its lift ahead)
    checks: int = 0  # early-stopping checks done

    def end(self, cap: float | None, now: float) -> tuple[float, bool]:
        """Absolute end time, and whether capping ends it (before its natural end). A cap that a
        new incumbent moved into the past stops the trial now, as the driver's next poll would."""
        nat = self.natural["ran_s"]
        if cap is not None and cap < nat:
            return max(self.start + cap, now), True
        return self.start + nat, False

    def curve(self, until_s: float) -> Curve:
        keep = self.run.wall_s <= until_s
        return Curve(tuple(self.run.wall_s[keep].tolist()), tuple(self.run.auc[keep].tolist()),
                     tuple(self.run.steps[keep].tolist()))


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


class _OptunaTPE:
    """Optuna's TPE through its ask/tell interface, on the same space (needs the ``bench`` extra)."""

    def __init__(self, space: Space, seed: int, pruner: str | None, check_s: float, limit_s: float) -> None:
        import optuna  # noqa: PLC0415 - optional: `pip install hpcdlrm[bench]`

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna, self.space = optuna, space
        d = optuna.distributions
        self.dists: dict[str, Any] = {}
        for p in space.params:
            if p.by is not None:  # the same coordinates as our optimizer: its position in its range
                self.dists[p.name] = d.FloatDistribution(0.0, 1.0)
            elif p.kind == "choice":
                self.dists[p.name] = d.CategoricalDistribution(list(p.choices))
            elif p.kind == "int":
                self.dists[p.name] = d.IntDistribution(int(p.low), int(p.high))  # type: ignore[arg-type]
            else:
                self.dists[p.name] = d.FloatDistribution(p.low, p.high, log=p.kind == "log")  # type: ignore[arg-type]
        steps = max(1, int(limit_s / check_s))
        pr = optuna.pruners
        pruners = {None: pr.NopPruner(), "median": pr.MedianPruner(),
                   "asha": pr.SuccessiveHalvingPruner(), "hyperband": pr.HyperbandPruner(max_resource=steps)}
        self.study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
                                         pruner=pruners[pruner])

    def ask(self) -> tuple[Any, dict[str, Any]]:
        trial = self.study.ask(self.dists)
        return trial, self.space.decode(dict(trial.params))

    def suggest(self, point: dict[str, Any]) -> None:
        self.study.enqueue_trial(self.space.encode(point))

    def tell(self, point: dict[str, Any], loss: float, candidate: Any = None) -> None:
        if candidate is None:
            self.study.add_trial(self._optuna.trial.create_trial(params=self.space.encode(point),
                                                                 distributions=self.dists, value=loss))
        else:
            self.study.tell(candidate, loss)

    def should_prune(self, trial: Any, step: int, best_auc: float | None) -> bool:
        """Report the best AUC so far (negated: the study minimises) at this time step; ask the pruner."""
        if best_auc is None:
            return False
        trial.report(-best_auc, step)
        return bool(trial.should_prune())

    def pruned(self, trial: Any) -> None:
        self.study.tell(trial, state=self._optuna.trial.TrialState.PRUNED)


def make_optimizer(space: Space, cfg: SimConfig) -> SimOptimizer:
    if cfg.optimizer == UNIFORM:
        return _Uniform(space, cfg.budget, cfg.seed)
    if cfg.optimizer == TPE:
        return _OptunaTPE(space, cfg.seed, cfg.pruner, CHECK_S, cfg.limit_s)
    return Optimizer(space, cfg.optimizer, budget=cfg.budget, num_workers=cfg.workers, seed=cfg.seed)


def run_sim(space: Space, cfg: SimConfig) -> SimResult:
    if cfg.pruner is not None and (cfg.optimizer != TPE or cfg.pruner not in PRUNERS):
        raise ValueError(f"pruner {cfg.pruner!r}: only {TPE} takes one of {PRUNERS}")
    opt = make_optimizer(space, cfg)
    tpe_pruning = cfg.pruner is not None and isinstance(opt, _OptunaTPE)
    checking = tpe_pruning or ((cfg.policy.curve or cfg.policy.target_stop) and cfg.policy.capping)
    now, asked, done, capped, stopped, false_stops = 0.0, 0, 0, 0, 0, 0
    by_rule: dict[str, tuple[int, int]] = {}
    t_star: float | None = None
    running: list[_Running] = []
    to_goal: tuple[int, float] | None = None
    lifts = DecayLifts()  # the decay lifts of the trials that ended (the decay-lift rule's peers)

    def submit() -> None:
        nonlocal asked
        cand, point = opt.ask()
        asked += 1
        h = TrainConfig(**space.apply(point))
        run = simulate(h, seed=cfg.seed * 100_003 + asked, landscape=cfg.landscape)
        limit = trial_limit(cfg.limit_s, t_star, cfg.policy)
        running.append(_Running(asked, now, point, cand, run, outcome(run, cfg.target, limit),
                                h.lr_schedules()[0]))

    def stop_reason(r: _Running, elapsed: float) -> str | None:
        """A curve rule's verdict at a check ``elapsed`` seconds into trial ``r``."""
        curve = r.curve(elapsed)
        if tpe_pruning:
            assert isinstance(opt, _OptunaTPE)
            return "pruned" if opt.should_prune(r.cand, r.checks, curve.best()) else None
        return early_stop_reason(curve, elapsed, cfg.target, t_star, cfg.limit_s, cfg.policy,
                                 more_to_start=asked < cfg.budget, schedule=r.schedule, lifts=lifts)

    if cfg.from_defaults:
        opt.suggest(space.defaults())  # as the driver: a new sweep tries the defaults first
    while asked < min(cfg.workers, cfg.budget):
        submit()
    while running:
        cap = cap_time(t_star, cfg.policy)
        ends = [r.end(cap, now) for r in running]
        k = min(range(len(running)), key=lambda i: ends[i][0])
        if checking:  # is a curve check due before the next trial ends?
            due = [r.start + (r.checks + 1) * CHECK_S for r in running]
            j = min(range(len(running)), key=lambda i: due[i])
            if due[j] < ends[k][0]:
                r, now = running[j], due[j]
                r.checks += 1
                why = stop_reason(r, now - r.start)
                if why is None:
                    continue
                running.pop(j)
                elapsed = now - r.start
                res = outcome(r.run, cfg.target, elapsed)
                stopped += 1
                full = outcome(r.run, cfg.target, cap if cap is not None else cfg.limit_s)
                false = full["status"] is Status.REACHED_TARGET
                false_stops += false
                rule = rule_of(why)
                n, f = by_rule.get(rule, (0, 0))
                by_rule[rule] = (n + 1, f + false)
                if tpe_pruning:
                    assert isinstance(opt, _OptunaTPE)
                    opt.pruned(r.cand)
                else:
                    told_at_limit = why.startswith(TOLD_AT_LIMIT)
                    opt.tell(r.point, _loss(r, res, Status.CAPPED, elapsed, cfg, told_at_limit), r.cand)
                lifts.add(r.curve(elapsed), r.schedule)
                done += 1
                if asked < cfg.budget:
                    submit()
                continue
        r, (now, was_capped) = running.pop(k), ends[k]
        res = outcome(r.run, cfg.target, now - r.start) if was_capped else r.natural
        shortened = res["status"] is Status.TIMEOUT and res["ran_s"] < cfg.limit_s  # given a capped limit
        status = Status.CAPPED if was_capped or shortened else res["status"]
        capped += status is Status.CAPPED
        opt.tell(r.point, _loss(r, res, status, res["ran_s"], cfg), r.cand)
        lifts.add(r.curve(res["ran_s"]), r.schedule)
        done += 1
        ttt = res["time_to_target_s"]
        if ttt is not None:
            t_star = ttt if t_star is None else min(t_star, ttt)
            if to_goal is None and ttt <= cfg.goal_s:
                to_goal = (done, now)
                if cfg.stop_at_goal:
                    break
        if asked < cfg.budget:
            submit()
    return SimResult(to_goal[0] if to_goal else None, to_goal[1] if to_goal else None, now, t_star, capped,
                     stopped, false_stops, by_rule)


def _loss(r: _Running, res: dict, status: Status, ran_s: float, cfg: SimConfig, for_limit: bool = False) -> float:
    return trial_loss("time_to_target", status, best_auc=res["best_auc"], time_to_target_s=res["time_to_target_s"],
                      ran_s=res["ran_s"], curve=r.curve(ran_s), target=cfg.target, limit_s=cfg.limit_s,
                      stopped_for_limit=for_limit)


def random_points(space: Space, n: int, seed: int) -> list[dict]:
    """``n`` uniform points (log-uniform for log parameters), without nevergrad's per-sample cost."""
    return uniform_points(space, n, seed)


def best_time(space: Space, target: float, limit_s: float, samples: int = 20_000, seed: int = 12345,
              landscape: Landscapes = Landscapes.DESIGNED) -> float:
    """The best time-to-target in a large uniform sample of the space: the bench's yardstick."""
    best = math.inf
    for i, point in enumerate(random_points(space, samples, seed)):
        res = outcome(simulate(TrainConfig(**space.apply(point)), seed=i, landscape=landscape), target, limit_s)
        if res["time_to_target_s"] is not None:
            best = min(best, res["time_to_target_s"])
    return best
