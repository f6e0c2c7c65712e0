"""The CI cluster is a real 2-node Slurm: steps span n1 and n2, MPI (pmi2) and torch gloo work across
them with ranks from hpcdlrm.env.detect(), dead jobs are visible to submitit, nested submission fits.

Needs ``tests/slurm/cluster.sh up`` (conftest skips otherwise; in CI a skip is a failure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "slurm"))
from slurmtest import PMI2_GARBLED, ROOT, assert_completed, job_env, run, run_pmi2, sbatch, tail  # noqa: E402

pytestmark = pytest.mark.slurm
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_srun_step_spans_both_nodes() -> None:
    out = run(["srun", "-N2", "-n2", "-l", "printenv", "SLURMD_NODENAME"], timeout=30).stdout
    by_rank = dict(line.split(": ", 1) for line in out.split("\n") if line.strip())
    assert by_rank == {"0": "n1", "1": "n2"}, out


def test_mpi4py_over_srun_pmi2_spans_both_nodes() -> None:
    code = (
        "import json, os; from mpi4py import MPI; c = MPI.COMM_WORLD; "
        "print(json.dumps({'rank': c.rank, 'size': c.size, 'node': os.environ['SLURMD_NODENAME'], "
        "'sum': c.allreduce(c.rank + 1)}), flush=True)"
    )
    # MPI started the way hpcdlrm starts it under srun --mpi=pmi2 (env.mpi_start_defaults: OFI)
    from hpcdlrm.env import mpi_start_defaults

    out = run_pmi2(["srun", "--mpi=pmi2", "-N2", "-n2", sys.executable, "-c", code], timeout=60,
                   env=job_env(**mpi_start_defaults({"SLURM_MPI_TYPE": "pmi2"}))).stdout
    ranks = sorted(json_lines(out), key=lambda r: r["rank"])
    # Without PMI each rank would be a singleton: two rank-0s of size 1.
    assert [(r["rank"], r["size"], r["node"], r["sum"]) for r in ranks] == [(0, 2, "n1", 3), (1, 2, "n2", 3)], out


def test_torch_gloo_allreduce_with_env_detect_under_srun() -> None:
    script = ROOT / "tests" / "slurm" / "gloo_allreduce.py"
    out = run(["srun", "-N2", "-n2", "--kill-on-bad-exit=1", sys.executable, str(script)], timeout=120).stdout
    ranks = sorted(json_lines(out), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1], out
    for r in ranks:
        assert (r["world_size"], r["launcher"], r["master_addr"]) == (2, "slurm", "n1")
        assert r["hosts"] == ["n1", "n2"] and r["sum"] == 3.0


def test_mpi_backend_collectives_and_every_plan_across_two_nodes() -> None:
    # auto under srun --mpi=pmi2 must pick MPI (the worker asserts it) and every plan must match one process.
    worker = ROOT / "tests" / "_dist_worker.py"
    out = run_pmi2(["srun", "--mpi=pmi2", "-N2", "-n2", "--kill-on-bad-exit=1", sys.executable, str(worker), "auto"],
              timeout=180).stdout
    # 11 plan checks per rank (as in test_distributed), the vertical plan and the bf16 exchange among them
    assert out.count("OK collectives mpi rank") == 2 and out.count("OK plan") == 22, out
    assert out.count("(vertical) rank") == 8 and out.count("a2a torch.bfloat16") == 4, out


def test_training_over_mpi_across_two_nodes_follows_the_gloo_curve(tmp_path: Path) -> None:
    from hpcdlrm.data.synth import ClickModelConfig, generate

    data = tmp_path / "data"
    generate(data, 4096, eval_rows=1024, seed=2, model=ClickModelConfig(table_sizes=(40, 3000) * 13))
    train = [sys.executable, "-m", "hpcdlrm.train", "--data", str(data), "--arch-mlp-bot", "13-16-8",
             "--arch-mlp-top", "16-1", "--emb-dim", "8", "--batch-size", "256", "--eval-batch-size", "1024",
             "--epochs", "1", "--log-every", "2", "--threads", "1"]
    results, curves = {}, {}
    for backend in ("mpi", "gloo"):
        out = tmp_path / backend
        run_pmi2(["srun", "--mpi=pmi2", "-N2", "-n2", "--kill-on-bad-exit=1", *train, "--out", str(out),
             "--backend", backend, "--overlap"], timeout=240)  # overlap: the MPI thread serves two callers
        results[backend] = json.loads((out / "result.json").read_text())
        events = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        curves[backend] = [(e["step"], e["loss"]) for e in events if e["event"] == "train"]
    env = results["mpi"]["env"]
    assert (env["backend"], env["ranks"], env["hosts"], env["launcher"]) == ("mpi", 2, ["n1", "n2"], "slurm")
    assert results["mpi"]["status"] == "completed" and len(curves["mpi"]) >= 6
    assert [s for s, _ in curves["mpi"]] == [s for s, _ in curves["gloo"]]
    worst = max(abs(a - b) / abs(b) for (_, a), (_, b) in zip(curves["mpi"], curves["gloo"]))
    assert worst < 1e-5, f"MPI and gloo loss curves differ by {worst:.2e}"
    assert results["mpi"]["best_auc"] == pytest.approx(results["gloo"]["best_auc"], abs=1e-6)


def test_a_rank_failing_over_mpi_ends_the_step_without_kill_on_bad_exit(tmp_path: Path) -> None:
    # Without --kill-on-bad-exit Slurm leaves the other rank running: over MPI (no timeout) it would wait
    # in the step's collective forever unless the failing rank aborts the job.
    from hpcdlrm.data.synth import ClickModelConfig, generate

    data = tmp_path / "data"
    generate(data, 4096, eval_rows=1024, seed=2, model=ClickModelConfig(table_sizes=(40, 3000) * 13))
    worker = ROOT / "tests" / "_fail_worker.py"
    cmd = ["srun", "--mpi=pmi2", "-N2", "-n2", sys.executable, str(worker), str(data), str(tmp_path / "run"), "mpi"]
    for _ in range(3):  # a start-up that PMI2 garbled (see slurmtest) is tried again
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=job_env())
        if PMI2_GARBLED not in proc.stderr:
            break
    assert proc.returncode != 0 and "rank 1: RuntimeError: rank 1 failing on purpose at step 3" in proc.stderr, \
        proc.stdout + proc.stderr
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "failed"


def test_submitit_notices_a_job_that_died_without_a_result(tmp_path: Path) -> None:
    # submitit learns this from sacct; without working accounting job.result() would hang forever.
    submitit = pytest.importorskip("submitit")
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(slurm_partition="xeon", nodes=1, tasks_per_node=1, timeout_min=2)
    job = executor.submit(os._exit, 3)  # exits before submitit can write a result
    start = time.monotonic()
    while not job.done(force_check=True):
        assert time.monotonic() - start < 60, f"job {job.job_id} still {job.state} after 60 s"
        time.sleep(0.5)
    assert job.state == "FAILED", job.state


def test_driver_plus_two_parallel_two_node_trials_fit(tmp_path: Path) -> None:
    # A 1-CPU driver job holding its CPU while two 2-node x 2-task trials must run at the same time:
    # if the nodes advertised too few CPUs, a sweep driver waiting on its trials would deadlock.
    trial = "sbatch --parsable -N2 --ntasks-per-node=2 -t 2 -o /dev/null --wrap 'srun sleep 30'"
    driver = (
        f"t1=$({trial}); t2=$({trial}); ok=0; "
        "for i in $(seq 120); do "
        '  if [ "$(squeue -h -t R -j $t1,$t2 | wc -l)" = 2 ]; then ok=1; break; fi; sleep 0.25; '
        "done; squeue; scancel $t1 $t2; [ $ok = 1 ] && echo both trials running"
    )
    out = tmp_path / "driver.out"
    job = sbatch(["-N1", "-n1", "-c1", "-t", "2", "-o", str(out), "--wrap", driver], env=job_env())
    assert_completed(job, timeout=60, output=out)
    assert "both trials running" in out.read_text(), tail(out)


@pytest.mark.skipif(os.geteuid() != 0, reason="cluster.sh up needs root")
def test_cluster_up_again_is_a_no_op_and_a_changed_config_is_refused() -> None:
    again = run([str(CLUSTER), "up"], timeout=90).stdout
    assert "up took" in again and "started" not in again and "up (pid" not in again, again
    cpus = str(int(os.environ.get("HPCDLRM_SLURM_CPUS", "8")) + 1)
    changed = subprocess.run([str(CLUSTER), "up"], env={**os.environ, "HPCDLRM_SLURM_CPUS": cpus},
                             capture_output=True, text=True, timeout=90)
    # slurmctld cannot take a new node layout on reconfigure: refuse, and leave the cluster as it was.
    assert changed.returncode == 1 and "another configuration" in changed.stderr, changed.stderr
    assert f"CPUs={cpus}" in changed.stderr  # the diff shows what would have changed
    run([str(CLUSTER), "status"], timeout=30)
