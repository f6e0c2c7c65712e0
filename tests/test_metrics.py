"""Exact AUC, log loss and accuracy against scikit-learn."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from hpcdlrm.errors import DataError
from hpcdlrm.train.metrics import accuracy, evaluate, log_loss, log_loss_from_logits, roc_auc


def clicks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.26
    return y, (rng.random(n) * 0.7 + 0.3 * y).astype(np.float32)


@pytest.mark.parametrize("n", [7, 500, 20_000])
@pytest.mark.parametrize("decimals", [1, 2, None])
def test_auc_equals_sklearn_with_and_without_ties(n: int, decimals: int | None) -> None:
    y, s = clicks(n, seed=n)
    if decimals is not None:
        s = np.round(s, decimals)  # heavy ties
    if y.all() or not y.any():
        y[0] = not y[0]
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_on_a_million_points_is_exact_and_fast() -> None:
    y, s = clicks(1_000_000, seed=1)
    s = np.round(s, 2)
    start = time.perf_counter()
    auc = roc_auc(y, s)
    elapsed = time.perf_counter() - start
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert elapsed < 2.0, f"1M-point AUC took {elapsed:.2f} s (~0.07 s expected on 2 idle cores)"


def test_auc_input_types_and_edge_cases() -> None:
    y, s = clicks(3000, seed=2)
    ref = roc_auc_score(y, s)
    assert roc_auc(y.astype(np.float32), s.astype(np.float64)) == pytest.approx(ref, abs=1e-12)
    assert roc_auc(torch.from_numpy(y).float(), torch.from_numpy(s)) == pytest.approx(ref, abs=1e-12)
    bf = torch.from_numpy(s).bfloat16()  # bf16 rounding creates ties; must still match sklearn on them
    assert roc_auc(y, bf) == pytest.approx(roc_auc_score(y, bf.float().numpy()), abs=1e-12)
    assert roc_auc([0, 1, 1, 0], [0.0, -0.0, 0.0, -0.0]) == 0.5  # -0.0 ties with 0.0
    assert roc_auc([0, 1], [1, 2]) == 1.0 and roc_auc([1, 0], [1, 2]) == 0.0  # integer scores
    assert np.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_bad_inputs_raise_data_errors_naming_the_problem() -> None:
    with pytest.raises(DataError, match=r"labels\[2\] = 2"):
        roc_auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="NaN.*index 1"):
        roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(DataError, match="differ in length"):
        evaluate([0, 1], [0.1])
    with pytest.raises(DataError, match="empty"):
        log_loss([], [])


def test_log_loss_and_accuracy_match_sklearn_and_hand_values() -> None:
    y, p = clicks(5000, seed=3)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p.astype(np.float64)), rel=1e-9)
    assert log_loss([1, 0], [0.0, 1.0]) == pytest.approx(-np.log(1e-7), rel=1e-6)  # clipped, finite
    assert accuracy([1, 0, 1, 0], [0.9, 0.2, 0.5, 0.51]) == 0.5  # 0.5 predicts 0
    z = np.array([-30.0, -1.0, 0.0, 2.0, 40.0], dtype=np.float32)
    lab = np.array([1, 0, 1, 1, 0])
    z64 = z.astype(np.float64)  # -log(sigmoid(z)) = log(1 + e^-z), -log(1 - sigmoid(z)) = log(1 + e^z)
    expected = np.mean(np.where(lab == 1, np.logaddexp(0, -z64), np.logaddexp(0, z64)))
    assert log_loss_from_logits(lab, z) == pytest.approx(expected, rel=1e-9)


def test_evaluate_from_probs_and_from_logits_agree() -> None:
    y, p = clicks(4000, seed=4)
    p = np.clip(p, 1e-3, 1 - 1e-3).astype(np.float64)
    logits = np.log(p) - np.log1p(-p)
    a, b = evaluate(y, p), evaluate(y, logits, from_logits=True)
    assert a.auc == pytest.approx(b.auc, abs=1e-12) and a.accuracy == b.accuracy
    assert a.log_loss == pytest.approx(b.log_loss, rel=1e-9)
    assert a.n == 4000 and a.positive_rate == pytest.approx(y.mean())


@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["gloo", "mpi"])
def test_distributed_auc_equals_sklearn_at_two_ranks_without_gathering(backend: str) -> None:
    import re
    from pathlib import Path

    from conftest import run_mpi

    out = run_mpi(2, [str(Path(__file__).with_name("_auc_worker.py")), backend], timeout=120).stdout
    ok = re.findall(r"OK auc (\w+) n=\S+ dec=\S+ rank (\d) held (\d+) of (\d+)", out)
    assert len(ok) == 6 and {b for b, *_ in ok} == {backend}, out
    # The large untied case: each rank held about half the rows, not all of them.
    held = [int(h) for _, _, h, n in ok if int(n) == 20_000 + 27_000]
    assert len(held) == 2 and max(held) < 0.6 * 47_000, held
    assert out.count("OK bad rows refused") == 2, out


def test_distributed_evaluate_on_one_rank_is_evaluate() -> None:
    from hpcdlrm.train.distributed import Comm
    from hpcdlrm.train.metrics import distributed_evaluate

    y, s = clicks(1000, seed=5)
    assert distributed_evaluate(Comm(), y, s) == evaluate(y, s)
