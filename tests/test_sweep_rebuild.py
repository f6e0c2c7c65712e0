"""`sweep rebuild` against scripted jobs: it only observes (submits, requeues and stops nothing), restores
trials the driver ended itself (capped, not run) as the driver recorded them, and reads a moved sweep
from where it is now."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from hpcdlrm.errors import ConfigError
from hpcdlrm.sweep import executors
from hpcdlrm.sweep.config import SweepConfig
from hpcdlrm.sweep.driver import Driver
from hpcdlrm.sweep.fakes import ScriptedBackend
from hpcdlrm.sweep.optim import Optimizer
from hpcdlrm.sweep.rebuild import rebuild, write_sweep_file
from hpcdlrm.sweep.records import SweepInfo
from hpcdlrm.sweep.space import load_space
from hpcdlrm.sweep.store import Store, load_sweep
from hpcdlrm.sweep.template import TrialTemplate
from hpcdlrm.train import Status

TARGET = 0.79


def make(out: Path, be: ScriptedBackend, **kw: Any) -> Driver:
    space = load_space()
    cfg = SweepConfig(out=str(out), space=space.to_dict(), target_auc=TARGET, time_min=2.0, poll_s=0.01,
                      entry="hpcdlrm.sweep.surrogate:run", **{"budget": 5, "parallel": [2], **kw})
    store = Store(out)
    info = SweepInfo("t", [], cfg.space, cfg.optimizer, cfg.objective, TARGET, 0.0)
    store.init_sweep(info, cfg.to_dict())
    write_sweep_file(out, store.sweep_info(), cfg.to_dict())
    opt = Optimizer(space, "SmallPSO", budget=cfg.budget, num_workers=cfg.num_workers, seed=0)
    return Driver(cfg, space, store, {"": be}, opt)


def ev(kind: str, wall: float, auc: float | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"event": kind, "step": int(wall * 10), "samples": int(wall * 1000), "wall_s": wall,
                         "loss": 0.5, "samples_per_s": 1000.0}
    return {**e, "auc": auc} if auc is not None else e


KEY = ("id", "status", "params", "reason", "objective", "best_auc", "time_to_target_s", "job_id", "max_time_s")


@pytest.fixture
def swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, ScriptedBackend, list[dict], dict]:
    """A sweep with a reached, a capped, a preempted (to resubmit) and a refused trial, its store lost."""
    out = tmp_path / "a" / "sweep"
    be = ScriptedBackend()
    d = make(out, be)
    d.resume()
    d.fill()
    j1, j2 = be.jobs
    be.emit(j1, ev("eval", 10.0, 0.8))
    be.finish(j1, {"status": "reached_target", "best_auc": 0.8, "time_to_target_s": 10.0})
    be.emit(j2, ev("eval", 5.0, 0.70), ev("eval", 12.5, 0.74))
    d.poll()  # trial 1 reached the target in 10 s; trial 2 passed 12 s without: capped
    be.emit(j2, ev("eval", 14.0, 0.75))  # written after the stop: not part of the record
    assert d.store.trial(2).status is Status.CAPPED
    real, calls = TrialTemplate.config, []

    def refuse_once(self: TrialTemplate, point: dict, **kw: Any) -> Any:
        calls.append(point)
        if len(calls) == 1:
            raise ConfigError("--emb-dim: must be positive")
        return real(self, point, **kw)

    monkeypatch.setattr(TrialTemplate, "config", refuse_once)
    d.fill()  # trial 3 is refused ("not run"), trial 4 submitted
    monkeypatch.setattr(TrialTemplate, "config", real)
    assert d.store.trial(3).status is Status.FAILED and d.store.trial(3).reason.startswith("not run")
    j4 = be.jobs[2]
    be.finish(j4, {"status": "preempted", "reason": "signal 15: checkpoint at step 40"})
    d.poll()  # resubmitted; trial 5 keeps running
    assert len(be.jobs) == 5 and be.jobs[4].config == j4.config
    be.finish(be.jobs[4], {"status": "preempted", "reason": "signal 15: checkpoint at step 80"})
    before = [{k: getattr(t, k) for k in KEY} for t in d.store.trials()]
    ended = {t.id: t.ended_at for t in d.store.trials()}
    d.store.close()
    moved = tmp_path / "b" / "sweep"
    shutil.move(str(out), str(moved))  # rebuilt where it is now, not from the original folder
    (moved / "sweep.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (moved / f"sweep.sqlite{suffix}").unlink(missing_ok=True)
    monkeypatch.setattr(executors, "make_backend", lambda kind: be)
    return moved, be, before, ended


def test_rebuild_only_observes_and_restores_what_the_driver_decided(
        swept: tuple[Path, ScriptedBackend, list[dict], dict]) -> None:
    out, be, before, ended = swept
    submitted = len(be.jobs)
    by = rebuild(out)
    assert len(be.jobs) == submitted and not be.jobs[3].cancelled  # nothing submitted, nothing stopped
    after = {t.id: t for t in load_sweep(out).trials}
    for b in before:
        t = after[b["id"]]
        if b["id"] == 4:  # preempted again, resubmissions left: left pending for the sweep's next run
            assert t.status is Status.PENDING and "step 80" in (t.reason or "") and t.job_id == be.jobs[4].job_id
            continue
        assert {k: getattr(t, k) for k in KEY} == b, b["id"]
    assert after[2].status is Status.CAPPED and [m.value for m in load_sweep(out).metrics
                                                 if m.trial_id == 2 and m.name == "auc"] == [0.70, 0.74]
    assert after[3].status is Status.FAILED and after[3].reason == "not run: --emb-dim: must be positive"
    assert (after[2].ended_at, after[3].ended_at) == (ended[2], ended[3])  # when the driver stopped them
    assert after[5].status is Status.RUNNING  # still running: the sweep's next run re-attaches it
    assert by == {"reached_target": 1, "capped": 1, "failed": 1, "pending": 1, "running": 1}
    for t in after.values():
        assert t.run_dir is None or Path(t.run_dir).is_relative_to(out)
        assert t.config is None or Path(t.config["out"]).is_relative_to(out)


def test_rebuild_of_a_missing_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope: no such directory"):
        rebuild(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()
