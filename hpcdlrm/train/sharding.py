"""Where each embedding table lives across ranks, and the exchange that makes it invisible to the model.

A plan places every *big* table (rows >= ``replicate_threshold``) as one or more column *pieces*
(``table``: one full-width piece per table, greedily balanced by rows x dim; ``column``: the dim split
over all ranks; ``vertical``: Intel's MLPerf v1.0 grouped split, each table cut into ranks / tables
column pieces so every rank serves one piece and receives only that table's ids) and replicates the
small ones on every rank. With one rank
every table is a single local piece, so the single-process path is the model's plain lookup.

Forward (:class:`ShardedEmbeddings`): each rank sends the indices of a table to the owners of its
pieces (all-to-all with uneven splits), owners look up rows for every rank's batch slice and send the
vectors back (a second all-to-all); pieces are concatenated into the (B, T, D) tensor the interaction
expects. The backward runs the same routes in reverse (autograd through ``distributed.all_to_all``).
Updates stay sparse: owners turn their lookup leaves' gradients into (rows, summed grad) and apply the
sparse optimizer to those rows only; replicated tables sum their gradients over ranks first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..model import Lookup, check_ids, sparse_grad, split_fp32
from .config import SHARDINGS as KINDS
from .distributed import Comm, all_to_all
from .optim import RowWiseAdagrad, SparseOptimizer, row_sq_sum

REPLICATED = "replicated"



@dataclass(frozen=True)
class Piece:
    """Columns ``[lo, hi)`` of table ``table`` (all its rows), held by rank ``owner``."""

    table: int
    rows: int
    lo: int
    hi: int
    owner: int

    @property
    def width(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class ShardingPlan:
    kind: str  # the resolved kind: table | column | replicate
    world_size: int
    dim: int
    table_sizes: tuple[int, ...]
    replicated: tuple[int, ...]  # tables held whole by every rank
    pieces: tuple[Piece, ...]  # model-parallel pieces, ordered by (table, lo)

    def pieces_of(self, rank: int) -> list[Piece]:
        return [p for p in self.pieces if p.owner == rank]

    def tables_of(self, rank: int) -> list[int]:
        """Tables whose indices ``rank`` needs from every rank (it owns a piece of them)."""
        return sorted({p.table for p in self.pieces_of(rank)})

    def load(self, rank: int) -> int:
        """Embedding values (rows x width) stored by ``rank``, replicas included."""
        rep = sum(self.table_sizes[t] for t in self.replicated) * self.dim
        return rep + sum(p.rows * p.width for p in self.pieces_of(rank))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "world_size": self.world_size, "replicated": list(self.replicated),
                "pieces": [[p.table, p.lo, p.hi, p.owner] for p in self.pieces],
                "load": [self.load(r) for r in range(self.world_size)]}


def column_widths(dim: int, parts: int) -> list[int]:
    """Split ``dim`` columns into ``parts`` widths differing by at most one (first ones wider)."""
    if parts > dim:
        raise ConfigError(f"--sharding column: cannot split emb dim {dim} over {parts} ranks "
                          f"(needs world size <= emb dim); use --sharding table")
    return [dim // parts + (1 if i < dim % parts else 0) for i in range(parts)]


def _greedy_tables(big: list[int], sizes: Sequence[int], dim: int, world: int) -> list[Piece]:
    load = [0] * world
    pieces = []
    for t in sorted(big, key=lambda t: (-sizes[t], t)):  # largest first, then the least loaded rank
        owner = min(range(world), key=lambda r: (load[r], r))
        load[owner] += sizes[t] * dim
        pieces.append(Piece(t, sizes[t], 0, dim, owner))
    return pieces


def _column_pieces(big: list[int], sizes: Sequence[int], dim: int, world: int) -> list[Piece]:
    widths = column_widths(dim, world)
    pieces = []
    for t in big:
        lo = 0
        for j, w in enumerate(widths):
            # Rotate owners by table so the wider slices (dim % R) do not all land on rank 0.
            pieces.append(Piece(t, sizes[t], lo, lo + w, (j + t) % world))
            lo += w
    return pieces


def _vertical_pieces(big: list[int], sizes: Sequence[int], dim: int, world: int) -> list[Piece]:
    """Each big table cut into g = world // tables column pieces, dealt to ranks in (table, piece) order:
    with ranks a multiple of the tables every rank holds exactly one piece (Intel's v1.0 placement: 64
    ranks, 16 tables, 4 pieces of 32 columns); with fewer ranks than tables whole tables go round-robin
    (Intel's v0.7). Unlike ``column``, a table's ids go only to the g owners of its pieces."""
    groups = max(1, world // len(big)) if big else 1
    if groups > dim:
        raise ConfigError(f"--sharding vertical: cannot split emb dim {dim} into {groups} pieces per table "
                          f"({world} ranks / {len(big)} big tables); use --sharding table")
    widths = column_widths(dim, groups)
    pieces, k = [], 0
    for t in big:
        lo = 0
        for w in widths:
            pieces.append(Piece(t, sizes[t], lo, lo + w, k % world))
            lo, k = lo + w, k + 1
    return pieces


def make_plan(table_sizes: Sequence[int], dim: int, world_size: int, kind: str = "auto",
              replicate_threshold: int = 1000) -> ShardingPlan:
    """Place tables over ``world_size`` ranks. Pure: every rank computes the same plan."""
    if kind not in KINDS:
        raise ConfigError(f"--sharding: {kind!r} is not one of {list(KINDS)}")
    sizes = tuple(int(s) for s in table_sizes)
    if world_size == 1:  # one rank: every table local, looked up and updated sparsely
        return ShardingPlan(kind if kind != "auto" else "table", 1, dim, sizes, (),
                            tuple(Piece(t, n, 0, dim, 0) for t, n in enumerate(sizes)))
    if kind == "replicate":
        return ShardingPlan(kind, world_size, dim, sizes, tuple(range(len(sizes))), ())
    small = tuple(t for t, n in enumerate(sizes) if n < replicate_threshold)
    big = [t for t, n in enumerate(sizes) if n >= replicate_threshold]
    if kind == "auto":
        kind = "column" if len(big) < world_size <= dim else "table"
    if kind == "table":
        pieces = _greedy_tables(big, sizes, dim, world_size)
    elif kind == "vertical":
        pieces = _vertical_pieces(big, sizes, dim, world_size)
    else:
        pieces = _column_pieces(big, sizes, dim, world_size)
    pieces.sort(key=lambda p: (p.table, p.lo))
    return ShardingPlan(kind, world_size, dim, sizes, small, tuple(pieces))


class _Group:
    """Local pieces of one width, merged into one weight so one index_select serves them all.

    bf16 tables: ``weight`` holds the bf16 high halves the forward reads, ``trail`` the low halves that
    make the update exact (split SGD); fp32 tables have no trail.
    """

    def __init__(self, pieces: list[Piece], weight: torch.Tensor, cols: list[int], dtype: torch.dtype) -> None:
        self.key = f"emb.w{pieces[0].width}"  # sparse optimizer state is keyed by it
        self.pieces, self.width = pieces, pieces[0].width
        self.weight, self.trail = _stored(weight, dtype)
        # First row of each piece in ``weight`` and its column among the received index columns.
        self.offsets = torch.tensor([0] + [p.rows for p in pieces[:-1]], dtype=torch.int64).cumsum(0)
        self.cols = torch.tensor(cols, dtype=torch.int64)
        self.all_cols = False  # set by the owner: the group reads every received column, in order
        self.tables = torch.tensor([p.table for p in pieces], dtype=torch.int64)


InitFn = Callable[..., torch.Tensor]  # init_table(rows, dim, seed, table, cols=(lo, hi)) -> (rows, hi-lo)


def _layout(plan: ShardingPlan, rank: int) -> list[list[Piece]]:
    """The local groups of ``rank``: its pieces bucketed by width (widest first). Every rank can
    compute every other rank's layout, which fixes the column order of the returned embeddings."""
    mine = plan.pieces_of(rank)
    return [[p for p in mine if p.width == w] for w in sorted({p.width for p in mine}, reverse=True)]


def _column_permutation(plan: ShardingPlan) -> torch.Tensor | None:
    """Index that reorders [owner 0's columns, owner 1's, ..., replicated tables] to (table, dim)."""
    dim, perm = plan.dim, torch.empty(len(plan.table_sizes) * plan.dim, dtype=torch.int64)
    pos = 0
    for q in range(plan.world_size):
        for group in _layout(plan, q):
            for p in group:
                perm[p.table * dim + p.lo: p.table * dim + p.hi] = torch.arange(pos, pos + p.width)
                pos += p.width
    for t in plan.replicated:
        perm[t * dim: (t + 1) * dim] = torch.arange(pos, pos + dim)
        pos += dim
    return None if torch.equal(perm, torch.arange(perm.numel())) else perm


Run = tuple[int, int, int]  # (source column, destination column, width)


@dataclass(frozen=True)
class _Assembly:
    """Where the received blocks' columns go in the (B, tables x dim) output: per source rank (its
    block is ``widths[q]`` columns wide, in its layout's order) and for the replicated block."""

    widths: tuple[int, ...]
    runs: tuple[tuple[Run, ...], ...]
    rep_runs: tuple[Run, ...]
    rep_width: int
    cols: int


def _merged(runs: list[Run]) -> tuple[Run, ...]:
    """Adjacent runs that continue in both source and destination become one copy."""
    out: list[Run] = []
    for s, d, n in runs:
        if out and out[-1][0] + out[-1][2] == s and out[-1][1] + out[-1][2] == d:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + n)
        else:
            out.append((s, d, n))
    return tuple(out)


def _assembly(plan: ShardingPlan) -> _Assembly:
    dim, runs, widths = plan.dim, [], []
    for q in range(plan.world_size):
        mine, pos = [], 0
        for group in _layout(plan, q):
            for p in group:
                mine.append((pos, p.table * dim + p.lo, p.width))
                pos += p.width
        runs.append(_merged(mine))
        widths.append(pos)
    rep = _merged([(i * dim, t * dim, dim) for i, t in enumerate(plan.replicated)])
    return _Assembly(tuple(widths), tuple(runs), rep, len(plan.replicated) * dim, len(plan.table_sizes) * dim)


class _Assemble(torch.autograd.Function):
    """The received flat buffer (every rank's block) and the replicated block -> (B, tables x dim) in
    table order, one strided copy per run; backward writes the gradient straight into a flat buffer
    laid out as the all-to-all sends it. (A concatenation plus a column gather cost two passes forward
    and, backward, a scatter-add into zeros plus the split's concatenation.)"""

    @staticmethod
    def forward(ctx: Any, flat: torch.Tensor, rep: torch.Tensor | None, a: _Assembly, b: int) -> torch.Tensor:
        ctx.a, ctx.b, ctx.rep_dtype = a, b, None if rep is None else rep.dtype
        out = flat.new_empty(b, a.cols)
        _copy_runs(out, flat, rep, a, b, to_out=True)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        a, b = ctx.a, ctx.b
        gflat = grad.new_empty(b * sum(a.widths))
        grep = None if ctx.rep_dtype is None else torch.empty(b, a.rep_width, dtype=ctx.rep_dtype)
        _copy_runs(grad, gflat, grep, a, b, to_out=False)
        return gflat, grep, None, None


def _copy_runs(out: torch.Tensor, flat: torch.Tensor, rep: torch.Tensor | None, a: _Assembly, b: int,
               to_out: bool) -> None:
    """Copy every run between the (b, cols) ``out`` and the blocks (either way)."""
    off, blocks = 0, []
    for w, runs in zip(a.widths, a.runs):
        blocks.append((flat[off: off + b * w].view(b, w), runs))
        off += b * w
    if rep is not None:
        blocks.append((rep, a.rep_runs))
    for block, runs in blocks:
        for s, d, n in runs:
            if to_out:
                out[:, d: d + n].copy_(block[:, s: s + n])
            else:
                block[:, s: s + n].copy_(out[:, d: d + n])


def _stored(weight: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An fp32 weight as stored: itself (fp32) or its split bf16 high / int16 low halves (bf16)."""
    if dtype == torch.float32:
        return weight, None
    if dtype != torch.bfloat16:
        raise ConfigError(f"embedding tables are float32 or bfloat16, not {dtype}")
    return split_fp32(weight)


def _trail(trail: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The optimizer keyword of a split bf16 weight; none for fp32 (custom optimizers need not know it)."""
    return {} if trail is None else {"trail": trail}


def _merged_weight(pieces: list[Piece], dim: int, seed: int, init_fn: InitFn) -> torch.Tensor:
    # init_table draws each column from its own stream: a piece is built without its full table.
    w = pieces[0].hi - pieces[0].lo
    weight = torch.empty(sum(p.rows for p in pieces), w)
    row = 0
    for p in pieces:
        weight[row: row + p.rows] = init_fn(p.rows, dim, seed, p.table, cols=(p.lo, p.hi))
        row += p.rows
    return weight


class ShardedEmbeddings(nn.Module):
    """This rank's share of the embedding tables and the all-to-all exchange around them; a drop-in
    for ``DLRM.embeddings``: (B, T) local indices -> (B, T, D) embeddings of the same rows, features
    in table order or, when ``feature_order`` is set, in that order (a strided view, no copy).

    ``batch_sizes`` (every rank's B) is set by the trainer before a forward whose batches may differ
    between ranks (evaluation); None means every rank has this rank's B (training).
    Weights are buffers, so ``model.state_dict()`` holds exactly this rank's shards.
    """

    def __init__(self, plan: ShardingPlan, comm: Comm, seed: int, init_fn: InitFn,
                 dense_replica_limit: int = 1 << 22, dtype: torch.dtype = torch.float32,
                 a2a_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        # Embeddings and their gradients travel (and the (B, T, D) output comes) in a2a_dtype when set:
        # bf16 halves the exchange's bytes; under --bf16 the interaction rounds them to bf16 anyway.
        self.a2a_dtype = a2a_dtype
        if plan.world_size != comm.world_size:
            raise ConfigError(f"sharding plan is for {plan.world_size} ranks, running on {comm.world_size}")
        self.plan, self.comm, self.dim, self.dtype, rank = plan, comm, plan.dim, dtype, comm.rank
        self.register_buffer("sizes", torch.tensor(plan.table_sizes, dtype=torch.int64), persistent=False)
        sizes = torch.tensor(plan.table_sizes, dtype=torch.int64)
        self.table_base = sizes.cumsum(0) - sizes  # canonical (table, row) numbering across ranks
        self.need = [plan.tables_of(q) for q in range(plan.world_size)]
        self.need_cols = [torch.tensor(n, dtype=torch.int64) for n in self.need]
        self.widths = [sum(p.width for g in _layout(plan, q) for p in g) for q in range(plan.world_size)]
        col_of = {t: i for i, t in enumerate(self.need[rank])}
        self.groups = [_Group(ps, _merged_weight(ps, plan.dim, seed, init_fn), [col_of[p.table] for p in ps], dtype)
                       for ps in _layout(plan, rank)]
        for g in self.groups:
            g.all_cols = g.cols.tolist() == list(range(len(self.need[rank])))  # e.g. one rank: no gather
            self.register_buffer(g.key.replace(".", "_"), g.weight)
            if g.trail is not None:
                self.register_buffer(g.key.replace(".", "_") + "_trail", g.trail)
        self.rep_cols = torch.tensor(plan.replicated, dtype=torch.int64)
        self.rep_rows = sum(plan.table_sizes[t] for t in plan.replicated)
        self.rep_weight: torch.Tensor | None = None
        self.rep_trail: torch.Tensor | None = None
        if plan.replicated:
            full = [Piece(t, plan.table_sizes[t], 0, plan.dim, rank) for t in plan.replicated]
            self.rep_weight, self.rep_trail = _stored(_merged_weight(full, plan.dim, seed, init_fn), dtype)
            self.register_buffer("replicated", self.rep_weight)
            if self.rep_trail is not None:
                self.register_buffer("replicated_trail", self.rep_trail)
            self.rep_offsets = torch.tensor([0] + [p.rows for p in full[:-1]], dtype=torch.int64).cumsum(0)
        # Small replicas: dense gradient summed in the step's single all-reduce. Large ones (pure data
        # parallel on big tables): all-gather the sparse rows instead of reducing rows x dim.
        self.dense_replicas = self.rep_rows * (plan.dim + 1) <= dense_replica_limit
        self.perm = _column_permutation(plan)
        self.assembly = _assembly(plan)
        # Whole tables only (table-wise, nothing replicated): owners send each table's rows feature-major,
        # (tables, B, D) per destination, so the received buffer IS (T, B, D) with the tables in owner
        # order; the model reads its transpose as (B, T, D) in ``feature_order`` and no assembly copy
        # is made (forward or backward). Otherwise the blocks are assembled into table order.
        self.feature_major = (plan.world_size > 1 and bool(plan.pieces) and not plan.replicated
                              and all(p.width == plan.dim for p in plan.pieces))
        self.feature_order = ([p.table for q in range(plan.world_size) for g in _layout(plan, q) for p in g]
                              if self.feature_major else None)
        self.batch_sizes: list[int] | None = None
        self._lookups: list[Lookup] = []
        self._rep_lookup: Lookup | None = None

    # ------------------------------------------------------------------ forward
    def _exchange_indices(self, sparse: torch.Tensor, batch_sizes: Sequence[int]) -> torch.Tensor:
        """(B, T) local indices -> (sum B, n_own) indices of the tables this rank owns pieces of."""
        rank, world = self.comm.rank, self.comm.world_size
        if world == 1:
            return sparse if len(self.need[0]) == sparse.shape[1] else sparse[:, self.need_cols[0]]
        send = torch.cat([sparse[:, c].reshape(-1) for c in self.need_cols])
        n_own = len(self.need[rank])
        out = self.comm.all_to_all(send, [sparse.shape[0] * len(n) for n in self.need],
                                   [b * n_own for b in batch_sizes])
        return out.view(int(sum(batch_sizes)), n_own)  # n_own 0: a vertical rank that holds no piece

    def _gather(self, key: str, weight: torch.Tensor, rows: torch.Tensor,
                trail: torch.Tensor | None = None) -> torch.Tensor:
        out = weight.index_select(0, rows)
        if torch.is_grad_enabled():
            out.requires_grad_()
            lookup = Lookup(key, weight, rows, out, trail)
            if key == REPLICATED:
                self._rep_lookup = lookup
            else:
                self._lookups.append(lookup)
        return out

    def _lookup_feature_major(self, ids: torch.Tensor, batch_sizes: Sequence[int]) -> torch.Tensor:
        """This rank's whole tables for every received row, flat, laid out per destination as
        (own tables, its B, D): the send buffer of the feature-major exchange."""
        g = self.groups[0]  # whole tables: one width, one group
        rows = (ids if g.all_cols else ids[:, g.cols]) + g.offsets
        if len(set(batch_sizes)) == 1:
            rows = rows.view(len(batch_sizes), batch_sizes[0], -1).transpose(1, 2).reshape(-1)
        else:  # evaluation: ranks' last batches may differ
            rows = torch.cat([r.t().reshape(-1) for r in rows.split(list(batch_sizes))])
        return self._gather(g.key, g.weight, rows, g.trail).reshape(-1)

    def _lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Gather this rank's pieces for every received row: (sum B, own width)."""
        blocks = [self._gather(g.key, g.weight, ((ids if g.all_cols else ids[:, g.cols]) + g.offsets).reshape(-1),
                               g.trail)
                  .view(ids.shape[0], len(g.pieces) * g.width)
                  for g in self.groups]
        if not blocks:  # no piece here (vertical), yet the backward exchange needs this rank too
            return torch.empty(ids.shape[0], 0, dtype=self.dtype, requires_grad=torch.is_grad_enabled())
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, 1)

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        check_ids(sparse, self.sizes)
        self._lookups, self._rep_lookup = [], None
        b, rank = sparse.shape[0], self.comm.rank
        sizes = self.batch_sizes or [b] * self.comm.world_size
        cols = []
        if self.feature_major:
            send = self._lookup_feature_major(self._exchange_indices(sparse, sizes), sizes)
            if self.a2a_dtype is not None:
                send = send.to(self.a2a_dtype)  # autograd: the gradients come back in a2a_dtype too
            flat = all_to_all(self.comm, send, [n * self.widths[rank] for n in sizes], [b * w for w in self.widths])
            return flat.view(len(self.plan.table_sizes), b, self.dim).transpose(0, 1)
        if self.plan.pieces:
            packed = self._lookup(self._exchange_indices(sparse, sizes))
            if self.comm.world_size == 1:
                cols.append(packed)
            else:
                send = packed.reshape(-1)
                if self.a2a_dtype is not None:
                    send = send.to(self.a2a_dtype)  # autograd: the gradients come back in a2a_dtype too
                flat = all_to_all(self.comm, send, [n * self.widths[rank] for n in sizes],
                                  [b * w for w in self.widths])
        if self.plan.replicated:
            assert self.rep_weight is not None
            rows = (sparse[:, self.rep_cols] + self.rep_offsets).reshape(-1)
            cols.append(self._gather(REPLICATED, self.rep_weight, rows, self.rep_trail)
                        .view(b, len(self.plan.replicated) * self.dim))
        if self.plan.pieces and self.comm.world_size > 1:  # the exchanged blocks and replicas, in table order
            emb = _Assemble.apply(flat, cols[0] if cols else None, self.assembly, b)
            return emb.view(b, len(self.plan.table_sizes), self.dim)
        if self.a2a_dtype is not None and self.comm.world_size > 1:
            cols = [c.to(self.a2a_dtype) for c in cols]
        emb = cols[0] if len(cols) == 1 else torch.cat(cols, 1)
        if self.perm is not None:
            emb = emb.index_select(1, self.perm)
        return emb.view(b, len(self.plan.table_sizes), self.dim)

    def lookups(self) -> list[Lookup]:
        return self._lookups + ([self._rep_lookup] if self._rep_lookup is not None else [])

    # ------------------------------------------------------------------ gradients and updates
    @property
    def reduce_size(self) -> int:
        """Slots this module needs in the step's flat all-reduce buffer (dense replica gradients)."""
        return self.rep_rows * (self.dim + 1) if self.plan.replicated and self.dense_replicas else 0

    def pack_grads(self, buf: torch.Tensor) -> None:
        """After backward: add the replicated tables' gradients and touch counts to ``buf``
        (``reduce_size`` slots of the flat buffer, summed over ranks by the caller)."""
        if not self.reduce_size:
            return
        grad, counts = self._replica_views(buf)
        lk = self._rep_lookup
        if lk is not None and lk.out.grad is not None:
            grad.index_add_(0, lk.ids, lk.out.grad.to(grad.dtype))
            counts.index_add_(0, lk.ids, torch.ones(lk.ids.numel()))

    def _replica_views(self, buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.rep_rows * self.dim
        return buf[:n].view(self.rep_rows, self.dim), buf[n: n + self.rep_rows]

    def sparse_step(self, opt: SparseOptimizer, lr: float, buf: torch.Tensor) -> None:
        """After the all-reduce: apply ``opt`` to the rows this step touched, and nothing else."""
        done = [lk for lk in self._lookups if lk.out.grad is not None]
        # vertical: a rank may hold no piece, yet it joins the collective of the full-row sums
        if self._needs_row_sq(opt) and (done or self.plan.kind != "column"):
            blocks = [(lk, *sparse_grad(lk.ids, lk.out.grad)) for lk in done]
            row_sqs = self._full_row_sq([(lk.key, rows, grad) for lk, rows, grad in blocks])
            for (lk, rows, grad), sq in zip(blocks, row_sqs):
                opt.step(lk.key, lk.weight, rows, grad, lr, row_sq_sum=sq, full_dim=self.dim, **_trail(lk.trail))
        else:  # the optimizers coalesce repeated rows themselves where they must
            for lk in done:
                opt.step(lk.key, lk.weight, lk.ids, lk.out.grad, lr, **_trail(lk.trail))
        if self.plan.replicated:
            rows, grad = self._replica_grad(buf)
            opt.step(REPLICATED, self.rep_weight, rows, grad, lr, **_trail(self.rep_trail))

    def _replica_grad(self, buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dense_replicas:
            grad, counts = self._replica_views(buf)
            rows = counts.nonzero().squeeze(1)
            return rows, grad.index_select(0, rows)
        lk = self._rep_lookup  # big replicas: gather every rank's coalesced rows, coalesce again
        assert lk is not None and lk.out.grad is not None
        rows, grad = sparse_grad(lk.ids, lk.out.grad)
        all_rows = self.comm.all_gather_varlen(rows)
        all_grad = self.comm.all_gather_varlen(grad.reshape(-1)).view(-1, self.dim)
        return sparse_grad(all_rows, all_grad)

    def _needs_row_sq(self, opt: SparseOptimizer) -> bool:
        # Row-wise state over the full row while this rank holds only some of its columns.
        split = any(p.width < self.dim for p in self.plan.pieces)
        return split and self.comm.world_size > 1 and isinstance(opt, RowWiseAdagrad)

    def _full_row_sq(self, blocks: list[tuple[str, torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """Per-row sums of squared gradients over the FULL dim, for the rows of this rank's column pieces.

        Every owner of a column-split table received the same indices, so each table's touched rows are
        the same on all ranks (whichever width group holds them); ordered canonically by (table, row)
        the partial sums line up in one all-reduce.
        """
        canon, partial = [], []
        for key, rows, grad in blocks:
            group = next(g for g in self.groups if g.key == key)
            piece = torch.searchsorted(group.offsets, rows, right=True) - 1
            canon.append(self.table_base[group.tables[piece]] + rows - group.offsets[piece])
            partial.append(row_sq_sum(grad))
        sizes = [rows.numel() for _, rows, _ in blocks]
        if self.plan.kind != "column":  # vertical: only a table's g owners share its rows
            mine = (torch.cat(canon), torch.cat(partial)) if blocks else \
                (torch.zeros(0, dtype=torch.int64), torch.zeros(0))
            return list(self._owners_row_sq(*mine).split(sizes))
        order = torch.argsort(torch.cat(canon))
        summed = torch.cat(partial)[order].contiguous()  # row_sq_sum of the slices, canonical order
        self.comm.all_reduce_(summed)
        full = torch.empty_like(summed)
        full[order] = summed
        return list(full.split(sizes))

    def _owners_row_sq(self, canon: torch.Tensor, partial: torch.Tensor) -> torch.Tensor:
        """Full-row sums when the ranks' row sets differ (a table's pieces on some ranks only): every rank's
        (row, partial sum) pairs are gathered and each rank sums those of its own rows."""
        rows_all = self.comm.all_gather_varlen(canon)
        part_all = self.comm.all_gather_varlen(partial.contiguous())
        uniq, inverse = torch.unique(rows_all, return_inverse=True)
        sums = torch.zeros(uniq.numel(), dtype=part_all.dtype).index_add_(0, inverse, part_all)
        return sums[torch.searchsorted(uniq, canon)]

