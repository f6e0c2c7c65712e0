"""Optimizers: sparse ones for embedding rows, dense ones (SGD, Adagrad, LAMB) for the MLPs.

Sparse optimizers update only the rows a batch read (``hpcdlrm.model.Lookup``): they never build a dense
``rows x dim`` gradient. Their state is keyed by ``Lookup.key`` so a sharded model with several weights
(one per shard) keeps one state per weight. Typical use after ``loss.backward()``::

    for lk in model.lookups():
        sparse_opt.step(lk.key, lk.weight, lk.ids, lk.out.grad, lr)

Column sharding and row-wise Adagrad: a rank that holds columns c0:c1 of a table sees only that slice of
each row's gradient, but the row's accumulator must grow by the mean of the squared gradient over the
FULL dim to match one rank. The caller then coalesces, sums the squares of its slice, all-reduces those
sums across the table's column owners and passes them in::

    rows, g = sparse_grad(lk.ids, lk.out.grad)      # same rows, same order on every column owner
    sq = row_sq_sum(g); dist.all_reduce(sq, group=column_owners)
    sparse_opt.step(lk.key, lk.weight, rows, g, lr, row_sq_sum=sq, full_dim=table_dim)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from ..errors import ConfigError
from ..model import join_fp32, sparse_grad, split_fp32

SPARSE_OPTIMIZERS = ("sgd", "rowwise_adagrad")
DENSE_OPTIMIZERS = ("sgd", "adagrad", "lamb")


def row_sq_sum(grad: Tensor) -> Tensor:
    """Per-row sum of squared gradients, (N, d) -> (N,) float32: the quantity column owners all-reduce."""
    g = grad.float()
    return torch.einsum("nd,nd->n", g, g)


def add_rows_(weight: Tensor, rows: Tensor, delta: Tensor, trail: Tensor | None = None) -> None:
    """``weight[rows] += delta`` in one indexed update (the sparse optimizers' last step).

    fp32 tables: ``index_add_`` (``rows`` may repeat: it accumulates). Split bf16 tables (``trail``,
    see ``hpcdlrm.model.split_fp32``): ``rows`` must be unique; the touched rows are joined to their
    exact fp32 values, updated and split back, so bf16 storage loses nothing in the update.
    """
    with torch.no_grad():
        if trail is None:
            weight.index_add_(0, rows, delta.to(weight.dtype))
            return
        w = join_fp32(weight.index_select(0, rows), trail.index_select(0, rows)).add_(delta)
        hi, lo = split_fp32(w)
        weight.index_copy_(0, rows, hi)
        trail.index_copy_(0, rows, lo)


class SparseSGD:
    """w[rows] -= lr * grad. fp32 tables take repeated rows as they are (index_add_ accumulates them);
    split bf16 tables coalesce them once first."""

    def step(self, key: str, weight: Tensor, rows: Tensor, grad: Tensor, lr: float,
             trail: Tensor | None = None, **_: Any) -> None:
        if trail is not None:
            rows, grad = sparse_grad(rows, grad)  # (the column-sharded caller's rows are unique already)
        # scale the source: index_add_ with alpha != 1 takes a ~3x slower per-row path on CPU
        add_rows_(weight, rows, grad.float() * -lr if trail is not None else grad.to(weight.dtype) * -lr, trail)

    def state_dict(self) -> dict[str, Any]:
        return {"name": "sgd"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_name(state, "sgd")


class RowWiseAdagrad:
    """Row-wise Adagrad (the reference's rwsadagrad, TorchRec/FBGEMM ROWWISE_ADAGRAD).

    One accumulator per row: ``acc[r] += mean_d(g[r]**2)``; ``w[r] -= lr * g[r] / (sqrt(acc[r]) + eps)``,
    with g the batch's summed gradient of row r. State is a lazily created (rows,) float32 per key.
    """

    def __init__(self, eps: float = 1e-8, initial_accumulator: float = 0.0) -> None:
        if eps <= 0 or initial_accumulator < 0:
            raise ConfigError(f"rowwise_adagrad: need eps > 0 and initial_accumulator >= 0, got {eps}, {initial_accumulator}")
        self.eps, self.initial_accumulator = eps, initial_accumulator
        self.state: dict[str, Tensor] = {}

    def step(
        self,
        key: str,
        weight: Tensor,
        rows: Tensor,
        grad: Tensor,
        lr: float,
        row_sq_sum: Tensor | None = None,
        full_dim: int | None = None,
        trail: Tensor | None = None,
    ) -> None:
        """Update ``weight[rows]``.

        Without ``row_sq_sum``, ``rows`` may repeat (they are coalesced here). With it, ``rows`` must be
        unique (``sparse_grad``'s output) and ``row_sq_sum[i]`` is the sum of squares of row i's gradient
        over the full dim (``full_dim``, default ``grad.shape[1]``), e.g. all-reduced across column owners.
        ``trail``: the low halves of a split bf16 ``weight`` (see ``add_rows_``).
        """
        if row_sq_sum is None:
            rows, grad = sparse_grad(rows, grad)
            row_sq_sum = _row_sq(grad)
        elif row_sq_sum.shape != rows.shape:
            raise ConfigError(f"row_sq_sum has shape {tuple(row_sq_sum.shape)}, rows {tuple(rows.shape)}")
        elif rows.numel() > 1 and not bool((rows[1:] > rows[:-1]).all()):
            raise ConfigError("rowwise_adagrad: with row_sq_sum, rows must be sorted and unique (sparse_grad's output)")
        dim = full_dim if full_dim is not None else grad.shape[1]
        acc = self._accumulator(key, weight)
        with torch.no_grad():
            acc.index_add_(0, rows, row_sq_sum.float() / dim)
            scale = acc.index_select(0, rows).sqrt_().add_(self.eps).reciprocal_().mul_(-lr)
        add_rows_(weight, rows, grad.float() * scale.unsqueeze(1), trail)

    def _accumulator(self, key: str, weight: Tensor) -> Tensor:
        acc = self.state.get(key)
        if acc is None:
            acc = self.state[key] = torch.full((weight.shape[0],), self.initial_accumulator, dtype=torch.float32)
        elif acc.shape[0] != weight.shape[0]:
            raise ConfigError(f"rowwise_adagrad state {key!r} has {acc.shape[0]} rows, the weight {weight.shape[0]}")
        return acc

    def state_dict(self) -> dict[str, Any]:
        return {"name": "rowwise_adagrad", "eps": self.eps, "initial_accumulator": self.initial_accumulator,
                "state": dict(self.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_name(state, "rowwise_adagrad")
        self.eps, self.initial_accumulator = float(state["eps"]), float(state["initial_accumulator"])
        self.state = {k: v.clone() for k, v in state["state"].items()}


_row_sq = row_sq_sum  # RowWiseAdagrad.step has an argument of that name


def _check_name(state: dict[str, Any], name: str) -> None:
    if state.get("name") != name:
        raise ConfigError(f"optimizer state is for {state.get('name')!r}, this optimizer is {name!r}")


SparseOptimizer = SparseSGD | RowWiseAdagrad


def make_sparse_optimizer(name: str, **kwargs: Any) -> SparseOptimizer:
    """``"sgd"`` or ``"rowwise_adagrad"`` (kwargs: eps, initial_accumulator)."""
    if name == "sgd":
        return SparseSGD()
    if name == "rowwise_adagrad":
        return RowWiseAdagrad(**kwargs)
    raise ConfigError(f"sparse optimizer must be one of {SPARSE_OPTIMIZERS}, got {name!r}")


class MasterWeights:
    """fp32 master copies of a model's low-precision (bf16) parameters.

    The model computes with its bf16 weights directly (no autocast re-casting them in every forward);
    the dense optimizer, its state and the gradient all-reduce work on the fp32 masters. Per step:
    ``grads_to_masters()`` after backward (bf16 gradients into the masters' fp32 ``.grad``, which may
    be views of a flat all-reduce buffer), the optimizer step on ``masters``, then ``masters_to_model()``
    writes the updated weights back into the model's bf16 parameters in place.
    Build it while the model is still fp32, so the masters start from the exact fp32 initialisation.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter]) -> None:
        self.model_params = list(params)
        self.masters = [torch.nn.Parameter(p.detach().float().clone()) for p in self.model_params]

    def grads_to_masters(self) -> None:
        for p, m in zip(self.model_params, self.masters):
            if m.grad is None:
                m.grad = torch.zeros_like(m)
            if p.grad is None:
                m.grad.zero_()
            else:
                m.grad.copy_(p.grad)
                p.grad = None  # the next backward writes a fresh one instead of accumulating into it

    @torch.no_grad()
    def masters_to_model(self) -> None:
        for p, m in zip(self.model_params, self.masters):
            p.copy_(m)

    def state_dict(self) -> list[Tensor]:
        return [m.detach().clone() for m in self.masters]

    def load_state_dict(self, state: list[Tensor]) -> None:
        if len(state) != len(self.masters) or any(s.shape != m.shape for s, m in zip(state, self.masters)):
            raise ConfigError("master weights in the checkpoint do not match this model's parameters")
        with torch.no_grad():
            for m, s in zip(self.masters, state):
                m.copy_(s)
        self.masters_to_model()


class LAMB(torch.optim.Optimizer):
    """LAMB (You et al. 2019): Adam moments with bias correction, decoupled weight decay, and a per-tensor
    trust ratio ||w|| / ||update||, taken as 1 when either norm is zero (fresh zero biases, zero grads).

    update = m_hat / (sqrt(v_hat) + eps) + weight_decay * w;   w -= lr * trust * update
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or eps <= 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"lamb: need lr >= 0, eps > 0, weight_decay >= 0, 0 <= betas < 1; got "
                              f"lr={lr}, eps={eps}, weight_decay={weight_decay}, betas={betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: Tensor, group: dict[str, Any]) -> None:
        if p.grad.is_sparse:
            raise ConfigError("lamb does not take sparse gradients (embeddings use the sparse optimizers)")
        b1, b2 = group["betas"]
        st = self.state[p]
        if not st:
            st["step"] = 0
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["step"] += 1
        g = p.grad.float()
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        bc1, bc2 = 1 - b1 ** st["step"], 1 - b2 ** st["step"]
        update = (m / bc1).div_((v / bc2).sqrt_().add_(group["eps"]))
        if group["weight_decay"]:
            update.add_(p, alpha=group["weight_decay"])
        w_norm, u_norm = float(p.norm()), float(update.norm())
        trust = w_norm / u_norm if w_norm > 0 and u_norm > 0 and math.isfinite(w_norm / u_norm) else 1.0
        p.add_(update.to(p.dtype), alpha=-group["lr"] * trust)


def make_dense_optimizer(name: str, params: Iterable[Tensor], lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """``"sgd"`` (torch SGD), ``"adagrad"`` (torch Adagrad, eps 1e-10, accumulator 0) or ``"lamb"``."""
    if lr < 0:
        raise ConfigError(f"dense learning rate must be >= 0, got {lr}")
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **kwargs)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, **kwargs)
    if name == "lamb":
        return LAMB(params, lr=lr, **kwargs)
    raise ConfigError(f"dense optimizer must be one of {DENSE_OPTIMIZERS}, got {name!r}")
