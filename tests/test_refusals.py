"""User errors of the data and training commands: one line naming the file or field, exit code 2, no
traceback, and nothing written (every file's bytes are compared before and after a refusal)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from hpcdlrm.data.__main__ import main as data_main
from hpcdlrm.data.synth import ClickModelConfig, generate
from hpcdlrm.train import memory
from hpcdlrm.train.__main__ import main as train_main

from conftest import mpiexec

TABLES = (3, 4, 7, 12, 20, 35, 60, 100, 170, 280, 460, 750, 1200, 2000,
          300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1300, 1500, 1700)
SMALL = ["--arch-mlp-bot", "13-32-8", "--arch-mlp-top", "32-1", "--emb-dim", "8", "--batch-size", "256",
         "--eval-batch-size", "1024", "--threads", "1"]
KAGGLE_LINE = "1\t" + "\t".join(["3"] * 13) + "\t" + "\t".join(["68fd1e64"] * 26) + "\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    generate(d, 4096, eval_rows=1024, seed=1, model=ClickModelConfig(table_sizes=TABLES))
    return d


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another dataset with the very same shape (tables, rows): only its identity tells them apart."""
    d = tmp_path_factory.mktemp("other")
    generate(d, 4096, eval_rows=1024, seed=2, model=ClickModelConfig(table_sizes=TABLES))
    return d


def train(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), *SMALL, *extra]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (or the file itself) with its bytes."""
    if root.is_file():
        return {str(root): root.read_bytes()}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line(err: str, *needles: str) -> str:
    """The single stderr line of a refusal; it must name every needle."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def cli(*argv: str, cwd: Path | None = None, wrap: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*(wrap or []), sys.executable, "-m", *argv], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


# --- a refused rerun touches nothing ----------------------------------------------------------------------

def test_refused_rerun_keeps_the_finished_run(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    assert train_main(train(tiny, out, "--max-samples", "2560")) == 0
    before = snapshot(out)
    assert json.loads(before["result.json"])["status"] == "completed"
    capsys.readouterr()
    assert train_main(train(tiny, out, "--max-samples", "5120")) == 2
    one_line(capsys.readouterr().err, str(out), "max_samples=2560", "5120")
    assert snapshot(out) == before  # result.json is not rewritten as failed
    # the original command still finds its finished run: it returns it instead of training again
    assert train_main(train(tiny, out, "--max-samples", "2560")) == 0
    assert snapshot(out) == before


# --- read-only or mistyped --out ----------------------------------------------------------------------------

@contextmanager
def read_only(directory: Path) -> Iterator[list[str]]:
    """A command prefix under which ``directory`` cannot be written, even by root: a read-only tmpfs
    mounted over it in a private mount namespace (as root), else plain permissions."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield []
        finally:
            directory.chmod(0o755)
        return
    if shutil.which("unshare") is None:
        pytest.skip("root without unshare(1): cannot make a read-only directory")
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m not permitted here: {probe.stderr.decode().strip()}")
    yield ["unshare", "-m", "--propagation", "private", "sh", "-c",
           f"mount -t tmpfs -o ro,size=1m tmpfs '{directory}' && exec \"$@\"", "sh"]


def test_read_only_out_is_one_line(tiny: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    tsv = tmp_path / "train.txt"
    tsv.write_text(KAGGLE_LINE * 70)
    with read_only(ro) as wrap:
        runs = {
            "train": cli("hpcdlrm.train", *train(tiny, ro / "run"), wrap=wrap),
            "train into it": cli("hpcdlrm.train", *train(tiny, ro), wrap=wrap),
            "synth": cli("hpcdlrm.data", "synth", "--out", str(ro / "ds"), "--rows", "1000", wrap=wrap),
            "preprocess": cli("hpcdlrm.data", "preprocess", "--format", "kaggle", "--max-ind-range", "100",
                              "--out", str(ro / "pp"), str(tsv), wrap=wrap),
        }
    for name, p in runs.items():
        assert p.returncode == 2, f"{name}: rc {p.returncode}\n{p.stderr}"
        one_line(p.stderr, "--out", str(ro), "cannot write")
    assert list(ro.iterdir()) == []  # (the mount hid it; the real directory stayed empty too)


def test_out_that_is_a_file_is_one_line(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    tsv = tmp_path / "train.txt"
    tsv.write_text(KAGGLE_LINE * 70)
    for argv, entry in ((train(tiny, f), train_main), (["synth", "--out", str(f), "--rows", "1000"], data_main),
                        (["preprocess", "--format", "kaggle", "--max-ind-range", "100", "--out", str(f), str(tsv)],
                         data_main), (train(tiny, f / "run"), train_main)):
        assert entry(argv) == 2, argv
        one_line(capsys.readouterr().err, "--out", str(f), "not a directory")
        assert f.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "train.txt"]


def test_out_on_a_file_system_that_refuses_writes_is_one_line(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # /proc's mode bits say root may write; creating a file there still fails (os.access alone trusted it).
    if not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    assert train_main(train(tiny, Path("/proc/hpcdlrm-run"))) == 2
    one_line(capsys.readouterr().err, "--out", "/proc/hpcdlrm-run", "cannot write to /proc")


# --- manifest fields of the wrong type ------------------------------------------------------------------------

def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("field, edit", [
    ("splits.train[0].rows", lambda m: m["splits"]["train"][0].update(rows="4096")),
    ("table_sizes[3]", lambda m: m["table_sizes"].__setitem__(3, 12.5)),
    ("splits.val", lambda m: m["splits"].update(val={"path": "val-0.h5"})),
    ("synthetic.ceiling_auc.val", lambda m: m["synthetic"]["ceiling_auc"].update(val="high")),
])
def test_manifest_field_of_wrong_type_is_named(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               field: str, edit) -> None:  # noqa: ANN001
    d = copy_dataset(tiny, tmp_path / "ds")
    m = json.loads((d / "manifest.json").read_text())
    edit(m)
    (d / "manifest.json").write_text(json.dumps(m))
    for entry, argv in ((train_main, train(d, tmp_path / "run")), (data_main, ["inspect", str(d)])):
        assert entry(argv) == 2
        one_line(capsys.readouterr().err, str(d / "manifest.json"), f"field {field} must be")
    assert not (tmp_path / "run").exists()


# --- resuming on another dataset ------------------------------------------------------------------------------

def test_resume_on_another_dataset_is_refused(tiny: Path, other: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    # --max-time stops it at once with a checkpoint (status timeout): a rerun would resume it
    assert train_main(train(tiny, out, "--epochs", "1", "--checkpoint-every", "100000", "--max-time", "1e-3")) == 0
    assert (out / "checkpoint" / "latest.json").exists()
    before = snapshot(out)
    bigger = copy_dataset(other, tmp_path / "bigger")  # other table sizes: torch would fail on the shapes
    m = json.loads((bigger / "manifest.json").read_text())
    m["table_sizes"] = [n * 2 for n in m["table_sizes"]]
    (bigger / "manifest.json").write_text(json.dumps(m))
    for data in (other, bigger):
        assert train_main(train(data, out, "--epochs", "1", "--checkpoint-every", "100000")) == 2
        one_line(capsys.readouterr().err, f"{out} (checkpoint)", "another dataset", f"--data {data}",
                 "synthetic seed 1", "synthetic seed 2")
        assert snapshot(out) == before
    # the dataset it was trained on, even under another path, resumes
    moved = copy_dataset(tiny, tmp_path / "moved")
    assert train_main(train(moved, out, "--epochs", "1", "--checkpoint-every", "100000")) == 0
    done = json.loads((out / "result.json").read_text())
    assert done["status"] == "completed" and done["resumed_from_step"] is not None
    # a finished run is not "rerun" on other data either
    finished = snapshot(out)
    assert train_main(train(other, out, "--epochs", "1", "--checkpoint-every", "100000")) == 2
    one_line(capsys.readouterr().err, f"{out} (finished run)", "another dataset")
    assert snapshot(out) == finished


def test_a_stopped_run_without_checkpoint_is_not_overwritten_by_other_settings_or_data(
        tiny: Path, other: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    # stopped by --max-time before any checkpoint: only result.json and metrics.jsonl say what it was
    assert train_main(train(tiny, out, "--epochs", "1", "--max-time", "1e-3")) == 0
    assert json.loads((out / "result.json").read_text())["status"] == "timeout"
    assert not (out / "checkpoint" / "latest.json").exists()
    before = snapshot(out)
    capsys.readouterr()
    assert train_main(train(other, out, "--epochs", "1")) == 2
    one_line(capsys.readouterr().err, f"{out} (timeout run)", "another dataset")
    assert train_main(train(tiny, out, "--epochs", "1", "--lr", "0.5")) == 2
    one_line(capsys.readouterr().err, f"{out} (timeout run)", "lr=")
    assert snapshot(out) == before
    # the same settings with more time go on
    assert train_main(train(tiny, out, "--epochs", "1")) == 0
    assert json.loads((out / "result.json").read_text())["status"] == "completed"


def test_a_shard_shorter_than_its_manifest_is_refused_before_anything_is_written(
        tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = copy_dataset(tiny, tmp_path / "grown")
    m = json.loads((d / "manifest.json").read_text())
    m["splits"]["train"][0]["rows"] += 1000  # the manifest promises rows the shard does not hold
    (d / "manifest.json").write_text(json.dumps(m))
    out = tmp_path / "run"
    assert train_main(train(d, out, "--epochs", "1")) == 2
    one_line(capsys.readouterr().err, m["splits"]["train"][0]["path"], "truncated or replaced")
    assert not out.exists()


@pytest.mark.mpi
def test_a_refusal_seen_by_one_rank_is_every_ranks(tmp_path: Path) -> None:
    # ranks split the shard checks: only rank 1 opens the bad second shard; rank 0 must not wait for it
    exe = mpiexec()
    assert exe is not None, "mpiexec not found"
    d = tmp_path / "two"
    generate(d, 4096, eval_rows=1024, shards=2, seed=1, model=ClickModelConfig(table_sizes=TABLES))
    m = json.loads((d / "manifest.json").read_text())
    bad = m["splits"]["train"][1]
    bad["rows"] += 1000
    (d / "manifest.json").write_text(json.dumps(m))
    out = tmp_path / "run"
    proc = subprocess.run([exe, "-n", "2", sys.executable, "-m", "hpcdlrm.train", *train(d, out, "--epochs", "1")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    # said once for the job, by rank 0, although only rank 1 saw it (the refusal is agreed)
    assert proc.stderr.count(f"{bad['path']}: shapes") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()


def test_a_field_an_older_version_did_not_record_counts_as_its_default() -> None:
    from hpcdlrm.train import TrainConfig, checkpoint
    from hpcdlrm.errors import ConfigError

    current = TrainConfig(data="d", out="o").to_dict()
    older = {k: v for k, v in current.items() if k != "bf16_tables"}  # written before the field existed
    checkpoint.check_compatible(older, current, "run (checkpoint)")
    with pytest.raises(ConfigError, match=r"run \(checkpoint\): it was run with bf16_tables=False, now True"):
        checkpoint.check_compatible(older, {**current, "bf16_tables": True}, "run (checkpoint)")


# --- memory of the tables ------------------------------------------------------------------------------------

def test_kaggle_hashed_to_ten_million_rows_wants_16_6_gb() -> None:
    est = memory.estimate([10_000_000] * 26, 16, "sgd")
    assert est.table_bytes == 26 * 10_000_000 * 16 * 4 and memory.gb(est.node_bytes) == "16.6 GB"
    adagrad = memory.estimate([10_000_000] * 26, 16, "rowwise_adagrad", world_size=4, local_world_size=2)
    assert adagrad.state_bytes == 26 * 10_000_000 * 4
    assert adagrad.node_bytes == (est.table_bytes + adagrad.state_bytes) // 2  # 2 of the 4 ranks on this node
    with pytest.raises(memory.ConfigError, match=r"need 16.6 GB .* only 8.0 GB is available \(test\).*--max-ind-range"):
        memory.check(est, (8_000_000_000, "test"), environ={})
    memory.check(est, (8_000_000_000, "test"), environ={memory.SKIP_ENV: "off"})  # the override
    memory.check(est, (17_000_000_000, "test"), environ={})
    memory.check(est, None, environ={})  # nothing readable: no guess


def test_available_memory_is_the_smaller_of_meminfo_and_cgroup(tmp_path: Path) -> None:
    proc, cg = tmp_path / "proc", tmp_path / "cg"
    proc.mkdir()
    cg.mkdir()
    (proc / "meminfo").write_text("MemTotal: 32000000 kB\nMemAvailable: 20000000 kB\n")
    assert memory.available_bytes(proc, cg) == (20_480_000_000, "MemAvailable in /proc/meminfo")
    (cg / "memory.max").write_text("max\n")
    (cg / "memory.current").write_text("1000\n")
    assert memory.available_bytes(proc, cg)[0] == 20_480_000_000  # unlimited cgroup
    (cg / "memory.max").write_text("8000000000\n")
    (cg / "memory.current").write_text("3000000000\n")
    avail, where = memory.available_bytes(proc, cg)
    assert avail == 5_000_000_000 and "cgroup" in where


def test_tables_too_big_for_memory_are_refused_before_allocating(tiny: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # the node's free memory is pinned: on a big node the run would otherwise try to allocate the 83 GB
    monkeypatch.setattr(memory, "available_bytes", lambda *a, **k: (8_000_000_000, "test"))
    monkeypatch.delenv(memory.SKIP_ENV, raising=False)
    d = copy_dataset(tiny, tmp_path / "huge")
    m = json.loads((d / "manifest.json").read_text())
    m["table_sizes"] = [100_000_000] * 26  # 2.6e9 rows x dim 8 x 4 B = 83 GB > the 8 GB available
    (d / "manifest.json").write_text(json.dumps(m))
    out = tmp_path / "run"
    assert train_main(train(d, out)) == 2
    one_line(capsys.readouterr().err, "83.2 GB", "2,600,000,000 embedding rows x dim 8", "--max-ind-range",
             "--emb-dim", memory.SKIP_ENV)
    assert not out.exists()


# --- help of the dispatchers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("module, names", [("hpcdlrm.data", ("synth", "preprocess", "inspect")),
                                           ("hpcdlrm.bench", ("loader", "preprocess", "train", "sweep", "report",
                                                              "scaling", "importance", "sweep-real", "default-sweep",
                                                              "false-stops", "surrogate-fit"))])
def test_help_lists_the_subcommands(module: str, names: tuple[str, ...]) -> None:
    for flag in ("--help", "-h"):
        p = cli(module, flag)
        assert p.returncode == 0 and p.stderr == ""
        listed = {ln.split()[0]: ln for ln in p.stdout.splitlines() if ln.startswith("  ")}
        assert set(listed) == set(names)
        assert all(len(ln.split()) > 3 for ln in listed.values())  # each says what it does
    bare = cli(module)
    assert bare.returncode == 2 and "no " in bare.stderr.splitlines()[-1] and bare.stdout == ""


def test_a_benchmark_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-sweep"
    p = cli("hpcdlrm.bench", "false-stops", str(missing))
    assert p.returncode == 2 and p.stdout == ""
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("hpcdlrm.bench false-stops: error:") and str(missing) in line and "sweep.sqlite" in line
    assert not missing.exists()
