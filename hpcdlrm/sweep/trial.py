"""One trial: the picklable callable every Slurm task runs, and the driver's view of its RUN_DIR.

The trial writes only its own files (``RUN_DIR/metrics.jsonl`` as it goes, ``RUN_DIR/result.json``
at the end); the driver tails the first by byte offset and reads the second when the job ends.
"""

from __future__ import annotations

import contextlib
import json
import math
import logging
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import submitit

from .. import env
from ..errors import HpcDlrmError
from ..train.config import TrainConfig
from ..train.result import RunResult, Status
from .config import TRAIN_ENTRY
from .objective import Curve
from .records import MetricPoint
from .template import resolve_entry

log = logging.getLogger("hpcdlrm.sweep")
METRIC_NAMES = ("loss", "lr", "samples_per_s", "auc", "logloss", "accuracy")
# submitit's warning comes signal_delay_s (<= 90 s here) before the limit, and Slurm sends it up to 30 s
# early: with less time left than this, the signal is the time limit, not a preemption
NEAR_LIMIT_S = 180.0


@dataclass
class TaskEnd:
    """What one task of a trial's job returns (submitit pickles it per task)."""

    rank: int
    host: str
    result: RunResult


class TrialRun(submitit.helpers.Checkpointable):
    """Run ``entry(config, **options)`` on every task of the job (the entry reads its rank layout from
    ``hpcdlrm.env.detect``: a Slurm step, or submitit's local tasks).

    Checkpointable: when Slurm preempts the job with submitit's signal, submitit requeues this same
    callable; the training run resumes from its checkpoint in RUN_DIR (same ``out``). Not at the time
    limit: there the job ends (see :func:`time_limit_is_final`).
    """

    def __init__(self, config: TrainConfig, entry: str = TRAIN_ENTRY, options: dict[str, Any] | None = None) -> None:
        self.config = config
        self.entry = entry
        self.options = dict(options or {})

    def __call__(self) -> TaskEnd:
        info = env.detect()
        with time_limit_is_final(info):
            try:
                result = resolve_entry(self.entry)(self.config, **self.options)
            except HpcDlrmError as e:  # bad data or config: recorded in result.json, as the CLI's exit 2
                result = RunResult(Status.FAILED, error=str(e), rank=info.rank)
        return TaskEnd(info.rank, info.hostname, result)


def slurm_time_left_s(job_id: str) -> float | None:
    """Seconds the Slurm job has left (0 once past its limit, inf when unlimited); None if unknown."""
    try:
        p = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%L"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = p.stdout.strip()
    if p.returncode != 0 or not text:
        return None
    if text in ("INVALID", "UNLIMITED", "NOT_SET"):  # INVALID: the limit has passed
        return 0.0 if text == "INVALID" else float("inf")
    days, _, hms = text.rpartition("-")
    try:
        secs = 0.0
        for part in hms.split(":"):
            secs = secs * 60 + int(part)
        return secs + 86400 * int(days or 0)
    except ValueError:
        return None


@contextlib.contextmanager
def time_limit_is_final(info: env.RankInfo) -> Iterator[None]:
    """A trial that reaches its job's time limit ends there as a timeout, instead of being requeued.

    submitit binds its signal (USR2: ``signal_delay_s`` before the limit, or at preemption where the
    site sets ``PreemptParameters=send_user_signal``) to checkpoint-and-requeue, up to 3 times. But a
    trial's time limit is its budget: once spent, the trial must end with its partial curve, not run
    again. So when the signal comes with the job's time nearly up it is ignored: Slurm's own SIGTERM at
    the limit stops the run at a checkpoint (the train's handler), the job ends TIMEOUT, and the driver
    records ``timeout``. With time left it is a preemption notice and goes to submitit as before.
    """
    job_id, sig = info.job_id, env.preempt_signal()
    if job_id is None or sig is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(sig)

    def handler(signum: int, frame: Any) -> None:
        if info.rank != 0:  # submitit acts on rank 0 only; the others need not ask Slurm
            return
        left = slurm_time_left_s(job_id)
        if left is not None and left <= NEAR_LIMIT_S:
            log.warning("job %s: time-limit signal with %.0f s left: not requeueing; the run stops at the "
                        "limit and the trial ends as a timeout", job_id, left)
            return
        if callable(previous):
            previous(signum, frame)

    signal.signal(sig, handler)
    try:
        yield
    finally:
        signal.signal(sig, previous)


@dataclass
class Progress:
    """What the driver knows about a running trial from its metrics so far."""

    curve: Curve
    last_wall_s: float = 0.0
    samples_per_s: float | None = None


def parse_metrics(lines: list[str], trial_id: int, where: str) -> list[MetricPoint]:
    """Metric points of complete JSON lines; a bad line is logged (file:line) and skipped, because one
    torn or odd line must not stop a sweep of many trials."""
    points: list[MetricPoint] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
            step, samples, wall = int(ev.get("step", 0)), int(ev.get("samples", 0)), float(ev["wall_s"])
        except (ValueError, KeyError, TypeError) as e:
            log.warning("%s: skipping a bad metrics line %.80r (%s)", where, line, e)
            continue
        for name in METRIC_NAMES:
            v = ev.get(name)
            # a non-finite value (NaN from an older trainer, a diverged run) is no measurement
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                points.append(MetricPoint(trial_id, step, samples, wall, name, float(v)))
    return points


@dataclass
class MetricsRead:
    points: list[MetricPoint]
    offset: int  # bytes consumed so far
    sig: bytes  # the last complete line consumed
    reset: bool  # the file was rewritten: ``points`` start from its beginning


def read_new_metrics(run_dir: Path, trial_id: int, offset: int = 0, sig: bytes = b"",
                     upto: int | None = None) -> MetricsRead:
    """Points from the complete lines after byte ``offset`` of metrics.jsonl (up to byte ``upto``).

    A run resumed from a checkpoint rewrites its file without the events after the checkpoint;
    when the bytes before ``offset`` are no longer ``sig``, everything is read again (``reset``).
    """
    path = run_dir / "metrics.jsonl"
    try:
        with open(path, "rb") as f:
            start = max(0, offset - len(sig))
            f.seek(start)
            head = f.read(offset - start)
            reset = head != sig[len(sig) - len(head):] or len(head) != offset - start
            if reset:
                f.seek(0)
                offset = 0
            chunk = f.read() if upto is None else f.read(max(0, upto - offset))
    except FileNotFoundError:
        return MetricsRead([], offset, sig, False)
    end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next poll
    if end == 0:
        return MetricsRead([], offset, b"" if reset else sig, reset)
    lines = chunk[:end].decode("utf-8", errors="replace").splitlines()
    last = chunk[:end - 1].rfind(b"\n") + 1
    points = parse_metrics(lines, trial_id, f"{path} (after byte {offset})")
    return MetricsRead(points, offset + end, chunk[last:end], reset)


def progress_of(points: list[MetricPoint]) -> Progress:
    """The AUC curve, the latest training time and throughput seen in ``points`` (time ordered)."""
    evals = [p for p in points if p.name == "auc"]
    sps = [p.value for p in points if p.name == "samples_per_s"]
    curve = Curve(tuple(p.wall_s for p in evals), tuple(p.value for p in evals), tuple(p.step for p in evals))
    return Progress(curve, max((p.wall_s for p in points), default=0.0), sps[-1] if sps else None)


def read_result(run_dir: Path) -> RunResult | None:
    """RUN_DIR/result.json, or None when absent or unreadable (the run did not finish cleanly)."""
    try:
        return RunResult.read(run_dir)
    except ValueError as e:
        log.warning("%s; treating the trial as having no result", e)
        return None


def tail_text(path: Path, lines: int = 3) -> str:
    """The last non-empty lines of a log file (a failure's reason), '' if none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])
