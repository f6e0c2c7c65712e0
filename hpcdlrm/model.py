"""The DLRM model: bottom MLP, embedding tables, feature interaction, top MLP.

The model knows nothing about distribution (TorchRec style): the trainer may replace ``DLRM.embeddings``
with a sharded module that has the same ``forward`` ((B, T) ids -> (B, T, D)) and ``lookups()``.

Embedding weights are *not* trained by autograd. A forward gathers the rows it needs into a fresh leaf
tensor (``Lookup.out``); after ``backward()`` that leaf's ``.grad`` holds one gradient row per lookup,
and a sparse optimizer (``hpcdlrm.train.optim``) applies it to the touched rows only. This avoids the
dense ``rows x D`` gradient and the slow sparse-tensor machinery of ``nn.EmbeddingBag(sparse=True)``.

Example::

    cfg = model_config("kaggle", table_sizes=[1000] * 26)
    model = DLRM(cfg, seed=0)
    logits = model(dense, sparse)      # dense (B, 13) float32, sparse (B, 26) int -> (B,)
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .errors import ConfigError, DataError

if sys.byteorder != "little":  # split_fp32/join_fp32 read the halves of a float's bits by position
    raise ImportError("hpcdlrm needs a little-endian CPU")

INTERACTIONS = ("dot", "cat")

PRESETS: dict[str, dict[str, Any]] = {
    # facebookresearch/dlrm bench/dlrm_s_criteo_kaggle.sh
    "kaggle": {"emb_dim": 16, "bot_mlp": [13, 512, 256, 64, 16], "top_mlp": [512, 256, 1]},
    # MLPerf DLRM v1 reference (bench/run_and_time.sh): tables capped at 40M rows by hashing
    "mlperf": {
        "emb_dim": 128,
        "bot_mlp": [13, 512, 256, 128],
        "top_mlp": [1024, 1024, 512, 256, 1],
        "max_ind_range": 40_000_000,
    },
}


@dataclass
class ModelConfig:
    table_sizes: list[int]  # rows per table, from the dataset manifest
    emb_dim: int = 16
    bot_mlp: list[int] = field(default_factory=lambda: [13, 512, 256, 64, 16])  # last == emb_dim
    top_mlp: list[int] = field(default_factory=lambda: [512, 256, 1])  # input width is derived
    interaction: str = "dot"  # "dot" | "cat"
    self_interaction: bool = False  # dot only: include the diagonal of the Gram matrix

    def __post_init__(self) -> None:
        self.table_sizes = [int(r) for r in self.table_sizes]
        self.bot_mlp, self.top_mlp = [int(w) for w in self.bot_mlp], [int(w) for w in self.top_mlp]
        if not self.table_sizes or min(self.table_sizes) < 1:
            raise ConfigError(f"table_sizes must be a non-empty list of positive row counts, got {self.table_sizes}")
        if self.emb_dim < 1:
            raise ConfigError(f"emb_dim must be >= 1, got {self.emb_dim}")
        for name in ("bot_mlp", "top_mlp"):
            widths = getattr(self, name)
            if len(widths) < 1 or min(widths) < 1:
                raise ConfigError(f"{name} must be a non-empty list of positive widths, got {widths}")
        if len(self.bot_mlp) < 2:
            raise ConfigError(f"bot_mlp needs the input width and at least one layer, got {self.bot_mlp}")
        if self.bot_mlp[-1] != self.emb_dim:
            raise ConfigError(
                f"bot_mlp must end with emb_dim ({self.emb_dim}) so its output can interact with the "
                f"embeddings, got bot_mlp={'-'.join(map(str, self.bot_mlp))}"
            )
        if self.top_mlp[-1] != 1:
            raise ConfigError(f"top_mlp must end with 1 (the click logit), got {self.top_mlp}")
        if self.interaction not in INTERACTIONS:
            raise ConfigError(f"interaction must be one of {INTERACTIONS}, got {self.interaction!r}")

    @property
    def num_dense(self) -> int:
        return self.bot_mlp[0]

    @property
    def num_tables(self) -> int:
        return len(self.table_sizes)

    @property
    def top_in(self) -> int:
        """Width of the interaction output, which feeds the top MLP."""
        return interaction_width(self.num_tables, self.emb_dim, self.interaction, self.self_interaction)


def train_flops_per_sample(cfg: ModelConfig) -> float:
    """Forward + backward FLOPs of one sample, counted from the architecture: 3 GEMMs per Linear
    (forward, input gradient, weight gradient) and, for ``dot``, the useful pairs x dim of the Gram
    matrix, all x 2 FLOPs per multiply-add. No padding and no redundant work is counted: this is the
    work any implementation must do, so samples/s x this / the machine's GEMM peak is an efficiency.
    (kaggle 2.88 MFLOP, mlperf 14.46 MFLOP; ``hpcdlrm.plan.cost`` models what this trainer executes.)
    """
    macs = sum(i * o for widths in (cfg.bot_mlp, [cfg.top_in, *cfg.top_mlp]) for i, o in zip(widths[:-1], widths[1:]))
    if cfg.interaction == "dot":
        macs += (cfg.top_in - cfg.emb_dim) * cfg.emb_dim
    return 6.0 * macs


def parse_arch(spec: str | Sequence[int], flag: str = "arch") -> list[int]:
    """``"13-512-256"`` -> ``[13, 512, 256]``; lists pass through. ConfigError naming ``flag`` on junk."""
    if not isinstance(spec, str):
        widths = list(spec)
    else:
        try:
            widths = [int(p) for p in spec.strip().split("-")]
        except ValueError:
            raise ConfigError(f"{flag}: expected dash-separated layer widths such as 13-512-256, got {spec!r}") from None
    if not widths or any(int(w) < 1 for w in widths):
        raise ConfigError(f"{flag}: layer widths must be positive integers, got {spec!r}")
    return [int(w) for w in widths]


def model_config(preset: str | None, table_sizes: Sequence[int], **overrides: Any) -> ModelConfig:
    """A ModelConfig from a preset plus overrides (None values are ignored, arch strings are parsed).

    ``max_ind_range`` (from the preset or an override; 0/None = off) caps every table at that many rows,
    as the reference's hashing does; it is not a ModelConfig field.
    """
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"model preset must be one of {sorted(PRESETS)}, got {preset!r}")
    merged: dict[str, Any] = dict(PRESETS[preset]) if preset else {}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    valid = {f.name for f in dataclasses.fields(ModelConfig)} - {"table_sizes"} | {"max_ind_range"}
    unknown = sorted(set(merged) - valid)
    if unknown:
        raise ConfigError(f"unknown model option(s) {unknown}; valid: {sorted(valid)}")
    cap = int(merged.pop("max_ind_range", 0) or 0)
    sizes = [min(int(r), cap) if cap > 0 else int(r) for r in table_sizes]
    for name in ("bot_mlp", "top_mlp"):
        if name in merged:
            merged[name] = parse_arch(merged[name], flag=name)
    return ModelConfig(table_sizes=sizes, **merged)


# ----------------------------------------------------------------------------------------- embeddings


def init_table(
    rows: int, dim: int, seed: int, table: int, cols: tuple[int, int] | None = None, out: Tensor | None = None
) -> Tensor:
    """Table ``table``'s initial weight (rows, c1 - c0), U(-sqrt(1/rows), sqrt(1/rows)) as in the reference.

    Deterministic per (seed, table, column): each column has its own random stream, so a rank that owns
    columns ``cols = (c0, c1)`` (or only some tables) builds exactly the slice the 1-rank model has,
    without the full table. ``out`` (e.g. a slice of a merged weight) is filled in place and returned.
    """
    c0, c1 = cols if cols is not None else (0, dim)
    if not 0 <= c0 < c1 <= dim:
        raise ConfigError(f"init_table: column slice {cols} outside 0..{dim}")
    if out is None:
        out = torch.empty(rows, c1 - c0)
    elif out.shape != (rows, c1 - c0):
        raise ConfigError(f"init_table: out has shape {tuple(out.shape)}, expected {(rows, c1 - c0)}")
    bound = float(np.sqrt(1.0 / rows))
    group = max(1, min(c1 - c0, (1 << 24) // rows))  # columns drawn per block: <= 64 MiB of scratch
    block, gen = torch.empty(group, rows), torch.Generator()
    for g0 in range(c0, c1, group):  # loops over columns at init only, never in training
        n = min(group, c1 - g0)
        for j in range(n):  # each column: one contiguous draw from its own stream, layout-independent
            gen.manual_seed(_stream_seed(seed, 0, table, g0 + j))
            block[j].uniform_(-bound, bound, generator=gen)
        out[:, g0 - c0 : g0 - c0 + n] = block[:n].t()
    return out


def _stream_seed(*key: int) -> int:
    """A well-mixed 63-bit seed for a tuple of integers (nearby keys give unrelated streams).

    Keys start with ``seed`` then a stream kind (0: table columns, 1: MLPs).
    """
    if min(key) < 0:
        raise ConfigError(f"seeds and table numbers must be >= 0, got {key}")
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint64)[0] >> np.uint64(1))


@dataclass
class Lookup:
    """One gathered block of embedding rows, for the sparse update after backward."""

    key: str  # names the weight; optimizer state is keyed by it
    weight: Tensor  # the (rows, d) tensor that was read
    ids: Tensor  # (N,) int64 row ids into weight that were read
    out: Tensor  # (N, d) leaf with requires_grad=True that the forward returned (viewed); .grad after backward
    trail: Tensor | None = None  # bf16 ``weight``'s low 16 bits (split storage, see split_fp32), else None


class EmbeddingTables(nn.Module):
    """All tables in ONE merged weight (sum(rows) x D) with per-table row offsets.

    One ``index_select`` serves all T lookups of a batch (Criteo has one index per table and sample, so
    sum pooling is the row itself). Shapes: sparse (B, T) int -> (B, T, D) float32.
    """

    def __init__(
        self,
        table_sizes: Sequence[int],
        dim: int,
        seed: int = 0,
        key: str = "embeddings",
        table_ids: Sequence[int] | None = None,
        cols: tuple[int, int] | None = None,
    ) -> None:
        """``table_ids`` (global table numbers of ``table_sizes``, default 0..T-1) and ``cols`` (a column
        slice of the full ``dim``) let a shard build exactly its part of the 1-rank model's weights."""
        super().__init__()
        sizes = torch.tensor([int(r) for r in table_sizes], dtype=torch.int64)
        ids = list(range(len(sizes))) if table_ids is None else [int(t) for t in table_ids]
        if len(ids) != len(sizes):
            raise ConfigError(f"EmbeddingTables: {len(ids)} table_ids for {len(sizes)} tables")
        c0, c1 = cols if cols is not None else (0, dim)
        self.key, self.table_ids, self.cols = key, ids, (c0, c1)
        self.register_buffer("sizes", sizes, persistent=False)
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes, persistent=False)
        weight = torch.empty(int(sizes.sum()), c1 - c0)
        for t, start, rows in zip(ids, self.offsets.tolist(), sizes.tolist()):
            init_table(rows, dim, seed, t, (c0, c1), out=weight[start : start + rows])
        # requires_grad=False: autograd never builds a dense gradient; sparse optimizers update it.
        self.weight = nn.Parameter(weight, requires_grad=False)
        self._last: list[Lookup] = []

    def forward(self, sparse: Tensor) -> Tensor:
        b, t = sparse.shape
        if t != self.sizes.numel():
            raise DataError(f"sparse input has {t} columns, the model has {self.sizes.numel()} tables")
        check_ids(sparse, self.sizes)
        ids = (sparse + self.offsets).reshape(-1)  # int64, row ids into the merged weight
        out = self.weight.detach().index_select(0, ids)
        self._last = []
        if torch.is_grad_enabled():
            out.requires_grad_(True)
            self._last = [Lookup(self.key, self.weight.data, ids, out)]
        return out.view(b, t, out.shape[1])

    def lookups(self) -> list[Lookup]:
        """The blocks gathered by the last forward (empty when it ran without grad)."""
        return self._last


def check_ids(sparse: Tensor, sizes: Tensor) -> None:
    """DataError naming the first table whose id is outside 0..rows-1 (cheap: two vectorised compares)."""
    bad = (sparse < 0) | (sparse >= sizes)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise DataError(
            f"sparse feature {col} of batch row {row} is {int(sparse[row, col])}, "
            f"outside table {col}'s 0..{int(sizes[col]) - 1}: the data and the model's table_sizes disagree"
        )


def sparse_grad(ids: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    """Coalesce per-lookup gradients: (sorted unique rows, summed gradient per row), vectorised:
    one sort and one index_add_ whatever the number of tables (they share one merged weight)."""
    rows, inverse = torch.unique(ids, return_inverse=True)
    dtype = torch.promote_types(grad.dtype, torch.float32)  # bf16 gradients are summed in fp32
    summed = torch.zeros(rows.numel(), grad.shape[1], dtype=dtype)
    summed.index_add_(0, inverse, grad.to(dtype))
    return rows, summed


def split_fp32(w: Tensor) -> tuple[Tensor, Tensor]:
    """fp32 -> (bf16 high half, int16 low half) of every value's bits (Intel's split-SGD storage).

    The bf16 half is what the model reads (the fp32 value truncated); with the trail the fp32 value is
    exact again (``join_fp32``), so updates lose nothing. Pure bit copies, little-endian layout.
    """
    halves = w.contiguous().view(torch.int16).view(*w.shape, 2)
    return halves[..., 1].contiguous().view(torch.bfloat16), halves[..., 0].contiguous()


def join_fp32(hi: Tensor, lo: Tensor) -> Tensor:
    """Inverse of :func:`split_fp32`: the exact fp32 values."""
    halves = torch.stack([lo, hi.view(torch.int16)], -1)
    return halves.view(torch.float32).squeeze(-1)


# ---------------------------------------------------------------------------------------- interaction


def interaction_width(num_tables: int, dim: int, op: str, self_interaction: bool) -> int:
    f = num_tables + 1  # the bottom-MLP output is one more feature
    if op == "dot":
        return dim + (f * (f + 1) // 2 if self_interaction else f * (f - 1) // 2)
    return dim * f


def _positions(num_features: int, order: Sequence[int] | None) -> Tensor:
    """Where canonical feature i (0: the bottom output, 1 + t: table t) sits in [x, emb] when emb's
    features come in ``order`` (table ids; None: table order)."""
    pos = torch.arange(num_features)
    if order is not None:
        if sorted(order) != list(range(num_features - 1)):
            raise ConfigError(f"feature order {list(order)} is not a permutation of the {num_features - 1} tables")
        pos[1 + torch.tensor(list(order), dtype=torch.int64)] = torch.arange(1, num_features)
    return pos


def tril_index(num_features: int, self_interaction: bool, order: Sequence[int] | None = None) -> Tensor:
    """Flat indices (1, P) of the (strict, or with diagonal) lower triangle of a num_features^2 matrix,
    pairs in canonical (table) order; with ``order``, read from the Gram matrix of features in that order
    (it is symmetric: the pair (i, j) is the cell (pos i, pos j) wherever they sit)."""
    li, lj = torch.tril_indices(num_features, num_features, offset=0 if self_interaction else -1)
    pos = _positions(num_features, order)
    return (pos[li] * num_features + pos[lj]).unsqueeze(0)


def pair_map(num_features: int, self_interaction: bool, order: Sequence[int] | None = None) -> Tensor:
    """(F*F,) for every cell (i, j) of the Gram matrix (features in ``order``), the output pair that holds
    it (the pair's cell and its mirror; with ``self_interaction`` also i == j), or P (a zero column) for
    the unused diagonal."""
    lower = tril_index(num_features, self_interaction, order).reshape(-1)
    li, lj = lower // num_features, lower % num_features
    out = torch.full((num_features * num_features,), lower.numel(), dtype=torch.int64)
    out[lower] = torch.arange(lower.numel())
    out[lj * num_features + li] = torch.arange(lower.numel())
    return out


class _DotInteraction(torch.autograd.Function):
    """[x, lower triangle of the Gram matrix of F = [x, emb]] (+ zero pad), with a hand-written backward.

    Autograd through bmm + gather would run two bmms (one per operand of F @ F^T) and a scatter_add
    into a zero B x F^2 tensor. Here dS = dZ + dZ^T is ONE gather of dZ through ``pair_map`` (measured
    fastest: 1.5 ms at kaggle's batch vs 2.8 ms for zeros + two index_copy_) and dF = dS @ F is one
    bmm-equivalent, done as two (the x row, the emb rows) so the embedding gradient comes out
    contiguous for the lookup leaf. The output is written in place: no concatenation copies.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, emb: Tensor, lower: Tensor, pairs: Tensor, pad: int) -> Tensor:
        b, d = x.shape
        feats = torch.cat([x.unsqueeze(1), emb], 1)  # (B, F, D)
        f = feats.shape[1]
        gram = torch.bmm(feats, feats.transpose(1, 2))  # (B, F, F)
        p = lower.numel()
        out = x.new_empty(b, d + p + pad)
        out[:, :d] = x
        out[:, d: d + p] = gram.view(b, f * f).gather(1, lower.expand(b, p))
        if pad:
            out[:, d + p:].zero_()
        ctx.save_for_backward(feats, pairs)
        ctx.num_pairs = p
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None, None, None]:
        feats, pairs = ctx.saved_tensors
        b, f, d = feats.shape
        p = ctx.num_pairs
        gz = torch.cat([grad[:, d: d + p], grad.new_zeros(b, 1)], 1)  # column p: the unused diagonal
        s = gz.gather(1, pairs.expand(b, f * f)).view(b, f, f)  # dZ + dZ^T: each pair feeds both features
        if p > f * (f - 1) // 2:
            s.diagonal(0, 1, 2).mul_(2.0)  # self-interaction: d(x.x)/dx = 2x
        g_emb = torch.bmm(s[:, 1:], feats)  # (B, T, D), contiguous
        g_x = torch.bmm(s[:, :1], feats).squeeze(1).add_(grad[:, :d])
        return g_x, g_emb, None, None, None


def interact(
    x: Tensor, emb: Tensor, op: str, self_interaction: bool, index: Tensor | None = None, pad: int = 0,
    pairs: Tensor | None = None, order: Sequence[int] | None = None,
) -> Tensor:
    """x (B, D) bottom output, emb (B, T, D) -> top-MLP input (B, width + pad).

    dot: [x, lower triangle of the (T+1)x(T+1) Gram matrix of [x, emb]]; cat: [x, emb.flatten].
    ``order``: emb's features are tables ``order`` (None: 0..T-1); the output is the same either way.
    ``index``/``pairs`` are ``tril_index``/``pair_map(T + 1, self_interaction, order)``, precomputed by
    the caller in the hot path; ``pad`` zero columns are appended (see ``Interaction``).
    """
    emb = emb.to(x.dtype)  # the gather (fp32 or bf16 tables) meets the MLP dtype here
    if op == "dot":
        f = emb.shape[1] + 1
        lower = (tril_index(f, self_interaction, order) if index is None else index).reshape(-1)
        pairs = pair_map(f, self_interaction, order) if pairs is None else pairs
        return _DotInteraction.apply(x, emb, lower, pairs, pad)
    if op != "cat":
        raise ConfigError(f"interaction must be one of {INTERACTIONS}, got {op!r}")
    if order is not None:  # the top MLP's columns are in table order
        emb = emb.index_select(1, _positions(emb.shape[1] + 1, order)[1:] - 1)
    parts = [x, emb.flatten(1)] + ([x.new_zeros(x.shape[0], pad)] if pad else [])
    return torch.cat(parts, 1)


class Interaction(nn.Module):
    """``interact`` with its triangle indices precomputed once, output padded to a multiple of 8 columns.

    Why pad: the top MLP's first GEMMs run ~25% faster at K=368 than at Kaggle's K=367 (MKL, AVX2,
    measured). The padded columns are zeros, so their weights get zero gradients and (initialised to
    zero by DLRM) stay zero: the model computes exactly the unpadded function.
    """

    def __init__(self, num_tables: int, dim: int, op: str, self_interaction: bool,
                 order: Sequence[int] | None = None) -> None:
        super().__init__()
        self.op, self.self_interaction = op, self_interaction
        self.order = None if order is None or list(order) == list(range(num_tables)) else tuple(order)
        self.width = interaction_width(num_tables, dim, op, self_interaction)
        self.pad = -self.width % 8
        self.register_buffer("index", tril_index(num_tables + 1, self_interaction, self.order).reshape(-1),
                             persistent=False)
        self.register_buffer("pairs", pair_map(num_tables + 1, self_interaction, self.order), persistent=False)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return interact(x, emb, self.op, self.self_interaction, self.index, self.pad, self.pairs, self.order)


# ------------------------------------------------------------------------------------------------ MLP


def native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16), i.e. whether bf16 autocast pays.

    Without it PyTorch falls back to a reference bf16 GEMM: on an AVX2-only AMD EPYC an autocast
    ``nn.Linear(512, 256)`` at batch 2048 measured ~6x SLOWER than fp32. The trainer should warn or
    refuse ``--bf16`` when this is False.
    """
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        flags = []
    if flags:
        return "avx512_bf16" in flags or "amx_bf16" in flags
    try:  # no /proc (not Linux): ask oneDNN, which at least needs AVX-512 for its bf16 kernels
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False



def mlp(widths: Sequence[int], gen: torch.Generator, last_relu: bool, pad_in: int = 0) -> nn.Sequential:
    """Linear layers with ReLU between them; reference init W~N(0, sqrt(2/(in+out))), b~N(0, sqrt(1/out)).

    ``pad_in`` extra zero-weight input columns on the first layer (for a zero-padded input).
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        extra = pad_in if i == 0 else 0
        lin = nn.Linear(n_in + extra, n_out)
        with torch.no_grad():
            lin.weight[:, :n_in].normal_(0.0, float(np.sqrt(2.0 / (n_in + n_out))), generator=gen)
            lin.weight[:, n_in:].zero_()
            lin.bias.normal_(0.0, float(np.sqrt(1.0 / n_out)), generator=gen)
        layers.append(lin)
        if last_relu or i < len(widths) - 2:
            layers.append(nn.ReLU(inplace=True))  # saves one activation-sized allocation per layer
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    """dense (B, num_dense) float, sparse (B, T) int -> click logits (B,) float32 (sigmoid in the loss).

    ``embeddings`` (TorchRec style): any module mapping (B, T) ids -> (B, T, D) with ``lookups()``,
    e.g. a trainer's sharded tables; default: this process's :class:`EmbeddingTables`. Its optional
    ``feature_order`` (table ids) says which table each of the T features is, when not 0..T-1.
    """

    def __init__(self, cfg: ModelConfig, seed: int = 0, embeddings: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(_stream_seed(seed, 1))
        self.bottom = mlp(cfg.bot_mlp, gen, last_relu=True)  # the reference's bottom ends in ReLU too
        self.embeddings: nn.Module = (EmbeddingTables(cfg.table_sizes, cfg.emb_dim, seed)
                                      if embeddings is None else embeddings)
        # A sharded module may hand its features over in the order they arrive (``feature_order``): the
        # interaction reads its pairs where they sit instead of the exchange reordering them (a copy).
        self.interaction = Interaction(cfg.num_tables, cfg.emb_dim, cfg.interaction, cfg.self_interaction,
                                       getattr(self.embeddings, "feature_order", None))
        self.top = mlp([cfg.top_in, *cfg.top_mlp], gen, last_relu=False, pad_in=self.interaction.pad)
        self.mlp_dtype = torch.float32

    def set_mlp_dtype(self, dtype: torch.dtype) -> None:
        """Store the MLP weights in ``dtype`` and compute the MLPs and interaction in it (bf16: natively,
        no autocast). The trainer keeps fp32 masters (``hpcdlrm.train.optim.MasterWeights``)."""
        self.bottom.to(dtype)
        self.top.to(dtype)
        self.mlp_dtype = dtype

    def forward(self, dense: Tensor, sparse: Tensor) -> Tensor:
        if dense.dim() != 2 or dense.shape[1] != self.cfg.num_dense:
            raise DataError(f"dense input has shape {tuple(dense.shape)}, the model takes (B, {self.cfg.num_dense})")
        x = self.bottom(dense.to(self.mlp_dtype))
        z = self.interaction(x, self.embeddings(sparse))
        return self.top(z).squeeze(1).float()  # logits in fp32 whatever the MLP dtype

    def dense_parameters(self) -> list[nn.Parameter]:
        """Everything except the embedding weights (those belong to the sparse optimizer)."""
        sparse_ids = {id(p) for p in self.embeddings.parameters()}
        return [p for p in self.parameters() if id(p) not in sparse_ids]

    def lookups(self) -> list[Lookup]:
        return self.embeddings.lookups()  # type: ignore[operator]
