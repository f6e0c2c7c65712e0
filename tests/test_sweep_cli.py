"""The command line: defaults, one-line errors (exit 2), and what it refuses before touching --out."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hpcdlrm.sweep.__main__ import SURROGATE_ENTRY, _parser, build_config, main
from hpcdlrm.sweep.config import SweepConfig

SURR = ["--entry", SURROGATE_ENTRY, "--no-report"]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


def test_slurm_asked_where_there_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no squeue
    out = tmp_path / "sweep"
    rc, err = run_main(["--partition", "xeon", "--out", str(out), *SURR], capsys)
    assert rc == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: Slurm was asked for") and "--executor local" in line
    assert not out.exists()  # nothing created


def test_auto_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert SweepConfig().resolve().executor == "local"
    assert SweepConfig(partitions=["xeon"]).resolve().executor == "slurm"
    assert SweepConfig(executor="local").resolve().executor == "local"
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # the driver itself runs under sbatch
    assert SweepConfig().resolve().executor == "slurm"


def test_defaults_come_from_the_dataclass_and_the_executor() -> None:
    a = _parser().parse_args([])
    assert a.time_min is None and a.budget is None and a.poll_s is None  # "by executor": resolve() fills them
    local = SweepConfig(executor="local").resolve(cpu_count=8)
    slurm = SweepConfig(executor="slurm").resolve(cpu_count=8)
    assert (local.time_min, local.budget, local.poll_s, local.cpus_per_task) == (2.0, 8, 0.5, 4)
    assert (slurm.time_min, slurm.budget, slurm.poll_s, slurm.cpus_per_task) == (30.0, 48, 2.0, 1)
    assert local.scheduler_poll_s == 15.0 and SweepConfig(poll_s=0.5).resolve().scheduler_poll_s == 2.5
    for flag in ("--no-capping", "--capping", "--no-report", "--median-stopping"):
        _parser().parse_args([flag])  # booleans come with both forms
    assert _parser().parse_args(["--no-target-stopping"]).target_stopping is False
    assert _parser().parse_args([]).target_stopping is True  # on unless turned off
    assert _parser().parse_args(["--no-schedule-stopping"]).schedule_stopping is False
    assert _parser().parse_args([]).schedule_stopping is True


def test_partitions_and_parallel(tmp_path: Path) -> None:
    a = _parser().parse_args(["--partition", "a,b", "--parallel", "4,2", "--executor", "slurm", *SURR,
                              "--out", str(tmp_path)])
    cfg, _ = build_config(a, [])
    assert cfg.partitions == ["a", "b"] and cfg.parallel == [4, 2] and cfg.num_workers == 6
    assert cfg.target_auc == 0.79 and cfg.time_min == 30.0 and cfg.cpus_per_task == 1
    a = _parser().parse_args(["--partition", "a,b", "--parallel", "4,2,1", "--executor", "slurm", *SURR])
    with pytest.raises(Exception, match="--parallel: give one count per partition"):
        build_config(a, [])


def test_local_defaults_share_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    a = _parser().parse_args(["--parallel", "2", "--tasks-per-node", "2", *SURR, "--out", str(tmp_path)])
    cfg, _ = build_config(a, ["--epochs", "1"])
    assert cfg.executor == "local" and cfg.cpus_per_task == 4 and cfg.budget == 8
    assert cfg.train_args == ["--epochs", "1"] and 0 < cfg.limit_s < cfg.time_min * 60


@pytest.mark.parametrize("argv, words", [
    (["--nodes", "2", "--executor", "local"], ["--nodes 2", "one node"]),
    (["--budget", "0"], ["--budget"]),
    (["--objective", "auc", "--target-auc", "0.4"], ["--target-auc", "(0.5, 1]"]),
    (["--parallel", "x"], ["--parallel", "integers"]),
    (["--optimizer", "NGOpt"], ["NGOpt"]),
    (["--parallel", "0"], ["--parallel", "positive integer, got 0"]),
    (["--executor", "local", "--partition", "xeon"], ["--partition xeon", "--executor local"]),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                         words: list[str]) -> None:
    rc, err = run_main([*argv, "--out", str(tmp_path / "s"), *SURR], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    for w in words:
        assert w in err, err


def test_bad_space_file_names_the_parameter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "space.toml"
    space.write_text('[lr]\nkind = "log"\nlow = -1\nhigh = 1\n')
    rc, err = run_main(["--space", str(space), "--out", str(tmp_path / "s"), *SURR], capsys)
    assert rc == 2 and str(space) in err and "'lr'" in err


def test_resume_with_other_settings_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hpcdlrm.sweep.config import SweepConfig
    from hpcdlrm.sweep.optim import DEFAULT_OPTIMIZER
    from hpcdlrm.sweep.records import SweepInfo
    from hpcdlrm.sweep.space import load_space
    from hpcdlrm.sweep.store import Store

    out = tmp_path / "s"
    cfg = SweepConfig(out=str(out), space=load_space().to_dict(), target_auc=0.79, entry=SURROGATE_ENTRY)
    with Store(out) as st:
        st.init_sweep(SweepInfo("s", [], cfg.space, cfg.optimizer, cfg.objective, 0.79, 0.0), cfg.to_dict())
    rc, err = run_main(["--out", str(out), "--optimizer", "CMA", *SURR], capsys)
    assert rc == 2 and f"optimizer: stored '{DEFAULT_OPTIMIZER}', now 'CMA'" in err and "new --out" in err


def test_a_sweep_started_on_an_earlier_default_space_is_told_which_file_resumes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hpcdlrm.sweep.space import DEFAULT_SPACE
    from hpcdlrm.sweep.store import load_sweep

    old = DEFAULT_SPACE.parent / "space_one_lr.toml"  # the default before the lr got a range per optimizer
    out = tmp_path / "s"
    common = ["--out", str(out), "--target-auc", "0.79", "--parallel", "1", *SURR]
    assert run_main([*common, "--space", str(old), "--budget", "1"], capsys)[0] == 0
    rc, err = run_main([*common, "--budget", "2"], capsys)  # as a user who started it before the change
    assert rc == 2 and err.count("\n") == 1
    assert f"space: stored {old}, now {DEFAULT_SPACE}" in err and f"(add --space {old})" in err
    assert len(err) < 400  # the files, not the two spaces written out
    assert len(load_sweep(out).trials) == 1  # the refusal touched nothing
    assert run_main([*common, "--space", str(old), "--budget", "2"], capsys)[0] == 0  # with it, it resumes
    assert len(load_sweep(out).trials) == 2


def test_resume_without_optimizer_keeps_the_stored_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A sweep started under another optimizer (an older default: TwoPointsDE) resumes with the same
    # command without --optimizer; it is not refused, and goes on with the optimizer it started with.
    from hpcdlrm.sweep.__main__ import _stored_config
    from hpcdlrm.sweep.optim import DEFAULT_OPTIMIZER
    from hpcdlrm.sweep.store import load_sweep

    assert DEFAULT_OPTIMIZER != "TwoPointsDE"
    out = tmp_path / "s"
    common = ["--out", str(out), "--target-auc", "0.79", "--parallel", "1", *SURR]
    rc, err = run_main([*common, "--budget", "1", "--optimizer", "TwoPointsDE"], capsys)
    assert rc == 0, err
    rc, err = run_main([*common, "--budget", "2"], capsys)
    assert rc == 0, err
    data = load_sweep(str(out))
    assert data.info.optimizer == "TwoPointsDE" and len(data.trials) == 2, data.info
    assert _stored_config(out).optimizer == "TwoPointsDE"  # what the second run drove with, stored again


def test_status_of_a_non_sweep_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run_main(["status", str(tmp_path)], capsys)
    assert rc == 2 and "not a sweep directory" in err


def test_space_subcommand_prints_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["space"]) == 0
    out = capsys.readouterr().out
    assert "[lr]" in out and 'kind = "log"' in out


def test_help_lists_the_documented_flags() -> None:
    text = _parser().format_help()
    for flag in ("--partition", "--nodes", "--tasks-per-node", "--cpus-per-task", "--time", "--budget",
                 "--parallel", "--space", "--optimizer", "--objective", "--target-auc", "--data", "--out",
                 "--executor", "--seed", "--max-failures", "--median-stopping", "--export"):
        assert flag in text
    assert isinstance(_parser(), argparse.ArgumentParser)


# ------------------------------------------------------------------ every trial's TrainConfig, checked first
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hpcdlrm.data.synth import ClickModelConfig, generate

    d = tmp_path_factory.mktemp("tiny")
    generate(d, 4096, eval_rows=1024, seed=1, model=ClickModelConfig(table_sizes=(5, 7, 11) + (3,) * 23))
    return d


def space_file(tmp_path: Path, edit: tuple[str, ...]) -> Path:
    """The default space with texts replaced (pairs: old, new)."""
    from hpcdlrm.sweep.space import DEFAULT_SPACE

    text = DEFAULT_SPACE.read_text()
    for old, new in zip(edit[::2], edit[1::2]):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("edit, words", [
    (("[decay_steps]", "[decay_step]"), ["parameter 'decay_step'", "--decay-step is not a train flag",
                                          "did you mean --decay-steps?"]),
    (("[warmup_steps]", '[warmup_steps]\nflag = "--learning-rate"'),
     ["parameter 'warmup_steps'", "--learning-rate is not a train flag"]),
    (('choices = ["sgd", "lamb"]', 'choices = ["sgd", "lamb", "adam"]'),
     ["parameter 'lr': ranges must name each choice of 'dense_optimizer' once"]),
    (('choices = ["sgd", "lamb"]', 'choices = ["sgd", "lamb", "adam"]',
      'lamb = [0.001, 0.1] }', 'lamb = [0.001, 0.1], adam = [0.001, 0.1] }'),
     ["parameter 'dense_optimizer' = 'adam'", "--dense-optimizer: 'adam' is not one of"]),
    (('choices = [1024, 2048, 4096, 8192]', 'choices = [1024, 2048.5, 4096, 8192]'),
     ["parameter 'batch_size' = 2048.5", "--batch-size: expected int"]),
    (("[lr]", '[lr]\nflag = "--max-time"'), ["parameter 'lr'", "--max-time is set by the sweep"]),
])
def test_a_space_the_trainer_would_refuse_is_one_error_before_any_trial(
        tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str],
        words: list[str]) -> None:
    space = space_file(tmp_path, edit)
    out = tmp_path / "sweep"
    rc, err = run_main(["--space", str(space), "--data", str(tiny_data), "--target-auc", "0.6", "--out", str(out),
                        "--no-report"], capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"error: {space}: "), err
    for w in words:
        assert w in err, err
    assert "Traceback" not in err and not out.exists()  # no sweep dir, no trial directory


@pytest.mark.parametrize("train, words", [
    (["--lr", "0.5"], ["--lr collides with the swept parameter 'lr'"]),
    (["--sparse-lr", "5"], ["--sparse-lr collides with the swept parameter 'sparse_lr'"]),
    (["--max-time", "100"], ["--max-time is set by the sweep", "--time"]),
    (["--out", "x"], ["--out is set by the sweep"]),
    (["--max-samplez", "20000"], ["unrecognized arguments: --max-samplez 20000"]),
    (["--max-samples", "0"], ["--max-samples: must be a positive number, got 0"]),
    (["--sharding", "diagonal"], ["--sharding: invalid choice: 'diagonal'"]),
    (["--epochs"], ["--epochs: expected one argument"]),
])
def test_bad_train_flags_after_the_double_dash_are_one_error_before_any_trial(
        tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str], train: list[str],
        words: list[str]) -> None:
    out = tmp_path / "sweep"
    rc, err = run_main(["--data", str(tiny_data), "--target-auc", "0.6", "--out", str(out), "--no-report", "--",
                        *train], capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err, err
    assert not out.exists()


def test_train_flags_are_parsed_once_with_the_trainers_parser(tmp_path: Path, tiny_data: Path) -> None:
    from hpcdlrm.sweep.template import TrialTemplate

    a = _parser().parse_args(["--data", str(tiny_data), "--target-auc", "0.6", "--out", str(tmp_path)])
    cfg, space = build_config(a, ["--epochs", "1", "--no-self-interaction", "--sharding", "table"])
    tpl = TrialTemplate.build(cfg, space)
    c = tpl.config(space.defaults(), out=str(tmp_path / "run"), max_time=30.0)
    assert (c.epochs, c.self_interaction, c.sharding) == (1.0, False, "table")  # typed by the train's parser
    assert (c.data, c.out, c.max_time, c.target_auc, c.seed) == (str(tiny_data), str(tmp_path / "run"), 30.0, 0.6, 0)
    assert c.sparse_lr == pytest.approx(space.defaults()["sparse_lr"])
    assert c.threads == cfg.cpus_per_task


# ------------------------------------------------------------------ refusals that touch nothing (issue 13)
def listing(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_out_that_is_a_dataset_or_a_file_is_refused(tmp_path: Path, tiny_data: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = listing(tiny_data)
    rc, err = run_main(["--out", str(tiny_data), *SURR], capsys)
    assert rc == 2 and err.count("\n") == 1 and f"--out {tiny_data}: is a dataset directory" in err, err
    assert listing(tiny_data) == before
    f = tmp_path / "afile"
    f.write_text("x")
    rc, err = run_main(["--out", str(f), *SURR], capsys)
    assert rc == 2 and "exists and is not a directory" in err and f.read_text() == "x"


def test_space_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["space", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "python -m hpcdlrm.sweep space" in out and "--space FILE" in out and "[lr]" not in out


def test_no_answering_slurm_controller_is_one_line_before_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import os

    fake = tmp_path / "bin"
    fake.mkdir()
    for name, body in (("sbatch", "exit 1"), ("squeue", "exit 1"),
                       ("scontrol", 'echo "Slurmctld(primary) at ctl is DOWN"; exit 1')):
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    out = tmp_path / "sweep"
    rc, err = run_main(["--partition", "xeon", "--out", str(out), *SURR], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert "Slurm controller not answering" in err and "is DOWN" in err and "--executor local" in err
    assert not out.exists()  # no store, no trial


@pytest.mark.parametrize("store", ["missing", "empty", "no sweep record"])
def test_trials_without_a_usable_store_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   store: str) -> None:
    out = tmp_path / "s"
    run = out / "trials" / "0001" / "run"
    run.mkdir(parents=True)
    (run / "result.json").write_text('{"status": "completed", "best_auc": 0.7}')
    if store == "empty":
        (out / "sweep.sqlite").write_bytes(b"")
    elif store == "no sweep record":
        from hpcdlrm.sweep.store import Store

        Store(out).close()
    before = listing(out)
    rc, err = run_main(["--out", str(out), *SURR], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert f"{out / 'sweep.sqlite'}:" in err and "1 trial directories" in err and "rebuild" in err
    assert listing(out) == before  # not one byte written
