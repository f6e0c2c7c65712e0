"""Categorical encodings: hashing (``--max-ind-range``) and frequency vocabularies (``--min-count``).

A vocabulary is counted over the *training* rows only (a value first seen in val/test has no trained
embedding anyway, and counting it would leak evaluation rows into training), merged across ranks,
and kept per feature as the sorted raw values seen at least ``min_count`` times. Index 0 is shared by
every missing value and every value outside the vocabulary; value ``vocab[i]`` maps to ``i + 1``.

Memory: counting holds every distinct value of a rank's rows (12 bytes each per feature), which is
bounded by the data's cardinality, not by its size: about 34 M distinct values (400 MB) for Kaggle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .criteo import CAT_NAMES, NUM_SPARSE

_FOLD_MIN = 1 << 20  # raw values buffered per feature before folding them into the counts


def _runs(sorted_values: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Collapse equal neighbours of a sorted array, summing their counts (1 each when None)."""
    if len(sorted_values) == 0:
        return sorted_values, np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    if counts is None:
        return sorted_values[starts], np.diff(np.r_[starts, len(sorted_values)])
    return sorted_values[starts], np.add.reduceat(counts, starts)


def merge_counts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Merge sorted (values, counts) runs into one sorted run (a stable sort merges runs in linear time)."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    if len(parts) == 1:
        return parts[0]
    values = np.concatenate([p[0] for p in parts])
    order = np.argsort(values, kind="stable")
    return _runs(values[order], np.concatenate([p[1] for p in parts])[order])


class ValueCounter:
    """Counts of every non-missing raw value per feature, folded in batches (amortised N log N)."""

    def __init__(self) -> None:
        self.counts = [(np.zeros(0, np.uint32), np.zeros(0, np.int64)) for _ in range(NUM_SPARSE)]
        self._pending: list[list[np.ndarray]] = [[] for _ in range(NUM_SPARSE)]
        self._pending_n = 0

    def add(self, cat: np.ndarray, present: np.ndarray) -> None:
        """Count a (rows, 26) block of raw values; missing ones (``present`` False) are not counted."""
        for j in range(NUM_SPARSE):
            self._pending[j].append(cat[:, j][present[:, j]])
        self._pending_n += len(cat)
        if self._pending_n >= max(_FOLD_MIN, max(len(c[0]) for c in self.counts)):
            self.fold()

    def fold(self) -> None:
        for j in range(NUM_SPARSE):
            if self._pending[j]:
                batch = _runs(np.sort(np.concatenate(self._pending[j])))
                self.counts[j] = merge_counts([self.counts[j], batch])
                self._pending[j] = []
        self._pending_n = 0


def merge_across_ranks(counter: ValueCounter, ranks: Any, min_count: int) -> list[np.ndarray]:
    """Exchange counts so each rank sums one residue class of values, keep those >= min_count, and
    gather the kept values on every rank. Returns the per-feature sorted vocabularies (uint32)."""
    counter.fold()
    vocab = []
    for j in range(NUM_SPARSE):
        values, counts = counter.counts[j]
        owner = values % ranks.size
        mine = merge_counts(ranks.alltoall([(values[owner == r], counts[owner == r]) for r in range(ranks.size)]))
        kept = ranks.allgather(mine[0][mine[1] >= min_count])
        vocab.append(np.sort(np.concatenate(kept)).astype(np.uint32))
        counter.counts[j] = (np.zeros(0, np.uint32), np.zeros(0, np.int64))  # free as we go
    return vocab


@dataclass
class Encoder:
    """Raw hex values (uint32, 0 where missing) -> embedding indices (int32)."""

    max_ind_range: int | None = None
    vocab: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        if (self.max_ind_range is None) == (self.vocab is None):
            raise ConfigError("exactly one of --max-ind-range and --min-count is needed")

    def table_sizes(self) -> list[int]:
        if self.vocab is None:
            return [int(self.max_ind_range)] * NUM_SPARSE  # type: ignore[arg-type]
        return [len(v) + 1 for v in self.vocab]

    def __call__(self, cat: np.ndarray, present: np.ndarray, out: np.ndarray) -> None:
        """Encode a (rows, 26) block into ``out`` (rows, 26) int32."""
        if self.vocab is None:
            # Missing values are 0, so they share 0's bucket, as the reference reads an empty field as "0".
            np.copyto(out, cat % np.uint32(self.max_ind_range), casting="unsafe")
            return
        for j, keys in enumerate(self.vocab):
            if len(keys) == 0:
                out[:, j] = 0
                continue
            v = cat[:, j]
            idx = np.searchsorted(keys, v)
            hit = (keys[np.minimum(idx, len(keys) - 1)] == v) & present[:, j]
            out[:, j] = np.where(hit, idx + 1, 0)


def save_vocab(path: Path, vocab: list[np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **dict(zip(CAT_NAMES, vocab)))
    os.replace(tmp, path)


def load_vocab(path: Path) -> list[np.ndarray]:
    with np.load(path) as z:
        return [z[name] for name in CAT_NAMES]
