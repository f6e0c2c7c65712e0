"""Write a sweep's report: the PNG figures plus an ``index.md`` with the top trials.

``build`` is what the sweep driver calls after every finished trial, so it must cope with a sweep of zero,
one or a few trials, and write every file atomically (a viewer never sees half a PNG).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from matplotlib.figure import Figure

from hpcdlrm.errors import ConfigError
from hpcdlrm.io import atomic_path
from hpcdlrm.report import extract as ex
from hpcdlrm.report.importance import importance_info
from hpcdlrm.report.plots import plot_compare, plot_convergence, plot_history, plot_throughput
from hpcdlrm.report.plots_params import plot_importance, plot_parallel, plot_slices
from hpcdlrm.report.plots_scaling import scaling_figure_from_file
from hpcdlrm.report.style import save_png
from hpcdlrm.sweep.records import FINISHED, SweepData
from hpcdlrm.train.result import Status

SweepLike = Union[SweepData, str, "os.PathLike[str]"]
SCALING_FILE = "scaling.jsonl"  # `python -m hpcdlrm.bench scaling --out SWEEP_DIR/scaling.jsonl`


@dataclass(frozen=True)
class ReportConfig:
    """Knobs of a report; the defaults are what the sweep uses."""

    top_k: int = 10  # rows of the top-trials table
    forest_trees: int = 16  # trees per fANOVA forest; x 5 seeds = 80 trees in all
    forest_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # one forest per seed: the spread is the error bar


FIGURES: dict[str, Callable[[SweepData, str, ReportConfig], Figure]] = {
    "convergence": lambda d, t, c: plot_convergence(ex.convergence_info(d), t),
    "history": lambda d, t, c: plot_history(ex.history_info(d), t),
    "importance": lambda d, t, c: plot_importance(importance_info(d, c.forest_trees, c.forest_seeds), t),
    "parallel_coordinates": lambda d, t, c: plot_parallel(ex.param_view_info(d), t),
    "slices": lambda d, t, c: plot_slices(ex.param_view_info(d), t),
    "throughput": lambda d, t, c: plot_throughput(ex.throughput_info(d), t),
}


def load_data(sweep: SweepLike) -> SweepData:
    """A SweepData as given, or read from a sweep directory through the sweep store."""
    if isinstance(sweep, SweepData):
        return sweep
    from hpcdlrm.sweep.store import load_sweep  # the store pulls in SQLite: only when given a directory

    return load_sweep(Path(sweep))


def _fmt(v: float | None, spec: str = ".5g") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _md_cell(v: object) -> str:
    text = f"{v:.4g}" if isinstance(v, float) else str(v)
    return text.replace("|", "\\|").replace("\n", " ")


def top_table(data: SweepData, k: int = 10) -> list[str]:
    """Markdown table of the ``k`` best trials with their parameters."""
    obj = ex.objective_of(data)
    names = list(dict.fromkeys([*data.info.space, *(p for t in data.trials for p in t.params)]))
    head = ["#", "trial", "status", obj.label + (" [s]" if obj.is_time else ""), "best AUC", "samples/s", "ranks",
            *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    top = ex.top_trials(data, k)
    for i, t in enumerate(top, 1):
        value = _fmt(ex.display_value(data, t)) + (f" {CENSORED_MARK}" if ex.is_censored(data, t) else "")
        row = [i, t.id, t.status, value, _fmt(t.best_auc, ".4f"),
               _fmt(t.samples_per_s, ",.0f"), t.ranks, *(t.params.get(n, "") for n in names)]
        lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
    if any(ex.is_censored(data, t) for t in top):
        lines += ["", CENSORED_NOTE]
    return lines


CENSORED_MARK = "(censored)"
CENSORED_NOTE = (f"{CENSORED_MARK}: the trial never reached the target AUC; the value is not a time to target but "
                 "its running time extrapolated to the target from its AUC curve (what the optimizer was told).")


def failure_lines(data: SweepData) -> list[str]:
    """A section listing why trials failed; it leads the report when every finished trial did."""
    groups = ex.failure_reasons(data)
    if not groups:
        return []
    lines = ["## Failed trials", ""]
    for why, ids in groups:
        which = f"trial {ids[0]}" if len(ids) == 1 else f"{len(ids)} trials ({', '.join(map(str, ids[:10]))}" \
                                                         f"{', …' if len(ids) > 10 else ''})"
        lines.append(f"- {which}: {_md_cell(why)}")
    return lines + [""]


def _summary(data: SweepData) -> list[str]:
    info, trials = data.info, data.trials
    finished = sum(t.status in FINISHED for t in trials)
    reached = sum(ex.reached_target(data, t) for t in trials)
    running = sum(t.status == Status.RUNNING for t in trials)
    best = ex.incumbent(data)
    target = f", target AUC {info.target_auc:g}" if info.target_auc is not None else ""
    lines = [
        f"- objective: `{info.objective}`{target}; optimizer: `{info.optimizer}`",
        f"- trials: {len(trials)} ({finished} finished, {reached} reached the target, {running} running)",
        f"- updated: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
    ]
    failed = [t for t in trials if t.status in FINISHED and ex.is_penalised(data, t)]
    if finished and len(failed) == finished:
        lines.insert(0, f"- **every finished trial failed ({finished} of {finished})**: no objective, no incumbent; "
                        "the reasons are under *Failed trials* below")
    if best is not None:
        obj = ex.objective_of(data)
        params = ", ".join(f"{k}={_md_cell(v)}" for k, v in best.params.items())
        label = obj.label
        if ex.is_censored(data, best):  # every trial missed: the best is the least bad extrapolation
            label = f"no trial reached the target; extrapolated {label} {CENSORED_MARK}"
        lines.append(f"- incumbent: trial {best.id} ({label}: {_fmt(ex.display_value(data, best))}"
                     f"{' s' if obj.is_time else ''}), `{params}`")
    return lines


def _write_text(path: Path, lines: list[str]) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def sweep_report(data: SweepData, out_dir: Path, config: ReportConfig | None = None,
                 scaling: str | os.PathLike[str] | None = None) -> list[Path]:
    """All figures of one sweep plus its ``index.md``; returns the written paths. ``scaling`` (a
    ``bench scaling --out`` JSONL) adds ``scaling.png``: measured throughput and the cost model."""
    cfg = config or ReportConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{data.info.name}: "
    written = [save_png(render(data, title, cfg), out_dir / f"{name}.png") for name, render in FIGURES.items()]
    if scaling is not None:
        written.append(save_png(scaling_figure_from_file(scaling), out_dir / "scaling.png"))
    md = [f"# Sweep report: {data.info.name}", "", *_summary(data), ""]
    failures = failure_lines(data)
    if failures and ex.incumbent(data) is None:  # nothing else to read: the reasons come first
        md += failures
    md += [f"![{p.stem}]({p.name})\n" for p in written]
    if ex.top_trials(data, cfg.top_k):  # none measured (all failed, none finished): no empty table
        md += [f"## Top {cfg.top_k} trials", "", *top_table(data, cfg.top_k)]
    if failures and ex.incumbent(data) is not None:
        md += ["", *failures]
    written.append(_write_text(out_dir / "index.md", md))
    return written


def _unique_names(datas: Sequence[SweepData]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for d in datas:
        base = d.info.name or "sweep"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def default_out_dir(sweeps: Sequence[SweepLike]) -> Path:
    """One sweep directory: ``DIR/report``; several: ``report-compare`` beside their common parent."""
    paths = [Path(s) for s in sweeps if not isinstance(s, SweepData)]
    if len(paths) != len(sweeps):
        raise ConfigError("out_dir is required when a sweep is given as SweepData rather than a directory")
    if len(paths) == 1:
        return paths[0] / "report"
    return Path(os.path.commonpath([p.resolve() for p in paths])) / "report-compare"


def build(sweeps: SweepLike | Sequence[SweepLike], out_dir: str | os.PathLike[str] | None = None,
          config: ReportConfig | None = None, scaling: str | os.PathLike[str] | None = None) -> list[Path]:
    """Write the report of one sweep (figures + ``index.md`` in ``out_dir``) or of several (each in
    ``out_dir/NAME/``, plus ``compare.png`` and an ``index.md`` linking them). Returns the written paths.
    A single sweep's report gets ``scaling.png`` from ``scaling`` or else ``SWEEP_DIR/scaling.jsonl``."""
    many = [sweeps] if isinstance(sweeps, (SweepData, str, os.PathLike)) else list(sweeps)
    if not many:
        raise ConfigError("build: no sweep given")
    out = Path(out_dir) if out_dir is not None else default_out_dir(many)
    datas = [load_data(s) for s in many]
    if len(datas) == 1:
        found = Path(many[0]) / SCALING_FILE if not isinstance(many[0], SweepData) else None
        return sweep_report(datas[0], out, config, scaling or (found if found and found.is_file() else None))
    out.mkdir(parents=True, exist_ok=True)
    written = [save_png(plot_compare(ex.compare_info(datas)), out / "compare.png")]
    md = [f"# Comparison of {len(datas)} sweeps", "", f"![compare]({written[0].name})", ""]
    for name, data in zip(_unique_names(datas), datas):
        written += sweep_report(data, out / name, config)
        best = ex.incumbent(data)
        md.append(f"- [{name}]({name}/index.md): {len(data.trials)} trials, best "
                  f"{_fmt(ex.display_value(data, best)) if best else '–'} ({ex.objective_of(data).label})")
    written.append(_write_text(out / "index.md", md))
    return written
