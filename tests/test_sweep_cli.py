"""The command line: defaults, one-line errors (exit 2), and what it refuses before touching --out."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hpcdlrm.sweep.__main__ import SURROGATE_ENTRY, _executor, _parser, build_config, main

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
    p = _parser()
    assert _executor(p.parse_args([])) == "local"
    assert _executor(p.parse_args(["--partition", "xeon"])) == "slurm"
    assert _executor(p.parse_args(["--executor", "local", "--partition", "xeon"])) == "local"
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # the driver itself runs under sbatch
    assert _executor(p.parse_args([])) == "slurm"


def test_partitions_and_parallel(tmp_path: Path) -> None:
    a = _parser().parse_args(["--partition", "a,b", "--parallel", "4,2", "--executor", "slurm", *SURR,
                              "--out", str(tmp_path)])
    cfg = build_config(a, [])
    assert cfg.partitions == ["a", "b"] and cfg.parallel == [4, 2] and cfg.num_workers == 6
    assert cfg.target_auc == 0.79 and cfg.time_min == 30.0 and cfg.cpus_per_task == 1
    a = _parser().parse_args(["--partition", "a,b", "--parallel", "4,2,1", "--executor", "slurm", *SURR])
    with pytest.raises(Exception, match="--parallel: give one count per partition"):
        build_config(a, [])


def test_local_defaults_share_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    a = _parser().parse_args(["--parallel", "2", "--tasks-per-node", "2", *SURR, "--out", str(tmp_path)])
    cfg = build_config(a, ["--epochs", "1"])
    assert cfg.executor == "local" and cfg.cpus_per_task == 4 and cfg.budget == 8
    assert cfg.train_args == ["--epochs", "1"] and 0 < cfg.limit_s < cfg.time_min * 60


@pytest.mark.parametrize("argv, words", [
    (["--nodes", "2", "--executor", "local"], ["--nodes 2", "one node"]),
    (["--budget", "0"], ["--budget"]),
    (["--objective", "auc", "--target-auc", "0.4"], ["--target-auc", "(0.5, 1]"]),
    (["--parallel", "x"], ["--parallel", "integers"]),
    (["--optimizer", "NGOpt"], ["NGOpt"]),
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
    from hpcdlrm.sweep.records import SweepInfo
    from hpcdlrm.sweep.space import load_space
    from hpcdlrm.sweep.store import Store

    out = tmp_path / "s"
    cfg = SweepConfig(out=str(out), space=load_space().to_dict(), target_auc=0.79, entry=SURROGATE_ENTRY)
    with Store(out) as st:
        st.init_sweep(SweepInfo("s", [], cfg.space, cfg.optimizer, cfg.objective, 0.79, 0.0), cfg.to_dict())
    rc, err = run_main(["--out", str(out), "--optimizer", "CMA", *SURR], capsys)
    assert rc == 2 and "optimizer: stored 'TwoPointsDE', now 'CMA'" in err and "new --out" in err


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
