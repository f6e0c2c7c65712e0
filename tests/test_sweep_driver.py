"""The asynchronous driver against in-process fake jobs (scripted or threads): the production loop,
store and optimizer, without processes or a scheduler."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hpcdlrm.sweep.config import SweepConfig
from hpcdlrm.train import RunResult, Status, TrainConfig
from hpcdlrm.sweep.driver import Driver
from hpcdlrm.sweep.fakes import InlineBackend, ScriptedBackend
from hpcdlrm.sweep.objective import FAIL_FACTOR, Curve, censored_loss
from hpcdlrm.sweep.optim import Optimizer
from hpcdlrm.sweep.records import SweepInfo
from hpcdlrm.sweep.space import load_space
from hpcdlrm.sweep.store import Store

TARGET = 0.79


class SpyOptimizer(Optimizer):
    """Records the order of asks and tells."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.log: list[tuple[str, Any]] = []

    def ask(self) -> tuple[Any, dict[str, Any]]:
        cand, point = super().ask()
        self.log.append(("ask", point))
        return cand, point

    def tell(self, point: dict[str, Any], loss: float, candidate: Any = None) -> None:
        super().tell(point, loss, candidate)
        self.log.append(("tell" if candidate is not None else "replay", loss))


def make(tmp_path: Path, backend: Any, clock: Any = time.time, **kw: Any) -> Driver:
    space = load_space()
    cfg = SweepConfig(out=str(tmp_path), space=space.to_dict(), target_auc=TARGET, time_min=2.0, poll_s=0.01,
                      **{"budget": 4, "parallel": [2], **kw})
    store = Store(tmp_path)
    if store.sweep_info() is None:
        store.init_sweep(SweepInfo("t", [], cfg.space, cfg.optimizer, cfg.objective, TARGET, 0.0), cfg.to_dict())
    opt = SpyOptimizer(space, "SmallPSO", budget=cfg.budget, num_workers=cfg.num_workers, seed=0)
    return Driver(cfg, space, store, {"": backend}, opt, clock=clock)


def ev(kind: str, wall: float, auc: float | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"event": kind, "step": int(wall * 10), "samples": int(wall * 1000), "wall_s": wall,
                         "loss": 0.5, "samples_per_s": 1000.0}
    if auc is not None:
        e["auc"] = auc
    return e


def reached(t: float) -> dict[str, Any]:
    return {"status": "reached_target", "best_auc": 0.8, "time_to_target_s": t, "samples_per_s": 1000.0,
            "env": {"hosts": ["h1"]}}


def test_a_finished_trial_is_told_and_replaced_without_waiting_for_the_others(tmp_path: Path) -> None:
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=5, parallel=[2])
    d.resume()
    d.fill()
    j1, j2 = be.jobs
    be.emit(j2, ev("train", 1.0), ev("eval", 2.0, 0.7))
    be.emit(j1, ev("eval", 5.0, 0.8))
    be.finish(j1, reached(5.0))
    d.poll()
    d.fill()
    assert [k for k, _ in d.opt.log] == ["ask", "ask", "tell", "ask"]
    assert d.opt.log[2][1] == 5.0  # told its time to target
    assert len(be.jobs) == 3 and set(d.live) == {2, 3}
    t1, t2, t3 = d.store.trials()
    assert t1.params == pytest.approx(load_space().defaults())  # a new sweep tries the defaults first
    assert t1.status == "reached_target" and t1.time_to_target_s == 5.0 and t1.hosts == ["h1"]
    assert t2.status == "running" and [m.value for m in d.store.metrics(2, "auc")] == [0.7]
    assert t3.config is not None and t3.config["max_time"] == pytest.approx(6.0)


def test_loop_keeps_p_in_flight_and_never_waits_for_a_batch(tmp_path: Path) -> None:
    lock, running, peak, spans = threading.Lock(), [0], [0], []

    def train(cfg: TrainConfig) -> RunResult:
        lr = cfg.lr
        t0 = time.monotonic()
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            first = len(spans) == 0
            spans.append([t0, None])
        time.sleep(1.5 if first else 0.1 + 0.1 * (lr > 0.1))  # the first trial is a straggler
        out = Path(cfg.out)
        (out / "metrics.jsonl").write_text('{"event":"eval","step":1,"samples":1,"wall_s":1.0,"auc":0.7}\n')
        result = RunResult(Status.COMPLETED, best_auc=0.7)
        result.write(out)
        with lock:
            running[0] -= 1
            next(s for s in spans if s[0] == t0)[1] = time.monotonic()
        return result

    d = make(tmp_path, InlineBackend(train), budget=10, parallel=[3])
    after_fill: list[tuple[int, int]] = []
    fill = d.fill

    def spy_fill() -> None:
        fill()
        after_fill.append((d.counted(), len(d.live)))

    d.fill = spy_fill  # type: ignore[method-assign]
    summary = d.run()
    assert summary.trials == 10 and summary.by_status == {"completed": 10}
    assert peak[0] <= 3
    # after every fill, 3 trials are in flight unless the budget is spent
    assert all(live == 3 for counted, live in after_fill if counted < 10)
    assert any(live == 3 for _, live in after_fill)
    straggler = spans[0]
    # while the straggler ran, the other two slots kept turning over
    assert sum(straggler[0] < s[0] < straggler[1] for s in spans[1:]) >= 5
    asks = [k for k, _ in d.opt.log]
    assert asks.count("ask") == 10 and asks.count("tell") == 10


def test_failures_are_penalised_recorded_and_bounded(tmp_path: Path) -> None:
    calls = [0]

    def train(cfg: TrainConfig) -> RunResult:
        calls[0] += 1
        raise RuntimeError(f"boom {calls[0]}")

    d = make(tmp_path, InlineBackend(train), budget=20, parallel=[1], max_failures=2)
    summary = d.run()
    assert summary.stopped.startswith("more than --max-failures 2")
    trials = d.store.trials()
    assert len(trials) == 3 and all(t.status == "failed" for t in trials)
    assert "boom 1" in trials[0].reason
    assert trials[0].objective == FAIL_FACTOR * d.cfg.limit_s
    assert [k for k, _ in d.opt.log].count("tell") == 3


def test_diverged_lost_and_failed_results(tmp_path: Path) -> None:
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=3, parallel=[3], max_failures=5)
    d.resume()
    d.fill()
    j1, j2, j3 = be.jobs
    be.emit(j1, ev("eval", 2.0, 0.6))
    be.finish(j1, {"status": "diverged", "reason": "non-finite loss at step 20", "best_auc": 0.6})
    j2.vanish()  # node died: no pickles, no result.json
    be.finish(j3, {"status": "failed", "error": "ValueError: bad shard x.h5"})
    d.cfg.lost_grace_s = 0.0
    d.poll()
    d.poll()
    t1, t2, t3 = d.store.trials()
    assert t1.status == "diverged" and t1.reason == "non-finite loss at step 20" and t1.best_auc == 0.6
    assert t1.objective == FAIL_FACTOR * d.cfg.limit_s
    assert t2.status is Status.LOST and t2.reason.startswith("job ") and t2.objective is None
    assert t3.status is Status.FAILED and t3.reason == "ValueError: bad shard x.h5"
    assert d.failures() == 2  # the lost trial counts towards --max-failures...
    assert [k for k, _ in d.opt.log].count("tell") == 2  # ...but teaches nothing


def test_capping_stops_a_trial_that_passes_the_incumbent_time(tmp_path: Path) -> None:
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=3, parallel=[2], cap_margin=0.2)
    d.resume()
    d.fill()
    j1, j2 = be.jobs
    be.emit(j1, ev("eval", 10.0, 0.8))
    be.finish(j1, reached(10.0))
    be.emit(j2, ev("eval", 5.0, 0.70), ev("train", 11.9))
    d.poll()
    assert d.t_star == 10.0 and 2 in d.live  # 11.9 s is within 10 s + 20 %
    be.emit(j2, ev("eval", 12.5, 0.74))
    d.poll()
    t2 = d.store.trial(2)
    assert t2.status == "capped" and "adaptive capping" in t2.reason and j2.cancelled
    assert t2.objective > 12.5 and [m.value for m in d.store.metrics(2, "auc")] == [0.70, 0.74]
    d.fill()  # the next trial is given the capped time as its limit
    t3 = d.store.trial(3)
    assert t3.max_time_s == pytest.approx(12.0)
    # a trial that timed out at a capped limit is recorded as capped, not as a timeout
    be.finish(be.jobs[2], {"status": "timeout", "best_auc": 0.71, "reason": "--max-time 12.0 s exceeded"})
    d.poll()
    assert d.store.trial(3).status == "capped" and "adaptive capping" in d.store.trial(3).reason


def test_median_stopping_is_opt_in(tmp_path: Path) -> None:
    for median in (False, True):
        out = tmp_path / str(median)
        be = ScriptedBackend()
        d = make(out, be, budget=5, parallel=[4], median_stopping=median, capping=False)
        d.resume()
        d.fill()
        for j, auc in zip(be.jobs[:3], (0.74, 0.75, 0.76)):
            be.emit(j, ev("eval", 10.0, auc - 0.02), ev("eval", 20.0, auc))
            be.finish(j, {"status": "completed", "best_auc": auc})
        be.emit(be.jobs[3], ev("eval", 10.0, 0.60), ev("eval", 40.0, 0.65))
        d.poll()
        t4 = d.store.trial(4)
        if median:
            assert t4.status == "capped" and t4.reason.startswith("median stopping")
        else:
            assert t4.status == "running"


def test_metrics_torn_lines_bad_lines_and_rewrites(tmp_path: Path) -> None:
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=1, parallel=[1])
    d.resume()
    d.fill()
    job = be.jobs[0]
    metrics = job.run_dir / "metrics.jsonl"
    metrics.write_text('{"event":"eval","step":1,"samples":10,"wall_s":1.0,"auc":0.6}\nnot json\n{"event":"eval",')
    d.poll()
    assert [m.value for m in d.store.metrics(1, "auc")] == [0.6]  # bad line skipped, torn line waits
    with open(metrics, "a") as f:
        f.write('"step":2,"samples":20,"wall_s":2.0,"auc":0.65}\n')
    d.poll()
    assert [m.value for m in d.store.metrics(1, "auc")] == [0.6, 0.65]
    # resumed from a checkpoint at step 1: the run rewrote its file and goes on differently
    metrics.write_text('{"event":"eval","step":1,"samples":10,"wall_s":1.0,"auc":0.6}\n'
                       '{"event":"eval","step":2,"samples":20,"wall_s":2.5,"auc":0.66}\n')
    d.poll()
    assert [m.value for m in d.store.metrics(1, "auc")] == [0.6, 0.66]


def test_an_interrupted_run_is_resubmitted_to_resume(tmp_path: Path) -> None:
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=1, parallel=[1])
    d.resume()
    d.fill()
    first = be.jobs[0]
    be.finish(first, {"status": "preempted", "reason": "signal 15: checkpoint at step 40"})
    d.poll()
    assert len(be.jobs) == 2 and be.jobs[1].config == first.config  # same TrainConfig, same RUN_DIR
    t = d.store.trial(1)
    assert t.status == "running" and t.job_id == be.jobs[1].job_id and d.store.requeues(1) == 1
    be.finish(be.jobs[1], reached(30.0))
    d.poll()
    assert d.store.trial(1).status == "reached_target"


def test_resume_replays_finished_trials_and_reattaches_running_ones(tmp_path: Path) -> None:
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=4, parallel=[2])
    d.resume()
    d.fill()
    j1, j2 = be.jobs
    be.emit(j1, ev("eval", 8.0, 0.8))
    be.finish(j1, reached(8.0))
    be.emit(j2, ev("eval", 3.0, 0.7))
    d.poll()
    # a trial stored but never submitted (the driver died in between)
    pending = d.store.new_trial(load_space().defaults(), run_dir=str(tmp_path / "trials/0009/run"))
    d.store.close()

    d2 = make(tmp_path, be, budget=4, parallel=[2])  # a new driver process, a fresh optimizer
    d2.resume()
    assert d2.opt.log == [("replay", 8.0)] and d2.t_star == 8.0
    assert set(d2.live) == {2, pending} and d2.live[2].job is j2
    assert [p.value for p in d2.live[2].points if p.name == "auc"] == [0.7]
    be.emit(j2, ev("eval", 6.0, 0.81))
    be.finish(j2, reached(6.0))
    d2.poll()
    assert d2.store.trial(2).status == "reached_target" and d2.t_star == 6.0
    assert [m.value for m in d2.store.metrics(2, "auc")] == [0.7, 0.81]  # no point ingested twice


def _sleep_forever() -> None:
    time.sleep(120)


def test_cancelling_a_local_trial_leaves_the_driver_output_clean(tmp_path: Path,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    from hpcdlrm.sweep.executors import LocalBackend, Resources  # noqa: PLC0415

    job = LocalBackend().submit(_sleep_forever, tmp_path / "submitit", Resources(time_min=2))
    deadline = time.time() + 30
    while not list((tmp_path / "submitit").glob("*_0_log.out")) and time.time() < deadline:
        time.sleep(0.1)  # the controller is waiting on its task, as while a trial runs
    time.sleep(0.5)
    job.cancel(check=False)
    while not job.done() and time.time() < deadline:
        time.sleep(0.1)
    assert job.done(), "the cancelled local job did not end"
    pid = int(job.job_id)
    while time.time() < deadline:  # the controller itself (its traceback comes as it exits)
        try:
            os.kill(pid, 0)
            if open(f"/proc/{pid}/stat").read().split()[2] == "Z":
                break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.1)
    assert "Traceback" not in capfd.readouterr().err  # the controller's noise went to its own file
    assert (tmp_path / "submitit" / "controller.err").exists()


# ------------------------------------------------------------------ issue 13: nothing half-done
class RefusingBackend(ScriptedBackend):
    """sbatch says no (no controller, a bad partition): submitit raises after writing its files."""

    def submit(self, fn: Any, folder: Path, res: Any) -> Any:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "abc123.pkl").write_bytes(b"submitit's pickle of the refused job")
        raise RuntimeError("sbatch: error: Batch job submission failed\nInvalid partition name specified")


def test_a_refused_submission_leaves_no_trial(tmp_path: Path) -> None:
    from hpcdlrm.sweep.driver import SubmitError

    d = make(tmp_path, RefusingBackend(), budget=2, parallel=[1])
    d.resume()
    with pytest.raises(SubmitError, match="submitting trial 1 failed: Invalid partition name specified"):
        d.fill()
    assert d.store.count() == 0 and not (tmp_path / "trials").exists() and not d.live


def test_a_trials_duration_excludes_the_time_the_driver_was_down(tmp_path: Path) -> None:
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=1, parallel=[1])
    d.resume()
    d.fill()
    d.poll()  # seen running: started
    job = be.jobs[0]
    be.emit(job, ev("eval", 5.0, 0.8))
    be.finish(job, reached(5.0))  # ends while no driver runs
    d.store.close()
    an_hour_later = lambda: time.time() + 3600.0  # noqa: E731 - the driver comes back an hour later
    d2 = make(tmp_path, be, budget=1, parallel=[1], clock=an_hour_later)
    d2.resume()
    d2.poll()
    t = d2.store.trial(1)
    assert t.status is Status.REACHED_TARGET and t.duration_s is not None and 0 <= t.duration_s < 60


def test_a_failed_trial_shows_the_trainers_one_line_error(tmp_path: Path) -> None:
    from hpcdlrm.sweep.status import status_text
    from hpcdlrm.sweep.store import load_sweep

    d = make(tmp_path, InlineBackend(), budget=1, parallel=[1], data=str(tmp_path / "no-such-data"))
    d.run()  # the real trial: hpcdlrm.train.run(cfg) on a dataset that is not there
    t = d.store.trial(1)
    assert t.status is Status.FAILED and t.reason is not None and "no-such-data" in t.reason
    assert "\n" not in t.reason and "Traceback" not in t.reason and not t.reason.startswith("DataError")
    assert t.result is not None and t.result["error"] in t.reason  # stored for the reports too
    assert f"trial 1 failed: {t.reason}" in status_text(load_sweep(tmp_path))


def test_learning_curve_stopping_stops_a_hopeless_trial_with_its_own_reason(tmp_path: Path) -> None:
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=2, parallel=[2], target_stopping=True)
    d.resume()
    d.fill()
    j1, j2 = be.jobs
    be.emit(j1, ev("eval", 10.0, 0.8))
    be.finish(j1, reached(10.0))
    d.poll()  # incumbent: 10 s, cap 12 s
    be.emit(j2, ev("eval", 2.0, 0.70), ev("eval", 4.0, 0.701), ev("eval", 6.0, 0.7012))
    d.poll()
    t = d.store.trial(2)
    assert t.status is Status.CAPPED and t.reason.startswith("learning curve:"), t.reason
    assert j2.cancelled and 2 not in d.live


def test_no_capping_also_turns_learning_curve_stopping_off(tmp_path: Path) -> None:
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=1, parallel=[1], capping=False)
    d.resume()
    d.fill()
    be.emit(be.jobs[0], *(ev("eval", w, 0.6) for w in (10.0, 20.0, 30.0, 60.0, 90.0)))
    d.poll()
    assert d.store.trial(1).status is Status.RUNNING and not be.jobs[0].cancelled


def test_target_rule_stops_a_hopeless_trial_before_any_incumbent_with_its_own_reason(tmp_path: Path) -> None:
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=3, parallel=[2], target_stopping=True)  # a third trial is yet to start
    d.resume()
    d.fill()
    j1, j2 = be.jobs
    assert d.cfg.limit_s < 150.0  # so 0.79 is out of reach below: 0.70 rising 1e-4/s needs ~900 s even at 2x
    be.emit(j1, *(ev("eval", w, 0.70 + 1e-4 * w) for w in (10.0, 20.0, 30.0, 40.0)))
    be.emit(j2, *(ev("eval", w, 0.70 + 2e-3 * w) for w in (10.0, 20.0, 30.0)))  # 0.79 by ~38 s at 2x: kept
    d.poll()
    t = d.store.trial(1)
    assert t.status is Status.CAPPED and t.reason.startswith("target projection:"), t.reason
    assert "after the time limit" in t.reason and j1.cancelled and 1 not in d.live
    assert d.store.trial(2).status is Status.RUNNING and not j2.cancelled
    curve = Curve((10.0, 20.0, 30.0, 40.0), tuple(0.70 + 1e-4 * w for w in (10.0, 20.0, 30.0, 40.0)))
    told = censored_loss(d.cfg.limit_s, curve.best(), curve.rate(), d.cfg.target_auc, d.cfg.limit_s)
    assert t.objective == pytest.approx(told)  # told as a miss that ran to the limit, not one of 40 s


def test_a_trial_whose_lr_decayed_to_0_is_stopped_from_its_own_schedule(tmp_path: Path) -> None:
    """The driver reads the trial's lr schedule from its stored config and the eval steps from its
    metrics: the default point (the first trial) decays to 0 by step 900. A curve that rose to 0.78 and
    went flat after that trains no more: stopped. The same AUCs at steps before 900, with the decay still
    ahead, project (at 1.5x) to 0.79 within the 70 s limit: kept."""
    aucs = (0.75, 0.78, 0.7801, 0.7802)
    for steps, stopped in (((600, 900, 1000, 1100), True), ((300, 400, 500, 600), False)):
        be = ScriptedBackend()
        d = make(tmp_path / str(stopped), be, budget=2, parallel=[1], target_stopping=True)
        d.resume()
        d.fill()
        assert d.live[1].schedule is not None and d.live[1].schedule.end == 900 and d.cfg.limit_s == 70.0
        walls = (30.0, 40.0, 50.0, 60.0)
        be.emit(be.jobs[0], *({**ev("eval", w, a), "step": s} for w, a, s in zip(walls, aucs, steps)))
        d.poll()
        t = d.store.trial(1)
        assert be.jobs[0].cancelled is stopped and t.status is (Status.CAPPED if stopped else Status.RUNNING)
        assert not stopped or t.reason.startswith("lr decayed to 0:"), t.reason
    # --no-schedule-stopping: no frozen rule, and the projection at 1.5x (the schedule unread) reaches 0.79 by
    # 67 s: the frozen trial runs on to its limit
    be = ScriptedBackend()
    d = make(tmp_path / "unread", be, budget=2, parallel=[1], target_stopping=True, schedule_stopping=False)
    d.resume()
    d.fill()
    be.emit(be.jobs[0], *({**ev("eval", w, a), "step": s} for w, a, s in zip(walls, aucs, (600, 900, 1000, 1100))))
    d.poll()
    t = d.store.trial(1)
    assert t.status is Status.RUNNING and not be.jobs[0].cancelled and d.policy.settled_optimism == 1.5


def test_decay_lift_rule_learns_from_the_finished_trials_and_tells_its_stop_as_a_miss_at_the_limit(
        tmp_path: Path) -> None:
    """Five trials of the default schedule (decay from step 450, at 0 by step 900) gained at most 0.005
    over the second half of their decay; a sixth, at 0.765 half-way through its decay, cannot reach 0.79
    even at 1.5x that: stopped ("decay lift"), and told as a miss that ran to the time limit."""
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=7, parallel=[1], target_stopping=True)
    base = load_space().defaults()
    for k in range(1, 7):  # the default schedule with slightly different lrs (the rule reads the schedule)
        d.opt.suggest({**base, "lr": base["lr"] * (1 + 0.01 * k)})
    d.resume()
    d.fill()
    rise = ((300, 0.74), (450, 0.76), (675, 0.765), (900, 0.77), (950, 0.77))
    for k in range(5):
        job = be.jobs[k]
        assert d.live[k + 1].schedule is not None and d.live[k + 1].schedule.end == 900
        be.emit(job, *({**ev("eval", 2.0 + i, a), "step": st} for i, (st, a) in enumerate(rise)))
        be.finish(job, {"status": "completed", "best_auc": 0.77, "samples_per_s": 1000.0})
        d.poll()
        d.fill()
    assert d.lifts.count == 5 and d.store.trial(6).status is Status.RUNNING
    be.emit(be.jobs[5], *({**ev("eval", 2.0 + i, a), "step": st} for i, (st, a) in enumerate(rise[:3])))
    d.poll()
    t = d.store.trial(6)
    assert t.status is Status.CAPPED and t.reason.startswith("decay lift:"), t.reason
    curve = Curve((2.0, 3.0, 4.0), (0.74, 0.76, 0.765))
    assert t.objective == pytest.approx(censored_loss(d.cfg.limit_s, 0.765, curve.rate(), TARGET, d.cfg.limit_s))


def test_target_rule_lets_the_last_trials_run_to_their_limit(tmp_path: Path) -> None:
    """With the whole budget started a stop frees a worker for nothing: a 1-trial sweep's trial runs until
    its limit ends it (a real sweep's --max-time or Slurm time limit)."""
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=1, parallel=[1], target_stopping=True)
    d.resume()
    d.fill()
    be.emit(be.jobs[0], *(ev("eval", w, 0.70 + 1e-4 * w) for w in (10.0, 20.0, 30.0, 40.0)))
    d.poll()
    assert d.store.trial(1).status is Status.RUNNING and not be.jobs[0].cancelled


def test_without_target_stopping_a_hopeless_trial_runs_until_an_incumbent(tmp_path: Path) -> None:
    be = ScriptedBackend()
    d = make(tmp_path, be, budget=2, parallel=[1], target_stopping=False)  # --no-target-stopping
    assert make(tmp_path / "default", ScriptedBackend(), budget=2, parallel=[1]).policy.target_stop  # on by default
    d.resume()
    d.fill()
    be.emit(be.jobs[0], *(ev("eval", w, 0.70 + 1e-4 * w) for w in (10.0, 20.0, 30.0, 40.0)))
    d.poll()
    assert d.store.trial(1).status is Status.RUNNING and not be.jobs[0].cancelled
