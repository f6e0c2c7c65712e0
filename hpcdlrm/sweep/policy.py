"""When to stop a running trial early: adaptive capping and the median stopping rule (pure functions).

*Adaptive capping* (as in algorithm configuration, e.g. SMAC/irace): once some trial reached the target
in t* seconds, a trial still short of it after ``t* * (1 + margin)`` cannot become the incumbent, so
it is stopped (status ``capped``, partial curve kept, told a censored loss), and new trials get that
as their time limit. It only ever cuts trials that are already worse than the best one.

*Median stopping* (Golovin et al., Google Vizier, 2017), off by default: stop a trial whose best AUC so
far is below the median of the other trials' best AUC at the same training time. It can stop a slow
starter that would have won, so it is opt-in; a grace period and a minimum number of peers limit that.

*Learning-curve stopping* (``curve``, on wherever capping is): once some trial reached the target,
stop a trial as soon as even an optimistic projection of its AUC-vs-time curve misses the incumbent's
cap ``t* * (1 + margin)``, instead of waiting for the cap. The projection continues the curve's recent
slope (least squares over the last half of its running best) ``curve_optimism`` times faster than
measured. AUC curves flatten, so a straight line already overestimates them; the extra factor covers
what a straight line cannot see coming: a late lr decay lifting the plateau. Not before
``curve_min_evals`` evaluations and ``curve_grace`` of the cap. ``python -m hpcdlrm.bench sweep``
measures the false stops (stopped trials that would have reached the target within the cap): at 2x,
0 of 379 at its default setting, 0 of 654 at target 0.795 with 16 workers; ``python -m hpcdlrm.bench
false-stops`` re-trains a real sweep's stopped trials: 0 of 51 over 10 default sweeps (README; 1 of 49 at 2x).

*The target rule* (``target_stop``, on by default; the driver's ``--no-target-stopping`` turns it off;
with capping): before any trial reached the target there is no cap, so without it every miss ran its
full time limit. It uses the target itself: the same optimistic projection, against the time limit, not
before ``target_grace`` of the limit and ``curve_min_evals`` evaluations, and only while trials of the
budget are still to be started (``more_to_start``): a stop is for freeing a worker, so a 1-trial sweep's
trial and the last trials of a sweep run until their --max-time (or Slurm) limit ends them. Its stops
are recorded as ``target projection: ...`` and told as misses that ran to the limit (``objective.py``:
told at their stop time they outranked the near misses that ran on, and sweeps found the goal less
often). Once an incumbent exists the curve rule takes over. A false stop here is a stopped trial that
would have reached the target within the limit (the benchmark counts them apart).

*The trial's own schedule* (``schedule``: its dense lr schedule, read with the evaluations' steps; the
driver takes it from the trial's stored config). Three rules use it, as every DLRM schedule ends with a
decay whose lift a curve cannot show before it comes:

* the projection's factor is ``curve_optimism`` only while a lift is ahead before the horizon (the warm-up
  still runs, or the lr will fall to ``lift_drop`` of today's); with the lr settled an AUC curve only
  flattens, so its straight continuation is already optimistic (``settled_optimism`` 1);
* *frozen* (``frozen_stop``): once the lr decayed to 0 the model no longer changes, so only evaluation
  noise moves its AUC: after ``frozen_evals`` evaluations a trial whose best is more than ``frozen_sigmas``
  of their spread below the target stops (``lr decayed to 0: ...``), and no projection runs on it;
* *decay lift* (``lift_stop``): mid-decay, the largest AUC gain that the sweep's finished trials made from
  the same phase of their decay to its end (``DecayLifts``, at least ``lift_min_peers`` trials that ran
  their decay to its end), times ``lift_margin``, bounds what the trial can still gain; short of the target
  even so, it stops (``decay lift: ...``). Its stops, like the target rule's, are told as misses that
  ran to the limit (``TOLD_AT_LIMIT``): told at their stop time, sweeps found the goal in 12, 13 and 17
  of 20 instead of 16, 19 and 16 (0.79 / 2 / 48, 0.795 / 4 / 200, 0.785 / 4 / 48; seeds 20-39). Frozen
  stops are told at their stop time: told at the limit, 0.795 / 4 / 200 went from 0.45x to 0.51x.
  Both rules run where a projection rule would (with capping; before an incumbent, while trials are
  still to start).

The defaults (``curve_optimism`` 1.5, ``lift_margin`` 1.5) were chosen on seeds 20-39 of the ``sweep
--grid`` settings with 2 and 4 workers: at <= 0.5x of no stopping in 10 of 11 decided settings, 11 of 11
counting 0.785 / 2 / 16 where only the sweeps with stopping found the goal in half the seeds (the rules
before, projection only: 9 of 12; with the settled factor and the frozen rule alone 8 of 12; lift margin
2: 9 of 11). The grid's figures on seeds 0-59 and 60-119 are in the README (``bench sweep --grid --seeds 60``).
Tried and not kept: a race rule (stop a trial whose best AUC trails the best any other trial had at the
same time by more than a margin, ASHA-like): at margins 0.005 and 0.015 it stopped hundreds of trials
that would have reached the target (462-1,253 of 10.5-13.6k on seeds 20-39) and cut the sweeps that found
the goal (181-215 of 360 vs 230), though it met <= 0.5x in 9-10 of 10 decided settings: slow starters
whose lr decays late win on this surrogate. Also a target grace of 0.1 (8 of 10) and telling the target
rule's stops their projected AUC at the limit (no change).

The driver and the sweep benchmark both call these, so what the benchmark measures is what runs.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ..train.schedule import LRSchedule
from .objective import Curve


TARGET_REASON = "target projection"  # how the target rule's stops are recorded (the reason's prefix)
CURVE_REASON = "learning curve"  # ...and the curve rule's
FROZEN_REASON = "lr decayed to 0"  # ...and the frozen rule's
# What each projection rule's reason says it was judged against (bench false-stops reads the seconds back).
HORIZON_TEXT = {CURVE_REASON: "the incumbent's cap", TARGET_REASON: "the time limit"}
LIFT_REASON = "decay lift"  # ...and the decay-lift rule's
# Stops whose rule says the trial would miss the target within the time limit (the target rule) or ever
# (lift, frozen): told as misses that ran to the limit. A curve-rule stop only says it would miss the cap.
TOLD_AT_LIMIT = (TARGET_REASON, LIFT_REASON)


def rule_of(reason: str) -> str:
    """The rule a stop reason names (its prefix, e.g. ``TARGET_REASON``)."""
    return reason.split(":")[0]
LIFT_PHASES = 20  # the decay's progress is read in 1/20ths (a lift measured at phase k/20 bounds later phases)


@dataclass(frozen=True)
class StopPolicy:
    capping: bool = True
    cap_margin: float = 0.2  # stop at t* * (1 + margin): evals are discrete and times are noisy
    median: bool = False
    median_grace: float = 0.25  # no median stop before this fraction of the reference time
    median_min_peers: int = 3  # ...nor with fewer other trials to compare with
    curve: bool = True  # learning-curve stopping (the driver: with capping, on time_to_target)
    curve_optimism: float = 1.5  # the projection assumes this many times the measured rate
    curve_grace: float = 0.2  # no curve stop before this fraction of the reference time...
    curve_min_evals: int = 3  # ...nor before this many evaluations
    target_stop: bool = True  # the target rule: before any incumbent, stop against the time limit
    target_grace: float = 0.2  # no target-rule stop before this fraction of the time limit
    frozen_stop: bool = True  # stop a trial whose lr decayed to 0 short of the target (with curve/target rule)
    frozen_evals: int = 3  # ...after this many evaluations since the decay ended
    frozen_sigmas: float = 4.0  # ...when its best is this many of their spreads below the target
    lift_stop: bool = True  # mid-decay: stop when even the largest decay lift peers showed falls short
    lift_margin: float = 1.5  # ...times that largest lift
    lift_min_peers: int = 5  # ...measured on at least this many trials that ran their decay to its end
    settled_optimism: float = 1.0  # the projection's factor when the trial's schedule has no lift ahead
    lift_drop: float = 0.5  # a lift is ahead while the lr will fall to this fraction of now before the horizon

    def ignoring_schedule(self) -> StopPolicy:
        """The rules as they were before they read the trial's lr schedule (``--no-schedule-stopping``):
        no frozen or decay-lift rule, and the projection ``curve_optimism`` times the rate throughout."""
        return replace(self, frozen_stop=False, lift_stop=False, settled_optimism=self.curve_optimism)


def cap_time(t_star: float | None, policy: StopPolicy) -> float | None:
    """The time after which a trial that has not reached the target is stopped (None: no cap yet)."""
    if not policy.capping or t_star is None:
        return None
    return t_star * (1.0 + policy.cap_margin)


def trial_limit(limit_s: float, t_star: float | None, policy: StopPolicy) -> float:
    """The training time limit (``--max-time``) a new trial gets."""
    cap = cap_time(t_star, policy)
    return limit_s if cap is None else min(limit_s, cap)


def cap_reason(elapsed_s: float, reached: bool, t_star: float | None, policy: StopPolicy) -> str | None:
    cap = cap_time(t_star, policy)
    if reached or cap is None or elapsed_s <= cap:
        return None
    return (f"adaptive capping: {elapsed_s:.1f} s without reaching the target, the incumbent reached it "
            f"in {t_star:.1f} s (cap {cap:.1f} s)")


def median_reason(curve: Curve, elapsed_s: float, peers: Sequence[Curve], ref_s: float,
                  policy: StopPolicy) -> str | None:
    """Median stopping: ``peers`` are the other trials' curves, ``ref_s`` the incumbent or limit time."""
    if not policy.median or elapsed_s < policy.median_grace * ref_s:
        return None
    mine = curve.best_until(elapsed_s)
    if mine is None:
        return None
    # Peers that were evaluated by this time; a finished peer keeps its final best beyond its end.
    others = [b for b in (p.best_until(elapsed_s) for p in peers) if b is not None]
    if len(others) < policy.median_min_peers:
        return None
    med = statistics.median(others)
    if mine >= med:
        return None
    return (f"median stopping: best AUC {mine:.4f} after {elapsed_s:.1f} s is below the median "
            f"{med:.4f} of {len(others)} other trials at that time")


def lift_ahead(curve: Curve, schedule: LRSchedule | None, horizon_s: float, policy: StopPolicy) -> bool:
    """Whether the trial's own lr schedule still holds a lift before ``horizon_s`` training seconds: its
    warm-up is not over, or its lr will fall to ``lift_drop`` of today's (a decay lifts the plateau).
    Unknown (no schedule, no steps): assume one."""
    if schedule is None or not curve.steps or curve.wall_s[-1] <= 0:
        return True
    now = int(curve.steps[-1])
    if now < schedule.warmup_steps:
        return True
    then = int(now / curve.wall_s[-1] * horizon_s)  # at the step rate measured so far
    lr = schedule(now)
    return lr > 0 and schedule(max(then, now)) <= policy.lift_drop * lr


def is_frozen(curve: Curve, schedule: LRSchedule | None) -> bool:
    """Whether the trial's lr had decayed to 0 by its last evaluation."""
    return (schedule is not None and bool(curve.steps) and schedule.decay_steps > 0
            and schedule(int(curve.steps[-1])) <= 0)


def frozen_reason(curve: Curve, schedule: LRSchedule | None, target: float, policy: StopPolicy) -> str | None:
    """Why a trial whose lr has decayed to 0 cannot reach ``target``, or None. It trains no more, so only
    evaluation noise moves its AUC: stop once ``frozen_evals`` evaluations since the decay ended all sit
    more than ``frozen_sigmas`` of their own spread below the target (a deterministic evaluation of a
    frozen model repeats its value: spread 0)."""
    if schedule is None or not is_frozen(curve, schedule):
        return None
    after = [a for s, a in zip(curve.steps, curve.auc) if s >= schedule.end]  # the final model's
    if len(after) < policy.frozen_evals:
        return None
    best, spread = max(curve.auc), float(np.std(after, ddof=1))
    if best + policy.frozen_sigmas * spread >= target:
        return None
    return (f"{FROZEN_REASON}: the lr decayed to 0 at step {schedule.end}, so training changes nothing; best AUC "
            f"{best:.4f}, {target - best:.4f} below {target} (evaluations since vary by {spread:.2g})")


def optimism(curve: Curve, schedule: LRSchedule | None, horizon_s: float, policy: StopPolicy) -> float:
    """The projection's factor: ``curve_optimism`` while a lift is ahead, else ``settled_optimism`` (with
    the lr settled an AUC curve only flattens, so its straight continuation is already optimistic)."""
    return policy.curve_optimism if lift_ahead(curve, schedule, horizon_s, policy) else policy.settled_optimism


def curve_eta(curve: Curve, target: float, policy: StopPolicy, now_s: float | None = None,
              factor: float | None = None) -> float:
    """The learning-curve rule's optimistic projection: when this curve, seen at ``now_s`` (default: its
    last evaluation), would first reach ``target`` (inf when it is not rising), at ``factor`` (default
    ``curve_optimism``) times its measured rate. A lower bound on its time to target, so also the least
    loss a trial it stopped should be told."""
    best = curve.best()
    if best is None:
        return float("inf")
    if best >= target:
        return curve.first_reaching(target) or 0.0
    rate = tail_slope(curve) * (policy.curve_optimism if factor is None else factor)
    now = curve.wall_s[-1] if now_s is None else now_s
    return now + (target - best) / rate if rate > 0 else float("inf")


def _projection_misses(curve: Curve, elapsed_s: float, target: float, ref_s: float, grace: float,
                       policy: StopPolicy, schedule: LRSchedule | None) -> tuple[float, float] | None:
    """The optimistic time to ``target`` and the factor used, when it comes after ``ref_s`` (a stop)."""
    best = curve.best()
    if len(curve.auc) < policy.curve_min_evals or elapsed_s < grace * ref_s or best is None or best >= target:
        return None
    factor = optimism(curve, schedule, ref_s, policy)
    eta = curve_eta(curve, target, policy, elapsed_s, factor)
    return (eta, factor) if eta > ref_s else None


def curve_reason(curve: Curve, elapsed_s: float, target: float | None, t_star: float | None, limit_s: float,
                 policy: StopPolicy, schedule: LRSchedule | None = None) -> str | None:
    """Learning-curve stopping: why this trial cannot beat the incumbent's cap, or None. ``schedule``:
    the trial's dense lr schedule (its lift ahead sets the projection's factor; None: assume one)."""
    cap = cap_time(t_star, policy)
    if not (policy.curve and policy.capping) or target is None or cap is None:
        return None
    miss = _projection_misses(curve, elapsed_s, target, cap, policy.curve_grace, policy, schedule)
    return None if miss is None else _projection_text(CURVE_REASON, curve, elapsed_s, target, *miss, cap)


def target_reason(curve: Curve, elapsed_s: float, target: float | None, t_star: float | None, limit_s: float,
                  policy: StopPolicy, *, more_to_start: bool = True, schedule: LRSchedule | None = None) -> str | None:
    """The target rule: before any trial reached the target (no incumbent, so no cap and no curve rule),
    why this trial cannot reach it within the time limit, or None. The same optimistic projection.
    Only while ``more_to_start`` (the budget is not all started): a stop is for freeing a worker."""
    if not (policy.target_stop and policy.capping and more_to_start) or target is None or t_star is not None:
        return None
    miss = _projection_misses(curve, elapsed_s, target, limit_s, policy.target_grace, policy, schedule)
    return None if miss is None else _projection_text(TARGET_REASON, curve, elapsed_s, target, *miss, limit_s)


def _projection_text(rule: str, curve: Curve, elapsed_s: float, target: float, eta: float, factor: float,
                     horizon_s: float) -> str:
    """A projection rule's stop reason: its prefix, the curve, the projection, and what it misses."""
    return (f"{rule}: best AUC {curve.best():.4f} after {elapsed_s:.1f} s, rising {tail_slope(curve):.2g}/s; "
            f"even at {factor:g}x that it reaches {target} at {eta:.0f} s, after "
            f"{HORIZON_TEXT[rule]} {horizon_s:.1f} s")


def _projection_on(t_star: float | None, policy: StopPolicy, more_to_start: bool) -> bool:
    """Where a projection rule runs, so do the schedule rules: with capping, and with an incumbent (the
    curve rule's place) or, before one, while trials are still to start (the target rule's)."""
    return policy.capping and (policy.curve if t_star is not None else policy.target_stop and more_to_start)


def frozen_check(curve: Curve, target: float | None, t_star: float | None, policy: StopPolicy,
                 schedule: LRSchedule | None, more_to_start: bool) -> str | None:
    """The frozen rule where a projection rule would run."""
    if not (policy.frozen_stop and _projection_on(t_star, policy, more_to_start)) or target is None:
        return None
    return frozen_reason(curve, schedule, target, policy)


def lift_check(curve: Curve, target: float | None, t_star: float | None, policy: StopPolicy,
               schedule: LRSchedule | None, more_to_start: bool, lifts: DecayLifts | None) -> str | None:
    """The decay-lift rule where a projection rule would run."""
    if not _projection_on(t_star, policy, more_to_start) or target is None:
        return None
    return lift_reason(curve, target, schedule, lifts, policy)


def early_stop_reason(curve: Curve, elapsed_s: float, target: float | None, t_star: float | None,
                      limit_s: float, policy: StopPolicy, *, more_to_start: bool = True,
                      schedule: LRSchedule | None = None, lifts: DecayLifts | None = None) -> str | None:
    """The projection rules in turn (the curve rule against the incumbent, the target rule before one).
    ``more_to_start``: trials of the budget are still to be started (the target rule needs one).
    ``schedule``: the trial's dense lr schedule, read with ``curve.steps`` (None: always optimistic)."""
    if policy.frozen_stop and is_frozen(curve, schedule):  # only noise moves its curve: no projection
        return frozen_check(curve, target, t_star, policy, schedule, more_to_start)
    return (curve_reason(curve, elapsed_s, target, t_star, limit_s, policy, schedule)
            or lift_check(curve, target, t_star, policy, schedule, more_to_start, lifts)
            or target_reason(curve, elapsed_s, target, t_star, limit_s, policy, more_to_start=more_to_start,
                             schedule=schedule))


class DecayLifts:
    """The AUC that the sweep's finished trials gained over their lr decay, from each phase of it (k/20
    of its steps done) to its end: the largest seen bounds what a running trial at that phase can still
    gain. Only trials whose curve reached the decay's end count (a trial stopped earlier says nothing)."""

    def __init__(self) -> None:
        self.largest = np.full(LIFT_PHASES + 1, -np.inf)
        self.count = 0

    def add(self, curve: Curve, schedule: LRSchedule | None) -> None:
        if schedule is None or schedule.decay_steps == 0 or not curve.steps or curve.steps[-1] < schedule.end:
            return
        steps = np.asarray(curve.steps)
        best = np.maximum.accumulate(np.asarray(curve.auc, float))
        at = schedule.decay_start + np.arange(LIFT_PHASES + 1) * schedule.decay_steps / LIFT_PHASES
        i = np.searchsorted(steps, at, side="right") - 1  # the last evaluation at or before each phase
        before = np.where(i >= 0, best[np.maximum(i, 0)], 0.5)
        self.largest = np.maximum(self.largest, best[-1] - before)
        self.count += 1

    def bound(self, phase: float) -> float:
        """The largest lift seen from ``phase`` (0-1 of the decay done) on: read at the phase just before."""
        return float(self.largest[int(np.clip(phase, 0.0, 1.0) * LIFT_PHASES)])


def lift_reason(curve: Curve, target: float, schedule: LRSchedule | None, lifts: DecayLifts | None,
                policy: StopPolicy) -> str | None:
    """Mid-decay: why even ``lift_margin`` times the largest lift the sweep's trials gained from this
    phase of their decay on leaves this trial short of ``target``, or None."""
    if (not policy.lift_stop or lifts is None or lifts.count < policy.lift_min_peers or schedule is None
            or schedule.decay_steps == 0 or not curve.steps):
        return None
    now = int(curve.steps[-1])
    if not schedule.decay_start <= now < schedule.end:
        return None
    phase = (now - schedule.decay_start) / schedule.decay_steps
    best, lift = max(curve.auc), lifts.bound(phase)
    if best + policy.lift_margin * lift >= target:
        return None
    return (f"{LIFT_REASON}: best AUC {best:.4f} at {phase:.0%} of its lr decay; the most any of {lifts.count} "
            f"trials gained from there was {lift:.4f}, so even {policy.lift_margin:g}x that stays below {target}")


def tail_slope(curve: Curve) -> float:
    """AUC per second over the last half of the curve's running best (least squares; >= 0)."""
    w = np.asarray(curve.wall_s, float)
    a = np.maximum.accumulate(np.asarray(curve.auc, float))
    tail = w >= w[-1] / 2
    if tail.sum() < 2 or np.ptp(w[tail]) <= 0:
        return 0.0
    return max(float(np.polyfit(w[tail], a[tail], 1)[0]), 0.0)
