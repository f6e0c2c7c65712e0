"""Parameter importance of a sweep: fANOVA over all finished trials, PED-ANOVA for reaching the target.

fANOVA explains the objective the optimizer minimised. It is fitted on the objective's *ranks* so that
penalties (failed, diverged or capped trials told a huge loss) count as "worst" without their arbitrary
size swamping the variance. Its model is a Gaussian process up to ``GP_MAX_TRIALS`` finished trials
(``gp_anova.py``: a forest is noise on a few dozen trials) and a random forest beyond (``fanova.py``). PED-ANOVA needs no model: it compares the parameter distribution of the trials
that reached the target against all finished trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from hpcdlrm.report.extract import finished_in_order, reached_target
from hpcdlrm.report.fanova import fanova
from hpcdlrm.report.gp_anova import gp_anova
from hpcdlrm.report.params import ParamTable, param_table
from hpcdlrm.report.pedanova import ped_anova
from hpcdlrm.sweep.records import SweepData, Trial
from hpcdlrm.train.result import Status

MIN_TRIALS_PER_PARAM = 5  # SigOpt's rule before it shows importance at all
TOP_QUANTILE = 0.1  # PED-ANOVA's top set when the sweep has no target AUC
GP_MAX_TRIALS = 200  # the GP's fit is cubic in the trials; beyond this many the forest is both good and cheaper


class Model(Enum):
    """The regression model fANOVA decomposes."""

    GP = "Gaussian process"
    FOREST = "random forest"


def model_for(n_trials: int) -> Model:
    return Model.GP if n_trials <= GP_MAX_TRIALS else Model.FOREST


@dataclass(frozen=True)
class ImportanceInfo:
    names: tuple[str, ...]
    n_trials: int  # trials fANOVA was fitted on
    fanova_mean: tuple[float, ...] | None  # first-order variance shares, None when not computable
    fanova_std: tuple[float, ...] | None  # spread over seeds (forests, or GPs on bootstrap resamples)
    interaction: float | None  # variance share left to interactions (1 - sum of first-order shares)
    n_region: int  # trials PED-ANOVA compared against
    n_top: int
    top_label: str
    ped_share: tuple[float, ...] | None
    warnings: tuple[str, ...]
    model: Model = Model.GP


def average_ranks(y: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their mean rank (``inf`` values tie as the worst)."""
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (first + (counts + 1) / 2.0)[inverse]


def loss_of(data: SweepData, t: Trial) -> float:
    """What the optimizer was told (minimised); a penalised trial without a number counts as worst."""
    if t.objective is not None and math.isfinite(t.objective):
        return float(t.objective)
    penalised = Status(t.status).penalised
    if data.info.objective == "auc" and t.best_auc is not None and not penalised:
        return -float(t.best_auc)
    return math.inf if penalised else math.nan


def _domain(table: ParamTable) -> tuple[np.ndarray, list[bool]]:
    return np.array([[s.low, s.high] for s in table.specs]).reshape(-1, 2), [s.is_choice for s in table.specs]


Shares = tuple[float, ...]


def _fanova_part(
    data: SweepData, table: ParamTable, n_trees: int, seeds: Sequence[int]
) -> tuple[int, Shares | None, Shares | None, float | None, list[str]]:
    loss = np.array([loss_of(data, t) for t in finished_in_order(data)])
    rows = ~np.isnan(loss) & np.isfinite(table.X).all(axis=1)
    n, d = int(rows.sum()), len(table.specs)
    notes = []
    if n < 3 or np.unique(loss[rows]).size < 2:
        notes.append(f"fANOVA: {n} usable finished trial(s) with distinct objectives; need at least 3.")
        return n, None, None, None, notes
    if n < MIN_TRIALS_PER_PARAM * d:
        notes.append(f"Only {n} finished trials for {d} parameters (rule of thumb: >= {MIN_TRIALS_PER_PARAM * d}):"
                     " importances are indicative only.")
    bounds, discrete = _domain(table)
    X, y = table.X[rows], average_ranks(loss[rows])
    if model_for(n) is Model.GP:
        res = gp_anova(X, y, bounds, discrete, seeds=seeds)
    else:
        res = fanova(X, y, bounds, discrete, n_trees=n_trees, seeds=seeds)
    return n, tuple(res.mean.tolist()), tuple(res.std.tolist()), res.interaction, notes


def _top_mask(data: SweepData, trials: list[Trial]) -> tuple[np.ndarray, str]:
    target = data.info.target_auc
    if target is not None:
        return np.array([reached_target(data, t) for t in trials], dtype=bool), f"reached AUC ≥ {target:g}"
    loss = np.array([loss_of(data, t) for t in trials])
    ok = ~np.isnan(loss)
    k = max(2, int(math.ceil(TOP_QUANTILE * ok.sum())))
    order = np.argsort(np.where(ok, loss, np.inf), kind="stable")[:k]
    mask = np.zeros(len(trials), dtype=bool)
    mask[order] = ok[order]
    return mask, f"best {TOP_QUANTILE:.0%} (no target AUC set)"


def _ped_part(data: SweepData, table: ParamTable) -> tuple[int, int, str, Shares | None, list[str]]:
    trials = finished_in_order(data)
    top, label = _top_mask(data, trials)
    n, k = len(trials), int(top.sum())
    if k < 2:
        return n, k, label, None, [f"PED-ANOVA: {k} trial(s) {label}; need at least 2."]
    if k == n:
        return n, k, label, None, [f"PED-ANOVA: all {n} finished trials {label}; nothing distinguishes them."]
    notes = [f"PED-ANOVA: only {k} trials {label}: indicative only."] if k < 5 else []
    bounds, discrete = _domain(table)
    return n, k, label, tuple(ped_anova(table.X, top, bounds, discrete).share.tolist()), notes


def importance_info(data: SweepData, n_trees: int = 16, seeds: Sequence[int] = (0, 1, 2, 3, 4)) -> ImportanceInfo:
    """Both importance views of ``data``; ``warnings`` says plainly where there are too few trials.
    ``n_trees`` sizes the forests (more than ``GP_MAX_TRIALS`` trials); ``seeds``: one model per seed."""
    table = param_table(data, finished_in_order(data), places=True)  # the lr as its place in its optimizer's range
    if not table.specs:
        return ImportanceInfo((), 0, None, None, None, 0, 0, "", None, ("The sweep has no parameters.",))
    n, mean, std, inter, notes_f = _fanova_part(data, table, n_trees, seeds)
    n_region, n_top, label, ped, notes_p = _ped_part(data, table)
    return ImportanceInfo(tuple(table.names), n, mean, std, inter, n_region, n_top, label, ped,
                          tuple(notes_f + notes_p), model_for(n))
