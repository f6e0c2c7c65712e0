"""Process group set-up and the few collectives training needs, behind one ``Comm`` object.

With one rank no process group is created and every collective is the identity, so the single-process
path pays nothing. Ranks come from :func:`hpcdlrm.env.detect`; under a bare MPI launcher the master
address is agreed with mpi4py (rank 0 broadcasts its host and a free port).

Backends: ``gloo`` (torch.distributed over TCP), ``ccl`` (oneCCL's torch bindings, when they import) and
``mpi`` (:class:`MpiComm`: the same collectives through mpi4py on the tensors' own memory, on whatever MPI
mpi4py loads: the ``mpi`` extra's MPICH here, the site's Intel MPI / Open MPI / Cray MPICH on a cluster,
so the site's fabric is used). ``auto`` picks mpi when an MPI launcher or ``srun --mpi=...`` started the
ranks and mpi4py sees all of them, else ccl when importable, else gloo.

Every collective also has a non-blocking form (``*_async``, returning a :class:`Pending`): the trainer
starts an exchange, computes, and waits only when it needs the result.
"""

from __future__ import annotations

import datetime
import importlib
import os
import queue
import socket
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
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


def _mpi_sees(info: RankInfo | None) -> bool:
    """mpi4py imports and its world is exactly the launcher's ranks (srun without --mpi=pmi2/pmix makes
    every rank a singleton)."""
    comm = mpi_comm()
    return comm is not None and info is not None and comm.Get_size() == info.world_size \
        and comm.Get_rank() == info.rank


def resolve_backend(name: str, info: RankInfo | None = None) -> str:
    """``auto`` -> mpi when an MPI launcher or srun started ``info``'s ranks and mpi4py sees them all,
    else ccl when its bindings import, else gloo. A named backend that is missing is an error."""
    if name == "auto":
        if info is not None and info.launcher in ("mpi", "slurm") and info.world_size > 1 and _mpi_sees(info):
            return "mpi"
        return "ccl" if _importable(CCL_MODULE) else "gloo"
    if name == "mpi":
        if mpi_comm() is None:
            raise DistributedError("--backend mpi: mpi4py (or its MPI library) does not import; "
                                   "pip install -e .[mpi], or point MPI4PY_LIBMPI at the site's libmpi")
        if info is not None and info.world_size > 1 and not _mpi_sees(info):
            size = mpi_comm().Get_size()  # type: ignore[union-attr]
            raise DistributedError(f"--backend mpi: MPI sees {size} rank(s) but the launcher ({info.launcher}) "
                                   f"started {info.world_size}; under Slurm use srun --mpi=pmi2 (or pmix)")
        return name
    if name == "gloo":
        if not dist.is_gloo_available():
            raise DistributedError("--backend gloo: this torch build has no gloo support")
        return name
    if name == "ccl":
        if not _importable(CCL_MODULE):
            raise DistributedError(f"--backend ccl: `import {CCL_MODULE}` failed; install oneCCL's torch "
                                   "bindings or use --backend gloo")
        return name
    raise ConfigError(f"--backend: unknown backend {name!r} (auto, gloo, ccl, mpi)")


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

    The ``*_s`` fields are each collective's own duration; ``exposed_s`` is the part of them the caller
    waited for (a non-blocking collective that finished under compute costs its duration but no exposure).

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
    exposed_s: float = 0.0  # of the above, what the caller spent blocked (the rest ran under compute)

    def reset(self) -> None:
        for name, value in asdict(CommStats()).items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class Pending:
    """A collective in flight: ``wait()`` blocks until it is done and returns its result."""

    def __init__(self, wait: Callable[[], torch.Tensor]) -> None:
        self._wait, self._result = wait, None

    def wait(self) -> torch.Tensor:
        if self._wait is not None:
            self._result, self._wait = self._wait(), None
        return self._result


def _done(t: torch.Tensor) -> Pending:
    p = Pending(lambda: t)
    p.wait()
    return p


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

    # ------------------------------------------------------------------ booking
    def _book(self, kind: str, seconds: float, nbytes: int) -> None:
        st = self.stats
        if st is None:
            return
        if kind == "allreduce":
            st.allreduce_s += seconds
            st.allreduce_bytes += nbytes
            st.allreduce_calls += 1
            return
        if kind == "bwd":
            st.a2a_bwd_s += seconds
            st.a2a_bwd_bytes += nbytes
        else:
            st.a2a_fwd_s += seconds
            st.a2a_fwd_bytes += nbytes
        st.a2a_calls += 1

    def _blocked(self, t0: float) -> None:
        # Only the thread that runs the step can be held up; a helper thread's waits run under its compute.
        if self.stats is not None and threading.current_thread() is threading.main_thread():
            self.stats.exposed_s += time.perf_counter() - t0

    def book_exposed(self, seconds: float) -> None:
        """Exposure the caller measured itself (the step thread waiting for a helper's exchange)."""
        if self.stats is not None:
            self.stats.exposed_s += seconds

    # ------------------------------------------------------------------ collectives
    def all_reduce_(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Sum (or max) ``t`` over ranks, in place."""
        t0 = time.perf_counter()
        out = self.all_reduce_async(t, op, _sync=True).wait()
        self._blocked(t0)
        return out

    def all_reduce_async(self, t: torch.Tensor, op: str = "sum", _sync: bool = False) -> Pending:
        if self.world_size == 1:
            return _done(t)
        t0 = time.perf_counter()
        work = dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX, async_op=True)
        return Pending(lambda: self._finish(work, t, t0, "allreduce", t.numel() * t.element_size(), _sync))

    def _finish(self, work: Any, result: torch.Tensor, t0: float, kind: str, nbytes: int,
                sync: bool) -> torch.Tensor:
        w0 = time.perf_counter()
        work.wait()
        self._book(kind, time.perf_counter() - t0, nbytes)  # gloo runs it on its own threads: start to end
        if not sync:  # a blocking call books its whole time as exposed itself
            self._blocked(w0)
        return result

    def all_to_all(self, x: torch.Tensor, in_splits: Sequence[int], out_splits: Sequence[int],
                   phase: str = "fwd") -> torch.Tensor:
        """Flat (1-D) all-to-all with uneven element counts: chunk i of ``x`` goes to rank i.
        ``phase`` ("fwd" or "bwd") only tells ``stats`` where to book it."""
        t0 = time.perf_counter()
        out = self.all_to_all_async(x, in_splits, out_splits, phase, _sync=True).wait()
        self._blocked(t0)
        return out

    def all_to_all_async(self, x: torch.Tensor, in_splits: Sequence[int], out_splits: Sequence[int],
                         phase: str = "fwd", _sync: bool = False) -> Pending:
        if self.world_size == 1:
            return _done(x)
        out = x.new_empty(int(sum(out_splits)))
        t0 = time.perf_counter()
        work = dist.all_to_all_single(out, x.contiguous(), list(out_splits), list(in_splits), async_op=True)
        sent = (int(sum(in_splits)) - int(in_splits[self.rank])) * x.element_size()
        return Pending(lambda: self._finish(work, out, t0, phase, sent, _sync))

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

    def gather_varlen(self, t: torch.Tensor, root: int = 0) -> torch.Tensor | None:
        """Concatenate a 1-D tensor of per-rank length on ``root`` only (rank order); None elsewhere.
        Only the root holds everything, so other ranks' memory stays bounded by their own share."""
        if self.world_size == 1:
            return t
        sizes = [s[0] for s in self.all_gather_ints([t.numel()])]
        pad = t.new_zeros(max(sizes))
        pad[: t.numel()] = t
        out = [torch.empty_like(pad) for _ in sizes] if self.rank == root else None
        dist.gather(pad, out, dst=root)
        return torch.cat([o[:n] for o, n in zip(out, sizes)]) if out is not None else None

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=root)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def concurrent(self) -> None:
        """Collectives will now come from several threads at once (the step's thread and an overlap
        helper, or autograd hooks): make that safe. gloo's process group already is."""

    def close(self, sync: bool = True) -> None:
        """Tear the process group down. ``sync``: first wait until every rank is past its last
        collective, so no rank closes its sockets under a peer's in-flight gloo work (which can abort
        that peer at exit: "terminate called without an active exception"). Not after an error: a
        peer may be blocked in another collective, and the barrier would hang until the timeout."""
        if self.world_size > 1 and dist.is_initialized():
            if sync:
                dist.barrier()
            dist.destroy_process_group()

    def abort(self, code: int = 1) -> None:
        """End every rank after this one failed; gloo's own timeout ends the peers' waits."""


def _np(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a contiguous CPU tensor's memory (no copy); bf16/fp16 as 16-bit integers (moved,
    never reduced)."""
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    return t.numpy()


class _MpiThread:
    """The one thread that makes every MPI call of a :class:`MpiComm`.

    Why one thread: two threads inside MPI at once (a blocking exchange on the step's thread while a
    helper runs a bucket's all-reduce) is legal under MPI_THREAD_MULTIPLE, but it is where MPI libraries'
    threading bugs live (MPICH 5 over srun hung in ~1 of 3 CI runs that way), and each spinning caller
    steals a core. Here callers hand operations over and wait on a condition.

    Each operation is STARTED non-blocking (``Ialltoallv``, ``Iallreduce``, ...) as soon as it arrives,
    on its own communicator; the thread then polls every started request without pause until all are
    done (MPI's non-blocking collectives advance only while polled: sleeping between polls made a step
    2.6x slower), taking new work between polls; with nothing started it sleeps on its queue.
    Starting, never blocking, is what keeps ranks out of deadlock: the step's collectives (world) and
    the gradient buckets (a duplicate) are each issued in the same order on every rank, but how the two
    interleave depends on autograd's timing on each rank; a thread that blocked in one could not start
    the other that its peer is waiting for.

    A daemon thread: an error on one rank must not keep the process at exit waiting for a collective
    its peers will never join (the trainer aborts the job instead, :meth:`MpiComm.abort`).
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="hpcdlrm-mpi", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        from mpi4py import MPI  # noqa: PLC0415

        started: list[tuple[Any, Future, Any, float]] = []  # (request, future, result, start time)
        while True:
            if not started or not self._queue.empty():  # start everything that waits, then poll
                item = self._queue.get()
                if item is None:
                    return
                self._start(*item, started)
                continue
            done = MPI.Request.Testsome([r for r, _, _, _ in started])
            if not done:
                continue
            now = time.perf_counter()
            for i in done:
                _, fut, result, t0 = started[i]
                fut.set_result((result, now - t0))
            finished = set(done)
            started = [s for i, s in enumerate(started) if i not in finished]

    @staticmethod
    def _start(fn: Callable[[], tuple[Any, Any]], fut: Future, started: list[tuple[Any, Future, Any, float]]) -> None:
        t0 = time.perf_counter()
        try:
            req, result = fn()  # starts the operation; (None, result) when it is already done
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits for it
            fut.set_exception(e)
            return
        if req is None:
            fut.set_result((result, time.perf_counter() - t0))
        else:
            started.append((req, fut, result, t0))

    def submit(self, start: Callable[[], tuple[Any, Any]]) -> Future:
        """``start()`` runs on the MPI thread and returns ``(request, result)``; the future gives
        ``(result, seconds from start to completion)``."""
        fut: Future = Future()
        self._queue.put((start, fut))
        return fut

    def call(self, start: Callable[[], tuple[Any, Any]]) -> tuple[Any, float]:
        return self.submit(start).result()

    def stop(self, wait: bool) -> None:
        self._queue.put(None)
        if wait:
            self._thread.join()


@dataclass
class MpiComm(Comm):
    """The same collectives through mpi4py, on the tensors' own buffers (numpy views, no copies).

    Non-blocking forms (``*_async``) return a :class:`Pending` and run on a duplicate communicator, so
    they never match a blocking one by accident. The calling thread makes the MPI calls itself until
    :meth:`concurrent`; from then on every MPI call runs on one communication thread
    (:class:`_MpiThread`). One thread per rank (no overlap) calls MPI directly: handing each
    collective to another thread and back cost ~0.1 ms (4 collectives a step), and with one core per
    rank that thread would only take turns with the compute.
    """

    mpi: Any = None
    _io: _MpiThread | None = field(default=None, repr=False)
    _async_comm: Any = field(default=None, repr=False)
    _open: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.world_size > 1:
            self._async_comm = self.mpi.Dup()  # collective: every rank builds its MpiComm at start
            self._open = True

    def concurrent(self) -> None:
        if self.world_size > 1 and self._io is None and self._open:
            self._io = _MpiThread()

    def _submit(self, start: Callable[[Any], tuple[Any, Any]], kind: str, nbytes: int) -> Pending:
        if self._io is None:  # this thread starts it; its wait completes it (duration: start to end)
            t0 = time.perf_counter()
            req, out = start(self._async_comm)

            def wait_here() -> torch.Tensor:
                w0 = time.perf_counter()
                if req is not None:
                    req.Wait()
                self._blocked(w0)
                self._book(kind, time.perf_counter() - t0, nbytes)
                return out
            return Pending(wait_here)
        fut = self._io.submit(lambda: start(self._async_comm))

        def wait() -> torch.Tensor:
            w0 = time.perf_counter()
            out, took = fut.result()
            self._blocked(w0)
            self._book(kind, took, nbytes)
            return out
        return Pending(wait)

    def _sync(self, start: Callable[[Any], tuple[Any, Any]], kind: str, nbytes: int) -> torch.Tensor:
        t0 = time.perf_counter()
        out, took = self._call(start)
        self._book(kind, took, nbytes)
        self._blocked(t0)
        return out

    def _call(self, start: Callable[[Any], tuple[Any, Any]]) -> tuple[Any, float]:
        """Run a blocking collective on the world communicator: (result, seconds)."""
        if self._io is not None:
            return self._io.call(lambda: start(self.mpi))
        t0 = time.perf_counter()
        req, out = start(self.mpi)
        if req is not None:
            req.Wait()
        return out, time.perf_counter() - t0

    def _reduce_fn(self, t: torch.Tensor, op: str) -> Callable[[Any], tuple[Any, torch.Tensor]]:
        from mpi4py import MPI  # noqa: PLC0415

        if not t.is_contiguous() or t.dtype in (torch.bfloat16, torch.float16):
            raise DistributedError(f"MPI all-reduce needs a contiguous fp32/fp64/int tensor, got {t.dtype}")
        mop = MPI.SUM if op == "sum" else MPI.MAX
        return lambda comm: (comm.Iallreduce(MPI.IN_PLACE, _np(t), op=mop), t)

    def all_reduce_(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if self.world_size == 1:
            return t
        return self._sync(self._reduce_fn(t, op), "allreduce", t.numel() * t.element_size())

    def all_reduce_async(self, t: torch.Tensor, op: str = "sum") -> Pending:
        if self.world_size == 1:
            return _done(t)
        return self._submit(self._reduce_fn(t, op), "allreduce", t.numel() * t.element_size())

    def _a2a_fn(self, x: torch.Tensor, in_splits: Sequence[int],
                out_splits: Sequence[int]) -> tuple[Callable[[Any], tuple[Any, torch.Tensor]], int]:
        x = x.contiguous()
        out = x.new_empty(int(sum(out_splits)))
        sc, rc = np.asarray(in_splits, dtype=np.int64), np.asarray(out_splits, dtype=np.int64)
        sd, rd = np.concatenate([[0], np.cumsum(sc)[:-1]]), np.concatenate([[0], np.cumsum(rc)[:-1]])
        send, recv = _np(x), _np(out)

        def start(comm: Any) -> tuple[Any, torch.Tensor]:
            return comm.Ialltoallv([send, (sc, sd)], [recv, (rc, rd)]), out
        return start, int(sc.sum() - sc[self.rank]) * x.element_size()

    def all_to_all(self, x: torch.Tensor, in_splits: Sequence[int], out_splits: Sequence[int],
                   phase: str = "fwd") -> torch.Tensor:
        if self.world_size == 1:
            return x
        fn, sent = self._a2a_fn(x, in_splits, out_splits)
        return self._sync(fn, phase, sent)

    def all_to_all_async(self, x: torch.Tensor, in_splits: Sequence[int], out_splits: Sequence[int],
                         phase: str = "fwd") -> Pending:
        if self.world_size == 1:
            return _done(x)
        fn, sent = self._a2a_fn(x, in_splits, out_splits)
        return self._submit(fn, phase, sent)

    def all_gather_ints(self, values: Sequence[int]) -> list[list[int]]:
        mine = np.asarray(list(values), dtype=np.int64)
        if self.world_size == 1:
            return [mine.tolist()]
        out = np.empty((self.world_size, mine.size), dtype=np.int64)
        self._call(lambda comm: (comm.Iallgather(mine, out), None))
        return out.tolist()

    def _varlen(self, t: torch.Tensor, root: int | None) -> torch.Tensor | None:
        t = t.contiguous()
        sizes = np.asarray([s[0] for s in self.all_gather_ints([t.numel()])], dtype=np.int64)
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        out = t.new_empty(int(sizes.sum())) if root is None or self.rank == root else None
        if root is None:
            self._call(lambda comm: (comm.Iallgatherv(_np(t), [_np(out), (sizes, displs)]), None))
        else:
            recv = [_np(out), (sizes, displs)] if out is not None else None
            self._call(lambda comm: (comm.Igatherv(_np(t), recv, root=root), None))
        return out

    def all_gather_varlen(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return t
        out = self._varlen(t, None)
        assert out is not None
        return out

    def gather_varlen(self, t: torch.Tensor, root: int = 0) -> torch.Tensor | None:
        if self.world_size == 1:
            return t
        return self._varlen(t, root)

    # Pickled objects (small, at set-up and after evaluation) take mpi4py's blocking forms; the MPI
    # thread still progresses every started request meanwhile, inside MPI.
    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        if self.world_size == 1:
            return obj
        return self._call(lambda comm: (None, comm.bcast(obj, root=root)))[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        return self._call(lambda comm: (None, comm.allgather(obj)))[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            self._call(lambda comm: (comm.Ibarrier(), None))

    def close(self, sync: bool = True) -> None:
        """After success: a last barrier, then stop the communication thread. Otherwise (``sync=False``:
        an agreed refusal, or an error after which the caller calls :meth:`abort`) only stop it."""
        if not self._open:
            return
        self._open, io, self._io = False, self._io, None
        if io is None:
            if sync:
                self.mpi.Barrier()
                self._async_comm.Free()
            return
        if sync:
            io.call(lambda: (self.mpi.Ibarrier(), None))
            io.stop(wait=True)
            self._async_comm.Free()
            return
        io.stop(wait=False)

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (one rank failed; the others would wait for it forever)."""
        if self.world_size > 1:
            sys.stderr.flush()
            # The launcher forwards our stderr and takes the abort on different channels: give the
            # line saying why a moment to get out before the job is killed (it was lost under load).
            time.sleep(0.5)
            self.mpi.Abort(code)


_TORCH_GROUP_CREATED = threading.Event()  # a process-wide fact: this process made a gloo/ccl group


def leave(code: int) -> None:
    """End a command-line process that ran several ranks, with exit status ``code``.

    After a torch.distributed group (gloo) has been used, the interpreter's teardown can destroy one
    of its threads while joinable, and the rank dies with "terminate called without an active
    exception" (SIGABRT) after a run that completed and wrote its result (1 in ~12 two-node runs
    under load here; a Slurm job then ends FAILED). Its work is done and flushed: leave without that
    teardown (finalising MPI first if the rendezvous started it). Otherwise a normal exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    if not _TORCH_GROUP_CREATED.is_set():
        raise SystemExit(code)
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.Finalize()
    os._exit(code)


def init(info: RankInfo, backend: str = "auto", timeout_s: float = 600.0) -> Comm:
    """Create the process group for ``info`` (nothing for one rank) and return its ``Comm``."""
    if info.world_size == 1:
        return Comm(info=info)
    name = resolve_backend(backend, info)
    if name == "mpi":
        return MpiComm(rank=info.rank, world_size=info.world_size, backend=name, info=info, mpi=mpi_comm())
    addr, port = agree_master(info)
    _TORCH_GROUP_CREATED.set()
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
    gradients, the loss, stop flags): one all-reduce per step instead of one per tensor.

    With :meth:`overlap` the parameters' part is summed in buckets DURING backward: a bucket's
    non-blocking all-reduce starts as soon as the last of its gradients is accumulated (the top MLP's
    come first), so it travels while the rest of backward runs; ``all_reduce_`` then waits for them and
    sums what is left (buckets whose gradients never came, and the extra slots)."""

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
        self._comm: Comm | None = None
        self._buckets: list[tuple[int, int, int]] = []  # (lo, hi, parameters) in backward order
        self._bucket_of: list[int] = []
        self._left: list[int] = []
        self._pending: dict[int, Pending] = {}

    def _attach(self) -> None:
        # An optimizer's zero_grad(set_to_none=True) would detach p.grad from the buffer: re-attach.
        for p, v in zip(self.params, self.views):
            if p.grad is not v:
                p.grad = v

    @property
    def extra(self) -> torch.Tensor:
        return self.buffer[self.numel:]

    def overlap(self, comm: Comm, bucket_elems: int = 1 << 18) -> None:
        """Sum gradients in buckets of about ``bucket_elems`` values while backward runs."""
        if comm.world_size == 1 or self._comm is not None:
            return
        self._comm = comm
        starts = [0]
        for p in self.params:
            starts.append(starts[-1] + p.numel())
        self._bucket_of = [0] * len(self.params)
        hi, count = self.numel, 0
        for i in reversed(range(len(self.params))):  # backward meets the last layers first
            self._bucket_of[i] = len(self._buckets)
            count += 1
            if hi - starts[i] >= bucket_elems or i == 0:
                self._buckets.append((starts[i], hi, count))
                hi, count = starts[i], 0
        for i, p in enumerate(self.params):
            p.register_post_accumulate_grad_hook(lambda _p, i=i: self._ready(i))
        self._left = [n for _, _, n in self._buckets]

    def _ready(self, i: int) -> None:
        b = self._bucket_of[i]
        self._left[b] -= 1
        if self._left[b] == 0 and self._comm is not None:
            lo, hi, _ = self._buckets[b]
            self._pending[b] = self._comm.all_reduce_async(self.buffer[lo:hi])

    def zero_(self) -> None:
        self.buffer.zero_()
        self._attach()
        self._left = [n for _, _, n in self._buckets]
        self._pending = {}

    def all_reduce_(self, comm: Comm) -> None:
        if self._comm is None:
            comm.all_reduce_(self.buffer)
            return
        for b in range(len(self._buckets)):  # the same order on every rank
            if b in self._pending:
                self._pending.pop(b).wait()
            else:
                lo, hi, _ = self._buckets[b]
                comm.all_reduce_(self.buffer[lo:hi])
        comm.all_reduce_(self.extra)
        self._left = [n for _, _, n in self._buckets]  # hooks of a later backward start afresh
