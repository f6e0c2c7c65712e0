"""How a trial ended: ``outcome.decide`` over every row of its table (hpcdlrm/sweep/outcome.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpcdlrm.sweep import outcome
from hpcdlrm.sweep.outcome import MAX_REQUEUES, Observed, decide
from hpcdlrm.train.result import RunResult, Status

S = Status


def res(status: Status, **kw: object) -> RunResult:
    return RunResult(status, **kw)  # type: ignore[arg-type]


ENDED = dict(pickles=True, scheduler="ended")
GONE = dict(pickles=False, scheduler="ended", gone_s=61.0, grace_s=60.0)
SLURM_GONE = dict(pickles=False, scheduler="ended", gone_s=0.0, grace_s=0.0)

# (row of the table, observed, expected status, expected reason: exact, a regex, or None)
ROWS = [
    (1, dict(result=res(S.PREEMPTED), pickles=True, scheduler="pending"), S.RUNNING, None),
    (1, dict(result=res(S.PREEMPTED), pickles=True, scheduler="unknown"), S.RUNNING, None),
    (2, dict(pickles=False, scheduler="running"), S.RUNNING, None),
    (2, dict(pickles=False, scheduler="unknown"), S.RUNNING, None),
    (3, dict(pickles=False, scheduler="ended", gone_s=10.0, grace_s=60.0), S.RUNNING, None),
    (4, dict(**SLURM_GONE, slurm_state="CANCELLED", detail="CANCELLED by uid 0 (root)"), S.FAILED,
     "cancelled: Slurm job 7 CANCELLED by uid 0 (root)"),
    (4, dict(result=res(S.PREEMPTED), **ENDED, slurm_state="CANCELLED", detail="CANCELLED by uid 0 (root)"),
     S.FAILED, "cancelled: Slurm job 7 CANCELLED by uid 0 (root)"),
    (5, dict(result=res(S.PREEMPTED), **ENDED, slurm_state="TIMEOUT", detail="TIMEOUT after 00:01:28"),
     S.TIMEOUT, "Slurm job 7 killed at its time limit: TIMEOUT after 00:01:28; partial curve kept"),
    (6, dict(result=res(S.PREEMPTED, reason="signal 15: checkpoint at step 40"), **ENDED), S.PENDING,
     "signal 15: checkpoint at step 40"),
    (6, dict(**SLURM_GONE, slurm_state="PREEMPTED", detail="PREEMPTED"), S.PENDING, "Slurm job 7 PREEMPTED"),
    (6, dict(**SLURM_GONE, slurm_state="NODE_FAIL", detail="NODE_FAIL", requeues=MAX_REQUEUES - 1), S.PENDING,
     "Slurm job 7 NODE_FAIL"),
    (7, dict(result=res(S.PREEMPTED, reason="signal 15"), **ENDED, requeues=MAX_REQUEUES), S.PREEMPTED,
     f"preempted {MAX_REQUEUES + 1} times, last: signal 15"),
    (8, dict(result=res(S.TIMEOUT, reason="--max-time 12.0 s exceeded"), **ENDED, max_time_s=12.0, limit_s=30.0),
     S.CAPPED, r"adaptive capping: given 12\.0 s .* instead of 30\.0 s"),
    (9, dict(result=res(S.FAILED, error="--max-samples: must be a positive number"), **ENDED,
             job_error="x (rank 0, n1)"), S.FAILED, "--max-samples: must be a positive number"),
    (9, dict(result=res(S.FAILED), **ENDED, job_error="RuntimeError: boom"), S.FAILED, "RuntimeError: boom"),
    (9, dict(result=res(S.FAILED), **ENDED), S.FAILED, "the run reported status failed"),
    (10, dict(result=res(S.REACHED_TARGET, reason="ignored"), **ENDED), S.REACHED_TARGET, None),
    (10, dict(result=res(S.COMPLETED), **ENDED), S.COMPLETED, None),
    (10, dict(result=res(S.TIMEOUT, reason="--max-time 30.0 s exceeded"), **ENDED, max_time_s=30.0, limit_s=30.0),
     S.TIMEOUT, "--max-time 30.0 s exceeded"),
    (10, dict(result=res(S.DIVERGED, reason="non-finite loss at step 20"), **ENDED), S.DIVERGED,
     "non-finite loss at step 20"),
    (10, dict(result=res(S.COMPLETED), **SLURM_GONE, slurm_state="CANCELLED"), S.COMPLETED, None),
    (11, dict(**ENDED, job_error="RuntimeError: boom | in rank 0"), S.FAILED, "RuntimeError: boom | in rank 0"),
    (11, dict(**GONE, job_error="Slurm job 7 ended OUT_OF_MEMORY: oom-kill"), S.FAILED,
     "Slurm job 7 ended OUT_OF_MEMORY: oom-kill"),
    (12, dict(**GONE, detail="no longer known to squeue"), S.LOST,
     "job 7 ended without a result (no longer known to squeue)"),
    (12, dict(**GONE), S.LOST, "job 7 ended without a result (process gone)"),
]


@pytest.mark.parametrize("row, seen, status, reason", ROWS, ids=[f"row{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_decide(row: int, seen: dict, status: Status, reason: str | None) -> None:
    got_status, got_reason = decide(Observed(job_id="7", **seen))
    assert got_status is status
    if reason is None or got_reason is None:
        assert got_reason == reason
    else:
        assert got_reason == reason or re.fullmatch(reason, got_reason), got_reason


def test_every_row_of_the_table_is_tested() -> None:
    doc = outcome.__doc__ or ""
    rows = {int(m) for m in re.findall(r"^\| (\d+) \|", doc, re.M)}
    code = {int(m) for m in re.findall(r"# (\d+)$", Path(outcome.__file__).read_text(), re.M)}
    assert rows == code == set(range(1, 13))  # the documented table is the code's
    assert {r[0] for r in ROWS} == rows
    assert {r[2] for r in ROWS} == set(Status)  # it can give every status, and each is tested
