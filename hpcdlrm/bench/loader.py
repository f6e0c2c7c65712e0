"""``python -m hpcdlrm.bench loader [--json] [--data DIR] [--rows N] [--world-size R] [--rank r] ...``

Times one rank reading its share of training epochs (global batch 2048*R, block shuffle) and of an
evaluation pass, from a warm page cache: one untimed epoch first. Without ``--data`` a synthetic dataset
of ``--rows`` rows is generated in a temporary directory (not timed). The consumer only counts rows, so
this is the loader's ceiling, not what training sees.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from ..data import Dataset, RankLoader, open_dataset
from ..data.loader import DEFAULT_BLOCK_ROWS
from ._util import emit

ROW_BYTES = 4 * (1 + 13 + 26)


def _time_epochs(loader: RankLoader, epochs: list[int]) -> tuple[float, int]:
    t, rows = time.perf_counter(), 0
    for e in epochs:
        for batch in loader.epoch(e):
            rows += len(batch)
    return time.perf_counter() - t, rows


def _raw_read(ds: Dataset, split: str) -> float:
    """Bytes/s of plain sequential 4 MiB ``preadv`` calls over the split's files: the machine's ceiling."""
    buf = memoryview(bytearray(4 << 20))
    t, total = time.perf_counter(), 0
    for ref in ds.manifest.splits[split]:
        fd = os.open(ds.directory / ref.path, os.O_RDONLY)
        try:
            off = 0
            while (n := os.preadv(fd, [buf], off)) > 0:
                off += n
            total += off
        finally:
            os.close(fd)
    return total / (time.perf_counter() - t)


def _dataset(args: argparse.Namespace, tmp: str) -> str:
    if args.data:
        return args.data
    from ..data.synth import generate  # noqa: PLC0415 - only when no dataset is given

    out = Path(tmp) / "bench-loader"
    t = time.perf_counter()
    generate(out, args.rows, eval_rows=args.rows // 10, shards=max(1, args.rows // 1_000_000), seed=0)
    if not args.json:
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t:.1f} s", flush=True)
    return str(out)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m hpcdlrm.bench loader", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--data", help="dataset directory (default: generate one in a temporary directory)")
    ap.add_argument("--rows", type=int, default=3_000_000, help="rows to generate without --data")
    ap.add_argument("--world-size", type=int, default=1, help="R: the rank reads 1/R of each global batch")
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--batch-per-rank", type=int, default=2048)
    ap.add_argument("--block-rows", type=int, default=DEFAULT_BLOCK_ROWS)
    ap.add_argument("--prefetch", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ds = open_dataset(_dataset(args, tmp))
        common = {"rank": args.rank, "world_size": args.world_size, "prefetch": args.prefetch}
        train = RankLoader(ds, "train", global_batch_size=args.batch_per_rank * args.world_size, seed=0,
                           block_rows=args.block_rows, **common)
        _time_epochs(train, [0])  # warms the page cache and opens the shards
        raw = _raw_read(ds, "train")
        seconds, rows = _time_epochs(train, list(range(1, args.epochs + 1)))
        extra = {"rank": args.rank, "world_size": args.world_size, "batch_per_rank": args.batch_per_rank,
                 "block_rows": args.block_rows, "prefetch": args.prefetch, "rows": rows}
        emit("loader_train_samples_per_s", round(rows / seconds), "samples/s", args.json,
             gb_per_s=round(rows * ROW_BYTES / seconds / 1e9, 3), **extra)
        # The same bytes copied by plain large sequential reads: how close the loader gets to the machine.
        emit("page_cache_read_samples_per_s", round(raw / ROW_BYTES), "samples/s", args.json,
             gb_per_s=round(raw / 1e9, 3))
        if "val" in ds.splits:
            val = RankLoader(ds, "val", global_batch_size=8 * args.batch_per_rank * args.world_size,
                             shuffle=False, drop_last=False, **common)
            _time_epochs(val, [0])
            seconds, rows = _time_epochs(val, [0] * args.epochs)
            emit("loader_eval_samples_per_s", round(rows / seconds), "samples/s", args.json,
                 rank=args.rank, world_size=args.world_size, batch_per_rank=8 * args.batch_per_rank, rows=rows)
        ds.close()
    return 0
