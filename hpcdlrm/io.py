"""Durable file writes: shared file systems (NFS, Lustre) see a file either complete or not at all."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import ConfigError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds."""
    final = Path(path)
    tmp = final.with_name(f".{final.name}.{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_out_dir(path: str | os.PathLike[str], flag: str = "--out") -> None:
    """ConfigError unless ``path`` is a directory this process may write, or may create.

    Checked before any work so a read-only or mistyped output is one line, not a PermissionError
    traceback half-way through. ``os.access`` also reports a read-only file system (EROFS) to root.
    """
    given = Path(path)
    if given.exists() and not given.is_dir():
        raise ConfigError(f"{flag} {path}: exists and is not a directory")
    probe = given.absolute()
    while not probe.exists():  # the directory that the missing part would be created in
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{flag} {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: cannot write to {probe} (permission denied or read-only file system)")
    # os.access trusts mode bits; some file systems (/proc, sysfs, a full or quota-bound disk) refuse
    # anyway: create and drop a nameless file there to be sure.
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot write to {probe} ({e.strerror or e})") from None


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically, fsync'd (a crash leaves the old file or the new)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())


def append_jsonl(f: Any, obj: dict[str, Any]) -> None:
    """Append one JSON object as a line to an open text file and flush it (readers tail the file).
    Non-finite floats (a diverged run's log loss) are written as null: NaN is not JSON."""
    obj = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in obj.items()}
    f.write(json.dumps(obj, separators=(",", ":")) + "\n")
    f.flush()


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a torn last line (writer killed mid-write) is ignored."""
    out: list[dict[str, Any]] = []
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def cli(main: Callable[[], int]) -> int:
    """Run a command-line entry point; a reader that stops early (``... | head``) ends it quietly with
    128 + SIGPIPE, as Unix tools do, not with a BrokenPipeError traceback."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Python would flush stdout again at exit and fail the same way: point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
