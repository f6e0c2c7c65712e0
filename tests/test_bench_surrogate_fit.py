"""``bench surrogate-fit``: each landscape of the training surrogate against sweeps' trials. The sweeps here
are of the surrogate itself (its DESIGNED landscape, as a real trial process), so DESIGNED must agree on
every divergence their runs decided."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcdlrm.bench import surrogate_fit
from hpcdlrm.bench.__main__ import main as bench
from hpcdlrm.sweep.config import SURROGATE_ENTRY
from hpcdlrm.sweep.surrogate import Landscapes
from hpcdlrm.train.config import TrainConfig
from hpcdlrm.train.result import Status


def test_spearman_ranks_with_ties() -> None:
    assert surrogate_fit.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert surrogate_fit.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert surrogate_fit.spearman([1, 1, 2, 3], [5, 5, 6, 7]) == pytest.approx(1.0)
    assert surrogate_fit.spearman([1, 2], [1, 2]) != surrogate_fit.spearman([1, 2], [1, 2])  # nan: too few


def test_fit_counts_each_kind_of_disagreement() -> None:
    lamb = dict(dense_optimizer="lamb", batch_size=2048, warmup_steps=200, sparse_lr=10.0)
    blows_on_fitted_only = TrainConfig(lr=0.3, **lamb)  # type: ignore[arg-type]
    fine = TrainConfig(lr=0.02, **lamb)  # type: ignore[arg-type]
    trials = [(blows_on_fitted_only, Status.DIVERGED, 0.6, 0), (blows_on_fitted_only, Status.COMPLETED, 0.7, 1),
              (fine, Status.COMPLETED, 0.78, 0), (fine, Status.DIVERGED, 0.6, 1)]
    capped = (fine, Status.CAPPED, 0.7, 2)  # stopped early: whether it would have diverged is not known
    assert surrogate_fit.fit([*trials, capped], Landscapes.FITTED) | {"auc_spearman": 0} == {
        "agree": 2, "both": 1, "neither": 1, "real_only": 1, "sim_only": 1, "auc_pairs": 1, "auc_spearman": 0}
    assert surrogate_fit.fit(trials, Landscapes.DESIGNED)["real_only"] == 2


@pytest.mark.slow  # ~10 s: two short sweeps of surrogate trial processes
def test_designed_landscape_predicts_its_own_sweeps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hpcdlrm.bench import sweep_real
    # SGD's lr to 3: seeds 4 and 5 draw a point that blows up on the designed landscape too, and 4 trials
    # that decide their fate (the others are capped)
    argv = ["--json", "--entry", SURROGATE_ENTRY, "--seeds", "2", "--first-seed", "4", "--budget", "8",
            "--parallel", "2", "--methods", "random", "--keep", str(tmp_path)]
    assert sweep_real.main(argv) == 0
    capsys.readouterr()
    sweeps = sorted(str(d) for d in tmp_path.iterdir())
    assert bench(["surrogate-fit", "--json", *sweeps]) == 0
    rows = {r["metric"]: r for r in (json.loads(x) for x in capsys.readouterr().out.splitlines())}
    designed, fitted = rows["surrogate_fit_designed"], rows["surrogate_fit_fitted"]
    assert designed["trials"] == sum(1 for d in sweeps for _ in (Path(d) / "trials").iterdir())
    assert designed["value"] == designed["decided"] == designed["both"] + designed["neither"]  # all agreed
    assert designed["both"] == designed["real_diverged"] and designed["sweeps"] == 2
    assert designed["decided"] >= 3 and designed["auc_pairs"] >= 1
    assert (fitted["decided"], fitted["trials"]) == (designed["decided"], designed["trials"])


def test_a_folder_that_is_not_a_sweep_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench(["surrogate-fit", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "nothing") in err
