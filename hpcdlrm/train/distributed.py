"""Process group set-up and the few collectives training needs, behind one ``Comm`` object.

With one rank no process group is created and every collective is the identity, so the single-process
path pays nothing. Ranks come from :func:`hpcdlrm.env.detect`; under a bare MPI launcher the master
address is agreed with mpi4py (rank 0 broadcasts its host and a free port).
"""

from __future__ import annotations

import datetime
import importlib
import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist

from ..env import RankInfo, mpi_comm
from ..errors import ConfigError, DistributedError

CCL_MODULE = "oneccl_bindings_for_pytorch"


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def resolve_backend(name: str) -> str:
    """``auto`` -> ccl when its bindings import, else gloo. A named backend that is missing is an error."""
    if name == "auto":
        return "ccl" if _importable(CCL_MODULE) else "gloo"
    if name == "gloo":
        if not dist.is_gloo_available():
            raise DistributedError("--backend gloo: this torch build has no gloo support")
        return name
    if name == "ccl":
        if not _importable(CCL_MODULE):
            raise DistributedError(f"--backend ccl: `import {CCL_MODULE}` failed; install oneCCL's torch "
                                   "bindings or use --backend gloo")
        return name
    raise ConfigError(f"--backend: unknown backend {name!r} (auto, gloo, ccl)")


def load_ipex() -> Any:
    """intel_extension_for_pytorch, only when asked for (``--ipex``); a clear error when absent."""
    try:
        return importlib.import_module("intel_extension_for_pytorch")
    except ImportError as e:
        raise ConfigError(f"--ipex: intel_extension_for_pytorch is not importable ({e})") from e


def bf16_native() -> bool:
    """Whether oneDNN has native bfloat16 kernels on this CPU (else bf16 is emulated, slowly)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_threads(info: RankInfo) -> int:
    """Intra-op threads for one rank: its cores, shared with the node's other ranks when unbound."""
    cores = len(os.sched_getaffinity(0))
    # A launcher that binds ranks to cores (srun --cpu-bind) leaves each rank only its cores;
    # unbound ranks on one node share them.
    return max(1, cores // info.local_world_size if cores == os.cpu_count() else cores)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def agree_master(info: RankInfo) -> tuple[str, int]:
    """Master address and port every rank agrees on (mpi launcher: broadcast by rank 0 over MPI)."""
    if info.master_addr and info.master_port:
        return info.master_addr, info.master_port
    comm = mpi_comm()
    if comm is None or comm.Get_size() != info.world_size:
        raise DistributedError(
            f"rank {info.rank}/{info.world_size} (launcher {info.launcher}): no MASTER_ADDR/MASTER_PORT and "
            "mpi4py cannot agree on one; export MASTER_ADDR and MASTER_PORT or install mpi4py")
    # The network host name, not info.hostname: a Slurm node name need not resolve (NodeAddr aliases).
    here = socket.gethostname()
    mine = (here, _free_port()) if info.rank == 0 else None
    host, port = comm.bcast(mine, root=0)
    if info.master_port:
        port = info.master_port
    # Ranks on rank 0's host use loopback: the store listens on every interface, and a host name
    # may not resolve inside containers.
    return ("127.0.0.1" if host == here else host), int(port)


@dataclass
class CommStats:
    """Seconds and bytes this rank spent in the step's collectives, summed since the last ``reset``.

    Bytes count what leaves this rank (an all-to-all's own chunk stays in memory); an all-reduce counts
    its buffer once (the algorithm's traffic is the cost model's business). Times include waiting for
    slower ranks: a collective is where imbalance shows.
    """

    a2a_fwd_s: float = 0.0
    a2a_fwd_bytes: int = 0
    a2a_bwd_s: float = 0.0
    a2a_bwd_bytes: int = 0
    a2a_calls: int = 0
    allreduce_s: float = 0.0
    allreduce_bytes: int = 0
    allreduce_calls: int = 0

    def reset(self) -> None:
        for name, value in asdict(CommStats()).items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Comm:
    """Rank layout plus collectives; identity operations when ``world_size == 1``.

    ``stats`` (None: not measured, zero cost) accumulates time and bytes of every all-to-all and
    all-reduce when a benchmark sets it to a :class:`CommStats`.
    """

    rank: int = 0
    world_size: int = 1
    backend: str | None = None
    info: RankInfo | None = None
    stats: CommStats | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if self.world_size > 1:
            t0 = time.perf_counter() if self.stats is not None else 0.0
            dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
            if self.stats is not None:
                self.stats.allreduce_s += time.perf_counter() - t0
                self.stats.allreduce_bytes += t.numel() * t.element_size()
                self.stats.allreduce_calls += 1
        return t

    def all_to_all(self, x: torch.Tensor, in_splits: Sequence[int], out_splits: Sequence[int],
                   phase: str = "fwd") -> torch.Tensor:
        """Flat (1-D) all-to-all with uneven element counts: chunk i of ``x`` goes to rank i.
        ``phase`` ("fwd" or "bwd") only tells ``stats`` where to book it."""
        if self.world_size == 1:
            return x
        out = x.new_empty(int(sum(out_splits)))
        t0 = time.perf_counter() if self.stats is not None else 0.0
        dist.all_to_all_single(out, x.contiguous(), list(out_splits), list(in_splits))
        if self.stats is not None:
            self._book_a2a(phase, time.perf_counter() - t0,
                           (int(sum(in_splits)) - int(in_splits[self.rank])) * x.element_size())
        return out

    def _book_a2a(self, phase: str, seconds: float, sent: int) -> None:
        assert self.stats is not None
        if phase == "bwd":
            self.stats.a2a_bwd_s += seconds
            self.stats.a2a_bwd_bytes += sent
        else:
            self.stats.a2a_fwd_s += seconds
            self.stats.a2a_fwd_bytes += sent
        self.stats.a2a_calls += 1

    def all_gather_ints(self, values: Sequence[int]) -> list[list[int]]:
        """Every rank's small list of ints (same length on all ranks)."""
        t = torch.tensor(list(values), dtype=torch.int64)
        if self.world_size == 1:
            return [t.tolist()]
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t)
        return [o.tolist() for o in out]

    def all_gather_varlen(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate a 1-D tensor of per-rank length over ranks (rank order)."""
        if self.world_size == 1:
            return t
        sizes = [s[0] for s in self.all_gather_ints([t.numel()])]
        pad = t.new_zeros(max(sizes))
        pad[: t.numel()] = t
        out = [torch.empty_like(pad) for _ in sizes]
        dist.all_gather(out, pad)
        return torch.cat([o[:n] for o, n in zip(out, sizes)])

    def all_gather_object(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self, sync: bool = True) -> None:
        """Tear the process group down. ``sync``: first wait until every rank is past its last
        collective, so no rank closes its sockets under a peer's in-flight gloo work (which can abort
        that peer at exit: "terminate called without an active exception"). Not after an error: a
        peer may be blocked in another collective, and the barrier would hang until the timeout."""
        if self.world_size > 1 and dist.is_initialized():
            if sync:
                dist.barrier()
            dist.destroy_process_group()


def init(info: RankInfo, backend: str = "auto", timeout_s: float = 600.0) -> Comm:
    """Create the process group for ``info`` (nothing for one rank) and return its ``Comm``."""
    if info.world_size == 1:
        return Comm(info=info)
    name = resolve_backend(backend)
    addr, port = agree_master(info)
    try:
        dist.init_process_group(name, init_method=f"tcp://{addr}:{port}", rank=info.rank,
                                world_size=info.world_size, timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as e:
        raise DistributedError(f"rank {info.rank}/{info.world_size}: init_process_group({name}, "
                               f"tcp://{addr}:{port}) failed: {e}") from e
    return Comm(rank=info.rank, world_size=info.world_size, backend=name, info=info)


class _AllToAll(torch.autograd.Function):
    """Differentiable flat all-to-all: the backward sends gradients back along the same routes."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, comm: Comm, in_splits: list[int], out_splits: list[int]) -> torch.Tensor:
        ctx.comm, ctx.in_splits, ctx.out_splits = comm, in_splits, out_splits
        return comm.all_to_all(x, in_splits, out_splits)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        return ctx.comm.all_to_all(grad.contiguous(), ctx.out_splits, ctx.in_splits, phase="bwd"), None, None, None


def all_to_all(comm: Comm, x: torch.Tensor, in_splits: Sequence[int], out_splits: Sequence[int]) -> torch.Tensor:
    """Autograd-aware :meth:`Comm.all_to_all` of a 1-D tensor."""
    if comm.world_size == 1:
        return x
    return _AllToAll.apply(x, comm, list(in_splits), list(out_splits))


class FlatGrads:
    """All dense gradients live in one flat buffer (each ``p.grad`` is a view into it), followed by
    ``extra`` free slots for whatever else is summed over ranks in the same step (replicated-table
    gradients, the loss, stop flags): one all-reduce per step instead of one per tensor."""

    def __init__(self, params: Sequence[torch.nn.Parameter], extra: int = 0) -> None:
        self.params = list(params)
        self.numel = sum(p.numel() for p in self.params)
        self.buffer = torch.zeros(self.numel + extra)
        self.views: list[torch.Tensor] = []
        offset = 0
        for p in self.params:
            self.views.append(self.buffer[offset: offset + p.numel()].view_as(p))
            offset += p.numel()
        self._attach()

    def _attach(self) -> None:
        # An optimizer's zero_grad(set_to_none=True) would detach p.grad from the buffer: re-attach.
        for p, v in zip(self.params, self.views):
            if p.grad is not v:
                p.grad = v

    @property
    def extra(self) -> torch.Tensor:
        return self.buffer[self.numel:]

    def zero_(self) -> None:
        self.buffer.zero_()
        self._attach()

    def all_reduce_(self, comm: Comm) -> None:
        comm.all_reduce_(self.buffer)
