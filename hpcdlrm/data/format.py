"""The on-disk dataset format, shared by every writer (synth, preprocess) and reader (loader, inspect).

A dataset is a directory::

    DIR/manifest.json
    DIR/<split>-<part>.h5      datasets: label (N,) float32 0/1
                                         dense (N, 13) float32, already log(1 + max(x, 0))
                                         sparse (N, 26) int32, each column < table_sizes[j]

Datasets are stored contiguous and uncompressed: the loader reads large row slices straight into
preallocated buffers, and compression or chunking would cap it (see ../shared/notes/slurm-ci.md §6).
A shard is written under a temporary name and renamed when complete, so a shard that exists is whole.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import DataError
from ..io import atomic_path, write_json_atomic

FORMAT_VERSION = 1
NUM_DENSE = 13
NUM_SPARSE = 26
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


@dataclass
class ShardRef:
    path: str  # relative to the dataset directory
    rows: int


@dataclass
class Manifest:
    splits: dict[str, list[ShardRef]]
    table_sizes: list[int]
    bad_lines: dict[str, int] = field(default_factory=dict)
    # What produced it: {"kind": "synthetic"|"kaggle"|"terabyte", "files": [...],
    # "categorical": {"mode": "hash", "max_ind_range": R} | {"mode": "vocab", "min_count": C}, "seed": S, ...}
    source: dict[str, Any] = field(default_factory=dict)
    # Synthetic data only: {"ceiling_auc": {"val": .., "test": ..}, "click_model": {...}}
    synthetic: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # e.g. {"positive_rate": {"train": ..}}
    version: int = FORMAT_VERSION
    producer: dict[str, Any] = field(default_factory=dict)

    def rows(self, split: str) -> int:
        return sum(s.rows for s in self.splits.get(split, []))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What makes two datasets the same data (a checkpoint records it; resuming on other data is
        refused): a digest of the manifest without its producer, plus a summary a person can read."""
        body = {k: v for k, v in self.to_dict().items() if k != "producer"}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        kind = self.source.get("kind", "?")
        seed = f" seed {self.source['seed']}" if "seed" in self.source else ""
        rows = ", ".join(f"{s} {self.rows(s):,}" for s in self.splits)
        return {"digest": digest,
                "summary": f"{kind}{seed}, rows {rows}, {sum(self.table_sizes):,} table rows (digest {digest})"}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "manifest") -> "Manifest":
        check_fields(d, where)
        try:
            splits = {k: [ShardRef(**s) for s in v] for k, v in d["splits"].items()}
            m = cls(splits=splits, table_sizes=list(d["table_sizes"]),
                    **{k: d[k] for k in ("bad_lines", "source", "synthetic", "stats", "version", "producer") if k in d})
        except (KeyError, TypeError) as e:
            raise DataError(f"{where}: malformed manifest ({e!r})") from e
        if len(m.table_sizes) != NUM_SPARSE:
            raise DataError(f"{where}: table_sizes has {len(m.table_sizes)} entries, expected {NUM_SPARSE}")
        if m.version > FORMAT_VERSION:
            raise DataError(f"{where}: format version {m.version} is newer than this hpcdlrm ({FORMAT_VERSION})")
        return m


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_fields(d: Any, where: str) -> None:
    """DataError naming the first manifest field of the wrong type (readers do arithmetic on them, and a
    string where a count belongs would fail deep inside numpy, far from the file)."""
    def bad(field_name: str, want: str, got: Any) -> DataError:
        return DataError(f"{where}: field {field_name} must be {want}, got {json.dumps(got)[:80]}")

    if not isinstance(d, dict):
        raise bad("(top level)", "an object", d)
    for key in ("splits", "table_sizes"):
        if key not in d:
            raise DataError(f"{where}: missing field {key}")
    if not isinstance(d["splits"], dict):
        raise bad("splits", "an object of split name -> list of shards", d["splits"])
    for split, refs in d["splits"].items():
        if not isinstance(refs, list):
            raise bad(f"splits.{split}", "a list of shards", refs)
        for i, ref in enumerate(refs):
            at = f"splits.{split}[{i}]"
            if not isinstance(ref, dict) or set(ref) != {"path", "rows"}:
                raise bad(at, 'an object {"path": ..., "rows": ...}', ref)
            if not isinstance(ref["path"], str) or not ref["path"]:
                raise bad(f"{at}.path", "a file name", ref["path"])
            if not _is_int(ref["rows"], 0):
                raise bad(f"{at}.rows", "an integer >= 0", ref["rows"])
    sizes = d["table_sizes"]
    if not isinstance(sizes, list):
        raise bad("table_sizes", f"a list of {NUM_SPARSE} integers", sizes)
    for j, v in enumerate(sizes):
        if not _is_int(v, 1):
            raise bad(f"table_sizes[{j}]", "an integer >= 1", v)
    if "version" in d and not _is_int(d["version"], 0):
        raise bad("version", "an integer", d["version"])
    bad_lines = d.get("bad_lines", {})
    if not isinstance(bad_lines, dict) or not all(_is_int(v, 0) for v in bad_lines.values()):
        raise bad("bad_lines", "an object of reason -> count", bad_lines)
    for key in ("source", "stats", "producer"):
        if key in d and not isinstance(d[key], dict):
            raise bad(key, "an object", d[key])
    synthetic = d.get("synthetic")
    if synthetic is not None:
        if not isinstance(synthetic, dict):
            raise bad("synthetic", "an object or null", synthetic)
        ceiling = synthetic.get("ceiling_auc", {})
        if not isinstance(ceiling, dict):
            raise bad("synthetic.ceiling_auc", "an object of split -> AUC", ceiling)
        for split, v in ceiling.items():
            if v is not None and not _is_number(v):
                raise bad(f"synthetic.ceiling_auc.{split}", "a number or null", v)


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise DataError(f"{path}: no manifest; is {directory} a dataset made by `python -m hpcdlrm.data`?")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    return Manifest.from_dict(d, str(path))


def write_manifest(directory: str | os.PathLike[str], manifest: Manifest) -> None:
    from .. import __version__  # noqa: PLC0415

    manifest.producer.setdefault("hpcdlrm", __version__)
    write_json_atomic(Path(directory) / MANIFEST, manifest.to_dict())


def write_shard(path: str | os.PathLike[str], label: np.ndarray, dense: np.ndarray, sparse: np.ndarray) -> None:
    """Write one shard atomically (temporary name, then rename).

    h5py holds the GIL while HDF5 writes, which would stall a process's parser threads for the whole
    write. So h5py only lays the file out (contiguous datasets, space allocated, no fill), and the
    data goes to the datasets' byte offsets with ``os.pwrite``, which releases the GIL.
    """
    n = len(label)
    if dense.shape != (n, NUM_DENSE) or sparse.shape != (n, NUM_SPARSE):
        raise ValueError(f"shard shapes disagree: label {label.shape}, dense {dense.shape}, sparse {sparse.shape}")
    arrays = {"label": np.ascontiguousarray(label, dtype=np.float32),
              "dense": np.ascontiguousarray(dense, dtype=np.float32),
              "sparse": np.ascontiguousarray(sparse, dtype=np.int32)}
    with atomic_path(path) as tmp:
        offsets = {}
        with h5py.File(tmp, "w") as f:
            for name, a in arrays.items():
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
                dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
                space = h5py.h5s.create_simple(a.shape)
                dset = h5py.h5d.create(f.id, name.encode(), h5py.h5t.py_create(a.dtype), space, dcpl=dcpl)
                offsets[name] = dset.get_offset()
        with open(tmp, "r+b") as raw:
            for name, a in arrays.items():
                if a.nbytes:
                    _pwrite_all(raw.fileno(), memoryview(a).cast("B"), offsets[name])


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    step = 1 << 30  # one call writes at most ~2 GiB on Linux
    for at in range(0, len(data), step):
        part = data[at:at + step]
        while len(part):
            done = os.pwrite(fd, part, offset + at)
            part, at = part[done:], at + done


def shard_rows(path: str | os.PathLike[str]) -> int:
    """Rows of a shard, checking that its three datasets agree; DataError naming the file otherwise."""
    try:
        with h5py.File(path, "r") as f:
            n = {k: f[k].shape[0] for k in ("label", "dense", "sparse")}
            if f["dense"].shape[1:] != (NUM_DENSE,) or f["sparse"].shape[1:] != (NUM_SPARSE,):
                raise DataError(f"{path}: dense/sparse widths {f['dense'].shape}/{f['sparse'].shape} are not 13/26")
    except (OSError, KeyError) as e:
        raise DataError(f"{path}: cannot read shard ({e})") from e
    if len(set(n.values())) != 1:
        raise DataError(f"{path}: truncated shard, row counts differ {n}")
    return n["label"]
