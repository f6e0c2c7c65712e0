"""Live reports: the driver's hook rebuilds SWEEP_DIR/report in a child process, throttled, one at a time,
and a failing or stuck report never reaches the sweep."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from hpcdlrm.sweep.live import LiveReport


class Scripted(LiveReport):
    """The real runner with a stand-in child command (the real one is exercised by the CLI tests)."""

    def __init__(self, sweep_dir: Path, code: str, **kw: float) -> None:
        super().__init__(sweep_dir, **kw)
        self.code = code

    def _cmd(self) -> list[str]:
        return [sys.executable, "-c", self.code]


def wait_idle(live: LiveReport, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while live._busy():
        assert time.monotonic() < end, "refresh never ended"
        time.sleep(0.05)


def test_refreshes_are_throttled_and_never_overlap(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    live = Scripted(tmp_path, f"import time; time.sleep(0.3); open({str(runs)!r}, 'a').write('x')",
                    min_interval_s=1.0)
    for _ in range(3):  # three trials end at once: one refresh now, the rest folded into one later
        live()
        if live.proc is not None:
            first = live.proc
    assert live.proc is first and live.pending  # busy: the later two are remembered, not started
    wait_idle(live)
    live.tick()
    assert live.proc is None and live.pending  # the interval has not passed yet
    time.sleep(1.0)
    live.tick()
    assert live.proc is not None and not live.pending
    wait_idle(live)
    assert runs.read_text() == "xx"
    live.tick()  # nothing pending: no third run
    assert live.proc is None


def test_a_failing_report_is_logged_not_raised(tmp_path: Path) -> None:
    live = Scripted(tmp_path, "import sys; print('boom'); sys.exit(3)", min_interval_s=0.0)
    live()
    wait_idle(live)
    assert live.final() is False
    assert "boom" in (tmp_path / "report.log").read_text()


def test_a_stuck_report_is_killed_and_final_still_runs(tmp_path: Path) -> None:
    live = Scripted(tmp_path, "import time; time.sleep(60)", min_interval_s=0.0, timeout_s=0.5)
    live()
    stuck = live.proc
    time.sleep(0.6)
    assert live._busy() is False and stuck is not None and stuck.poll() is not None  # killed
    live.code = "pass"
    assert live.final() is True


def test_the_real_report_command_writes_the_report(tmp_path: Path) -> None:
    from test_report_build import store_sweep  # noqa: PLC0415

    from hpcdlrm.report.demo import fake_sweep  # noqa: PLC0415

    sweep = tmp_path / "sweep"
    store_sweep(sweep, fake_sweep(6, 5, seed=1))
    live = LiveReport(sweep, min_interval_s=0.0)
    assert live.final() is True
    assert (sweep / "report" / "convergence.png").stat().st_size > 0
    assert "- trials: 6" in (sweep / "report" / "index.md").read_text()
