"""Checkpoints a multi-rank run can resume from, written so a kill at any moment leaves a usable one.

Layout under ``RUN_DIR/checkpoint/``: ``step-<N>/rank-<r>.pt`` (each rank its own shards, optimizer
states, loader position, RNG) and ``latest.json``, which rank 0 rewrites atomically only after every
rank's file is complete (barrier). A checkpoint exists iff ``latest.json`` names it; older step
directories are removed after the pointer moves.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, DataError
from ..io import atomic_path, read_jsonl, write_json_atomic
from .config import TrainConfig
from .distributed import Comm

CKPT_DIR = "checkpoint"
LATEST = "latest.json"
# Fields that may differ between a checkpoint's run and the resuming one without changing the curve.
MUTABLE_FIELDS = frozenset({"data", "out", "max_time", "threads", "checkpoint_every", "backend", "ipex"})


def latest(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``latest.json`` record of ``run_dir`` or None when it has no checkpoint."""
    path = Path(run_dir) / CKPT_DIR / LATEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: corrupt checkpoint pointer ({e}); delete it to start over") from e


def save(run_dir: str | os.PathLike[str], comm: Comm, step: int, state: dict[str, Any],
         meta: dict[str, Any]) -> Path:
    """Every rank writes its ``state``; rank 0 then publishes ``meta`` as the latest checkpoint."""
    root = Path(run_dir) / CKPT_DIR
    step_dir = root / f"step-{step:09d}"
    step_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(step_dir / f"rank-{comm.rank}.pt") as tmp:
        torch.save(state, tmp)
    comm.barrier()  # every shard is on disk before the pointer names the step
    if comm.is_main:
        write_json_atomic(root / LATEST, {**meta, "step": step, "dir": step_dir.name,
                                          "world_size": comm.world_size})
        for old in root.glob("step-*"):
            if old.is_dir() and old.name != step_dir.name:
                shutil.rmtree(old, ignore_errors=True)
    comm.barrier()
    return step_dir


def load(run_dir: str | os.PathLike[str], comm: Comm) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(meta, this rank's state) of the latest checkpoint, or None. Refuses another world size."""
    meta = latest(run_dir)
    if meta is None:
        return None
    if meta["world_size"] != comm.world_size:
        raise ConfigError(f"{run_dir}: checkpoint at step {meta['step']} was written by {meta['world_size']} "
                          f"ranks, this run has {comm.world_size}; rerun with {meta['world_size']} ranks "
                          "or use a new --out")
    path = Path(run_dir) / CKPT_DIR / meta["dir"] / f"rank-{comm.rank}.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as e:
        raise DataError(f"{path}: cannot read checkpoint shard ({e})") from e
    return meta, state


def check_compatible(saved: dict[str, Any], current: dict[str, Any], where: str) -> None:
    """ConfigError naming the first field whose change would alter the resumed curve. A field the saved
    run did not know yet (written by an older version) counts as its default: that is how it ran."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    for key in sorted(set(saved) | set(current)):
        if key in MUTABLE_FIELDS:
            continue
        was = saved.get(key, defaults.get(key))
        if was != current.get(key):
            raise ConfigError(f"{where}: it was run with {key}={was!r}, now {current.get(key)!r}; "
                              "resume with the same settings or use a new --out")


def check_dataset(saved: dict[str, Any] | None, current: dict[str, Any], where: str, data: str) -> None:
    """DataError when a run is resumed on data other than it was trained on (``Manifest.identity``).
    Same-sized tables would otherwise load silently, and a resumed curve on other data means nothing."""
    if saved is None or saved.get("digest") == current["digest"]:
        return  # None: written before datasets were recorded
    raise DataError(f"{where}: it was trained on another dataset ({saved.get('summary', '?')}) than --data {data} "
                    f"({current['summary']}); resume with its dataset or use a new --out")


def truncate_metrics(path: str | os.PathLike[str], step: int) -> None:
    """Drop events logged after ``step`` (the run went on past its checkpoint before it died)."""
    path = Path(path)
    if not path.exists():
        return
    keep = [e for e in read_jsonl(path) if e.get("step", 0) <= step]
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            for e in keep:
                f.write(json.dumps(e, separators=(",", ":")) + "\n")
