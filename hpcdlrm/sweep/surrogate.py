"""A cheap stand-in for a DLRM training run: AUC-vs-time curves shaped by the hyper-parameters.

Used by the sweep benchmark (thousands of simulated trials) and as a *real* trial process in tests
and demos (``--entry hpcdlrm.sweep.surrogate:run`` takes the trial's ``TrainConfig``, as
``hpcdlrm.train.run`` does, and writes the same metrics.jsonl/result.json a training run writes, in
scaled real time, returning the same ``RunResult``). It is a model, not data:

* throughput rises with the batch and saturates; LAMB costs ~15 % per step;
* progress per step peaks when the lr matches an optimum that grows with sqrt(batch) (``Landscapes``:
  DESIGNED puts LAMB's 10x lower than SGD's, FITTED 40x, as real runs had it), and falls off on
  both sides in log space; the embeddings' lr (``--sparse-lr``, sparse SGD) has its own optimum
  near 20 whatever the dense optimizer (measured on the laptop default: sparse lr 20 with LAMB at
  0.03 reaches 60 % of the gap in ~11 s; 0.01-1 never does within 40 s);
* a large batch needs fewer steps but generalises slightly worse;
* the lr in use sets a noise floor below the ceiling: decaying it late lifts the plateau, decaying
  too early stalls learning; warm-up slows the start (DESIGNED: and lets a high lr survive; no warm-up
  and a high lr diverges);
* a run diverges past its landscape's edge of the dense lr (FITTED: and of the sparse lr, each edge
  drawn per run);
* noise: per run (seed) on the plateau and throughput, per evaluation on the AUC (an evaluation of a
  model that has not changed since the last one, its lr at 0, repeats its value).
"""

from __future__ import annotations

import argparse
import math
import signal
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from .. import env
from ..io import append_jsonl
from ..train.config import TrainConfig
from ..train.result import RunResult, Status

CEILING = 0.80
SAMPLES_PER_EPOCH = 3_000_000
EPOCHS = 2.0
SPARSE_LR_OPT = 20.0


@dataclass(frozen=True)
class Landscape:
    """Where each dense optimizer learns fastest and where a run blows up."""

    lr_opt: tuple[tuple[str, float], ...]  # optimizer -> dense lr of fastest progress at batch 4096
    diverge_at: tuple[tuple[str, float], ...]  # optimizer -> the dense lr's edge, in lr_opt at batch 4096
    batch_power: float  # lr_opt grows as batch**0.5; the edge as batch**batch_power
    warmup_relief: float  # the edge is x (1 + this * sqrt(warm-up steps / 50))
    sparse_edge: float = math.inf  # a sparse lr above this diverges too
    spread: tuple[float, float] = (0.0, 0.0)  # per-run lognormal spread of the (dense, sparse) edge

    def optimum(self, opt: str, batch: int) -> float:
        return dict(self.lr_opt).get(opt, 0.1) * math.sqrt(batch / 4096)

    def diverges(self, h: TrainConfig, rng: np.random.Generator) -> bool:
        """Whether this run blows up (the per-run draws of its edges come from ``rng``)."""
        opt = h.dense_optimizer
        relief = 1.0 + self.warmup_relief * math.sqrt(h.warmup_steps / 50)
        at_4096 = dict(self.diverge_at).get(opt, 8.0) * dict(self.lr_opt).get(opt, 0.1)
        edge = at_4096 * (h.batch_size / 4096) ** self.batch_power * relief
        dense, sparse = rng.lognormal(0.0, self.spread[0]), rng.lognormal(0.0, self.spread[1])
        return h.lr > edge * dense or h.effective_sparse_lr > self.sparse_edge * sparse


class Landscapes(Enum):
    """The surrogate's landscapes. DESIGNED: the one every ``bench sweep`` figure on record was measured on.
    FITTED: its lr optima and divergence edges fitted to the default task's real sweeps (``bench sweep-real
    --keep``: 192 distinct points, 302 trials, 104 diverged; ``bench surrogate-fit`` checks a landscape
    against such sweeps). There SGD learned best at lr 0.5-1.8 whatever the batch (DESIGNED: 0.15-0.42) and
    never diverged from its dense lr (to 3, the space's top); LAMB diverged from ~0.06-0.16 on, the same
    point in one sweep and not another, warm-up or not (173-182 warm-up steps did not save lr 0.10-0.12;
    DESIGNED: from 0.23-0.64, 3x later with 200 warm-up steps); any run diverged once its sparse lr passed
    ~90 (none of 13 above 93 survived, all below 76 did; DESIGNED: never)."""

    DESIGNED = Landscape(lr_opt=(("sgd", 0.3), ("lamb", 0.03), ("adagrad", 0.1)),
                         diverge_at=(("sgd", 6.0), ("lamb", 15.0), ("adagrad", 8.0)), batch_power=0.5,
                         warmup_relief=1.0)
    FITTED = Landscape(lr_opt=(("sgd", 1.2), ("lamb", 0.03), ("adagrad", 0.1)),
                       diverge_at=(("sgd", 5.0), ("lamb", 3.0), ("adagrad", 10.0)), batch_power=0.0,
                       warmup_relief=0.0, sparse_edge=85.0, spread=(0.3, 0.08))


@dataclass(frozen=True)
class SimRun:
    wall_s: np.ndarray  # evaluation times (training seconds)
    samples: np.ndarray
    steps: np.ndarray
    auc: np.ndarray
    samples_per_s: float
    diverged_at_s: float | None


def _gain(x: np.ndarray | float) -> Any:
    """1 at x = 1, symmetric in log x: the relative speed of learning at lr / optimal lr = x."""
    return 2.0 * x / (1.0 + x * x)


def lr_schedule(h: TrainConfig, steps: np.ndarray) -> np.ndarray:
    """Linear warm-up, constant, polynomial (power 2) decay to zero: the train's schedule."""
    lr = np.full(steps.shape, h.lr, float)
    if h.warmup_steps > 0:
        lr *= np.minimum(1.0, (steps + 1) / h.warmup_steps)
    if h.decay_steps > 0:
        start = max(h.decay_start, h.warmup_steps)
        frac = np.clip((steps - start) / h.decay_steps, 0.0, 1.0)
        lr *= (1.0 - frac) ** 2
    return lr


def simulate(h: TrainConfig, *, seed: int = 0, eval_every: int = 60_000,
             samples_total: int = int(EPOCHS * SAMPLES_PER_EPOCH),
             landscape: Landscapes = Landscapes.DESIGNED) -> SimRun:
    """The whole curve of one run (vectorised over steps), evaluated every ``eval_every`` samples."""
    rng = np.random.default_rng(seed)
    b = int(h.batch_size)
    opt = h.dense_optimizer
    sps = 60_000.0 * b / (b + 1500.0) * (0.85 if opt == "lamb" else 1.0) * rng.lognormal(0, 0.03)
    lr_opt = landscape.value.optimum(opt, b)
    n_steps = max(1, samples_total // b)
    steps = np.arange(n_steps)
    r = lr_schedule(h, steps) / lr_opt
    sched = r * lr_opt / max(h.lr, 1e-12)  # the schedule's multiplier (warm-up, decay); both lrs follow it
    rs = h.effective_sparse_lr * sched / (SPARSE_LR_OPT * math.sqrt(b / 4096))
    progress = np.cumsum(_gain(r) * (0.4 + 0.6 * _gain(rs)))
    e0 = 150.0 * (1024.0 / b) ** 0.6
    plateau = (CEILING - 0.0015 * math.log2(b / 1024) + rng.normal(0, 0.0007)
               - 0.006 * np.minimum(r, 3.0))
    auc_steps = 0.5 + (plateau - 0.5) * (1.0 - np.exp(-progress / e0))

    ev_samples = np.arange(eval_every, n_steps * b + 1, eval_every)
    ev_steps = np.minimum(ev_samples // b, n_steps) - 1
    wall = ev_samples / sps
    auc = auc_steps[ev_steps] + rng.normal(0, 0.0004, len(ev_steps))
    # A model whose lr stayed 0 since the last evaluation has not changed: evaluating the same weights on
    # the same validation set repeats that AUC, it draws no new noise (which would let a frozen model
    # "reach" a target by luck).
    trained = np.concatenate(([0], np.cumsum(r > 0)))  # steps with a nonzero lr, before each step
    changed = np.diff(trained[ev_steps + 1], prepend=-1) > 0
    auc = auc[np.maximum.accumulate(np.where(changed, np.arange(len(auc)), 0))]
    diverged = None
    if landscape.value.diverges(h, rng):  # its draws come last: the curve's noise is the same either way
        blow = max(h.warmup_steps, 20) * b / sps  # it blows up around the end of the warm-up
        keep = wall < blow
        wall, ev_samples, ev_steps, auc = wall[keep], ev_samples[keep], ev_steps[keep], 0.5 + 0.3 * (auc[keep] - 0.5)
        diverged = blow
    return SimRun(wall, ev_samples, ev_steps + 1, np.asarray(auc), sps, diverged)


def outcome(run: SimRun, target: float | None, max_time: float | None) -> dict[str, Any]:
    """How a run ends under a target and a time limit: the result.json fields a trial reports."""
    limit = math.inf if max_time is None else max_time
    within = run.wall_s <= limit
    wall, auc = run.wall_s[within], run.auc[within]
    hit = np.flatnonzero(auc >= target) if target is not None else np.array([], int)
    if hit.size:
        k = int(hit[0])
        return {"status": Status.REACHED_TARGET, "best_auc": float(auc[: k + 1].max()),
                "time_to_target_s": float(wall[k]), "samples_to_target": int(run.samples[k]),
                "ran_s": float(wall[k]), "n_evals": k + 1}
    best = float(auc.max()) if auc.size else None
    if run.diverged_at_s is not None and run.diverged_at_s <= limit:
        return {"status": Status.DIVERGED, "best_auc": best, "time_to_target_s": None,
                "samples_to_target": None, "ran_s": run.diverged_at_s, "n_evals": int(auc.size)}
    total = float(run.samples[-1] / run.samples_per_s) if run.samples.size else 0.0
    status = Status.TIMEOUT if total > limit else Status.COMPLETED
    return {"status": status, "best_auc": best, "time_to_target_s": None, "samples_to_target": None,
            "ran_s": min(total, limit), "n_evals": int(auc.size)}


# --------------------------------------------------------------------------- as a trial process
def add_trial_options(p: argparse.ArgumentParser) -> None:
    """The surrogate's own flags, accepted after the sweep's ``--`` beside the train flags."""
    p.add_argument("--speed", type=float, default=100.0, help="simulated training seconds per real second")
    p.add_argument("--fail-after", type=float, help="raise after this many simulated seconds (tests)")
    p.add_argument("--ignore-max-time", action="store_true",
                   help="train past --max-time (tests: only the job's time limit stops it)")


def _events(run: SimRun, h: TrainConfig, end_s: float) -> list[dict[str, Any]]:
    """Train events every ~2 simulated seconds and the evaluations, in time order."""
    out = []
    for t in np.arange(2.0, end_s, 2.0):
        samples = int(t * run.samples_per_s)
        out.append({"event": "train", "step": samples // h.batch_size, "samples": samples, "wall_s": float(t),
                    "loss": 0.55 - 0.3 * (float(np.interp(t, run.wall_s, run.auc, left=0.5)) - 0.5),
                    "lr": h.lr, "samples_per_s": run.samples_per_s})
    for w, s, st, a in zip(run.wall_s, run.samples, run.steps, run.auc):
        if w <= end_s:
            out.append({"event": "eval", "step": int(st), "samples": int(s), "wall_s": float(w),
                        "auc": float(a), "logloss": 0.55 - 0.3 * (float(a) - 0.5),
                        "samples_per_s": run.samples_per_s})
    out.sort(key=lambda e: (e["wall_s"], e["event"] == "train"))
    for e in out:
        e["epoch"] = e["samples"] / SAMPLES_PER_EPOCH
    return out


def run(cfg: TrainConfig, *, speed: float = 100.0, fail_after: float | None = None,
        ignore_max_time: bool = False) -> RunResult:
    """Behave like ``hpcdlrm.train.run(cfg)``: metrics.jsonl as it goes, result.json at the end;
    SIGTERM/SIGUSR1 stop it ``preempted`` and a rerun on the same ``out`` continues where the file ends."""
    cfg.validate()
    info = env.detect()
    out = Path(cfg.out)
    prev = _previous(out)
    if prev is not None:  # finished: a rerun returns at once
        return prev
    run_ = simulate(cfg, seed=cfg.seed, eval_every=cfg.eval_every or 60_000)
    res = outcome(run_, cfg.target_auc, None if ignore_max_time else cfg.max_time)
    end_s = res["ran_s"] if fail_after is None else min(res["ran_s"], fail_after)
    renv = {"hosts": [info.hostname], "ranks": info.world_size, "backend": "none", "slurm_job_id": info.job_id}
    finished = RunResult(res["status"], best_auc=res["best_auc"], time_to_target_s=res["time_to_target_s"],
                         samples_to_target=res["samples_to_target"], samples_per_s=run_.samples_per_s,
                         wall_s=res["ran_s"], config=cfg.to_dict(), env=renv, extra={"surrogate": True},
                         reason=f"--max-time {cfg.max_time} s exceeded" if res["status"] is Status.TIMEOUT else None)
    if info.rank != 0:  # like the train, only rank 0 writes the run's files (and it alone plays them out)
        return finished
    out.mkdir(parents=True, exist_ok=True)
    stop = _play(out / "metrics.jsonl", _events(run_, cfg, end_s), speed)
    if stop:
        preempted = RunResult(Status.PREEMPTED, reason=f"signal {stop[0]}: rerun with the same --out to resume",
                              env=renv, config=cfg.to_dict())
        preempted.write(out)
        return preempted
    if fail_after is not None and fail_after < res["ran_s"]:
        raise RuntimeError(f"surrogate trial failing on purpose after {fail_after} s (--fail-after)")
    finished.write(out)
    return finished


def _play(metrics: Path, events: list[dict[str, Any]], speed: float) -> list[int]:
    """Append the events not yet in ``metrics`` in scaled real time; the signals that stopped it."""
    done = min(_lines(metrics), len(events))
    t0 = time.monotonic() - (events[done - 1]["wall_s"] / speed if done else 0.0)
    stop: list[int] = []
    main_thread = threading.current_thread() is threading.main_thread()  # signals: main thread only
    old = {s: signal.signal(s, lambda signum, _f: stop.append(signum))
           for s in (signal.SIGTERM, signal.SIGUSR1) if main_thread}
    try:
        with open(metrics, "a") as f:
            for e in events[done:]:
                while not stop and time.monotonic() < t0 + e["wall_s"] / speed:
                    time.sleep(min(0.05, max(0.0, t0 + e["wall_s"] / speed - time.monotonic())))
                if stop:
                    break
                append_jsonl(f, e)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return stop


def _previous(out: Path) -> RunResult | None:
    try:
        prev = RunResult.read(out)
    except ValueError:
        return None
    return prev if prev is not None and prev.status is not Status.PREEMPTED else None


def _lines(path: Path) -> int:
    """Complete lines already written (a resumed run continues after them)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0
