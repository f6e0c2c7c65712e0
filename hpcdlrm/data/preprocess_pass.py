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
from typing import Any, Callable, Iterator, Protocol

from ..errors import DataError
from .criteo import Block, parse_block
from .preprocess_io import LineBlocks, Progress, Ranks, Source, out_paths
from .preprocess_plan import Piece, Plan, PreprocessConfig, ShardSpec, assign

GZ_WEIGHT = 3.0  # a compressed byte is about three plain ones of work (Criteo compresses ~3x)
MAX_EXAMPLES = 10
_DEPTH = 4  # blocks in flight with a thread pool: enough to keep a few workers busy, ~5 MiB of copies


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


class Shard(Protocol):
    """What a pass does with one shard it wants. ``work`` runs on the parser threads (any order);
    ``add`` gets its results in input order, on the calling thread; ``at`` is the block's first line
    within the shard (known before parsing, so a worker may place its rows)."""

    def work(self, data: Any, start: int, end: int | None, at: int) -> Block: ...

    def add(self, blk: Block, at: int) -> None: ...

    def finish(self, lines: int, last: bool) -> dict[str, Any] | Future[dict[str, Any]]: ...


# visit(spec, limit, first_line): a Shard to feed, or the record of a shard to skip unparsed (its "lines").
Visit = Callable[[ShardSpec, int, int], "Shard | dict[str, Any]"]


@dataclass
class _Part:  # one block of a shard, parsing (or parsed)
    shard: Shard
    result: Future[Block]
    at: int
    lines: int


@dataclass
class _End:  # the shard's lines are all handed out
    shard: Shard
    spec: ShardSpec
    first_line: int
    lines: int
    last: bool


def _tasks(job: Job, blocks: LineBlocks, specs: list[ShardSpec], first_line: int,
           visit: Visit) -> Iterator[_Part | _End | dict[str, Any]]:
    """The piece's work in input order, produced lazily: parse tasks submitted as the consumer makes
    room, so parsing runs ahead across shard ends instead of draining at each one."""
    line = first_line
    for spec, limit in _shards(specs, blocks, job.cfg.chunk_rows):
        got = visit(spec, limit, line)
        if isinstance(got, dict):  # done earlier, or not needed by this pass: skip its lines
            n = blocks.skip(got["lines"])
            if n != got["lines"]:
                raise DataError(f"{blocks.src.path}: {n} lines from line {line} where {got['lines']} were "
                                "recorded; did the file change?")
            line += n
            yield got
            continue
        taken = 0
        while taken < limit and (b := blocks.take(limit - taken)) is not None:
            buf, start, end, n = b
            if job.pool is None:  # parse now, in place: the reader's buffer moves on at the next take
                done: Future[Block] = Future()
                done.set_result(got.work(buf, start, end, taken))
                yield _Part(got, done, taken, n)  # type: ignore[arg-type]
            else:  # a copy: the worker may still read it after the reader moved on
                data = bytes(memoryview(buf)[start:end])
                yield _Part(got, job.pool.submit(got.work, data, 0, None, taken), taken, n)  # type: ignore[arg-type]
            taken += n
        yield _End(got, spec, line, taken, spec.lines is None and blocks.at_end())
        line += taken


def walk_piece(job: Job, piece: Piece, specs: list[ShardSpec],
               visit: Visit) -> list[dict[str, Any] | Future[dict[str, Any]]]:
    """Read one piece once, shard after shard: ``visit`` says for each shard whether to skip it (its
    record) or feed its blocks to a :class:`Shard`, whose ``finish`` gives the record (or a Future of
    it). Records come in input order and hold at least the shard's line count, "lines"."""
    f = job.plan.inputs[piece.file]
    records: list[dict[str, Any] | Future[dict[str, Any]]] = []
    with Source(f.path, f.gz, piece.start, piece.end) as src:
        blocks = LineBlocks(src, job.cfg.block_bytes)
        tasks = _tasks(job, blocks, specs, piece.first_line, visit)
        queue: deque[_Part | _End | dict[str, Any]] = deque()
        in_flight = 0
        while True:
            while in_flight <= (_DEPTH if job.pool else 0) and (t := next(tasks, None)) is not None:
                queue.append(t)
                in_flight += isinstance(t, _Part)
            if not queue:
                break
            t = queue.popleft()
            if isinstance(t, _Part):
                in_flight -= 1
                blk = t.result.result()
                if blk.lines != t.lines:
                    raise DataError(f"{f.path}: the parser saw {blk.lines} lines in a block of {t.lines}")
                t.shard.add(blk, t.at)
                job.progress.add(blk.lines, src.position())
            elif isinstance(t, _End):
                if t.spec.lines is not None and t.lines != t.spec.lines:
                    raise DataError(f"{f.path}: {t.lines} lines from line {t.first_line} where the count pass "
                                    f"found {t.spec.lines}; did the file change?")
                records.append(t.shard.finish(t.lines, t.last))
            else:
                records.append(t)
    job.progress.piece_done(piece.end - piece.start)
    return records


class Tallied:
    """Base of a Shard: parsing, and bad-line accounting (counts by reason, the first examples with
    file:line, and the error at the first bad line under --strict)."""

    def __init__(self, job: Job, spec: ShardSpec, first_line: int) -> None:
        self.job, self.spec, self.first_line = job, spec, first_line
        self.path = job.plan.inputs[job.plan.pieces[spec.piece].file].path
        self.tally = Tally()

    def work(self, data: Any, start: int, end: int | None, at: int) -> Block:
        return parse_block(data, start, end, MAX_EXAMPLES)

    def count(self, blk: Block) -> None:
        tally = self.tally
        at = self.first_line + tally.lines
        for reason, c in blk.bad.items():
            tally.bad[reason] = tally.bad.get(reason, 0) + c
        for ex in blk.examples[: MAX_EXAMPLES - len(tally.examples)]:
            tally.examples.append([f"{self.path}:{at + ex.line - 1}", ex.reason, ex.detail])
        if self.job.cfg.strict and blk.examples:
            ex = blk.examples[0]
            err = DataError(f"{self.path}:{at + ex.line - 1}: bad line ({ex.reason}: {ex.detail}); "
                            "--strict stops at the first")
            err.order = (self.spec.piece, at + ex.line - 1)  # type: ignore[attr-defined]
            raise err
        tally.lines += blk.lines


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


def record_path(out: str, name: str) -> Path:
    return out_paths(out)["done"] / f"{name}.json"


def load_record(out: str, name: str) -> dict[str, Any] | None:
    """The record of a finished shard; None if there is none, or its shard file is gone or not the size
    recorded (shards are not fsync'd: after a machine crash a file can survive its data, cut short)."""
    p = record_path(out, name)
    if not p.exists():
        return None
    rec = json.loads(p.read_text())
    if rec["rows"]:
        shard = Path(out) / name
        if not shard.exists() or shard.stat().st_size != rec.get("bytes", shard.stat().st_size):
            return None
    return rec


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
