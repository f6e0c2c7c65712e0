"""The SQLite trial store: durable, exactly-once metrics, read-only view for reports, export."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hpcdlrm.errors import ConfigError
from hpcdlrm.sweep.records import MetricPoint, SweepInfo
from hpcdlrm.sweep.store import Store, export_trials, load_sweep

SPACE = {"lr": {"kind": "log", "low": 0.01, "high": 1.0}, "bs": {"kind": "choice", "choices": [1, 2]}}


def info() -> SweepInfo:
    return SweepInfo("s", ["python", "-m", "hpcdlrm.sweep"], SPACE, "TwoPointsDE", "time_to_target", 0.79, 1.0,
                     {"python": "3"}, "abc")


def test_trials_metrics_and_sweep_round_trip(tmp_path: Path) -> None:
    with Store(tmp_path) as st:
        st.init_sweep(info(), {"budget": 3})
        a = st.new_trial({"lr": 0.1, "bs": 2}, partition="xeon", nodes=2, ranks=4, executor="slurm")
        b = st.new_trial({"lr": 0.5, "bs": 1})
        assert (a, b) == (1, 2)
        st.update_trial(a, status="running", job_id="77", slurm_job_id="77", hosts=["n1", "n2"], started_at=10.0)
        st.add_metrics(a, [MetricPoint(a, 5, 500, 1.5, "auc", 0.7), MetricPoint(a, 5, 500, 1.5, "loss", 0.4)], 120,
                       b'{"x":1}\n')
        st.update_trial(a, status="reached_target", objective=12.5, best_auc=0.8, time_to_target_s=12.5,
                        ended_at=30.0, result={"status": "reached_target", "env": {"hosts": ["n1"]}})
    data = load_sweep(tmp_path)
    assert data.info == info()
    t1, t2 = data.trials
    assert t1.params == {"lr": 0.1, "bs": 2} and t1.status == "reached_target" and t1.hosts == ["n1", "n2"]
    assert t1.duration_s == 20.0 and t1.ranks == 4 and t1.nodes == 2 and t1.partition == "xeon"
    assert t1.result["env"]["hosts"] == ["n1"] and t1.slurm_job_id == "77"
    assert t2.status == "pending" and t2.objective is None
    assert [(m.name, m.value) for m in data.metrics] == [("auc", 0.7), ("loss", 0.4)]
    with Store(tmp_path) as st:  # reopened: position and config survive
        assert st.metrics_position(1) == (120, b'{"x":1}\n')
        assert st.sweep_config() == {"budget": 3}
        assert st.count() == 2 and st.count("pending") == 1


def test_metrics_reset_replaces_a_trials_points(tmp_path: Path) -> None:
    with Store(tmp_path) as st:
        st.init_sweep(info(), {})
        t = st.new_trial({"lr": 0.1, "bs": 1})
        st.add_metrics(t, [MetricPoint(t, i, i, float(i), "auc", 0.6) for i in range(3)], 30)
        st.add_metrics(t, [MetricPoint(t, 0, 0, 0.0, "auc", 0.55)], 10, reset=True)
        assert [m.value for m in st.metrics(t)] == [0.55]
        assert st.metrics_position(t)[0] == 10


def test_bad_status_and_column_are_refused(tmp_path: Path) -> None:
    with Store(tmp_path) as st:
        t = st.new_trial({"lr": 0.1})
        with pytest.raises(ValueError, match="unknown trial status 'done'"):
            st.update_trial(t, status="done")
        with pytest.raises(KeyError, match="colour"):
            st.update_trial(t, colour="red")


def test_load_sweep_is_read_only_and_explains_a_wrong_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a sweep directory"):
        load_sweep(tmp_path)
    with Store(tmp_path) as st:
        st.new_trial({"lr": 0.1})
    with pytest.raises(ConfigError, match="no sweep record"):
        load_sweep(tmp_path)
    con = sqlite3.connect(f"file:{tmp_path / 'sweep.sqlite'}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        con.execute("DELETE FROM trials")


def test_committed_trials_survive_a_killed_writer(tmp_path: Path) -> None:
    """A writer SIGKILLed right after a commit leaves every committed row readable."""
    code = f"""
import os, signal
from hpcdlrm.sweep.store import Store
st = Store({str(tmp_path)!r})
for i in range(20):
    t = st.new_trial({{"lr": 0.1 * (i + 1)}})
    st.update_trial(t, status="completed", objective=float(i))
os.kill(os.getpid(), signal.SIGKILL)
"""
    p = subprocess.run([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert p.returncode == -9
    with Store(tmp_path) as st:
        trials = st.trials()
    assert [t.objective for t in trials] == [float(i) for i in range(20)]
    assert all(t.status == "completed" for t in trials)


def test_export_csv_and_json(tmp_path: Path) -> None:
    with Store(tmp_path) as st:
        st.init_sweep(info(), {})
        t = st.new_trial({"lr": 0.25, "bs": 2}, hosts=["n1", "n2"])
        st.update_trial(t, status="capped", reason="adaptive capping: ...", objective=40.0, best_auc=0.75)
    data = load_sweep(tmp_path)
    rows = list(csv.DictReader(io.StringIO(export_trials(data, "csv"))))
    assert rows[0]["lr"] == "0.25" and rows[0]["bs"] == "2" and rows[0]["status"] == "capped"
    assert rows[0]["hosts"] == "n1,n2" and rows[0]["objective"] == "40.0"
    js = json.loads(export_trials(data, "json"))
    assert js[0]["params"] == {"lr": 0.25, "bs": 2} and js[0]["reason"].startswith("adaptive capping")
    with pytest.raises(ConfigError, match="xml"):
        export_trials(data, "xml")
