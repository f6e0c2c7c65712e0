"""slurm/{train,preprocess,tune}.sh: their headers, what they launch, and real runs on the CI cluster.

The first group needs no Slurm: the scripts run under bash with a Slurm-like environment and fake
``srun``/``scontrol``/python programs that record how they were called. The ``slurm`` group submits the
scripts to the cluster of ``tests/slurm/cluster.sh`` for real.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "slurm"))
from slurmtest import (  # noqa: E402
    ROOT, SLURM_SCRIPTS, assert_completed, job_env, job_field, run, sbatch, tail, wait_until,
)

SCRIPTS = ("train.sh", "preprocess.sh", "tune.sh")
RECORDER = """#!{python}
# Fake program: record how it was called, optionally wait for a file, exit with $FAKE_RC.
import json, os, sys, time
keep = ("SLURM_", "HPCDLRM_", "OMP_NUM_THREADS", "VIRTUAL_ENV")
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({{"prog": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
                        "env": {{k: v for k, v in os.environ.items() if k.startswith(keep)}}}}) + "\\n")
end = time.monotonic() + 30
while os.environ.get("FAKE_WAIT_FOR") and not os.path.exists(os.environ["FAKE_WAIT_FOR"]) and time.monotonic() < end:
    time.sleep(0.05)
sys.exit(int(os.environ.get("FAKE_RC", "0")))
"""
FAKE_SCONTROL = """#!/bin/sh
case "$1" in
  show) echo "   Command=$FAKE_SUBMITTED --some args" ;;
  requeue) echo "requeue $2" >> "$FAKE_LOG.scontrol" ;;
esac
"""


# ------------------------------------------------------------------------------------------ no Slurm needed
def sbatch_header(text: str) -> list[str]:
    """The #SBATCH options sbatch reads: those before the first command line."""
    opts = []
    for line in text.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        if line.startswith("#SBATCH "):
            opts.append(line.split(None, 1)[1].strip())
    return opts


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_header_defaults_and_documented_knobs(name: str) -> None:
    path = SLURM_SCRIPTS / name
    text = path.read_text()
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert os.access(path, os.X_OK), f"{path} is not executable"
    opts = sbatch_header(text)
    keys = {o.split("=", 1)[0] for o in opts}
    assert {"--job-name", "--partition", "--time", "--output", "--requeue", "--open-mode"} <= keys, opts
    assert "##SBATCH --account=CHANGE_ME" in text  # the placeholder a site fills in
    assert text.count("site set-up: EDIT THIS BLOCK") == 1
    header = text.split("\nset -euo pipefail", 1)[0]
    used = set(re.findall(r"\$\{?(HPCDLRM_[A-Z_]+)", text))  # knobs the script reads
    undocumented = {k for k in used if not re.search(rf"^#\s+{k}\s", header, re.M)}
    assert not undocumented, f"{name}: knobs used but not documented at the top: {undocumented}"
    if name == "tune.sh":  # the driver is small and requeues itself before its time limit
        assert {"--ntasks=1", "--nodes=1", "--signal=B:USR1@300"} <= set(opts)
        assert any(o in ("--cpus-per-task=1", "--cpus-per-task=2") for o in opts), opts
    if name == "train.sh":  # every rank (not only the batch shell) gets the checkpoint signal
        assert any(o.startswith("--signal=USR1@") for o in opts), opts


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, object]:
    """A bin dir with fake srun/scontrol, a fake python, a fake checkout with a venv, and a base env."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    (home / ".venv" / "bin").mkdir(parents=True)
    (home / ".venv" / "bin" / "activate").write_text(f'export VIRTUAL_ENV="{home}/.venv"\n')
    recorder = RECORDER.format(python=sys.executable)
    for path, body in ((bin_dir / "srun", recorder), (bin_dir / "fakepython", recorder),
                       (bin_dir / "scontrol", FAKE_SCONTROL)):
        path.write_text(body)
        path.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "FAKE_LOG": str(log),
        "SLURM_JOB_ID": "42", "SLURM_JOB_NAME": "my-job", "SLURM_SUBMIT_DIR": str(tmp_path),
        "SLURM_JOB_PARTITION": "xeon", "SLURM_JOB_NODELIST": "n[1-3]", "SLURM_TASKS_PER_NODE": "2(x3)",
        "SLURM_CPUS_ON_NODE": "8", "SLURM_NTASKS": "6", "SLURM_CONF": "/etc/slurm/slurm.conf",
    }
    return {"env": env, "log": log, "home": home, "python": str(bin_dir / "fakepython")}


def run_script(fake: dict, name: str, args: list[str], rc: int = 0, **env: str) -> list[dict]:
    full_env = {**fake["env"], "FAKE_SUBMITTED": f"{fake['home']}/slurm/{name}", **env}
    proc = subprocess.run(["bash", str(SLURM_SCRIPTS / name), *args], env=full_env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return [json.loads(line) for line in Path(fake["log"]).read_text().splitlines()]


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_refuse_to_run_outside_a_job(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", str(SLURM_SCRIPTS / name)], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "sbatch slurm/" in proc.stderr, proc.stderr


def test_train_sh_runs_one_rank_per_task_with_a_stable_run_dir(fake: dict) -> None:
    (call,) = run_script(fake, "train.sh", ["--data", "/d", "--lr", "0.1"])
    assert call["prog"] == "srun"
    run_dir = f"{fake['env']['SLURM_SUBMIT_DIR']}/runs/my-job-42"  # job id: stable across requeues
    assert call["argv"] == ["--kill-on-bad-exit=1", "--cpus-per-task=4", "python", "-m", "hpcdlrm.train",
                            "--data", "/d", "--lr", "0.1", "--out", run_dir, "--threads", "4"]
    assert call["env"]["OMP_NUM_THREADS"] == "4"  # 8 CPUs shared by the node's 2 ranks
    assert call["env"]["VIRTUAL_ENV"] == f"{fake['home']}/.venv"  # found from the submitted script path


def test_train_sh_keeps_an_explicit_out_and_thread_count(fake: dict) -> None:
    (call,) = run_script(fake, "train.sh", ["--out=/r", "--data", "/d"], HPCDLRM_THREADS="3",
                         SLURM_CPUS_PER_TASK="2", HPCDLRM_SRUN_MPI="pmix")
    assert call["argv"][:3] == ["--kill-on-bad-exit=1", "--mpi=pmix", "--cpus-per-task=2"]
    assert call["argv"][-5:] == ["--out=/r", "--data", "/d", "--threads", "3"]
    assert call["env"]["OMP_NUM_THREADS"] == "3"
    Path(fake["log"]).unlink()
    (call,) = run_script(fake, "train.sh", ["--threads=1", "--out", "/r"])
    assert call["argv"][-3:] == ["--threads=1", "--out", "/r"]


def test_train_sh_requeues_a_run_stopped_at_a_checkpoint(fake: dict) -> None:
    requeues = Path(f"{fake['log']}.scontrol")
    run_script(fake, "train.sh", ["--data", "/d"], rc=1, FAKE_RC="1")  # a crash is not requeued
    assert not requeues.exists()
    run_script(fake, "train.sh", ["--data", "/d"], rc=4, FAKE_RC="4", HPCDLRM_REQUEUE_ON_TIMEOUT="0")
    assert not requeues.exists()
    run_script(fake, "train.sh", ["--data", "/d"], FAKE_RC="4")  # 4: train checkpointed on SIGUSR1/SIGTERM
    assert requeues.read_text() == "requeue 42\n"


def test_preprocess_sh_starts_mpi_ranks_through_srun(fake: dict) -> None:
    args = ["--format", "kaggle", "--out", "/o", "/in/train.txt"]
    (call,) = run_script(fake, "preprocess.sh", args, SLURM_CPUS_PER_TASK="2")
    assert call["argv"] == ["--kill-on-bad-exit=1", "--mpi=pmi2", "--cpus-per-task=2", "python", "-m",
                            "hpcdlrm.data", "preprocess", *args]
    assert call["env"]["OMP_NUM_THREADS"] == "2"
    Path(fake["log"]).unlink()
    (call,) = run_script(fake, "preprocess.sh", args, HPCDLRM_SRUN_MPI="pmix")
    assert call["argv"][1] == "--mpi=pmix"


def test_tune_sh_defaults_a_stable_sweep_dir_and_hides_the_driver_allocation(fake: dict) -> None:
    (call,) = run_script(fake, "tune.sh", ["--budget", "3"], HPCDLRM_PYTHON=fake["python"],
                         SLURM_CPUS_PER_TASK="1", SLURM_MEM_PER_NODE="4096")
    sweep_dir = f"{fake['env']['SLURM_SUBMIT_DIR']}/sweeps/my-job"  # the job name, not the job id
    assert call["argv"] == ["-m", "hpcdlrm.sweep", "--budget", "3", "--out", sweep_dir, "--partition", "xeon"]
    slurm_vars = {k for k in call["env"] if k.startswith("SLURM_")}
    assert slurm_vars == {"SLURM_CONF"}, slurm_vars
    assert call["env"]["HPCDLRM_DRIVER_JOB_ID"] == "42"


def test_tune_sh_adds_its_defaults_before_the_train_flags(fake: dict) -> None:
    (call,) = run_script(fake, "tune.sh", ["--budget", "3", "--", "--bf16", "--out", "x"],
                         HPCDLRM_PYTHON=fake["python"])
    sweep_dir = f"{fake['env']['SLURM_SUBMIT_DIR']}/sweeps/my-job"
    assert call["argv"] == ["-m", "hpcdlrm.sweep", "--budget", "3", "--out", sweep_dir, "--partition", "xeon",
                            "--", "--bf16", "--out", "x"]


def test_tune_sh_passes_explicit_choices_and_the_exit_code(fake: dict) -> None:
    args = ["--executor", "local", "--out", "/s"]
    (call,) = run_script(fake, "tune.sh", args, rc=7, HPCDLRM_PYTHON=fake["python"], FAKE_RC="7")
    assert call["argv"] == ["-m", "hpcdlrm.sweep", *args]


def test_tune_sh_requeues_itself_on_the_time_limit_signal(fake: dict, tmp_path: Path) -> None:
    release = tmp_path / "release"
    env = {**fake["env"], "FAKE_SUBMITTED": f"{fake['home']}/slurm/tune.sh", "HPCDLRM_PYTHON": fake["python"],
           "FAKE_WAIT_FOR": str(release)}
    proc = subprocess.Popen(["bash", str(SLURM_SCRIPTS / "tune.sh")], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: Path(fake["log"]).exists(), 20, "the fake driver to start")
        proc.send_signal(signal.SIGUSR1)  # what Slurm sends 300 s before the limit (--signal=B:USR1@300)
        wait_until(lambda: Path(f"{fake['log']}.scontrol").exists(), 10, "scontrol requeue")
        assert proc.poll() is None, "the script must keep waiting for its driver after the signal"
        release.touch()
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert Path(f"{fake['log']}.scontrol").read_text() == "requeue 42\n"
    assert proc.returncode == 0 and "requeueing driver job 42" in out, out


# ------------------------------------------------------------------------------------------ the real cluster
@pytest.mark.slurm
@pytest.mark.parametrize("name", SCRIPTS)
def test_sbatch_accepts_the_script_defaults(name: str, tmp_path: Path) -> None:
    proc = subprocess.run(["sbatch", "--test-only", str(SLURM_SCRIPTS / name)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "to start at" in proc.stderr, proc.stderr


@pytest.mark.slurm
def test_tune_sh_requeued_driver_resumes_the_same_sweep_dir(tmp_path: Path) -> None:
    log, fake_python = tmp_path / "driver.jsonl", tmp_path / "fakepython"
    fake_python.write_text(RECORDER.format(python=sys.executable))
    fake_python.chmod(0o755)
    release, out = tmp_path / "release", tmp_path / "tune.out"
    env = job_env(HPCDLRM_PYTHON=str(fake_python), FAKE_LOG=str(log), FAKE_WAIT_FOR=str(release))
    job = sbatch(["-J", "sweep-a", "-t", "10", "-o", str(out), str(SLURM_SCRIPTS / "tune.sh"), "--budget", "2"],
                 env=env, cwd=tmp_path)
    wait_until(lambda: log.exists(), 30, "the driver's first start")
    first_node = job_field(job, "NodeList")
    run(["scancel", "--signal=USR1", "--batch", job])  # as at the time limit: the script requeues itself
    wait_until(lambda: (job_field(job, "Restarts") or "0") != "0", 30, "the requeue")
    # slurmd revokes the first run's credential at the requeue's second and refuses (FAILED, exit 1, no
    # output) a relaunch whose credential is from that same second: its check is `ctime <= revoked`, at
    # 1 s resolution. Slurm's own 120 s hold avoids it; the test, which cuts the hold, waits out the second.
    relaunch_after = int(time.time()) + 2
    wait_until(lambda: job_field(job, "JobState") == "PENDING", 30, "the requeued job to be pending")
    # A requeued job is held for the credential lifetime (120 s), so that it never starts while its first
    # run is still being torn down on its node. The test lets it start at once, so it first waits for that
    # node to hold nothing.
    def node_free() -> bool:
        show = subprocess.run(["scontrol", "show", "node", str(first_node)], capture_output=True, text=True).stdout
        return "CPUAlloc=0" in show and "COMPLETING" not in show
    wait_until(node_free, 60, f"node {first_node} to finish the first run's teardown")

    def started_again() -> bool:
        if len(log.read_text().splitlines()) == 2:
            return True
        if time.time() < relaunch_after:
            return False
        # Re-issued while pending: under load the requeue can set its begin time after our first update.
        if job_field(job, "JobState") == "PENDING":
            run(["scontrol", "update", f"JobId={job}", "StartTime=now"])
            # A relaunch that fails on the node (slurmd slow under load) requeues the job held.
            if "held" in (job_field(job, "Reason") or "").lower():
                run(["scontrol", "release", job])
        return False

    def job_state() -> str:
        show = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
        return f"{show}\n{tail(out)}"

    wait_until(started_again, 120, "the driver's second start", poll=3.0, explain=job_state)
    release.touch()
    assert_completed(job, timeout=30, output=out)
    first, second = (json.loads(line) for line in log.read_text().splitlines())
    expected = ["-m", "hpcdlrm.sweep", "--budget", "2", "--out", f"{tmp_path}/sweeps/sweep-a", "--partition", "xeon"]
    assert first["argv"] == second["argv"] == expected
    assert first["env"]["HPCDLRM_DRIVER_JOB_ID"] == second["env"]["HPCDLRM_DRIVER_JOB_ID"] == job
    assert "requeueing driver job" in out.read_text(), tail(out)


def read_split(directory: Path, split: str) -> np.ndarray:
    """All rows of one split as one float64 matrix (label, dense, sparse), sorted: order-independent."""
    h5py = pytest.importorskip("h5py")
    manifest = json.loads((directory / "manifest.json").read_text())
    parts = []
    for shard in manifest["splits"].get(split, []):
        with h5py.File(directory / shard["path"], "r") as f:
            parts.append(np.column_stack([f["label"][:], f["dense"][:], f["sparse"][:]]).astype(np.float64))
    rows = np.concatenate(parts) if parts else np.zeros((0, 40))
    return rows[np.lexsort(rows.T[::-1])]


def criteo_input(tmp_path: Path) -> Path:
    """The real Kaggle sample beside the checkout, or random rows in the same format."""
    real = ROOT.parent / "shared" / "criteo" / "kaggle_train_sample_4584.txt"
    if real.exists():
        return real
    rng = np.random.default_rng(0)
    n = 3000
    cols = [rng.integers(0, 2, n).astype(str)] + [rng.integers(0, 500, n).astype(str) for _ in range(13)]
    cols += [np.char.mod("%08x", rng.integers(0, 2**32, n, dtype=np.uint64)) for _ in range(26)]
    path = tmp_path / "train.txt"
    path.write_text("\n".join("\t".join(row) for row in zip(*cols)) + "\n")
    return path


@pytest.mark.slurm
def test_preprocess_sh_on_two_nodes_matches_one_process(tmp_path: Path) -> None:
    if not (ROOT / "hpcdlrm" / "data" / "preprocess.py").exists():
        pytest.skip("hpcdlrm/data/preprocess.py not written yet")
    src = criteo_input(tmp_path)
    args = ["--format", "kaggle", "--max-ind-range", "1000"]
    out = tmp_path / "job.out"
    job = sbatch(["-N2", "--ntasks-per-node=1", "-c1", "-t", "5", "-o", str(out), str(SLURM_SCRIPTS / "preprocess.sh"),
                  *args, "--out", str(tmp_path / "two"), str(src)], cwd=tmp_path)
    run([sys.executable, "-m", "hpcdlrm.data", "preprocess", *args, "--out", str(tmp_path / "one"), str(src)],
        timeout=120)
    assert_completed(job, timeout=120, output=out)
    step = run(["sacct", "-n", "-P", "-j", f"{job}.0", "-o", "NTasks,NodeList"]).stdout.split()
    assert step[:1] == ["2|n[1-2]"], f"the preprocessing step ran as {step}, not 2 ranks on n1+n2"
    two, one = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("two", "one"))
    assert two["table_sizes"] == one["table_sizes"] and two["bad_lines"] == one["bad_lines"]
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(read_split(tmp_path / "two", split), read_split(tmp_path / "one", split))


@pytest.mark.slurm
@pytest.mark.slow
def test_train_sh_on_two_nodes(tmp_path: Path) -> None:
    for needed in ("train/__main__.py", "data/loader.py"):
        if not (ROOT / "hpcdlrm" / needed).exists():
            pytest.skip(f"hpcdlrm/{needed} not written yet")
    data, run_dir, out = tmp_path / "data", tmp_path / "run", tmp_path / "train.out"
    # Tiny tables and MLPs: this checks the launch across nodes, not learning (train's own tests do that).
    run([sys.executable, "-m", "hpcdlrm.data", "synth", "--out", str(data), "--rows", "4000",
         "--eval-rows", "1000", "--seed", "1", "--table-sizes", ",".join(["50"] * 26)], timeout=120)
    model = ["--arch-mlp-bot", "13-32-16", "--arch-mlp-top", "64-1", "--emb-dim", "16"]
    job = sbatch(["-N2", "--ntasks-per-node=1", "-t", "5", "-o", str(out), str(SLURM_SCRIPTS / "train.sh"),
                  "--data", str(data), "--out", str(run_dir), "--batch-size", "256", "--max-samples", "4096",
                  *model], env=job_env(HPCDLRM_THREADS="1"), cwd=tmp_path)
    assert_completed(job, timeout=240, output=out)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] in ("completed", "reached_target"), result
    env = result.get("env", {})
    assert sorted(env.get("hosts", [])) == ["n1", "n2"] and env.get("launcher") == "slurm", env
    assert env.get("slurm_job_id") == job and env.get("threads") == 1, env
    assert result["config"]["backend"] == "auto" and env.get("backend") == "gloo", env  # no PMI: gloo


@pytest.mark.slurm
@pytest.mark.slow
def test_tune_sh_runs_parallel_two_node_trials_from_inside_its_job(tmp_path: Path) -> None:
    for needed in ("sweep/__main__.py", "train/__main__.py", "data/loader.py"):
        if not (ROOT / "hpcdlrm" / needed).exists():
            pytest.skip(f"hpcdlrm/{needed} not written yet")
    data, out = tmp_path / "data", tmp_path / "tune.out"
    run([sys.executable, "-m", "hpcdlrm.data", "synth", "--out", str(data), "--rows", "20000",
         "--eval-rows", "2000", "--seed", "1", "--table-sizes", ",".join(["50"] * 26)], timeout=120)
    model = ["--arch-mlp-bot", "13-32-16", "--arch-mlp-top", "64-1", "--emb-dim", "16"]
    job = sbatch(["-J", "e2e", "-t", "20", "-o", str(out), str(SLURM_SCRIPTS / "tune.sh"), "--data", str(data),
                  "--nodes", "2", "--tasks-per-node", "1", "--cpus-per-task", "1", "--time", "3", "--budget", "4",
                  "--parallel", "2", "--", *model, "--max-samples", "16384"], cwd=tmp_path)
    assert_completed(job, timeout=480, output=out)
    status = run([sys.executable, "-m", "hpcdlrm.sweep", "status", str(tmp_path / "sweeps" / "e2e"), "--json"])
    trials = json.loads(status.stdout)["trials"]
    assert len(trials) == 4, trials
    for t in trials:
        assert t["status"] in ("completed", "reached_target", "capped", "timeout"), (t, tail(out))
        assert sorted(t["hosts"]) == ["n1", "n2"], t  # 2 ranks on 2 node names
    from hpcdlrm.sweep.store import load_sweep  # noqa: PLC0415

    sweep = load_sweep(tmp_path / "sweeps" / "e2e")
    for t in sweep.trials:  # every trial's curve was ingested into the store
        assert any(m.trial_id == t.id and m.name == "auc" for m in sweep.metrics), t.id
        assert t.result is not None and t.result["env"]["ranks"] == 2, t.id
    report = tmp_path / "sweeps" / "e2e" / "report"
    for png in ("convergence.png", "history.png", "importance.png", "parallel_coordinates.png"):
        assert (report / png).stat().st_size > 10_000, png
    ids = ",".join(str(t["slurm_job_id"]) for t in trials)
    rows = run(["sacct", "-X", "-n", "-P", "-j", ids, "-o", "NodeList,Start,End"]).stdout.split()
    assert [r.split("|")[0] for r in rows] == ["n[1-2]"] * 4, rows  # each trial spans both nodes
    (_, start1, end1), (_, start2, end2) = (r.split("|") for r in rows[:2])
    assert start1 < end2 and start2 < end1, f"the first two trials did not run at the same time: {rows}"
