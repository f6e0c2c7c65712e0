"""The asynchronous sweep loop: keep P trials in flight, tell each result the moment it lands.

Every poll: read new metrics of every running trial (by file offset), stop the ones that adaptive
capping or the median rule condemn, collect the ones whose job ended, then ask the optimizer for as
many new points as there are free slots. The store is written before the optimizer is told, so a
driver killed at any moment resumes from the store alone: finished trials are replayed into a fresh
optimizer, running ones are re-attached by job id, and jobs that vanished are marked lost.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import SweepConfig
from .executors import Backend, JobLike, JobState, Resources, log_paths, result_pickles
from .objective import Curve, trial_loss
from .optim import Optimizer
from .policy import StopPolicy, cap_reason, median_reason, trial_limit
from .records import FINISHED, MetricPoint, Trial
from .space import Space
from .store import Store
from .trial import TrialRun, progress_of, read_new_metrics, read_result, tail_text

log = logging.getLogger("hpcdlrm.sweep")
RESULT_STATUS = {"reached_target", "completed", "timeout", "diverged", "failed"}
SLURM_FAILED = ("TIMEOUT", "OUT_OF_MEMORY", "FAILED", "DEADLINE")  # the trial's doing, not the cluster's
MAX_REQUEUES = 3


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

    @property
    def folder(self) -> Path:
        return self.run_dir.parent / "submitit"


@dataclass
class Summary:
    trials: int
    by_status: dict[str, int]
    incumbent: Trial | None
    stopped: str  # why the loop ended


def incumbent(trials: list[Trial], objective: str) -> Trial | None:
    """The best finished trial: fastest to the target, else the lowest loss (highest AUC)."""
    told = [t for t in trials if t.status in FINISHED and t.objective is not None]
    if objective == "time_to_target":
        hit = [t for t in told if t.status == "reached_target" and t.time_to_target_s is not None]
        if hit:
            return min(hit, key=lambda t: t.time_to_target_s)
    return min(told, key=lambda t: t.objective) if told else None


class Driver:
    def __init__(self, cfg: SweepConfig, space: Space, store: Store, backends: dict[str, Backend],
                 optimizer: Optimizer, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 on_trial_end: Callable[[Trial], None] | None = None,
                 on_poll: Callable[[], None] | None = None) -> None:
        self.cfg, self.space, self.store, self.backends, self.opt = cfg, space, store, backends, optimizer
        self.clock, self.sleep = clock, sleep
        self.on_trial_end = on_trial_end  # e.g. refresh the reports; never allowed to stop the sweep
        self.on_poll = on_poll
        self.policy = StopPolicy(capping=cfg.capping and cfg.objective == "time_to_target",
                                 cap_margin=cfg.cap_margin, median=cfg.median_stopping)
        self.live: dict[int, Live] = {}
        self.curves: dict[int, Curve] = {}  # finished trials' AUC curves (median rule)
        self.t_star: float | None = None
        self._last_sched = 0.0
        self._states: dict[int, JobState] = {}

    # ------------------------------------------------------------------ main loop
    def run(self) -> Summary:
        self.resume()
        while True:
            self.poll()
            if self.failures() > self.cfg.max_failures:
                stopped = f"more than --max-failures {self.cfg.max_failures} failed trials"
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
        by: dict[str, int] = {}
        for t in trials:
            by[t.status] = by.get(t.status, 0) + 1
        return Summary(len(trials), by, incumbent(trials, self.cfg.objective), stopped)

    def counted(self) -> int:
        """Trials that used up budget: every stored one, across restarts (lost ones included)."""
        return self.store.count()

    def failures(self) -> int:
        return self.store.count("failed")

    # ------------------------------------------------------------------ resume
    def resume(self) -> None:
        """Replay finished trials into the optimizer; re-attach or resubmit unfinished ones.
        A new sweep starts from the space's defaults (the known recipe is the first trial)."""
        if self.store.count() == 0:
            self.opt.suggest(self.space.defaults())
        lost = self.store.lost_ids()
        for t in self.store.trials():
            if t.status in FINISHED:
                self._remember(t)
                if t.id not in lost and t.objective is not None:
                    self.opt.tell(t.params, t.objective)
            elif t.job_id:
                live = Live(t, self._backend(t).reattach(t.job_id, Path(t.run_dir or ".").parent / "submitit",
                                                          t.ranks), t.partition or "")
                live.points = self.store.metrics(t.id)
                self.live[t.id] = live
                log.info("trial %d: re-attached to %s job %s", t.id, t.executor, t.job_id)
            else:
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
            self.store.update_trial(t.id, status="running", job_id=job_id,
                                    slurm_job_id=job_id if t.executor == "slurm" else None)
            self.live[t.id] = Live(self.store.trial(t.id), self._backend(t).reattach(job_id, folder, t.ranks),
                                   t.partition or "")
            return
        self._submit(t, None)

    def _remember(self, t: Trial) -> None:
        self.curves[t.id] = progress_of(self.store.metrics(t.id, "auc")).curve
        if t.status == "reached_target" and t.time_to_target_s is not None:
            self.t_star = t.time_to_target_s if self.t_star is None else min(self.t_star, t.time_to_target_s)

    def _run_dir(self, trial_id: int) -> Path:
        return Path(self.cfg.out) / "trials" / f"{trial_id:04d}" / "run"

    def _backend(self, t: Trial) -> Backend:
        return self.backends.get(t.partition or "") or next(iter(self.backends.values()))

    # ------------------------------------------------------------------ submit
    def fill(self) -> None:
        """Ask and submit until every partition has its --parallel trials in flight (or the budget is spent)."""
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
        """Submit a trial; ``again`` resubmits it unchanged (same argv and RUN_DIR: the run resumes)."""
        run_dir = Path(t.run_dir or ".")
        run_dir.mkdir(parents=True, exist_ok=True)
        if again and t.argv and t.max_time_s is not None:
            argv, max_time = list(t.argv), t.max_time_s
        else:
            max_time = trial_limit(self.cfg.limit_s, self.t_star, self.policy)
            argv = self._argv(t.params, run_dir, max_time)
        res = Resources(self.cfg.nodes, self.cfg.tasks_per_node, self.cfg.cpus_per_task, self.cfg.time_min,
                        t.partition, signal_delay_s=self.cfg.signal_delay_s,
                        env=(("OMP_NUM_THREADS", str(self.cfg.cpus_per_task)),))
        job = self._backend(t).submit(TrialRun(argv, self.cfg.entry), run_dir.parent / "submitit", res)
        slurm_id = str(job.job_id) if self.cfg.executor == "slurm" else None
        self.store.update_trial(t.id, status="running", job_id=str(job.job_id), slurm_job_id=slurm_id,
                                submitted_at=self.clock(), max_time_s=max_time, argv=argv)
        self.live[t.id] = Live(self.store.trial(t.id), job, t.partition or "", cand)
        log.info("trial %d: submitted %s job %s, limit %.0f s: %s", t.id, self.cfg.executor, job.job_id,
                 max_time, _short(t.params))

    def _argv(self, params: dict[str, Any], run_dir: Path, max_time: float) -> list[str]:
        argv = ["--out", str(run_dir), "--seed", str(self.cfg.seed), "--max-time", f"{max_time:.1f}",
                "--threads", str(self.cfg.cpus_per_task)]
        if self.cfg.data:
            argv = ["--data", str(self.cfg.data), *argv]
        if self.cfg.objective == "time_to_target" and self.cfg.target_auc is not None:
            argv += ["--target-auc", repr(self.cfg.target_auc)]
        return argv + self.space.to_argv(params) + list(self.cfg.train_args)

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
            if self._ended(lv, now):
                self._collect(lv)

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
        if not lv.points:
            return False
        target = self.cfg.target_auc
        reached = target is not None and prog.curve.first_reaching(target) is not None
        reason = cap_reason(prog.last_wall_s, reached, self.t_star, self.policy)
        if reason is None and not reached:
            peers = [c for tid, c in self.curves.items() if tid != lv.trial.id]
            ref = self.t_star or self.cfg.limit_s
            reason = median_reason(prog.curve, prog.last_wall_s, peers, ref, self.policy)
        if reason is None:
            return False
        lv.job.cancel(check=False)
        log.info("trial %d: stopped (%s)", lv.trial.id, reason)
        result = read_result(lv.run_dir)  # usually none yet; an older attempt's interrupted one is not it
        self._finish(lv, "capped", reason, result=None if (result or {}).get("interrupted") else result)
        return True

    def _ended(self, lv: Live, now: float) -> bool:
        """Ended = all result pickles are there, or the scheduler lost the job for longer than the grace."""
        t = lv.trial
        pickles = result_pickles(lv.folder, str(lv.job.job_id), t.ranks)
        st = self._states.get(t.id)
        if all(p.exists() for p in pickles):
            # a run stopped by a signal may have been requeued by Slurm: wait until it is really gone
            interrupted = (read_result(lv.run_dir) or {}).get("interrupted")
            return not interrupted or (st is not None and st.state == "ended")
        if st is None or st.state != "ended":
            lv.ended_at = None
            return False
        lv.ended_at = lv.ended_at or now
        grace = self.cfg.lost_grace_s if t.executor == "slurm" else min(self.cfg.lost_grace_s, 2.0)
        return now - lv.ended_at >= grace

    # ------------------------------------------------------------------ finish
    def _collect(self, lv: Live) -> None:
        t = lv.trial
        self._ingest(lv)
        result = read_result(lv.run_dir)
        final = result is not None and not result.get("interrupted") and result.get("status") in RESULT_STATUS
        if not final and self._ended_by_slurm(lv, result):
            return
        job_error = self._job_error(lv)
        if result is not None and result.get("interrupted"):
            self._requeue(lv, str(result.get("reason")))
        elif result is not None and result.get("status") in RESULT_STATUS:
            status, reason = self._status_from_result(result, t)
            if status == "failed":
                reason = result.get("error") or job_error or "the run reported status failed"
            self._finish(lv, status, reason, result=result)
        elif job_error is not None:
            self._finish(lv, "failed", job_error, result=result)
        else:
            self._finish(lv, "failed", None, result=result, lost=True)

    def _ended_by_slurm(self, lv: Live, result: dict[str, Any] | None) -> bool:
        """Finish a trial that Slurm ended before its run finished, when the reason is one not to retry:
        a user's ``scancel`` (CANCELLED: a penalty, never requeued) or the job's time limit (TIMEOUT:
        its time is spent; the partial curve is told, censored). False for anything else."""
        st = self._states.get(lv.trial.id)
        if st is None or lv.trial.executor != "slurm":
            return False
        if st.slurm_state == "CANCELLED":
            self._finish(lv, "failed", f"cancelled: Slurm job {lv.job.job_id} {st.detail}", result=result)
        elif st.slurm_state == "TIMEOUT":
            self._finish(lv, "timeout", f"Slurm job {lv.job.job_id} killed at its time limit: {st.detail}; "
                                        f"partial curve kept", result=result)
        else:
            return False
        return True

    def _requeue(self, lv: Live, why: str) -> None:
        """A run stopped by a signal (preemption, node drain) checkpointed: run it again (not after a
        user's scancel or the time limit: :meth:`_ended_by_slurm` takes those)."""
        t, n = lv.trial, self.store.requeues(lv.trial.id)
        if n >= MAX_REQUEUES:
            self._finish(lv, "failed", f"interrupted {n + 1} times, last: {why}", result=read_result(lv.run_dir))
            return
        del self.live[t.id]
        self._states.pop(t.id, None)
        self.store.update_trial(t.id, requeues=n + 1)
        log.info("trial %d: interrupted (%s); resubmitting it to resume from its checkpoint", t.id, why)
        self._submit(self.store.trial(t.id), lv.candidate, again=True)

    def _status_from_result(self, result: dict[str, Any], t: Trial) -> tuple[str, str | None]:
        status, reason = result["status"], result.get("reason")
        if status == "timeout" and t.max_time_s is not None and t.max_time_s < self.cfg.limit_s - 1e-6:
            return "capped", (f"adaptive capping: given {t.max_time_s:.1f} s (the incumbent's time plus "
                              f"{self.cfg.cap_margin:.0%}) instead of {self.cfg.limit_s:.1f} s")
        return status, reason if status != "reached_target" else None

    def _job_error(self, lv: Live) -> str | None:
        """Why the job failed, from its result pickles, its Slurm state or its log; None if it did not."""
        t = lv.trial
        pickles = result_pickles(lv.folder, str(lv.job.job_id), t.ranks)
        if all(p.exists() for p in pickles):
            try:
                ranks = lv.job.results()
            except Exception as e:  # noqa: BLE001 - the remote traceback, condensed
                lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
                return " | ".join(lines[-2:]) or type(e).__name__
            bad = [r for r in ranks if isinstance(r, dict) and r.get("rc")]
            if bad:
                return f"exit code {bad[0]['rc']} on rank {bad[0]['rank']} ({bad[0]['host']})"
            return None
        st = self._states.get(t.id)
        detail = st.detail if st else ""
        if t.executor == "slurm" and detail.split(" ")[0] in SLURM_FAILED:
            stderr = log_paths(lv.folder, str(lv.job.job_id))[1]
            return f"Slurm job {lv.job.job_id} ended {detail}: {tail_text(stderr)}"
        return None

    def _finish(self, lv: Live, status: str, reason: str | None, *, result: dict[str, Any] | None,
                lost: bool = False) -> None:
        t, prog = lv.trial, progress_of(lv.points)
        del self.live[t.id]
        st = self._states.pop(t.id, None)
        now = self.clock()
        if lost:
            why = f"lost: job {lv.job.job_id} ended without a result ({st.detail if st else 'process gone'})"
            self.store.mark_lost(t.id, why)
            log.warning("trial %d: %s", t.id, why)
            self.curves[t.id] = prog.curve
            self._notify(t.id)
            return
        res = result or {}
        best = res.get("best_auc") if res.get("best_auc") is not None else prog.curve.best()
        ttt = res.get("time_to_target_s") if status == "reached_target" else None
        if status == "reached_target" and ttt is None and self.cfg.target_auc is not None:
            ttt = prog.curve.first_reaching(self.cfg.target_auc)
        loss = trial_loss(self.cfg.objective, status, best_auc=best, time_to_target_s=ttt,
                          ran_s=prog.last_wall_s or None, curve=prog.curve, target=self.cfg.target_auc,
                          limit_s=self.cfg.limit_s)
        hosts = t.hosts or (res.get("env") or {}).get("hosts") or []  # the scheduler's allocation first
        self.store.update_trial(
            t.id, status=status, reason=reason, objective=loss, best_auc=best, time_to_target_s=ttt,
            samples_per_s=res.get("samples_per_s", prog.samples_per_s), ended_at=now, result=result,
            hosts=hosts, started_at=t.started_at or t.submitted_at)
        self.opt.tell(t.params, loss, lv.candidate)  # after the store: a crash here replays from it
        self.curves[t.id] = prog.curve
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
