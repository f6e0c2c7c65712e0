"""The embedded default task's target: a fixed share of a reference run's lift, measured once and cached."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hpcdlrm.errors import DataError
from hpcdlrm.sweep import dataset
from hpcdlrm.sweep.dataset import TARGET_FRACTION, embedded_target, reference_auc, resolve_data


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return dataset.synthetic_dataset(rows=3000, eval_rows=1000)


def _fake_train(calls: list[list[str]], best_auc: float | None, rc: int = 0) -> Any:
    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        if rc == 0:
            (out / "result.json").write_text(json.dumps({"best_auc": best_auc, "wall_s": 12.5}))
        return subprocess.CompletedProcess(argv, rc, "", "" if rc == 0 else "Traceback...\nerror: out of memory")
    return run


def test_reference_is_measured_once_then_read_from_its_cache(small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(dataset.subprocess, "run", _fake_train(calls, 0.75))
    assert reference_auc(small)["best_auc"] == 0.75
    assert embedded_target(small) == pytest.approx(0.5 + TARGET_FRACTION * 0.25, abs=1e-4)
    assert len(calls) == 1  # the second call read the cache
    argv = calls[0]
    assert argv[argv.index("--data") + 1] == str(small) and "--decay-steps" in argv and "--eval-every" in argv


def test_the_cache_key_follows_the_recipe(small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(dataset.subprocess, "run", _fake_train(calls, 0.75))
    reference_auc(small)
    monkeypatch.setattr(dataset, "REFERENCE_RECIPE", [*dataset.REFERENCE_RECIPE[:-1], "1"])  # another seed
    reference_auc(small)
    assert len(calls) == 2


def test_a_failed_reference_run_is_one_error_and_caches_nothing(small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(dataset.subprocess, "run", _fake_train(calls, None, rc=1))
    with pytest.raises(DataError, match="reference run .* failed .*out of memory.*--target-auc"):
        reference_auc(small)
    assert not list(small.parent.glob("*.reference-*"))


def test_given_data_keeps_the_ceiling_rule_and_a_given_target_skips_the_reference(
        small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset.subprocess, "run", lambda *a, **k: pytest.fail("no reference run expected"))
    ceiling = dataset.ceiling_auc(small)
    assert ceiling is not None
    _, target = resolve_data(str(small), None)
    assert target == pytest.approx(0.5 + dataset.CEILING_FRACTION * (ceiling - 0.5), abs=1e-4)
    monkeypatch.setattr(dataset, "synthetic_dataset", lambda: small)
    assert resolve_data(None, 0.7) == (str(small), 0.7)


def test_the_spaces_defaults_are_the_reference_recipe() -> None:
    # the default sweep's first trial is the run that set its target: the two must not drift apart
    from hpcdlrm.sweep.space import load_space

    space = load_space()
    flags = space.to_argv(space.defaults())
    got = {f: float(v) if v[0].isdigit() else v for f, v in zip(flags[::2], flags[1::2])}
    recipe = dataset.REFERENCE_RECIPE
    want = {f: float(v) if v[0].isdigit() else v for f, v in zip(recipe[::2], recipe[1::2]) if f != "--seed"}
    assert got == want
