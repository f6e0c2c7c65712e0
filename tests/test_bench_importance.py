"""The importance benchmark: the surrogate's true ranking, and its count of sweeps that rank it first."""

from __future__ import annotations

import json

import pytest

from hpcdlrm.bench import importance
from hpcdlrm.sweep.space import load_space
from hpcdlrm.sweep.surrogate import Landscapes


def test_the_surrogates_true_top_parameter_is_the_learning_rate() -> None:
    shares = importance.true_shares(load_space(), 0.79, 120.0, n=1500)
    assert max(shares, key=shares.get) == "lr"
    assert shares["lr"] > 1.3 * sorted(shares.values())[-2]  # by a margin, not by noise
    assert all(0.0 <= v <= 1.0 for v in shares.values())


def test_the_truth_is_the_landscapes_own() -> None:
    """DESIGNED: lr first, then where the decay starts. FITTED: a sparse lr past ~85 blows any run up, so it
    comes first there, and the batch, which there moves neither LAMB's edge nor much of SGD's optimum,
    matters little."""
    designed = importance.true_shares(load_space(), 0.79, 120.0, n=800)
    fitted = importance.true_shares(load_space(), 0.79, 120.0, n=800, landscape=Landscapes.FITTED)
    assert sorted(fitted, key=fitted.get)[-2:] == ["lr", "sparse_lr"]
    assert sorted(designed, key=designed.get)[-2:] == ["decay_start", "lr"]
    assert fitted["batch_size"] < designed["batch_size"] / 3
    data = importance.sweep(load_space(), "TwoPointsDE", 6, 2, 0.79, 120.0, seed=1, uniform=True,
                            landscape=Landscapes.FITTED)
    same = importance.sweep(load_space(), "TwoPointsDE", 6, 2, 0.79, 120.0, seed=1, uniform=True)
    assert [t.params for t in data.trials] == [t.params for t in same.trials]  # the same points...
    assert [t.objective for t in data.trials] != [t.objective for t in same.trials]  # ...judged on another landscape


def test_the_benchmark_counts_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert importance.main(["--json", "--seeds", "2", "--budget", "12", "--truth-samples", "300"]) == 0
    rows = {r["metric"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    top = rows["importance_top_first"]
    assert 0 <= top["value"] <= 2 and top["of"] == 2 and sum(top["firsts"].values()) == 2
    assert rows["importance_true_top"]["param"] in load_space().names


def test_uniform_trials_judge_the_estimator_alone(capsys: pytest.CaptureFixture[str]) -> None:
    data = importance.sweep(load_space(), "TwoPointsDE", 6, 2, 0.79, 120.0, seed=1, uniform=True)
    assert data.info.optimizer == "uniform" and [t.id for t in data.trials] == list(range(1, 7))
    assert data.trials[0].params != load_space().defaults()  # no known recipe first: an even sample
    assert importance.main(["--json", "--uniform", "--seeds", "1", "--budget", "8", "--truth-samples", "200"]) == 0
    rows = {r["metric"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["importance_top_first"]["trials"] == "uniform"
