"""A reader that stops early (``python -m hpcdlrm.plan validate | head -1``) ends the command quietly."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_closed_pipe_is_not_a_traceback() -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is already gone (as `head` is after its lines): every write fails
    try:
        proc = subprocess.run([sys.executable, "-m", "hpcdlrm.plan", "validate"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141, (proc.returncode, proc.stderr)  # 128 + SIGPIPE, as Unix tools end
