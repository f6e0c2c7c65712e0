"""``bench false-stops``: the trials a real sweep's learning-curve rule stopped, re-run to the incumbent's cap.
Here the sweep's trials are the training surrogate (seconds), whose curves are known exactly, so the count
the benchmark prints is checked against the surrogate's own answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcdlrm.bench import false_stops
from hpcdlrm.errors import ConfigError
from hpcdlrm.sweep.__main__ import main as sweep_main
from hpcdlrm.sweep.config import SURROGATE_ENTRY
from hpcdlrm.sweep.store import load_sweep
from hpcdlrm.sweep.surrogate import outcome, simulate
from hpcdlrm.train.config import TrainConfig
from hpcdlrm.train.result import Status


@pytest.mark.slow  # ~15 s: a 10-trial surrogate sweep, then its stopped trials again
def test_false_stops_match_the_surrogates_own_curves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    assert sweep_main(["--out", str(out), "--entry", SURROGATE_ENTRY, "--no-report", "--budget", "10",
                       "--parallel", "2", "--poll", "0.1", "--seed", "1"]) == 0
    capsys.readouterr()
    stopped = [t for t in load_sweep(out).trials if t.status is Status.CAPPED and (t.reason or "").startswith(
        false_stops.CURVE_REASON)]
    assert stopped, "the sweep made no learning-curve stop to check"
    truth: dict[str, int] = {}
    beats = 0
    stops = false_stops.stops_of(out, load_sweep(out))
    for s in stops:
        cfg = TrainConfig.from_dict(s.config)
        end = outcome(simulate(cfg, seed=cfg.seed, eval_every=cfg.eval_every or 60_000), cfg.target_auc, None)
        ttt = end["time_to_target_s"]
        truth[s.rule] = truth.get(s.rule, 0) + (ttt is not None and ttt <= s.horizon_s)
        beats += s.rule == false_stops.CURVE_REASON and ttt is not None and ttt < s.horizon_s / 1.2  # default margin
        assert 0 < s.stopped_at_s <= s.horizon_s  # the rule stopped it before the cap it projected past
    assert false_stops.main([str(out), "--json"]) == 0
    rows = {r["metric"]: r for r in (json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{"))}
    row = rows["false_stops_curve"]
    assert row["unit"] == f"of {len(stopped)} stops" and row["value"] == truth[false_stops.CURVE_REASON]
    assert row["by_samples"] == truth[false_stops.CURVE_REASON] and row["faster_than_incumbent"] == beats
    for rule, n in truth.items():  # every rule's stops are re-run and counted under its own name
        got = rows[f"false_stops_{false_stops.NAMES.get(rule, 'target_rule')}"]
        assert got["value"] == n and got["unit"] == f"of {sum(s.rule == rule for s in stops)} stops"

def test_a_stop_without_its_trial_record_is_refused_before_any_rerun(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    assert sweep_main(["--out", str(out), "--entry", SURROGATE_ENTRY, "--no-report", "--budget", "6",
                       "--parallel", "2", "--poll", "0.1", "--seed", "1"]) == 0
    stops = false_stops.stops_of(out, load_sweep(out))
    assert stops
    (out / "trials" / f"{stops[0].trial_id:04d}" / "trial.json").unlink()
    first = stops[0]
    with pytest.raises(ConfigError, match=rf"trial.json: trial {first.trial_id} stopped by the {first.rule} rule"):
        false_stops.main([str(out)])
