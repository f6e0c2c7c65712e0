"""``python -m hpcdlrm.bench train``: the figures it prints, in one process and under real MPI ranks."""

from __future__ import annotations

import json

import pytest

from conftest import run_mpi
from hpcdlrm.bench.train import main
from hpcdlrm.model import model_config, train_flops_per_sample

TINY = ["--table-rows", "500", "--rows", "4096", "--batch-size", "256", "--steps", "3", "--warmup", "1", "--json"]


def figures(text: str) -> dict[str, dict]:
    return {d["metric"]: d for d in map(json.loads, (x for x in text.splitlines() if x.startswith("{")))}


def test_flops_per_sample_are_the_architectures() -> None:
    # 3 GEMMs per Linear + the useful dot pairs (the 2.88 / 14.46 MFLOP)
    assert train_flops_per_sample(model_config("kaggle", [10] * 26)) == 6 * 479_984
    assert train_flops_per_sample(model_config("mlperf", [10] * 26)) == 6 * 2_410_112


def test_one_process_prints_peaks_bound_and_efficiency(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--preset", "kaggle", *TINY]) == 0
    f = figures(capsys.readouterr().out)
    assert f["matmul_peak_fp32"]["value"] > 0 and f["matmul_peak_bf16"]["value"] > 0
    assert f["flops_per_sample"]["value"] == pytest.approx(2.8799, abs=1e-4)
    rate, bound = f["train_samples_per_s"]["value"], f["gemm_bound"]["value"]
    assert rate > 0 and bound > 0 and 0 < f["efficiency"]["value"] < 1.5
    assert f["gemm_bound"]["value"] == pytest.approx(f["gemm_bound"]["peak_gflops"] * 1e9 / 2.8799e6, rel=1e-2)
    assert {f"step_{p}_ms" for p in ("loader", "forward", "backward", "optimizer")} <= set(f)


@pytest.mark.mpi
def test_two_ranks_run_the_global_batch() -> None:
    proc = run_mpi(2, ["-m", "hpcdlrm.bench", "train", "--preset", "kaggle", *TINY], timeout=180)
    f = figures(proc.stdout)
    assert f["train_samples_per_s"]["ranks"] == 2 and f["train_samples_per_s"]["batch"] == 256
    assert f["efficiency"]["value"] > 0
