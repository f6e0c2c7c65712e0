"""The rank-sharded loader: exact partitions, world-size equivalence, determinism, resume, real MPI ranks.

The test dataset is written by hand so every row can be recognised: sparse[:, 0] is the row's index in
its split, and every other field is a function of it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import run_mpi

from hpcdlrm.data import Dataset, RankLoader, open_dataset
from hpcdlrm.data.format import Manifest, ShardRef, write_manifest, write_shard
from hpcdlrm.errors import ConfigError, DataError

SHARDS = (1000, 37, 1, 2500, 463)  # uneven, with a one-row shard: blocks and batches straddle boundaries
N = sum(SHARDS)
G = 96  # divisible by 1, 2 and 3
BLOCK = 100


def rows_of(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    label = (ids % 3 == 0).astype(np.float32)
    dense = (ids[:, None] * 13 + np.arange(13)).astype(np.float32) / 7
    sparse = (ids[:, None] * 26 + np.arange(26)).astype(np.int32)
    sparse[:, 0] = ids
    return label, dense, sparse


def make_dataset(d: Path, shards: tuple[int, ...] = SHARDS, eval_shards: tuple[int, ...] = (300, 211)) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, sizes in (("train", shards), ("val", eval_shards)):
        refs, start = [], 0
        for i, n in enumerate(sizes):
            name = f"{split}-{i:05d}.h5"
            write_shard(d / name, *rows_of(np.arange(start, start + n)))
            refs.append(ShardRef(name, n))
            start += n
        splits[split] = refs
    write_manifest(d, Manifest(splits=splits, table_sizes=[10**6] * 26, source={"kind": "test"}))
    return d


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return open_dataset(make_dataset(tmp_path_factory.mktemp("ids")))


def check_rows(batch) -> np.ndarray:  # noqa: ANN001
    """The batch's row ids, after checking every field of every row against what was written."""
    ids = batch.sparse[:, 0].astype(np.int64)
    for got, want in zip((batch.label, batch.dense, batch.sparse), rows_of(ids)):
        np.testing.assert_array_equal(got, want)
    return ids


def epoch_batches(ds: Dataset, rank: int, world: int, epoch: int = 0, **kw) -> list[np.ndarray]:  # noqa: ANN003
    kw = {"global_batch_size": G, "seed": 5, "block_rows": BLOCK, **kw}
    loader = RankLoader(ds, kw.pop("split", "train"), rank=rank, world_size=world, **kw)
    return [check_rows(b) for b in loader.epoch(epoch)]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_training_epoch_partitions_rows_minus_dropped_tail(ds: Dataset, world: int) -> None:
    per_rank = [epoch_batches(ds, r, world) for r in range(world)]
    assert len({len(b) for b in per_rank}) == 1, "ranks must agree on the batch count"
    assert all(len(b) == G // world for batches in per_rank for b in batches)
    seen = np.concatenate([np.concatenate(b) for b in per_rank])
    assert len(seen) == (N // G) * G and len(np.unique(seen)) == len(seen)
    assert set(seen) <= set(range(N))


def test_global_batches_are_the_same_whatever_the_world_size(ds: Dataset) -> None:
    single = epoch_batches(ds, 0, 1, epoch=2)
    for world in (2, 3):
        ranks = [epoch_batches(ds, r, world, epoch=2) for r in range(world)]
        for t, whole in enumerate(single):
            # rank r holds the r-th contiguous slice of global batch t, in order
            np.testing.assert_array_equal(np.concatenate([ranks[r][t] for r in range(world)]), whole)


def test_no_drop_last_covers_every_row_once(ds: Dataset) -> None:
    for world in (1, 2, 3):
        seen = np.concatenate([np.concatenate(epoch_batches(ds, r, world, drop_last=False)) for r in range(world)])
        np.testing.assert_array_equal(np.sort(seen), np.arange(N))


def test_order_is_deterministic_per_seed_and_epoch(ds: Dataset) -> None:
    a, b = epoch_batches(ds, 1, 2, epoch=3), epoch_batches(ds, 1, 2, epoch=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    other_epoch = np.concatenate(epoch_batches(ds, 1, 2, epoch=4))
    other_seed = np.concatenate(epoch_batches(ds, 1, 2, epoch=3, seed=6))
    assert not np.array_equal(np.concatenate(a), other_epoch)
    assert not np.array_equal(np.concatenate(a), other_seed)
    # blocks of consecutive rows, shuffled: the first batch is not the file's first rows
    assert not np.array_equal(a[0], np.arange(G // 2, G))


def test_dropped_rows_differ_between_epochs(ds: Dataset) -> None:
    dropped = [set(range(N)) - set(np.concatenate(epoch_batches(ds, 0, 1, epoch=e))) for e in range(3)]
    assert all(len(d) == N % G for d in dropped) and len({frozenset(d) for d in dropped}) > 1


def test_resume_mid_epoch_is_the_tail_of_the_full_epoch(ds: Dataset) -> None:
    loader = RankLoader(ds, "train", rank=2, world_size=3, global_batch_size=G, seed=9, block_rows=BLOCK)
    full = [check_rows(b) for b in loader.epoch(1)]
    for k in (0, 1, 17, loader.batches_per_epoch - 1, loader.batches_per_epoch):
        tail = [check_rows(b) for b in loader.epoch(1, start_batch=k)]
        assert len(tail) == len(full) - k and all(np.array_equal(x, y) for x, y in zip(tail, full[k:]))
    with pytest.raises(ConfigError, match="start_batch"):
        loader.epoch(1, start_batch=loader.batches_per_epoch + 1)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_eval_ranks_hold_contiguous_ranges_that_partition_the_split(ds: Dataset, world: int) -> None:
    rows = ds.rows("val")
    per_rank = [epoch_batches(ds, r, world, split="val", shuffle=False, drop_last=False) for r in range(world)]
    for r, batches in enumerate(per_rank):
        ids = np.concatenate(batches)
        np.testing.assert_array_equal(ids, np.arange(rows * r // world, rows * (r + 1) // world))
        assert all(len(b) == G // world for b in batches[:-1]) and 0 < len(batches[-1]) <= G // world
    np.testing.assert_array_equal(np.concatenate([np.concatenate(b) for b in per_rank]), np.arange(rows))


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_a_batch_stays_valid_until_the_next_but_one_is_requested(ds: Dataset, prefetch: int) -> None:
    loader = RankLoader(ds, "train", global_batch_size=64, seed=1, prefetch=prefetch, block_rows=BLOCK)
    want = [check_rows(b).copy() for b in RankLoader(ds, "train", global_batch_size=64, seed=1,
                                                     prefetch=0, block_rows=BLOCK).epoch(0)]
    prev = None
    for t, batch in enumerate(loader.epoch(0)):
        np.testing.assert_array_equal(batch.sparse[:, 0], want[t])
        if prev is not None:  # the previous batch, still untouched while this one is in use
            np.testing.assert_array_equal(prev.sparse[:, 0], want[t - 1])
        prev = batch
    assert t == len(want) - 1


def test_abandoned_epoch_stops_its_thread(ds: Dataset) -> None:
    before = threading.active_count()
    it = RankLoader(ds, "train", global_batch_size=G, prefetch=2).epoch(0)
    next(it)
    assert threading.active_count() == before + 1
    it.close()
    assert threading.active_count() == before


def test_bad_arguments_are_config_errors(ds: Dataset) -> None:
    with pytest.raises(ConfigError, match="not a positive multiple of the world size 3"):
        RankLoader(ds, "train", rank=0, world_size=3, global_batch_size=100)
    with pytest.raises(ConfigError, match="split 'test' not in"):
        RankLoader(ds, "test")
    with pytest.raises(ConfigError, match="rank 2 is outside world size 2"):
        RankLoader(ds, "train", rank=2, world_size=2)


def test_missing_and_truncated_shards_are_named(tmp_path: Path) -> None:
    d = make_dataset(tmp_path / "a")
    (d / "train-00003.h5").unlink()
    with pytest.raises(DataError, match="train-00003.h5"):
        open_dataset(d)
    d = make_dataset(tmp_path / "b")
    write_shard(d / "train-00001.h5", *rows_of(np.arange(30)))  # the manifest says 37 rows
    loader = RankLoader(open_dataset(d), "train", global_batch_size=N, drop_last=False, shuffle=False)
    with pytest.raises(DataError, match=r"train-00001\.h5.*37 rows"):
        list(loader.epoch(0))
    d = make_dataset(tmp_path / "c")
    path = d / "train-00003.h5"
    path.write_bytes(path.read_bytes()[:-5000])  # cut the file itself: metadata intact, data short
    with pytest.raises(DataError, match="train-00003.h5"):
        list(RankLoader(open_dataset(d), "train", global_batch_size=N, drop_last=False, shuffle=False).epoch(0))


def test_chunked_shards_read_through_h5py_give_the_same_rows(tmp_path: Path) -> None:
    d = make_dataset(tmp_path)
    with h5py.File(d / "train-00003.h5", "w") as f:  # a foreign writer's layout: chunked + compressed
        for name, arr in zip(("label", "dense", "sparse"), rows_of(np.arange(1038, 1038 + 2500))):
            f.create_dataset(name, data=arr, chunks=True, compression="gzip")
    mixed = open_dataset(d)
    ids = np.concatenate(epoch_batches(mixed, 0, 1, drop_last=False))
    np.testing.assert_array_equal(np.sort(ids), np.arange(N))


WORKER = """
import sys
import numpy as np
from hpcdlrm import env
from hpcdlrm.data import RankLoader, open_dataset
info = env.detect()
ds = open_dataset(sys.argv[1])
loader = RankLoader(ds, "train", rank=info.rank, world_size=info.world_size, global_batch_size=96,
                    seed=5, block_rows=100)
ids = [b.sparse[:, 0].copy() for b in loader.epoch(1)]
np.save(f"{sys.argv[2]}/rank{info.rank}.npy", np.stack(ids))
"""


@pytest.mark.mpi
def test_two_real_ranks_partition_an_epoch(tmp_path: Path) -> None:
    d = make_dataset(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    run_mpi(2, ["-c", WORKER, str(d), str(out)], timeout=120)
    ranks = [np.load(out / f"rank{r}.npy") for r in range(2)]  # (batches, 48) each
    single = np.stack(epoch_batches(open_dataset(d), 0, 1, epoch=1))
    np.testing.assert_array_equal(np.concatenate(ranks, axis=1), single)
    seen = np.concatenate([r.ravel() for r in ranks])
    assert len(np.unique(seen)) == len(seen) == (N // G) * G


def test_loader_benchmark_reports_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    from hpcdlrm.bench.loader import main as bench  # noqa: PLC0415

    assert bench(["--rows", "20000", "--epochs", "1", "--world-size", "2", "--rank", "1", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    by = {x["metric"]: x for x in lines}
    assert set(by) == {"loader_train_samples_per_s", "page_cache_read_samples_per_s", "loader_eval_samples_per_s"}
    assert by["loader_train_samples_per_s"]["rows"] == (20000 // 4096) * 2048  # half of each full batch
    assert by["loader_eval_samples_per_s"]["rows"] == 1000  # rank 1's half of 2000 val rows
    assert all(x["value"] > 0 and x["unit"] == "samples/s" for x in lines)
