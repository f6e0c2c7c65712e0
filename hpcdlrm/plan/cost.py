"""A cost model of one hybrid-parallel DLRM training step, as ``hpcdlrm.train`` runs it.

Per step and rank (B = G / R rows):

- compute: FLOPs of the MLPs and the dot interaction (forward + backward = 3x forward) at a FLOP rate,
  plus memory-bound work: embedding rows this rank's pieces serve (rows x width x 4 bytes at a
  bandwidth, plus a cost per row) and the dense optimizer's pass over the MLP parameters; plus a fixed per-step overhead
  (Python, kernel launches) and the loader's per-row cost. Ranks sharing a socket share its rates.
- all-to-all: three per step (indices and embeddings forward, embedding gradients backward), bytes
  from the real :func:`~hpcdlrm.train.sharding.make_plan` placement; alpha per message and the bytes of
  all ranks sharing a link over its bandwidth.
- all-reduce: ONE flat buffer per step (MLP gradients, small replicated tables' gradients, 3 scalars),
  ring formula: 2(p-1) messages and 2(p-1)/p x bytes per rank.

Overlap (:class:`Overlap`): which communication runs while which compute runs. ``NONE`` adds the terms;
``HPCDLRM`` is what ``hpcdlrm.train`` does with ``--overlap`` (the returned embeddings travel while the
bottom MLP runs forward, the embedding gradients while the bottom MLP runs backward, the flat all-reduce
while the owned tables are updated); ``INTEL`` adds Intel's prefetch of the next batch's indices during
the top MLP's forward. A hidden transfer costs nothing only up to the length of its window.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Sequence

from ..errors import ConfigError
from ..model import ModelConfig, interaction_width, model_config
from ..train.sharding import Piece, ShardingPlan, make_plan

FLOAT_BYTES = 4
A2A_CALLS = 3  # indices fwd, embeddings fwd, embedding gradients bwd
TAIL_SLOTS = 3  # loss + two stop flags ride in the step's all-reduce (train.loop.TAIL)
DENSE_REPLICA_LIMIT = 1 << 22  # train.sharding: bigger replicas are all-gathered, not all-reduced
ROUND_ROBIN = "round_robin"  # whole tables dealt to ranks in turn (equal lookups per rank; Intel v0.7)
VERTICAL = "vertical"  # each large table split into world / tables column pieces (Intel v1.0; the trainer's)


class Overlap(Enum):
    """Which communication a trainer hides behind which compute (see the module docstring)."""

    NONE = "none"
    HPCDLRM = "hpcdlrm"
    INTEL = "intel"


# ------------------------------------------------------------------------------------ the workload


def dense_params(cfg: ModelConfig) -> int:
    """Parameters of the MLPs, including the zero columns that pad the interaction to a multiple of 8."""
    width = interaction_width(cfg.num_tables, cfg.emb_dim, cfg.interaction, cfg.self_interaction)
    top = [width + (-width % 8), *cfg.top_mlp]
    return sum(i * o + o for widths in (cfg.bot_mlp, top) for i, o in zip(widths[:-1], widths[1:]))


def flops_per_sample(cfg: ModelConfig) -> float:
    """Forward + backward FLOPs of one row's MLPs and interaction (backward ~ 2x forward)."""
    width = interaction_width(cfg.num_tables, cfg.emb_dim, cfg.interaction, cfg.self_interaction)
    top = [width + (-width % 8), *cfg.top_mlp]
    macs = sum(i * o for widths in (cfg.bot_mlp, top) for i, o in zip(widths[:-1], widths[1:]))
    if cfg.interaction == "dot":
        f = cfg.num_tables + 1
        macs += f * f * cfg.emb_dim  # the (F x D) @ (D x F) Gram matrix per row
    return 3.0 * 2.0 * macs


def bottom_flops_per_sample(cfg: ModelConfig) -> float:
    """Forward + backward FLOPs of the bottom MLP alone (the window the forward all-to-all hides under)."""
    return 3.0 * 2.0 * sum(i * o for i, o in zip(cfg.bot_mlp[:-1], cfg.bot_mlp[1:]))


@dataclass(frozen=True)
class Workload:
    """What a step computes and moves: model, tables, global batch, placement."""

    model: ModelConfig
    global_batch: int
    sharding: str = "table"
    replicate_threshold: int = 1000
    index_bytes: int = 4  # the loader's int32 ids travel as they are
    act_bytes: int = FLOAT_BYTES  # embedding activations/gradients in the all-to-all (2: bf16)

    @classmethod
    def of(cls, preset: str, table_sizes: Sequence[int], global_batch: int, sharding: str = "table",
           replicate_threshold: int = 1000) -> "Workload":
        if global_batch < 1:
            raise ConfigError(f"global batch must be >= 1, got {global_batch}")
        return cls(model_config(preset, table_sizes), int(global_batch), sharding, replicate_threshold)

    def plan(self, world: int) -> ShardingPlan:
        return _plan(tuple(self.model.table_sizes), self.model.emb_dim, world, self.sharding,
                     self.replicate_threshold)


@lru_cache(maxsize=256)
def _plan(sizes: tuple[int, ...], dim: int, world: int, kind: str, threshold: int) -> ShardingPlan:
    if kind == ROUND_ROBIN and world > 1:
        big = [t for t, n in enumerate(sizes) if n >= threshold]
        small = tuple(t for t, n in enumerate(sizes) if n < threshold)
        pieces = tuple(Piece(t, sizes[t], 0, dim, i % world) for i, t in enumerate(big))
        return ShardingPlan("table", world, dim, sizes, small, pieces)
    # vertical: the trainer's own plan (train.sharding: ranks / tables column pieces per table)
    return make_plan(sizes, dim, world, "table" if kind == ROUND_ROBIN else kind, threshold)


# ------------------------------------------------------------------------------- traffic per rank


def owned_widths(plan: ShardingPlan) -> list[int]:
    """Embedding columns each rank serves for every row of the global batch (sum of its pieces)."""
    widths = [0] * plan.world_size
    for p in plan.pieces:
        widths[p.owner] += p.width
    return widths


def a2a_bytes(plan: ShardingPlan, batch_per_rank: int, index_bytes: int = 4,
              act_bytes: int = FLOAT_BYTES) -> tuple[list[int], list[int]]:
    """Bytes each rank sends to OTHER ranks per step: (forward, backward).

    Forward: the ids of table t go to every owner of a piece of t (so column sharding sends every id to
    every rank), then each owner returns its columns for the sender's rows. Backward: each rank returns
    the gradients of the embedding columns it received.
    """
    r_n, b = plan.world_size, batch_per_rank
    if r_n == 1 or not plan.pieces:
        return [0] * r_n, [0] * r_n
    widths = owned_widths(plan)
    tables = [len(plan.tables_of(q)) for q in range(r_n)]
    fwd = [sum(b * (tables[q] * index_bytes + widths[r] * act_bytes) for q in range(r_n) if q != r)
           for r in range(r_n)]
    bwd = [sum(b * widths[q] * act_bytes for q in range(r_n) if q != r) for r in range(r_n)]
    return fwd, bwd


def allreduce_buffer_bytes(w: Workload, world: int) -> int:
    """Bytes of the step's single flat all-reduce (0 on one rank: there is none)."""
    if world == 1:
        return 0
    plan = w.plan(world)
    rep_rows = sum(plan.table_sizes[t] for t in plan.replicated)
    replica = rep_rows * (plan.dim + 1)
    replica = replica if replica <= DENSE_REPLICA_LIMIT else 0
    return (dense_params(w.model) + replica + TAIL_SLOTS) * FLOAT_BYTES


def ring_allreduce_bytes(nbytes: float, world: int) -> float:
    """Bytes each rank sends in a ring all-reduce (reduce-scatter + all-gather): 2(p-1)/p x n."""
    return 0.0 if world <= 1 else 2.0 * (world - 1) / world * nbytes


def embedding_bytes(plan: ShardingPlan, global_batch: int) -> list[int]:
    """Embedding bytes each rank gathers per step (its pieces for every row, its replicas for its rows)."""
    b = global_batch // plan.world_size
    rep = len(plan.replicated) * plan.dim * b
    return [(global_batch * w + rep) * FLOAT_BYTES for w in owned_widths(plan)]


def embedding_rows(plan: ShardingPlan, global_batch: int) -> list[int]:
    """Table rows (of any width) each rank gathers and updates per step."""
    pieces = [0] * plan.world_size
    for p in plan.pieces:
        pieces[p.owner] += 1
    return [global_batch * n + len(plan.replicated) * (global_batch // plan.world_size) for n in pieces]


# --------------------------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class Rates:
    """Speeds of ONE socket (or of this calibration host) and of the software around the collectives."""

    flops_per_s: float  # MLP + interaction FLOPs
    emb_bytes_per_s: float  # embedding rows gathered and updated (sparse SGD), per byte ...
    opt_bytes_per_s: float  # dense optimizer: MLP parameter bytes per step
    loader_s_per_row: float  # next(batches) per row
    overhead_s: float  # fixed per step and rank
    alpha_s: float  # per message of a collective
    link_bytes_per_s: float  # the link all ranks of a host share (loopback here, the node's memory there)
    emb_row_s: float = 0.0  # ... and per row (index_add_ pays per row: narrow rows cost more per byte)
    thread_efficiency: float = 1.0  # FLOP rate of a rank running several threads, relative to flops_per_s
    background_threads: float = 0.0  # other tenants' runnable threads on the calibration host (0: dedicated)


@dataclass(frozen=True)
class Cluster:
    """Where the ranks run: ``nodes`` x ``sockets_per_node`` sockets, ``ranks_per_socket`` ranks each."""

    nodes: int = 1
    sockets_per_node: int = 1
    ranks_per_socket: int = 1
    net_bytes_per_s: float | None = None  # per node, between nodes (None: one node)
    # Known cores (the calibration host): ranks share them with the host's other runnable threads.
    # None: a dedicated socket whose ranks split its rates evenly.
    cores_per_socket: int | None = None
    threads_per_rank: int = 1

    @property
    def threaded(self) -> bool:  # Rates.thread_efficiency applies
        return self.threads_per_rank > 1

    def share(self, background: float = 0.0) -> float:
        """How many times slower a rank computes than the whole socket would: ranks_per_socket on a
        dedicated socket; on a known host, its threads' share of the cores among all runnable threads."""
        if self.cores_per_socket is None:
            return float(self.ranks_per_socket)
        cores, n = self.cores_per_socket, self.ranks_per_socket * self.threads_per_rank
        return max(1.0, (n + background) / cores) * cores / self.threads_per_rank

    def __post_init__(self) -> None:
        for name in ("nodes", "sockets_per_node", "ranks_per_socket"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.nodes > 1 and not (self.net_bytes_per_s or 0) > 0:
            raise ConfigError(f"{self.nodes} nodes need a network bandwidth > 0")

    @property
    def world(self) -> int:
        return self.nodes * self.sockets_per_node * self.ranks_per_socket

    @property
    def ranks_per_node(self) -> int:
        return self.sockets_per_node * self.ranks_per_socket


@dataclass(frozen=True)
class StepCost:
    """Predicted seconds per step by term (critical rank), and what they are made of."""

    compute_s: float
    a2a_s: float
    allreduce_s: float
    loader_s: float
    a2a_bytes: int  # max over ranks, forward + backward
    allreduce_bytes: int
    global_batch: int
    hidden_s: float = 0.0  # communication that runs under compute (Overlap)

    @property
    def exposed_comm_s(self) -> float:
        return self.a2a_s + self.allreduce_s - self.hidden_s

    @property
    def step_s(self) -> float:
        return self.compute_s + self.exposed_comm_s + self.loader_s

    @property
    def samples_per_s(self) -> float:
        return self.global_batch / self.step_s


# ---------------------------------------------------------------------------------- the regressors


@dataclass(frozen=True)
class Terms:
    """Work per step of the critical rank, already multiplied by the ranks that share its resource.
    Pairs are (all-to-all, all-reduce)."""

    flops: float
    emb_bytes: float
    emb_rows: float
    opt_bytes: float
    rows: float  # loader rows
    messages: tuple[float, float]  # collective messages
    link_bytes: tuple[float, float]  # bytes through the link the node's ranks share (loopback, memory)
    net_bytes: tuple[float, float]  # bytes through the node's network port
    a2a_bytes: int  # max over ranks, forward + backward, sent to other ranks
    allreduce_bytes: int  # the flat buffer
    bottom_flops: float = 0.0  # of ``flops``: the bottom MLP's (an overlap window)
    a2a_split: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)  # ids, embeddings fwd, gradients bwd


def terms(w: Workload, c: Cluster, background: float = 0.0) -> Terms:
    """The model's regressors for ``w`` on ``c`` (linear in the inverse rates); ``background``: other
    runnable threads on a host with known cores."""
    world, share = c.world, c.share(background)
    if w.global_batch % world:
        raise ConfigError(f"global batch {w.global_batch} is not a multiple of the {world} ranks")
    plan, b = w.plan(world), w.global_batch // world
    fwd, bwd = a2a_bytes(plan, b, w.index_bytes, w.act_bytes)
    a2a = max(f + g for f, g in zip(fwd, bwd))
    ids, _ = a2a_bytes(plan, b, w.index_bytes, 0)
    crit = max(range(world), key=lambda q: fwd[q] + bwd[q])
    split = (ids[crit] / a2a, (fwd[crit] - ids[crit]) / a2a, bwd[crit] / a2a) if a2a else (1 / 3, 1 / 3, 1 / 3)
    ar = allreduce_buffer_bytes(w, world)
    ring = ring_allreduce_bytes(ar, world)
    off = (world - c.ranks_per_node) / (world - 1) if world > 1 else 0.0  # share of peers on other nodes
    n = c.ranks_per_node
    # A node's port carries the off-node all-to-all traffic of all its ranks but only one ring link.
    emb = embedding_bytes(plan, w.global_batch)
    busiest = max(range(world), key=emb.__getitem__)
    return Terms(flops=share * b * flops_per_sample(w.model), emb_bytes=share * emb[busiest],
                 emb_rows=share * embedding_rows(plan, w.global_batch)[busiest],
                 opt_bytes=share * dense_params(w.model) * FLOAT_BYTES, rows=share * b,
                 messages=((A2A_CALLS if plan.pieces else 0) * (world - 1), 2 * (world - 1)),
                 link_bytes=(n * a2a * (1 - off), n * ring if world > 1 else 0.0),
                 net_bytes=(n * a2a * off, ring if c.nodes > 1 else 0.0),
                 a2a_bytes=a2a, allreduce_bytes=ar, bottom_flops=share * b * bottom_flops_per_sample(w.model),
                 a2a_split=split)


def predict(w: Workload, c: Cluster, r: Rates, overlap: Overlap = Overlap.NONE, train: bool = True) -> StepCost:
    """Predicted time of one step of ``w`` on ``c`` at rates ``r``. ``train=False``: an evaluation step
    (forward only: a third of the FLOPs, the gathers without the update, no backward exchange, no
    all-reduce)."""
    t = terms(w, c, r.background_threads)
    flops_rate = r.flops_per_s * (r.thread_efficiency if c.threaded else 1.0)
    frac = 1.0 if train else 1 / 3  # forward = 1/3 of forward + backward (FLOPs; gather vs gather + update)
    mlp, bottom = frac * t.flops / flops_rate, frac * t.bottom_flops / flops_rate
    emb = frac * (t.emb_bytes / r.emb_bytes_per_s + t.emb_rows * r.emb_row_s)
    compute = mlp + emb + (t.opt_bytes / r.opt_bytes_per_s if train else 0.0) + r.overhead_s
    net = c.net_bytes_per_s or float("inf")
    comm = [m * r.alpha_s + lb / r.link_bytes_per_s + nb / net
            for m, lb, nb in zip(t.messages, t.link_bytes, t.net_bytes)]
    ids, emb_fwd, grads = (comm[0] * f for f in t.a2a_split)
    if not train:
        comm = [ids + emb_fwd, 0.0]
        grads = 0.0
    hidden = 0.0
    if overlap is not Overlap.NONE:
        bot_fwd = bottom / 3 if train else bottom
        # Returned embeddings under the bottom MLP's forward; gradients under its backward; the
        # all-reduce under the owned tables' update (2/3 of the embedding work: read + write).
        hidden = min(emb_fwd, bot_fwd) + min(grads, 2 * bottom / 3) + min(comm[1], 2 * emb / 3)
        if overlap is Overlap.INTEL:  # the next batch's ids travel during the top MLP's forward
            hidden += min(ids, (mlp - bottom) / 3 if train else mlp - bottom)
    return StepCost(compute_s=compute, a2a_s=comm[0], allreduce_s=comm[1], loader_s=t.rows * r.loader_s_per_row,
                    a2a_bytes=t.a2a_bytes, allreduce_bytes=t.allreduce_bytes, global_batch=w.global_batch,
                    hidden_s=hidden)
