"""``python -m hpcdlrm.data inspect``: the summary, and named errors for missing or broken shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hpcdlrm.data.__main__ import main
from hpcdlrm.data.format import Manifest, ShardRef, read_manifest, write_manifest, write_shard
from hpcdlrm.data.synth import ClickModelConfig, generate

TABLES = (3, 5, 9, 17, 33, 65) * 4 + (129, 257)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("synth")
    generate(d, 3000, eval_rows=1500, shards=2, seed=4, model=ClickModelConfig(table_sizes=TABLES))
    return d


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["inspect", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_summary_of_a_synthetic_dataset(synth: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, str(synth), "--json")
    info = json.loads(out)
    m = read_manifest(synth)
    assert rc == 0 and info["source"] == "synthetic" and info["seed"] == 4
    assert {s: v["rows"] for s, v in info["splits"].items()} == {"train": 3000, "val": 1500, "test": 1500}
    assert info["splits"]["train"]["shards"] == 2 and info["verified_shards"] == 4
    assert info["table_sizes"] == list(TABLES)
    assert info["ceiling_auc"] == m.synthetic["ceiling_auc"] and 0.6 < info["ceiling_auc"]["val"] < 1
    assert info["splits"]["val"]["positive_rate"] == m.stats["positive_rate"]["val"]


def test_text_summary(synth: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, str(synth))
    ceiling = read_manifest(synth).synthetic["ceiling_auc"]["test"]
    assert rc == 0 and "train          3,000      2" in out and f"{ceiling:.4f}" in out
    assert "all 4 shards present" in out


def test_positive_rate_is_counted_when_the_manifest_lacks_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    label = (np.arange(40) % 4 == 0).astype(np.float32)  # 10 of 40
    write_shard(tmp_path / "train-0.h5", label, np.zeros((40, 13), np.float32), np.zeros((40, 26), np.int32))
    write_manifest(tmp_path, Manifest(splits={"train": [ShardRef("train-0.h5", 40)]}, table_sizes=[1] * 26,
                                      bad_lines={"bad_field_count": 3}, source={"kind": "kaggle"}))
    rc, out, _ = run(capsys, str(tmp_path), "--json")
    info = json.loads(out)
    assert rc == 0 and info["splits"]["train"]["positive_rate"] == 0.25 and info["ceiling_auc"] is None
    assert info["bad_lines"] == {"bad_field_count": 3}


def copy_dataset(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_truncated_missing_and_corrupt_shards_are_named(synth: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    d = copy_dataset(synth, tmp_path / "short")
    write_shard(d / "train-00001.h5", np.zeros(10, np.float32), np.zeros((10, 13), np.float32),
                np.zeros((10, 26), np.int32))  # the manifest says 1500 rows
    rc, out, err = run(capsys, str(d))
    assert rc == 2 and out == "" and "train-00001.h5" in err and "1500 rows" in err and "train-00000" not in err

    d = copy_dataset(synth, tmp_path / "missing")
    (d / "val-00000.h5").unlink()
    (d / "test-00000.h5").write_bytes(b"not an hdf5 file")
    rc, _, err = run(capsys, str(d), "--json")
    assert rc == 2 and "2 bad shard(s)" in err
    assert "val-00000.h5: missing" in err and "test-00000.h5: cannot read shard" in err

    d = copy_dataset(synth, tmp_path / "cut")
    shard = d / "train-00000.h5"
    shard.write_bytes(shard.read_bytes()[:-1000])  # bytes lost at the end of the file
    rc, _, err = run(capsys, str(d))
    assert rc == 2 and "train-00000.h5" in err


def test_not_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, str(tmp_path))
    assert rc == 2 and "no manifest" in err
