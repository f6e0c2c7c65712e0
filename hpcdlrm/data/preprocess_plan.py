"""Which lines of which input go to which split and shard: a plan that depends on the inputs and
``chunk_rows`` only, never on the number of ranks, so any rank count (and a resumed run) writes the
same shards with the same rows in the same order.

Inputs are cut into *pieces*: a plain file into byte ranges of about ``chunk_rows`` lines, aligned to
line starts; a ``.gz`` file is one piece (it can only be read from its start). A piece's lines are then
assigned to splits and cut into shards of at most ``chunk_rows`` lines, named
``<split>-<piece>-<k>.h5``. Line counts come from a counting pass (:func:`count_piece`), except for
``.gz`` Terabyte training days, which need none: they become shards of ``chunk_rows`` lines as read.

Split rules (the reference DLRM convention):

- kaggle: the inputs, concatenated in the order given, are cut by line count into 7 consecutive days
  (the first ``lines % 7`` days one line longer); days 0-5 train; day 6 is halved: first half test
  (the larger half when odd), second half val.
- terabyte: the day of a file is the N in ``day_N`` in its name; several files may share a day (they
  are concatenated in the order given). The *eval day* is ``--eval-day`` if given, else 23 when
  present, else the highest day given when there are several; a single day without ``--eval-day`` is
  refused (it would leave nothing to train on). The eval day is halved into test then val, as above;
  every other day is train.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

KAGGLE_DAYS = 7
TERABYTE_DAYS = 24
_DAY_RE = re.compile(r"day_(\d+)")


@dataclass(frozen=True)
class PreprocessConfig:
    inputs: tuple[str, ...]
    out: str
    format: str  # kaggle | terabyte
    max_ind_range: int | None = None
    min_count: int | None = None
    strict: bool = False
    chunk_rows: int = 1_000_000  # lines per shard at most; bounds memory (~350 bytes a line: one shard filling, one writing)
    eval_day: int | None = None  # terabyte only
    threads: int = 0  # parser threads per rank; 0: the CPUs this rank may use
    # Parse granularity: small enough for the conversions to stay in cache, large enough that the
    # per-block Python (which holds the GIL the parser threads share) is a small part (measured best).
    block_bytes: int = 1 << 20

    def validate(self) -> None:
        if self.format not in ("kaggle", "terabyte"):
            raise ConfigError(f"--format must be kaggle or terabyte, not {self.format!r}")
        if (self.max_ind_range is None) == (self.min_count is None):
            raise ConfigError("give exactly one of --max-ind-range R (hash: value mod R, one pass) and "
                              "--min-count C (vocabulary of training values seen >= C times, two passes)")
        if self.max_ind_range is not None and not 1 <= self.max_ind_range <= 2**31 - 1:
            raise ConfigError(f"--max-ind-range must be in 1..2**31-1 (int32 indices), got {self.max_ind_range}")
        if self.min_count is not None and self.min_count < 1:
            raise ConfigError(f"--min-count must be >= 1, got {self.min_count}")
        if self.chunk_rows < 1 or self.threads < 0:
            raise ConfigError(f"--chunk-rows must be >= 1 and --threads >= 0, got {self.chunk_rows}, {self.threads}")
        if self.eval_day is not None and self.format != "terabyte":
            raise ConfigError("--eval-day applies to --format terabyte only")
        if not self.inputs:
            raise ConfigError("no INPUT files given")

    def categorical(self) -> dict[str, Any]:
        if self.max_ind_range is not None:
            return {"mode": "hash", "max_ind_range": self.max_ind_range, "missing": 0}
        return {"mode": "vocab", "min_count": self.min_count, "counted_on": "train", "oov_and_missing": 0}


@dataclass(frozen=True)
class InputFile:
    path: str  # absolute
    size: int
    gz: bool
    day: int | None  # terabyte only
    line_bytes: float  # mean line length seen by the sniffer; sizes the pieces


@dataclass(frozen=True)
class Piece:
    index: int
    file: int  # index into the plan's inputs
    start: int  # byte range in the file (a .gz piece: 0 and the compressed size)
    end: int
    first_line: int  # 1-based line number, in its file, of the piece's first line
    lines: int | None  # None: a .gz piece that needed no count


@dataclass(frozen=True)
class ShardSpec:
    piece: int
    k: int  # index within the piece
    split: str
    lines: int | None  # None: up to chunk_rows lines, on to the end of an uncounted .gz piece

    @property
    def name(self) -> str:
        return f"{self.split}-{self.piece:05d}-{self.k:04d}.h5"


def day_of(path: str) -> int:
    m = _DAY_RE.findall(Path(path).name)
    if not m:
        raise ConfigError(f"{path}: cannot tell the Terabyte day; files must be named day_N (e.g. day_0, day_23.gz)")
    day = int(m[-1])
    if day >= TERABYTE_DAYS:
        raise ConfigError(f"{path}: day {day} is not a Criteo Terabyte day (0-{TERABYTE_DAYS - 1})")
    return day


def eval_day(inputs: list[InputFile], requested: int | None) -> int:
    days = sorted({f.day for f in inputs if f.day is not None})
    if requested is not None:
        if requested not in days:
            raise ConfigError(f"--eval-day {requested}: no input is day {requested} (days given: {days})")
        return requested
    if TERABYTE_DAYS - 1 in days:
        return TERABYTE_DAYS - 1
    if len(days) > 1:
        return days[-1]
    raise ConfigError(
        f"only day {days[0]} is given: with day 23 absent the highest day given is the eval day, which would leave "
        f"no training day. Give more days, or --eval-day {days[0]} to halve it into test/val with no train split, "
        "or --format kaggle to cut it into 7 consecutive parts by line count")


def nominal_pieces(inputs: list[InputFile], chunk_rows: int) -> list[tuple[int, int, int]]:
    """(file, nominal start, nominal end) byte ranges; the counting pass aligns them to line starts."""
    out = []
    for i, f in enumerate(inputs):
        if f.gz or f.size == 0:
            out.append((i, 0, f.size))
            continue
        step = max(1 << 12, int(chunk_rows * f.line_bytes))
        out += [(i, a, min(a + step, f.size)) for a in range(0, f.size, step)]
    return out


def make_pieces(nominal: list[tuple[int, int, int]], counted: list[tuple[int, int, int | None]]) -> list[Piece]:
    """Combine nominal ranges with their counted (start, end, lines); number lines within each file."""
    pieces: list[Piece] = []
    next_line: dict[int, int] = {}
    for (file, _, _), (start, end, lines) in zip(nominal, counted):
        first = next_line.get(file, 1)
        if lines is not None:
            next_line[file] = first + lines
        if lines != 0:
            pieces.append(Piece(len(pieces), file, start, end, first, lines))
    return pieces


def _halves(start: int, total: int) -> list[tuple[str, int, int]]:
    test = math.ceil(total / 2)
    return [("test", start, start + test), ("val", start + test, start + total)]


def _cut(pieces: list[Piece], intervals: list[tuple[str, int, int]]) -> dict[int, list[tuple[str, int]]]:
    """Intersect a stream of counted pieces with (split, first, end) line intervals of the stream."""
    cuts: dict[int, list[tuple[str, int]]] = {}
    at = 0
    for p in pieces:
        assert p.lines is not None
        parts = [(s, min(b, at + p.lines) - max(a, at)) for s, a, b in intervals]
        cuts[p.index] = [(s, n) for s, n in parts if n > 0]
        at += p.lines
    return cuts


def split_cuts(fmt: str, inputs: list[InputFile], pieces: list[Piece], eval_d: int | None) -> dict[int, list[tuple[str, int | None]]]:
    """For every piece, its consecutive (split, lines) runs; lines None = the rest of an uncounted piece."""
    if fmt == "kaggle":
        total = sum(p.lines or 0 for p in pieces)
        per_day, extra = divmod(total, KAGGLE_DAYS)
        train_end = sum(per_day + (d < extra) for d in range(KAGGLE_DAYS - 1))
        return _cut(pieces, [("train", 0, train_end), *_halves(train_end, total - train_end)])
    cuts: dict[int, list[tuple[str, int | None]]] = {}
    eval_pieces = [p for p in pieces if inputs[p.file].day == eval_d]
    for p in pieces:
        if inputs[p.file].day != eval_d:
            cuts[p.index] = [("train", p.lines)]
    if eval_pieces:
        total = sum(p.lines or 0 for p in eval_pieces)
        cuts.update(_cut(eval_pieces, _halves(0, total)))
    return cuts


def shard_specs(pieces: list[Piece], cuts: dict[int, list[tuple[str, int | None]]], chunk_rows: int) -> list[ShardSpec]:
    """Counted runs become near-equal shards of at most chunk_rows lines; an open run one open shard."""
    specs: list[ShardSpec] = []
    for p in pieces:
        k = 0
        for split, n in cuts.get(p.index, []):
            if n is None:
                specs.append(ShardSpec(p.index, k, split, None))
                k += 1
                continue
            m = -(-n // chunk_rows)
            for i in range(m):
                specs.append(ShardSpec(p.index, k, split, n * (i + 1) // m - n * i // m))
                k += 1
    return specs


def assign(weights: list[float], world: int) -> list[list[int]]:
    """Longest-first greedy assignment of items to ranks (deterministic); each list in item order."""
    load = [0.0] * world
    out: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        r = min(range(world), key=lambda r: (load[r], r))
        out[r].append(i)
        load[r] += weights[i]
    return [sorted(x) for x in out]


@dataclass
class Plan:
    inputs: list[InputFile]
    pieces: list[Piece]
    specs: list[ShardSpec]
    eval_day: int | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        return cls([InputFile(**x) for x in d["inputs"]], [Piece(**x) for x in d["pieces"]],
                   [ShardSpec(**x) for x in d["specs"]], d["eval_day"])

    def pieces_with(self, want: Any) -> list[tuple[Piece, list[ShardSpec]]]:
        """(piece, its shard specs) for the pieces with at least one spec that ``want(spec)``."""
        by_piece: dict[int, list[ShardSpec]] = {}
        for s in self.specs:
            by_piece.setdefault(s.piece, []).append(s)
        return [(self.pieces[i], specs) for i, specs in sorted(by_piece.items()) if any(want(s) for s in specs)]
