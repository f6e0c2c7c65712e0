"""How a trial ended, decided in one place from what the driver observed: a pure function.

``decide(Observed) -> (Status, reason)``. ``RUNNING``: not ended yet, look again next poll. ``PENDING``:
stopped by a signal after a checkpoint (preemption, node drain) with resubmissions left: submit it again
to resume. Anything else is final. The table, in order (first match wins):

| # | observed | status |
|---|---|---|
| 1 | result pickles written, the run says ``preempted``, the scheduler still has the job (requeued?) | RUNNING |
| 2 | no result pickles, the scheduler still runs (or does not know) the job | RUNNING |
| 3 | no result pickles, the job gone for less than the grace (its files may still land) | RUNNING |
| 4 | no final result, Slurm ``CANCELLED`` (a user's scancel) | FAILED "cancelled: ..." |
| 5 | no final result, Slurm ``TIMEOUT`` (its time is spent) | TIMEOUT "... killed at its time limit ..." |
| 6 | ``preempted`` result, or Slurm ``PREEMPTED``/``NODE_FAIL`` without a final result; resubmissions left | PENDING |
| 7 | the same, no resubmissions left | PREEMPTED "preempted N times ..." |
| 8 | result ``timeout`` with a training limit lowered by capping | CAPPED "adaptive capping: ..." |
| 9 | result ``failed`` | FAILED (the trainer's error, else the job's, else a default) |
| 10 | any other final result (reached_target, completed, timeout, diverged) | its status (reason: the run's) |
| 11 | no result, the job's own error (an exception, a rank's exit code, a Slurm failure state) | FAILED (that error) |
| 12 | nothing at all | LOST "job N ended without a result (...)" |

"Final result" = a ``result.json`` whose status is a run's end (not ``preempted``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..train.result import RunResult, Status
from . import slurm_states

MAX_REQUEUES = 3
RUN_END = (Status.REACHED_TARGET, Status.COMPLETED, Status.TIMEOUT, Status.DIVERGED, Status.FAILED)


@dataclass(frozen=True)
class Observed:
    """Everything the driver saw of one trial's job at one poll."""

    job_id: str
    result: RunResult | None = None  # RUN_DIR/result.json (None: absent or unreadable)
    pickles: bool = False  # every task's submitit result pickle is written
    scheduler: str = "running"  # "pending" | "running" | "ended" | "unknown" (executors.JobState.state)
    slurm_state: str = ""  # CANCELLED, TIMEOUT, PREEMPTED, ... ("" when unknown or not Slurm)
    detail: str = ""  # the scheduler's words for the state (sacct: who cancelled, elapsed vs limit)
    gone_s: float = 0.0  # how long the scheduler has been without the job
    grace_s: float = 60.0
    job_error: str | None = None  # from the pickles (exception, exit code) or a Slurm failure state's log
    requeues: int = 0  # resubmissions so far
    max_time_s: float | None = None  # the training limit this trial was given
    limit_s: float = 0.0  # the sweep's uncapped training limit
    cap_margin: float = 0.2


def decide(o: Observed) -> tuple[Status, str | None]:
    r = o.result
    final = r is not None and r.status in RUN_END
    preempted = r is not None and r.status is Status.PREEMPTED
    if o.pickles:
        if preempted and o.scheduler != "ended":
            return Status.RUNNING, None  # 1
    elif o.scheduler != "ended":
        return Status.RUNNING, None  # 2
    elif o.gone_s < o.grace_s:
        return Status.RUNNING, None  # 3
    if not final and o.slurm_state == "CANCELLED":
        return Status.FAILED, f"cancelled: Slurm job {o.job_id} {o.detail}"  # 4
    if not final and o.slurm_state == "TIMEOUT":
        return Status.TIMEOUT, f"Slurm job {o.job_id} killed at its time limit: {o.detail}; partial curve kept"  # 5
    if preempted or (not final and o.slurm_state in slurm_states.REQUEUE):
        why = (r.reason if preempted and r is not None else None) or f"Slurm job {o.job_id} {o.detail}"
        if o.requeues < MAX_REQUEUES:
            return Status.PENDING, why  # 6
        return Status.PREEMPTED, f"preempted {o.requeues + 1} times, last: {why}"  # 7
    if r is not None and final:
        if r.status is Status.TIMEOUT and o.max_time_s is not None and o.max_time_s < o.limit_s - 1e-6:
            return Status.CAPPED, (f"adaptive capping: given {o.max_time_s:.1f} s (the incumbent's time plus "
                                   f"{o.cap_margin:.0%}) instead of {o.limit_s:.1f} s")  # 8
        if r.status is Status.FAILED:
            return Status.FAILED, r.error or o.job_error or "the run reported status failed"  # 9
        return r.status, None if r.status is Status.REACHED_TARGET else r.reason  # 10
    if o.job_error is not None:
        return Status.FAILED, o.job_error  # 11
    return Status.LOST, f"job {o.job_id} ended without a result ({o.detail or 'process gone'})"  # 12
