"""Criteo Kaggle / Terabyte click logs -> the HDF5 dataset format, in parallel, resumable.

    python -m hpcdlrm.data preprocess --format {kaggle,terabyte} --out DIR
        (--max-ind-range R | --min-count C) [--strict] [--chunk-rows N] [--eval-day D] [--threads T] INPUT...
    mpiexec -n P python -m hpcdlrm.data preprocess ...      (or: srun -n P --mpi=pmi2 python -m ...)

Phases, each shared by all ranks: (1) rank 0 checks the arguments, sniffs every input and records the
arguments in DIR/.preprocess/state.json; (2) the inputs are cut into pieces and their lines counted
(:mod:`.preprocess_plan` says which lines go to which split and shard); (3) with ``--min-count``, the
training rows' categorical values are counted and merged across ranks into a vocabulary; (4) each rank
parses its pieces (:mod:`.preprocess_pass`; blocks on a thread pool when the rank has several CPUs,
the workers placing rows straight into the shard's arrays) while a writer thread writes the previous
shard; (5) rank 0 writes the manifest.

Resuming: the plan, the vocabulary and one small record per finished shard are kept under
DIR/.preprocess/, so rerunning the same command after a crash redoes only missing shards and produces
the same dataset as an uninterrupted run, whatever the rank count. A rerun with different arguments or
changed inputs is refused. Rows keep their input order (no shuffling here; the loader shuffles).

Bad lines are dropped and counted by reason (manifest ``bad_lines``); the first few are printed with
their file:line. With ``--strict`` the first bad line in input order is an error naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..env import detect, mpi_comm
from ..errors import ConfigError, DataError, DistributedError
from ..io import check_out_dir, write_json_atomic
from .criteo import REASONS, SNIFF_BYTES, Block, parse_block, sniff
from .format import MANIFEST, NUM_DENSE, NUM_SPARSE, SPLITS, Manifest, ShardRef, write_manifest, write_shard
from .preprocess_io import Progress, Ranks, count_piece, is_gzip, out_paths, read_head
from .preprocess_pass import (GZ_WEIGHT, MAX_EXAMPLES, Job, Shard, Tallied, done_records, load_record, my_pieces,
                              record_path, summary, threads_for, walk_piece)
from .preprocess_plan import (InputFile, Plan, PreprocessConfig, ShardSpec, assign, day_of, eval_day, make_pieces,
                              nominal_pieces, shard_specs, split_cuts)
from .preprocess_vocab import Encoder, ValueCounter, load_vocab, merge_across_ranks, save_vocab

__all__ = ["PreprocessConfig", "run", "cli"]
STATE_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Phase 1: arguments, inputs, state (rank 0)

def _describe_inputs(cfg: PreprocessConfig) -> list[InputFile]:
    found: list[InputFile] = []
    for given in cfg.inputs:
        path = os.path.abspath(given)
        if not os.path.isfile(path):
            raise DataError(f"{given}: no such file" if not os.path.exists(path) else f"{given}: not a regular file")
        if any(f.path == path for f in found):
            raise ConfigError(f"{given}: given twice")
        line_bytes = sniff(read_head(path, SNIFF_BYTES), given)
        day = day_of(path) if cfg.format == "terabyte" else None
        found.append(InputFile(path, os.path.getsize(path), is_gzip(path), day, line_bytes))
    if cfg.format == "terabyte":  # days in order; the files of one day in the order given
        found.sort(key=lambda f: f.day)  # type: ignore[arg-type, return-value]
    return found


def _claim_out(cfg: PreprocessConfig, state: dict[str, Any]) -> None:
    """Make sure DIR is new, empty, or a run of the very same arguments; record them."""
    p = out_paths(cfg.out)
    if p["state"].exists():
        old = json.loads(p["state"].read_text())
        diff = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in state.items() if old.get(k) != v]
        if diff:
            raise ConfigError(f"{cfg.out} holds a preprocess run with other arguments or inputs "
                              f"({'; '.join(diff)[:500]}); use another --out, or delete it to start over")
    elif p["out"].exists() and any(p["out"].iterdir()):
        raise ConfigError(f"{cfg.out} is not empty and holds no preprocess run; choose an empty or new --out")
    p["done"].mkdir(parents=True, exist_ok=True)
    write_json_atomic(p["state"], state)
    for d in (p["out"], p["state_dir"], p["done"]):  # files half-written by a killed run (no rank writes yet)
        for stale in d.glob(".*.tmp*"):
            stale.unlink()


def _prepare(cfg: PreprocessConfig) -> tuple[list[InputFile], int | None]:
    cfg.validate()
    check_out_dir(cfg.out)
    inputs = _describe_inputs(cfg)
    eval_d = eval_day(inputs, cfg.eval_day) if cfg.format == "terabyte" else None
    _claim_out(cfg, {
        "version": STATE_VERSION, "format": cfg.format, "categorical": cfg.categorical(),
        "chunk_rows": cfg.chunk_rows, "eval_day": eval_d,
        "inputs": [{"path": f.path, "size": f.size, "mtime_ns": os.stat(f.path).st_mtime_ns} for f in inputs]})
    return inputs, eval_d


# ---------------------------------------------------------------------------------------------
# Phase 2: pieces, line counts, shards

def _plan(cfg: PreprocessConfig, inputs: list[InputFile], eval_d: int | None, ranks: Ranks,
          pool: ThreadPoolExecutor | None) -> Plan:
    path = out_paths(cfg.out)["plan"]
    saved = ranks.root(lambda: json.loads(path.read_text()) if path.exists() else None)
    if saved is not None:
        return Plan.from_dict(saved)
    nominal = nominal_pieces(inputs, cfg.chunk_rows)
    # .gz files are decompressed to count their lines only where a split boundary depends on it.
    need = [cfg.format == "kaggle" or inputs[f].day == eval_d for f, _, _ in nominal]
    weights = [(b - a) * ((GZ_WEIGHT if n else 0.0) if inputs[f].gz else 1.0) for (f, a, b), n in zip(nominal, need)]
    mine = assign(weights, ranks.size)[ranks.rank]

    progress = Progress("count", ranks.rank, int(sum(weights[i] for i in mine)))

    def count_one(i: int) -> tuple[int, int, int | None]:
        f = inputs[nominal[i][0]]
        return count_piece(f.path, f.gz, nominal[i][1], nominal[i][2], f.size, need[i])

    def count() -> dict[int, tuple[int, int, int | None]]:
        found = {}
        for i, c in zip(mine, pool.map(count_one, mine) if pool else map(count_one, mine)):
            found[i] = c
            progress.piece_done(int(weights[i]))
            progress.add(c[2] or 0)
        return found

    counted = {i: c for part in ranks.agree(count) for i, c in part.items()}
    summary(ranks, "count", progress)
    pieces = make_pieces(nominal, [counted[i] for i in range(len(nominal))])
    if not pieces:
        raise DataError(f"no lines in the inputs: {', '.join(f.path for f in inputs)}")
    plan = Plan(inputs, pieces, shard_specs(pieces, split_cuts(cfg.format, inputs, pieces, eval_d), cfg.chunk_rows), eval_d)
    ranks.root(lambda: write_json_atomic(path, asdict(plan)))
    return plan


# ---------------------------------------------------------------------------------------------
# Phase 3: vocabulary (--min-count)

def _encoder(cfg: PreprocessConfig, plan: Plan, ranks: Ranks, pool: ThreadPoolExecutor | None) -> Encoder:
    if cfg.max_ind_range is not None:
        return Encoder(max_ind_range=cfg.max_ind_range)
    path = out_paths(cfg.out)["vocab"]
    saved = ranks.root(lambda: load_vocab(path) if path.exists() else None)
    if saved is not None:
        return Encoder(vocab=saved)
    if not any(s.split == "train" for s in plan.specs):
        raise ConfigError("--min-count counts the training rows, and these inputs have none; use --max-ind-range")
    counter = ValueCounter()
    todo = my_pieces(plan, ranks, lambda s: s.split == "train")
    job = Job(cfg, plan, Progress("vocabulary", ranks.rank, sum(p.end - p.start for p, _ in todo)), pool)

    class Count(Tallied):
        def add(self, blk: Block, at: int) -> None:
            self.count(blk)
            counter.add(blk.cat, blk.present)

        def finish(self, lines: int, last: bool) -> dict[str, Any]:
            return {"lines": lines}

    def visit(spec: ShardSpec, limit: int, first_line: int) -> Shard | dict[str, Any]:
        return Count(job, spec, first_line) if spec.split == "train" else {"lines": limit}

    ranks.agree(lambda: [walk_piece(job, piece, specs, visit) for piece, specs in todo])
    vocab = merge_across_ranks(counter, ranks, int(cfg.min_count))  # type: ignore[arg-type]
    ranks.root(lambda: save_vocab(path, vocab))
    summary(ranks, "vocabulary", job.progress)
    return Encoder(vocab=vocab)


# ---------------------------------------------------------------------------------------------
# Phase 4: shards

def _write_shards(cfg: PreprocessConfig, plan: Plan, encoder: Encoder, ranks: Ranks,
                  pool: ThreadPoolExecutor | None) -> list[dict[str, Any]]:
    todo = my_pieces(plan, ranks, lambda s: True)
    job = Job(cfg, plan, Progress("shards", ranks.rank, sum(p.end - p.start for p, _ in todo)), pool)
    # One writer thread: a shard is written (without the GIL, see write_shard) while the next is parsed.
    with ThreadPoolExecutor(1, thread_name_prefix="hpcdlrm-write") as writer:
        writing: list[Future[dict[str, Any]]] = []

        def visit(spec: ShardSpec, limit: int, first_line: int) -> Shard | dict[str, Any]:
            rec = load_record(cfg.out, spec.name)
            return rec if rec is not None else _ShardOut(job, spec, limit, first_line, encoder, writer, writing)

        def work() -> list[dict[str, Any]]:
            records: list[Any] = []
            for piece, specs in todo:
                done = done_records(cfg.out, specs)
                records += done if done is not None else walk_piece(job, piece, specs, visit)
            return [r.result() if isinstance(r, Future) else r for r in records]

        records = sorted((r for part in ranks.agree(work) for r in part), key=lambda r: (r["piece"], r["k"]))
    summary(ranks, "shards", job.progress)
    if cfg.strict and (bad := next((r for r in records if r["bad"]), None)):
        # Written by an earlier run without --strict: its first bad line is still an error now.
        path_line, reason, detail = bad["examples"][0]
        raise DataError(f"{path_line}: bad line ({reason}: {detail}); --strict stops at the first")
    return records


class _ShardOut(Tallied):
    """One output shard. Workers parse, encode and place their rows straight into the shard's arrays,
    at the block's first line (rows <= lines); ``add``, in order, closes the gaps bad lines left."""

    def __init__(self, job: Job, spec: ShardSpec, limit: int, first_line: int, encoder: Encoder,
                 writer: ThreadPoolExecutor, writing: list[Future[dict[str, Any]]]) -> None:
        super().__init__(job, spec, first_line)
        self.encoder, self.writer, self.writing = encoder, writer, writing
        self.arrays = (np.empty(limit, np.float32), np.empty((limit, NUM_DENSE), np.float32),
                       np.empty((limit, NUM_SPARSE), np.int32))

    def work(self, data: Any, start: int, end: int | None, at: int) -> Block:
        blk = parse_block(data, start, end, MAX_EXAMPLES)
        label, dense, sparse = self.arrays
        b = at + len(blk.label)
        label[at:b], dense[at:b] = blk.label, blk.dense
        self.encoder(blk.cat, blk.present, sparse[at:b])
        return blk

    def add(self, blk: Block, at: int) -> None:
        self.count(blk)
        t = self.tally
        a, n = t.rows, len(blk.label)
        if at != a:  # earlier bad lines left a gap; later blocks only write beyond this one's lines
            for x in self.arrays:
                x[a:a + n] = x[at:at + n]
        t.rows, t.positives = a + n, t.positives + float(blk.label.sum())

    def finish(self, lines: int, last: bool) -> Future[dict[str, Any]]:
        t, spec = self.tally, self.spec
        rec = {"name": spec.name, "split": spec.split, "piece": spec.piece, "k": spec.k, "first_line": self.first_line,
               "lines": lines, "rows": t.rows, "positives": t.positives, "bad": t.bad, "examples": t.examples,
               "last": last}
        arrays = tuple(x[:t.rows] for x in self.arrays)
        if self.writing:  # one shard in the writer at a time: memory stays at about two shards
            self.writing[-1].result()
        self.writing.append(self.writer.submit(_write, self.job.cfg.out, rec, arrays))
        return self.writing[-1]


def _write(out: str, rec: dict[str, Any], arrays: tuple[np.ndarray, ...]) -> dict[str, Any]:
    if rec["rows"]:
        write_shard(Path(out) / rec["name"], *arrays)
        rec["bytes"] = os.path.getsize(Path(out) / rec["name"])  # checked on resume (see load_record)
    write_json_atomic(record_path(out, rec["name"]), rec)  # after the shard: a record means a whole shard
    return rec


# ---------------------------------------------------------------------------------------------
# Phase 5: manifest

def _manifest(cfg: PreprocessConfig, plan: Plan, encoder: Encoder, records: list[dict[str, Any]]) -> Manifest:
    splits: dict[str, list[ShardRef]] = {s: [] for s in SPLITS}
    positives = dict.fromkeys(SPLITS, 0.0)
    bad = dict.fromkeys(REASONS, 0)
    for r in records:
        if r["rows"]:
            splits[r["split"]].append(ShardRef(path=r["name"], rows=r["rows"]))
        positives[r["split"]] += r["positives"]
        for reason, c in r["bad"].items():
            bad[reason] += c
    splits = {s: refs for s, refs in splits.items() if refs}
    rows = {s: sum(x.rows for x in refs) for s, refs in splits.items()}
    source = {
        "kind": cfg.format, "files": [f.path for f in plan.inputs], "categorical": cfg.categorical(),
        "split_rule": ("7 consecutive days by line count; days 0-5 train; day 6: first half test, second half val"
                       if cfg.format == "kaggle" else
                       f"day {plan.eval_day}: first half test, second half val; other days train"),
        "days": {f.path: f.day for f in plan.inputs} if cfg.format == "terabyte" else None,
        "eval_day": plan.eval_day, "chunk_rows": cfg.chunk_rows, "lines": sum(r["lines"] for r in records),
        "bad_line_examples": [e for r in records for e in r["examples"]][:MAX_EXAMPLES],
    }
    stats = {"rows": rows, "positive_rate": {s: positives[s] / n for s, n in rows.items()}}
    return Manifest(splits=splits, table_sizes=encoder.table_sizes(), bad_lines=bad, source=source, stats=stats,
                    producer={"command": "preprocess"})


# ---------------------------------------------------------------------------------------------
# Entry points

def run(cfg: PreprocessConfig, comm: Any = None) -> Manifest:
    """Preprocess ``cfg.inputs`` into ``cfg.out`` on the ranks of ``comm`` (None: this process alone).

    Every rank returns the manifest. Raises ConfigError/DataError (on every rank alike) on bad input.
    """
    ranks = Ranks(comm)
    inputs, eval_d = ranks.root(lambda: _prepare(cfg))
    threads = threads_for(cfg.threads, detect().local_world_size if comm is not None else 1)
    with ThreadPoolExecutor(threads) if threads > 1 else nullcontext() as pool:
        plan = _plan(cfg, inputs, eval_d, ranks, pool)
        encoder = _encoder(cfg, plan, ranks, pool)
        records = _write_shards(cfg, plan, encoder, ranks, pool)

    def finish() -> Manifest:
        m = _manifest(cfg, plan, encoder, records)
        write_manifest(cfg.out, m)
        return m

    return ranks.root(finish)


def _world() -> Any:
    """The MPI communicator when launched as several ranks, else None; refuse ranks MPI cannot see."""
    info = detect()
    if info.world_size == 1:
        return None
    comm = mpi_comm()
    if comm is None or comm.Get_size() != info.world_size:
        seen = "no MPI" if comm is None else f"an MPI world of {comm.Get_size()}"
        raise DistributedError(f"launched as {info.world_size} ranks ({info.launcher}) but mpi4py sees {seen}; "
                               "run under mpiexec -n P, or srun --mpi=pmi2")
    return comm


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m hpcdlrm.data preprocess", description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", metavar="INPUT", help="train.txt / day_N files, plain or .gz")
    ap.add_argument("--format", required=True, choices=("kaggle", "terabyte"))
    ap.add_argument("--out", required=True, help="dataset directory (new, empty, or an interrupted run to resume)")
    enc = ap.add_mutually_exclusive_group(required=True)
    enc.add_argument("--max-ind-range", type=int, metavar="R", help="index = hex value mod R; every table has R rows")
    enc.add_argument("--min-count", type=int, metavar="C",
                     help="index = 1 + position among the sorted training values seen >= C times; "
                          "0 = rarer, unseen or missing")
    ap.add_argument("--strict", action="store_true", help="stop at the first bad line instead of counting it")
    ap.add_argument("--chunk-rows", type=int, default=PreprocessConfig.chunk_rows, metavar="N",
                    help="lines per shard at most (memory: about 350 bytes x N per rank: one shard filling, one writing)")
    ap.add_argument("--eval-day", type=int, metavar="D", help="terabyte: the day halved into test/val")
    ap.add_argument("--threads", type=int, default=0, metavar="T",
                    help="parser threads per rank (default: the CPUs of this rank, shared by the ranks of a node)")
    a = ap.parse_args(argv)
    cfg = PreprocessConfig(inputs=tuple(a.inputs), out=a.out, format=a.format, max_ind_range=a.max_ind_range,
                           min_count=a.min_count, strict=a.strict, chunk_rows=a.chunk_rows, eval_day=a.eval_day,
                           threads=a.threads)
    comm = _world()
    m = run(cfg, comm)
    if comm is None or comm.Get_rank() == 0:
        for path_line, reason, detail in m.source["bad_line_examples"][:5]:
            print(f"bad line {path_line}: {reason}: {detail}", file=sys.stderr)
        rows = ", ".join(f"{s} {m.rows(s):,}" for s in m.splits)
        detail = ", ".join(f"{k} {v:,}" for k, v in m.bad_lines.items() if v)
        print(f"wrote {Path(cfg.out) / MANIFEST}: {rows}; {sum(m.bad_lines.values()):,} bad lines"
              f"{f' ({detail})' if detail else ''}")
    return 0
