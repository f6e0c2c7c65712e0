"""DLRM model: config checks, init, lookups, interaction, gradients for the sparse update."""

from __future__ import annotations

import math

import pytest
import torch

from hpcdlrm.errors import ConfigError, DataError
from hpcdlrm.model import (
    DLRM,
    PRESETS,
    EmbeddingTables,
    Interaction,
    ModelConfig,
    init_table,
    interact,
    interaction_width,
    model_config,
    native_bf16,
    parse_arch,
    sparse_grad,
    join_fp32,
    split_fp32,
)

SIZES = [7, 3, 11, 5]


def small_cfg(**kw: object) -> ModelConfig:
    args: dict = dict(table_sizes=SIZES, emb_dim=4, bot_mlp=[13, 8, 4], top_mlp=[6, 1])
    args.update(kw)
    return ModelConfig(**args)


def batch(cfg: ModelConfig, b: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(b, cfg.num_dense, generator=g)
    sparse = torch.stack([torch.randint(0, r, (b,), generator=g) for r in cfg.table_sizes], 1)
    return dense, sparse.to(torch.int32)


# ------------------------------------------------------------------------------------------- config


def test_parse_arch_and_its_errors_name_the_flag() -> None:
    assert parse_arch("13-512-256") == [13, 512, 256]
    assert parse_arch([4, 2]) == [4, 2]
    with pytest.raises(ConfigError, match="--arch-mlp-bot"):
        parse_arch("13-x-256", flag="--arch-mlp-bot")
    with pytest.raises(ConfigError, match="positive"):
        parse_arch("13-0-1")


def test_config_rejects_inconsistent_architectures() -> None:
    with pytest.raises(ConfigError, match="bot_mlp must end with emb_dim"):
        small_cfg(bot_mlp=[13, 8, 5])
    with pytest.raises(ConfigError, match="top_mlp must end with 1"):
        small_cfg(top_mlp=[6, 2])
    with pytest.raises(ConfigError, match="interaction"):
        small_cfg(interaction="sum")
    with pytest.raises(ConfigError, match="table_sizes"):
        small_cfg(table_sizes=[3, 0])


def test_presets_and_overrides() -> None:
    sizes = [10, 50_000_000] + [100] * 24
    kag = model_config("kaggle", sizes)
    assert (kag.emb_dim, kag.bot_mlp, kag.top_mlp) == (16, [13, 512, 256, 64, 16], [512, 256, 1])
    assert kag.top_in == 16 + 27 * 26 // 2 and kag.table_sizes == sizes
    mlp = model_config("mlperf", sizes)
    assert mlp.table_sizes[:2] == [10, 40_000_000]  # max_ind_range caps the big table
    assert mlp.top_mlp == [1024, 1024, 512, 256, 1] and mlp.emb_dim == 128
    over = model_config("kaggle", sizes, emb_dim=8, bot_mlp="13-64-8", interaction=None, max_ind_range=50)
    assert over.emb_dim == 8 and over.bot_mlp == [13, 64, 8] and over.interaction == "dot"
    assert max(over.table_sizes) == 50
    with pytest.raises(ConfigError, match="unknown model option.*'emb_size'"):
        model_config("kaggle", sizes, emb_size=8)
    with pytest.raises(ConfigError, match="preset"):
        model_config("huge", sizes)
    assert set(PRESETS) >= {"kaggle", "mlperf"}


@pytest.mark.parametrize(("op", "self_int", "width"), [("dot", False, 4 + 10), ("dot", True, 4 + 15), ("cat", False, 20)])
def test_top_input_width_matches_the_interaction(op: str, self_int: bool, width: int) -> None:
    cfg = small_cfg(interaction=op, self_interaction=self_int)
    assert cfg.top_in == width
    model = DLRM(cfg)
    dense, sparse = batch(cfg)
    padded = width + (-width % 8)  # padded to a multiple of 8 for faster GEMMs
    assert model.top[0].in_features == padded
    assert not model.top[0].weight[:, width:].any()
    logits = model(dense, sparse)
    assert logits.shape == (9,)
    # The padding changes nothing: the unpadded function with the first layer's real columns.
    with torch.no_grad():
        x = model.bottom(dense)
        z = interact(x, model.embeddings(sparse), op, self_int)
        assert z.shape == (9, width)
        h = torch.relu(z @ model.top[0].weight[:, :width].T + model.top[0].bias)
        torch.testing.assert_close(model.top[2:](h).squeeze(1), logits.detach())


def test_padding_columns_stay_zero_under_training() -> None:
    cfg = model_config("kaggle", [20] * 26)
    assert cfg.top_in == 367
    model = DLRM(cfg)
    opt = torch.optim.SGD(model.dense_parameters(), lr=0.5, weight_decay=0.1)
    for seed in range(2):
        opt.zero_grad()
        model(*batch(cfg, b=8, seed=seed)).sum().backward()
        opt.step()
    assert model.top[0].weight.shape == (512, 368)
    assert not model.top[0].weight[:, 367:].any() and model.top[0].weight[:, :367].abs().sum() > 0


# ------------------------------------------------------------------------------------------ init


def test_init_table_is_deterministic_sliceable_and_in_range() -> None:
    full = init_table(1000, 8, seed=3, table=2)
    assert torch.equal(full, init_table(1000, 8, seed=3, table=2))
    assert torch.equal(full[:, 2:5], init_table(1000, 8, seed=3, table=2, cols=(2, 5)))
    assert not torch.equal(full, init_table(1000, 8, seed=3, table=1))
    assert not torch.equal(full, init_table(1000, 8, seed=4, table=2))
    bound = math.sqrt(1 / 1000)
    assert full.abs().max() <= bound and full.abs().max() > 0.9 * bound
    assert abs(float(full.mean())) < 0.05 * bound  # U(-b, b): mean 0, 8000 draws
    with pytest.raises(ConfigError, match="column slice"):
        init_table(10, 8, 0, 0, cols=(4, 9))


def test_merged_table_holds_every_table_and_lookups_read_the_right_rows() -> None:
    emb = EmbeddingTables(SIZES, 4, seed=5)
    cfg = small_cfg()
    _, sparse = batch(cfg, b=6)
    out = emb(sparse)
    assert out.shape == (6, len(SIZES), 4) and out.dtype == torch.float32
    for t, rows in enumerate(SIZES):
        table = init_table(rows, 4, seed=5, table=t)
        assert torch.equal(out[:, t], table[sparse[:, t].long()])
    (lk,) = emb.lookups()
    assert lk.key == "embeddings" and lk.out.requires_grad and lk.out.is_leaf
    assert torch.equal(lk.weight[lk.ids], lk.out.detach())
    assert not emb.weight.requires_grad


def test_a_shard_of_tables_and_columns_equals_the_slice_of_the_full_weight() -> None:
    full = EmbeddingTables(SIZES, 6, seed=2)
    shard = EmbeddingTables([SIZES[2], SIZES[0]], 6, seed=2, key="shard", table_ids=[2, 0], cols=(1, 4))
    off = full.offsets.tolist()
    expect = torch.cat([full.weight[off[2] : off[2] + SIZES[2], 1:4], full.weight[: SIZES[0], 1:4]])
    assert shard.weight.shape == (SIZES[2] + SIZES[0], 3) and torch.equal(shard.weight, expect)
    out = shard(torch.tensor([[10, 6]]))
    assert torch.equal(out[0, 0], full(torch.tensor([[0, 0, 10, 0]]))[0, 2, 1:4])
    assert shard.lookups()[0].key == "shard"
    with pytest.raises(ConfigError, match="table_ids"):
        EmbeddingTables(SIZES, 4, table_ids=[0, 1])


def test_out_of_range_ids_name_the_table() -> None:
    emb = EmbeddingTables(SIZES, 4)
    sparse = torch.zeros(3, 4, dtype=torch.int64)
    sparse[1, 2] = 11  # table 2 has rows 0..10
    with pytest.raises(DataError, match="sparse feature 2 of batch row 1 is 11.*0..10"):
        emb(sparse)
    sparse[1, 2] = -1
    with pytest.raises(DataError, match="feature 2"):
        emb(sparse)
    with pytest.raises(DataError, match="3 columns"):
        emb(sparse[:, :3])
    model = DLRM(small_cfg())
    with pytest.raises(DataError, match=r"dense input has shape \(3, 12\)"):
        model(torch.zeros(3, 12), torch.zeros(3, 4, dtype=torch.int64))


def test_mlp_init_is_seeded_and_follows_the_reference_scales() -> None:
    cfg = model_config("kaggle", [5] * 26)
    a, b, c = DLRM(cfg, seed=1), DLRM(cfg, seed=1), DLRM(cfg, seed=2)
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name
    lin = a.bottom[2]  # 512 -> 256
    assert lin.weight.std().item() == pytest.approx(math.sqrt(2 / (512 + 256)), rel=0.03)
    assert lin.bias.std().item() == pytest.approx(math.sqrt(1 / 256), rel=0.25)
    assert isinstance(a.top[-1], torch.nn.Linear)  # logit layer: no ReLU after it
    assert isinstance(a.bottom[-1], torch.nn.ReLU)


def test_dense_parameters_are_everything_but_the_embeddings() -> None:
    model = DLRM(small_cfg())
    dense = model.dense_parameters()
    assert all(p is not model.embeddings.weight for p in dense)
    assert len(dense) == len(list(model.parameters())) - 1
    assert sum(p.numel() for p in dense) == (13 * 8 + 8 + 8 * 4 + 4) + (16 * 6 + 6 + 6 + 1)  # top input 14 padded to 16


# ------------------------------------------------------------------------------------ interaction


def naive_interaction(x: torch.Tensor, emb: torch.Tensor, self_int: bool) -> torch.Tensor:
    feats = [x] + [emb[:, t] for t in range(emb.shape[1])]
    pairs = [(feats[i] * feats[j]).sum(1) for i in range(len(feats)) for j in range(i + self_int)]
    return torch.cat([x, torch.stack(pairs, 1)], 1)


@pytest.mark.parametrize("self_int", [False, True])
def test_dot_interaction_matches_the_pairwise_definition(self_int: bool) -> None:
    x, emb = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(interact(x, emb, "dot", self_int), naive_interaction(x, emb, self_int))
    cat = interact(x, emb, "cat", False)
    assert torch.equal(cat, torch.cat([x, emb.reshape(5, 12)], 1))


@pytest.mark.parametrize("self_int", [False, True])
def test_dot_interaction_gradient_matches_autograd_through_the_definition(self_int: bool) -> None:
    x, emb = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 4, 3, dtype=torch.float64)
    w = torch.randn(6, 3 + (15 if self_int else 10), dtype=torch.float64)  # a generic downstream weight
    got = [t.clone().requires_grad_(True) for t in (x, emb)]
    (interact(*got, "dot", self_int) * w).sum().backward()
    ref = [t.clone().requires_grad_(True) for t in (x, emb)]
    (naive_interaction(*ref, self_int) * w).sum().backward()
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.grad, b.grad)
    assert torch.autograd.gradcheck(lambda a, e: interact(a, e, "dot", self_int), tuple(got))


@pytest.mark.parametrize("op,self_int", [("dot", False), ("dot", True), ("cat", False)])
def test_interaction_reads_features_in_any_order_as_if_in_table_order(op: str, self_int: bool) -> None:
    """A sharded exchange hands the features over as they arrive (tables 3, 0, 2, 1 here): the
    output and both gradients are the table-order ones, permuted back for emb."""
    order = [3, 0, 2, 1]
    x, emb = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 4, 3, dtype=torch.float64)
    w = torch.randn(6, interaction_width(4, 3, op, self_int), dtype=torch.float64)
    ref = [t.clone().requires_grad_(True) for t in (x, emb)]
    (interact(*ref, op, self_int) * w).sum().backward()
    got = [x.clone().requires_grad_(True), emb[:, order].clone().requires_grad_(True)]
    layer = Interaction(4, 3, op, self_int, order).double()
    out = layer(*got)
    torch.testing.assert_close(out[:, : w.shape[1]], interact(x, emb, op, self_int))
    (out[:, : w.shape[1]] * w).sum().backward()
    torch.testing.assert_close(got[0].grad, ref[0].grad)
    torch.testing.assert_close(got[1].grad, ref[1].grad[:, order])
    with pytest.raises(ConfigError, match="not a permutation"):
        Interaction(4, 3, op, self_int, [0, 1, 1, 2])


# -------------------------------------------------------------------------------------- gradients


def test_sparse_grad_sums_duplicates() -> None:
    ids = torch.tensor([4, 1, 4, 9, 1, 4])
    grad = torch.arange(12, dtype=torch.float32).view(6, 2)
    rows, g = sparse_grad(ids, grad)
    assert rows.tolist() == [1, 4, 9]
    dense = torch.zeros(10, 2).index_add_(0, ids, grad)
    assert torch.equal(g, dense[rows])


def test_leaf_gradients_equal_the_dense_embedding_gradient() -> None:
    cfg = small_cfg()
    model = DLRM(cfg, seed=0)
    dense, sparse = batch(cfg, b=16)
    sparse[:, 1] = 2  # force repeated rows
    model(dense, sparse).sum().backward()
    (lk,) = model.lookups()
    rows, g = sparse_grad(lk.ids, lk.out.grad)
    # Same forward with a dense, autograd-tracked copy of the merged weight.
    w = model.embeddings.weight.detach().clone().requires_grad_(True)
    emb = w.index_select(0, lk.ids).view(16, len(SIZES), -1)
    model.top(model.interaction(model.bottom(dense), emb)).sum().backward()
    torch.testing.assert_close(g, w.grad[rows])
    untouched = torch.ones(w.shape[0], dtype=torch.bool)
    untouched[rows] = False
    assert not w.grad[untouched].any()


def test_no_grad_forward_records_nothing() -> None:
    model = DLRM(small_cfg())
    with torch.no_grad():
        model(*batch(model.cfg))
    assert model.lookups() == []


def test_an_empty_batch_works_for_ranks_with_no_rows_left() -> None:
    model = DLRM(small_cfg())
    out = model(torch.zeros(0, 13), torch.zeros(0, len(SIZES), dtype=torch.int32))
    assert out.shape == (0,)
    out.sum().backward()
    assert model.lookups()[0].out.grad.shape == (0, 4)


def test_bf16_autocast_keeps_the_gather_and_its_gradient_fp32() -> None:
    cfg = model_config("kaggle", [50] * 26)
    model = DLRM(cfg)
    dense, sparse = batch(cfg, b=32)
    ref = model(dense, sparse)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(dense, sparse)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=0.1, rtol=0.1)
    out.sum().backward()
    (lk,) = model.lookups()
    assert lk.out.grad is not None and lk.out.grad.dtype == torch.float32 and lk.weight.dtype == torch.float32
    assert lk.out.grad.abs().sum() > 0


def test_native_bf16_reads_the_cpu_flags(tmp_path) -> None:  # type: ignore[no-untyped-def]
    amx, avx2 = tmp_path / "amx", tmp_path / "avx2"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\n")
    assert native_bf16(str(amx)) is True
    assert native_bf16(str(avx2)) is False


# ------------------------------------------------------------------------------ bf16 and injection


def test_split_fp32_round_trips_exactly_and_its_high_half_is_the_truncated_value() -> None:
    w = torch.randn(50, 3) * 10.0 ** torch.randint(-6, 6, (50, 1)).float()
    hi, lo = split_fp32(w)
    assert hi.dtype == torch.bfloat16 and lo.dtype == torch.int16 and hi.shape == lo.shape == w.shape
    assert torch.equal(join_fp32(hi, lo), w)
    assert ((hi.float() - w).abs() <= w.abs() * 2.0**-7).all()  # within one bf16 ulp, towards zero
    assert (hi.float().abs() <= w.abs()).all()


def test_the_model_takes_its_embedding_module_from_the_constructor() -> None:
    cfg = small_cfg()
    tables = EmbeddingTables(SIZES, 4, seed=3, key="mine")
    model = DLRM(cfg, seed=0, embeddings=tables)
    assert model.embeddings is tables and model.lookups() == []
    model(*batch(cfg)).sum().backward()
    assert model.lookups()[0].key == "mine"
    default = DLRM(cfg, seed=0)  # same MLPs whatever the embeddings: their seed stream is separate
    assert all(torch.equal(a, b) for a, b in zip(model.dense_parameters(), default.dense_parameters()))


def test_bf16_mlps_run_natively_without_autocast() -> None:
    cfg = model_config("kaggle", [50] * 26, bot_mlp="13-64-16", top_mlp="64-1")
    model = DLRM(cfg)
    dense, sparse = batch(cfg, b=32)
    ref = model(dense, sparse)
    model.set_mlp_dtype(torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.dense_parameters())
    out = model(dense, sparse)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=0.05, rtol=0.05)
    out.sum().backward()
    (lk,) = model.lookups()
    assert lk.out.grad.dtype == torch.float32 and lk.out.grad.abs().sum() > 0  # fp32 tables keep fp32 grads
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for p in model.dense_parameters())
