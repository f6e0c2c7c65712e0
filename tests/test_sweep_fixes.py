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
