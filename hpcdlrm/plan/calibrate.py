"""Fit the cost model's rates to ``python -m hpcdlrm.bench scaling --out FILE`` records.

Three weighted least-squares fits, each on its own measured part of the step (so the split of the
time comes from the timers, not from the fit):

- compute: FLOP rate (single-threaded ranks, and the efficiency of multi-threaded ones), optimizer
  bandwidth, per-step overhead, and the other tenants' runnable threads on the host (a 1-D grid
  search: it enters nonlinearly); the embedding rates come from the bench's direct probe when the
  records carry one (embedding work and FLOPs both grow with the batch: the fit cannot split them);
- communication: one alpha and one link bandwidth for the all-to-alls and the all-reduce together;
- the loader: seconds per row.

Rows are weighted by 1 / measured step time, so every configuration counts by its relative error.
Coefficients are kept >= 0 (a negative inverse rate means the data cannot see that term: it is
dropped and the rest refitted).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from .cost import Cluster, Rates, Terms, Workload, predict, terms

DEFAULT_CALIBRATION = Path(__file__).with_name("default_calibration.json")
NEEDED = ("preset", "sharding", "ranks", "ranks_per_host", "global_batch", "table_rows", "num_tables",
          "step_ms", "compute_ms", "a2a_ms", "allreduce_ms", "loader_ms", "samples_per_s")
UNSEEN = 1e30  # rate of a term the measurements could not see (costs nothing)
BACKGROUND_GRID = np.arange(0.0, 8.01, 0.25)  # other runnable threads on the calibration host


@dataclass(frozen=True)
class Calibration:
    rates: Rates
    host: dict[str, Any] = field(default_factory=dict)  # what it was measured on
    fit: dict[str, Any] = field(default_factory=dict)  # how well it fits its measurements

    def to_dict(self) -> dict[str, Any]:
        return {"rates": asdict(self.rates), "host": self.host, "fit": self.fit}

    def save(self, path: str | os.PathLike[str]) -> None:
        from ..io import write_json_atomic  # noqa: PLC0415

        write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> "Calibration":
        p = Path(path) if path is not None else DEFAULT_CALIBRATION
        try:
            d = json.loads(p.read_text())
            return cls(Rates(**d["rates"]), d.get("host", {}), d.get("fit", {}))
        except FileNotFoundError:
            raise ConfigError(f"--calibration: {p} does not exist") from None
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{p}: not a calibration file ({type(e).__name__}: {e})") from None


def workload_of(rec: dict[str, Any]) -> tuple[Workload, Cluster]:
    """The model's view of one measured configuration (all its ranks share one host here)."""
    sharding = "table" if rec["sharding"] == "local" else rec["sharding"]
    w = Workload.of(rec["preset"], [int(rec["table_rows"])] * int(rec["num_tables"]), int(rec["global_batch"]),
                    sharding)
    if int(rec["ranks_per_host"]) != int(rec["ranks"]):
        # Two hosts would need the network split from the host link: not measurable on one machine.
        raise DataError(f"record {rec['preset']}/{rec['sharding']}/{rec['ranks']} ranks: spans several physical "
                        "hosts; calibration takes single-host measurements (ranks_per_host == ranks)")
    return w, Cluster(ranks_per_socket=int(rec["ranks"]), cores_per_socket=int(rec.get("cpus") or 0) or None,
                      threads_per_rank=int(rec.get("threads_per_rank", 1)))


def read_measurements(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a scaling JSONL file, checked for the fields the fit needs (errors name the line)."""
    out = []
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as e:
        raise DataError(f"{p}: cannot read measurements ({e.strerror})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{i}: not JSON ({e.msg})") from None
        missing = [k for k in NEEDED if k not in rec]
        if missing:
            raise DataError(f"{p}:{i}: missing field(s) {missing} "
                            "(write it with `python -m hpcdlrm.bench scaling --out`)")
        out.append(rec)
    if not out:
        raise DataError(f"{p}: no measurements")
    return out


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with coefficients >= 0: drop the most negative column and refit."""
    active = list(range(x.shape[1]))
    coef = np.zeros(x.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(x[:, active], y, rcond=None)
        if (sol >= 0).all():
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return coef


def _inv(c: float) -> float:
    return 1.0 / c if c > 0 else UNSEEN


def _fit_compute(recs: list[dict[str, Any]], model: list[Terms], threaded: np.ndarray,
                 wt: np.ndarray) -> dict[str, float]:
    """Inverse rates of the compute terms (see the module docstring)."""
    compute = np.array([r["compute_ms"] / 1e3 for r in recs])
    probes = {(p["rows"], p["dim"]): p["seconds"] for p in (r.get("emb_probe") for r in recs) if p}
    row_s = inv_bw = 0.0
    if probes:
        # Embedding work grows with the batch exactly like the MLPs' FLOPs: the fit cannot tell them
        # apart, so its rates come from the bench's direct probes of the same operations (per row and
        # per byte: two row widths separate them).
        px = [[rows if len(probes) > 1 else 0.0, rows * dim * 4.0] for rows, dim in probes]
        row_s, inv_bw = _nnls(np.array(px), np.array(list(probes.values())))
        compute = compute - np.array([t.emb_rows * row_s + t.emb_bytes * inv_bw for t in model])
    # FLOPs of single-threaded and of multi-threaded ranks get their own inverse rates.
    cols = [[t.flops * (1 - m), t.flops * m, t.opt_bytes, 1.0] + ([] if probes else [t.emb_bytes])
            for t, m in zip(model, threaded)]
    x, y = np.array(cols) * wt[:, None], compute * wt
    fit = _nnls(x, y)
    single, multi = (fit[0], fit[1]) if fit[0] > 0 else (fit[1], fit[1])  # no single-threaded ranks seen
    return {"flops": single, "efficiency": single / multi if multi > 0 else 1.0, "opt": fit[2],
            "overhead": fit[3], "emb_bytes": inv_bw if probes else fit[4], "emb_row": row_s,
            "residual": float(np.sum((x @ fit - y) ** 2))}


def calibrate(measurements: Iterable[dict[str, Any]], host: dict[str, Any] | None = None) -> Calibration:
    """Rates that reproduce ``measurements`` (scaling bench records) in the least-squares sense."""
    recs = list(measurements)
    if len(recs) < 4:
        raise DataError(f"calibration needs >= 4 measured configurations, got {len(recs)}")
    views = [workload_of(r) for r in recs]
    wt = np.array([1e3 / r["step_ms"] for r in recs])  # relative errors
    threaded = np.array([v[1].threaded for v in views], dtype=float)
    # Other tenants' runnable threads slow every rank's compute; that count enters nonlinearly, so it
    # is searched on a grid, with the linear least squares solved at each point.
    background, c = min(((bg, _fit_compute(recs, [terms(*v, bg) for v in views], threaded, wt))
                         for bg in BACKGROUND_GRID), key=lambda fit: fit[1]["residual"])
    model = [terms(*v, background) for v in views]
    multi = [(r, t, w) for r, t, w in zip(recs, model, wt) if r["ranks"] > 1]
    comm_x = [[t.messages[i], t.link_bytes[i] + t.net_bytes[i]] for _, t, _ in multi for i in (0, 1)]
    comm_y = [r[k] / 1e3 for r, _, _ in multi for k in ("a2a_ms", "allreduce_ms")]
    ww = np.repeat([w for *_, w in multi], 2)
    comm = _nnls(np.array(comm_x) * ww[:, None], np.array(comm_y) * ww) if multi else np.zeros(2)
    load = _nnls(np.array([[t.rows] for t in model]) * wt[:, None], np.array([r["loader_ms"] / 1e3 for r in recs]) * wt)
    rates = Rates(flops_per_s=_inv(c["flops"]), emb_bytes_per_s=_inv(c["emb_bytes"]), opt_bytes_per_s=_inv(c["opt"]),
                  overhead_s=float(c["overhead"]), loader_s_per_row=float(load[0]), alpha_s=float(comm[0]),
                  link_bytes_per_s=_inv(comm[1]), emb_row_s=float(c["emb_row"]),
                  thread_efficiency=float(c["efficiency"]), background_threads=float(background))
    errs = relative_errors(recs, rates)
    return Calibration(rates, host or {}, {"configurations": len(recs), "max_rel_error": round(float(max(errs)), 4),
                                           "mean_rel_error": round(float(np.mean(errs)), 4)})


def relative_errors(measurements: Sequence[dict[str, Any]], rates: Rates) -> list[float]:
    """|predicted - measured| / measured samples/s for each record."""
    out = []
    for r in measurements:
        pred = predict(*workload_of(r), rates).samples_per_s
        out.append(abs(pred - r["samples_per_s"]) / r["samples_per_s"])
    return out


def host_info() -> dict[str, Any]:
    """What the calibration host is (for the record, and to scale to other CPUs)."""
    model, flags, mhz = "", [], 0.0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
                elif line.startswith("cpu MHz") and not mhz:
                    mhz = float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other"
    # fp32 FLOP per cycle and core: 2 FMA units x vector lanes x 2 (the planner scales rates by it)
    per_cycle = {"avx512": 64, "avx2": 32}.get(isa, 8)
    return {"cpu": model, "cores": os.cpu_count(), "isa": isa, "ghz": round(mhz / 1e3, 3),
            "fp32_flop_per_cycle": per_cycle}


def model_curves(measurements: Sequence[dict[str, Any]], rates: Rates,
                 ranks: Sequence[int] = (1, 2, 4, 8)) -> list[dict[str, Any]]:
    """Predicted samples/s on one host for each measured (preset, sharding) at its largest measured
    global batch, over ``ranks`` (those that divide the batch): the model lines of the scaling figure."""
    out = []
    keys = {(r["preset"], r["sharding"]) for r in measurements if r["sharding"] != "local"}
    for preset, sharding in sorted(keys):
        same = [r for r in measurements if r["preset"] == preset]
        g = max(r["global_batch"] for r in same)
        rec = next(r for r in same if r["global_batch"] == g)
        for n in ranks:
            if g % n:
                continue
            threads = max(1, int(rec.get("cpus") or 1) // n)  # what the trainer's default_threads gives
            w, c = workload_of({**rec, "sharding": sharding, "ranks": n, "ranks_per_host": n,
                                "threads_per_rank": threads})
            try:
                cost = predict(w, c, rates)
            except ConfigError:  # e.g. more ranks than embedding columns
                continue
            out.append({"preset": preset, "sharding": sharding, "ranks": n, "global_batch": g,
                        "samples_per_s": cost.samples_per_s})
    return out
