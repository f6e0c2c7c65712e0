"""Criteo-shaped synthetic data with a planted click model, and the ``synth`` command.

    python -m hpcdlrm.data synth --out data/synth --rows 300000 [--eval-rows M] [--shards K] [--seed S]

Rows look like preprocessed Criteo: 13 heavy-tailed count features stored as log(1 + max(x, 0)) and
26 categorical indices drawn Zipf-like from tables of a configurable size. Labels are Bernoulli draws
of a known click probability that is a function of the *stored* row only, so that probability is the
Bayes-optimal predictor and its AUC on val/test (recorded in the manifest) is the ceiling any model
can reach. Its logit is a sum of four terms, each scaled to a chosen standard deviation:

- a linear function of the standardised dense features,
- a per-row scalar effect of a few tables (learnable by a linear model on one-hot features),
- dot products of low-dimensional latent vectors of a few table pairs (what DLRM's dot interaction
  computes, and what no linear model can),
- dot products of a tanh projection of the dense features with latent vectors of a few tables.

Effects of rows rarer than ``rare_mass`` are shrunk in proportion, so the signal sits on rows that
recur and a DLRM can learn it from a few hundred thousand rows.

Rows are generated in fixed chunks of ``CHUNK_ROWS``, each from its own random stream
(seed, split, chunk), so the data depend on the seed only: not on the shard count, and the first N rows
of a split are the same whatever ``--rows`` is.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import ConfigError, DataError
from ..io import check_out_dir
from .auc import exact_auc
from .format import (MANIFEST, NUM_DENSE, NUM_SPARSE, Manifest, ShardRef, read_manifest, write_manifest,
                     write_shard)

GENERATOR_VERSION = 1
CHUNK_ROWS = 1 << 14  # small: a tiny dataset generates little beyond its rows
SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}
_MODEL_STREAM, _CALIBRATION_STREAM = 1000, 1001
_CALIBRATION_ROWS = 1 << 16
_ROWS_PER_SHARD = 2_000_000  # default shard size: 320 MB, the most one shard holds in memory
# A spread from tiny to 50k rows, like Criteo's tables after frequency thresholding, but small enough
# for a laptop run (about 300k embedding rows in all).
DEFAULT_TABLE_SIZES = (3, 4, 7, 12, 20, 35, 60, 100, 170, 280, 460, 750, 1200, 2000, 3000, 4500,
                       6500, 9000, 12000, 16000, 20000, 25000, 30000, 36000, 43000, 50000)


@dataclass(frozen=True)
class ClickModelConfig:
    """What defines the planted click model (with the seed). Term scales are logit standard deviations."""

    table_sizes: tuple[int, ...] = DEFAULT_TABLE_SIZES
    # The defaults were tuned so a small DLRM closes >= 90% of the gap to the ceiling on 300k rows in
    # 1-2 epochs while a one-hot logistic regression closes about 70% (see tests/test_synth.py and the
    # data-layer report): few, strong components on rows that recur.
    zipf_exponents: tuple[float, float] = (1.3, 2.0)  # each table draws its exponent in this range
    latent_dim: int = 2
    main_tables: int = 6  # tables whose rows carry a scalar effect
    latent_tables: int = 6  # tables carrying latent vectors
    pairs: int = 5  # latent-table pairs whose dot products enter the logit
    dense_tables: int = 2  # latent tables that interact with the dense projection
    rare_mass: float = 1e-2  # rows less likely than this get effects shrunk by sqrt(p / rare_mass)
    dense_corr: float = 0.3  # shared row factor among the dense counts (real counts correlate)
    std_dense: float = 0.5
    std_main: float = 0.7
    std_pair: float = 1.0
    std_dense_pair: float = 0.6
    positive_rate: float = 0.25  # the bias is calibrated to this (Criteo Kaggle: 0.256)

    def __post_init__(self) -> None:
        if len(self.table_sizes) != NUM_SPARSE or min(self.table_sizes) < 1:
            raise ConfigError(f"table_sizes: need {NUM_SPARSE} sizes >= 1, got {list(self.table_sizes)}")
        if not 1 < self.zipf_exponents[0] <= self.zipf_exponents[1]:
            raise ConfigError(f"zipf_exponents: need 1 < low <= high, got {self.zipf_exponents}")
        if not 0 <= self.main_tables <= NUM_SPARSE:
            raise ConfigError(f"main_tables: need 0..{NUM_SPARSE}, got {self.main_tables}")
        if not 0 < self.positive_rate < 1:
            raise ConfigError(f"positive_rate: must be in (0, 1), got {self.positive_rate}")
        if not 2 <= self.latent_tables <= NUM_SPARSE or self.dense_tables > self.latent_tables:
            raise ConfigError(f"latent_tables/dense_tables: need 2 <= {self.latent_tables} <= {NUM_SPARSE} "
                              f"and dense_tables <= latent_tables")
        if self.pairs > self.latent_tables * (self.latent_tables - 1) // 2:
            raise ConfigError(f"pairs: {self.pairs} exceeds the pairs of {self.latent_tables} latent tables")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClickModelConfig":
        d = dict(d)
        for k in ("table_sizes", "zipf_exponents"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass
class ClickModel:
    """The arrays of a click model; build with :func:`build_click_model`, never by hand.

    Per-table arrays are concatenated, table j's rows starting at ``offsets[j]``, so drawing and looking
    up all 26 columns is one vectorised operation each.
    """

    config: ClickModelConfig
    seed: int
    zipf: np.ndarray  # (26,) exponents
    offsets: np.ndarray  # (26,) start of each table in the concatenated arrays
    index_of_rank: np.ndarray  # frequency rank -> row index (the frequent rows are scattered)
    main: np.ndarray  # per-row scalar effect, by row index
    latent: dict[int, np.ndarray]  # table -> (rows, latent_dim) float32
    pairs: list[tuple[int, int]]
    dense_tables: list[int]
    dense_zero: np.ndarray  # (13,) probability that a count is 0
    dense_mu: np.ndarray  # (13,) log-normal location of the non-zero counts
    dense_sigma: np.ndarray
    dense_w: np.ndarray  # (13,)
    dense_proj: np.ndarray  # (latent_dim, 13)
    dense_mean: np.ndarray = field(default_factory=lambda: np.zeros(NUM_DENSE))
    dense_std: np.ndarray = field(default_factory=lambda: np.ones(NUM_DENSE))
    scales: np.ndarray = field(default_factory=lambda: np.ones(4))  # multipliers of the four terms
    bias: float = 0.0

    def features(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` rows of (dense float32 as stored, sparse int32)."""
        e, total, sizes = _zipf_consts(self.zipf, self.config.table_sizes)
        x = (1.0 + rng.random((n, NUM_SPARSE)) * total) ** (1.0 / e)  # inverse CDF of x^-a on [1, size+1)
        rank = np.minimum(x.astype(np.int64) - 1, sizes - 1)
        sparse = self.index_of_rank[rank + self.offsets]
        c = self.config.dense_corr
        z = math.sqrt(1 - c) * rng.standard_normal((n, NUM_DENSE)) + math.sqrt(c) * rng.standard_normal((n, 1))
        counts = np.floor(np.exp(self.dense_mu + self.dense_sigma * z))
        counts[rng.random((n, NUM_DENSE)) < self.dense_zero] = 0.0
        return np.log1p(counts).astype(np.float32), sparse

    def terms(self, dense: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        """(n, 4) unscaled logit terms: dense linear, per-row effects, latent pairs, dense x latent."""
        h = (dense.astype(np.float64) - self.dense_mean) / self.dense_std
        out = np.empty((len(dense), 4))
        out[:, 0] = h @ self.dense_w
        out[:, 1] = self.main[sparse + self.offsets].sum(1, dtype=np.float64)
        vec = {t: v[sparse[:, t]] for t, v in self.latent.items()}
        out[:, 2] = sum(np.einsum("nk,nk->n", vec[a], vec[b], dtype=np.float64) for a, b in self.pairs)
        q = np.tanh(h @ self.dense_proj.T)
        out[:, 3] = sum(np.einsum("nk,nk->n", q, vec[t]) for t in self.dense_tables)
        return out

    def logit(self, dense: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        return self.bias + self.terms(dense, sparse) @ self.scales

    def probability(self, dense: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        """True click probability of stored rows (float64): the Bayes-optimal predictor."""
        return 1.0 / (1.0 + np.exp(-self.logit(dense, sparse)))

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        """``n`` labelled rows: (label float32, dense float32, sparse int32, probability float64)."""
        dense, sparse = self.features(rng, n)
        p = self.probability(dense, sparse)
        label = (rng.random(n) < p).astype(np.float32)
        return label, dense, sparse, p

    def describe(self) -> dict[str, Any]:
        """The manifest's ``click_model``: config + seed rebuild it; the rest documents it."""
        return {
            "generator_version": GENERATOR_VERSION, "seed": self.seed, "config": asdict(self.config),
            "bias": self.bias, "term_scales": dict(zip(_TERMS, self.scales.tolist())),
            "pairs": [list(p) for p in self.pairs], "latent_tables": sorted(self.latent),
            "dense_tables": self.dense_tables, "zipf_exponents": self.zipf.round(4).tolist(),
        }

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "ClickModel":
        """Rebuild the click model of a synthetic dataset from its manifest."""
        if not manifest.synthetic or "click_model" not in manifest.synthetic:
            raise DataError("manifest has no synthetic.click_model: not a synthetic dataset")
        d = manifest.synthetic["click_model"]
        if d.get("generator_version") != GENERATOR_VERSION:
            raise DataError(f"click model generator_version {d.get('generator_version')} != {GENERATOR_VERSION}")
        return build_click_model(ClickModelConfig.from_dict(d["config"]), int(d["seed"]))


_TERMS = ("dense", "main", "pair", "dense_pair")


def _zipf_consts(zipf: np.ndarray, table_sizes: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    sizes = np.asarray(table_sizes, dtype=np.int64)
    e = 1.0 - zipf
    return e, (sizes + 1.0) ** e - 1.0, sizes


def zipf_probabilities(a: float, size: int) -> np.ndarray:
    """P(frequency rank i), i < size: the mass of x^-a on [i+1, i+2), as :meth:`ClickModel.features` draws."""
    e = 1.0 - a
    edges = np.arange(1, size + 2, dtype=np.float64) ** e
    return np.diff(edges) / (edges[-1] - edges[0])


def build_click_model(cfg: ClickModelConfig, seed: int) -> ClickModel:
    """Draw the click model of ``seed``, then scale its terms and calibrate its bias on a sample."""
    rng = np.random.default_rng([seed, _MODEL_STREAM])
    k, sizes = cfg.latent_dim, cfg.table_sizes
    zipf = rng.uniform(*cfg.zipf_exponents, size=NUM_SPARSE)
    index_of_rank, amps = [], []
    for j, n in enumerate(sizes):
        index_of_rank.append(rng.permutation(n).astype(np.int32))
        amp = np.empty(n)  # effects of rows rarer than rare_mass shrink: the signal sits on recurring rows
        amp[index_of_rank[-1]] = np.sqrt(np.minimum(1.0, zipf_probabilities(zipf[j], n) / cfg.rare_mass))
        amps.append(amp)
    main_tables = set(rng.choice(NUM_SPARSE, size=cfg.main_tables, replace=False).tolist())
    main = [amps[j] * rng.standard_normal(n) * (j in main_tables) for j, n in enumerate(sizes)]
    tables = sorted(rng.choice(NUM_SPARSE, size=cfg.latent_tables, replace=False).tolist())
    latent = {t: (amps[t][:, None] * rng.standard_normal((sizes[t], k)) / math.sqrt(k)).astype(np.float32)
              for t in tables}
    all_pairs = [(a, b) for i, a in enumerate(tables) for b in tables[i + 1:]]
    pairs = [all_pairs[i] for i in sorted(rng.choice(len(all_pairs), size=cfg.pairs, replace=False))]
    dense_tables = sorted(rng.choice(tables, size=cfg.dense_tables, replace=False).tolist())
    model = ClickModel(
        config=cfg, seed=seed, zipf=zipf, offsets=np.cumsum((0,) + sizes[:-1]),
        index_of_rank=np.concatenate(index_of_rank), main=np.concatenate(main).astype(np.float32),
        latent=latent, pairs=pairs, dense_tables=dense_tables,
        dense_zero=rng.uniform(0.05, 0.5, NUM_DENSE), dense_mu=rng.uniform(0.0, 3.0, NUM_DENSE),
        dense_sigma=rng.uniform(0.8, 2.0, NUM_DENSE), dense_w=rng.standard_normal(NUM_DENSE),
        dense_proj=rng.standard_normal((k, NUM_DENSE)) / math.sqrt(NUM_DENSE / 2),
    )
    _calibrate(model, np.random.default_rng([seed, _CALIBRATION_STREAM]))
    return model


def _calibrate(model: ClickModel, rng: np.random.Generator) -> None:
    cfg = model.config
    dense, sparse = model.features(rng, _CALIBRATION_ROWS)
    d = dense.astype(np.float64)
    model.dense_mean, model.dense_std = d.mean(0), np.maximum(d.std(0), 1e-6)
    terms = model.terms(dense, sparse)
    target = np.array([cfg.std_dense, cfg.std_main, cfg.std_pair, cfg.std_dense_pair])
    model.scales = target / np.maximum(terms.std(0), 1e-12)
    s = terms @ model.scales
    lo, hi = -20.0, 20.0  # mean sigmoid is monotone in the bias: bisect to the positive rate
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-(mid + s)))) < cfg.positive_rate else (lo, mid)
    model.bias = (lo + hi) / 2


def split_chunks(model: ClickModel, split: str, rows: int) -> Iterator[tuple[np.ndarray, ...]]:
    """The rows of a split, chunk by chunk: (label, dense, sparse, probability)."""
    for c in range(-(-rows // CHUNK_ROWS)):
        rng = np.random.default_rng([model.seed, SPLIT_STREAM[split], c])
        k = min(CHUNK_ROWS, rows - c * CHUNK_ROWS)
        yield tuple(a[:k] for a in model.sample(rng, CHUNK_ROWS))  # always a full chunk: prefixes agree


class _ShardCutter:
    """Cut a stream of row chunks into ``shards`` files of near-equal rows, writing each when full."""

    def __init__(self, out: Path, split: str, rows: int, shards: int) -> None:
        self.out, self.split = out, split
        self.bounds = [rows * i // shards for i in range(shards + 1)]
        self.refs: list[ShardRef] = []
        self.buf: tuple[np.ndarray, ...] = ()
        self.filled = 0

    def add(self, *arrays: np.ndarray) -> None:
        at, n = 0, len(arrays[0])
        while at < n:
            part = len(self.refs)
            size = self.bounds[part + 1] - self.bounds[part]
            if self.filled == 0:
                self.buf = (np.empty(size, np.float32), np.empty((size, NUM_DENSE), np.float32),
                            np.empty((size, NUM_SPARSE), np.int32))
            take = min(size - self.filled, n - at)
            for dst, src in zip(self.buf, arrays):
                dst[self.filled:self.filled + take] = src[at:at + take]
            self.filled, at = self.filled + take, at + take
            if self.filled == size:
                name = f"{self.split}-{part:05d}.h5"
                write_shard(self.out / name, *self.buf)
                self.refs.append(ShardRef(path=name, rows=size))
                self.filled = 0


def _write_split(out: Path, split: str, model: ClickModel, rows: int, shards: int) -> tuple[list[ShardRef], dict]:
    """Write a split; return its shard refs, positive rate and (val/test only) ceiling AUC."""
    cutter = _ShardCutter(out, split, rows, shards)
    keep = split != "train"  # the ceiling needs every probability: kept for the (smaller) eval splits
    probs, labels, positives = [], [], 0.0
    for label, dense, sparse, p in split_chunks(model, split, rows):
        cutter.add(label, dense, sparse)
        positives += float(label.sum(dtype=np.float64))
        if keep:
            probs.append(p)
            labels.append(label)
    ceiling = None
    if keep:
        y = np.concatenate(labels)
        ceiling = exact_auc(np.concatenate(probs), y) if 0 < positives < rows else None
    return cutter.refs, {"positive_rate": positives / rows, "ceiling_auc": ceiling}


def _remove_dataset(out: Path) -> None:
    """Manifest first (a crash then leaves no dataset, not a mixed one), then the shards it names."""
    try:
        old = read_manifest(out)
    except DataError:
        old = None
    (out / MANIFEST).unlink()
    for refs in (old.splits.values() if old else ()):
        for ref in refs:
            path = out / ref.path
            if path.resolve().parent == out.resolve():  # never a file outside the dataset directory
                path.unlink(missing_ok=True)


def generate(out: str | Path, rows: int, *, eval_rows: int | None = None, shards: int | None = None,
             seed: int = 0, model: ClickModelConfig | None = None, overwrite: bool = False) -> Manifest:
    """Write a synthetic dataset (train ``rows``, val and test ``eval_rows`` each) to ``out``.

    ``shards`` applies to train; val/test get shards of about the same size. The manifest is written
    last, so a directory without one is not a dataset (an interrupted run leaves none).
    """
    eval_rows = max(1, rows // 10) if eval_rows is None else eval_rows
    shards = max(1, -(-rows // _ROWS_PER_SHARD)) if shards is None else shards
    if rows < 1 or eval_rows < 0 or not 1 <= shards <= rows:
        raise ConfigError(f"need rows >= 1, eval_rows >= 0 and 1 <= shards <= rows; got {rows}, {eval_rows}, {shards}")
    check_out_dir(out)
    out = Path(out)
    if (out / MANIFEST).exists():
        if not overwrite:
            raise ConfigError(f"{out} already holds a dataset (manifest.json); pass --force to overwrite it")
        _remove_dataset(out)
    out.mkdir(parents=True, exist_ok=True)
    cm = build_click_model(model or ClickModelConfig(), seed)
    splits, stats = {}, {}
    for split, n in (("train", rows), ("val", eval_rows), ("test", eval_rows)):
        if n == 0:
            continue
        k = shards if split == "train" else max(1, min(n, round(shards * n / rows)))
        splits[split], stats[split] = _write_split(out, split, cm, n, k)
    manifest = Manifest(
        splits=splits, table_sizes=list(cm.config.table_sizes), bad_lines={},
        source={"kind": "synthetic", "seed": seed, "generator_version": GENERATOR_VERSION, "chunk_rows": CHUNK_ROWS},
        synthetic={"ceiling_auc": {s: v["ceiling_auc"] for s, v in stats.items() if s != "train"},
                   "click_model": cm.describe()},
        stats={"positive_rate": {s: v["positive_rate"] for s, v in stats.items()}},
    )
    write_manifest(out, manifest)
    return manifest


def _sizes(values: list[str]) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for v in values for x in v.split(",") if x)
    except ValueError as e:
        raise ConfigError(f"--table-sizes: not an integer list ({e})") from e
    if len(sizes) != NUM_SPARSE or min(sizes) < 1:
        raise ConfigError(f"--table-sizes: need {NUM_SPARSE} integers >= 1, got {len(sizes)}")
    return sizes


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m hpcdlrm.data synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="dataset directory to write")
    ap.add_argument("--rows", type=int, required=True, help="training rows")
    ap.add_argument("--eval-rows", type=int, help="rows of val and of test each (default rows/10)")
    ap.add_argument("--shards", type=int, help="training shards (default: one per 2M rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table-sizes", nargs="+", metavar="N", help=f"{NUM_SPARSE} table sizes (space or comma separated)")
    ap.add_argument("--force", action="store_true", help="overwrite an existing dataset in --out")
    a = ap.parse_args(argv)
    cfg = ClickModelConfig(table_sizes=_sizes(a.table_sizes)) if a.table_sizes else ClickModelConfig()
    t0 = time.perf_counter()
    m = generate(a.out, a.rows, eval_rows=a.eval_rows, shards=a.shards, seed=a.seed, model=cfg, overwrite=a.force)
    rows = ", ".join(f"{s} {m.rows(s):,}" for s in m.splits)
    rate = ", ".join(f"{s} {v:.4f}" for s, v in m.stats["positive_rate"].items())
    ceil = ", ".join(f"{s} {v:.4f}" for s, v in m.synthetic["ceiling_auc"].items() if v is not None)
    print(f"wrote {a.out} in {time.perf_counter() - t0:.1f} s: rows {rows}; positive rate {rate}; ceiling AUC {ceil}")
    return 0
