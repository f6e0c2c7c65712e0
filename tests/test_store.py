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


# ------------------------------------------------------------------ schema versions, damaged files
V1_SCHEMA = """
CREATE TABLE sweep (id INTEGER PRIMARY KEY CHECK (id = 1), schema_version INTEGER NOT NULL, info TEXT NOT NULL,
                    config TEXT NOT NULL);
CREATE TABLE trials (
    id INTEGER PRIMARY KEY, status TEXT NOT NULL, params TEXT NOT NULL,
    reason TEXT, objective REAL, best_auc REAL, time_to_target_s REAL, samples_per_s REAL,
    slurm_job_id TEXT, partition TEXT, hosts TEXT NOT NULL DEFAULT '[]',
    ranks INTEGER NOT NULL DEFAULT 1, nodes INTEGER NOT NULL DEFAULT 1,
    submitted_at REAL, started_at REAL, ended_at REAL, result TEXT,
    run_dir TEXT, executor TEXT, job_id TEXT, max_time_s REAL, argv TEXT NOT NULL DEFAULT '[]',
    lost INTEGER NOT NULL DEFAULT 0, requeues INTEGER NOT NULL DEFAULT 0,
    metrics_offset INTEGER NOT NULL DEFAULT 0, metrics_sig BLOB);
CREATE TABLE metrics (trial_id INTEGER NOT NULL REFERENCES trials(id), step INTEGER NOT NULL,
                      samples INTEGER NOT NULL, wall_s REAL NOT NULL, name TEXT NOT NULL, value REAL NOT NULL);
"""


def v1_store(path: Path) -> None:
    """A store as hpcdlrm 0.1 wrote it: a lost trial is `failed` with lost = 1."""
    path.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path / "sweep.sqlite")
    con.executescript(V1_SCHEMA)
    from dataclasses import asdict

    con.execute("INSERT INTO sweep VALUES (1, 1, ?, ?)", (json.dumps(asdict(info())), "{}"))
    con.execute("INSERT INTO trials (id, status, params, reason, lost, argv) VALUES (1, 'failed', ?, ?, 1, ?)",
                ('{"lr": 0.1, "bs": 1}', "lost: job 5 ended without a result ()", '["--lr"]'))
    con.execute("INSERT INTO trials (id, status, params, objective) VALUES (2, 'completed', ?, 3.0)",
                ('{"lr": 0.2, "bs": 2}',))
    con.commit()
    con.close()


def test_an_older_store_is_read_as_is_and_migrated_when_opened_for_writing(tmp_path: Path) -> None:
    from hpcdlrm.sweep.store import SCHEMA_VERSION, schema_version
    from hpcdlrm.train.result import Status

    v1_store(tmp_path)
    before = (tmp_path / "sweep.sqlite").read_bytes()
    t1, t2 = load_sweep(tmp_path).trials  # read-only (status, reports): understood, not rewritten
    assert (t1.status, t2.status) == (Status.LOST, Status.COMPLETED)
    assert (tmp_path / "sweep.sqlite").read_bytes() == before
    with Store(tmp_path) as st:  # the driver: migrated in place
        assert schema_version(st.con) == SCHEMA_VERSION == 2
        assert [t.status for t in st.trials()] == [Status.LOST, Status.COMPLETED] and st.failures() == 1
        st.update_trial(2, config={"lr": 0.2})
        assert st.trial(2).config == {"lr": 0.2}
    with Store(tmp_path) as st:  # and stays so
        assert schema_version(st.con) == 2 and st.trial(1).reason.startswith("lost: job 5")


def test_a_newer_store_is_refused_naming_the_file(tmp_path: Path) -> None:
    with Store(tmp_path) as st:
        st.init_sweep(info(), {})
        st.con.execute("PRAGMA user_version = 99")
    for open_ in (lambda: Store(tmp_path), lambda: load_sweep(tmp_path)):
        with pytest.raises(ConfigError, match=r"sweep.sqlite: store schema version 99 is newer than this "
                                              r"hpcdlrm's \(2\)"):
            open_()


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["report"], ["sweep"]])
def test_a_damaged_store_is_one_line_naming_the_file(tmp_path: Path, command: list[str]) -> None:
    out = tmp_path / "s"
    out.mkdir()
    db = out / "sweep.sqlite"
    db.write_bytes(b"this is not a database, it is garbage " * 100)
    before = db.read_bytes()
    if command[0] == "report":
        cmd = [sys.executable, "-m", "hpcdlrm.report", str(out)]
    elif command[0] == "sweep":
        cmd = [sys.executable, "-m", "hpcdlrm.sweep", "--out", str(out), "--entry", "hpcdlrm.sweep.surrogate:run",
               "--no-report"]
    else:
        cmd = [sys.executable, "-m", "hpcdlrm.sweep", command[0], str(out), *command[1:]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and str(db) in p.stderr and "not a usable sweep store" in p.stderr, p.stderr
    assert db.read_bytes() == before and sorted(x.name for x in out.iterdir()) == ["sweep.sqlite"]


def test_a_migration_is_all_or_nothing_and_resumes_a_half_done_one(tmp_path: Path) -> None:
    from hpcdlrm.sweep.store import schema_version

    def columns() -> set[str]:
        con = sqlite3.connect(tmp_path / "sweep.sqlite")
        try:
            return {r[1] for r in con.execute("PRAGMA table_info(trials)")}
        finally:
            con.close()

    v1_store(tmp_path)
    con = sqlite3.connect(tmp_path / "sweep.sqlite")
    con.execute("CREATE TRIGGER boom BEFORE UPDATE ON trials BEGIN SELECT RAISE(ABORT, 'disk went away'); END")
    con.commit()
    con.close()
    with pytest.raises(ConfigError, match="disk went away"):
        Store(tmp_path)  # fails after its ALTER TABLE...
    assert "config" not in columns()  # ...which is rolled back with the rest
    con = sqlite3.connect(tmp_path / "sweep.sqlite")
    con.execute("DROP TRIGGER boom")
    con.execute("ALTER TABLE trials ADD COLUMN config TEXT")  # what a half-done migration of 0.2 left
    con.commit()
    con.close()
    with Store(tmp_path) as st:
        assert schema_version(st.con) == 2 and st.trial(1).status == "lost"


def test_a_nan_metric_is_skipped_not_a_crash_of_the_sweep(tmp_path: Path) -> None:
    # A diverged run's evaluation logged "logloss": NaN; storing it (SQLite NULL in a NOT NULL column)
    # raised IntegrityError and ended a whole sweep. Now: the trainer writes null, the reader skips it.
    from hpcdlrm.io import append_jsonl
    from hpcdlrm.sweep.trial import parse_metrics

    line = '{"event":"eval","step":116,"samples":950272,"wall_s":9.5,"auc":0.49,"logloss":NaN,"accuracy":0.61}'
    points = parse_metrics([line], 1, "metrics.jsonl")
    assert [(p.name, p.value) for p in points if p.name in ("auc", "logloss")] == [("auc", 0.49)]
    with Store(tmp_path) as st:
        st.init_sweep(info(), {"budget": 1})
        t = st.new_trial({"lr": 0.1})
        st.add_metrics(t, points, len(line) + 1)
        assert [p.name for p in st.metrics(t) if p.name == "auc"] == ["auc"]
    buf = io.StringIO()
    append_jsonl(buf, {"auc": 0.49, "logloss": float("nan"), "loss": float("inf")})
    assert json.loads(buf.getvalue()) == {"auc": 0.49, "logloss": None, "loss": None}
    assert "NaN" not in buf.getvalue() and "Infinity" not in buf.getvalue()
