"""``python -m hpcdlrm.sweep status SWEEP_DIR [--json]``: one row per trial, and the incumbent."""

from __future__ import annotations

import json
from typing import Any

from ..train.result import Status
from .records import SweepData, Trial, incumbent
from .store import trial_row


def status_object(data: SweepData) -> dict[str, Any]:
    """The ``--json`` form: {"sweep": ..., "trials": [...], "incumbent": {...} | null}."""
    inc = incumbent(data.trials, data.info.objective)
    trials = []
    for t in data.trials:
        row = trial_row(t)
        row.pop("run_dir")
        trials.append({**row, "job_id": t.job_id, "executor": t.executor, "run_dir": t.run_dir})
    return {
        "sweep": {"name": data.info.name, "optimizer": data.info.optimizer, "objective": data.info.objective,
                  "target_auc": data.info.target_auc, "created_at": data.info.created_at},
        "trials": trials,
        "incumbent": None if inc is None else {"id": inc.id, "params": inc.params, "objective": inc.objective,
                                               "best_auc": inc.best_auc, "time_to_target_s": inc.time_to_target_s},
    }


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _params(p: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def _row(t: Trial) -> list[str]:
    hosts = ",".join(t.hosts[:3]) + ("..." if len(t.hosts) > 3 else "") if t.hosts else "-"
    return [str(t.id), t.status, _f(t.objective, ".4g"), _f(t.best_auc, ".4f"), _f(t.time_to_target_s, ".1f"),
            _f(t.samples_per_s, ",.0f"), t.slurm_job_id or "-", hosts, _f(t.duration_s, ".0f"), _params(t.params)]


def status_text(data: SweepData) -> str:
    head = ["id", "status", "objective", "best_auc", "ttt_s", "samples/s", "slurm_job", "hosts", "dur_s", "params"]
    rows = [head] + [_row(t) for t in data.trials]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    info = data.info
    target = f", target AUC {info.target_auc}" if info.target_auc is not None else ""
    out = [f"sweep {info.name}: {info.optimizer}, objective {info.objective}{target}, {len(data.trials)} trials",
           *lines]
    inc = incumbent(data.trials, info.objective)
    for t in data.trials:
        if t.reason and Status(t.status).finished:
            out.append(f"  trial {t.id} {t.status}: {t.reason}")
    if inc is None:
        out.append("incumbent: none yet")
    else:
        out.append(f"incumbent: trial {inc.id} ({inc.status}, objective {_f(inc.objective, '.4g')}, best AUC "
                   f"{_f(inc.best_auc, '.4f')}, time to target {_f(inc.time_to_target_s, '.1f')} s): "
                   f"{_params(inc.params)}")
    return "\n".join(out)


def status_json(data: SweepData) -> str:
    return json.dumps(status_object(data), indent=2)
