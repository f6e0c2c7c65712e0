"""Run under ``mpiexec -n R``: checks the differentiable all-to-all and every sharding plan against a
single-process reference built in each rank. Prints ``OK <check>`` per passed check; any failure raises
(non-zero exit, so ``run_mpi`` reports both streams)."""

from __future__ import annotations

import sys

import torch

from hpcdlrm import env
from hpcdlrm.model import EmbeddingTables, init_table, sparse_grad
from hpcdlrm.train import distributed
from hpcdlrm.train.optim import RowWiseAdagrad
from hpcdlrm.train.sharding import ShardedEmbeddings, make_plan

SIZES = [3, 5, 40, 7, 60, 2, 50, 30]  # 3 tables below the threshold of 6
SEED, LR = 11, 0.5


def check_all_to_all(comm: distributed.Comm) -> None:
    r, world = comm.rank, comm.world_size
    # in_splits[s][q]: how many elements rank s sends to rank q (uneven, some zero).
    in_splits = [[(s + 2 * q) % 3 + (1 if q == s else 0) for q in range(world)] for s in range(world)]
    x = (torch.arange(sum(in_splits[r]), dtype=torch.float64) + 100 * r).requires_grad_()
    out_splits = [in_splits[s][r] for s in range(world)]
    y = distributed.all_to_all(comm, x, in_splits[r], out_splits)
    # Expected forward: for each source s the chunk s sent to r.
    expect = []
    for s in range(world):
        start = sum(in_splits[s][:r])
        expect += [100 * s + start + i for i in range(in_splits[s][r])]
    assert y.tolist() == expect, (y.tolist(), expect)
    weights = (torch.arange(y.numel(), dtype=torch.float64) + 1) * (r + 1)
    (y * weights).sum().backward()
    # Element i of x went to rank q at position p: its gradient is (p + 1) * (q + 1).
    grad, i = [], 0
    for q in range(world):
        before = sum(in_splits[s][q] for s in range(r))  # what lower ranks put ahead of us on rank q
        grad += [(before + k + 1) * (q + 1) for k in range(in_splits[r][q])]
        i += in_splits[r][q]
    assert x.grad is not None and x.grad.tolist() == grad, (x.grad, grad)
    print(f"OK all_to_all rank {r}", flush=True)


class RecordingSGD(RowWiseAdagrad):
    """Plain sparse SGD that passes for row-wise Adagrad, to record the full-row squared sums it gets."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.row_sq: dict[str, torch.Tensor] = {}

    def step(self, key, weight, rows, grad, lr, row_sq_sum=None, full_dim=None):  # noqa: ANN001, ANN201
        if row_sq_sum is not None:
            assert full_dim == self.dim, (full_dim, self.dim)  # the table's dim, not the slice's
            self.row_sq[key] = row_sq_sum
        weight.index_add_(0, rows, grad, alpha=-lr)


def check_plan(comm: distributed.Comm, kind: str, dim: int, limit: int = 1 << 22, threshold: int = 6,
               a2a_dtype: torch.dtype | None = None) -> distributed.CommStats:
    r, world = comm.rank, comm.world_size
    g = torch.Generator().manual_seed(3)
    batch = 4 * world
    sparse = torch.stack([torch.randint(0, n, (batch,), generator=g) for n in SIZES], 1).to(torch.int32)
    coef = torch.randn(batch, len(SIZES), dim, generator=g)
    ref = EmbeddingTables(SIZES, dim, SEED)
    plan = make_plan(SIZES, dim, world, kind, replicate_threshold=threshold)
    emb = ShardedEmbeddings(plan, comm, SEED, init_table, dense_replica_limit=limit, a2a_dtype=a2a_dtype)
    lo, hi = r * 4, (r + 1) * 4
    comm.stats = distributed.CommStats()
    out = emb(sparse[lo:hi])
    want = ref(sparse.long())
    if a2a_dtype is not None:  # the embeddings travel rounded to a2a_dtype: the reference, rounded
        assert out.dtype == a2a_dtype, out.dtype
        want, coef = want.to(a2a_dtype), coef.to(a2a_dtype).float()
    # Whole tables, nothing replicated: the features come in the exchange's order (feature_order).
    order = emb.feature_order if emb.feature_order is not None else list(range(len(SIZES)))
    assert (emb.feature_order is not None) == (world > 1 and not plan.replicated
                                               and all(p.width == dim for p in plan.pieces)), kind
    assert torch.equal(out, want[lo:hi, order].detach()), f"{kind}: forward differs on rank {r}"
    # Backward + one sparse SGD step, against the reference's coalesced gradient.
    (out * coef[lo:hi, order].to(out.dtype)).sum().backward()
    stats, comm.stats = comm.stats, None
    # Bytes leaving this rank: forward ids (int32) + embeddings, backward gradients of what came back.
    widths = [sum(p.width for p in plan.pieces_of(q)) for q in range(world)]
    elem = 4 if a2a_dtype is None else 2
    assert stats.a2a_bwd_bytes == 4 * sum(widths[q] for q in range(world) if q != r) * elem, stats
    ids = sum(4 * len(plan.tables_of(q)) for q in range(world) if q != r) * 4
    assert stats.a2a_fwd_bytes == ids + 4 * widths[r] * (world - 1) * elem, stats
    buf = torch.zeros(emb.reduce_size)
    emb.pack_grads(buf)
    comm.all_reduce_(buf)
    opt = RecordingSGD(dim)
    emb.sparse_step(opt, LR, buf)
    lk = ref.lookups()[0]
    rows, grad = sparse_grad(lk.ids, coef.reshape(-1, dim))
    ref.weight.data.index_add_(0, rows, grad, alpha=-LR)
    offsets = [sum(SIZES[:t]) for t in range(len(SIZES))]
    for grp in emb.groups:
        start = 0
        for p in grp.pieces:
            got = grp.weight[start: start + p.rows]
            exp = ref.weight.data[offsets[p.table]: offsets[p.table] + p.rows, p.lo: p.hi]
            assert torch.allclose(got, exp, atol=1e-6), f"{kind}: table {p.table} cols {p.lo}:{p.hi} differ"
            start += p.rows
    if plan.replicated:
        exp = torch.cat([ref.weight.data[offsets[t]: offsets[t] + SIZES[t]] for t in plan.replicated])
        assert torch.allclose(emb.rep_weight, exp, atol=1e-6), f"{kind}: replicated tables differ"
    if any(p.width < dim for p in plan.pieces) and world > 1:  # column pieces: full-row sums
        full_sq = torch.zeros(sum(SIZES))
        full_sq[rows] = (grad * grad).sum(1)
        for grp in emb.groups:
            local = [offsets[p.table] + torch.arange(p.rows) for p in grp.pieces]
            global_rows = torch.cat(local)
            ids = emb.lookups()[[lk.key for lk in emb.lookups()].index(grp.key)].ids
            touched = torch.unique(ids)
            assert torch.allclose(opt.row_sq[grp.key], full_sq[global_rows[touched]], rtol=1e-5), \
                f"{kind}: full-row squared sums differ"
    # Evaluation-style forward with uneven batches (rank 0: 3 rows, others none).
    emb.batch_sizes = [3] + [0] * (world - 1)
    with torch.no_grad():
        mine = sparse[:3] if r == 0 else sparse[:0]
        got = emb(mine)
    emb.batch_sizes = None
    exp = ref(sparse.long())[:3, order].detach() if r == 0 else torch.empty(0, len(SIZES), dim)
    assert torch.allclose(got.float(), exp.to(got.dtype).float(), atol=1e-6), \
        f"{kind}: uneven-batch forward differs on rank {r}"
    print(f"OK plan {kind} dim {dim} limit {limit} threshold {threshold} a2a {a2a_dtype} ({plan.kind}) "
          f"rank {r}", flush=True)
    return stats


def check_collectives(comm: distributed.Comm, say: bool = True) -> None:
    """Non-blocking forms, gathers and the reduction, against values every rank can compute."""
    r, world = comm.rank, comm.world_size
    splits = [[(s + q) % 2 + 1 for q in range(world)] for s in range(world)]
    x = torch.arange(sum(splits[r]), dtype=torch.float32) + 10 * r
    pending = comm.all_to_all_async(x, splits[r], [splits[s][r] for s in range(world)])
    t = torch.full((5,), float(r + 1))
    red = comm.all_reduce_async(t)
    assert torch.equal(pending.wait(), comm.all_to_all(x, splits[r], [splits[s][r] for s in range(world)]))
    assert red.wait() is t and t.tolist() == [world * (world + 1) / 2] * 5
    m = torch.tensor([float(r)])
    assert comm.all_reduce_(m, op="max").item() == world - 1
    bf = (torch.arange(4) + r).to(torch.bfloat16)  # 16-bit payloads travel as they are
    got = comm.all_to_all(bf, [4 // world] * world, [4 // world] * world)
    assert got.dtype == torch.bfloat16 and got.numel() == 4
    v = torch.arange(r + 2, dtype=torch.float64) + 100 * r
    full = torch.cat([torch.arange(q + 2, dtype=torch.float64) + 100 * q for q in range(world)])
    assert torch.equal(comm.all_gather_varlen(v), full)
    g = comm.gather_varlen(v)
    assert (torch.equal(g, full) if r == 0 else g is None), g
    assert comm.all_gather_ints([r, 7]) == [[q, 7] for q in range(world)]
    assert comm.all_gather_object({"r": r}) == [{"r": q} for q in range(world)]
    assert comm.broadcast_object("x" if r == 0 else None) == "x"
    if say:
        print(f"OK collectives {comm.backend} rank {r}", flush=True)


def check_exchange_speed(comm: distributed.Comm) -> None:
    """The trainer's MPI all-to-all against mpi4py's blocking Alltoallv on the same 13.6 MB per rank
    (mlperf's embeddings at batch 4,096 over 2 ranks). A large exchange advances only as it is polled:
    polling it every 200 us instead of without pause made it 80x slower (267 vs 3.3 ms)."""
    import time  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    from mpi4py import MPI  # noqa: PLC0415

    n = 3_400_000 // comm.world_size * comm.world_size
    x, out = torch.randn(n), torch.empty(n)
    splits = [n // comm.world_size] * comm.world_size
    counts, displs = np.array(splits), np.arange(comm.world_size) * splits[0]
    ours, blocking = [], []
    for _ in range(5):
        comm.barrier()
        t = time.perf_counter()
        comm.all_to_all(x, splits, splits)
        ours.append(time.perf_counter() - t)
        comm.barrier()
        t = time.perf_counter()
        MPI.COMM_WORLD.Alltoallv([x.numpy(), (counts, displs)], [out.numpy(), (counts, displs)])
        blocking.append(time.perf_counter() - t)
    mine, ref = float(np.median(ours)), float(np.median(blocking))
    assert mine < 5 * ref + 5e-3, f"all_to_all {1e3 * mine:.1f} ms vs blocking Alltoallv {1e3 * ref:.1f} ms"
    print(f"OK exchange speed {1e3 * mine:.1f} ms vs {1e3 * ref:.1f} ms rank {comm.rank}", flush=True)


def main() -> int:
    backend = sys.argv[1] if len(sys.argv) > 1 else "gloo"
    comm = distributed.init(env.detect(), backend=backend, timeout_s=60)
    # Launched by mpiexec with mpi4py importable, auto must pick MPI.
    assert comm.backend == ("mpi" if backend == "auto" else backend), (comm.backend, backend)
    if sys.argv[2:] == ["speed"]:
        try:
            check_exchange_speed(comm)
        finally:
            comm.close()
        return 0
    if sys.argv[2:] == ["vertical"]:  # any world size: 5 ranks leave one without a piece at threshold 45
        try:
            for threshold in (6, 45):
                check_plan(comm, "vertical", 4, threshold=threshold)
        finally:
            comm.close()
        return 0
    try:
        check_collectives(comm, say=False)  # MPI: called from this thread itself
        check_all_to_all(comm)
        fp32 = check_plan(comm, "table", 4, threshold=0)  # whole tables only: handed over feature-major
        for kind, dim in [("column", 4), ("column", 5), ("replicate", 4), ("auto", 3)]:
            check_plan(comm, kind, dim)
        check_plan(comm, "replicate", 4, limit=0)  # big-replica path: sparse all-gather
        # vertical: 5 big tables (whole tables round-robin at 2 ranks), 2 (one per rank at 2, two
        # 2-column pieces each at 4 ranks) and 1 (its columns split over the ranks, ids to all)
        for threshold in (6, 45, 55):
            check_plan(comm, "vertical", 4, threshold=threshold)
        bf16 = check_plan(comm, "table", 4, threshold=0, a2a_dtype=torch.bfloat16)  # bf16: half the bytes
        ids = fp32.a2a_fwd_bytes - 2 * (fp32.a2a_fwd_bytes - bf16.a2a_fwd_bytes)  # int32 ids stay as they are
        assert bf16.a2a_bwd_bytes * 2 == fp32.a2a_bwd_bytes > 0 and 0 < ids < bf16.a2a_fwd_bytes, (fp32, bf16)
        check_plan(comm, "vertical", 4, threshold=45, a2a_dtype=torch.bfloat16)
        comm.concurrent()  # MPI: from now on through its communication thread (the overlap path)
        check_collectives(comm)
    finally:
        comm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
