"""Refusals and records of the sweep command found by probing it: one driver per --out, resume checks,
scheduler refusals, where a bad flag is blamed, failure reasons. In-process and fast (surrogate, fakes)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from hpcdlrm.sweep.__main__ import SURROGATE_ENTRY, main
from hpcdlrm.sweep.lock import driver_lock

SURR = ["--entry", SURROGATE_ENTRY, "--no-report", "--executor", "local", "--poll", "0.05"]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


def test_a_second_driver_on_one_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    out.mkdir()
    with driver_lock(out):  # a driver running on it (the kernel's lock: another open file description)
        rc, err = run_main(["--out", str(out), "--budget", "1", *SURR, "--", "--speed", "400"], capsys)
        assert rc == 2 and err.count("\n") == 1, err
        assert err == f"error: {out} is being run by pid {os.getpid()} on host {socket.gethostname()}\n"
        assert sorted(p.name for p in out.iterdir()) == ["driver.lock"]  # no store, no log, no trial
        rc, err = run_main(["rebuild", str(out)], capsys)
        assert rc == 2 and "is being run by pid" in err
    rc, err = run_main(["--out", str(out), "--budget", "1", *SURR, "--", "--speed", "400"], capsys)
    assert rc == 0, err  # released with its holder


# ------------------------------------------------------------------ a resume must make the same trials
@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two datasets of one shape (only their identity tells them apart)."""
    from hpcdlrm.data.synth import ClickModelConfig, generate

    out = []
    for seed in (1, 2):
        d = tmp_path_factory.mktemp(f"data{seed}")
        generate(d, 2048, eval_rows=512, seed=seed, model=ClickModelConfig(table_sizes=(5, 7, 11) + (3,) * 23))
        out.append(d)
    return out[0], out[1]


def stored_sweep(out: Path, data: Path, train_args: list[str]) -> list[str]:
    """A sweep stored in OUT by this command (no trial run yet); returns its command line."""
    from hpcdlrm.sweep.__main__ import _parser, build_config
    from hpcdlrm.sweep.records import SweepInfo
    from hpcdlrm.sweep.store import Store

    own = ["--out", str(out), "--data", str(data), "--target-auc", "0.6", "--executor", "local"]
    cfg, _ = build_config(_parser().parse_args(own), train_args)
    with Store(out) as st:
        st.init_sweep(SweepInfo("s", [], cfg.space, cfg.optimizer, cfg.objective, 0.6, 0.0), cfg.to_dict())
    return own


def listing(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_resume_on_other_data_or_train_flags_is_refused(tmp_path: Path, datasets: tuple[Path, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    a, b = datasets
    out = tmp_path / "s"
    own = stored_sweep(out, a, ["--epochs", "1"])
    before = listing(out)
    other_data = [*own[:own.index("--data") + 1], str(b), *own[own.index("--data") + 2:]]
    rc, err = run_main([*other_data, "--", "--epochs", "1"], capsys)
    assert rc == 2 and err.count("\n") == 1 and f"--data {b}: {out} holds a sweep on other data" in err, err
    assert listing(out) == before  # the stored config unchanged, no log, no trial
    rc, err = run_main([*own, "--", "--epochs", "2"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "--epochs: stored 1.0, now 2.0" in err, err
    rc, err = run_main([*own, "--cpus-per-task", "7", "--", "--epochs", "1"], capsys)
    assert rc == 2 and "--cpus-per-task: stored" in err, err
    assert listing(out) == before


def test_a_resume_on_the_same_data_moved_passes(tmp_path: Path, datasets: tuple[Path, Path]) -> None:
    import shutil

    from hpcdlrm.sweep.__main__ import _parser, _stored_config, build_config
    from hpcdlrm.sweep.template import TrialTemplate

    a, _ = datasets
    out = tmp_path / "s"
    own = stored_sweep(out, a, ["--epochs", "1"])
    moved = tmp_path / "moved"
    shutil.copytree(a, moved)
    own[own.index("--data") + 1] = str(moved)
    cfg, space = build_config(_parser().parse_args(own), ["--epochs", "1"])
    stored = _stored_config(out)
    assert stored is not None and stored.data == str(a)
    TrialTemplate.build(cfg, space).check_resume(cfg, stored)  # no ConfigError


# ------------------------------------------------------------------ driver records (scripted jobs)
def scripted(tmp_path: Path, backend: object = None, clock: object = None, sleep: object = None,
             **kw: object):  # noqa: ANN201 - (driver, backend)
    from hpcdlrm.sweep.config import SweepConfig
    from hpcdlrm.sweep.driver import Driver
    from hpcdlrm.sweep.fakes import ScriptedBackend
    from hpcdlrm.sweep.optim import Optimizer
    from hpcdlrm.sweep.records import SweepInfo
    from hpcdlrm.sweep.space import load_space
    from hpcdlrm.sweep.store import Store

    space = load_space()
    cfg = SweepConfig(out=str(tmp_path), space=space.to_dict(), target_auc=0.79, time_min=2.0, poll_s=0.01,
                      entry=SURROGATE_ENTRY, **{"budget": 1, "parallel": [1], **kw})
    store = Store(tmp_path)
    store.init_sweep(SweepInfo("t", [], cfg.space, cfg.optimizer, cfg.objective, 0.79, 0.0), cfg.to_dict())
    be = backend or ScriptedBackend()
    opt = Optimizer(space, "SmallPSO", budget=cfg.budget, num_workers=cfg.num_workers, seed=0)
    timing = {k: v for k, v in (("clock", clock), ("sleep", sleep)) if v is not None}
    return Driver(cfg, space, store, {"": be}, opt, **timing), be


def test_a_refused_resubmission_is_its_own_failure_not_the_last_preemption(tmp_path: Path) -> None:
    from hpcdlrm.sweep.trial import TaskEnd
    from hpcdlrm.train import RunResult, Status

    d, be = scripted(tmp_path)
    d.resume()
    d.fill()
    be.finish(be.jobs[0], {"status": "preempted", "reason": "signal 15: checkpoint at step 40"})
    d.poll()
    assert len(be.jobs) == 2  # resubmitted to resume
    # the second attempt is refused before it trains: it writes no result.json, returns its error
    be.jobs[1].end(TaskEnd(0, "h", RunResult(Status.FAILED, error="--data /x: no manifest")))
    d.poll()
    t = d.store.trial(1)
    assert (t.status, t.reason) == (Status.FAILED, "--data /x: no manifest"), t.reason
    assert len(be.jobs) == 2 and (Path(t.run_dir).parent / "run" / "result.attempt-1.json").exists()


# ------------------------------------------------------------------ the scheduler (fake sbatch/sinfo on PATH)
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **bodies: str) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    scripts = {"scontrol": 'echo "Slurmctld(primary) at ctl is UP"', "squeue": "exit 0", "sacct": "exit 1",
               "sinfo": 'case "$3" in debug) echo debug;; esac', "sbatch": "echo Submitted batch job 17", **bodies}
    for name, body in scripts.items():
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")


def test_a_partition_that_does_not_exist_is_refused_before_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "sweep"
    rc, err = run_main(["--partition", "debug,nope", "--out", str(out), *SURR[:3]], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith("error: --partition nope: not a partition of this cluster")
    assert not out.exists()  # no store, no sweep.json, no driver.log


def test_sbatchs_refusal_of_the_first_trial_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    fake_slurm(tmp_path, monkeypatch, sbatch='echo "sbatch: error: Batch job submission failed:" >&2\n'
                                             'echo "sbatch: error: Invalid qos specification" >&2\nexit 1')
    out = tmp_path / "sweep"
    rc, err = run_main(["--partition", "debug", "--out", str(out), *SURR[:3], "--budget", "1"], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert "submitting trial 1 failed" in err and "Invalid qos specification" in err


def test_a_submission_refused_mid_sweep_backs_off_and_stops_after_n_in_a_row(tmp_path: Path) -> None:
    from hpcdlrm.sweep.driver import SUBMIT_TRIES
    from hpcdlrm.sweep.fakes import ScriptedBackend

    class QosLimited(ScriptedBackend):
        """Takes the first job, then refuses (a QOS submit limit) until ``allow`` is set."""

        allow = False
        tries: list[float] = []

        def submit(self, fn, folder, res):  # noqa: ANN001, ANN201
            if self.jobs and not self.allow:
                self.tries.append(now[0])
                raise RuntimeError("sbatch: error: Batch job submission failed\n"
                                   "QOSMaxSubmitJobPerUserLimit")
            return super().submit(fn, folder, res)

    now = [0.0]
    be = QosLimited()
    d, _ = scripted(tmp_path, backend=be, clock=lambda: now[0], budget=3, parallel=[2])
    d.resume()
    d.fill()  # trial 1 runs; trial 2 refused: no exception, no trial, the slot stays free
    assert len(be.jobs) == 1 and d.store.count() == 1 and list(d.live) == [1] and len(be.tries) == 1
    d.fill()
    assert len(be.tries) == 1  # backing off
    now[0] += 10.5
    d.fill()
    assert len(be.tries) == 2
    be.allow = True
    now[0] += 20.5
    d.fill()  # the scheduler takes it again: trial 2 submitted, the count of refusals starts over
    assert len(be.jobs) == 2 and d.refusals == 0 and d.store.count() == 2

    # refused again and again while trial 1 runs: the sweep stops submitting, then collects and ends
    be.allow = False
    be.finish(be.jobs[1], {"status": "completed", "best_auc": 0.7})

    def sleep(s: float) -> None:
        now[0] += 30.0
        if now[0] > 1000:
            be.finish(be.jobs[0], {"status": "completed", "best_auc": 0.71})

    d.sleep = sleep
    d.live.clear()  # run() resumes from the store (as a rerun would): it re-attaches trial 1 itself
    summary = d.run()
    assert summary.stopped.startswith(f"the scheduler refused {SUBMIT_TRIES} submissions in a row")
    assert "QOSMaxSubmitJobPerUserLimit" in summary.stopped
    assert d.store.count() == 2 and {t.status for t in d.store.trials()} == {"completed"}


# ------------------------------------------------------------------ what a trial's config is made of
@pytest.fixture
def no_synthetic_data(monkeypatch: pytest.MonkeyPatch, datasets: tuple[Path, Path]) -> list[object]:
    """resolve_data that records its calls and generates nothing (a small dataset stands for the default)."""
    from hpcdlrm.sweep import dataset

    calls: list[object] = []

    def resolve(data: str | None, target: float | None) -> tuple[str, float | None]:
        calls.append(data)
        return str(data or datasets[0]), target or 0.66

    monkeypatch.setattr(dataset, "resolve_data", resolve)
    return calls


@pytest.mark.parametrize("train, words", [
    (["--max-samples", "-5"], ["error: train flags after --: --max-samples: must be a positive number"]),
    (["--lr", "0.5"], ["--lr collides with the swept parameter 'lr'"]),
])
def test_a_bad_flag_after_the_double_dash_is_blamed_on_the_flags_before_any_data(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_synthetic_data: list[object], train: list[str],
        words: list[str]) -> None:
    out = tmp_path / "sweep"
    rc, err = run_main(["--out", str(out), "--no-report", "--", *train], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert all(w in err for w in words) and "the defaults make a bad train config" not in err, err
    assert no_synthetic_data == [] and not out.exists()  # refused before the default dataset is generated


def test_swept_parameters_override_the_laptop_defaults(tmp_path: Path, no_synthetic_data: list[object]) -> None:
    from hpcdlrm.sweep.__main__ import _parser, build_config
    from hpcdlrm.sweep.space import DEFAULT_SPACE
    from hpcdlrm.sweep.template import TrialTemplate

    space = tmp_path / "space.toml"
    space.write_text(DEFAULT_SPACE.read_text() + '\n[epochs]\nkind = "float"\nlow = 1.0\nhigh = 8.0\ndefault = 2.0\n')
    cfg, sp = build_config(_parser().parse_args(["--out", str(tmp_path / "s"), "--space", str(space)]), [])
    assert cfg.train_args == [] and "--epochs" in cfg.laptop_args  # the user gave no flags after --
    c = TrialTemplate.build(cfg, sp).config({**sp.defaults(), "epochs": 6.0}, out="o", max_time=60.0)
    assert (c.epochs, c.emb_dim, c.arch_mlp_bot) == (6.0, 16, "13-64-16")  # swept beats laptop; the rest stays
    cfg, sp = build_config(_parser().parse_args(["--out", str(tmp_path / "s")]), ["--emb-dim", "8"])
    c = TrialTemplate.build(cfg, sp).config(sp.defaults(), out="o", max_time=60.0)
    assert (c.emb_dim, c.epochs) == (8, 4.0)  # flags after -- beat the laptop defaults too


def test_a_failed_jobs_reason_is_its_error_line_not_submitits_log_paths(tmp_path: Path) -> None:
    d, be = scripted(tmp_path)
    d.resume()
    d.fill()
    job = be.jobs[0]
    job.end(None)

    def results() -> list[object]:  # what submitit raises for a task that died with an exception
        raise RuntimeError(
            "Job (task=0) failed during processing with trace:\n----------------------\n"
            "Traceback (most recent call last):\n  File \"/x/surrogate.py\", line 183, in run\n"
            "    raise RuntimeError(f\"surrogate trial failing on purpose after {fail_after} s\")\n"
            "RuntimeError: surrogate trial failing on purpose after 1.0 s (--fail-after)\n\n"
            "----------------------\nYou can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:\n"
            "  - /x/submitit/5922_0_log.err\n  - /x/submitit/5922_0_log.out\n")

    job.results = results  # type: ignore[method-assign]
    d.poll()
    t = d.store.trial(1)
    assert (t.status, t.reason) == ("failed", "RuntimeError: surrogate trial failing on purpose after 1.0 s "
                                              "(--fail-after)")


def test_one_incumbent_rule_never_a_penalised_trial() -> None:
    from hpcdlrm.report import extract
    from hpcdlrm.sweep.records import SweepData, SweepInfo, Trial, incumbent
    from hpcdlrm.sweep.status import status_text
    from hpcdlrm.train import Status

    def data(*trials: Trial) -> SweepData:
        return SweepData(SweepInfo("s", [], {}, "TwoPointsDE", "time_to_target", 0.79, 0.0), list(trials), [])

    failed = Trial(1, Status.FAILED, {"lr": 0.1}, reason="RuntimeError: x", objective=840.0, ended_at=1.0)
    diverged = Trial(2, Status.DIVERGED, {"lr": 3.0}, objective=840.0, ended_at=2.0)
    censored = Trial(3, Status.COMPLETED, {"lr": 0.01}, objective=900.0, best_auc=0.7, ended_at=3.0)
    only_bad = data(failed, diverged)
    assert incumbent(only_bad.trials, "time_to_target") is None and extract.incumbent(only_bad) is None
    assert "incumbent: none yet" in status_text(only_bad)
    mixed = data(failed, diverged, censored)  # the penalty (840) is lower than the censored estimate (900)
    assert incumbent(mixed.trials, "time_to_target") is censored and extract.incumbent(mixed) is censored
    assert "incumbent: trial 3 " in status_text(mixed)


# ------------------------------------------------------------------ small things
def test_space_with_an_extra_argument_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run_main(["space", "extra"], capsys)
    assert rc == 2 and err == "error: unrecognized arguments: extra\n", err


def test_rebuild_of_a_missing_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run_main(["rebuild", str(tmp_path / "nope")], capsys)
    assert rc == 2 and err == f"error: {tmp_path / 'nope'}: no such directory\n", err


def test_max_failures_help_says_what_the_driver_does(tmp_path: Path) -> None:
    from hpcdlrm.sweep.__main__ import _parser
    from hpcdlrm.sweep.fakes import InlineBackend
    from hpcdlrm.train import RunResult, Status

    assert "more than N" in " ".join(_parser().format_help().split())
    be = InlineBackend(lambda cfg: RunResult(Status.FAILED, error="boom"))
    d, _ = scripted(tmp_path, backend=be, budget=6, parallel=[1], max_failures=1)
    d.sleep = lambda s: None
    summary = d.run()
    assert summary.trials == 2 and summary.stopped == "more than --max-failures 1 failed trials"


def test_the_sweep_docstring_lists_every_subcommand() -> None:
    import hpcdlrm.sweep.__main__ as m

    for sub in ("status", "space", "rebuild"):
        assert f"python -m hpcdlrm.sweep {sub}" in (m.__doc__ or "")
