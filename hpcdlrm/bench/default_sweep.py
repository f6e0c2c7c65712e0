"""``python -m hpcdlrm.bench default-sweep [--json]``: README command 1's figures, over seeds.

Runs the default sweep once per seed exactly as a user does (``python -m hpcdlrm.sweep --seed S``, a
subprocess; only ``--out`` and ``--no-report`` added) and reads its store: the incumbent's time to target
(seconds of training), at which finished trial (completion order) the target was first reached, whether the
recipe (trial 1, the space's defaults) reached it, the sweep's wall-clock, and the parameter the report's
fANOVA ranks first. Figures (issue 17's goals): seeds whose incumbent needs >= 5 s of training, and seeds
that reach the target within the first 4 finished trials. Real training on this machine: 1-3 minutes per
seed on 2 cores; not a CI test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..report.extract import finished_in_order, incumbent
from ..report.importance import importance_info
from ..sweep.records import SweepData
from ..sweep.store import load_sweep
from ..train.result import Status
from ._util import emit

MIN_TTT_S = 5.0  # the goal: the schedule, not start-up or evaluation spacing, decides time to target
WITHIN = 4  # ...and the target is reached within this many finished trials


def summarize(data: SweepData) -> dict[str, Any]:
    """One default sweep's figures, from its store."""
    done = finished_in_order(data)
    hit = next((i + 1 for i, t in enumerate(done) if t.status is Status.REACHED_TARGET), None)
    best = incumbent(data) if hit is not None else None  # the sweep's own rule; None: none reached the target
    info = importance_info(data)
    first = None
    if info.fanova_mean is not None:
        first = info.names[max(range(len(info.names)), key=lambda i: info.fanova_mean[i])]
    starts = [t.submitted_at or t.started_at or t.ended_at for t in done]
    return {
        "trials": len(done), "first_hit": hit,
        "recipe_reached": any(t.id == 1 and t.status is Status.REACHED_TARGET for t in done),
        "incumbent": best.id if best else None, "incumbent_ttt_s": best.time_to_target_s if best else None,
        "beat_recipe": best is not None and best.id != 1,
        "sweep_s": (max(t.ended_at or 0.0 for t in done) - min(starts)) if done else 0.0,  # type: ignore[type-var]
        "importance_first": first, "target": data.info.target_auc,
    }


def run_seed(seed: int, out: Path, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "hpcdlrm.sweep", "--seed", str(seed), "--out", str(out), "--no-report", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return summarize(load_sweep(out))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m hpcdlrm.bench default-sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--seeds", type=int, default=10, help="sweeps [10]")
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed.. [0]")
    p.add_argument("--keep", help="keep the sweep directories under this folder [a temporary folder, removed]")
    p.add_argument("sweep_args", nargs=argparse.REMAINDER,
                   help="after --: more options for python -m hpcdlrm.sweep (e.g. --optimizer TwoPointsDE)")
    a = p.parse_args(argv)
    extra = a.sweep_args[1:] if a.sweep_args[:1] == ["--"] else a.sweep_args
    if a.seeds < 1:
        print(f"error: --seeds {a.seeds}: at least 1", file=sys.stderr)
        return 2
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="hpcdlrm-default-sweep-"))
    t0 = time.perf_counter()
    runs = []
    try:
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            out = root / f"seed-{seed}"
            shutil.rmtree(out, ignore_errors=True)  # a fresh sweep each time (a kept one would resume)
            r = run_seed(seed, out, extra)
            runs.append(r)
            if not a.json:
                ttt = "none" if r["incumbent_ttt_s"] is None else f"{r['incumbent_ttt_s']:.1f} s"
                print(f"  seed {seed}: target {r['target']}, first reached at finished trial {r['first_hit']}, "
                      f"incumbent trial {r['incumbent']} ({ttt}; recipe reached: {r['recipe_reached']}), "
                      f"sweep {r['sweep_s']:.0f} s, fANOVA first: {r['importance_first']}", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    n = len(runs)
    ttts = [r["incumbent_ttt_s"] for r in runs if r["incumbent_ttt_s"] is not None]
    emit("default_sweep_incumbent_ttt_ge_5s", sum(t >= MIN_TTT_S for t in ttts), f"of {n} seeds", a.json,
         median_s=round(statistics.median(ttts), 2) if ttts else None,
         range_s=[round(min(ttts), 2), round(max(ttts), 2)] if ttts else None)
    emit("default_sweep_target_within_4_finished", sum(r["first_hit"] is not None and r["first_hit"] <= WITHIN
                                                       for r in runs), f"of {n} seeds", a.json,
         recipe_reached=sum(r["recipe_reached"] for r in runs), incumbent_not_recipe=sum(r["beat_recipe"] for r in runs))
    emit("default_sweep_seconds", round(statistics.median(r["sweep_s"] for r in runs), 1), "s (median)", a.json,
         range_s=[round(min(r["sweep_s"] for r in runs), 1), round(max(r["sweep_s"] for r in runs), 1)])
    firsts = Counter(r["importance_first"] for r in runs)
    top, count = firsts.most_common(1)[0]
    emit("default_sweep_importance_first", count, f"of {n} seeds", a.json, param=top,
         all=",".join(f"{k}:{v}" for k, v in firsts.most_common()))
    emit("default_sweep_bench_runtime", round(time.perf_counter() - t0, 1), "s", a.json)
    return 0
