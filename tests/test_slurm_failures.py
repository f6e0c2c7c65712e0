"""Failure paths of a sweep on the real cluster of ``tests/slurm/cluster.sh`` (nodes n1, n2, partition xeon).

- ``scancel`` of a running trial: recorded ``failed`` with "cancelled: Slurm job N CANCELLED by uid 0",
  told to the optimizer as a penalty, never resubmitted; the sweep still spends its budget on others.
- ``scancel`` of the driver job (``slurm/tune.sh``), then the same ``sbatch`` again: the sweep resumes,
  finished trials are kept as they were, trials still in Slurm are re-attached, the budget holds.
- A trial killed by its Slurm time limit: recorded ``timeout`` (not failed, not requeued by submitit),
  with its partial curve and a reason naming Slurm's TIMEOUT.

Trials run the surrogate trainer (``--entry hpcdlrm.sweep.surrogate:run``: real 2-node Slurm jobs through
submitit, writing metrics.jsonl/result.json like the train, at almost no CPU). Slurm enforces a time
limit only to the minute and checks it every 30 s, so the time-limit sweep starts first, in the
background, and the other tests run while it waits.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent / "slurm"))
from slurmtest import SLURM_SCRIPTS, job_env, job_field, run, sbatch, tail, wait_job, wait_until  # noqa: E402

from hpcdlrm.errors import ConfigError  # noqa: E402
from hpcdlrm.sweep.__main__ import SURROGATE_ENTRY  # noqa: E402
from hpcdlrm.sweep.config import SweepConfig  # noqa: E402
from hpcdlrm.sweep.executors import JobState, _merge, parse_sacct  # noqa: E402
from hpcdlrm.sweep.objective import FAIL_FACTOR  # noqa: E402
from hpcdlrm.sweep.records import SweepData  # noqa: E402
from hpcdlrm.sweep.store import Store, load_sweep  # noqa: E402

Background = tuple[subprocess.Popen, Path, Path]  # a driver process, its sweep dir, its output
DONE_OK = ("completed", "reached_target", "capped", "timeout")
LIMIT_S = SweepConfig(time_min=1.0).limit_s  # the trials' training limit for --time 1


def sweep_args(budget: int, parallel: int, *train: str) -> list[str]:
    """Options for 2-node surrogate trials with a 1-minute job limit (train flags after --). No trial can
    reach the target AUC: each trains its whole limit (30 simulated s), whatever the search space (so the
    target rule, which would stop them early, is off)."""
    return ["--nodes", "2", "--tasks-per-node", "1", "--time", "1", "--budget", str(budget), "--parallel",
            str(parallel), "--target-auc", "0.9999", "--entry", SURROGATE_ENTRY, "--poll", "0.5", "--no-report",
            "--no-target-stopping", "--", *train]


def stored(out: Path) -> SweepData | None:
    """The store as the driver left it so far (None before the driver created it)."""
    try:
        return load_sweep(out)
    except ConfigError:
        return None


def requeues(out: Path, trial_id: int) -> int:
    with Store(out, readonly=True) as st:
        return st.requeues(trial_id)


def submissions(data: SweepData) -> list[Path]:
    """Every job submitit submitted for the sweep's trials (a resubmission adds one)."""
    return sorted(p for t in data.trials for p in (Path(str(t.run_dir)).parent / "submitit").glob("*_submitted.pkl"))


def cancel_leftovers(out: Path) -> None:
    """A failed test must not leave trial jobs holding the shared cluster."""
    data = stored(out)
    ids = [t.slurm_job_id for t in data.trials if t.slurm_job_id] if data else []
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


# ------------------------------------------------------------------------------ started before the others
@pytest.fixture(scope="module", autouse=True)
def time_limited_sweep(request: pytest.FixtureRequest,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background | None]:
    """One trial whose training outlives its 1-minute job: the surrogate's ``--ignore-max-time`` trains past
    the driver's limit (30 s), so only Slurm's time limit ends it (~60-90 s after it starts). Started only when
    its test is selected and not skipped (no cluster)."""
    wanted = [i for i in request.session.items if i.name == test_a_trial_killed_by_its_slurm_time_limit.__name__]
    if not wanted or any(i.get_closest_marker("skip") for i in wanted):
        yield None
        return
    base = tmp_path_factory.mktemp("time-limit")
    out, log = base / "sweep", base / "driver.out"
    cmd = [sys.executable, "-m", "hpcdlrm.sweep", "--out", str(out), "--partition", "xeon",
           *sweep_args(1, 1, "--speed", "1", "--ignore-max-time")]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=job_env())
    yield proc, out, log
    stop(proc)
    cancel_leftovers(out)


# ------------------------------------------------------------------------------ 1. scancel of a trial
@pytest.mark.slurm
@pytest.mark.slow
def test_scancel_of_a_trial_is_recorded_penalised_and_not_requeued(tmp_path: Path) -> None:
    out, log = tmp_path / "sweep", tmp_path / "driver.out"
    cmd = [sys.executable, "-m", "hpcdlrm.sweep", "--out", str(out), "--partition", "xeon",
           *sweep_args(3, 2, "--speed", "3")]  # trials run 10 s
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=job_env())
    try:
        victim: list[tuple[int, str]] = []

        def running_with_curve() -> bool:  # a trial that started and has evaluations in the store
            data = stored(out)
            for t in data.trials if data else []:
                if t.status == "running" and t.slurm_job_id and any(
                        m.trial_id == t.id and m.name == "auc" for m in data.metrics):
                    victim.append((t.id, t.slurm_job_id))
                    return True
            return False

        wait_until(running_with_curve, 120, "a running trial with evaluations")
        tid, job = victim[0]
        run(["scancel", job])
        proc.wait(180)
    finally:
        stop(proc)
        cancel_leftovers(out)
    assert proc.returncode == 0, tail(log)
    data = load_sweep(out)
    assert len(data.trials) == 3, tail(log)  # the budget: the cancelled trial counts, two others ran
    t = data.trials[tid - 1]
    assert t.status == "failed", (t.status, t.reason, tail(log))
    assert t.reason is not None and t.reason.startswith(f"cancelled: Slurm job {job} CANCELLED by uid 0"), t.reason
    assert t.job_id == job and requeues(out, tid) == 0  # not resubmitted as if preempted
    assert t.objective == pytest.approx(FAIL_FACTOR * LIMIT_S)  # told to the optimizer as a penalty
    assert any(m.trial_id == tid and m.name == "auc" for m in data.metrics)  # its partial curve is kept
    assert f"trial {tid}: failed (cancelled: Slurm job {job}" in log.read_text()
    others = [o for o in data.trials if o.id != tid]
    assert all(o.status in DONE_OK for o in others), [(o.status, o.reason) for o in others]
    assert len(submissions(data)) == 3  # one Slurm job per trial: nothing ran twice
    assert job_field(job, "JobState") == "CANCELLED" and job_field(job, "Restarts") == "0"


# ------------------------------------------------------------------------------ 2. scancel of the driver
@pytest.mark.slurm
@pytest.mark.slow
def test_scancel_of_the_driver_then_the_same_sbatch_resumes_the_sweep(tmp_path: Path) -> None:
    out = tmp_path / "sweeps" / "resume-me"  # tune.sh's default --out: sweeps/<job name>
    args = ["-J", "resume-me", "-t", "10", "-o", str(tmp_path / "tune-%j.out"), str(SLURM_SCRIPTS / "tune.sh"),
            *sweep_args(4, 2, "--speed", "3")]
    first = sbatch(args, cwd=tmp_path)
    try:
        def some_done_some_running() -> bool:
            # Trials 1 and 2 start together and train the same limit, so they end within moments of each
            # other: "1 done, 2 running" can be over before the scancel lands (then nothing is in flight).
            # Trials 3 and 4 run for ~10 s after both are done: a window the kill cannot miss.
            data = stored(out)
            ts = data.trials if data else []
            return (sum(t.status in DONE_OK for t in ts) >= 2
                    and any(t.status == "running" and t.job_id for t in ts))

        wait_until(some_done_some_running, 150, "a finished and a running trial")
        run(["scancel", first])
        assert wait_job(first, 60) == "CANCELLED"
        before = load_sweep(out)
        done = {t.id: t for t in before.trials if t.status in DONE_OK}
        in_flight = {t.id: t.job_id for t in before.trials if t.status == "running"}
        assert done and in_flight, [(t.id, t.status) for t in before.trials]

        second = sbatch(args, cwd=tmp_path)  # the very same command
        state = wait_job(second, 180, tmp_path / f"tune-{second}.out")
    finally:
        cancel_leftovers(out)
    log2 = tmp_path / f"tune-{second}.out"
    assert state == "COMPLETED", tail(log2)
    after = load_sweep(out)
    assert len(after.trials) == 4, tail(log2)  # the budget counts the first run's trials
    by_id = {t.id: t for t in after.trials}
    for tid, t in done.items():  # finished before the kill: kept exactly, not rerun
        a = by_id[tid]
        assert (a.status, a.params, a.job_id, a.ended_at, a.objective) == (
            t.status, t.params, t.job_id, t.ended_at, t.objective), tid
    for tid, job in in_flight.items():  # still in Slurm at the kill: re-attached and collected, same job
        assert by_id[tid].job_id == job and by_id[tid].status in DONE_OK, (by_id[tid].status, by_id[tid].reason)
        assert f"trial {tid}: re-attached to slurm job {job}" in log2.read_text()
    assert all(t.status in DONE_OK for t in after.trials), [(t.id, t.status, t.reason) for t in after.trials]
    assert len(submissions(after)) == 4  # one job per trial across both drivers


# ------------------------------------------------------------------------------ 3. Slurm time limit
@pytest.mark.slurm
@pytest.mark.slow
def test_a_trial_killed_by_its_slurm_time_limit(time_limited_sweep: Background | None) -> None:
    """Recorded ``timeout`` with its partial curve, reason naming Slurm's TIMEOUT, not requeued."""
    assert time_limited_sweep is not None
    proc, out, log = time_limited_sweep
    try:
        proc.wait(240)  # started with the module; Slurm kills the trial ~60-90 s into its job
    except subprocess.TimeoutExpired:
        pytest.fail(f"the time-limited sweep did not end\n{tail(log)}")
    assert proc.returncode == 0, tail(log)
    data = load_sweep(out)
    (t,) = data.trials
    assert t.status == "timeout", (t.status, t.reason, tail(log))
    assert t.reason is not None and f"Slurm job {t.slurm_job_id} killed at its time limit: TIMEOUT" in t.reason
    assert job_field(str(t.slurm_job_id), "JobState") == "TIMEOUT"
    assert job_field(str(t.slurm_job_id), "Restarts") == "0"  # submitit did not requeue it on its signal
    assert requeues(out, t.id) == 0 and len(submissions(data)) == 1  # nor did the driver
    curve = [m for m in data.metrics if m.trial_id == t.id and m.name == "auc"]
    assert len(curve) >= 5 and max(m.wall_s for m in curve) > LIMIT_S  # partial, and past --max-time
    assert t.best_auc == pytest.approx(max(m.value for m in curve))
    assert t.objective is not None and t.objective < FAIL_FACTOR * LIMIT_S  # censored, not a failure


# ------------------------------------------------------------------------------ no cluster needed
def test_sacct_lines_name_who_cancelled_and_the_time_limit() -> None:
    got = parse_sacct("85|CANCELLED by 0|0:0|00:00:03|00:01:00\n87|TIMEOUT|0:0|00:01:28|00:01:00\n"
                      "84|FAILED|9:0|00:00:02|00:01:00\n90|RUNNING|0:0|00:00:05|00:01:00\nbad line\n")
    assert got["85"].slurm_state == "CANCELLED" and got["85"].detail.startswith("CANCELLED by uid 0")
    assert got["87"].detail == "TIMEOUT after 00:01:28 (time limit 00:01:00)" and got["87"].state == "ended"
    assert got["84"].detail == "FAILED (exit code 9:0)" and got["90"].state == "running" and len(got) == 4
    # sacct may lag squeue: its detail is used only when both agree the job ended, and how
    seen = JobState("ended", ["n1"], "CANCELLED", "CANCELLED")
    assert _merge(seen, got["85"]) == JobState("ended", ["n1"], got["85"].detail, "CANCELLED")
    assert _merge(seen, got["87"]) is seen and _merge(seen, got["90"]) is seen
    gone = JobState("ended", detail="no longer known to squeue")  # after MinJobAge: sacct still knows
    assert _merge(gone, got["87"]).slurm_state == "TIMEOUT"
