"""The real thing, end to end: a local sweep of the actual training engine on synthetic data, six
trials, two at a time. Every trial's parameters, curve and result must be in the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcdlrm.data.synth import ClickModelConfig, generate
from hpcdlrm.sweep.dataset import LAPTOP_TRAIN_ARGS, SYNTH_TABLES
from hpcdlrm.sweep.records import FINISHED
from hpcdlrm.sweep.store import load_sweep

pytestmark = pytest.mark.slow


def test_real_local_sweep_of_the_training_engine(tmp_path: Path) -> None:
    data = tmp_path / "data"
    m = generate(data, 100_000, eval_rows=20_000, seed=0, model=ClickModelConfig(table_sizes=SYNTH_TABLES))
    ceiling = m.synthetic["ceiling_auc"]["val"]
    out = tmp_path / "sweep"
    train = [a for a in LAPTOP_TRAIN_ARGS]
    train[train.index("--eval-every") + 1] = "25000"
    cmd = [sys.executable, "-m", "hpcdlrm.sweep", "--out", str(out), "--data", str(data), "--budget", "6",
           "--parallel", "2", "--time", "1", "--no-report", "--", *train]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    sweep = load_sweep(out)
    assert sweep.info.target_auc == pytest.approx(0.5 + 0.6 * (ceiling - 0.5), abs=1e-4)
    assert len(sweep.trials) == 6
    # asynchronous: every later trial is submitted within a poll of SOME trial ending (never a whole
    # batch), and no more than --parallel were ever in flight
    ends = [t.ended_at for t in sweep.trials]
    for t in sweep.trials[2:]:
        assert any(0 <= t.submitted_at - e < 3.0 for e in ends), (t.id, t.submitted_at, ends)
        assert sum(u.submitted_at <= t.submitted_at < u.ended_at for u in sweep.trials) <= 2
    for t in sweep.trials:
        assert t.status in FINISHED and t.status != "failed", (t.id, t.status, t.reason)
        assert set(t.params) == set(sweep.info.space) and t.objective is not None
        assert t.config is not None and t.config["data"] == str(data) and t.config["max_time"] > 0
        assert t.config["eval_every"] == 25000 and t.config["lr"] == t.params["lr"]  # flags after -- and the point
        curve = [mp for mp in sweep.metrics if mp.trial_id == t.id and mp.name == "auc"]
        assert curve and all(0.0 <= mp.value <= 1.0 for mp in curve)
        if t.status != "capped":  # a capped trial may be stopped before it writes its result
            assert t.result is not None and t.result["config"]["lr"] == t.params["lr"]
            assert t.result["env"]["ranks"] == 1 and t.samples_per_s and t.samples_per_s > 0
