"""What the optimizer is told about a trial (always a loss to minimise).

``time_to_target`` (default): seconds of training until validation AUC first reached the target.
A trial that stopped before reaching it (ran out of time, was capped or median-stopped, finished its
epochs) is *censored*, not failed: its true time is longer than the time it ran, so it is told an
estimate that still ranks misses by how close they came and how fast they were improving::

    gap   = target - best_auc                      (> 0)
    rate  = AUC gained per second over the last half of its curve (>= the mean rate since chance, 0.5)
    est   = ran_s + 2 * gap / rate                 (linear extrapolation, doubled: AUC curves flatten)
    loss  = clip(max(est, ran_s * (1 + gap / (target - 0.5))), ran_s, CENSOR_CAP * limit_s)

so a miss never looks faster than the time it ran, a bigger gap or a flatter curve always looks
worse, and the estimate does not depend much on *when* the trial was stopped (a capped trial and one
that ran to the limit are comparable). A trial the target rule or the decay-lift rule stopped (it
would miss the target within the limit, or ever) is told as a miss that ran to the limit (``ran_s =
limit_s``): told at its stop time, hopeless trials stopped at 24-50 s came out ahead of the near misses
that ran on (the floor grows with the time run), and such sweeps found the goal less often
(``policy.py``). Failed and diverged trials get ``FAIL_FACTOR * limit_s``, above every censored value.
``limit_s`` is the sweep's (uncapped) per-trial training time limit.

``auc``: minimise ``-best_auc``; failed/diverged trials are told 0 (worse than chance, -0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..train.result import Status

OBJECTIVES = ("time_to_target", "auc")
CENSOR_CAP = 10.0  # a censored trial is told at most 10x the time limit...
FAIL_FACTOR = 12.0  # ...and a failed one 12x: failing is always worse than missing
PENALISED = frozenset(s for s in Status if s.penalised)


@dataclass(frozen=True)
class Curve:
    """A trial's validation AUC against training seconds (the driver builds it from metrics.jsonl)."""

    wall_s: tuple[float, ...] = ()
    auc: tuple[float, ...] = ()
    steps: tuple[int, ...] = ()  # the optimizer step of each evaluation (where known: the lr schedule's clock)

    def best(self) -> float | None:
        return max(self.auc) if self.auc else None

    def best_until(self, t: float) -> float | None:
        vals = [a for w, a in zip(self.wall_s, self.auc) if w <= t]
        return max(vals) if vals else None

    def first_reaching(self, target: float) -> float | None:
        return next((w for w, a in zip(self.wall_s, self.auc) if a >= target), None)

    def rate(self) -> float:
        """AUC per second near the end of the curve, robust to eval noise (0 when not improving)."""
        if not self.auc:
            return 0.0
        w, a = np.asarray(self.wall_s, float), np.maximum.accumulate(np.asarray(self.auc, float))
        mean_rate = max(a[-1] - 0.5, 0.0) / w[-1] if w[-1] > 0 else 0.0
        tail = w >= w[-1] / 2
        if tail.sum() >= 2 and np.ptp(w[tail]) > 0:
            slope = float(np.polyfit(w[tail], a[tail], 1)[0])
            # the tail slope alone reads a flat stretch of noise as "stopped"; never report less
            # than a fraction of the mean rate the run showed since chance
            return max(slope, 0.25 * mean_rate)
        return mean_rate


def censored_loss(ran_s: float, best_auc: float | None, rate: float, target: float, limit_s: float) -> float:
    """The estimate told for a trial that stopped after ``ran_s`` s without reaching ``target``."""
    ran_s = max(float(ran_s), 1e-9)
    best = 0.5 if best_auc is None else min(float(best_auc), target)
    gap = max(target - best, 0.0)
    est = ran_s + 2.0 * gap / rate if rate > 0 else float("inf")
    floor = ran_s * (1.0 + gap / max(target - 0.5, 1e-9))
    return float(min(max(est, floor), max(CENSOR_CAP * limit_s, ran_s)))


def trial_loss(kind: str, status: Status, *, best_auc: float | None, time_to_target_s: float | None,
               ran_s: float | None, curve: Curve, target: float | None, limit_s: float,
               stopped_for_limit: bool = False) -> float:
    """The loss told to the optimizer for a finished trial. ``stopped_for_limit``: stopped because it
    could not reach the target within ``limit_s`` (the target and decay-lift rules): told as a miss that
    ran to it."""
    if kind == "auc":
        if status in PENALISED:
            return 0.0
        return -float(best_auc if best_auc is not None else 0.5)
    if kind != "time_to_target":
        raise ValueError(f"objective {kind!r} is not one of {OBJECTIVES}")
    assert target is not None, "time_to_target needs a target AUC"
    if status in PENALISED:
        return FAIL_FACTOR * limit_s
    if time_to_target_s is not None:
        return float(time_to_target_s)
    ran = ran_s if ran_s is not None else (curve.wall_s[-1] if curve.wall_s else limit_s)
    if stopped_for_limit:
        ran = max(ran, limit_s)
    return censored_loss(ran, best_auc, curve.rate(), target, limit_s)
