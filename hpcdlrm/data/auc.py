"""Exact ROC AUC, private to the data stage (the synthetic ceiling); training has its own metrics.

AUC is the Mann-Whitney statistic: the probability that a random positive scores above a random
negative, ties counting one half. Computed from mid-ranks, so it is exact, O(n log n) and vectorised.
"""

from __future__ import annotations

import numpy as np


def exact_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of ``scores`` against 0/1 ``labels`` with ties handled exactly (mid-ranks).

    Raises ValueError when a class is absent or a score is NaN: the AUC is undefined then.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel() > 0.5
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # Each run of equal scores occupies 1-based ranks start+1..end; all of them get the run's mean.
    cuts = np.flatnonzero(s_sorted[1:] != s_sorted[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [s.size]))
    ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    rank_sum = float(ranks[y[order]].sum())  # half-integers below 2**52: summed exactly
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
