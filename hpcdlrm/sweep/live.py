"""Keep ``SWEEP_DIR/report/`` current while the sweep runs: after a trial ends, rebuild the reports in
a child process (``python -m hpcdlrm.report``), at most one at a time and at most every ``min_interval_s``.

A child process, not an import: the report layer comes after the sweep in the flow, its plotting
must never slow or crash the driver, and a stuck report is simply abandoned at the next refresh.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("hpcdlrm.sweep")


class LiveReport:
    """``on_trial_end`` hook for the driver; ``final()`` writes the report once more, synchronously."""

    def __init__(self, sweep_dir: str | Path, *, min_interval_s: float = 30.0, timeout_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.min_interval_s, self.timeout_s, self.clock = min_interval_s, timeout_s, clock
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = -float("inf")
        self.pending = False  # a trial ended while a refresh was running or throttled

    def _cmd(self) -> list[str]:
        return [sys.executable, "-m", "hpcdlrm.report", str(self.sweep_dir)]

    def _busy(self) -> bool:
        if self.proc is None:
            return False
        rc = self.proc.poll()
        if rc is None:
            if self.clock() - self.started < self.timeout_s:
                return True
            self.proc.kill()  # stuck: abandon it, the next one rewrites every file
            self.proc.wait()
            log.warning("report refresh took over %.0f s: killed", self.timeout_s)
        elif rc:
            log.warning("report refresh failed (exit %d): see %s", rc, self._log_path())
        self.proc = None
        return False

    def _log_path(self) -> Path:
        return self.sweep_dir / "report.log"

    def __call__(self, trial: Any = None) -> None:
        """A trial ended: refresh now if allowed, else remember to (``tick`` retries)."""
        self.pending = True
        self.tick()

    def tick(self) -> None:
        """Start a pending refresh once the previous one ended and the interval passed."""
        if not self.pending or self._busy() or self.clock() - self.started < self.min_interval_s:
            return
        self.pending, self.started = False, self.clock()
        with open(self._log_path(), "ab") as out:
            self.proc = subprocess.Popen(self._cmd(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def final(self) -> bool:
        """Wait for a running refresh, then write the final report; True on success."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=max(1.0, self.timeout_s - (self.clock() - self.started)))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        with open(self._log_path(), "ab") as out:
            try:
                rc = subprocess.run(self._cmd(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    timeout=self.timeout_s).returncode
            except subprocess.TimeoutExpired:
                rc = -1
        if rc:
            log.warning("report failed (exit %d): see %s", rc, self._log_path())
        return rc == 0
