"""Pure extraction: stored trials in, plain "info" records out. No drawing here, so everything a figure
shows is tested by equality on these records (the Optuna visualisation pattern)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hpcdlrm.report.params import ParamSpec, param_table
from hpcdlrm.sweep import records
from hpcdlrm.sweep.records import FINISHED, SweepData, Trial
from hpcdlrm.train.result import Status

PENALISED = frozenset(s for s in Status if s.penalised or s.is_failure)  # failed, diverged, lost
AUC_METRICS = ("auc", "val_auc")  # the name the trainer logs validation AUC under, in order of preference


@dataclass(frozen=True)
class Objective:
    """How the sweep's objective reads to a person: the value per trial, its label and direction."""

    label: str
    higher_is_better: bool
    is_time: bool = False  # values in seconds: figures pick s/min/h


def objective_of(data: SweepData) -> Objective:
    if data.info.objective == "auc":
        return Objective("best validation AUC", True)
    if data.info.objective == "time_to_target":
        target = data.info.target_auc
        return Objective("time to target AUC" + (f" {target:g}" if target is not None else ""), False, True)
    return Objective(f"objective {data.info.objective!r} (minimised)", False)


def display_value(data: SweepData, t: Trial) -> float:
    """The trial's objective in the units of ``objective_of`` (NaN when it has none)."""
    v = t.best_auc if data.info.objective == "auc" else t.objective
    return float(v) if v is not None and math.isfinite(v) else math.nan


def reached_target(data: SweepData, t: Trial) -> bool:
    target = data.info.target_auc
    return t.status == Status.REACHED_TARGET or (target is not None and t.best_auc is not None and t.best_auc >= target)


def is_penalised(data: SweepData, t: Trial) -> bool:
    """Failed/diverged trials carry a penalty, not a measurement: never the best (importance ranks them last)."""
    return t.status in PENALISED or math.isnan(display_value(data, t))


def is_censored(data: SweepData, t: Trial) -> bool:
    """A time-to-target trial that never reached the target: its objective is its running time
    extrapolated to the target (``sweep.objective.censored_loss``), an estimate, not a measured time."""
    return data.info.objective == "time_to_target" and not is_penalised(data, t) and t.time_to_target_s is None


def failure_reasons(data: SweepData) -> list[tuple[str, tuple[int, ...]]]:
    """(reason, trial ids) of the finished failed/diverged trials, one entry per distinct reason, in order
    of first occurrence (500 trials failing the same way read as one line)."""
    groups: dict[str, list[int]] = {}
    for t in finished_in_order(data):
        if t.status in PENALISED:
            why = t.reason or (t.result or {}).get("error") or "no reason recorded"
            groups.setdefault(f"{t.status}: {why}", []).append(t.id)
    return [(why, tuple(sorted(ids))) for why, ids in groups.items()]


def finished_in_order(data: SweepData) -> list[Trial]:
    """Finished trials in completion order (trials without an end time last, by id)."""
    done = [t for t in data.trials if t.status in FINISHED]
    return sorted(done, key=lambda t: (t.ended_at is None, t.ended_at or 0.0, t.id))


def incumbent(data: SweepData) -> Trial | None:
    """The sweep's incumbent, by the sweep's own rule (``sweep.records.incumbent``)."""
    return records.incumbent(data.trials, data.info.objective)


def running_best(values: Sequence[float], usable: Sequence[bool], higher_is_better: bool) -> tuple[float, ...]:
    """Best-so-far after each entry, over usable entries only (NaN until the first one)."""
    v = np.where(np.asarray(usable, dtype=bool), np.asarray(values, dtype=float), np.nan)
    if v.size == 0:
        return ()
    filled = np.where(np.isnan(v), -np.inf if higher_is_better else np.inf, v)
    best = np.maximum.accumulate(filled) if higher_is_better else np.minimum.accumulate(filled)
    return tuple(float(x) if math.isfinite(x) else math.nan for x in best)


# --- convergence ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Curve:
    trial_id: int
    status: str
    wall_s: tuple[float, ...]
    samples: tuple[float, ...]
    value: tuple[float, ...]


@dataclass(frozen=True)
class ConvergenceInfo:
    curves: tuple[Curve, ...]
    target: float | None
    incumbent: int | None
    metric: str


def auc_metric_name(data: SweepData) -> str:
    present = {m.name for m in data.metrics}
    return next((n for n in AUC_METRICS if n in present), AUC_METRICS[0])


def convergence_info(data: SweepData) -> ConvergenceInfo:
    """Validation-AUC curves of every trial that logged one (running trials included: the report is live)."""
    name = auc_metric_name(data)
    rows = [(m.trial_id, m.step, m.wall_s, m.samples, m.value) for m in data.metrics if m.name == name]
    arr = np.array(rows, dtype=float).reshape(-1, 5)
    arr = arr[np.lexsort((arr[:, 1], arr[:, 0]))]
    ids, starts = np.unique(arr[:, 0], return_index=True)
    status = {t.id: t.status for t in data.trials}
    curves = []
    for tid, part in zip(ids, np.split(arr, starts[1:])):
        curves.append(Curve(int(tid), status.get(int(tid), "unknown"), tuple(part[:, 2].tolist()),
                            tuple(part[:, 3].tolist()), tuple(part[:, 4].tolist())))
    best = incumbent(data)
    return ConvergenceInfo(tuple(curves), data.info.target_auc, best.id if best else None, name)


# --- history -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HistoryInfo:
    trial_ids: tuple[int, ...]  # completion order
    statuses: tuple[str, ...]
    values: tuple[float, ...]
    penalised: tuple[bool, ...]
    best_so_far: tuple[float, ...]
    objective: Objective
    target: float | None
    target_after: int | None  # number of finished trials when the target was first reached
    best_value: float | None
    best_trial: int | None


def history_info(data: SweepData) -> HistoryInfo:
    obj = objective_of(data)
    done = finished_in_order(data)
    values = tuple(display_value(data, t) for t in done)
    pen = tuple(is_penalised(data, t) for t in done)
    best = running_best(values, [not p for p in pen], obj.higher_is_better)
    after = next((i + 1 for i, t in enumerate(done) if reached_target(data, t)), None)
    inc = incumbent(data)
    return HistoryInfo(
        tuple(t.id for t in done), tuple(t.status for t in done), values, pen, best, obj,
        data.info.target_auc, after, display_value(data, inc) if inc else None, inc.id if inc else None,
    )


# --- parameters ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParamViewInfo:
    """Finished trials (completion order) with encoded parameters, for parallel coordinates and slices."""

    specs: tuple[ParamSpec, ...]
    trial_ids: tuple[int, ...]
    X: tuple[tuple[float, ...], ...]  # X[i][j]: trial i, parameter j, encoded (log10 for log scale)
    values: tuple[float, ...]
    penalised: tuple[bool, ...]
    objective: Objective
    censored: tuple[bool, ...] = ()  # value extrapolated: the trial never reached the target (is_censored)


def param_view_info(data: SweepData) -> ParamViewInfo:
    done = finished_in_order(data)
    table = param_table(data, done)
    return ParamViewInfo(
        table.specs, table.trial_ids, tuple(tuple(row) for row in table.X.tolist()),
        tuple(display_value(data, t) for t in done), tuple(is_penalised(data, t) for t in done), objective_of(data),
        tuple(is_censored(data, t) for t in done),
    )


def normalise(X: np.ndarray, specs: Sequence[ParamSpec]) -> np.ndarray:
    """Encoded parameters mapped to [0, 1] over each parameter's domain (0.5 where the domain is a point)."""
    low = np.array([s.low for s in specs])
    span = np.array([s.high - s.low for s in specs])
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (X - low) / safe, 0.5)


# --- comparison across sweeps --------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepProgress:
    name: str
    best_so_far: tuple[float, ...]  # after each finished trial
    hours: tuple[float, ...]  # wall-clock since the sweep was created, at each of those completions
    target_after: int | None


@dataclass(frozen=True)
class CompareInfo:
    sweeps: tuple[SweepProgress, ...]
    objective: Objective
    mixed_objectives: bool


def compare_info(datas: Sequence[SweepData]) -> CompareInfo:
    progress = []
    for data in datas:
        h = history_info(data)
        done = finished_in_order(data)
        hours = tuple((t.ended_at - data.info.created_at) / 3600 if t.ended_at is not None else math.nan for t in done)
        progress.append(SweepProgress(data.info.name, h.best_so_far, hours, h.target_after))
    objectives = {objective_of(d) for d in datas}
    first = objective_of(datas[0]) if datas else Objective("objective", False)
    return CompareInfo(tuple(progress), first, len(objectives) > 1)


# --- throughput ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ThroughputInfo:
    ranks: tuple[int, ...]  # one entry per trial that reported a throughput
    nodes: tuple[int, ...]
    samples_per_s: tuple[float, ...]
    trial_ids: tuple[int, ...]
    rank_levels: tuple[int, ...]  # distinct rank counts, ascending
    median: tuple[float, ...]  # median samples/s at each level
    ideal: tuple[float, ...]  # linear scaling from the smallest level's median


def _throughput_of(data: SweepData) -> dict[int, float]:
    """Per trial: its stored samples/s, else the mean of its logged ``samples_per_s`` points."""
    logged: dict[int, list[float]] = {}
    for m in data.metrics:
        if m.name == "samples_per_s":
            logged.setdefault(m.trial_id, []).append(m.value)
    out = {}
    for t in data.trials:
        v = t.samples_per_s if t.samples_per_s is not None else (np.mean(logged[t.id]) if t.id in logged else None)
        if v is not None and math.isfinite(v) and v > 0:
            out[t.id] = float(v)
    return out


def throughput_info(data: SweepData) -> ThroughputInfo:
    sps = _throughput_of(data)
    trials = [t for t in data.trials if t.id in sps]
    ranks = np.array([max(t.ranks, 1) for t in trials], dtype=int)
    values = np.array([sps[t.id] for t in trials])
    levels = np.unique(ranks)
    median = np.array([np.median(values[ranks == r]) for r in levels])
    ideal = median[0] * levels / levels[0] if levels.size else np.array([])
    return ThroughputInfo(
        tuple(ranks.tolist()), tuple(max(t.nodes, 1) for t in trials), tuple(values.tolist()),
        tuple(t.id for t in trials), tuple(levels.tolist()), tuple(median.tolist()), tuple(ideal.tolist()),
    )


# --- top trials table ----------------------------------------------------------------------------------

def top_trials(data: SweepData, k: int = 10) -> list[Trial]:
    """The ``k`` best finished, non-penalised trials, best first."""
    obj = objective_of(data)
    usable = [t for t in finished_in_order(data) if not is_penalised(data, t)]
    sign = -1.0 if obj.higher_is_better else 1.0
    return sorted(usable, key=lambda t: (sign * display_value(data, t), t.id))[:k]
