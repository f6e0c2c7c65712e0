"""Pure extraction for the report: stored trials in, info records out, checked by equality."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpcdlrm.report import extract as ex
from hpcdlrm.report.params import param_table
from hpcdlrm.sweep.records import MetricPoint, SweepData, SweepInfo, Trial

SPACE = {"lr": {"kind": "log", "low": 1e-3, "high": 1e-1}, "bs": {"kind": "choice", "choices": ["a", "b"]}}


def tiny_sweep(objective: str = "time_to_target", name: str = "tiny", created_at: float = 0.0) -> SweepData:
    """Four finished trials (completion order 2, 1, 3, 4) and one running."""
    trials = [
        Trial(1, "reached_target", {"lr": 0.01, "bs": "a"}, objective=100.0, best_auc=0.81, ended_at=50.0,
              samples_per_s=100.0, ranks=2),
        Trial(2, "capped", {"lr": 0.001, "bs": "b"}, objective=500.0, best_auc=0.79, ended_at=30.0,
              samples_per_s=120.0, ranks=2),
        Trial(3, "failed", {"lr": 0.5, "bs": "c", "seed": 7}, objective=1200.0, best_auc=None, ended_at=70.0,
              ranks=8, nodes=4),
        Trial(4, "reached_target", {"lr": 0.02, "bs": "a"}, objective=80.0, best_auc=0.805, ended_at=90.0,
              samples_per_s=180.0, ranks=4, nodes=2),
        Trial(5, "running", {"lr": 0.03, "bs": "b"}),
    ]
    metrics = [
        MetricPoint(1, 2, 200, 20.0, "auc", 0.81),
        MetricPoint(1, 1, 100, 10.0, "auc", 0.75),
        MetricPoint(1, 1, 100, 10.0, "loss", 0.46),
        MetricPoint(5, 1, 100, 12.0, "auc", 0.70),
        MetricPoint(3, 1, 100, 5.0, "samples_per_s", 300.0),
        MetricPoint(3, 2, 200, 9.0, "samples_per_s", 340.0),
    ]
    info = SweepInfo(name, ["train"], SPACE, "TwoPointsDE", objective, 0.8, created_at)
    return SweepData(info, trials, metrics)


def test_history_info_orders_by_completion_and_tracks_the_best() -> None:
    h = ex.history_info(tiny_sweep())
    assert h.trial_ids == (2, 1, 3, 4)
    assert h.statuses == ("capped", "reached_target", "failed", "reached_target")
    assert h.values == (500.0, 100.0, 1200.0, 80.0)
    assert h.penalised == (False, False, True, False)
    assert h.best_so_far == (500.0, 100.0, 100.0, 80.0)  # the failed trial's penalty never counts as best
    assert h.target_after == 2
    assert (h.best_value, h.best_trial) == (80.0, 4)
    assert h.objective == ex.Objective("time to target AUC 0.8", False, True)


def test_history_info_for_an_auc_objective_is_higher_is_better() -> None:
    h = ex.history_info(tiny_sweep("auc"))
    assert h.objective.higher_is_better and not h.objective.is_time
    assert h.values[:2] == (0.79, 0.81) and math.isnan(h.values[2])
    assert h.best_so_far == (0.79, 0.81, 0.81, 0.81)
    assert (h.best_value, h.best_trial) == (0.81, 1)


def test_running_best_is_nan_until_the_first_usable_value() -> None:
    out = ex.running_best([5.0, 3.0, 4.0], [False, True, True], higher_is_better=False)
    assert math.isnan(out[0]) and out[1:] == (3.0, 3.0)
    assert ex.running_best([], [], True) == ()


def test_convergence_info_groups_and_sorts_auc_points() -> None:
    c = ex.convergence_info(tiny_sweep())
    assert c.curves == (
        ex.Curve(1, "reached_target", (10.0, 20.0), (100.0, 200.0), (0.75, 0.81)),
        ex.Curve(5, "running", (12.0,), (100.0,), (0.70,)),
    )
    assert (c.target, c.incumbent, c.metric) == (0.8, 4, "auc")


def test_convergence_info_without_metrics_is_empty() -> None:
    data = tiny_sweep()
    data.metrics.clear()
    assert ex.convergence_info(data).curves == ()


def test_throughput_info_uses_stored_or_logged_rates() -> None:
    t = ex.throughput_info(tiny_sweep())
    assert t.trial_ids == (1, 2, 3, 4)
    assert t.samples_per_s == (100.0, 120.0, 320.0, 180.0)  # trial 3: mean of its logged points
    assert t.rank_levels == (2, 4, 8)
    assert t.median == (110.0, 180.0, 320.0)
    assert t.ideal == (110.0, 220.0, 440.0)


def test_param_table_encodes_log_choice_and_undeclared_params() -> None:
    data = tiny_sweep()
    table = param_table(data)
    assert table.names == ["lr", "bs", "seed"]
    lr, bs, seed = table.specs
    assert (lr.kind, bs.kind, seed.kind) == ("log", "choice", "float")
    np.testing.assert_allclose(table.X[:, 0], np.log10([0.01, 0.001, 0.5, 0.02, 0.03]))
    np.testing.assert_array_equal(table.X[:, 1], [0, 1, 2, 0, 1])  # "c" is not declared: appended
    assert bs.choices == ("a", "b", "c")
    assert (lr.low, lr.high) == pytest.approx((-3.0, math.log10(0.5)))  # widened to the trial outside
    assert np.isnan(table.X[0, 2]) and table.X[2, 2] == 7
    assert [lr.label(-2.0), bs.label(2.0), seed.label(7.0)] == ["0.01", "c", "7"]


def test_param_view_info_and_normalise() -> None:
    v = ex.param_view_info(tiny_sweep())
    assert v.trial_ids == (2, 1, 3, 4)
    assert v.penalised == (False, False, True, False)
    coords = ex.normalise(np.array(v.X, dtype=float), v.specs)
    np.testing.assert_allclose(coords[:, 1], [0.5, 0.0, 1.0, 0.0])  # choice index 1 of 0..2


def test_top_trials_and_incumbent_skip_penalised() -> None:
    data = tiny_sweep()
    assert [t.id for t in ex.top_trials(data, 10)] == [4, 1, 2]
    assert [t.id for t in ex.top_trials(data, 2)] == [4, 1]
    assert ex.incumbent(data).id == 4


def test_compare_info_tracks_each_sweep() -> None:
    a, b = tiny_sweep(name="a"), tiny_sweep(name="b", created_at=-3600.0)
    b.trials[3].status, b.trials[3].objective = "capped", 900.0
    c = ex.compare_info([a, b])
    assert [s.name for s in c.sweeps] == ["a", "b"]
    assert c.sweeps[0].best_so_far == (500.0, 100.0, 100.0, 80.0)
    assert c.sweeps[1].best_so_far == (500.0, 100.0, 100.0, 100.0)
    assert c.sweeps[0].hours == pytest.approx((30 / 3600, 50 / 3600, 70 / 3600, 90 / 3600))
    assert c.sweeps[1].hours[0] == pytest.approx(1 + 30 / 3600)
    assert (c.sweeps[0].target_after, c.sweeps[1].target_after) == (2, 2)
    assert not c.mixed_objectives
    assert ex.compare_info([a, tiny_sweep("auc")]).mixed_objectives
