"""Sparse (SGD, row-wise Adagrad) and dense (LAMB) optimizers against hand computations."""

from __future__ import annotations

import pytest
import torch

from hpcdlrm.errors import ConfigError
from hpcdlrm.model import join_fp32, sparse_grad, split_fp32
from hpcdlrm.train.optim import (
    LAMB,
    MasterWeights,
    RowWiseAdagrad,
    SparseSGD,
    make_dense_optimizer,
    make_sparse_optimizer,
    row_sq_sum,
)

IDS = torch.tensor([3, 0, 3, 7, 3])  # row 3 read three times


def table_and_grad(rows: int = 10, dim: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, dim, generator=g), torch.randn(IDS.numel(), dim, generator=g)


def untouched_mask(rows: int) -> torch.Tensor:
    mask = torch.ones(rows, dtype=torch.bool)
    mask[IDS] = False
    return mask


# ------------------------------------------------------------------------------------------ sparse


def test_sparse_sgd_matches_dense_sgd_and_leaves_other_rows_bit_identical() -> None:
    weight, grad = table_and_grad()
    before = weight.clone()
    dense = torch.nn.Parameter(weight.clone())
    dense.grad = torch.zeros_like(dense).index_add_(0, IDS, grad)
    torch.optim.SGD([dense], lr=0.3).step()
    SparseSGD().step("t", weight, IDS, grad, lr=0.3)
    torch.testing.assert_close(weight, dense.detach())
    assert torch.equal(weight[untouched_mask(10)], before[untouched_mask(10)])
    assert not torch.equal(weight[3], before[3])


def test_rowwise_adagrad_matches_a_hand_computation_over_two_steps() -> None:
    weight, grad = table_and_grad()
    before = weight.clone()
    opt = RowWiseAdagrad(eps=1e-8)
    expect, acc = weight.clone(), torch.zeros(10)
    for step in range(2):
        g = grad * (step + 1)
        for r in (0, 3, 7):  # by hand: sum the row's gradients, accumulate mean square, scale
            gr = g[IDS == r].sum(0)
            acc[r] += (gr * gr).mean()
            expect[r] -= 0.1 * gr / (acc[r].sqrt() + 1e-8)
        opt.step("t", weight, IDS, g, lr=0.1)
    torch.testing.assert_close(weight, expect)
    torch.testing.assert_close(opt.state["t"], acc)
    mask = untouched_mask(10)
    assert torch.equal(weight[mask], before[mask])
    assert not opt.state["t"][mask].any() and (opt.state["t"][~mask] > 0).all()


def test_rowwise_adagrad_on_column_slices_equals_the_full_table() -> None:
    """Two column owners, each with half the dim, all-reduce their per-row square sums."""
    weight, grad = table_and_grad(dim=6)
    full = weight.clone()
    RowWiseAdagrad().step("t", full, IDS, grad, lr=0.05)
    rows, g = sparse_grad(IDS, grad)
    halves, opts = [weight[:, :3].clone(), weight[:, 3:].clone()], [RowWiseAdagrad(), RowWiseAdagrad()]
    sq = row_sq_sum(g[:, :3]) + row_sq_sum(g[:, 3:])  # what dist.all_reduce(SUM) returns on both
    for h, opt, cols in zip(halves, opts, (slice(0, 3), slice(3, 6))):
        opt.step("t", h, rows, g[:, cols], lr=0.05, row_sq_sum=sq, full_dim=6)
    torch.testing.assert_close(torch.cat(halves, 1), full)
    # Without the all-reduced sums, a slice would use its own mean and drift from the 1-rank result.
    alone = weight[:, :3].clone()
    RowWiseAdagrad().step("t", alone, IDS, grad[:, :3], lr=0.05)
    assert not torch.allclose(alone, full[:, :3])


def test_sparse_state_round_trips_and_resumes_identically() -> None:
    weight, grad = table_and_grad()
    a = RowWiseAdagrad(initial_accumulator=0.1)
    a.step("t", weight, IDS, grad, lr=0.1)
    b = make_sparse_optimizer("rowwise_adagrad")
    b.load_state_dict(a.state_dict())
    w2 = weight.clone()
    a.step("t", weight, IDS, grad, lr=0.1)
    b.step("t", w2, IDS, grad, lr=0.1)
    assert torch.equal(weight, w2)
    assert b.initial_accumulator == 0.1
    with pytest.raises(ConfigError, match="'sgd'"):
        b.load_state_dict(SparseSGD().state_dict())
    with pytest.raises(ConfigError, match="sparse optimizer"):
        make_sparse_optimizer("adam")
    with pytest.raises(ConfigError, match="rows"):
        b.step("t", torch.zeros(3, 4), IDS, grad, lr=0.1)  # state "t" has 10 rows
    with pytest.raises(ConfigError, match="sorted and unique"):
        b.step("t", weight, IDS, grad, lr=0.1, row_sq_sum=row_sq_sum(grad))  # IDS repeats row 3


@pytest.mark.parametrize("name", ["sgd", "rowwise_adagrad"])
def test_split_bf16_tables_update_their_exact_fp32_values(name: str) -> None:
    """bf16 high halves + 16-bit trails: the joined fp32 values follow the fp32 table's update (split SGD)."""
    weight, grad = table_and_grad()
    ref, (hi, lo) = weight.clone(), split_fp32(weight)
    before_hi = hi.clone()
    make_sparse_optimizer(name).step("t", ref, IDS, grad, lr=0.1)
    make_sparse_optimizer(name).step("t", hi, IDS, grad, lr=0.1, trail=lo)
    torch.testing.assert_close(join_fp32(hi, lo), ref, atol=1e-6, rtol=0)  # SGD: coalesced vs accumulated sums
    if name == "rowwise_adagrad":  # same coalesced arithmetic: bit for bit
        assert torch.equal(join_fp32(hi, lo), ref)
    mask = untouched_mask(10)
    assert torch.equal(hi[mask], before_hi[mask]) and not torch.equal(hi[~mask], before_hi[~mask])


def test_master_weights_carry_bf16_gradients_to_fp32_and_back() -> None:
    lin = torch.nn.Linear(4, 3)
    ref = [p.detach().clone() for p in lin.parameters()]
    master = MasterWeights(lin.parameters())
    lin.to(torch.bfloat16)
    assert all(torch.equal(m, r) for m, r in zip(master.masters, ref))  # the exact fp32 init
    lin(torch.ones(2, 4, dtype=torch.bfloat16)).sum().backward()
    master.grads_to_masters()
    assert all(p.grad is None for p in lin.parameters())
    torch.testing.assert_close(master.masters[1].grad, torch.full((3,), 2.0))
    opt = torch.optim.SGD(master.masters, lr=0.5)
    opt.step()
    master.masters_to_model()
    assert lin.bias.dtype == torch.bfloat16 and torch.equal(lin.bias, (ref[1] - 1.0).to(torch.bfloat16))
    saved = master.state_dict()
    other = MasterWeights(torch.nn.Linear(4, 3).to(torch.bfloat16).parameters())
    other.load_state_dict(saved)
    assert all(torch.equal(a, b) for a, b in zip(other.masters, master.masters))
    assert all(torch.equal(a, b) for a, b in zip(other.model_params, master.model_params))


# ------------------------------------------------------------------------------------------- dense


def test_lamb_matches_a_hand_computed_update_over_two_steps() -> None:
    w0 = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    grads = [torch.tensor([[0.1, -0.2], [0.3, 0.0]]), torch.tensor([[-0.4, 0.1], [0.2, 0.5]])]
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-6, 0.01
    p = torch.nn.Parameter(w0.clone())
    opt = LAMB([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    w, m, v = w0.clone(), torch.zeros(2, 2), torch.zeros(2, 2)
    for t, g in enumerate(grads, start=1):
        p.grad = g.clone()
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps) + wd * w
        w = w - lr * (w.norm() / u.norm()) * u
        torch.testing.assert_close(p.detach(), w)


def test_lamb_uses_trust_one_when_a_norm_is_zero() -> None:
    bias = torch.nn.Parameter(torch.zeros(3))  # ||w|| = 0, as a fresh zero bias
    bias.grad = torch.tensor([1.0, -2.0, 0.5])
    LAMB([bias], lr=0.1).step()
    # first step: m_hat = g, v_hat = g^2, so update = sign(g) (up to eps); trust 1
    torch.testing.assert_close(bias.detach(), -0.1 * torch.sign(bias.grad), atol=1e-6, rtol=0)
    zero_grad = torch.nn.Parameter(torch.ones(2))
    zero_grad.grad = torch.zeros(2)
    LAMB([zero_grad], lr=0.1).step()
    assert torch.equal(zero_grad.detach(), torch.ones(2))


def test_make_dense_optimizer() -> None:
    params = [torch.nn.Parameter(torch.ones(2))]
    assert isinstance(make_dense_optimizer("sgd", params, 0.1), torch.optim.SGD)
    assert isinstance(make_dense_optimizer("adagrad", params, 0.1), torch.optim.Adagrad)
    lamb = make_dense_optimizer("lamb", params, 0.1, weight_decay=0.01)
    assert isinstance(lamb, LAMB) and lamb.param_groups[0]["weight_decay"] == 0.01
    with pytest.raises(ConfigError, match="dense optimizer"):
        make_dense_optimizer("adam", params, 0.1)
    with pytest.raises(ConfigError, match="betas"):
        LAMB(params, betas=(1.0, 0.9))
