"""``python -m hpcdlrm.data inspect DIR [--json]``: what a dataset holds, and whether it is whole.

Prints splits, rows, shards, positive rate, bad-line counts, table sizes and, for synthetic data, the
ceiling AUC; verifies that every shard exists, opens and holds the rows the manifest says. A missing or
truncated shard is a DataError naming it (exit code 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import DataError
from .format import Manifest, read_manifest
from .loader import verify_shard

_LABEL_CHUNK = 1 << 22


def _positive_rate(directory: Path, m: Manifest, split: str) -> float | None:
    """From the manifest's stats, else counted from the labels (old or foreign manifests)."""
    known = (m.stats.get("positive_rate") or {}).get(split)
    if known is not None or m.rows(split) == 0:
        return known
    positives = 0.0
    for ref in m.splits[split]:
        with h5py.File(directory / ref.path, "r") as f:
            for a in range(0, ref.rows, _LABEL_CHUNK):
                positives += float(np.sum(f["label"][a:a + _LABEL_CHUNK], dtype=np.float64))
    return positives / m.rows(split)


def inspect_dataset(directory: str | Path) -> dict[str, Any]:
    """A summary of the dataset in ``directory``; DataError naming every missing or broken shard."""
    directory = Path(directory)
    m = read_manifest(directory)
    problems = []
    for refs in m.splits.values():
        for ref in refs:
            if not (directory / ref.path).is_file():
                problems.append(f"{directory / ref.path}: missing")
                continue
            try:
                verify_shard(directory / ref.path, ref.rows)
            except DataError as e:
                problems.append(str(e))
    if problems:
        raise DataError(f"{directory}: {len(problems)} bad shard(s): " + "; ".join(problems))
    ceiling = (m.synthetic or {}).get("ceiling_auc") or {}
    return {
        "directory": str(directory), "version": m.version, "source": m.source.get("kind"),
        "seed": m.source.get("seed"), "categorical": m.source.get("categorical"),
        "splits": {s: {"rows": m.rows(s), "shards": len(refs), "positive_rate": _positive_rate(directory, m, s),
                       "ceiling_auc": ceiling.get(s)} for s, refs in m.splits.items()},
        "bad_lines": dict(m.bad_lines), "table_sizes": list(m.table_sizes),
        "ceiling_auc": dict(ceiling) or None, "verified_shards": sum(len(r) for r in m.splits.values()),
    }


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render(info: dict[str, Any]) -> str:
    """The human-readable summary of :func:`inspect_dataset`'s result."""
    head = f"dataset {info['directory']} ({info['source'] or 'unknown source'}"
    head += f", seed {info['seed']})" if info["seed"] is not None else ")"
    lines = [head, f"{'split':<6} {'rows':>13} {'shards':>6} {'positive':>8} {'ceiling AUC':>11}"]
    for s, v in info["splits"].items():
        lines.append(f"{s:<6} {v['rows']:>13,} {v['shards']:>6} {_fmt(v['positive_rate'], '.4f'):>8} "
                     f"{_fmt(v['ceiling_auc'], '.4f'):>11}")
    bad = info["bad_lines"]
    lines.append(f"bad lines: {sum(bad.values()):,}" + (f" ({', '.join(f'{k} {c:,}' for k, c in bad.items() if c)})"
                                                      if sum(bad.values()) else ""))
    sizes = info["table_sizes"]
    lines.append(f"tables: {len(sizes)}, {sum(sizes):,} rows in all: {' '.join(map(str, sizes))}")
    lines.append(f"all {info['verified_shards']} shards present, readable and of the manifest's length")
    return "\n".join(lines)


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m hpcdlrm.data inspect", description=__doc__.split("\n\n")[0])
    ap.add_argument("directory")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    info = inspect_dataset(a.directory)
    print(json.dumps(info) if a.json else render(info))
    return 0
