"""``python -m hpcdlrm.bench train [--bf16] [--json]``: training throughput END TO END from HDF5 shards.

Kaggle preset (bottom 13-512-256-64-16, top 512-256-1, dot interaction, dim 16), 26 tables of 100k
rows, global batch 2048, one process. A synthetic dataset with those table sizes is generated in a
temporary directory (or ``--data DIR`` reuses one). After ``--warmup`` steps, each of ``--steps``
steps is timed from the loader's ``next()`` to the end of the optimizer update; the figure is the
median step (plus the mean rate), with the time split into loader / forward / backward / all-reduce /
optimizer so it is clear where it goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ._util import emit


def _dataset(args: argparse.Namespace, tmp: str) -> str:
    if args.data:
        return args.data
    from ..data.synth import ClickModelConfig, generate  # noqa: PLC0415

    out = Path(tmp) / "bench-train"
    t = time.perf_counter()
    generate(out, args.rows, eval_rows=1000, seed=0, model=ClickModelConfig(table_sizes=(args.table_rows,) * 26))
    if not args.json:
        print(f"generated {args.rows:,} rows with 26 x {args.table_rows:,}-row tables in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
    return str(out)


def _measure(data: str, args: argparse.Namespace) -> dict[str, Any]:
    from ..data import RankLoader, open_dataset  # noqa: PLC0415
    from ..train.config import TrainConfig  # noqa: PLC0415
    from ..train.distributed import Comm  # noqa: PLC0415
    from ..train.loop import Engine  # noqa: PLC0415

    cfg = TrainConfig(data=data, out="", preset="kaggle", batch_size=args.batch_size, bf16=args.bf16,
                      dense_optimizer=args.dense_optimizer, sparse_optimizer=args.sparse_optimizer, lr=0.01)
    ds = open_dataset(data)
    engine = Engine(cfg, Comm(), list(ds.table_sizes))
    loader = RankLoader(ds, split="train", rank=0, world_size=1, global_batch_size=args.batch_size,
                        seed=0, shuffle=True, drop_last=True)

    def batches():  # noqa: ANN202
        epoch = 0
        while True:
            yield from loader.epoch(epoch)
            epoch += 1

    it = batches()
    for step in range(args.warmup):
        engine.step(next(it), step, (0.0, 0.0))
    engine.timings = {}
    times, cpu, load = [], [], 0.0
    for step in range(args.steps):
        c0, t0 = time.process_time(), time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        engine.step(batch, args.warmup + step, (0.0, 0.0))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        load += t1 - t0
    phases = {"loader": load, **engine.timings}
    if args.profile:
        _profile(engine, it, args.warmup + args.steps)
    return {"median_s": statistics.median(times), "times": times, "cpu_s": statistics.median(cpu),
            "phases_ms": {k: round(1e3 * v / args.steps, 2) for k, v in phases.items()}}


def _profile(engine: Any, it: Any, step: int, steps: int = 5) -> None:
    """The top operators of a few more steps (torch.profiler): which kernels the time goes to."""
    from torch.profiler import profile  # noqa: PLC0415

    with profile() as prof:
        for i in range(steps):
            engine.step(next(it), step + i, (0.0, 0.0))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20), flush=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m hpcdlrm.bench train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the MLPs and interaction")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--data", help="reuse this dataset instead of generating one")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the generated dataset")
    ap.add_argument("--table-rows", type=int, default=100_000, help="rows of each of the 26 tables")
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=60, help="timed steps")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--dense-optimizer", default="sgd", choices=("sgd", "adagrad", "lamb"))
    ap.add_argument("--sparse-optimizer", default="sgd", choices=("sgd", "rowwise_adagrad"))
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler's top operators")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="hpcdlrm-bench-") as tmp:
        data = _dataset(args, tmp)
        m = _measure(data, args)
    rate = args.batch_size / m["median_s"]
    mean_rate = args.batch_size * len(m["times"]) / sum(m["times"])
    dtype = "bf16" if args.bf16 else "fp32"
    from ..train.distributed import bf16_native  # noqa: PLC0415

    # CPU seconds per step (all threads) and the load average show how shared the machine was.
    emit("train_samples_per_s", round(rate, 1), "samples/s", args.json, dtype=dtype,
         mean_samples_per_s=round(mean_rate, 1), median_step_ms=round(1e3 * m["median_s"], 2),
         batch=args.batch_size, threads=torch.get_num_threads(), steps=args.steps,
         optimizers=f"{args.dense_optimizer}/{args.sparse_optimizer}", cpu_ms_per_step=round(1e3 * m["cpu_s"], 2),
         load_avg_1m=round(os.getloadavg()[0], 2), cpus=os.cpu_count(), bf16_native=bf16_native())
    for phase, ms in m["phases_ms"].items():
        emit(f"step_{phase}_ms", ms, "ms/step", args.json, dtype=dtype)
    return 0
