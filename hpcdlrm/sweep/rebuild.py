"""``python -m hpcdlrm.sweep rebuild SWEEP_DIR``: a lost or damaged ``sweep.sqlite``, rebuilt from files.

Beside the store the driver writes two small files it never reads back in normal operation:
``SWEEP_DIR/sweep.json`` (the sweep's record and config) and ``trials/NNNN/trial.json`` (a trial's point,
TrainConfig, job id and submission, rewritten at each resubmission). With the trials' own files
(metrics.jsonl, result.json, submitit's result pickles) that is everything the store holds: rebuild
inserts every trial as submitted, ingests its metrics, then lets the driver's own resume and polls, in
observe-only mode (nothing is submitted, requeued or stopped), decide how each ended (``outcome.decide``).
Trials the driver ended itself (capped, median-stopped, refused as "not run") are restored as trial.json
records them; trials still running stay ``running``, preempted ones to resubmit ``pending``, and a rerun
of the sweep takes both over. Paths are taken from where the files are now (a moved or copied sweep).
The damaged store is kept beside it (``sweep.sqlite.broken``), never deleted.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError, HpcDlrmError
from ..io import write_json_atomic
from ..train.result import Status
from .config import SweepConfig
from .lock import driver_lock
from .records import SweepInfo, Trial

log = logging.getLogger("hpcdlrm.sweep")
SWEEP_FILE = "sweep.json"
TRIAL_FILE = "trial.json"
TRIAL_KEYS = ("id", "params", "partition", "nodes", "ranks", "executor", "job_id", "slurm_job_id", "submitted_at",
              "started_at", "max_time_s", "run_dir", "config")


def write_sweep_file(sweep_dir: str | Path, info: SweepInfo, config: dict[str, Any]) -> None:
    write_json_atomic(Path(sweep_dir) / SWEEP_FILE, {"info": asdict(info), "config": config})


def write_trial_file(trial: Trial, requeues: int, *, decided: bool = False, metrics_offset: int | None = None) -> None:
    """``decided``: the driver ended this trial itself (capped, stopped, not run); its job ends without a
    result that says so, so the status, reason and time are recorded here (with the metrics read by then)."""
    if trial.run_dir is None:
        return
    d = {k: getattr(trial, k) for k in TRIAL_KEYS}
    if decided:
        d.update(status=trial.status.value, reason=trial.reason, ended_at=trial.ended_at)
        if metrics_offset is not None:
            d["metrics_offset"] = metrics_offset
    Path(trial.run_dir).parent.mkdir(parents=True, exist_ok=True)  # a trial refused before submission has none
    write_json_atomic(Path(trial.run_dir).parent / TRIAL_FILE, {**d, "requeues": requeues})


def _read(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return d


def rebuild(sweep_dir: Path) -> dict[str, int]:
    """Rebuild SWEEP_DIR's store; returns the trials by status. ConfigError (nothing written) when there is
    a usable store already or the files to rebuild from are missing."""
    if not sweep_dir.is_dir():
        raise ConfigError(f"{sweep_dir}: no such directory")
    with driver_lock(sweep_dir):  # a driver running on it would race the rebuilt store
        return _rebuild(sweep_dir)


def _rebuild(sweep_dir: Path) -> dict[str, int]:
    from .store import DB_NAME, Store, load_sweep  # noqa: PLC0415

    db = sweep_dir / DB_NAME
    if db.exists() and db.stat().st_size > 0:
        try:
            load_sweep(sweep_dir)
        except ConfigError:
            pass  # damaged, or no sweep record: rebuild it
        else:
            raise ConfigError(f"{db}: holds a usable sweep; nothing to rebuild (rerun the sweep to resume it)")
    meta = sweep_dir / SWEEP_FILE
    if not meta.exists():
        raise ConfigError(f"{meta}: missing; a store can be rebuilt only for sweeps that wrote it "
                          f"(hpcdlrm with `sweep rebuild`)")
    d = _read(meta)
    info = SweepInfo(**{k: v for k, v in d.get("info", {}).items() if k in {f.name for f in fields(SweepInfo)}})
    cfg = SweepConfig.from_dict(d.get("config", {}))
    cfg.out = str(sweep_dir)  # where it is now (it may have been moved or copied)
    trials = sorted((_here(p, _read(p)) for p in (sweep_dir / "trials").glob(f"*/{TRIAL_FILE}")),
                    key=lambda t: t["id"])
    if db.exists():
        db.rename(db.with_name(DB_NAME + ".broken"))
    with Store(sweep_dir) as store:
        store.init_sweep(info, cfg.to_dict())
        for t in trials:
            _insert(store, t)
        recorded = {int(t["id"]): t for t in trials if t.get("status")}
        _collect(sweep_dir, cfg, store, recorded)
        by: dict[str, int] = {}
        for t in store.trials():
            by[t.status.value] = by.get(t.status.value, 0) + 1
    return by


def _here(path: Path, t: dict[str, Any]) -> dict[str, Any]:
    """A trial's record with its run directory where trial.json is now (the sweep may have moved)."""
    run_dir = str(path.parent / "run")
    config = t.get("config")
    if isinstance(config, dict) and "out" in config:
        config = {**config, "out": run_dir}
    return {**t, "run_dir": run_dir, "config": config}


def _insert(store: Any, t: dict[str, Any]) -> None:
    from .trial import read_new_metrics  # noqa: PLC0415

    row = {k: t.get(k) for k in TRIAL_KEYS if k not in ("id", "params")}
    store.new_trial(t["params"], id=int(t["id"]), **{**row, "status": Status.RUNNING if t.get("job_id")
                                                      else Status.PENDING})
    store.update_trial(int(t["id"]), requeues=int(t.get("requeues", 0)))
    got = read_new_metrics(Path(str(t["run_dir"])), int(t["id"]), upto=t.get("metrics_offset"))
    store.add_metrics(int(t["id"]), got.points, got.offset, got.sig)


def _collect(sweep_dir: Path, cfg: SweepConfig, store: Any, recorded: dict[int, dict[str, Any]]) -> None:
    """The driver's resume and two polls, observing only (it submits, requeues and stops nothing): trials
    whose jobs ended are finished as the driver would, those it ended itself as it recorded."""
    from .driver import Driver  # noqa: PLC0415
    from .executors import make_backend  # noqa: PLC0415
    from .optim import Optimizer  # noqa: PLC0415
    from .space import space_from_dict  # noqa: PLC0415

    try:
        backend = make_backend(cfg.executor)
    except HpcDlrmError as e:
        log.warning("%s; trials stay `running` until the sweep is rerun where its jobs can be asked about", e)
        return
    space = space_from_dict(cfg.space, cfg.space_file or "<stored space>")
    cfg.lost_grace_s = 0.0  # the jobs are long gone or running: no files are still on their way
    cfg.capping = cfg.median_stopping = False  # rebuilding records; it never stops a running trial
    opt = Optimizer(space, cfg.optimizer, budget=int(cfg.budget or 1), num_workers=cfg.num_workers, seed=cfg.seed)
    driver = Driver(cfg, space, store, {p: backend for p in cfg.partitions}, opt, observe_only=True,
                    recorded=recorded)
    driver.resume()
    for _ in range(2):  # the first poll notes ended jobs, the second collects them
        driver.poll()
        time.sleep(0.1)
