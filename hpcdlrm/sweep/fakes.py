"""In-process stand-ins for a scheduler, for tests and debugging (like submitit's DebugExecutor).

``InlineBackend`` runs each trial's entry in a thread of the driver process; ``ScriptedBackend``
runs nothing: the caller decides when each job writes its metrics and result and ends. Both write
the same files a real job writes (RUN_DIR/metrics.jsonl, RUN_DIR/result.json and the submitit result
pickles), so the driver under test takes exactly its production code paths.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any, Callable

from submitit.core.utils import cloudpickle_dump

from ..io import append_jsonl
from ..train.config import TrainConfig
from ..train.result import RunResult, Status
from .executors import JobLike, JobState, Resources, result_pickles
from .trial import TaskEnd, TrialRun

_ids = itertools.count(1000)


class FakeJob:
    def __init__(self, folder: Path, config: TrainConfig | None, ntasks: int) -> None:
        self.job_id = str(next(_ids))
        self.folder, self.config, self.ntasks = folder, config, ntasks
        self.cancelled = False
        self._done = threading.Event()
        self._value: list[Any] = []
        self._error: BaseException | None = None

    @property
    def run_dir(self) -> Path:
        assert self.config is not None
        return Path(self.config.out)

    def end(self, value: Any = None, error: BaseException | None = None) -> None:
        """Write the result pickles (one per task) and mark the job ended."""
        self._value, self._error = [value] * self.ntasks, error
        for p in result_pickles(self.folder, self.job_id, self.ntasks):
            p.parent.mkdir(parents=True, exist_ok=True)
            cloudpickle_dump(("error", repr(error)) if error else ("success", value), p)
        self._done.set()

    def vanish(self) -> None:
        """End without any result, like a job killed by the node (no pickles)."""
        self._done.set()

    def done(self, force_check: bool = False) -> bool:
        return self._done.is_set()

    def results(self) -> list[Any]:
        if self._error is not None:
            raise RuntimeError(f"job {self.job_id} failed:\n{self._error!r}")
        return list(self._value)

    def cancel(self, check: bool = True) -> None:
        self.cancelled = True
        if not self._done.is_set():
            self.vanish()


class ScriptedBackend:
    """Jobs that do nothing until the test writes their files and ends them."""

    kind = "local"

    def __init__(self) -> None:
        self.jobs: list[FakeJob] = []
        self.submitted_at: list[float] = []

    def submit(self, fn: Callable[[], Any], folder: Path, res: Resources) -> JobLike:
        assert isinstance(fn, TrialRun)
        job = FakeJob(folder, fn.config, res.ranks)
        self.jobs.append(job)
        return job

    def reattach(self, job_id: str, folder: Path, ntasks: int) -> JobLike:
        job = next((j for j in self.jobs if j.job_id == job_id), None)
        if job is None:
            job = FakeJob(folder, None, ntasks)
            job.vanish()
        return job

    def states(self, jobs: dict[str, JobLike]) -> dict[str, JobState]:
        return {jid: JobState("ended" if j.done() else "running", ["fakehost"]) for jid, j in jobs.items()}

    @staticmethod
    def emit(job: FakeJob, *events: dict[str, Any]) -> None:
        job.run_dir.mkdir(parents=True, exist_ok=True)
        with open(job.run_dir / "metrics.jsonl", "a") as f:
            for e in events:
                append_jsonl(f, e)

    @staticmethod
    def finish(job: FakeJob, result: dict[str, Any] | None) -> None:
        """Write ``result`` (result.json's form) and end the job as its entry would return it."""
        run = RunResult.from_dict(result) if result is not None else RunResult(Status.FAILED, error="no result")
        if result is not None:
            run.write(job.run_dir)
        job.end(TaskEnd(0, "fakehost", run))


class InlineBackend(ScriptedBackend):
    """Runs ``train(config)`` (default: the trial itself, i.e. its entry) in a thread per job."""

    def __init__(self, train: Callable[[TrainConfig], RunResult] | None = None) -> None:
        super().__init__()
        self.train = train

    def submit(self, fn: Callable[[], Any], folder: Path, res: Resources) -> JobLike:
        job = super().submit(fn, folder, res)
        assert isinstance(fn, TrialRun) and isinstance(job, FakeJob)

        def body() -> None:
            try:
                end = TaskEnd(0, "inline", self.train(fn.config)) if self.train else fn()
            except Exception as e:  # noqa: BLE001 - becomes the job's error, as in submitit
                job.end(error=e)
                return
            if not job.cancelled:
                job.end(end)

        threading.Thread(target=body, daemon=True, name=f"trial-{job.job_id}").start()
        return job
