"""Synthetic Criteo: the recorded ceiling, determinism, positive rate, and a signal a linear model misses."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder

from hpcdlrm.data import synth
from hpcdlrm.data.__main__ import main
from hpcdlrm.data.auc import exact_auc
from hpcdlrm.data.format import read_manifest
from hpcdlrm.data.synth import ClickModel, ClickModelConfig, generate

TABLES = (3, 4, 6, 9, 13, 20, 30, 45, 60, 80, 100, 120, 150) * 2
CFG = ClickModelConfig(table_sizes=TABLES)


def read_split(d: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = read_manifest(d)
    parts = []
    for ref in m.splits[split]:
        with h5py.File(d / ref.path, "r") as f:
            parts.append((f["label"][:], f["dense"][:], f["sparse"][:]))
    return tuple(np.concatenate(x) for x in zip(*parts))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("synth")
    generate(d, 20000, eval_rows=20000, shards=3, seed=11, model=CFG)
    return d


def test_recorded_ceiling_is_the_auc_of_the_true_probabilities(data: Path) -> None:
    m = read_manifest(data)
    model = ClickModel.from_manifest(m)  # rebuilt from the manifest alone
    for split in ("val", "test"):
        label, dense, sparse = read_split(data, split)
        p = model.probability(dense, sparse)  # from the stored rows: the Bayes-optimal predictor
        assert m.synthetic["ceiling_auc"][split] == pytest.approx(roc_auc_score(label, p), abs=1e-12)
    assert 0.7 < m.synthetic["ceiling_auc"]["val"] < 0.9
    cm = m.synthetic["click_model"]
    assert cm["seed"] == 11 and cm["config"]["table_sizes"] == list(TABLES) and m.source["kind"] == "synthetic"


def test_positive_rate_is_near_criteo(data: Path) -> None:
    m = read_manifest(data)
    for split in ("train", "val", "test"):
        label = read_split(data, split)[0]
        assert m.stats["positive_rate"][split] == pytest.approx(label.mean(), abs=1e-9)
        assert 0.23 < label.mean() < 0.27
        assert set(np.unique(label)) == {0.0, 1.0}


def test_rows_look_like_preprocessed_criteo(data: Path) -> None:
    label, dense, sparse = read_split(data, "train")
    assert dense.dtype == np.float32 and sparse.dtype == np.int32 and dense.min() >= 0
    assert (sparse >= 0).all() and (sparse < np.array(TABLES)).all()
    counts = np.expm1(dense.astype(np.float64))
    assert np.allclose(counts, np.round(counts), atol=1e-3 * np.maximum(1, counts))  # log(1 + integer count)
    assert (dense == 0).mean() > 0.05 and counts.max() > 1000  # zeros and a heavy tail
    top = np.bincount(sparse[:, -1], minlength=TABLES[-1])
    assert top.max() > 10 * np.median(top)  # Zipf-like: a few rows take most lookups


def test_same_seed_same_rows_whatever_the_shard_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "CHUNK_ROWS", 700)  # many chunks, so shard cuts fall inside chunks
    a = generate(tmp_path / "a", 5000, eval_rows=900, shards=1, seed=3, model=CFG)
    b = generate(tmp_path / "b", 5000, eval_rows=900, shards=4, seed=3, model=CFG)
    c = generate(tmp_path / "c", 2100, eval_rows=300, shards=3, seed=3, model=CFG)
    d = generate(tmp_path / "d", 5000, eval_rows=900, shards=1, seed=4, model=CFG)
    assert [len(a.splits["train"]), len(b.splits["train"])] == [1, 4]
    for split in ("train", "val", "test"):
        ra, rb, rc = (read_split(tmp_path / x, split) for x in "abc")
        for x, y, z in zip(ra, rb, rc):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x[:len(z)], z)  # a smaller dataset is a prefix of a larger one
    assert a.synthetic == b.synthetic and a.stats == b.stats
    assert not np.array_equal(read_split(tmp_path / "a", "train")[2], read_split(tmp_path / "d", "train")[2])


def test_linear_model_falls_short_of_the_ceiling_that_the_true_terms_reach(data: Path) -> None:
    m = read_manifest(data)
    model = ClickModel.from_manifest(m)
    (ytr, dtr, str_), (yva, dva, sva) = read_split(data, "train"), read_split(data, "val")
    ceiling = m.synthetic["ceiling_auc"]["val"]
    enc = OneHotEncoder(handle_unknown="ignore").fit(str_)
    mu, sd = dtr.mean(0), dtr.std(0)

    def onehot(dense: np.ndarray, sparse: np.ndarray):  # noqa: ANN202
        from scipy.sparse import csr_matrix, hstack  # noqa: PLC0415

        return hstack([enc.transform(sparse), csr_matrix((dense - mu) / sd)]).tocsr()

    lr = LogisticRegression(C=0.1, max_iter=500).fit(onehot(dtr, str_), ytr)
    linear = roc_auc_score(yva, lr.predict_proba(onehot(dva, sva))[:, 1])
    # The same amount of data suffices when the features are the model's own terms: the linear model's
    # shortfall is the interactions it cannot represent, not a lack of rows.
    oracle = LogisticRegression().fit(model.terms(dtr, str_), ytr)
    oracle_auc = roc_auc_score(yva, oracle.predict_proba(model.terms(dva, sva))[:, 1])
    assert oracle_auc > ceiling - 0.005
    assert linear < ceiling - 0.03, (linear, ceiling)
    assert (linear - 0.5) / (ceiling - 0.5) < 0.85


def test_exact_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(5000) < 0.3
    scores = np.round(rng.random(5000) + y * 0.3, 1)  # few distinct values: many ties
    assert exact_auc(scores, y) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert exact_auc(np.ones(4), np.array([0, 1, 0, 1])) == 0.5
    assert exact_auc(np.array([0.1, 0.9]), np.array([0, 1])) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        exact_auc(np.ones(3), np.zeros(3))


def test_cli_writes_a_dataset_and_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    sizes = ",".join(map(str, TABLES[:13]))
    argv = ["synth", "--out", str(out), "--rows", "3000", "--eval-rows", "1000", "--seed", "2", "--shards", "3",
            "--table-sizes", sizes, *map(str, TABLES[13:])]
    assert main(argv) == 0
    assert "ceiling AUC val 0." in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["table_sizes"] == list(TABLES) and m["source"]["seed"] == 2
    assert main(argv) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert main([*argv, "--force", "--shards", "1"]) == 0  # the last --shards wins
    assert sorted(p.name for p in out.glob("train-*")) == ["train-00000.h5"]  # no stale shards left
    assert read_manifest(out).rows("train") == 3000
    assert main(["synth", "--out", str(tmp_path / "e"), "--rows", "10", "--table-sizes", "5,5"]) == 2
    assert "--table-sizes: need 26 integers" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "f"), "--rows", "10", "--shards", "0"]) == 2
    assert "shards" in capsys.readouterr().err
