"""The scaling figure: measured samples/s against ranks (points) and the cost model (lines).

One panel per preset; per sharding one marker set (mpiexec on one host: filled; srun across Slurm
nodes: hollow) and one model line. Every data artist carries a ``gid`` (``measured:PRESET:SHARDING``,
``measured:PRESET:SHARDING:srun``, ``model:PRESET:SHARDING``) so tests can find it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from hpcdlrm.report.style import OKABE_ITO, adjust, message, new_figure

STYLE = {"local": ("#000000", "o"), "table": (OKABE_ITO[0], "s"), "column": (OKABE_ITO[1], "D"),
         "vertical": (OKABE_ITO[2], "^")}


def _main_batch(recs: Sequence[dict[str, Any]]) -> int:
    return max(r["global_batch"] for r in recs)


def scaling_figure(measurements: Sequence[dict[str, Any]], predictions: Sequence[dict[str, Any]]) -> Figure:
    """Measured points and model lines, samples/s vs ranks, one panel per preset (at its main batch)."""
    presets = sorted({r["preset"] for r in measurements})
    fig = new_figure(5.2 * max(1, len(presets)) + 0.4, 4.4)
    if not presets:
        message(fig, "no scaling measurements yet: python -m hpcdlrm.bench scaling --out FILE")
        return fig
    adjust(fig, 0.9, 0.25, 0.75, 0.55, ncols=len(presets), wspace=0.75)
    axes = fig.subplots(1, len(presets), squeeze=False)[0]
    for ax, preset in zip(axes, presets):
        recs = [r for r in measurements if r["preset"] == preset]
        g = _main_batch(recs)
        recs = [r for r in recs if r["global_batch"] == g]
        ranks = sorted({r["ranks"] for r in recs} | {p["ranks"] for p in predictions if p["preset"] == preset})
        for sharding, (colour, marker) in STYLE.items():
            line = sorted((p["ranks"], p["samples_per_s"]) for p in predictions
                          if p["preset"] == preset and p["sharding"] == sharding and p["global_batch"] == g)
            if line:
                ax.plot([x for x, _ in line], [y for _, y in line], color=colour, lw=1.6, ls="--",
                        label=f"model, {sharding}", gid=f"model:{preset}:{sharding}")
            for launcher, filled in (("mpiexec", True), ("srun", False)):
                pts = [r for r in recs if r["sharding"] == sharding and r.get("launcher", "mpiexec") == launcher]
                if not pts:
                    continue
                suffix = "" if launcher == "mpiexec" else ":srun"
                ax.plot([r["ranks"] for r in pts], [r["samples_per_s"] for r in pts], ls="none", marker=marker,
                        ms=8, color=colour, mfc=colour if filled else "white", mew=1.5,
                        label=f"measured, {'1 rank' if sharding == 'local' else sharding}"
                              f"{' (srun, 2 nodes)' if not filled else ''}",
                        gid=f"measured:{preset}:{sharding}{suffix}")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(ranks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(r) for r in ranks])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("ranks (one host, oversubscribed past its cores)")
        ax.set_ylabel("training samples/s")
        ax.set_title(f"{preset}: global batch {g:,}", fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("Measured scaling (points) and the calibrated cost model (lines)", fontsize=12)
    return fig


def scaling_figure_from_file(path: str | os.PathLike[str]) -> Figure:
    """Read a scaling JSONL, fit the model to its single-host records (or use the shipped calibration
    when there are too few) and draw the figure."""
    from hpcdlrm.plan.calibrate import Calibration, calibrate, model_curves, read_measurements  # noqa: PLC0415

    recs = read_measurements(Path(path))
    single = [r for r in recs if r["ranks_per_host"] == r["ranks"]]
    rates = calibrate(single).rates if len(single) >= 4 else Calibration.load().rates
    return scaling_figure(recs, model_curves(recs, rates))
