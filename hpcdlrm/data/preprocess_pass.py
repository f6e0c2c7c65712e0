"""One pass over the inputs: each rank reads its pieces once, shard by shard, parsing blocks (with a
few threads when the rank has the CPUs) and accounting bad lines; and the per-shard records that
make a pass resumable."""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import DataError
from .criteo import Block, parse_block
from .preprocess_io import LineBlocks, Progress, Ranks, Source, out_paths
from .preprocess_plan import Piece, Plan, PreprocessConfig, ShardSpec, assign

GZ_WEIGHT = 3.0  # a compressed byte is about three plain ones of work (Criteo compresses ~3x)
MAX_EXAMPLES = 10
_DEPTH = 4  # blocks in flight with a thread pool: enough to keep a few workers busy, ~2 MB of copies


@dataclass
class Job:
    cfg: PreprocessConfig
    plan: Plan
    progress: Progress
    pool: ThreadPoolExecutor | None = None  # None: parse in this thread


@dataclass
class Tally:
    lines: int = 0
    rows: int = 0
    positives: float = 0.0
    bad: dict[str, int] = field(default_factory=dict)
    examples: list[list[Any]] = field(default_factory=list)


def threads_for(requested: int, local_ranks: int) -> int:
    """Parser threads: as requested, else the CPUs this process may use, shared by the ranks on its node."""
    if requested:
        return requested
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpus < (os.cpu_count() or cpus):
        return cpus  # bound by the launcher: these CPUs are this rank's own
    return max(1, cpus // max(1, local_ranks))


def my_pieces(plan: Plan, ranks: Ranks, want: Callable[[ShardSpec], bool]) -> list[tuple[Piece, list[ShardSpec]]]:
    """This rank's share of the pieces that hold wanted shards (longest first, balanced by bytes)."""
    todo = plan.pieces_with(want)
    weights = [(p.end - p.start) * (GZ_WEIGHT if plan.inputs[p.file].gz else 1.0) for p, _ in todo]
    return [todo[i] for i in assign(weights, ranks.size)[ranks.rank]]


def _parse_stream(blocks: LineBlocks, limit: int, pool: ThreadPoolExecutor | None) -> Iterator[Block]:
    """Parsed blocks of the next ``limit`` lines (fewer at the end), in order."""
    taken = 0
    if pool is None:
        while taken < limit and (got := blocks.take(limit - taken)) is not None:
            buf, start, end, _ = got
            blk = parse_block(buf, start, end, MAX_EXAMPLES)
            if blk.lines > limit - taken:  # ran past the limit: cut at its last line (once a shard)
                blk = parse_block(buf, start, start + blocks.cut_after(limit - taken), MAX_EXAMPLES)
            taken += blk.lines
            yield blk
        return
    # Threads: blocks are counted before they are handed out (so none runs past the limit) and copied
    # (the reader's buffer moves on); pyarrow and numpy release the GIL while they work.
    pending: deque[tuple[Future[Block], int]] = deque()
    while True:
        while len(pending) <= _DEPTH and taken < limit and \
                (got := blocks.take(limit - taken, count=True)) is not None:
            buf, start, end, n = got
            pending.append((pool.submit(parse_block, bytes(memoryview(buf)[start:end]), 0, None, MAX_EXAMPLES), n))
            taken += n  # type: ignore[operator]
        if not pending:
            return
        future, n = pending.popleft()
        blk = future.result()
        if blk.lines != n:
            raise DataError(f"{blocks.src.path}: the parser saw {blk.lines} lines in a block of {n}")
        yield blk


def parsed(job: Job, spec: ShardSpec, blocks: LineBlocks, limit: int, first_line: int, tally: Tally) -> Iterator[Block]:
    """Parse up to ``limit`` lines; count bad lines into ``tally``; raise on the first one if strict."""
    path = blocks.src.path
    for blk in _parse_stream(blocks, limit, job.pool):
        at = first_line + tally.lines
        for reason, c in blk.bad.items():
            tally.bad[reason] = tally.bad.get(reason, 0) + c
        for ex in blk.examples[: MAX_EXAMPLES - len(tally.examples)]:
            tally.examples.append([f"{path}:{at + ex.line - 1}", ex.reason, ex.detail])
        if job.cfg.strict and blk.examples:
            ex = blk.examples[0]
            err = DataError(f"{path}:{at + ex.line - 1}: bad line ({ex.reason}: {ex.detail}); --strict stops at the first")
            err.order = (spec.piece, at + ex.line - 1)  # type: ignore[attr-defined]
            raise err
        tally.lines += blk.lines
        job.progress.add(blk.lines, blocks.src.position())
        yield blk


def _shards(specs: list[ShardSpec], blocks: LineBlocks, chunk_rows: int) -> Iterator[tuple[ShardSpec, int]]:
    """(spec, line limit) for each shard of a piece in order; an open .gz run yields shards until EOF."""
    for spec in specs:
        if spec.lines is not None:
            yield spec, spec.lines
            continue
        k = spec.k
        while not blocks.at_end():
            yield ShardSpec(spec.piece, k, spec.split, None), chunk_rows
            k += 1


def walk_piece(job: Job, piece: Piece, specs: list[ShardSpec],
               visit: Callable[[ShardSpec, int, int, LineBlocks], dict[str, Any]]) -> list[dict[str, Any]]:
    """Read one piece once. ``visit(spec, limit, first_line, blocks)`` consumes each shard's lines
    (parsing or skipping them) and returns a record holding at least their count, "lines"."""
    f = job.plan.inputs[piece.file]
    records = []
    with Source(f.path, f.gz, piece.start, piece.end) as src:
        blocks = LineBlocks(src, job.cfg.block_bytes)
        line = piece.first_line
        for spec, limit in _shards(specs, blocks, job.cfg.chunk_rows):
            rec = visit(spec, limit, line, blocks)
            if spec.lines is not None and rec["lines"] != spec.lines:
                raise DataError(f"{f.path}: {rec['lines']} lines from line {line} where the count pass found "
                                f"{spec.lines}; did the file change?")
            records.append(rec)
            line += rec["lines"]
    job.progress.piece_done(piece.end - piece.start)
    return records


def record_path(out: str, name: str) -> Path:
    return out_paths(out)["done"] / f"{name}.json"


def load_record(out: str, name: str) -> dict[str, Any] | None:
    """The record of a finished shard; None if there is none or its shard file was deleted."""
    p = record_path(out, name)
    if not p.exists():
        return None
    rec = json.loads(p.read_text())
    return None if rec["rows"] and not (Path(out) / name).exists() else rec


def done_records(out: str, specs: list[ShardSpec]) -> list[dict[str, Any]] | None:
    """The records of a piece whose shards are all done (an open run: up to its "last"), else None."""
    found = []
    for spec in specs:
        k = spec.k
        while True:
            rec = load_record(out, ShardSpec(spec.piece, k, spec.split, spec.lines).name)
            if rec is None:
                return None
            found.append(rec)
            if spec.lines is not None or rec["last"]:
                break
            k += 1
    return found


def summary(ranks: Ranks, phase: str, progress: Progress) -> None:
    stats = ranks.allgather((progress.lines, progress.seconds()))
    if ranks.rank == 0:
        lines, wall = sum(s[0] for s in stats), max(max(s[1] for s in stats), 1e-9)
        print(f"preprocess {phase}: {lines:,} lines in {wall:.1f} s = {lines / wall:,.0f} lines/s "
              f"({ranks.size} rank{'s' * (ranks.size > 1)}, {lines / wall / ranks.size:,.0f} per rank)",
              file=sys.stderr, flush=True)
