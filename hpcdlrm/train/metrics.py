"""Evaluation metrics over full arrays (the trainer gathers every rank's scores first).

``roc_auc`` is exact (the value scikit-learn's ``roc_auc_score`` gives, ties counting one half) and fast:
it is the Mann-Whitney statistic, computed by sorting positives and negatives separately (``np.sort`` is
SIMD-accelerated; an argsort is ~10x slower) and counting, per positive, the negatives below and tied
with ``searchsorted``; the counts are summed as exact integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.auc import auc_of
from ..errors import DataError


@dataclass(frozen=True)
class Metrics:
    auc: float  # NaN when only one class is present
    log_loss: float
    accuracy: float  # at threshold 0.5
    n: int
    positive_rate: float


def _to_numpy(a: Any, what: str) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor (bf16 has no numpy dtype: go through float32)
        a = a.detach().cpu()
        a = a.float() if a.is_floating_point() and a.element_size() < 4 else a
        a = a.numpy()
    out = np.asarray(a).ravel()
    if out.size == 0:
        raise DataError(f"{what} is empty")
    return out


def _labels_scores(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y, s = _to_numpy(labels, "labels"), _to_numpy(scores, "scores")
    if y.shape != s.shape:
        raise DataError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if y.dtype != np.bool_:
        bad = (y != 0) & (y != 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"labels must be 0 or 1; labels[{i}] = {y[i].item()!r}")
        y = y.astype(np.bool_)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    if np.isnan(s).any():
        raise DataError(f"scores contain NaN (first at index {int(np.flatnonzero(np.isnan(s))[0])})")
    return y, s


def roc_auc(labels: Any, scores: Any) -> float:
    """Exact ROC AUC of ``scores`` (any monotone score: probabilities or logits) against 0/1 ``labels``.

    NaN when only one class is present (undefined); DataError on NaN scores, non-0/1 labels, bad lengths.
    """
    return auc_of(*_labels_scores(labels, scores))


def _log_loss(y: np.ndarray, p: np.ndarray, eps: float) -> float:
    p = np.clip(p.astype(np.float64), eps, 1.0 - eps)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def _log_loss_logits(y: np.ndarray, z: np.ndarray) -> float:
    z = z.astype(np.float64)
    return float(np.mean(np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def _accuracy(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    return float(np.count_nonzero((p > threshold) == y)) / y.size


def log_loss(labels: Any, probs: Any, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities clipped to [eps, 1 - eps] (float64 accumulation)."""
    return _log_loss(*_labels_scores(labels, probs), eps)


def log_loss_from_logits(labels: Any, logits: Any) -> float:
    """Mean binary cross-entropy from logits, stable for any logit: max(z,0) - z*y + log1p(exp(-|z|))."""
    return _log_loss_logits(*_labels_scores(labels, logits))


def accuracy(labels: Any, probs: Any, threshold: float = 0.5) -> float:
    """Fraction of samples where (prob > threshold) equals the label."""
    return _accuracy(*_labels_scores(labels, probs), threshold)


def evaluate(labels: Any, scores: Any, from_logits: bool = False, eps: float = 1e-7) -> Metrics:
    """AUC, log loss and accuracy at 0.5 of probabilities (or of logits with ``from_logits=True``)."""
    y, s = _labels_scores(labels, scores)
    if from_logits:
        loss, acc = _log_loss_logits(y, s), _accuracy(y, s, 0.0)
    else:
        loss, acc = _log_loss(y, s, eps), _accuracy(y, s, 0.5)
    return Metrics(auc=auc_of(y, s), log_loss=loss, accuracy=acc, n=int(y.size),
                   positive_rate=float(np.count_nonzero(y)) / y.size)
