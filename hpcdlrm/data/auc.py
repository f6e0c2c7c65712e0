"""Exact ROC AUC: the one implementation of the project (the synthetic ceiling here, evaluation in
``train.metrics``, which comes later in the flow and imports it).

AUC is the Mann-Whitney statistic: the probability that a random positive scores above a random
negative, ties counting one half. Computed with two sorted searches, so it is exact, O(n log n) and
vectorised.
"""

from __future__ import annotations

import numpy as np


def auc_of(positive: np.ndarray, scores: np.ndarray) -> float:
    """AUC of ``scores`` for a boolean ``positive`` mask of the same length; NaN when a class is absent."""
    pos, neg = np.sort(scores[positive]), np.sort(scores[~positive])
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    # For each positive: negatives strictly below it (left) and below-or-equal (right); a tie counts 1/2,
    # so 2 * AUC * P * N = sum(left) + sum(right), exact in int64.
    left = np.searchsorted(neg, pos, side="left")
    right = np.searchsorted(neg, pos, side="right")
    return (int(left.sum()) + int(right.sum())) / (2.0 * pos.size * neg.size)


def exact_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of ``scores`` against 0/1 ``labels`` with ties handled exactly.

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
    return auc_of(y, s)
