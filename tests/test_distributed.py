"""Process-group set-up, the differentiable all-to-all and the sharded embedding exchange.

The two-rank checks run in real processes (``mpiexec -n 2`` over gloo); ``tests/_dist_worker.py``
compares every plan's forward, backward and sparse update with a single-process reference.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from conftest import run_mpi
from hpcdlrm.env import RankInfo
from hpcdlrm.errors import ConfigError, DistributedError
from hpcdlrm.train import distributed

WORKER = str(Path(__file__).with_name("_dist_worker.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("ranks,backend", [(2, "gloo"), (2, "auto"), (4, "auto")])  # auto = mpi under mpiexec
def test_real_ranks_all_to_all_and_every_plan_match_one_process(ranks: int, backend: str) -> None:
    # 4 ranks: the vertical plan's 2-piece tables, each on 2 of the 4 ranks (ids to those 2 only)
    out = run_mpi(ranks, [WORKER, backend], timeout=120).stdout
    ok = re.findall(r"OK (.+?) rank (\d)", out)  # the ranks' lines may interleave in the merged stdout
    # collectives + all_to_all + 11 plan checks (vertical and bf16 exchanges among them), on each rank
    assert len(ok) == 13 * ranks, out
    assert sorted(r for _, r in ok) == [str(q) for q in range(ranks) for _ in range(13)]
    assert f"OK collectives {'mpi' if backend == 'auto' else backend} rank 1" in out
    assert sum(c.startswith("plan vertical") and c.endswith("(vertical)") for c, _ in ok) == 4 * ranks


@pytest.mark.mpi
def test_vertical_plan_with_a_rank_that_holds_no_piece() -> None:
    # 5 ranks, 2 big tables: 2 pieces each on ranks 0-3; rank 4 still joins every exchange and the
    # full-row sums of row-wise Adagrad (or its peers would wait for it forever)
    out = run_mpi(5, [WORKER, "auto", "vertical"], timeout=120).stdout
    ok = re.findall(r"OK plan vertical .*? threshold (\d+) .*?\(vertical\) rank (\d)", out)
    assert sorted(ok) == sorted((t, str(r)) for t in ("6", "45") for r in range(5)), out


@pytest.mark.mpi
def test_mpi_exchange_is_not_slowed_by_its_polling() -> None:
    out = run_mpi(2, [WORKER, "mpi", "speed"], timeout=120).stdout
    assert len(re.findall(r"OK exchange speed", out)) == 2, out


def test_one_rank_comm_is_the_identity() -> None:
    comm = distributed.init(RankInfo(), backend="gloo")
    x = torch.arange(6.0, requires_grad=True)
    y = distributed.all_to_all(comm, x, [6], [6])
    assert y is x
    assert comm.all_gather_ints([3, 4]) == [[3, 4]]
    assert torch.equal(comm.all_gather_varlen(torch.tensor([1, 2])), torch.tensor([1, 2]))
    t = torch.ones(3)
    assert comm.all_reduce_(t) is t and t.tolist() == [1, 1, 1]
    comm.close()


def test_backend_resolution_names_what_is_missing() -> None:
    assert distributed.resolve_backend("gloo") == "gloo"
    assert distributed.resolve_backend("auto") in ("gloo", "ccl")
    # auto picks MPI only when an MPI launcher started ranks that mpi4py sees: a lone process sees 1.
    two = RankInfo(rank=0, world_size=2, launcher="mpi")
    assert distributed.resolve_backend("auto", two) in ("gloo", "ccl")
    assert distributed.resolve_backend("auto", RankInfo(world_size=2, launcher="torchrun")) in ("gloo", "ccl")
    with pytest.raises(DistributedError, match="srun --mpi=pmi2"):
        distributed.resolve_backend("mpi", two)
    try:
        import oneccl_bindings_for_pytorch  # noqa: F401
    except ImportError:
        with pytest.raises(DistributedError, match="oneccl_bindings_for_pytorch"):
            distributed.resolve_backend("ccl")
    with pytest.raises(ConfigError, match="--backend"):
        distributed.resolve_backend("nccl")


def test_mpi_launcher_without_master_and_without_peers_is_a_clear_error() -> None:
    info = RankInfo(rank=0, world_size=2, launcher="mpi", master_addr=None, master_port=None)
    with pytest.raises(DistributedError, match="MASTER_ADDR"):
        distributed.agree_master(info)
    assert distributed.agree_master(RankInfo(world_size=2, master_addr="n1", master_port=1234)) == ("n1", 1234)


def test_flat_grads_share_one_buffer_and_survive_set_to_none() -> None:
    lin = torch.nn.Linear(3, 2)
    flat = distributed.FlatGrads(list(lin.parameters()), extra=2)
    assert flat.buffer.numel() == 10 and flat.extra.numel() == 2  # 6 weights + 2 biases + 2 extra
    lin(torch.ones(4, 3)).sum().backward()
    assert torch.equal(flat.buffer[6:8], torch.full((2,), 4.0))  # bias grad: 4 rows of ones
    assert flat.buffer[:6].abs().sum() > 0
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    opt.zero_grad(set_to_none=True)
    flat.zero_()
    lin(torch.ones(1, 3)).sum().backward()
    assert lin.bias.grad is not None and lin.bias.grad.data_ptr() == flat.buffer[6:].data_ptr()
    assert flat.buffer[6:8].tolist() == [1.0, 1.0]


class RecordingComm(distributed.Comm):
    """Two 'ranks' that record which buffer slices are summed, and when (no peers: the sum is x2)."""

    def __init__(self) -> None:
        super().__init__(rank=0, world_size=2)
        self.calls: list[tuple[str, int, int]] = []

    def _span(self, t: torch.Tensor, buf: torch.Tensor) -> tuple[int, int]:
        lo = (t.data_ptr() - buf.data_ptr()) // t.element_size()
        return lo, lo + t.numel()

    def all_reduce_async(self, t: torch.Tensor, op: str = "sum", _sync: bool = False) -> distributed.Pending:
        self.calls.append(("async" if not _sync else "sync", *self._span(t, self.buf)))
        t.mul_(2)
        return distributed.Pending(lambda: t)

    def all_reduce_(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        return self.all_reduce_async(t, op, _sync=True).wait()


def test_bucketed_grads_are_summed_during_backward_last_layer_first() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                                torch.nn.ReLU(), torch.nn.Linear(64, 1))
    flat = distributed.FlatGrads(list(model.parameters()), extra=3)
    comm = RecordingComm()
    comm.buf = flat.buffer
    flat.overlap(comm, bucket_elems=64 * 64)
    for _ in range(2):  # the hooks start afresh every step
        flat.zero_()
        comm.calls.clear()
        model(torch.randn(8, 4)).sum().backward()
        during = list(comm.calls)
        want = flat.buffer.clone()
        flat.all_reduce_(comm)
        # Buckets cover the parameters back to front, each summed once as soon as its grads were in.
        assert [c[0] for c in during] == ["async"] * len(during) and len(during) == len(flat._buckets) >= 2
        assert during[0][2] == flat.numel and during[-1][1] == 0
        assert all(a[1] == b[2] for a, b in zip(during, during[1:]))  # contiguous, descending
        assert comm.calls[len(during):] == [("sync", flat.numel, flat.numel + 3)]  # then the extra slots
        assert torch.equal(flat.buffer, want)  # each value summed exactly once (x2 here, applied in flight)


@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["mpi", "gloo"])
def test_one_rank_failing_mid_training_ends_the_job_with_its_reason(backend: str, tmp_path: Path) -> None:
    # Over MPI the peer would wait in the step's collective forever (MPI has no timeout): the failing
    # rank says why in one line and aborts the job; over gloo the peer's collective fails at once.
    import json
    import subprocess
    import sys

    from conftest import mpiexec
    from hpcdlrm.data.synth import ClickModelConfig, generate

    data, out = tmp_path / "data", tmp_path / "run"
    generate(data, 4096, eval_rows=1024, seed=2, model=ClickModelConfig(table_sizes=(40, 3000) * 13))
    worker = str(Path(__file__).with_name("_fail_worker.py"))
    proc = subprocess.run([mpiexec(), "-n", "2", sys.executable, worker, str(data), str(out), backend],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    if backend == "mpi":
        assert "rank 1: RuntimeError: rank 1 failing on purpose at step 3" in proc.stderr, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "failed" and result["error"], result


def test_leave_keeps_the_exit_status_and_flushed_output_after_a_torch_group() -> None:
    # After a gloo group the trainer's command line leaves without interpreter teardown (see leave()):
    # its output and exit status must survive that.
    import subprocess
    import sys

    code = ("from hpcdlrm.train import distributed as d; d._TORCH_GROUP_CREATED.set(); "
            "print('result line', end=''); d.leave(3)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (3, "result line"), proc
    plain = subprocess.run([sys.executable, "-c", "from hpcdlrm.train import distributed as d; d.leave(4)"],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode == 4, plain


@pytest.mark.mpi
def test_a_refusal_on_every_rank_is_said_once_per_job(tmp_path: Path) -> None:
    # Both ranks refuse the same missing data directory (agreed); the job's stderr carries one line.
    import subprocess
    import sys

    from conftest import mpiexec

    missing, out = tmp_path / "no-such-data", tmp_path / "run"
    proc = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-m", "hpcdlrm.train", "--data", str(missing),
                           "--out", str(out), "--backend", "mpi"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # Counted in the text: mpiexec may join two ranks' lines into one.
    assert proc.stderr.count("error: ") == 1 and f"error: {missing}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (out / "result.json").exists()
