"""``python -m hpcdlrm.bench surrogate-fit SWEEP... [--json]``: how well each surrogate landscape predicts real trials.

Reads real sweeps (``bench sweep-real --keep DIR`` keeps them: pass ``DIR/*``) and simulates every ended
trial's parameters on each of the surrogate's landscapes (``sweep.surrogate.Landscapes``; the k-th trial of
a point seen several times gets seed k, so repeats draw their own divergence edges as real repeats do).
Per landscape it prints how often the surrogate agrees on whether the trial diverged (with the counts of
each disagreement) over the trials whose run decided it (diverged, completed, or reached the target; one
stopped early or at its time limit might have diverged later), and the rank correlation (Spearman) of the
best AUC, real against simulated, over the trials that ran to their end in both (completed or reached
the target: a capped trial's AUC says where it was stopped, not where it was going). The surrogate's
time scale is its own, so AUCs are compared by rank, not value. Seconds; no training.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..report.importance import average_ranks
from ..sweep.space import space_from_dict
from ..sweep.store import load_sweep
from ..sweep.surrogate import Landscapes, simulate
from ..train.config import TrainConfig
from ..train.result import Status
from ._util import emit

RAN_TO_END = (Status.COMPLETED, Status.REACHED_TARGET)
DECIDED = (Status.DIVERGED, *RAN_TO_END)  # whether it diverges is known


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Rank correlation (ties take their mean rank); nan with fewer than 3 pairs."""
    if len(a) < 3:
        return math.nan
    return float(np.corrcoef(average_ranks(np.asarray(a, float)), average_ranks(np.asarray(b, float)))[0, 1])


def real_trials(sweeps: Sequence[Path]) -> list[tuple[TrainConfig, Status, float | None, int]]:
    """Every ended trial as (its config, status, best AUC, its repeat index among equal points)."""
    out: list[tuple[TrainConfig, Status, float | None, int]] = []
    seen: dict[str, int] = {}
    for d in sweeps:  # every sweep is read (and refused) before anything is simulated
        data = load_sweep(d)
        space = space_from_dict(data.info.space, f"{d}: the sweep's stored space")
        for t in data.trials:
            if t.ended_at is None or not t.params:
                continue
            key = repr(sorted(t.params.items()))
            seen[key] = seen.get(key, -1) + 1
            out.append((TrainConfig(**space.apply(t.params)), t.status, t.best_auc, seen[key]))
    return out


def fit(trials: Sequence[tuple[TrainConfig, Status, float | None, int]], landscape: Landscapes) -> dict[str, Any]:
    """Agreement on divergence and the best-AUC rank correlation of one landscape with ``trials``."""
    counts = {"both": 0, "neither": 0, "real_only": 0, "sim_only": 0}
    real_auc, sim_auc = [], []
    for h, status, auc, k in trials:
        run = simulate(h, seed=k, landscape=landscape)
        real_div, sim_div = status is Status.DIVERGED, run.diverged_at_s is not None
        if status in DECIDED:
            counts[{(True, True): "both", (False, False): "neither", (True, False): "real_only",
                    (False, True): "sim_only"}[(real_div, sim_div)]] += 1
        if status in RAN_TO_END and not sim_div and auc is not None:
            real_auc.append(auc)
            sim_auc.append(float(run.auc.max()))
    return {"agree": counts["both"] + counts["neither"], **counts, "auc_pairs": len(real_auc),
            "auc_spearman": round(spearman(real_auc, sim_auc), 3)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m hpcdlrm.bench surrogate-fit", description=__doc__.split("\n\n")[0])
    p.add_argument("sweeps", nargs="+", help="real sweep directories (each with sweep.sqlite and trials/)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    trials = real_trials([Path(s) for s in a.sweeps])
    diverged = sum(s is Status.DIVERGED for _, s, _, _ in trials)
    decided = sum(s in DECIDED for _, s, _, _ in trials)
    for landscape in Landscapes:
        row = fit(trials, landscape)
        emit(f"surrogate_fit_{landscape.name.lower()}", row["agree"], f"of {decided} trials agree on divergence",
             a.json, decided=decided, trials=len(trials), real_diverged=diverged, sweeps=len(a.sweeps),
             **{k: v for k, v in row.items() if k != "agree"})
    return 0
