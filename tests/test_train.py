"""The training run: CLI end to end, stop rules, result files, resume, and 1-rank == 2-rank equality.

Everything runs on a tiny synthetic dataset (6k rows, small tables) with a small MLP so each run
takes a few seconds on two shared cores.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from conftest import run_mpi
from hpcdlrm.data.synth import ClickModelConfig, generate
from hpcdlrm.errors import ConfigError
from hpcdlrm.io import read_jsonl
from hpcdlrm.train import TrainConfig, loop
from hpcdlrm.train.__main__ import main

TABLES = (3, 4, 7, 12, 20, 35, 60, 100, 170, 280, 460, 750, 1200, 2000,
          300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1300, 1500, 1700)
SMALL = {"arch_mlp_bot": "13-32-8", "arch_mlp_top": "32-1", "emb_dim": 8, "batch_size": 256,
         "eval_batch_size": 1024, "log_every": 2, "threads": 1}  # optimizers and rates: the defaults
ROWS = 6144  # 24 steps per epoch at batch 256
WORKER = str(Path(__file__).with_name("_train_worker.py"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    generate(d, ROWS, eval_rows=2048, seed=1, model=ClickModelConfig(table_sizes=TABLES))
    return d


def flags(data: Path, out: Path, **extra: object) -> list[str]:
    out_flags = ["--data", str(data), "--out", str(out)]
    for k, v in {**SMALL, **extra}.items():
        out_flags += [f"--{k.replace('_', '-')}", str(v)] if v is not True else [f"--{k.replace('_', '-')}"]
    return out_flags


def evals(run_dir: Path) -> list[tuple[int, float]]:
    return [(e["step"], e["auc"]) for e in read_jsonl(run_dir / "metrics.jsonl") if e["event"] == "eval"]


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in read_jsonl(run_dir / "metrics.jsonl") if e["event"] == "train"]


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def test_cli_trains_logs_and_writes_the_result(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(flags(tiny, out, epochs=2)) == 0
    r = result(out)
    assert r["status"] == "completed" and r["steps"] == 48 and r["samples"] == 48 * 256
    assert r["epochs"] == 2.0 and r["best_auc"] > 0.6  # ceiling of this data is ~0.78
    assert r["time_to_target_s"] is None and r["samples_per_s"] > 0 and r["wall_s"] >= r["train_s"]
    assert r["config"]["emb_dim"] == 8 and r["env"]["ranks"] == 1 and r["env"]["hosts"]
    assert r["ceiling_auc"] > r["best_auc"] and 0 < r["gap_closed"] < 1
    events = read_jsonl(out / "metrics.jsonl")
    train = [e for e in events if e["event"] == "train"]
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in train] == list(range(2, 49, 2))
    assert [e["step"] for e in evals] == [24, 48]  # default: every epoch; the end coincides
    assert all(k in evals[0] for k in ("auc", "logloss", "accuracy", "wall_s", "samples_per_s", "epoch", "lr"))
    assert evals[0]["eval_samples"] == 2048
    assert train[-1]["loss"] < train[0]["loss"]
    assert max(e["auc"] for e in evals) == r["best_auc"]
    # Rerunning a finished run returns its result without training again.
    size = (out / "metrics.jsonl").stat().st_size
    assert main(flags(tiny, out, epochs=2)) == 0
    assert (out / "metrics.jsonl").stat().st_size == size


def test_target_auc_stops_as_soon_as_reached(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(flags(tiny, out, epochs=2, target_auc=0.55, eval_every=512)) == 0
    r = result(out)
    assert r["status"] == "reached_target" and r["best_auc"] >= 0.55
    assert r["samples_to_target"] == r["samples"] < 48 * 256
    assert 0 < r["time_to_target_s"] <= r["wall_s"]


def test_nan_loss_stops_with_status_diverged(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(flags(tiny, out, epochs=2, lr=1e30, sparse_lr=1e30, dense_optimizer="sgd", sparse_optimizer="sgd"))
    r = result(out)
    assert code == 3 and r["status"] == "diverged" and "non-finite" in r["reason"]
    assert r["steps"] < 48


def test_max_time_stops_with_timeout_and_evaluates_once(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(flags(tiny, out, epochs=2, max_time=1e-3)) == 0
    r = result(out)
    assert r["status"] == "timeout" and r["steps"] <= 2 and r["last_eval"] is not None
    assert [e["event"] for e in read_jsonl(out / "metrics.jsonl")][-1] == "eval"


def test_crash_then_rerun_resumes_the_same_curve(tiny: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ref, out = tmp_path / "ref", tmp_path / "run"
    common = dict(epochs=1.5, checkpoint_every=5 * 256, eval_every=2560)
    assert main(flags(tiny, ref, **common)) == 0
    real_step = loop.Engine.step

    def crashing(self: loop.Engine, batch: object, step: int, fl: tuple[float, float]):  # noqa: ANN202
        if step == 13:  # after the checkpoint at step 10, with train events logged up to step 12
            raise RuntimeError("node lost")
        return real_step(self, batch, step, fl)

    monkeypatch.setattr(loop.Engine, "step", crashing)
    with pytest.raises(RuntimeError, match="node lost"):
        main(flags(tiny, out, **common))
    r = result(out)
    assert r["status"] == "failed" and "node lost" in r["error"]
    assert losses(out)[-1][0] == 12
    monkeypatch.setattr(loop.Engine, "step", real_step)
    assert main(flags(tiny, out, **common)) == 0
    assert result(out)["resumed_from_step"] == 10
    got, want = losses(out), losses(ref)
    assert [s for s, _ in got] == [s for s, _ in want]
    assert all(abs(a - b) <= 1e-6 for (_, a), (_, b) in zip(got, want))
    assert [s for s, _ in evals(out)] == [s for s, _ in evals(ref)] == [10, 20, 30, 36]
    assert all(abs(a - b) <= 1e-6 for (_, a), (_, b) in zip(evals(out), evals(ref)))


def test_sigterm_checkpoints_and_the_rerun_continues(tiny: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ref, out = tmp_path / "ref", tmp_path / "run"
    common = dict(epochs=1, eval_every=2560, sparse_optimizer="rowwise_adagrad", dense_optimizer="adagrad",
                  lr=0.05, sparse_lr=0.1)
    assert main(flags(tiny, ref, **common)) == 0
    real_step = loop.Engine.step

    def signalled(self: loop.Engine, batch: object, step: int, fl: tuple[float, float]):  # noqa: ANN202
        if step == 10 and not fl[0]:
            os.kill(os.getpid(), signal.SIGTERM)  # what Slurm sends before the kill; the handler sets a flag
            fl = (1.0, fl[1])  # the flag is read before this step (the handler ran in between)
        return real_step(self, batch, step, fl)

    monkeypatch.setattr(loop.Engine, "step", signalled)
    assert main(flags(tiny, out, **common)) == 4
    r = result(out)
    assert r["status"] == "preempted" and r["interrupted"] and r["steps"] == 11 and "resume" in r["reason"]
    monkeypatch.setattr(loop.Engine, "step", real_step)
    # A changed setting that alters the curve is refused, naming the field.
    assert main(flags(tiny, out, **{**common, "lr": 0.2})) == 2
    assert main(flags(tiny, out, **common)) == 0
    got, want = losses(out), losses(ref)
    assert [s for s, _ in got] == [s for s, _ in want]
    assert all(abs(a - b) <= 1e-6 for (_, a), (_, b) in zip(got, want))
    assert abs(result(out)["best_auc"] - result(ref)["best_auc"]) <= 1e-6


def test_bad_input_is_one_clear_error(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(flags(tiny, tmp_path / "a", batch_size=0)) == 2
    assert "--batch-size" in capsys.readouterr().err
    assert main(flags(tmp_path / "nowhere", tmp_path / "b")) == 2
    assert "manifest" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()  # a refusal writes nothing, not even a failed result
    assert main(flags(tiny, tmp_path / "c", arch_mlp_bot="13-32-7")) == 2  # must end with emb dim 8
    assert "emb_dim" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(flags(tiny, tmp_path / "d", sharding="rows"))
    with pytest.raises(ConfigError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"data": "x", "out": "y", "learning_rate": 1})


@pytest.mark.mpi
def test_two_ranks_match_one_rank_for_every_plan(tiny: Path, tmp_path: Path) -> None:
    base = {**SMALL, "epochs": 1, "eval_every": 2560, "replicate_threshold": 50}
    # Default optimizers (LAMB + sparse SGD), and row-wise Adagrad, whose column-split form needs the
    # full-row squared sums summed across ranks.
    adagrad = {**base, "dense_optimizer": "adagrad", "sparse_optimizer": "rowwise_adagrad",
               "lr": 0.05, "sparse_lr": 0.1}
    plans = [("table", {**base, "sharding": "table"}), ("column", {**adagrad, "sharding": "column"}),
             ("replicate", {**base, "sharding": "replicate"}), ("table-adagrad", {**adagrad, "sharding": "table"})]
    # Every plan over gloo and over MPI (auto picks MPI under mpiexec): the same curve as one rank.
    # With overlap forced on (1 thread per rank would leave it off): same curve whatever runs when.
    runs = [(f"{name}-{backend}", {**fields, "backend": backend, "overlap": True}) for name, fields in plans
            for backend in ("gloo", "auto")]
    runs.append(("table-serial", {**base, "sharding": "table", "backend": "auto", "overlap": False}))
    # bf16: native bf16 MLPs and split bf16 tables; each rank's bf16 gradient over its half batch is
    # summed in fp32, so the curves agree to bf16 precision, not bit for bit.
    bf16 = {**adagrad, "bf16": True, "bf16_tables": True}
    runs.append(("column-bf16", {**bf16, "sharding": "column", "backend": "auto", "overlap": True}))
    assert main(flags(tiny, tmp_path / "one", **base)) == 0
    assert main(flags(tiny, tmp_path / "one-adagrad", **adagrad)) == 0
    assert main(flags(tiny, tmp_path / "one-bf16", **bf16)) == 0
    proc = run_mpi(2, [WORKER, str(tiny), str(tmp_path), json.dumps(runs)], timeout=240)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert [(x["name"], x["kind"], x["ranks"], x["status"]) for x in lines] == [
        (name, fields["sharding"], 2, "completed") for name, fields in runs]
    for name, fields in runs:
        ref = tmp_path / ("one-bf16" if "bf16" in fields else "one-adagrad" if "sparse_optimizer" in fields else "one")
        got, want = losses(tmp_path / name), losses(ref)
        assert [s for s, _ in got] == [s for s, _ in want], name
        worst = max(abs(a - b) / abs(b) for (_, a), (_, b) in zip(got, want))
        assert worst < (1e-2 if "bf16" in fields else 1e-5), f"{name}: loss curves differ by {worst:.2e} (relative)"
        assert abs(result(tmp_path / name)["best_auc"] - result(ref)["best_auc"]) < 2e-3, name
        env = result(tmp_path / name)["env"]
        want_backend = "mpi" if fields["backend"] == "auto" else "gloo"
        assert env["ranks"] == 2 and len(env["hosts"]) == 2 and env["backend"] == want_backend


def test_bf16_resumes_bit_exactly_and_tracks_fp32(tiny: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Native bf16 MLPs (fp32 masters) with split bf16 tables: a crash and rerun continue the very same
    curve (masters, trails and accumulators in the checkpoint), and the AUC stays within 2e-3 of fp32."""
    common = dict(epochs=2, checkpoint_every=5 * 256, eval_every=6144, sparse_optimizer="rowwise_adagrad",
                  sparse_lr=0.1)
    bf16 = {**common, "bf16": True, "bf16_tables": True}
    fp32, ref, out = tmp_path / "fp32", tmp_path / "ref", tmp_path / "run"
    assert main(flags(tiny, fp32, **common)) == 0
    assert main(flags(tiny, ref, **bf16)) == 0
    real_step = loop.Engine.step

    def crashing(self: loop.Engine, batch: object, step: int, fl: tuple[float, float]):  # noqa: ANN202
        if step == 13:
            raise RuntimeError("node lost")
        return real_step(self, batch, step, fl)

    monkeypatch.setattr(loop.Engine, "step", crashing)
    with pytest.raises(RuntimeError, match="node lost"):
        main(flags(tiny, out, **bf16))
    monkeypatch.setattr(loop.Engine, "step", real_step)
    assert main(flags(tiny, out, **bf16)) == 0
    assert result(out)["resumed_from_step"] == 10
    assert losses(out) == losses(ref) and evals(out) == evals(ref)  # bit for bit
    assert abs(result(ref)["best_auc"] - result(fp32)["best_auc"]) < 2e-3
    assert result(ref)["config"]["bf16"] and result(ref)["best_auc"] > 0.6
