"""``python -m hpcdlrm.bench false-stops SWEEP_DIR... [--json]``: the learning-curve rule's false stops, on real runs.

For every trial a sweep stopped by a curve rule (``learning curve: ...``, ``target projection: ...``, ``lr
decayed to 0: ...``, ``decay lift: ...``), train it again with the very ``TrainConfig`` it ran
(``trials/NNNN/trial.json``) up to the time that mattered when it was stopped, with nothing stopping it: the
incumbent's cap named in the reason (the target rule: the trial's time limit; the frozen and decay-lift
rules, which say it would never reach the target: the time limit it was given). A *false stop* is a re-run
that reaches the target within that time: the rule stopped a trial that would have become (or tied) the
incumbent. The surrogate's count
is ``bench sweep``'s ``sweep_curve_false_stop_rate``; this is the same on real training.

Re-runs go ``--parallel`` at a time (default 2: as the default sweep's trials ran), each with the trial's own
thread count, so run it on a quiet machine; time to target is also compared in samples (the re-run's samples
to target against what the stopped trial would have trained by that time at its own measured speed), which
does not depend on the machine's speed. ``python -m hpcdlrm.bench default-sweep --keep DIR`` makes sweeps to
check.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..sweep.config import SweepConfig
from ..sweep.policy import CURVE_REASON, FROZEN_REASON, HORIZON_TEXT, LIFT_REASON, rule_of
from ..sweep.records import SweepData
from ..sweep.store import Store, load_sweep
from ..sweep.template import entry_options, resolve_entry
from ..train.config import TrainConfig, parse_overrides
from ..train.result import RunResult, Status
from ._util import emit

# The time the stop was judged against, as the policy's reasons write it.
HORIZON = {rule: re.compile(rf"after {re.escape(text)} ([0-9.]+) s") for rule, text in HORIZON_TEXT.items()}
NEVER = (FROZEN_REASON, LIFT_REASON)  # rules that say "never": re-run to the limit the trial was given
NAMES = {CURVE_REASON: "curve", FROZEN_REASON: "frozen", LIFT_REASON: "decay_lift"}  # else target_rule


@dataclass(frozen=True)
class Stop:
    sweep: str
    trial_id: int
    rule: str
    horizon_s: float  # the cap (or limit) the projection said it would miss
    incumbent_s: float | None  # the curve rule: the incumbent's time to target then (cap / (1 + margin))
    stopped_at_s: float  # training seconds when it was stopped
    speed: float | None  # its measured samples/s
    config: dict[str, Any]
    entry: str  # what the sweep's trials ran (the trainer; tests: the surrogate) and its own options
    options: dict[str, Any]


def stops_of(sweep_dir: Path, data: SweepData) -> list[Stop]:
    """The trials of one sweep that a projection rule stopped, with what is needed to re-run them."""
    with Store(sweep_dir, readonly=True) as st:
        cfg = SweepConfig.from_dict(st.sweep_config() or {})
    _, options = parse_overrides(list(cfg.train_args), where=f"{sweep_dir}: train flags",
                                 extra=entry_options(cfg.entry))
    out = []
    for t in data.trials:
        if t.status is not Status.CAPPED or not t.reason:
            continue
        rule = rule_of(t.reason)
        if rule not in HORIZON and rule not in NEVER:
            continue
        m = HORIZON[rule].search(t.reason) if rule in HORIZON else None
        limit = t.max_time_s or cfg.limit_s
        record = sweep_dir / "trials" / f"{t.id:04d}" / "trial.json"
        if (m is None and rule in HORIZON) or not record.exists():
            raise ConfigError(f"{record}: trial {t.id} stopped by the {rule} rule but "
                              + ("its reason names no horizon" if record.exists() else "its trial.json is missing"))
        speeds = [p.value for p in data.metrics if p.trial_id == t.id and p.name == "samples_per_s"]
        ran = [p.wall_s for p in data.metrics if p.trial_id == t.id and p.name == "auc"]
        horizon = float(m.group(1)) if m is not None else float(limit)
        incumbent = horizon / (1.0 + cfg.cap_margin) if rule == CURVE_REASON else None
        out.append(Stop(str(sweep_dir), t.id, rule, horizon, incumbent, max(ran) if ran else 0.0,
                        statistics.median(speeds) if speeds else None, json.loads(record.read_text())["config"],
                        cfg.entry, options))
    return out


def rerun(stop: Stop, out: str) -> dict[str, Any]:
    """Train the stopped trial's config again up to its horizon, nothing stopping it but the target (in a
    worker process, as a trial runs)."""
    cfg = TrainConfig.from_dict({**stop.config, "out": out, "max_time": round(stop.horizon_s + 0.05, 2),
                                 "checkpoint_every": None})
    r: RunResult = resolve_entry(stop.entry)(cfg, **stop.options)
    return {"status": r.status.value, "time_to_target_s": r.time_to_target_s,
            "samples_to_target": r.samples_to_target, "best_auc": r.best_auc, "wall_s": r.wall_s}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m hpcdlrm.bench false-stops", description=__doc__.split("\n\n")[0])
    p.add_argument("sweeps", nargs="+", help="sweep directories (each with sweep.sqlite and trials/)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--parallel", type=int, default=2, help="re-runs at a time [2]")
    a = p.parse_args(argv)
    if a.parallel < 1:
        print(f"error: --parallel {a.parallel}: at least 1", file=sys.stderr)
        return 2
    stops: list[Stop] = []
    for d in map(Path, a.sweeps):  # every sweep is read (and refused) before anything runs
        stops += stops_of(d, load_sweep(d))
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpcdlrm-false-stops-") as tmp, cf.ProcessPoolExecutor(
            a.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(rerun, s, f"{tmp}/{i}"): s for i, s in enumerate(stops)}
        for fut in cf.as_completed(futures):
            s, r = futures[fut], fut.result()
            ttt, samples = r["time_to_target_s"], r["samples_to_target"]
            false_time = ttt is not None and ttt <= s.horizon_s
            false_samples = samples is not None and s.speed is not None and samples <= s.speed * s.horizon_s
            beats = ttt is not None and s.incumbent_s is not None and ttt < s.incumbent_s
            rows.append((s, false_time, false_samples, beats))
            if not a.json:
                got = "not reached" if ttt is None else f"reached at {ttt:.1f} s / {samples} samples"
                print(f"  {Path(s.sweep).name} trial {s.trial_id} ({s.rule}, stopped at {s.stopped_at_s:.1f} s, "
                      f"horizon {s.horizon_s:.1f} s): re-run {got}, best AUC {r['best_auc']:.4f}"
                      + ("  <- FALSE STOP" if false_time or false_samples else "")
                      + (" (faster than the incumbent)" if beats else ""), flush=True)
    for rule in (*HORIZON, *NEVER):
        mine = [(f, fs) for s, f, fs, _ in rows if s.rule == rule]
        if not mine and rule != CURVE_REASON:
            continue
        name = NAMES.get(rule, "target_rule")
        emit(f"false_stops_{name}", sum(f for f, _ in mine), f"of {len(mine)} stops", a.json,
             by_samples=sum(fs for _, fs in mine), faster_than_incumbent=sum(b for s, *_, b in rows if s.rule == rule),
             rate=round(sum(f for f, _ in mine) / max(len(mine), 1), 4), sweeps=len(a.sweeps))
    emit("false_stops_bench_runtime", round(time.perf_counter() - t0, 1), "s", a.json, reruns=len(rows))
    return 0
