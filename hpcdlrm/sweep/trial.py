"""One trial: the picklable callable every Slurm task runs, and the driver's view of its RUN_DIR.

The trial writes only its own files (``RUN_DIR/metrics.jsonl`` as it goes, ``RUN_DIR/result.json``
at the end); the driver tails the first by byte offset and reads the second when the job ends.
"""

from __future__ import annotations

import importlib
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import submitit

from .objective import Curve
from .records import MetricPoint

log = logging.getLogger("hpcdlrm.sweep")
TRAIN_ENTRY = "hpcdlrm.train.__main__:main"
METRIC_NAMES = ("loss", "lr", "samples_per_s", "auc", "logloss", "accuracy")


def resolve_entry(entry: str) -> Callable[[list[str]], Any]:
    """``"package.module:function"`` -> the function (a ``main(argv) -> int``)."""
    module, _, func = entry.partition(":")
    if not module or not func:
        raise ValueError(f"entry {entry!r} must look like package.module:function")
    return getattr(importlib.import_module(module), func)


class TrialRun(submitit.helpers.Checkpointable):
    """Run ``entry(argv)`` on every task of the job; rank 0's return value carries the exit code.

    Checkpointable: when Slurm preempts or times the job out, submitit requeues this same callable;
    the training run resumes from its checkpoint in RUN_DIR (same ``--out``).
    """

    def __init__(self, argv: list[str], entry: str = TRAIN_ENTRY) -> None:
        self.argv = list(argv)
        self.entry = entry

    def __call__(self) -> dict[str, Any]:
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            # torchrun-style variables for every rank (hpcdlrm.env reads them first)
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        rc = resolve_entry(self.entry)(list(self.argv))
        return {"rank": env.global_rank, "rc": int(rc or 0), "host": socket.gethostname()}


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
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                points.append(MetricPoint(trial_id, step, samples, wall, name, float(v)))
    return points


@dataclass
class MetricsRead:
    points: list[MetricPoint]
    offset: int  # bytes consumed so far
    sig: bytes  # the last complete line consumed
    reset: bool  # the file was rewritten: ``points`` start from its beginning


def read_new_metrics(run_dir: Path, trial_id: int, offset: int = 0, sig: bytes = b"") -> MetricsRead:
    """Points from the complete lines after byte ``offset`` of metrics.jsonl.

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
            chunk = f.read()
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
    evals = [(p.wall_s, p.value) for p in points if p.name == "auc"]
    sps = [p.value for p in points if p.name == "samples_per_s"]
    return Progress(Curve(tuple(w for w, _ in evals), tuple(a for _, a in evals)),
                    max((p.wall_s for p in points), default=0.0), sps[-1] if sps else None)


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """RUN_DIR/result.json, or None when absent or unreadable (the run did not finish cleanly)."""
    path = run_dir / "result.json"
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable (%s); treating the trial as having no result", path, e)
        return None
    return d if isinstance(d, dict) else None


def tail_text(path: Path, lines: int = 3) -> str:
    """The last non-empty lines of a log file (a failure's reason), '' if none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])
