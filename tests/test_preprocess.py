"""The preprocess pipeline end to end, against a per-line reference of its documented rules."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import mpiexec, run_mpi
from test_criteo_parse import line, reference

from hpcdlrm.data import preprocess as pp
from hpcdlrm.data.__main__ import main as data_main
from hpcdlrm.data.format import read_manifest
from hpcdlrm.data.preprocess import PreprocessConfig, run
from hpcdlrm.errors import ConfigError, DataError


def random_lines(n: int, seed: int = 0, bad_every: int = 23) -> list[str]:
    """Criteo lines with missing values, negatives, repeated categoricals and a bad line every so often."""
    rng = np.random.default_rng(seed)
    pool = [f"{v:08x}" for v in rng.integers(0, 2**32, 40).tolist()]
    out = []
    for i in range(n):
        dense = [str(rng.integers(-2, 500)) if rng.random() > 0.2 else "" for _ in range(13)]
        cat = [pool[min(int(rng.zipf(1.5)), 39)] if rng.random() > 0.15 else "" for _ in range(26)]
        ln = line(str(int(rng.random() < 0.3)), dense, cat)
        if bad_every and i % bad_every == 7:
            ln = [ln.rsplit("\t", 1)[0], with_field(ln, 1 + i % 13, "1.5"), with_field(ln, 0, "3"),
                  with_field(ln, 14 + i % 26, "nothex!!")][i % 4]
        out.append(ln)
    return out


def with_field(ln: str, i: int, value: str) -> str:
    f = ln.split("\t")
    f[i] = value
    return "\t".join(f)


def write(path: Path, lines: list[str], newline: str = "\n") -> Path:
    data = (newline.join(lines) + newline).encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def load(out: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    m = read_manifest(out)
    res = {}
    for split, refs in m.splits.items():
        parts = []
        for r in refs:
            with h5py.File(out / r.path) as f:
                parts.append((f["label"][:], f["dense"][:], f["sparse"][:]))
                assert len(parts[-1][0]) == r.rows
        res[split] = tuple(np.concatenate(x) for x in zip(*parts))
    return res


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for split in a:
        for x, y in zip(a[split], b[split]):
            np.testing.assert_array_equal(x, y)


def expected_kaggle(lines: list[str], encode) -> dict[str, tuple]:
    """Reference split: 7 days by line count (first days one longer), day 6 halved test/val."""
    per, extra = divmod(len(lines), 7)
    train_end = sum(per + (d < extra) for d in range(6))
    test_end = train_end + math.ceil((len(lines) - train_end) / 2)
    parts = {"train": lines[:train_end], "test": lines[train_end:test_end], "val": lines[test_end:]}
    return {s: _arrays(ls, encode) for s, ls in parts.items() if any(reference(x)[0] is None for x in ls)}


def _arrays(lines: list[str], encode) -> tuple:
    good = [v for r, v in map(reference, lines) if r is None]
    return (np.array([g[0] for g in good], np.float32), np.array([g[1] for g in good], np.float32),
            np.array([[encode(j, c) for j, c in enumerate(g[2])] for g in good], np.int64))


def hash_encode(r: int):
    return lambda j, v: 0 if v < 0 else v % r


def cfg(tmp: Path, inputs, out: str = "out", **kw) -> PreprocessConfig:
    kw.setdefault("max_ind_range", 1000)
    kw.setdefault("chunk_rows", 128)
    kw.setdefault("block_bytes", 16384)  # several blocks per shard, even in small files
    kw.setdefault("threads", 1)
    return PreprocessConfig(inputs=tuple(str(p) for p in inputs), out=str(tmp / out), format=kw.pop("format", "kaggle"), **kw)


@pytest.mark.parametrize("threads", [1, 2])
def test_kaggle_rows_splits_and_counts_match_reference(tmp_path: Path, threads: int) -> None:
    lines = random_lines(800)
    src = write(tmp_path / "train.txt", lines)
    m = run(cfg(tmp_path, [src], threads=threads, block_bytes=4096))
    got = load(tmp_path / "out")
    want = expected_kaggle(lines, hash_encode(1000))
    for split in want:
        for x, y in zip(got[split], want[split]):
            np.testing.assert_allclose(x, y, rtol=1e-6)
    reasons = Counter(r for r, _ in map(reference, lines) if r)
    assert m.bad_lines == {r: reasons.get(r, 0) for r in ("field_count", "label", "dense", "categorical")}
    assert all(reasons.values()) and len(reasons) == 4
    assert m.source["lines"] == 800 == sum(m.bad_lines.values()) + sum(m.rows(s) for s in m.splits)
    assert m.table_sizes == [1000] * 26 and m.source["kind"] == "kaggle"
    assert m.stats["positive_rate"]["train"] == pytest.approx(want["train"][0].mean())
    assert max(r.rows for refs in m.splits.values() for r in refs) <= 128
    first_bad = next(i for i, ln in enumerate(lines) if reference(ln)[0]) + 1
    assert m.source["bad_line_examples"][0][0] == f"{src}:{first_bad}"


def test_gz_crlf_and_several_files_give_the_same_rows(tmp_path: Path) -> None:
    lines = random_lines(600, seed=1)
    run(cfg(tmp_path, [write(tmp_path / "all.txt", lines)], "plain"))
    run(cfg(tmp_path, [write(tmp_path / "all.txt.gz", lines)], "gz", threads=2))
    run(cfg(tmp_path, [write(tmp_path / "crlf.txt", lines, "\r\n")], "crlf"))
    parts = [write(tmp_path / "a.txt", lines[:250]), write(tmp_path / "b.txt.gz", lines[250:])]
    m = run(cfg(tmp_path, parts, "parts"))
    for out in ("gz", "crlf", "parts"):
        assert_same(load(tmp_path / "plain"), load(tmp_path / out))
    assert m.source["files"] == [str(p) for p in parts]


@pytest.mark.parametrize("threads", [1, 2])
def test_strict_stops_at_the_first_bad_line_with_its_location(tmp_path: Path, threads: int) -> None:
    lines = random_lines(400, bad_every=0)
    lines[300] = with_field(lines[300], 1, "7.5")
    lines[350] = "2" + lines[350][1:]
    src = write(tmp_path / "t.txt", lines)
    with pytest.raises(DataError, match=rf"{src}:301: bad line \(dense: I1 '7.5' is not an integer\)"):
        run(cfg(tmp_path, [src], strict=True, threads=threads))
    # The shards before the bad line were finished and kept: a lenient rerun elsewhere, and these exist.
    kept = sorted(p.name for p in (tmp_path / "out").glob("train-*.h5"))
    assert kept and len(kept) == len(list((tmp_path / "out/.preprocess/done").glob("*.json")))
    m = run(cfg(tmp_path, [src], "lenient"))
    assert m.bad_lines["dense"] == 1 and m.bad_lines["label"] == 1


def test_truncated_gz_and_unreadable_inputs_are_named(tmp_path: Path) -> None:
    good = write(tmp_path / "x.txt.gz", random_lines(2000, bad_every=0))
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"{cut}: truncated or corrupt gzip"):
        run(cfg(tmp_path, [cut]))
    with pytest.raises(DataError, match="nope.txt: no such file"):
        run(cfg(tmp_path, [tmp_path / "nope.txt"], "o2"))
    with pytest.raises(DataError, match="no lines in the inputs"):
        (tmp_path / "empty.txt").write_bytes(b"")
        run(cfg(tmp_path, [tmp_path / "empty.txt"], "o3"))


def test_short_lines_are_bad_and_stripped_files_refused(tmp_path: Path) -> None:
    lines = random_lines(300, bad_every=0)
    lines[5] = lines[5].rsplit("\t", 1)[0]  # one line lost its trailing field(s): counted, not padded
    lines[9] = lines[9][:40] + "\r" + lines[9][40:]  # a lone CR inside a line: bad, line numbers stay true
    src = write(tmp_path / "few.txt", lines)
    m = run(cfg(tmp_path, [src]))
    assert m.bad_lines["field_count"] == 1 and sum(m.bad_lines.values()) == 2
    assert [e[0] for e in m.source["bad_line_examples"]] == [f"{src}:6", f"{src}:10"]
    stripped = [ln.rstrip("\t") for ln in random_lines(300, bad_every=0)]
    with pytest.raises(DataError, match="trailing empty fields were stripped"):
        run(cfg(tmp_path, [write(tmp_path / "stripped.txt", stripped)], "o2"))


def test_min_count_vocabulary(tmp_path: Path) -> None:
    lines = random_lines(700, seed=3)
    m = run(cfg(tmp_path, [write(tmp_path / "v.txt", lines)], max_ind_range=None, min_count=3))
    want_train = expected_kaggle(lines, lambda j, v: v)["train"]
    counts = [Counter(want_train[2][:, j][want_train[2][:, j] >= 0].tolist()) for j in range(26)]
    vocab = [sorted(v for v, c in cnt.items() if c >= 3) for cnt in counts]
    assert m.table_sizes == [len(v) + 1 for v in vocab]
    assert m.source["categorical"] == {"mode": "vocab", "min_count": 3, "counted_on": "train", "oov_and_missing": 0}
    index = [{v: i + 1 for i, v in enumerate(voc)} for voc in vocab]
    want = expected_kaggle(lines, lambda j, v: index[j].get(v, 0))
    assert_same(load(tmp_path / "out"), {s: want[s] for s in want})
    with np.load(tmp_path / "out/.preprocess/vocab.npz") as z:
        assert z["C1"].tolist() == vocab[0]


def test_terabyte_days_and_eval_day_rules(tmp_path: Path) -> None:
    days = {d: random_lines(150 + 10 * d, seed=d) for d in range(3)}
    files = [write(tmp_path / f"day_{d}{'.gz' if d == 0 else ''}", ls) for d, ls in days.items()]
    m = run(cfg(tmp_path, files[::-1], format="terabyte", chunk_rows=40))
    assert m.source["eval_day"] == 2 and m.source["files"] == [str(f) for f in files]
    got = load(tmp_path / "out")
    enc = hash_encode(1000)
    train = _arrays(days[0] + days[1], enc)
    half = math.ceil(len(days[2]) / 2)
    want = {"train": train, "test": _arrays(days[2][:half], enc), "val": _arrays(days[2][half:], enc)}
    assert_same(got, want)
    assert any(r.path.startswith("train-00000-0003") for r in m.splits["train"])  # day_0.gz: uncounted, cut as read
    with pytest.raises(ConfigError, match="only day 1 is given.*--eval-day 1"):
        run(cfg(tmp_path, [files[1]], "single", format="terabyte"))
    m = run(cfg(tmp_path, [files[1]], "single", format="terabyte", eval_day=1))
    assert "train" not in m.splits and m.rows("test") + m.rows("val") + sum(m.bad_lines.values()) == len(days[1])
    with pytest.raises(ConfigError, match="cannot tell the Terabyte day"):
        run(cfg(tmp_path, [write(tmp_path / "x.txt", days[0])], "o4", format="terabyte"))


def _failing_after(k: int, real):
    calls = []

    def write_shard(*a, **kw):
        if len(calls) == k:
            raise KeyboardInterrupt("simulated kill")
        calls.append(a[0])
        return real(*a, **kw)
    return write_shard, calls


@pytest.mark.parametrize("mode", [{"max_ind_range": 997}, {"min_count": 2, "max_ind_range": None},
                                  {"max_ind_range": 997, "threads": 2}])
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path: Path, monkeypatch, mode) -> None:
    src = write(tmp_path / "r.txt", random_lines(900, seed=5))
    full = run(cfg(tmp_path, [src], "full", **mode))
    crash, _ = _failing_after(3, pp.write_shard)  # raised on the writer thread
    monkeypatch.setattr(pp, "write_shard", crash)
    with pytest.raises(KeyboardInterrupt):
        run(cfg(tmp_path, [src], "resumed", **mode))
    assert not (tmp_path / "resumed/manifest.json").exists()
    (tmp_path / "resumed/.train-00005-0000.h5.999.tmp").write_bytes(b"half a shard from a killed process")
    monkeypatch.undo()
    counting, calls = _failing_after(-1, pp.write_shard)
    monkeypatch.setattr(pp, "write_shard", counting)
    if "min_count" in mode:  # the vocabulary saved by the first try is reused, not recounted
        monkeypatch.setattr(pp.ValueCounter, "add", lambda *a: pytest.fail("vocabulary counted again"))
    resumed = run(cfg(tmp_path, [src], "resumed", **mode))
    assert len(calls) == sum(len(v) for v in full.splits.values()) - 3
    assert resumed == full
    assert_same(load(tmp_path / "full"), load(tmp_path / "resumed"))
    assert not list((tmp_path / "resumed").glob(".*.tmp"))


def test_resume_after_deleting_or_truncating_shards_and_manifest(tmp_path: Path, monkeypatch) -> None:
    src = write(tmp_path / "r.txt", random_lines(700, seed=6))
    first = run(cfg(tmp_path, [src]))
    before = load(tmp_path / "out")
    shards = sorted((tmp_path / "out").glob("train-*.h5"))
    for p in [tmp_path / "out/manifest.json", *shards[1:3]]:
        p.unlink()
    with open(shards[3], "r+b") as f:  # what a machine crash can leave of an unsynced file
        f.truncate(f.seek(0, 2) // 2)
    counting, calls = _failing_after(-1, pp.write_shard)
    monkeypatch.setattr(pp, "write_shard", counting)
    assert run(cfg(tmp_path, [src])) == first
    assert len(calls) == 3
    assert_same(before, load(tmp_path / "out"))


def test_rerun_with_other_arguments_or_into_a_foreign_dir_is_refused(tmp_path: Path) -> None:
    src = write(tmp_path / "r.txt", random_lines(200))
    run(cfg(tmp_path, [src]))
    with pytest.raises(ConfigError, match="other arguments.*chunk_rows: 128 -> 64"):
        run(cfg(tmp_path, [src], chunk_rows=64))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign/notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        run(cfg(tmp_path, [src], "foreign"))
    with pytest.raises(ConfigError, match="exactly one of --max-ind-range"):
        run(cfg(tmp_path, [src], "o5", min_count=2))


def test_cli_refuses_traps_in_one_line(tmp_path: Path, capsys) -> None:
    src = tmp_path / "floats.csv"
    src.write_text("label,I1,I2\n" + "\n".join(",".join(["1", "2.0"] * 20) for _ in range(5)) + "\n")
    assert data_main(["preprocess", "--format", "kaggle", "--out", str(tmp_path / "o"), "--max-ind-range", "10", str(src)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "looks like CSV with a header row" in err and "integer fields written as floats" in err


def test_real_samples(shared_criteo: Path, tmp_path: Path, capsys) -> None:
    src = shared_criteo / "kaggle_train_sample_4584.txt"
    m = run(cfg(tmp_path, [src], "kaggle", chunk_rows=1000, max_ind_range=None, min_count=2, block_bytes=1 << 19))
    lines = src.read_text().splitlines()
    good = [v for r, v in map(reference, lines) if r is None]
    assert m.source["lines"] == len(lines) == sum(m.rows(s) for s in m.splits) + sum(m.bad_lines.values())
    positives = sum(m.stats["positive_rate"][s] * m.rows(s) for s in m.splits)
    assert round(positives) == sum(g[0] for g in good) and 0.2 < positives / len(good) < 0.35
    tb = shared_criteo / "terabyte_day_0_part_10000.txt"
    m = run(cfg(tmp_path, [tb], "tb", format="terabyte", eval_day=0, chunk_rows=4000, block_bytes=1 << 19))
    assert (m.rows("test"), m.rows("val")) == (5000, 5000) and sum(m.bad_lines.values()) == 0
    assert round(m.stats["positive_rate"]["test"] * 5000 + m.stats["positive_rate"]["val"] * 5000) == \
        sum(int(ln[0]) for ln in tb.read_text().splitlines())
    for trap, phrase in (("traps/csv_with_id_and_header.csv", "looks like CSV with a header row"),
                         ("traps/pandas_export_floats_header.csv", "integer fields written as floats"),
                         ("kaggle_test_unlabeled_6042.txt", "unlabelled Kaggle test file")):
        rc = data_main(["preprocess", "--format", "kaggle", "--out", str(tmp_path / trap.replace("/", "_")),
                        "--max-ind-range", "100", str(shared_criteo / trap)])
        assert rc == 2 and phrase in capsys.readouterr().err


@pytest.mark.mpi
def test_two_ranks_write_the_same_dataset_as_one(tmp_path: Path) -> None:
    lines = random_lines(1500, seed=8)
    files = [write(tmp_path / "a.txt", lines[:1000]), write(tmp_path / "b.txt.gz", lines[1000:])]
    args = ["--format", "kaggle", "--min-count", "2", "--chunk-rows", "300", *map(str, files)]
    one = run(cfg(tmp_path, files, "one", max_ind_range=None, min_count=2, chunk_rows=300, block_bytes=1 << 19))
    proc = run_mpi(2, ["-m", "hpcdlrm.data", "preprocess", "--out", str(tmp_path / "two"), *args], timeout=120)
    assert "wrote" in proc.stdout and proc.stdout.count("wrote") == 1  # rank 0 reports
    assert read_manifest(tmp_path / "two") == one
    # Same shards, same rows in the same order: the plan does not depend on the rank count.
    assert_same(load(tmp_path / "one"), load(tmp_path / "two"))
    clean = random_lines(1000, seed=9, bad_every=0)
    clean[300], clean[900] = "2" + clean[300][1:], "3" + clean[900][1:]
    bad = write(tmp_path / "bad.txt", clean)  # two ranks each meet one; the earlier one is reported
    exe = mpiexec()
    proc = subprocess.run([exe, "-n", "2", sys.executable, "-m", "hpcdlrm.data", "preprocess", "--strict",
                           "--out", str(tmp_path / "strict"), "--format", "kaggle", "--max-ind-range", "9",
                           "--chunk-rows", "100", str(bad)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and f"{bad}:301: bad line (label: '2' is not 0 or 1)" in proc.stderr and ":901" not in proc.stderr


def test_line_blocks_cut_skip_long_lines_and_lone_cr(tmp_path: Path) -> None:
    from hpcdlrm.data.preprocess_io import LineBlocks, Source

    text = b"".join(b"%d\t" % i + b"x" * (i % 7) + b"\n" for i in range(300)) + b"y" * 5000 + b"\nlast\rline"
    path = tmp_path / "lines.txt"
    path.write_bytes(text)
    with Source(str(path), gz=False) as src:
        blocks = LineBlocks(src, block_bytes=64)
        assert blocks.skip(10) == 10
        buf, start, end, n = blocks.take(5)
        assert n == 5 and bytes(buf[start:end]).startswith(b"10\t") and bytes(buf[start:end]).count(b"\n") == 5
        buf, start, end, n = blocks.take(2)  # a block cut short at the limit; the rest is taken again
        assert n == 2 and bytes(buf[start:end]) == b"".join(text.splitlines(keepends=True)[15:17])
        assert blocks.skip(10**9) == 302 - 17  # 300 short lines, a long one, a last one
    with Source(str(path), gz=False) as src:
        blocks = LineBlocks(src, block_bytes=64)
        blocks.skip(300)
        buf, start, end, n = blocks.take(10)
        assert n == 1 and end - start == 5001  # a line longer than a block comes whole
        buf, start, end, n = blocks.take(10)
        assert bytes(buf[start:end]) == b"last?line\n" and n == 1  # lone CR replaced, newline supplied
        assert blocks.take(10) is None and blocks.at_end()


def test_plan_rules_on_counts_alone() -> None:
    from hpcdlrm.data.preprocess_pass import threads_for
    from hpcdlrm.data.preprocess_plan import InputFile, Piece, assign, shard_specs, split_cuts

    files = [InputFile("/a", 0, False, None, 100.0), InputFile("/b", 0, False, None, 100.0)]
    # 10 lines: days of 2,2,2,1,1,1 | 1 -> train 9, test 1 (the larger half), val 0.
    pieces = [Piece(0, 0, 0, 0, 1, 4), Piece(1, 0, 0, 0, 5, 3), Piece(2, 1, 0, 0, 1, 3)]
    cuts = split_cuts("kaggle", files, pieces, None)
    assert cuts == {0: [("train", 4)], 1: [("train", 3)], 2: [("train", 2), ("test", 1)]}
    specs = shard_specs(pieces, cuts, chunk_rows=3)
    assert [(s.name, s.lines) for s in specs] == [
        ("train-00000-0000.h5", 2), ("train-00000-0001.h5", 2), ("train-00001-0000.h5", 3),
        ("train-00002-0000.h5", 2), ("test-00002-0001.h5", 1)]
    days = [InputFile(f"/day_{d}", 0, d == 0, d, 100.0) for d in (0, 5)]
    tb = [Piece(0, 0, 0, 0, 1, None), Piece(1, 1, 0, 0, 1, 5)]
    assert split_cuts("terabyte", days, tb, 5) == {0: [("train", None)], 1: [("test", 3), ("val", 2)]}
    assert assign([5, 1, 4, 2], 2) == [[0, 1], [2, 3]] and assign([1, 1], 1) == [[0, 1]]
    assert threads_for(3, 8) == 3 and threads_for(0, 1) >= 1
