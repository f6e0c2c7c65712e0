"""The rank-sharded loader: each rank reads only its share of a split, in large contiguous slices.

Training layout (``shuffle=True``): an epoch order over all rows of the split is the concatenation of
blocks of ``block_rows`` consecutive rows in a permuted order, drawn from (seed, epoch) only. Global
batch t is positions [t*G, (t+1)*G) of that order, whatever the world size R; rank r gets the r-th
contiguous slice of it, B = G // R rows (without ``drop_last``, the last, partial global batch is split
as evenly as possible). So a run on 1 rank and on 8 ranks sees the same global batches, and a rank's
slice is a few contiguous reads. Rows stay in file order inside a block: a permutation inside blocks
would force each rank to read whole blocks, more than its share.

Evaluation layout (``shuffle=False``): rank r gets one contiguous range of the split (ranges partition
it, sizes differ by at most one row) in file order, in batches of up to B rows; the last may be
short, and ranks may hold different batch counts (one at most).

A background thread fills a ring of ``prefetch + 2`` preallocated buffers. A batch handed out is a view
into the ring: it stays valid until the next-but-one batch is requested (copy what you keep longer).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
from h5py import h5d

from ..errors import ConfigError, DataError
from .format import NUM_DENSE, NUM_SPARSE, Manifest, read_manifest

# `python -m hpcdlrm.bench loader --block-rows N` at 2048 rows per rank: 512-row blocks read ~30% slower
# than 4096; 16384 and up gain little and put longer runs of neighbouring rows into one batch.
DEFAULT_BLOCK_ROWS = 4096
_FIELDS = ("label", "dense", "sparse")
_DTYPES = (np.float32, np.float32, np.int32)  # native order: raw bytes copy as they are
_ROW_BYTES = (4, 4 * NUM_DENSE, 4 * NUM_SPARSE)


@dataclass
class Batch:
    """One rank's batch: dense (B, 13) float32, sparse (B, 26) int32, label (B,) float32 (numpy views)."""

    dense: np.ndarray
    sparse: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.label)


class _Shard:
    """An open shard. Its datasets are contiguous and uncompressed (format.py), so reads go straight to
    their byte offsets with ``os.preadv`` into the caller's buffer: about 10x less overhead per call than
    h5py's ``read_direct`` (measured 40 vs 400 us for 2048 rows). A file laid out otherwise (chunked,
    filtered, foreign byte order) is read through h5py instead."""

    def __init__(self, path: Path, rows: int) -> None:
        self.path, self.rows = path, rows
        try:
            self.h5 = h5py.File(path, "r")
            shapes = {k: self.h5[k].shape for k in _FIELDS}
        except (OSError, KeyError) as e:
            raise DataError(f"{path}: cannot read shard ({e})") from e
        want = {"label": (rows,), "dense": (rows, NUM_DENSE), "sparse": (rows, NUM_SPARSE)}
        if shapes != want:
            self.h5.close()
            raise DataError(f"{path}: shapes {shapes} disagree with the manifest's {rows} rows; truncated or replaced?")
        self.fd: int | None = None
        self.raw = self._raw_offsets()
        if self.raw is not None:
            self.fd = os.open(path, os.O_RDONLY)
            end = max(off + rows * w for off, w in zip(self.raw, _ROW_BYTES))
            size = os.fstat(self.fd).st_size
            if size < end:
                self.close()
                raise DataError(f"{path}: file is {size} bytes but its data end at byte {end}: truncated")

    def _raw_offsets(self) -> tuple[int, ...] | None:
        if not hasattr(os, "preadv") or self.rows == 0:
            return None
        offsets = []
        for name, dtype in zip(_FIELDS, _DTYPES):
            d = self.h5[name]
            plist = d.id.get_create_plist()
            if plist.get_layout() != h5d.CONTIGUOUS or plist.get_nfilters() or d.dtype != np.dtype(dtype):
                return None
            off = d.id.get_offset()
            if off is None:
                return None
            offsets.append(off)
        return tuple(offsets)

    def read(self, start: int, n: int, out: Sequence[np.ndarray], at: int) -> None:
        """Rows [start, start+n) of this shard into out[i][at:at+n]."""
        if self.raw is None:
            for name, buf in zip(_FIELDS, out):
                self.h5[name].read_direct(buf[at:at + n], source_sel=np.s_[start:start + n])
            return
        for off, width, buf in zip(self.raw, _ROW_BYTES, out):
            view = memoryview(buf[at:at + n]).cast("B")
            if os.preadv(self.fd, [view], off + start * width) != view.nbytes:  # type: ignore[arg-type]
                raise DataError(f"{self.path}: short read at row {start}: file truncated while open?")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.h5.close()


class Dataset:
    """A dataset directory: manifest, table sizes, and row-range reads across shard boundaries.

    Shards are opened (and checked against the manifest) on first read and kept open. One loader
    thread reads at a time (a lock): reads are copies out of the page cache, so parallel readers in
    one process would gain little.
    """

    def __init__(self, directory: str | Path, manifest: Manifest) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        self._refs = {s: [(self.directory / r.path, r.rows) for r in refs] for s, refs in manifest.splits.items()}
        self._offsets = {s: np.cumsum([0] + [r.rows for r in refs]) for s, refs in manifest.splits.items()}
        self._shards: dict[Path, _Shard] = {}
        self._lock = threading.Lock()

    @property
    def table_sizes(self) -> list[int]:
        return list(self.manifest.table_sizes)

    @property
    def splits(self) -> list[str]:
        return list(self.manifest.splits)

    def rows(self, split: str) -> int:
        return self.manifest.rows(split)

    def read(self, split: str, start: int, stop: int, out: Sequence[np.ndarray], at: int = 0) -> None:
        """Read rows [start, stop) of ``split`` into ``out`` = (label, dense, sparse) from row ``at`` on."""
        offsets, refs = self._offsets[split], self._refs[split]
        if not 0 <= start <= stop <= offsets[-1]:
            raise ValueError(f"rows [{start}, {stop}) outside {split}'s {offsets[-1]}")
        k = int(np.searchsorted(offsets, start, side="right")) - 1
        with self._lock:
            while start < stop:
                lo, hi = int(offsets[k]), int(offsets[k + 1])
                n = min(stop, hi) - start
                if n > 0:
                    shard = self._shards.get(refs[k][0])
                    if shard is None:
                        shard = self._shards[refs[k][0]] = _Shard(*refs[k])
                    shard.read(start - lo, n, out, at)
                    start, at = start + n, at + n
                k += 1

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.close()
            self._shards.clear()

    def __getstate__(self) -> dict:  # picklable (e.g. into a submitted job): shards reopen lazily
        return {"directory": self.directory, "manifest": self.manifest}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["directory"], state["manifest"])  # type: ignore[misc]


def verify_shard(path: str | Path, rows: int) -> None:
    """Open a shard and check it against the manifest's ``rows`` (shapes, file length); DataError if not."""
    _Shard(Path(path), rows).close()


def open_dataset(directory: str | Path) -> Dataset:
    """Read and validate the manifest, check that every shard file exists (no file is opened)."""
    manifest = read_manifest(directory)
    missing = [r.path for refs in manifest.splits.values() for r in refs if not (Path(directory) / r.path).is_file()]
    if missing:
        raise DataError(f"{directory}: shard(s) named in the manifest are missing: {', '.join(missing)}")
    return Dataset(directory, manifest)


class RankLoader:
    """This rank's batches of one split, epoch by epoch (see the module docstring for the layouts).

    ``drop_last`` drops the last partial global batch (training) or each rank's short last batch;
    with block shuffling the dropped rows differ from epoch to epoch.
    """

    def __init__(self, ds: Dataset, split: str = "train", *, rank: int = 0, world_size: int = 1,
                 global_batch_size: int = 2048, seed: int = 0, shuffle: bool = True, drop_last: bool = True,
                 prefetch: int = 2, block_rows: int = DEFAULT_BLOCK_ROWS) -> None:
        if split not in ds.manifest.splits:
            raise ConfigError(f"split {split!r} not in {ds.directory} (has {', '.join(ds.splits)})")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside world size {world_size}")
        if global_batch_size < 1 or global_batch_size % world_size:
            raise ConfigError(f"global batch size {global_batch_size} is not a positive multiple of "
                              f"the world size {world_size}")
        if prefetch < 0 or block_rows < 1:
            raise ConfigError(f"prefetch {prefetch} must be >= 0 and block_rows {block_rows} >= 1")
        self.ds, self.split, self.rank, self.world_size = ds, split, rank, world_size
        self.global_batch_size, self.batch_size = global_batch_size, global_batch_size // world_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.prefetch, self.block_rows = prefetch, block_rows
        self.rows = ds.rows(split)
        self._range = (self.rows * rank // world_size, self.rows * (rank + 1) // world_size)

    @property
    def batches_per_epoch(self) -> int:
        """Batches this rank yields per epoch (the same on every rank in the training layout)."""
        if self.shuffle:
            g = self.global_batch_size
            return self.rows // g if self.drop_last else -(-self.rows // g)
        n = self._range[1] - self._range[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def block_order(self, epoch: int) -> np.ndarray:
        """The permuted block indices of ``epoch``: a function of (seed, epoch) and the row count only."""
        blocks = -(-self.rows // self.block_rows)
        if not self.shuffle:
            return np.arange(blocks)
        return np.random.default_rng([self.seed, epoch]).permutation(blocks)

    def _plans(self, epoch: int, start: int) -> Iterator[list[tuple[int, int]]]:
        """Per batch from ``start``: the file-row ranges [a, b) to read, in batch order."""
        if not self.shuffle:
            lo, hi = self._range
            for t in range(start, self.batches_per_epoch):
                a = lo + t * self.batch_size
                yield [(a, min(a + self.batch_size, hi))]
            return
        br, order = self.block_rows, self.block_order(epoch)
        sizes = np.minimum(br, self.rows - order * br)  # only the last block of the file may be short
        cum = np.concatenate(([0], np.cumsum(sizes)))
        g, r, world = self.global_batch_size, self.rank, self.world_size
        for t in range(start, self.batches_per_epoch):
            lo, hi = t * g, min((t + 1) * g, self.rows)
            s, e = lo + (hi - lo) * r // world, lo + (hi - lo) * (r + 1) // world
            k = int(np.searchsorted(cum, s, side="right")) - 1
            ranges = []
            while s < e:
                base = int(order[k]) * br - int(cum[k])  # file row = position + base, inside block k
                end = min(e, int(cum[k + 1]))
                ranges.append((s + base, end + base))
                s, k = end, k + 1
            yield ranges

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """Batches of ``epoch`` from ``start_batch`` on (resume mid-epoch: the exact tail of a full epoch)."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ConfigError(f"start_batch {start_batch} outside 0..{self.batches_per_epoch}")
        return _Prefetcher(self, self._plans(epoch, start_batch)).run()


class _Prefetcher:
    """Fill a ring of buffers from a plan, ``prefetch`` batches ahead, in a thread (or inline when 0)."""

    def __init__(self, loader: RankLoader, plans: Iterator[list[tuple[int, int]]]) -> None:
        self.ds, self.split, self.plans = loader.ds, loader.split, plans
        self.ahead = loader.prefetch
        n, b = self.ahead + 2, loader.batch_size
        self.ring = (np.empty((n, b), np.float32), np.empty((n, b, NUM_DENSE), np.float32),
                     np.empty((n, b, NUM_SPARSE), np.int32))
        self.slots = n
        # One permit per slot; the consumer returns batch j-2's slot when it asks for batch j, so the
        # producer runs at most `prefetch` batches ahead of the consumer's current one.
        self.free = threading.Semaphore(n)
        self.done: queue.Queue = queue.Queue()
        self.stop = threading.Event()

    def _fill(self, slot: int, ranges: list[tuple[int, int]]) -> int:
        out = [a[slot] for a in self.ring]
        at = 0
        for a, b in ranges:
            self.ds.read(self.split, a, b, out, at)
            at += b - a
        return at

    def _produce(self) -> None:
        try:
            for i, ranges in enumerate(self.plans):
                while not self.free.acquire(timeout=0.1):
                    if self.stop.is_set():
                        return
                if self.stop.is_set():
                    return
                self.done.put((i % self.slots, self._fill(i % self.slots, ranges)))
            self.done.put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self.done.put(e)

    def _batch(self, slot: int, n: int) -> Batch:
        label, dense, sparse = self.ring
        return Batch(dense=dense[slot, :n], sparse=sparse[slot, :n], label=label[slot, :n])

    def run(self) -> Iterator[Batch]:
        if self.ahead == 0:
            for i, ranges in enumerate(self.plans):
                yield self._batch(i % 2, self._fill(i % 2, ranges))
            return
        thread = threading.Thread(target=self._produce, name="hpcdlrm-prefetch", daemon=True)
        thread.start()
        try:
            for j in itertools.count():
                if j >= 2:
                    self.free.release()  # batch j-2 is no longer valid: its slot may be refilled
                item = self.done.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield self._batch(*item)
        finally:
            self.stop.set()
            self.free.release()  # wake a producer waiting for a slot
            thread.join()
