"""``bench default-sweep``: README command 1 per seed through the real CLI (here on the training surrogate, so
it takes seconds), its figures read back from the stores it kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcdlrm.bench import default_sweep
from hpcdlrm.sweep.config import SURROGATE_ENTRY
from hpcdlrm.sweep.store import load_sweep
from hpcdlrm.train.result import Status


@pytest.mark.slow  # ~10 s: two surrogate sweeps of 3 trials
def test_figures_match_the_stores_of_the_sweeps_it_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--seeds", "2", "--first-seed", "3", "--keep", str(tmp_path),
            "--", "--entry", SURROGATE_ENTRY, "--budget", "3", "--poll", "0.2"]
    assert default_sweep.main(argv) == 0
    rows = {r["metric"]: r for r in (json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{"))}
    hits, ttts, seconds = [], [], []
    for seed in (3, 4):
        data = load_sweep(tmp_path / f"seed-{seed}")
        done = sorted((t for t in data.trials if t.ended_at is not None), key=lambda t: (t.ended_at, t.id))
        assert len(done) == 3
        hits.append(next((i + 1 for i, t in enumerate(done) if t.status is Status.REACHED_TARGET), None))
        seconds.append([t.params for t in done if t.id == 2])
        ttts += [min((t.time_to_target_s for t in done if t.time_to_target_s is not None), default=None)]
    assert seconds[0] != seconds[1]  # each seed its own sweep (trial 1 is the recipe in both)
    assert rows["default_sweep_target_within_4_finished"]["value"] == sum(h is not None for h in hits)
    found = [t for t in ttts if t is not None]
    assert rows["default_sweep_incumbent_ttt_ge_5s"]["value"] == sum(t >= 5.0 for t in found)
    if found:
        assert rows["default_sweep_incumbent_ttt_ge_5s"]["range_s"] == [round(min(found), 2), round(max(found), 2)]
    assert rows["default_sweep_importance_first"]["value"] >= 1


def test_a_failing_sweep_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        default_sweep.main(["--seeds", "1", "--keep", str(tmp_path), "--", "--budget", "0"])
    assert "--budget" in str(e.value) and "exited 2" in str(e.value)
