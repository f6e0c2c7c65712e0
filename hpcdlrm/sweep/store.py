"""The sweep's durable state: one SQLite file in SWEEP_DIR, written by the driver only.

Trials write only their own files (metrics.jsonl, result.json); the driver copies what it reads into
this store, so a single process ever writes the database. That is what makes SQLite safe on NFS and
Lustre, where its file locking across nodes is unreliable (optuna#815/#820). Every change is one
short transaction, so a driver killed at any moment leaves the store at a committed state; metric
points and the file offset they came from are committed together (each line lands exactly once).

``load_sweep(sweep_dir)`` is the read-only view the report layer uses.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from contextlib import closing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Iterable

from ..errors import ConfigError
from ..train.result import Status
from .records import STATUSES, MetricPoint, SweepData, SweepInfo, Trial

DB_NAME = "sweep.sqlite"
# 1: hpcdlrm 0.1 (a `lost` flag beside status `failed`, trials' train flags in `argv`).
# 2: status `lost`, trials' TrainConfig in `config`; the version is also SQLite's user_version.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweep (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    info TEXT NOT NULL,          -- records.SweepInfo as JSON
    config TEXT NOT NULL         -- the driver's resolved SweepConfig as JSON (resume checks it)
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    reason TEXT, objective REAL, best_auc REAL, time_to_target_s REAL, samples_per_s REAL,
    slurm_job_id TEXT, partition TEXT, hosts TEXT NOT NULL DEFAULT '[]',
    ranks INTEGER NOT NULL DEFAULT 1, nodes INTEGER NOT NULL DEFAULT 1,
    submitted_at REAL, started_at REAL, ended_at REAL, result TEXT,
    run_dir TEXT, executor TEXT, job_id TEXT, max_time_s REAL,
    config TEXT,                                -- the trial's TrainConfig as JSON
    requeues INTEGER NOT NULL DEFAULT 0,        -- resubmissions after a signal interrupted the run
    metrics_offset INTEGER NOT NULL DEFAULT 0,  -- bytes of metrics.jsonl already ingested...
    metrics_sig BLOB                            -- ...and the last line ingested (detects a rewritten file)
);
CREATE TABLE IF NOT EXISTS metrics (
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    step INTEGER NOT NULL, samples INTEGER NOT NULL, wall_s REAL NOT NULL,
    name TEXT NOT NULL, value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_trial ON metrics(trial_id, wall_s);
"""

_JSON_COLS = {"params", "hosts", "result", "config"}
_TRIAL_COLS = [f.name for f in fields(Trial)]


def db_path(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / DB_NAME


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        con = sqlite3.connect(path, timeout=30)
        # Rollback journal, not WAL: WAL needs shared memory, which network file systems lack.
        con.execute("PRAGMA journal_mode=DELETE")
        con.execute("PRAGMA synchronous=FULL")
    con.row_factory = sqlite3.Row
    return con


def _trial_from_row(row: sqlite3.Row) -> Trial:
    have = set(row.keys())
    d = {k: row[k] for k in _TRIAL_COLS if k in have}
    for k in _JSON_COLS & set(d):
        d[k] = json.loads(d[k]) if d[k] is not None else None
    d["hosts"] = d.get("hosts") or []
    if "lost" in have and row["lost"]:  # a version-1 store read without migrating (read-only)
        d["status"] = Status.LOST
    return Trial(**d)


def _damaged(path: Path, e: Exception) -> ConfigError:
    return ConfigError(f"{path}: not a usable sweep store ({e}); move it aside and run "
                       f"`python -m hpcdlrm.sweep rebuild {path.parent}` to rebuild it from the trials' files")


def _connect_or_refuse(path: Path, readonly: bool) -> sqlite3.Connection:
    try:
        return _connect(path, readonly)
    except sqlite3.DatabaseError as e:
        raise _damaged(path, e) from e


def schema_version(con: sqlite3.Connection) -> int | None:
    """The store's schema version (None: an empty, new file)."""
    v = int(con.execute("PRAGMA user_version").fetchone()[0])
    if v:
        return v
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "trials" not in tables:
        return None
    row = con.execute("SELECT schema_version FROM sweep WHERE id = 1").fetchone() if "sweep" in tables else None
    return int(row[0]) if row else 1


def _migrate(con: sqlite3.Connection, version: int) -> None:
    """Bring an older store to SCHEMA_VERSION in one transaction (old columns stay, unused). Explicit:
    the sqlite3 module runs ALTER TABLE outside its implicit transactions (it would commit on its own),
    and a column a half-done migration of an older hpcdlrm added is not added twice."""
    level, con.isolation_level = con.isolation_level, None
    try:
        con.execute("BEGIN IMMEDIATE")
        try:
            if version < 2:
                if "config" not in {r[1] for r in con.execute("PRAGMA table_info(trials)")}:
                    con.execute("ALTER TABLE trials ADD COLUMN config TEXT")
                con.execute("UPDATE trials SET status = 'lost' WHERE lost = 1")
            con.execute("UPDATE sweep SET schema_version = ?", (SCHEMA_VERSION,))
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    finally:
        con.isolation_level = level


def _info_from_json(text: str) -> SweepInfo:
    d = json.loads(text)
    known = {f.name for f in fields(SweepInfo)}
    return SweepInfo(**{k: v for k, v in d.items() if k in known})


class Store:
    """Read-write access for the driver. Use as a context manager or call :meth:`close`."""

    def __init__(self, sweep_dir: str | Path, *, readonly: bool = False) -> None:
        self.dir = Path(sweep_dir)
        self.path = db_path(self.dir)
        if readonly and not self.path.exists():
            raise ConfigError(f"{self.dir} is not a sweep directory (no {DB_NAME})")
        if not readonly:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.con = _connect_or_refuse(self.path, readonly)
        try:
            self._open(readonly)
        except sqlite3.DatabaseError as e:
            self.con.close()
            raise _damaged(self.path, e) from e
        except ConfigError:
            self.con.close()
            raise

    def _open(self, readonly: bool) -> None:
        version = schema_version(self.con)
        if version is not None and version > SCHEMA_VERSION:
            raise ConfigError(f"{self.path}: store schema version {version} is newer than this hpcdlrm's "
                              f"({SCHEMA_VERSION}); use the hpcdlrm that wrote it, or a newer one")
        if readonly:
            return
        if version is not None and version < SCHEMA_VERSION:
            _migrate(self.con, version)
        with self.con:
            self.con.executescript(_SCHEMA)
            if version is None:
                self.con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # ------------------------------------------------------------------ sweep
    def init_sweep(self, info: SweepInfo, config: dict[str, Any]) -> None:
        with self.con:
            self.con.execute("INSERT INTO sweep (id, schema_version, info, config) VALUES (1, ?, ?, ?)",
                             (SCHEMA_VERSION, json.dumps(asdict(info)), json.dumps(config)))

    def sweep_info(self) -> SweepInfo | None:
        row = self.con.execute("SELECT info FROM sweep WHERE id = 1").fetchone()
        return _info_from_json(row["info"]) if row else None

    def sweep_config(self) -> dict[str, Any] | None:
        row = self.con.execute("SELECT config FROM sweep WHERE id = 1").fetchone()
        return json.loads(row["config"]) if row else None

    def update_config(self, config: dict[str, Any]) -> None:
        with self.con:
            self.con.execute("UPDATE sweep SET config = ? WHERE id = 1", (json.dumps(config),))

    # ------------------------------------------------------------------ trials
    def new_trial(self, params: dict[str, Any], **fields_: Any) -> int:
        """Insert a pending trial and return its id (1, 2, ...)."""
        cols = {"status": Status.PENDING, "params": params, **fields_}
        self._check(cols)
        keys = list(cols)
        with self.con:
            cur = self.con.execute(
                f"INSERT INTO trials ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
                [self._enc(k, cols[k]) for k in keys])
        return int(cur.lastrowid)

    def update_trial(self, trial_id: int, **cols: Any) -> None:
        if not cols:
            return
        self._check(cols)
        with self.con:
            self.con.execute(f"UPDATE trials SET {', '.join(f'{k} = ?' for k in cols)} WHERE id = ?",
                             [*(self._enc(k, v) for k, v in cols.items()), trial_id])

    def delete_trial(self, trial_id: int) -> None:
        """Forget a trial that was never submitted (its submission was refused)."""
        with self.con:
            self.con.execute("DELETE FROM metrics WHERE trial_id = ?", (trial_id,))
            self.con.execute("DELETE FROM trials WHERE id = ?", (trial_id,))

    def trial(self, trial_id: int) -> Trial:
        row = self.con.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone()
        if row is None:
            raise KeyError(trial_id)
        return _trial_from_row(row)

    def trials(self) -> list[Trial]:
        return [_trial_from_row(r) for r in self.con.execute("SELECT * FROM trials ORDER BY id")]

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self.con.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
        return int(self.con.execute("SELECT COUNT(*) FROM trials WHERE status = ?", (status,)).fetchone()[0])

    def requeues(self, trial_id: int) -> int:
        row = self.con.execute("SELECT requeues FROM trials WHERE id = ?", (trial_id,)).fetchone()
        return int(row[0]) if row else 0

    def failures(self) -> int:
        """Trials that count towards --max-failures."""
        bad = [s.value for s in Status if s.is_failure]
        q = f"SELECT COUNT(*) FROM trials WHERE status IN ({', '.join('?' * len(bad))})"
        return int(self.con.execute(q, bad).fetchone()[0])

    # ------------------------------------------------------------------ metrics
    def metrics_position(self, trial_id: int) -> tuple[int, bytes]:
        """(bytes of metrics.jsonl ingested, the last line ingested)."""
        row = self.con.execute("SELECT metrics_offset, metrics_sig FROM trials WHERE id = ?", (trial_id,)).fetchone()
        return (int(row[0]), bytes(row[1] or b"")) if row else (0, b"")

    def add_metrics(self, trial_id: int, points: Iterable[MetricPoint], new_offset: int, sig: bytes = b"",
                    *, reset: bool = False) -> None:
        """Append points and advance the file position in ONE transaction (exactly-once ingestion).
        ``reset`` first drops the trial's points: the run rewrote its file (resumed from a checkpoint)."""
        with self.con:
            if reset:
                self.con.execute("DELETE FROM metrics WHERE trial_id = ?", (trial_id,))
            self.con.executemany(
                "INSERT INTO metrics (trial_id, step, samples, wall_s, name, value) VALUES (?, ?, ?, ?, ?, ?)",
                [(trial_id, p.step, p.samples, p.wall_s, p.name, p.value) for p in points])
            self.con.execute("UPDATE trials SET metrics_offset = ?, metrics_sig = ? WHERE id = ?",
                             (new_offset, sig, trial_id))

    def metrics(self, trial_id: int | None = None, name: str | None = None) -> list[MetricPoint]:
        q, args = "SELECT * FROM metrics WHERE 1=1", []
        if trial_id is not None:
            q, args = q + " AND trial_id = ?", [*args, trial_id]
        if name is not None:
            q, args = q + " AND name = ?", [*args, name]
        rows = self.con.execute(q + " ORDER BY trial_id, wall_s, rowid", args)
        return [MetricPoint(r["trial_id"], r["step"], r["samples"], r["wall_s"], r["name"], r["value"])
                for r in rows]

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check(cols: dict[str, Any]) -> None:
        allowed = set(_TRIAL_COLS) | {"requeues"}
        bad = sorted(set(cols) - allowed)
        if bad:
            raise KeyError(f"unknown trial column(s) {bad}")
        if "status" in cols and cols["status"] not in STATUSES:
            raise ValueError(f"unknown trial status {cols['status']!r}; valid: {STATUSES}")

    @staticmethod
    def _enc(key: str, value: Any) -> Any:
        if isinstance(value, Status):
            return value.value
        return json.dumps(value) if key in _JSON_COLS and value is not None else value


def load_sweep(sweep_dir: str | Path) -> SweepData:
    """Everything a report needs, read-only (a running driver may keep writing meanwhile)."""
    with closing(Store(sweep_dir, readonly=True)) as st:
        try:
            info = st.sweep_info()
            if info is None:
                raise ConfigError(f"{st.path}: the sweep store has no sweep record (created but never started?)")
            return SweepData(info=info, trials=st.trials(), metrics=st.metrics())
        except sqlite3.DatabaseError as e:
            raise _damaged(st.path, e) from e


def check_sweep_dir(sweep_dir: Path) -> None:
    """Refuse a sweep folder whose trials are there but whose store is not usable: a new sweep in it would
    reuse trials/0001... and overwrite their results. Opens nothing for writing."""
    trials = sweep_dir / "trials"
    n = sum(1 for p in trials.iterdir() if p.is_dir()) if trials.is_dir() else 0
    path = db_path(sweep_dir)
    if path.exists() and path.stat().st_size > 0:
        with closing(Store(sweep_dir, readonly=True)) as st:  # a damaged file: ConfigError naming it
            try:
                has_sweep = st.sweep_info() is not None
            except sqlite3.DatabaseError as e:
                raise _damaged(path, e) from e
    else:
        has_sweep = False
    if n and not has_sweep:
        raise ConfigError(f"{path}: {'holds no sweep' if path.exists() else 'missing'}, but {trials} holds {n} "
                          f"trial directories; rebuild the store with `python -m hpcdlrm.sweep rebuild "
                          f"{sweep_dir}`, or pick a new --out")


EXPORT_COLUMNS = ["id", "status", "reason", "objective", "best_auc", "time_to_target_s", "samples_per_s",
                  "slurm_job_id", "partition", "hosts", "ranks", "nodes", "duration_s", "submitted_at",
                  "started_at", "ended_at", "run_dir"]


def trial_row(t: Trial) -> dict[str, Any]:
    """A flat dict of one trial: the export and ``status --json`` share it."""
    row = {k: getattr(t, k) for k in EXPORT_COLUMNS}
    row["params"] = t.params
    return row


def export_trials(data: SweepData, fmt: str) -> str:
    """The trials as CSV (one column per parameter) or JSON (a list of objects)."""
    rows = [trial_row(t) for t in data.trials]
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt != "csv":
        raise ConfigError(f"--export: {fmt!r} is not one of ['csv', 'json']")
    names = list(data.info.space)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(EXPORT_COLUMNS[:2] + names + EXPORT_COLUMNS[2:])
    for r in rows:
        hosts = ",".join(r["hosts"] or [])
        vals = [hosts if k == "hosts" else r[k] for k in EXPORT_COLUMNS]
        w.writerow(vals[:2] + [r["params"].get(n) for n in names] + vals[2:])
    return buf.getvalue()
