"""Plumbing of ``bench sweep-real``: real driver sweeps per method (here of the training surrogate, so it takes
seconds), the space's defaults not suggested, the figures printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcdlrm.bench import sweep_real
from hpcdlrm.sweep.config import SURROGATE_ENTRY
from hpcdlrm.sweep.optim import DEFAULT_OPTIMIZER
from hpcdlrm.sweep.space import load_space
from hpcdlrm.sweep.store import load_sweep


@pytest.mark.slow  # ~12 s: six surrogate trial processes
def test_one_seed_per_method_through_the_real_driver(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--entry", SURROGATE_ENTRY, "--seeds", "1", "--first-seed", "4", "--budget", "2",
            "--parallel", "1", "--methods", "optimizer,random", "--keep", str(tmp_path)]
    assert sweep_real.main(argv) == 0
    rows = {r["metric"]: r for r in (json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{"))}
    for m in ("optimizer", "random"):
        r = rows[f"sweep_real_trials_to_target_{m}"]
        assert 1 <= r["value"] <= 3 and r["seeds"] == 1 and r["first_seed"] == 4 and r["target"] == 0.79
        assert r["per_seed"] == [r["value"]] and len(r["best_auc"]) == 1 and 0.5 < r["best_auc"][0] < 1
        sweep = load_sweep(tmp_path / f"{DEFAULT_OPTIMIZER if m == 'optimizer' else m}-s4")
        best = max(t.best_auc for t in sweep.trials)
        assert r["best_auc"][0] == round(best, 4)
    assert rows["sweep_real_trials_ratio_vs_random"]["value"] == pytest.approx(
        rows["sweep_real_trials_to_target_optimizer"]["value"] / rows["sweep_real_trials_to_target_random"]["value"],
        abs=1e-3)
    defaults = load_space().defaults()
    for name in (f"{DEFAULT_OPTIMIZER}-s4", "random-s4"):  # --first-seed 4: seed 4's sweeps only
        assert not (tmp_path / name.replace("s4", "s0")).exists()
        trials = load_sweep(tmp_path / name).trials
        assert len(trials) == 2 and all(t.params != defaults for t in trials)


@pytest.mark.slow  # ~6 s
def test_kept_sweeps_are_resumed_not_rerun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--entry", SURROGATE_ENTRY, "--seeds", "1", "--budget", "2", "--parallel", "1",
            "--methods", "random", "--keep", str(tmp_path)]
    assert sweep_real.main(argv) == 0
    first = capsys.readouterr().out
    before = [(t.id, t.ended_at) for t in load_sweep(tmp_path / "random-s0").trials]
    from hpcdlrm.bench import sweep as bench_sweep  # the spelling, `bench sweep --real`, is the same bench
    assert bench_sweep.main(["--real", *argv]) == 0
    assert [(t.id, t.ended_at) for t in load_sweep(tmp_path / "random-s0").trials] == before
    figure = [x for x in capsys.readouterr().out.splitlines() if "trials_to_target_random" in x]
    assert figure and figure[0] in first


@pytest.mark.slow  # ~10 s
def test_stopping_ratio_against_the_same_optimizer_without_early_stopping(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--entry", SURROGATE_ENTRY, "--seeds", "1", "--budget", "4", "--parallel", "2",
            "--methods", "optimizer", "--stopping", "--target-auc", "0.75", "--keep", str(tmp_path)]
    assert sweep_real.main(argv) == 0
    rows = {r["metric"]: r for r in (json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{"))}
    with_, without = load_sweep(tmp_path / f"{DEFAULT_OPTIMIZER}-s0"), load_sweep(tmp_path / "nostop-s0")
    assert not any(t.status.value == "capped" for t in without.trials)  # --no-capping: nothing stopped early
    assert [t.params for t in with_.trials][:2] == [t.params for t in without.trials][:2]  # same seed, same asks

    best = min(t.time_to_target_s for d in (with_, without) for t in d.trials if t.time_to_target_s is not None)

    def to_goal(data) -> float:  # type: ignore[no-untyped-def]
        start = min(t.submitted_at for t in data.trials)
        return min((t.ended_at - start for t in data.trials if t.status.value == "reached_target"
                    and t.time_to_target_s <= 1.5 * best), default=float("inf"))

    def wall(data) -> float:  # type: ignore[no-untyped-def]
        return max(t.ended_at for t in data.trials) - min(t.submitted_at for t in data.trials)

    row = rows["sweep_real_wallclock_ratio_stopping"]
    assert row["goal_s"] == round(1.5 * best, 2)
    never = to_goal(without) == float("inf")  # then it ran its whole wall-clock without: a lower bound
    assert row["with_s"] == round(to_goal(with_), 1)
    assert row["without_s"] == round(wall(without) if never else to_goal(without), 1) and row["censored"] == never
    cap = rows["sweep_real_wallclock_ratio_capping"]
    assert cap["with_s"] == round(wall(with_), 1) and cap["without_s"] == round(wall(without), 1)
    assert "sweep_real_trials_to_target_nostop" not in rows
