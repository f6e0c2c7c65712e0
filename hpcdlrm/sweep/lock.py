"""One driver per sweep directory: an exclusive ``flock`` on ``SWEEP_DIR/driver.lock``.

Two drivers on one ``--out`` would both submit, the same points. The sweep and ``sweep rebuild`` hold
the lock for as long as they run; ``status`` and ``report`` only read and take none. The file holds the
holder's host and pid, for the refusal; the kernel drops the lock when the holder dies (even by kill -9).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError

LOCK_FILE = "driver.lock"


@contextlib.contextmanager
def driver_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold SWEEP_DIR's driver lock; ConfigError naming the holder when another process has it."""
    path = Path(sweep_dir) / LOCK_FILE
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().split()
            pid, host = (holder + ["?", "?"])[:2]
            raise ConfigError(f"{sweep_dir} is being run by pid {pid} on host {host}") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {socket.gethostname()}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)  # released: nobody holds it (the file stays; removing it would race a new holder)
