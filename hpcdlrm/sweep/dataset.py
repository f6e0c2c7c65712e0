"""The sweep's dataset: the one given, or a synthetic one generated once into a cache directory.

Laptop default (no --data): 300k training rows from the synthetic click model with small tables
(<= 2000 rows, so a few epochs cover them), and a small DLRM (``LAPTOP_TRAIN_ARGS``), so a trial
learns something useful within its default two-minute job.

Default target on synthetic data: the manifest records the Bayes-optimal ("ceiling") validation AUC
of the click model that generated it; a sweep targets ``0.5 + TARGET_FRACTION * (ceiling - 0.5)``,
a fixed share of the way from chance to the best any model can do. Measured on the laptop default
(ceiling 0.781): LAMB at a good lr reaches 0.668 (60 % of the gap) in ~10 s and peaks near 0.69,
SGD/Adagrad at a poor lr never get there in 30 s, so the time to the target separates configurations.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..data.format import MANIFEST, read_manifest
from ..data.synth import ClickModelConfig, generate

log = logging.getLogger("hpcdlrm.sweep")
SYNTH_ROWS = 300_000
SYNTH_EVAL_ROWS = 30_000
SYNTH_SEED = 0
SYNTH_TABLES = (3, 4, 7, 12, 20, 35, 60, 100, 170, 280, 460, 750, 1200, 2000,
                300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1300, 1500, 1700)
TARGET_FRACTION = 0.6
LAPTOP_TRAIN_ARGS = ["--arch-mlp-bot", "13-64-16", "--arch-mlp-top", "64-1", "--emb-dim", "16",
                     "--eval-batch-size", "16384", "--eval-every", "50000", "--epochs", "4"]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hpcdlrm"


def synthetic_dataset(rows: int = SYNTH_ROWS, eval_rows: int = SYNTH_EVAL_ROWS, seed: int = SYNTH_SEED) -> Path:
    """The cached synthetic dataset for these parameters, generated on first use (atomically)."""
    final = cache_dir() / f"synth-small-r{rows}-e{eval_rows}-s{seed}"
    if (final / MANIFEST).exists():
        return final
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    log.info("generating synthetic data (%d rows) into %s (once)", rows, final)
    generate(tmp, rows, eval_rows=eval_rows, seed=seed, overwrite=True,
             model=ClickModelConfig(table_sizes=SYNTH_TABLES))
    try:
        tmp.rename(final)  # another driver may have won the race: then use its copy
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def default_target(data: str | Path) -> float | None:
    """The synthetic default target, or None for real data (the user must give one)."""
    m = read_manifest(data)
    ceiling = (m.synthetic or {}).get("ceiling_auc", {}).get("val")
    if ceiling is None:
        return None
    return round(0.5 + TARGET_FRACTION * (float(ceiling) - 0.5), 4)


def resolve_data(data: str | None, target: float | None) -> tuple[str, float | None]:
    """(dataset directory, default target AUC or None)."""
    path = Path(data) if data else synthetic_dataset()
    return str(path), default_target(path) if target is None else target
