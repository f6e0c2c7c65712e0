"""The vertical plan and the bf16 exchange in real training: 2 real ranks (mpiexec) follow the 1-rank curve.

Module-level exactness (forward, backward, sparse update, bytes of every exchange at 2 and 4 ranks) is in
tests/_dist_worker.py; here the whole run: loss curve and AUC, on the tiny dataset of test_train.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_mpi
from hpcdlrm.data.synth import ClickModelConfig, generate
from hpcdlrm.io import read_jsonl
from hpcdlrm.train.__main__ import main

TABLES = (3, 4, 7, 12, 20, 35, 60, 100, 170, 280, 460, 750, 1200, 2000,
          300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1300, 1500, 1700)
BASE = {"arch_mlp_bot": "13-32-8", "arch_mlp_top": "32-1", "emb_dim": 8, "batch_size": 256,
        "eval_batch_size": 1024, "log_every": 2, "threads": 1, "epochs": 1, "eval_every": 2560}
ADAGRAD = {**BASE, "dense_optimizer": "adagrad", "sparse_optimizer": "rowwise_adagrad", "lr": 0.05, "sparse_lr": 0.1}
WORKER = str(Path(__file__).with_name("_train_worker.py"))


def _flags(data: Path, out: Path, fields: dict) -> list[str]:
    argv = ["--data", str(data), "--out", str(out)]
    for k, v in fields.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return argv


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in read_jsonl(run_dir / "metrics.jsonl") if e["event"] == "train"]


def _result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


@pytest.mark.mpi
def test_vertical_and_bf16_exchange_follow_the_one_rank_curve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(data, 6144, eval_rows=2048, seed=1, model=ClickModelConfig(table_sizes=TABLES))
    bf16 = {**BASE, "bf16": True}  # fp32 tables, bf16 MLPs: the exchange carries bf16 (half the bytes)
    runs = [
        # one big table (2000 rows): its 8 columns split 4 + 4 over the 2 ranks; row-wise Adagrad needs
        # the full-row squared sums of the two owners
        ("vertical-split", {**ADAGRAD, "sharding": "vertical", "replicate_threshold": 1800}, "one-adagrad"),
        # 20 big tables: whole tables dealt round-robin
        ("vertical-tables", {**BASE, "sharding": "vertical", "replicate_threshold": 50}, "one"),
        ("bf16-a2a", {**bf16, "sharding": "table", "replicate_threshold": 50}, "one-bf16"),
    ]
    for name, fields in (("one", BASE), ("one-adagrad", ADAGRAD), ("one-bf16", bf16)):
        assert main(_flags(data, tmp_path / name, fields)) == 0
    two = [(name, {**fields, "backend": "auto", "overlap": False}) for name, fields, _ in runs]
    proc = run_mpi(2, [WORKER, str(data), str(tmp_path), json.dumps(two)], timeout=180)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert [(x["name"], x["kind"], x["ranks"], x["status"]) for x in lines] == [
        (name, fields["sharding"], 2, "completed") for name, fields, _ in runs]
    for name, fields, ref in runs:
        got, want = _losses(tmp_path / name), _losses(tmp_path / ref)
        assert [s for s, _ in got] == [s for s, _ in want] and len(got) >= 10, name
        worst = max(abs(a - b) / abs(b) for (_, a), (_, b) in zip(got, want))
        # fp32: the same sums in another order; bf16: each rank's bf16 gradient over half the batch
        assert worst < (1e-2 if fields.get("bf16") else 1e-5), f"{name}: loss curves differ by {worst:.2e}"
        assert abs(_result(tmp_path / name)["best_auc"] - _result(tmp_path / ref)["best_auc"]) < 2e-3, name
    split = _result(tmp_path / "vertical-split")["plan"]
    assert [p[1:] for p in split["pieces"]] == [[0, 4, 0], [4, 8, 1]]  # table 13's columns on both ranks
    assert _result(tmp_path / "bf16-a2a")["env"]["backend"] == "mpi"
