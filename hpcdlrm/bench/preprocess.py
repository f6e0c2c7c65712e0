"""Preprocessing throughput on a generated Criteo-format TSV (one process).

    python -m hpcdlrm.bench preprocess [--json] [--rows N] [--min-count C] [--repeat K]

Writes N realistic rows (labels 25% positive; dense counts heavy-tailed with 20% missing and some
negatives; categoricals 8 hex digits drawn Zipf-like with 10% missing) to a temporary directory once,
then times, best of ``--repeat``:

- ``preprocess_rows_per_s``: the whole command on 1 rank (sniff, line count, parse, encode, HDF5 write),
  wall clock, with 1 parser thread and with as many as this process has CPUs (``cpu_rows_per_s``: the
  same rows over the process's CPU time, all threads together);
- ``parse_rows_per_s``: :func:`parse_block` alone over the file in memory;
- ``arrow_read_rows_per_s``: pyarrow's CSV reader alone (4 MiB at a time, the parser's column types),
  with ``use_threads`` False and True. The preprocessor calls it with False (so invalid rows keep their
  line numbers) and runs blocks on a thread pool of its own instead.

On a shared machine wall-clock figures move with the load; CPU-time figures less so.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..data.criteo import NAMES, parse_block, read_table
from ..data.preprocess import PreprocessConfig, run
from ..data.preprocess_pass import threads_for
from ._util import emit


def write_criteo_tsv(path: Path, rows: int, seed: int = 0, chunk: int = 250_000) -> int:
    """Write ``rows`` Criteo-format lines to ``path``; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    pool = np.array([f"{v:08x}" for v in rng.integers(0, 2**32, 200_000).tolist()])
    with pacsv.CSVWriter(str(path), _schema(), write_options=pacsv.WriteOptions(
            include_header=False, delimiter="\t", quoting_style="none")) as w:
        for a in range(0, rows, chunk):
            w.write_table(_chunk(rng, pool, min(chunk, rows - a)))
    return path.stat().st_size


def _schema() -> pa.Schema:
    return pa.schema([("label", pa.int8())] + [(n, pa.int64()) for n in NAMES[1:14]] + [(n, pa.string()) for n in NAMES[14:]])


def _chunk(rng: np.random.Generator, pool: np.ndarray, n: int) -> pa.Table:
    cols: list[pa.Array] = [pa.array((rng.random(n) < 0.25).astype(np.int8))]
    for j in range(13):
        v = np.floor(rng.pareto(1.2, n) * (3 + 40 * j)).astype(np.int64) - (j == 1) * 3
        cols.append(pa.array(v, mask=rng.random(n) < 0.2))
    for j in range(26):
        idx = (np.minimum(rng.zipf(1.2, n), 1 << 20) * (j + 1) + 7919 * j) % len(pool)
        cols.append(pa.array(np.where(rng.random(n) < 0.1, "", pool[idx])))
    return pa.Table.from_arrays(cols, schema=_schema())


def _best(fn: Callable[[], None], repeat: int) -> tuple[float, float]:
    """Best (smallest) wall and CPU seconds over ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def _arrow_read(data: bytes, threads: bool) -> None:
    for a, b in _blocks(data, 1 << 22):
        read_table(memoryview(data)[a:b], use_threads=threads)


def _blocks(data: bytes, size: int) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos < len(data):
        end = data.rfind(b"\n", pos, pos + size) + 1 or len(data)
        out.append((pos, end))
        pos = end
    return out


def _parse_all(data: bytes, block: int) -> None:
    for a, b in _blocks(data, block):
        parse_block(data, a, b)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m hpcdlrm.bench preprocess", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--min-count", type=int, help="time vocabulary mode (two passes) instead of hashing")
    ap.add_argument("--repeat", type=int, default=2, help="runs per figure; the best is reported")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hpcdlrm-bench-") as tmp:
        src = Path(tmp) / "train.txt"
        size = write_criteo_tsv(src, a.rows)
        mode = {"min_count": a.min_count} if a.min_count else {"max_ind_range": 10_000_000}
        n = 0

        def preprocess(threads: int) -> None:
            nonlocal n
            out = Path(tmp) / f"out{time.monotonic_ns()}"
            m = run(PreprocessConfig(inputs=(str(src),), out=str(out), format="kaggle", threads=threads, **mode))  # type: ignore[arg-type]
            n = m.source["lines"]
            shutil.rmtree(out)

        extra = {"rows": a.rows, "bytes_per_row": round(size / a.rows, 1), "mode": "vocab" if a.min_count else "hash"}
        for threads in (1, threads_for(0, 1)):
            wall, cpu = _best(lambda: preprocess(threads), a.repeat)
            emit("preprocess_rows_per_s", n / wall, "rows/s", a.json, threads=threads, cpu_rows_per_s=round(n / cpu), **extra)
            if threads_for(0, 1) == 1:
                break
        data = src.read_bytes()
        wall, cpu = _best(lambda: _parse_all(data, PreprocessConfig.block_bytes), a.repeat)
        emit("parse_rows_per_s", n / wall, "rows/s", a.json, cpu_rows_per_s=round(n / cpu))
        for threads in (False, True):
            wall, cpu = _best(lambda: _arrow_read(data, threads), a.repeat)
            emit("arrow_read_rows_per_s", n / wall, "rows/s", a.json, use_threads=threads, cpu_rows_per_s=round(n / cpu))
    return 0
