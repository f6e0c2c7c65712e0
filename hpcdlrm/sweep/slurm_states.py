"""Slurm's job state names (squeue %T, sacct State), grouped by what the sweep makes of them: the one
place the executors, :mod:`outcome` and the driver read them from."""

from __future__ import annotations

ENDED = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                   "PREEMPTED", "TIMEOUT", "SPECIAL_EXIT", "REVOKED"})  # the scheduler no longer runs the job
WAITING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"})  # queued, not running
REQUEUE = frozenset({"PREEMPTED", "NODE_FAIL"})  # Slurm took the job away: not the trial's doing, run it again
TRIAL_FAILED = frozenset({"TIMEOUT", "OUT_OF_MEMORY", "FAILED", "DEADLINE"})  # the trial's doing, not the cluster's
