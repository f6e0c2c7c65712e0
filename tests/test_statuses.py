"""One ``Status`` enum: documented (README, ``MEANING``), the only statuses the store takes and
``status --json`` prints, the ones result.json holds, each with a report style."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hpcdlrm.report.style import STATUS_STYLE
from hpcdlrm.sweep.records import SweepInfo
from hpcdlrm.sweep.status import status_json
from hpcdlrm.sweep.store import Store, load_sweep
from hpcdlrm.train.result import MEANING, RunResult, Status

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_statuses() -> dict[str, str]:
    """The README's status table: the rows after its `| status | meaning |` header."""
    text = README.read_text()
    table = text[text.index("| status | meaning |"):].split("\n\n")[0].split("\n- ")[0]
    return dict(re.findall(r"^\s*\| `([a-z_]+)` \| (.+) \|$", table, re.M))


def test_every_status_is_documented_with_its_meaning() -> None:
    documented = readme_statuses()
    assert set(documented) == {s.value for s in Status}
    for s in Status:
        assert MEANING[s] and STATUS_STYLE[s]  # a meaning in the code and a style in the reports
        words = set(re.findall(r"[a-z]{4,}", MEANING[s].lower()))
        assert len(words & set(re.findall(r"[a-z]{4,}", documented[s.value].lower()))) >= 2, s


def test_status_json_prints_only_documented_members(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store(tmp_path) as st:
        st.init_sweep(SweepInfo("s", [], {"lr": {"kind": "log", "low": 0.01, "high": 1.0}}, "TwoPointsDE",
                                "time_to_target", 0.79, 0.0), {})
        for s in Status:
            st.update_trial(st.new_trial({"lr": 0.1}), status=s)
        with pytest.raises(ValueError, match="unknown trial status 'done'"):
            st.update_trial(1, status="done")
    printed = [t["status"] for t in json.loads(status_json(load_sweep(tmp_path)))["trials"]]
    assert printed == [s.value for s in Status] and set(printed) <= set(readme_statuses())


def test_result_json_round_trip_and_older_files() -> None:
    r = RunResult(Status.PREEMPTED, reason="signal 15", env={"ranks": 2}, extra={"surrogate": True})
    d = r.to_dict()
    assert d["status"] == "preempted" and d["interrupted"] is True and d["surrogate"] is True
    assert RunResult.from_dict(json.loads(json.dumps(d))) == r
    # hpcdlrm 0.1 wrote a signal stop as timeout + interrupted
    assert RunResult.from_dict({"status": "timeout", "interrupted": True}).status is Status.PREEMPTED
    assert RunResult.from_dict({"status": "timeout", "interrupted": False}).status is Status.TIMEOUT
    with pytest.raises(ValueError):
        RunResult.from_dict({"status": "finished"})


def test_reports_list_lost_trials_with_the_failures() -> None:
    from hpcdlrm.report.extract import failure_reasons
    from hpcdlrm.sweep.records import SweepData, Trial

    info = SweepInfo("s", [], {"lr": {"kind": "log", "low": 0.01, "high": 1.0}}, "TwoPointsDE", "auc", None, 0.0)
    trials = [Trial(1, Status.LOST, {"lr": 0.1}, reason="job 7 ended without a result (OOM)", ended_at=2.0),
              Trial(2, Status.FAILED, {"lr": 0.2}, reason="--max-samples: must be a positive number", ended_at=3.0),
              Trial(3, Status.COMPLETED, {"lr": 0.3}, objective=-0.7, best_auc=0.7, ended_at=4.0)]
    assert failure_reasons(SweepData(info, trials, [])) == [
        ("lost: job 7 ended without a result (OOM)", (1,)), ("failed: --max-samples: must be a positive number", (2,))]


def test_states_are_named_in_one_place() -> None:
    """Trial states are compared as Status members (not their strings) in the sweep's status and the
    reports; Slurm's state names live in sweep/slurm_states.py only."""
    import ast

    root = Path(__file__).resolve().parents[1] / "hpcdlrm"
    values = {s.value for s in Status}
    for rel in ("report/importance.py", "report/extract.py", "report/plots.py", "report/builder.py",
                "sweep/status.py"):
        tree = ast.parse((root / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                consts = [c for c in ast.walk(node) if isinstance(c, ast.Constant) and c.value in values]
                assert not consts, f"{rel}:{node.lineno}: compares with the string {consts[0].value!r}"
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "status_style":
                assert not any(isinstance(a, ast.Constant) for a in node.args), f"{rel}:{node.lineno}"
    slurm = {"PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "REQUEUE_HOLD", "DEADLINE"}
    for path in (root / "sweep").glob("*.py"):
        if path.name == "slurm_states.py":
            continue
        found = [c.value for c in ast.walk(ast.parse(path.read_text()))
                 if isinstance(c, ast.Constant) and c.value in slurm]
        assert not found, f"{path.name} names Slurm states {found}: use sweep/slurm_states.py"
