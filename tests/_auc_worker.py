"""Run under ``mpiexec -n R``: the distributed exact AUC against scikit-learn on the gathered rows.

Each rank draws its own rows (uneven counts, one rank possibly empty, heavy ties), computes the metrics
across ranks without gathering, then (test only) gathers everything to compare with scikit-learn.
Prints ``OK auc <backend> rank R held H of N`` per case."""

from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score

from hpcdlrm import env
from hpcdlrm.errors import DataError
from hpcdlrm.train import distributed
from hpcdlrm.train.metrics import distributed_auc, distributed_evaluate


def case(comm: distributed.Comm, n: int, decimals: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed + 1000 * comm.rank)
    y = rng.random(n) < 0.3
    s = rng.normal(size=n) + 0.8 * y
    if decimals is not None:
        s = np.round(s, decimals)
    m = distributed_evaluate(comm, y.astype(np.float64), s, from_logits=True)
    auc, _, _, held = distributed_auc(comm, y, s)
    all_y = comm.all_gather_varlen(torch.from_numpy(y.astype(np.float64))).numpy()
    all_s = comm.all_gather_varlen(torch.from_numpy(s)).numpy()
    want = roc_auc_score(all_y, all_s)
    assert abs(m.auc - want) < 1e-6 and auc == m.auc, (m.auc, want)
    probs = 1 / (1 + np.exp(-all_s))
    assert abs(m.log_loss - log_loss(all_y, probs)) < 1e-6, (m.log_loss, log_loss(all_y, probs))
    assert m.n == all_y.size and abs(m.accuracy - np.mean((all_s > 0) == all_y)) < 1e-12
    total = all_y.size
    # Bounded by its share: a rank holds about N / R rows (ties may add a few), never all of them.
    share = total / comm.world_size
    if total >= 1000 and decimals is None:
        assert held <= 1.2 * share + 10, (held, share)
    print(f"OK auc {comm.backend} n={n} dec={decimals} rank {comm.rank} held {held} of {total}", flush=True)


def main() -> int:
    comm = distributed.init(env.detect(), backend=sys.argv[1], timeout_s=60)
    try:
        r = comm.rank
        case(comm, 20_000 + 7_000 * r, None, 1)
        case(comm, 3_000 * (r + 1), 1, 2)  # heavy ties across the rank boundaries
        case(comm, 0 if r == 1 else 500, 2, 3)  # one rank holds no rows
        # A bad row on one rank is an error on every rank (none is left waiting in a collective).
        bad = np.array([0.1, np.nan if r == 1 else 0.2])
        try:
            distributed_evaluate(comm, np.array([0.0, 1.0]), bad)
        except DataError as e:
            assert "NaN" in str(e), e
            print(f"OK bad rows refused rank {r}", flush=True)
    finally:
        comm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
