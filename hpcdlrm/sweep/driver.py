"""The asynchronous sweep loop: keep P trials in flight, tell each result the moment it lands.

Every poll: read new metrics of every running trial (by file offset), stop the ones that adaptive
capping or the median rule condemn, collect the ones whose job ended, then ask the optimizer for as
many new points as there are free slots. The store is written before the optimizer is told, so a
driver killed at any moment resumes from the store alone: finished trials are replayed into a fresh
optimizer, running ones are re-attached by job id, and jobs that vanished are marked lost.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, HpcDlrmError
from ..train.config import TrainConfig
from ..train.result import RunResult, Status
from ..train.schedule import LRSchedule
from . import slurm_states
from .config import SweepConfig
from .executors import Backend, JobLike, JobState, Resources, log_paths, result_pickles
from .objective import Curve, trial_loss
from .optim import Optimizer
from .outcome import Observed, decide
from .policy import (TOLD_AT_LIMIT, DecayLifts, StopPolicy, cap_reason, early_stop_reason, median_reason,
                     trial_limit)
from .rebuild import write_trial_file
from .records import FINISHED, MetricPoint, Trial, incumbent
from .space import Space
from .store import Store
from .template import TrialTemplate
from .trial import TaskEnd, TrialRun, progress_of, read_new_metrics, read_result, tail_text

log = logging.getLogger("hpcdlrm.sweep")
SUBMIT_TRIES = 5  # refused submissions in a row (a QOS limit, a drained partition) before the sweep stops
SUBMIT_BACKOFF_S = (10.0, 300.0)  # wait after the first refusal, doubled after each, up to the second


class SubmitError(HpcDlrmError):
    """The scheduler refused a submission (no controller, a bad partition): nothing was submitted."""


def schedule_of(t: Trial) -> LRSchedule | None:
    """A trial's dense lr schedule (the stopping rules read it), None if unknown."""
    try:
        return TrainConfig.from_dict(t.config).lr_schedules()[0] if t.config else None
    except (ConfigError, TypeError):  # a store written by another version: the rules assume a lift ahead
        return None


@dataclass
class Live:
    """A trial this driver is watching."""

    trial: Trial
    job: JobLike
    partition: str
    candidate: Any = None  # None: asked by an earlier driver (told as not-asked)
    points: list[MetricPoint] = field(default_factory=list)
    ended_at: float | None = None  # when the scheduler was first seen without the job

    @property
    def run_dir(self) -> Path:
        return Path(self.trial.run_dir or ".")

    @functools.cached_property
    def schedule(self) -> LRSchedule | None:
        return schedule_of(self.trial)  # once: the stopping rules read it at every poll

    @property
    def folder(self) -> Path:
        return self.run_dir.parent / "submitit"


@dataclass
class Summary:
    trials: int
    by_status: dict[Status, int]
    incumbent: Trial | None
    stopped: str  # why the loop ended


class Driver:
    def __init__(self, cfg: SweepConfig, space: Space, store: Store, backends: dict[str, Backend],
                 optimizer: Optimizer, *, template: TrialTemplate | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 on_trial_end: Callable[[Trial], None] | None = None,
                 on_poll: Callable[[], None] | None = None, observe_only: bool = False,
                 recorded: dict[int, dict[str, Any]] | None = None) -> None:
        cfg.resolve()
        self.cfg, self.space, self.store, self.backends, self.opt = cfg, space, store, backends, optimizer
        self.template = template or TrialTemplate.build(cfg, space)
        self.started_at = clock()
        self.clock, self.sleep = clock, sleep
        self.on_trial_end = on_trial_end  # e.g. refresh the reports; never allowed to stop the sweep
        self.on_poll = on_poll
        self.policy = StopPolicy(capping=cfg.capping and cfg.objective == "time_to_target",
                                 cap_margin=cfg.cap_margin, median=cfg.median_stopping,
                                 target_stop=cfg.target_stopping)
        if not cfg.schedule_stopping:
            self.policy = self.policy.ignoring_schedule()
        self.live: dict[int, Live] = {}
        self.curves: dict[int, Curve] = {}  # finished trials' AUC curves (median rule)
        self.lifts = DecayLifts()  # ...and what their lr decays gained (the decay-lift rule)
        self.t_star: float | None = None
        self._last_sched = 0.0
        self._states: dict[int, JobState] = {}
        # `sweep rebuild`: records how trials ended, never submits, requeues or stops one
        self.observe_only = observe_only
        self.recorded = recorded or {}  # trial id -> how this driver's predecessor ended it (trial.json)
        self.refusals = 0  # submissions refused in a row
        self.retry_at = 0.0  # no submission before this time (backing off after a refusal)
        self.refused_stop: str | None = None  # why submitting stopped for good
        self.to_resubmit: dict[int, Any] = {}  # preempted trials whose resubmission was refused -> candidate

    # ------------------------------------------------------------------ main loop
    def run(self) -> Summary:
        self.resume()
        while True:
            self.poll()
            if self.failures() > self.cfg.max_failures:
                stopped = f"more than --max-failures {self.cfg.max_failures} failed trials"
                if not self.live:
                    break
            elif self.refused_stop is not None:
                stopped = self.refused_stop
                if not self.live:
                    break
            else:
                self.fill()
                stopped = "budget reached"
                if not self.live and self.counted() >= self.cfg.budget:
                    break
            if self.on_poll is not None:
                self.on_poll()
            self.sleep(self.cfg.poll_s)
        trials = self.store.trials()
        by: dict[Status, int] = {}
        for t in trials:
            by[t.status] = by.get(t.status, 0) + 1
        return Summary(len(trials), by, incumbent(trials, self.cfg.objective), stopped)

    def counted(self) -> int:
        """Trials that used up budget: every stored one, across restarts (lost ones included)."""
        return self.store.count()

    def failures(self) -> int:
        return self.store.failures()

    # ------------------------------------------------------------------ resume
    def resume(self) -> None:
        """Replay finished trials into the optimizer; re-attach or resubmit unfinished ones.
        A new sweep starts from the space's defaults (the known recipe is the first trial)."""
        if self.store.count() == 0:
            self.opt.suggest(self.space.defaults())
        trials = self.store.trials()
        # The optimizer sees every stored result and every point in flight: its next asks continue the
        # search, and never repeat a point (issue 13: a fresh optimizer replayed its seeded asks).
        # A lost trial has no objective: it teaches nothing, but it ran, so it is not asked again either.
        done = [t for t in trials if t.status in FINISHED]
        self.opt.restore([(t.params, t.objective) for t in done],
                         [t.params for t in trials if t.status not in FINISHED])
        for t in trials:
            if t.id in self.recorded and not t.status.finished:  # `rebuild`: ended by this driver's predecessor
                self._apply_recorded(t, self.recorded[t.id])
                continue
            if t.status in FINISHED:
                self._remember(t)
            elif t.job_id:
                live = Live(t, self._backend(t).reattach(t.job_id, Path(t.run_dir or ".").parent / "submitit",
                                                          t.ranks), t.partition or "")
                live.points = self.store.metrics(t.id)
                self.live[t.id] = live
                log.info("trial %d: re-attached to %s job %s", t.id, t.executor, t.job_id)
            elif not self.observe_only:  # observing: a pending trial stays pending
                self._resubmit_pending(t)
        if self.store.trials():
            log.info("resumed: %d trials in the store, %d running, incumbent time %s",
                     len(self.store.trials()), len(self.live), self.t_star)

    def _resubmit_pending(self, t: Trial) -> None:
        """A trial stored but maybe not submitted (driver killed in between): find its job, or submit."""
        if t.run_dir is None:
            self.store.update_trial(t.id, run_dir=str(self._run_dir(t.id)))
            t = self.store.trial(t.id)
        folder = Path(str(t.run_dir)).parent / "submitit"
        found = sorted(folder.glob("*_submitted.pkl")) if folder.exists() else []
        if found:
            job_id = found[-1].name.split("_")[0]
            self.store.update_trial(t.id, status=Status.RUNNING, job_id=job_id,
                                    slurm_job_id=job_id if t.executor == "slurm" else None)
            self.live[t.id] = Live(self.store.trial(t.id), self._backend(t).reattach(job_id, folder, t.ranks),
                                   t.partition or "")
            write_trial_file(self.live[t.id].trial, self.store.requeues(t.id))
            return
        self._submit(t, None)

    def _apply_recorded(self, t: Trial, rec: dict[str, Any]) -> None:
        """A trial this driver's predecessor ended itself (capped, stopped, not run), as it recorded it."""
        status, reason, ended = Status(rec["status"]), rec.get("reason"), rec.get("ended_at")
        if not t.job_id:  # refused before submission
            self._refuse_point(t, None, (reason or "").removeprefix("not run: "), ended_at=ended, record=False)
            return
        lv = Live(t, self._backend(t).reattach(t.job_id, Path(t.run_dir or ".").parent / "submitit", t.ranks),
                  t.partition or "")
        lv.points = self.store.metrics(t.id)
        self.live[t.id] = lv
        result = read_result(lv.run_dir)  # only one written before the stop was decided was seen then
        seen = result is not None and not result.interrupted and ended is not None and \
            (lv.run_dir / "result.json").stat().st_mtime <= ended
        self._finish(lv, status, reason, result=result if seen else None, ended_at=ended)

    def _remember(self, t: Trial) -> None:
        self.curves[t.id] = progress_of(self.store.metrics(t.id, "auc")).curve
        self.lifts.add(self.curves[t.id], schedule_of(t))
        if t.status is Status.REACHED_TARGET and t.time_to_target_s is not None:
            self.t_star = t.time_to_target_s if self.t_star is None else min(self.t_star, t.time_to_target_s)

    def _run_dir(self, trial_id: int) -> Path:
        return Path(self.cfg.out) / "trials" / f"{trial_id:04d}" / "run"

    def _backend(self, t: Trial) -> Backend:
        return self.backends.get(t.partition or "") or next(iter(self.backends.values()))

    # ------------------------------------------------------------------ submit
    def fill(self) -> None:
        """Ask and submit until every partition has its --parallel trials in flight (or the budget is spent)."""
        if self.clock() < self.retry_at or self.refused_stop is not None:
            return
        try:
            self._resubmit_refused()
            self._fill()
        except SubmitError as e:
            self._refused(e)
        else:
            self.refusals = 0

    def _refused(self, e: SubmitError) -> None:
        """A refused submission: fatal before anything ran (nothing to lose: the setup is wrong); later the
        slot stays free and submitting is retried with backoff, until SUBMIT_TRIES refusals in a row."""
        if not self.live and self.store.count() == 0:
            raise e
        self.refusals += 1
        if self.refusals >= SUBMIT_TRIES:
            self.refused_stop = f"the scheduler refused {self.refusals} submissions in a row, last: {e}"
            log.error("%s; no more submissions: running trials are collected, rerun to resume", self.refused_stop)
            return
        wait = min(SUBMIT_BACKOFF_S[1], SUBMIT_BACKOFF_S[0] * 2 ** (self.refusals - 1))
        self.retry_at = self.clock() + wait
        log.warning("%s (%d in a row); retrying in %.0f s", e, self.refusals, wait)

    def _resubmit_refused(self) -> None:
        for tid, cand in list(self.to_resubmit.items()):
            self._submit(self.store.trial(tid), cand, again=True)
            del self.to_resubmit[tid]

    def _fill(self) -> None:
        burst = self.cfg.submit_burst
        for part, slots in zip(self.cfg.partitions, self.cfg.parallel):
            while sum(lv.partition == part for lv in self.live.values()) < slots:
                if self.counted() >= self.cfg.budget or burst == 0:
                    return
                burst -= 1
                cand, point = self.opt.ask()
                trial_id = self.store.new_trial(point, partition=part or None, nodes=self.cfg.nodes,
                                                ranks=self.cfg.nodes * self.cfg.tasks_per_node,
                                                executor=self.cfg.executor)
                self.store.update_trial(trial_id, run_dir=str(self._run_dir(trial_id)))
                self._submit(self.store.trial(trial_id), cand)

    def _submit(self, t: Trial, cand: Any, *, again: bool = False) -> None:
        """Submit a trial; ``again`` resubmits it unchanged (same TrainConfig and RUN_DIR: the run resumes)."""
        run_dir = Path(t.run_dir or ".")
        if again and t.config is not None:
            config = TrainConfig.from_dict(t.config)
        else:
            max_time = trial_limit(self.cfg.limit_s, self.t_star, self.policy)
            try:
                config = self.template.config(t.params, out=str(run_dir), max_time=max_time)
            except ConfigError as e:  # a combination the bounds check could not foresee: never run it
                self._refuse_point(t, cand, str(e))
                return
        res = Resources(self.cfg.nodes, self.cfg.tasks_per_node, int(self.cfg.cpus_per_task or 1),
                        float(self.cfg.time_min or 0), t.partition, signal_delay_s=self.cfg.signal_delay_s,
                        env=(("OMP_NUM_THREADS", str(self.cfg.cpus_per_task)),))
        run_dir.mkdir(parents=True, exist_ok=True)
        if again:  # the last attempt's `preempted` result must not stand for this attempt's (refused: none)
            _set_aside(run_dir / "result.json", self.store.requeues(t.id))
        try:
            job = self._backend(t).submit(TrialRun(config, self.template.entry, self.template.options),
                                          run_dir.parent / "submitit", res)
        except Exception as e:  # noqa: BLE001 - sbatch's refusal, as one line; the trial never existed
            if not again:
                self.store.delete_trial(t.id)
                _discard(run_dir)
            raise SubmitError(f"submitting trial {t.id} failed: {_one_line(e)}") from e
        slurm_id = str(job.job_id) if self.cfg.executor == "slurm" else None
        self.store.update_trial(t.id, status=Status.RUNNING, job_id=str(job.job_id), slurm_job_id=slurm_id,
                                submitted_at=self.clock(), max_time_s=config.max_time, config=config.to_dict())
        self.live[t.id] = Live(self.store.trial(t.id), job, t.partition or "", cand)
        write_trial_file(self.live[t.id].trial, self.store.requeues(t.id))  # what `sweep rebuild` reads
        log.info("trial %d: submitted %s job %s, limit %.0f s: %s", t.id, self.cfg.executor, job.job_id,
                 config.max_time, _short(t.params))

    def _refuse_point(self, t: Trial, cand: Any, why: str, *, ended_at: float | None = None,
                      record: bool = True) -> None:
        loss = trial_loss(self.cfg.objective, Status.FAILED, best_auc=None, time_to_target_s=None, ran_s=None,
                          curve=Curve(), target=self.cfg.target_auc, limit_s=self.cfg.limit_s)
        self.store.update_trial(t.id, status=Status.FAILED, reason=f"not run: {why}", objective=loss,
                                ended_at=self.clock() if ended_at is None else ended_at)
        if record:  # no job, no result: trial.json is all `sweep rebuild` will find of it
            write_trial_file(self.store.trial(t.id), self.store.requeues(t.id), decided=True)
        self.opt.tell(t.params, loss, cand)
        log.warning("trial %d: not run, its point makes a bad train config: %s", t.id, why)

    # ------------------------------------------------------------------ poll
    def poll(self) -> None:
        now = self.clock()
        kinds = {lv.trial.executor for lv in self.live.values()}
        if self.live and ("local" in kinds or now - self._last_sched >= self.cfg.scheduler_poll_s):
            self._refresh_states()
            self._last_sched = now
        for tid in list(self.live):
            lv = self.live[tid]
            self._ingest(lv)
            if self._early_stop(lv):
                continue
            seen = self._observe(lv, now)
            status, reason = decide(seen)
            if status is Status.RUNNING:
                continue
            self._ingest(lv)
            if status is Status.PENDING and self.observe_only:
                self._leave_pending(lv, reason or "preempted")
            elif status is Status.PENDING:
                self._requeue(lv, reason or "preempted")
            else:
                self._finish(lv, status, reason, result=seen.result)

    def _refresh_states(self) -> None:
        by_backend: dict[int, tuple[Backend, dict[str, int]]] = {}
        for tid, lv in self.live.items():
            be = self._backend(lv.trial)
            by_backend.setdefault(id(be), (be, {}))[1][str(lv.job.job_id)] = tid
        for be, ids in by_backend.values():
            states = be.states({jid: self.live[tid].job for jid, tid in ids.items()})
            for jid, st in states.items():
                tid = ids[jid]
                self._states[tid] = st
                lv = self.live[tid]
                if st.state == "running" and lv.trial.started_at is None:
                    self.store.update_trial(tid, started_at=self.clock(), hosts=st.hosts)
                    lv.trial = self.store.trial(tid)

    def _ingest(self, lv: Live) -> None:
        offset, sig = self.store.metrics_position(lv.trial.id)
        got = read_new_metrics(lv.run_dir, lv.trial.id, offset, sig)
        if got.offset != offset or got.reset:
            self.store.add_metrics(lv.trial.id, got.points, got.offset, got.sig, reset=got.reset)
            lv.points = got.points if got.reset else lv.points + got.points

    def _early_stop(self, lv: Live) -> bool:
        prog = progress_of(lv.points)
        if not lv.points or self.observe_only:
            return False
        target = self.cfg.target_auc
        reached = target is not None and prog.curve.first_reaching(target) is not None
        reason = cap_reason(prog.last_wall_s, reached, self.t_star, self.policy)
        if reason is None and not reached:
            peers = [c for tid, c in self.curves.items() if tid != lv.trial.id]
            ref = self.t_star or self.cfg.limit_s
            reason = median_reason(prog.curve, prog.last_wall_s, peers, ref, self.policy)
        if reason is None and not reached and self.policy.capping:  # capping: time_to_target and not --no-capping
            reason = early_stop_reason(prog.curve, prog.last_wall_s, target, self.t_star, self.cfg.limit_s,
                                       self.policy, more_to_start=self.counted() < self.cfg.budget,
                                       schedule=lv.schedule, lifts=self.lifts)
        if reason is None:
            return False
        lv.job.cancel(check=False)
        log.info("trial %d: stopped (%s)", lv.trial.id, reason)
        result = read_result(lv.run_dir)  # usually none yet; an older attempt's preempted one is not it
        self._finish(lv, Status.CAPPED, reason, result=None if result is None or result.interrupted else result)
        # the job ends cancelled, without a result: only trial.json can tell `sweep rebuild` what happened
        write_trial_file(self.store.trial(lv.trial.id), self.store.requeues(lv.trial.id), decided=True,
                         metrics_offset=self.store.metrics_position(lv.trial.id)[0])
        return True

    def _observe(self, lv: Live, now: float) -> Observed:
        """What there is to see of a trial's job now (files, scheduler state, timers) for :func:`decide`."""
        t = lv.trial
        pickles = all(p.exists() for p in result_pickles(lv.folder, str(lv.job.job_id), t.ranks))
        st = self._states.get(t.id)
        scheduler = st.state if st is not None else "unknown"
        if scheduler == "ended":
            lv.ended_at = lv.ended_at or now
        else:
            lv.ended_at = None
        if not pickles and scheduler != "ended":
            return Observed(str(lv.job.job_id), scheduler=scheduler)  # still running: read nothing more
        grace = self.cfg.lost_grace_s if t.executor == "slurm" else min(self.cfg.lost_grace_s, 2.0)
        job_error, returned = self._job_end(lv, pickles)
        result = read_result(lv.run_dir) or returned  # a run refused before it started writes no result.json
        return Observed(
            job_id=str(lv.job.job_id), result=result, pickles=pickles, scheduler=scheduler,
            slurm_state=st.slurm_state if st is not None and t.executor == "slurm" else "",
            detail=st.detail if st is not None else "", gone_s=now - lv.ended_at if lv.ended_at else 0.0,
            grace_s=grace, job_error=job_error, requeues=self.store.requeues(t.id),
            max_time_s=t.max_time_s, limit_s=self.cfg.limit_s, cap_margin=self.cfg.cap_margin)

    def _leave_pending(self, lv: Live, why: str) -> None:
        """Observing only: a trial to resubmit is left ``pending`` (with its job id); the sweep's next run
        re-attaches it, sees the same and resubmits it."""
        del self.live[lv.trial.id]
        self._states.pop(lv.trial.id, None)
        self.store.update_trial(lv.trial.id, status=Status.PENDING, reason=why)

    def _requeue(self, lv: Live, why: str) -> None:
        """A run stopped by a signal (preemption, node drain) after a checkpoint: run it again (not after
        a user's scancel or the time limit: :func:`outcome.decide` finishes those)."""
        t, n = lv.trial, self.store.requeues(lv.trial.id)
        del self.live[t.id]
        self._states.pop(t.id, None)
        self.store.update_trial(t.id, requeues=n + 1)
        log.info("trial %d: preempted (%s); resubmitting it to resume from its checkpoint", t.id, why)
        try:
            self._submit(self.store.trial(t.id), lv.candidate, again=True)
        except SubmitError as e:  # resubmitted by fill() once the scheduler takes submissions again
            self.store.update_trial(t.id, status=Status.PENDING, reason=f"resubmission refused: {e}")
            self.to_resubmit[t.id] = lv.candidate
            self._refused(e)

    def _job_end(self, lv: Live, pickles: bool) -> tuple[str | None, RunResult | None]:
        """(why the job failed, from its result pickles, its Slurm state or its log: None if it did not;
        the result rank 0's task returned, when the pickles are there)."""
        t = lv.trial
        if pickles:
            try:
                ends = [x for x in lv.job.results() if isinstance(x, TaskEnd)]
            except Exception as e:  # noqa: BLE001 - the remote traceback, condensed to its error line
                return _error_line(str(e)) or type(e).__name__, None
            first = next((x.result for x in ends if x.rank == 0), None)
            bad = [x for x in ends if x.result.status is Status.FAILED]
            if bad:
                return f"{bad[0].result.error or 'failed'} (rank {bad[0].rank}, {bad[0].host})", first
            return None, first
        st = self._states.get(t.id)
        detail = st.detail if st else ""
        if t.executor == "slurm" and detail.split(" ")[0] in slurm_states.TRIAL_FAILED:
            stderr = log_paths(lv.folder, str(lv.job.job_id))[1]
            return f"Slurm job {lv.job.job_id} ended {detail}: {tail_text(stderr)}", None
        return None, None

    def _finish(self, lv: Live, status: Status, reason: str | None, *, result: RunResult | None,
                ended_at: float | None = None) -> None:
        t, prog = lv.trial, progress_of(lv.points)
        del self.live[t.id]
        self._states.pop(t.id, None)
        ended = _ended_at(lv, self.clock(), self.started_at) if ended_at is None else ended_at
        if status is Status.LOST:  # nothing to tell: the optimizer learns nothing from it
            self.store.update_trial(t.id, status=status, reason=reason, ended_at=ended,
                                    started_at=t.started_at or t.submitted_at)
            log.warning("trial %d: %s", t.id, reason)
            self.curves[t.id] = prog.curve
            self._notify(t.id)
            return
        best = result.best_auc if result is not None and result.best_auc is not None else prog.curve.best()
        ttt = result.time_to_target_s if result is not None and status is Status.REACHED_TARGET else None
        if status is Status.REACHED_TARGET and ttt is None and self.cfg.target_auc is not None:
            ttt = prog.curve.first_reaching(self.cfg.target_auc)
        loss = trial_loss(self.cfg.objective, status, best_auc=best, time_to_target_s=ttt,
                          ran_s=prog.last_wall_s or None, curve=prog.curve, target=self.cfg.target_auc,
                          limit_s=self.cfg.limit_s, stopped_for_limit=status is Status.CAPPED and
                          (reason or "").startswith(TOLD_AT_LIMIT))
        hosts = t.hosts or (result.env.get("hosts") if result is not None else None) or []  # the scheduler's first
        sps = result.samples_per_s if result is not None and result.samples_per_s is not None else prog.samples_per_s
        self.store.update_trial(
            t.id, status=status, reason=reason, objective=loss, best_auc=best, time_to_target_s=ttt,
            samples_per_s=sps, ended_at=ended, result=result.to_dict() if result is not None else None,
            hosts=hosts, started_at=t.started_at or t.submitted_at)
        self.opt.tell(t.params, loss, lv.candidate)  # after the store: a crash here replays from it
        self.curves[t.id] = prog.curve
        self.lifts.add(prog.curve, lv.schedule)
        if ttt is not None:
            self.t_star = ttt if self.t_star is None else min(self.t_star, ttt)
        log.info("trial %d: %s%s, best AUC %s, loss %.4g", t.id, status, f" ({reason})" if reason else "",
                 f"{best:.4f}" if best is not None else "-", loss)
        self._notify(t.id)

    def _notify(self, trial_id: int) -> None:
        if self.on_trial_end is None:
            return
        try:
            self.on_trial_end(self.store.trial(trial_id))
        except Exception as e:  # noqa: BLE001 - a hook (reports) must never stop the sweep
            log.warning("trial %d: on_trial_end hook failed: %s", trial_id, e)


def _short(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _ended_at(lv: Live, now: float, driver_started: float) -> float:
    """When the trial ended: now (this driver watched it end), or, for a job that ended before this driver
    started, its last file's time (result.json, the result pickles): the time the driver was down must not
    count in the trial's duration."""
    paths = [lv.run_dir / "result.json", *result_pickles(lv.folder, str(lv.job.job_id), lv.trial.ranks)]
    times = [p.stat().st_mtime for p in paths if p.exists()]
    return max(times) if times and max(times) < driver_started else now


ERROR_LINE = re.compile(r"^\w[\w.]*(Error|Exception|Exit)\b")


def _error_line(text: str) -> str:
    """The remote error's own line (``RuntimeError: ...``): the last traceback line that names an exception,
    not submitit's pointers to its logs; else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    named = [ln for ln in lines if ERROR_LINE.match(ln)]
    return named[-1] if named else (lines[-1] if lines else "")


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def _set_aside(path: Path, attempt: int) -> None:
    """Keep attempt N's file under another name (result.json -> result.attempt-N.json)."""
    with contextlib.suppress(FileNotFoundError):
        path.rename(path.with_name(f"{path.stem}.attempt-{attempt}{path.suffix}"))


def _discard(run_dir: Path) -> None:
    """Remove a never-submitted trial's directory (submitit's leftovers of the refused submission), unless
    its run directory holds files: those would be a run's, and are never deleted."""
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        shutil.rmtree(run_dir.parent, ignore_errors=True)
        with contextlib.suppress(OSError):
            run_dir.parent.parent.rmdir()  # trials/, when this was its only trial
