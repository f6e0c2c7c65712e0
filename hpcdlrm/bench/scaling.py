"""``python -m hpcdlrm.bench scaling``: where a hybrid-parallel step's time goes at 1, 2, 4 real ranks.

    python -m hpcdlrm.bench scaling [--json] [--ranks 1,2,4] [--presets kaggle,mlperf]
        [--shardings table,column] [--backend gloo|mpi] [--no-overlap] [--steps N] [--slurm] [--out FILE]

All configurations of one rank count run in one job of real ranks (``mpiexec -n R`` from the venv,
or with ``--slurm`` ``srun -N2`` across two Slurm nodes: one start-up per job), training on a small
synthetic HDF5 dataset with 26 tables of ``--table-rows`` rows (kaggle 100k, mlperf 20k by default:
the mlperf architecture with Criteo-1TB-sized 40M-row tables does not fit this machine; step cost
hardly depends on table rows because updates are sparse). The global batch is fixed per preset
(strong scaling). After ``--warmup`` steps, ``--steps`` steps are timed per rank: loader
(``next(batches)``), all-to-all forward/backward and all-reduce (timers inside ``Comm``, see
``train.distributed.CommStats``) and compute (the rest of the step). With overlap (the trainer's
default) a collective's time is split into what ran under compute and what the step waited for
(``exposed_ms``); compute is then the step minus the exposed part. Figures are those of the
fastest step, the one other tenants of a shared machine disturbed least (the median rate is kept
too). One-rank runs are also measured at half the batch, and probe the embedding work (gather +
sparse SGD) directly. ``--repeat N`` runs the whole list N times; each configuration keeps its
fastest pass. Workers run with OMP_WAIT_POLICY=PASSIVE unless the environment sets it.

Output: one JSON line per figure (``--json``) and, with ``--out``, one record per configuration in a
JSONL file that ``python -m hpcdlrm.plan calibrate`` and the report read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError, DataError, DistributedError
from ._util import emit

PRESET_BATCH = {"kaggle": 4096, "mlperf": 2048}
# Rows per table: far beyond the caches either way (sparse updates make step cost nearly independent of
# rows), small enough that building mlperf's 128-wide tables takes seconds, not a minute, per job.
PRESET_TABLE_ROWS = {"kaggle": 100_000, "mlperf": 20_000}
PRESET_DIM = {"kaggle": 16, "mlperf": 128}
PHASES = ("forward", "backward", "allreduce", "optimizer")  # Engine.timings: the step minus the loader
MARK = "SCALING-RESULT "


# ------------------------------------------------------------------------------ one job of ranks


def _batches(loader: Any) -> Iterator[Any]:
    epoch = 0
    while True:
        yield from loader.epoch(epoch)
        epoch += 1


def _measure(spec: dict[str, Any], comm: Any, info: Any, threads: int) -> dict[str, Any]:
    """Time ``spec['steps']`` steps of one configuration on this rank: per step, seconds and bytes of
    each phase (the Engine's timers and the Comm's counters)."""
    from ..data import RankLoader, open_dataset  # noqa: PLC0415
    from ..train import distributed  # noqa: PLC0415
    from ..train.config import TrainConfig  # noqa: PLC0415
    from ..train.loop import Engine  # noqa: PLC0415

    g = spec["global_batch"]
    cfg = TrainConfig(data=spec["data"], out="", preset=spec["preset"], sharding=spec["sharding"], batch_size=g,
                      lr=0.01, overlap=spec.get("overlap"), backend=spec.get("backend", "gloo"))
    ds = open_dataset(spec["data"])
    engine = Engine(cfg, comm, list(ds.table_sizes))
    loader = RankLoader(ds, split="train", rank=comm.rank, world_size=comm.world_size, global_batch_size=g,
                        seed=0, shuffle=True, drop_last=True)
    it = _batches(loader)
    try:
        for step in range(spec["warmup"]):
            engine.step(next(it), step, (0.0, 0.0))
        comm.stats, engine.timings = distributed.CommStats(), {}
        comm.barrier()
        per_step = []
        for step in range(spec["steps"]):
            before = {**engine.timings, **comm.stats.as_dict()}
            t0 = time.perf_counter()
            batch = next(it)
            t1 = time.perf_counter()
            engine.step(batch, spec["warmup"] + step, (0.0, 0.0))
            after = {**engine.timings, **comm.stats.as_dict()}
            per_step.append({"wall_s": time.perf_counter() - t0, "loader_s": t1 - t0,
                             **{k: v - before.get(k, 0) for k, v in after.items()}})
    finally:
        it.close()  # stops the loader's prefetch thread
        comm.stats = None
    return {"steps": per_step, "host": info.hostname, "threads": threads}


def embedding_probe(rows: int, dim: int, global_batch: int, repeats: int = 7) -> dict[str, float]:
    """The step's embedding work on this host, measured directly: gather ``global_batch`` x 26 rows of a
    merged (26 x rows, dim) table and apply the trainer's sparse SGD to them (fastest of ``repeats``).
    In the scaling runs this work is inseparable from the MLPs' (both grow with the batch)."""
    import torch  # noqa: PLC0415

    from ..train.optim import make_sparse_optimizer  # noqa: PLC0415

    weight = torch.rand(26 * rows, dim)
    ids = torch.randint(0, 26 * rows, (global_batch * 26,), generator=torch.Generator().manual_seed(0))
    opt, best = make_sparse_optimizer("sgd"), float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = weight.index_select(0, ids)
        opt.step("probe", weight, ids, out, 0.01)  # the gradient's size and layout, not its values, matter
        best = min(best, time.perf_counter() - t0)
    return {"rows": ids.numel(), "dim": dim, "seconds": best}


def worker(specs: list[dict[str, Any]]) -> None:
    """Run inside every rank of one job: measure each configuration in turn (one start-up for all of
    them) and print rank 0's record of all ranks per configuration."""
    import torch  # noqa: PLC0415

    from .. import env  # noqa: PLC0415
    from ..train import distributed  # noqa: PLC0415

    info = env.detect()
    threads = distributed.default_threads(info)
    torch.set_num_threads(threads)
    comm, ok = distributed.init(info, specs[0].get("backend", "gloo")), False
    try:
        for i, spec in enumerate(specs):
            ranks = comm.all_gather_object(_measure(spec, comm, info, threads))
            if comm.is_main:
                # One rank owns the host: probe its embedding work under the same threads and env.
                probe = embedding_probe(spec["table_rows"], PRESET_DIM[spec["preset"]], spec["global_batch"]) \
                    if comm.world_size == 1 else None
                print(MARK + json.dumps({"index": i, "ranks": ranks, "probe": probe}), flush=True)
        ok = True
    finally:
        comm.close(sync=ok)


# ---------------------------------------------------------------------------- the orchestration


def _summary(spec: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """One configuration's record, in ms per step: the phases of its FASTEST step (slowest rank's wall;
    phases averaged over ranks). On a shared machine that is the step other tenants disturbed least;
    the median step rate is kept beside it. Bytes per step and rank."""
    ranks = out["ranks"]
    walls = [max(r["steps"][i]["wall_s"] for r in ranks) for i in range(len(ranks[0]["steps"]))]
    best = min(range(len(walls)), key=walls.__getitem__)

    def at(key: str) -> float:
        return statistics.fmean(r["steps"][best].get(key, 0.0) for r in ranks)

    coll = {k: at(k) for k in ("a2a_fwd_s", "a2a_bwd_s", "allreduce_s")}
    exposed = at("exposed_s")
    busy = sum(at(k) for k in PHASES) - exposed
    wall, med = walls[best], statistics.median(walls)
    last = [r["steps"][-1] for r in ranks]
    return {
        "preset": spec["preset"], "sharding": spec["sharding"] if len(ranks) > 1 else "local",
        "ranks": len(ranks), "hosts": len({r["host"] for r in ranks}), "launcher": spec["launcher"],
        "ranks_per_host": spec["ranks_per_host"], "global_batch": spec["global_batch"],
        "table_rows": spec["table_rows"], "num_tables": 26, "steps": len(walls),
        "threads_per_rank": ranks[0]["threads"],
        "samples_per_s": round(spec["global_batch"] / wall, 1), "step_ms": round(1e3 * wall, 3),
        "median_samples_per_s": round(spec["global_batch"] / med, 1), "compute_ms": round(1e3 * busy, 3),
        "a2a_fwd_ms": round(1e3 * coll["a2a_fwd_s"], 3), "a2a_bwd_ms": round(1e3 * coll["a2a_bwd_s"], 3),
        "a2a_ms": round(1e3 * (coll["a2a_fwd_s"] + coll["a2a_bwd_s"]), 3),
        "allreduce_ms": round(1e3 * coll["allreduce_s"], 3), "loader_ms": round(1e3 * at("loader_s"), 3),
        "comm_ms": round(1e3 * sum(coll.values()), 3), "exposed_ms": round(1e3 * exposed, 3),
        "backend": spec.get("backend", "gloo") if len(ranks) > 1 else None, "overlap": spec.get("overlap"),
        "a2a_fwd_bytes": [s["a2a_fwd_bytes"] for s in last], "a2a_bwd_bytes": [s["a2a_bwd_bytes"] for s in last],
        "allreduce_bytes": last[0]["allreduce_bytes"],
        "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    }


def _launch(ranks: int, slurm: bool) -> list[str]:
    if slurm and ranks > 1:
        return ["srun", "-N2", f"-n{ranks}", "--mpi=pmi2", "--kill-on-bad-exit=1", "-t", "5"]
    return [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks)]


def run_group(specs: list[dict[str, Any]], timeout: float = 600) -> list[dict[str, Any]]:
    """Launch one job of real ranks that measures ``specs`` (same ranks and launcher); their records."""
    first = specs[0]
    cmd = [*_launch(first["ranks"], first["launcher"] == "srun"), sys.executable, "-m", "hpcdlrm.bench.scaling",
           "--worker", json.dumps(specs)]
    threads = max(1, (os.cpu_count() or 1) // first["ranks_per_host"])
    # Passive OpenMP waits: on a shared machine spinning threads lose whole time slices to other
    # tenants (measured here: one rank x 2 threads 1.7x slower than passive under load). Override by env.
    envv = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "OMP_NUM_THREADS": str(threads)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=envv)
    except subprocess.TimeoutExpired as e:
        raise DistributedError(f"{' '.join(cmd[:6])}: no result within {timeout:.0f} s") from e
    found = [json.loads(x[len(MARK):]) for x in proc.stdout.splitlines() if x.startswith(MARK)]
    if proc.returncode != 0 or len(found) != len(specs):
        raise DistributedError(f"{' '.join(cmd[:6])} failed ({proc.returncode}, {len(found)}/{len(specs)} results):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return [{**_summary(specs[f["index"]], f), "probe": f["probe"]} for f in found]


def configs(args: argparse.Namespace, data: dict[str, tuple[str, int]]) -> list[dict[str, Any]]:
    """Every (preset, ranks, sharding) to run; one-rank runs once per preset (plus at half the batch)."""
    out = []
    for preset in args.presets:
        path, table_rows = data[preset]
        g = args.global_batch or PRESET_BATCH[preset]
        for r in args.ranks:
            launcher = "srun" if args.slurm and r > 1 else "mpiexec"
            for sharding in args.shardings if r > 1 else args.shardings[:1]:
                if g % (2 * r):
                    raise ConfigError(f"--ranks {r}: global batch {g} ({preset}) must be a multiple of 2 x ranks")
                batches = [g, g // 2] if r == 1 else [g]
                for batch in batches:
                    out.append({"preset": preset, "ranks": r, "sharding": sharding, "global_batch": batch,
                            "backend": args.backend, "overlap": args.overlap,
                                "data": path, "steps": args.steps, "warmup": args.warmup, "launcher": launcher,
                                "ranks_per_host": r, "table_rows": table_rows})
    return out


def _csv(kind: type, name: str, choices: tuple[str, ...] = ()) -> Any:
    def parse(text: str) -> list[Any]:
        try:
            items = [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected a comma-separated list, got {text!r}") from None
        bad = [x for x in items if (choices and x not in choices) or (kind is int and x < 1)]
        if not items or bad:
            raise argparse.ArgumentTypeError(f"{name}: invalid {bad or text!r}" +
                                             (f"; choose from {','.join(choices)}" if choices else ""))
        return items
    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m hpcdlrm.bench scaling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--ranks", type=_csv(int, "--ranks"), default=[1, 2, 4], help="rank counts [1,2,4]")
    ap.add_argument("--presets", type=_csv(str, "--presets", tuple(PRESET_BATCH)), default=["kaggle", "mlperf"])
    ap.add_argument("--shardings", type=_csv(str, "--shardings", ("table", "column", "vertical")), default=["table", "column"])
    ap.add_argument("--backend", choices=("gloo", "mpi"), default="gloo", help="collectives of multi-rank runs [gloo]")
    ap.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=None,
                    help="the trainer's overlap of communication with compute [the trainer's default]")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per configuration [6]")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first [2]")
    ap.add_argument("--repeat", type=int, default=2,
                    help="passes over all configurations; each keeps its fastest (shared machines) [2]")
    ap.add_argument("--global-batch", type=int, help="global batch of every preset (default: kaggle 4096, mlperf 2048)")
    ap.add_argument("--table-rows", type=int, help="rows of each of the 26 tables (default: kaggle 100k, mlperf 20k)")
    ap.add_argument("--slurm", action="store_true", help="multi-rank runs with srun -N2 across two Slurm nodes")
    ap.add_argument("--data", help="use this dataset (26 equal tables) for every preset instead of generating")
    ap.add_argument("--out", help="append one record per configuration to this JSONL file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.repeat < 1 or (args.table_rows or 1000) < 1000:
        ap.error("--steps and --repeat must be >= 1, --warmup >= 0, --table-rows >= 1000")
    return args


def _datasets(args: argparse.Namespace, tmp: str) -> dict[str, tuple[str, int]]:
    """preset -> (dataset directory, rows per table): one synthetic dataset per table size."""
    if args.data:
        from ..data import open_dataset  # noqa: PLC0415

        sizes = set(open_dataset(args.data).table_sizes)
        if len(sizes) != 1:
            raise DataError(f"--data {args.data}: the cost model's records need equal table sizes, got {sorted(sizes)}")
        return {p: (args.data, sizes.pop()) for p in args.presets}
    from ..data.synth import ClickModelConfig, generate  # noqa: PLC0415

    out: dict[str, tuple[str, int]] = {}
    made: dict[int, str] = {}
    for preset in args.presets:
        rows = args.table_rows or PRESET_TABLE_ROWS[preset]
        if rows not in made:
            g = args.global_batch or PRESET_BATCH[preset]
            made[rows] = str(Path(tmp) / f"tables-{rows}")
            generate(made[rows], g * (args.steps + args.warmup + 1), eval_rows=16, seed=0,
                     model=ClickModelConfig(table_sizes=(rows,) * 26))
        out[preset] = (made[rows], rows)
    return out


def _emit(rec: dict[str, Any], as_json: bool) -> None:
    keys = {k: rec[k] for k in ("preset", "sharding", "ranks", "hosts", "launcher", "global_batch")}
    emit("scaling_samples_per_s", rec["samples_per_s"], "samples/s", as_json, **keys,
         threads_per_rank=rec["threads_per_rank"], load_avg_1m=rec["load_avg_1m"])
    for name in ("step", "compute", "a2a_fwd", "a2a_bwd", "allreduce", "comm", "exposed", "loader"):
        emit(f"scaling_{name}_ms", rec[f"{name}_ms"], "ms/step", as_json, **keys, backend=rec["backend"],
             overlap=rec["overlap"])
    emit("scaling_a2a_bytes", max(f + b for f, b in zip(rec["a2a_fwd_bytes"], rec["a2a_bwd_bytes"])),
         "bytes/step (max rank)", as_json, **keys)
    emit("scaling_allreduce_bytes", rec["allreduce_bytes"], "bytes/step", as_json, **keys)


def measure_all(specs: list[dict[str, Any]], repeat: int) -> list[dict[str, Any]]:
    """Every configuration's record: one job per (ranks, launcher) per pass, the fastest pass kept."""
    groups: dict[tuple[int, str], list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault((spec["ranks"], spec["launcher"]), []).append(i)
    best: dict[int, dict[str, Any]] = {}
    for _ in range(repeat):  # passes, not back-to-back repeats: a busy spell hits one copy
        for (ranks, launcher), idx in groups.items():
            print(f"scaling: {len(idx)} configurations on {ranks} ranks ({launcher})", file=sys.stderr, flush=True)
            for i, rec in zip(idx, run_group([specs[i] for i in idx])):
                if i not in best or rec["step_ms"] < best[i]["step_ms"]:
                    best[i] = {**rec, "repeats": repeat}
    records = [best[i] for i in range(len(specs))]
    # Each preset's fastest one-rank embedding probe (per row) goes on all its records.
    probes: dict[str, dict[str, float]] = {}
    for rec in records:
        p, q = rec.pop("probe", None), probes.get(rec["preset"])
        if p and (q is None or p["seconds"] / p["rows"] < q["seconds"] / q["rows"]):
            probes[rec["preset"]] = p
    return [{**rec, "emb_probe": probes[rec["preset"]]} if rec["preset"] in probes else rec for rec in records]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        # Results are printed and the process group is closed: leave without the interpreter's
        # teardown, where gloo's threads were once destroyed mid-exit on a rank ("terminate called
        # without an active exception", 1 CI run in 3) and failed a finished measurement.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    from ..errors import HpcDlrmError  # noqa: PLC0415
    from ..io import append_jsonl  # noqa: PLC0415

    try:
        with tempfile.TemporaryDirectory(prefix="hpcdlrm-scaling-") as tmp, \
                (open(args.out, "a") if args.out else contextlib.nullcontext()) as sink:
            for rec in measure_all(configs(args, _datasets(args, tmp)), args.repeat):
                _emit(rec, args.json)
                if sink is not None:
                    append_jsonl(sink, rec)
    except HpcDlrmError as e:
        print(f"hpcdlrm.bench scaling: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
