"""Kill -9 the driver in the middle of a real local sweep (real trial processes), rerun the same
command: no finished trial is lost or rerun, running trials are re-attached by job id, the budget
holds across the restart, no point runs twice, and status/export read the result. Likewise Ctrl-C,
and a finished sweep extended with a larger --budget."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcdlrm.sweep.__main__ import main
from hpcdlrm.sweep.space import load_space
from hpcdlrm.sweep.store import load_sweep

BUDGET = 4


def command(out: Path, budget: int = BUDGET) -> list[str]:
    # --no-target-stopping: the target rule would end most trials within a second, and these tests stop
    # the driver while two trials run (under load the window closed before the signal: a flaky test)
    return [sys.executable, "-m", "hpcdlrm.sweep", "--out", str(out), "--executor", "local",
            "--entry", "hpcdlrm.sweep.surrogate:run", "--budget", str(budget), "--parallel", "2",
            "--time", "1", "--poll", "0.2", "--no-report", "--no-target-stopping", "--", "--speed", "10"]


def rows(out: Path) -> list[sqlite3.Row]:
    db = out / "sweep.sqlite"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return con.execute("SELECT * FROM trials ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # schema not there yet
        return []
    finally:
        con.close()


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_flags(out: Path) -> list[str]:
    """Each trial's parameters as the train flags they became (what actually ran)."""
    space = load_space()
    return [" ".join(space.to_argv(json.loads(x["params"]))) for x in rows(out)]


def stop_midway(out: Path, sig: int) -> None:
    """Start the sweep and send ``sig`` to its driver once one trial finished and two run."""
    driver = subprocess.Popen(command(out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 200
    try:
        while time.monotonic() < deadline:
            r = rows(out)
            done = [x for x in r if x["status"] not in ("pending", "running")]
            running = [x for x in r if x["status"] == "running" and x["job_id"]]
            if len(done) >= 1 and len(running) == 2:
                break
            assert driver.poll() is None, driver.stderr.read().decode() if driver.stderr else ""
            time.sleep(0.1)
        else:
            pytest.fail("the sweep did not get going in time")
        driver.send_signal(sig)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, dict], str]:
    """A sweep whose driver was SIGKILLed with trials finished and running, then rerun to the end."""
    out = tmp_path_factory.mktemp("resume") / "sweep"
    stop_midway(out, signal.SIGKILL)
    before = {x["id"]: dict(x) for x in rows(out)}
    rerun = subprocess.run(command(out), env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    return out, before, rerun.stderr


def test_sigkill_driver_midway_then_resume(resumed: tuple[Path, dict[int, dict], str]) -> None:
    out, before, log = resumed
    finished_before = {i: x for i, x in before.items() if x["status"] not in ("pending", "running")}
    running_before = {i: x["job_id"] for i, x in before.items() if x["status"] == "running"}
    assert finished_before and len(running_before) == 2
    assert log.count("re-attached to local job") == 2

    data = load_sweep(out)
    assert len(data.trials) == BUDGET  # the budget counts across the restart
    by_id = {t.id: t for t in data.trials}
    for i, x in finished_before.items():  # finished trials kept, not rerun
        t = by_id[i]
        assert (t.status, t.objective, t.ended_at, t.job_id) == (x["status"], x["objective"], x["ended_at"],
                                                                 x["job_id"])
    for i, jid in running_before.items():  # running trials re-attached by job id, then collected
        t = by_id[i]
        assert t.job_id == jid and t.status not in ("pending", "running", "failed"), (t.status, t.reason)
        assert f"trial {i}: submitted" not in log  # not resubmitted
    assert all(t.status not in ("pending", "running") and t.objective is not None for t in data.trials)
    flags = train_flags(out)
    assert len(set(flags)) == len(flags), f"a point ran twice: {flags}"
    for t in data.trials:  # each metrics line stored exactly once, none lost while the driver was dead
        lines = Path(t.run_dir, "metrics.jsonl").read_text().splitlines()
        stored = [m for m in data.metrics if m.trial_id == t.id and m.name == "samples_per_s"]
        if t.status == "capped":  # the driver stopped it (e.g. the target rule): its job may log after the last read
            assert len(stored) <= len(lines)
        else:
            assert len(stored) == len(lines)


def test_status_json_and_export_of_a_finished_sweep(resumed: tuple[Path, dict[int, dict], str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = resumed[0]
    assert main(["status", str(out), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert len(obj["trials"]) == BUDGET
    for t in obj["trials"]:
        assert {"id", "status", "params", "objective", "best_auc", "time_to_target_s", "slurm_job_id",
                "samples_per_s", "hosts", "duration_s"} <= set(t)
        assert t["status"] in ("completed", "reached_target", "capped", "timeout", "failed", "diverged")
        assert t["objective"] is not None and t["duration_s"] > 0
    assert obj["incumbent"]["id"] in {t["id"] for t in obj["trials"]}
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("\n") >= BUDGET + 2 and "incumbent: trial" in text
    # the same command again: nothing left to run (budget spent); it exports the trials
    cmd = command(out)
    again = subprocess.run(cmd[:cmd.index("--")] + ["--export", "csv", "--", "--speed", "10"], env=ENV,
                           capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    assert "submitted" not in again.stderr
    csv_lines = (out / "trials.csv").read_text().splitlines()
    assert csv_lines[0].startswith("id,status,lr,warmup_steps") and len(csv_lines) == BUDGET + 1


def test_rebuild_restores_a_lost_store_from_the_trials_files(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    cmd = command(out)
    cmd[cmd.index("--time") + 1] = "2"  # long enough for the driver to cap a trial itself (its job: cancelled)
    cmd[cmd.index("--"):cmd.index("--")] = ["--target-auc", "0.74"]  # reached early: an incumbent to cap against
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert ": stopped (" in p.stderr, p.stderr  # capping or the learning-curve rule: the driver ended it
    before = load_sweep(out)
    db = out / "sweep.sqlite"
    db.write_bytes(b"")  # emptied (a full disk, a bad copy)
    rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 2 and "rebuild" in rerun.stderr and db.read_bytes() == b""  # refused, untouched
    assert main(["rebuild", str(out)]) == 0
    assert "rebuilt" in capsys.readouterr().out
    after = load_sweep(out)
    assert after.info == before.info
    key = lambda t: (t.id, t.status, t.params, t.reason, t.objective, t.best_auc, t.time_to_target_s,  # noqa: E731
                     t.job_id, t.config, t.max_time_s)
    assert [key(t) for t in after.trials] == [key(t) for t in before.trials]
    assert "capped" in {t.status for t in after.trials} and "lost" not in {t.status for t in after.trials}
    assert sorted((m.trial_id, m.wall_s, m.name, m.value) for m in after.metrics) == \
        sorted((m.trial_id, m.wall_s, m.name, m.value) for m in before.metrics)
    assert (out / "sweep.sqlite.broken").exists()
    assert main(["rebuild", str(out)]) == 2  # a usable store is never replaced
    again = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)  # resumes: budget spent
    assert again.returncode == 0 and "submitted" not in again.stderr, again.stderr


def test_ctrl_c_then_rerun_then_a_larger_budget_repeat_no_point(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    stop_midway(out, signal.SIGINT)
    assert any(x["status"] == "running" for x in rows(out))
    rerun = subprocess.run(command(out), env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    first = train_flags(out)
    assert len(first) == BUDGET and len(set(first)) == BUDGET, first
    more = subprocess.run(command(out, BUDGET + 2), env=ENV, capture_output=True, text=True, timeout=300)
    assert more.returncode == 0, more.stderr
    flags = train_flags(out)
    assert flags[:BUDGET] == first and len(flags) == BUDGET + 2  # the budget counts across runs
    assert len(set(flags)) == len(flags), f"the extension repeated a point: {flags}"
