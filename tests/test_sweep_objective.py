"""What the optimizer is told, and when a running trial is stopped (pure functions)."""

from __future__ import annotations

import pytest

from hpcdlrm.sweep.objective import CENSOR_CAP, FAIL_FACTOR, Curve, censored_loss, trial_loss
from hpcdlrm.sweep.policy import StopPolicy, cap_reason, cap_time, median_reason, trial_limit

TARGET, LIMIT = 0.79, 100.0


def loss(status: str, **kw: object) -> float:
    base = dict(best_auc=None, time_to_target_s=None, ran_s=None, curve=Curve(), target=TARGET, limit_s=LIMIT)
    return trial_loss("time_to_target", status, **{**base, **kw})  # type: ignore[arg-type]


def test_reached_target_is_told_its_time() -> None:
    assert loss("reached_target", best_auc=0.8, time_to_target_s=42.0) == 42.0


def test_censored_loss_is_at_least_the_time_run_and_grows_with_the_gap() -> None:
    near = censored_loss(50.0, 0.785, rate=0.001, target=TARGET, limit_s=LIMIT)
    far = censored_loss(50.0, 0.70, rate=0.001, target=TARGET, limit_s=LIMIT)
    assert 50.0 < near < far
    # a flatter curve (slower improvement) looks worse at the same gap
    assert censored_loss(50.0, 0.785, rate=0.0001, target=TARGET, limit_s=LIMIT) > near
    # a stopped-improving run is capped, finitely, below a failure
    stuck = censored_loss(50.0, 0.6, rate=0.0, target=TARGET, limit_s=LIMIT)
    assert stuck == CENSOR_CAP * LIMIT < FAIL_FACTOR * LIMIT


def test_censored_trial_rate_comes_from_its_curve() -> None:
    rising = Curve((10.0, 20.0, 30.0, 40.0), (0.70, 0.74, 0.76, 0.78))
    flat = Curve((10.0, 20.0, 30.0, 40.0), (0.70, 0.78, 0.78, 0.78))
    assert rising.rate() > flat.rate() > 0
    a = loss("timeout", best_auc=0.78, ran_s=40.0, curve=rising)
    b = loss("timeout", best_auc=0.78, ran_s=40.0, curve=flat)
    assert 40.0 < a < b


def test_capped_early_is_comparable_with_run_to_the_limit() -> None:
    """The estimate does not reward being stopped early: same curve, cut at 30 s or at 60 s."""
    ts = tuple(float(t) for t in range(5, 65, 5))
    curve = Curve(ts, tuple(0.5 + 0.25 * (1 - 0.97 ** t) for t in ts))
    cut = Curve(curve.wall_s[:6], curve.auc[:6])
    early = loss("capped", best_auc=cut.best(), ran_s=30.0, curve=cut)
    late = loss("timeout", best_auc=curve.best(), ran_s=60.0, curve=curve)
    assert early > 30.0 and late > 60.0
    assert 0.5 < early / late < 2.0


def test_a_target_rule_stop_is_told_as_a_miss_that_ran_to_the_limit() -> None:
    """Told at its stop time, a hopeless trial stopped at 30 s would come out ahead of a near miss that ran
    on to the limit; told as having run to the limit it does not, and it still ranks by its gap."""
    ts = (10.0, 20.0, 30.0)
    hopeless = Curve(ts, (0.70, 0.72, 0.73))  # 0.06 short at 30 s, rising 1.5e-3/s
    near = Curve(tuple(float(t) for t in range(10, 101, 10)), tuple(0.78 + 0.0008 * k for k in range(10)))
    told_near = loss("timeout", best_auc=near.best(), ran_s=100.0, curve=near)
    at_stop = loss("capped", best_auc=0.73, ran_s=30.0, curve=hopeless)
    for_limit = loss("capped", best_auc=0.73, ran_s=30.0, curve=hopeless, stopped_for_limit=True)
    assert at_stop < told_near < for_limit
    assert for_limit == censored_loss(LIMIT, 0.73, hopeless.rate(), TARGET, LIMIT)
    closer = Curve(ts, (0.74, 0.76, 0.77))
    assert loss("capped", best_auc=0.77, ran_s=30.0, curve=closer, stopped_for_limit=True) < for_limit


@pytest.mark.parametrize("status", ["failed", "diverged"])
def test_failures_rank_below_every_miss(status: str) -> None:
    worst_miss = loss("timeout", best_auc=0.5, ran_s=LIMIT, curve=Curve((LIMIT,), (0.5,)))
    assert loss(status) == FAIL_FACTOR * LIMIT > worst_miss


def test_auc_objective() -> None:
    def auc(status: str, best: float | None) -> float:
        return trial_loss("auc", status, best_auc=best, time_to_target_s=None, ran_s=10.0, curve=Curve(),
                          target=None, limit_s=LIMIT)

    assert auc("completed", 0.77) == -0.77
    assert auc("failed", 0.77) == 0.0
    assert auc("failed", None) > auc("completed", 0.5) > auc("completed", 0.77)


def test_capping_waits_for_an_incumbent_and_spares_trials_that_reached() -> None:
    pol = StopPolicy(cap_margin=0.2)
    assert cap_time(None, pol) is None and trial_limit(100.0, None, pol) == 100.0
    assert trial_limit(100.0, 30.0, pol) == pytest.approx(36.0)
    assert cap_reason(37.0, False, 30.0, pol) is not None
    assert "adaptive capping" in cap_reason(37.0, False, 30.0, pol)
    assert cap_reason(35.0, False, 30.0, pol) is None  # within the margin
    assert cap_reason(99.0, True, 30.0, pol) is None  # reached the target: never capped
    assert cap_reason(99.0, False, 30.0, StopPolicy(capping=False)) is None


def test_median_stopping_rule() -> None:
    pol = StopPolicy(median=True, median_grace=0.25, median_min_peers=3)
    peers = [Curve((10.0, 20.0), (0.70, 0.75)), Curve((10.0, 20.0), (0.72, 0.76)), Curve((10.0,), (0.74,))]
    slow = Curve((10.0, 20.0), (0.60, 0.65))
    good = Curve((10.0, 20.0), (0.73, 0.77))
    assert median_reason(slow, 20.0, peers, ref_s=40.0, policy=pol).startswith("median stopping")
    assert median_reason(good, 20.0, peers, ref_s=40.0, policy=pol) is None
    assert median_reason(slow, 5.0, peers, ref_s=40.0, policy=pol) is None  # grace period
    assert median_reason(slow, 20.0, peers[:2], ref_s=40.0, policy=pol) is None  # too few peers
    assert median_reason(slow, 20.0, peers, ref_s=40.0, policy=StopPolicy()) is None  # off by default
