"""A plausible fake sweep (stored-record shape only) for demos, the report benchmark and tests.

Validation AUC follows a saturating curve whose ceiling peaks at a learning rate near 0.08 and rises
slightly with warm-up; too high a learning rate diverges; a few trials fail; trials that reach the target
stop there, the rest are capped by the sample budget. Four trials run at once, as with ``num_workers=4``.
"""

from __future__ import annotations

import math

import numpy as np

from hpcdlrm.sweep.records import MetricPoint, SweepData, SweepInfo, Trial

SPACE = {
    "lr": {"kind": "log", "low": 1e-3, "high": 1.0, "default": 0.03},
    "warmup_steps": {"kind": "int", "low": 0, "high": 8000, "default": 2000},
    "decay_start": {"kind": "int", "low": 10000, "high": 80000, "default": 40000},
    "decay_power": {"kind": "choice", "choices": [1, 2], "default": 2},
}
WORKERS = 4
CREATED_AT = 1_700_000_000.0


def _params(rng: np.random.Generator, best: dict[str, float] | None) -> dict[str, float]:
    """Random draws at first, then mostly perturbations of the incumbent, as an optimizer would."""
    if best is None or rng.random() < 0.3:
        return {
            "lr": float(10 ** rng.uniform(-3, 0)),
            "warmup_steps": int(rng.integers(0, 8001)),
            "decay_start": int(rng.integers(10000, 80001)),
            "decay_power": int(rng.choice([1, 2])),
        }
    return {
        "lr": float(np.clip(best["lr"] * 10 ** rng.normal(0, 0.2), 1e-3, 1.0)),
        "warmup_steps": int(np.clip(best["warmup_steps"] + rng.normal(0, 1500), 0, 8000)),
        "decay_start": int(np.clip(best["decay_start"] + rng.normal(0, 15000), 10000, 80000)),
        "decay_power": int(best["decay_power"] if rng.random() < 0.8 else 3 - best["decay_power"]),
    }


def _ceiling(p: dict[str, float], rng: np.random.Generator) -> float:
    q = math.exp(-(((math.log10(p["lr"]) + 1.1) / 0.55) ** 2))  # quality peaks at lr ~ 0.08
    return 0.7905 + 0.014 * q + 0.0025 * p["warmup_steps"] / 8000 + rng.normal(0, 4e-4)


def _trial(i: int, rng: np.random.Generator, n_points: int, target: float, start: float,
           best: dict[str, float] | None) -> tuple[Trial, list[MetricPoint]]:
    p = _params(rng, best if i >= 2 * WORKERS else None)
    nodes = int(rng.choice([1, 2, 4, 8]))
    ranks = 2 * nodes
    sps = 2.5e4 * ranks * 0.93 ** math.log2(ranks) * rng.lognormal(0, 0.05)
    budget = 4e7
    samples = np.linspace(budget / n_points, budget, n_points)
    ceil = _ceiling(p, rng)
    auc = 0.5 + (ceil - 0.5) * (1 - np.exp(-((samples / 4e6) ** 0.7)))
    status, keep = "capped", n_points
    if p["lr"] > 0.45:
        status, keep = "diverged", int(rng.integers(3, n_points // 3 + 4))
        auc[keep - 2:] = 0.5
    elif rng.random() < 0.06:
        status, keep = "failed", int(rng.integers(2, max(3, n_points // 2)))
    elif (auc >= target).any():
        status, keep = "reached_target", int(np.argmax(auc >= target)) + 1
    wall = samples[:keep] / sps
    top_auc = float(auc[:keep].max())
    ttt = float(wall[-1]) if status == "reached_target" else None
    slowest = budget / 5e4  # the sweep's time cap: the sample budget at the smallest rank count
    objective = ttt if ttt is not None else slowest * (1 + 100 * max(0.0, target - top_auc))
    if status in ("failed", "diverged"):
        objective = 4 * slowest
    trial = Trial(
        id=i, status=status, params=p, objective=objective, best_auc=top_auc, time_to_target_s=ttt,
        samples_per_s=float(sps), slurm_job_id=str(1000 + i), partition="cpu",
        hosts=[f"node{h:03d}" for h in range(nodes)],
        ranks=ranks, nodes=nodes, submitted_at=start - 30, started_at=start, ended_at=start + float(wall[-1]) + 20,
        reason={"failed": "node failure", "diverged": "loss is NaN"}.get(status),
    )
    seen = list(enumerate(zip(samples, wall, auc)))  # zip stops at the last evaluation the trial ran
    points = [MetricPoint(i, k, int(s), float(w), "auc", float(a)) for k, (s, w, a) in seen]
    points += [MetricPoint(i, k, int(s), float(w), "loss", float(0.47 - 0.35 * (a - 0.5))) for k, (s, w, a) in seen]
    return trial, points


def fake_sweep(n_trials: int = 30, n_points: int = 40, seed: int = 0, name: str = "demo",
               target: float = 0.8025) -> SweepData:
    """``n_trials`` finished trials of a time-to-target sweep, ``n_points`` AUC evaluations per full run."""
    rng = np.random.default_rng(seed)
    free = np.full(WORKERS, CREATED_AT + 60.0)  # when each of the WORKERS slots frees up
    trials: list[Trial] = []
    metrics: list[MetricPoint] = []
    for i in range(n_trials):
        slot = int(np.argmin(free))
        start = float(free[slot]) + 30
        done = [t for t in trials if (t.ended_at or math.inf) <= start and t.objective is not None]
        best = min(done, key=lambda t: t.objective or 0.0).params if done else None
        trial, points = _trial(i, rng, n_points, target, start, best)
        free[slot] = trial.ended_at or free[slot]
        trials.append(trial)
        metrics += points
    info = SweepInfo(name=name, command=["python", "-m", "hpcdlrm.train"], space=SPACE, optimizer="TwoPointsDE",
                     objective="time_to_target", target_auc=target, created_at=CREATED_AT)
    return SweepData(info, trials, metrics)
