"""Thin renderers for the trial-level figures: an info record in, a matplotlib ``Figure`` out.

No data logic here (that lives in ``extract``); every artist that carries data gets a ``gid`` so that
tests can find it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, FixedLocator, LogLocator, MaxNLocator, NullLocator

from hpcdlrm.report.extract import CompareInfo, ConvergenceInfo, HistoryInfo, Objective, ThroughputInfo
from hpcdlrm.report.style import (
    GREY,
    INCUMBENT_COLOUR,
    OKABE_ITO,
    TARGET_COLOUR,
    adjust,
    crowd,
    message,
    new_figure,
    status_style,
    time_unit,
)
from hpcdlrm.train.result import Status

# runs that stopped short of their plan: their last point is marked where they stopped
ENDED_BADLY = (Status.FAILED, Status.DIVERGED, Status.TIMEOUT, Status.PREEMPTED, Status.LOST)
BOX = {"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": GREY, "alpha": 0.92}


class Scale(NamedTuple):
    div: float
    unit: str  # "" unless the objective is a time
    label: str  # axis label, unit included


def objective_scale(obj: Objective, values: np.ndarray) -> Scale:
    """How to show objective values on an axis (time objectives in s, min or h, whichever reads best)."""
    if not obj.is_time:
        return Scale(1.0, "", obj.label)
    finite = values[np.isfinite(values)]
    div, unit = time_unit(float(np.median(finite)) if finite.size else 0.0)  # the typical trial, not a miss
    return Scale(div, unit, f"{obj.label} [{unit}]")


LOG_SPAN = 20.0  # objectives spanning more than this factor get a log axis


class ValueAxis(NamedTuple):
    """The range (and scale) objective values are shown on; ``position`` maps a value to [0, 1] of it."""

    lo: float
    hi: float
    log: bool

    def position(self, v: np.ndarray | float) -> np.ndarray:
        if self.log:
            return (np.log10(v) - np.log10(self.lo)) / (np.log10(self.hi) - np.log10(self.lo))
        return (np.asarray(v, dtype=float) - self.lo) / (self.hi - self.lo)

    def apply(self, ax: Axes) -> None:
        """Set this range on ``ax``'s y axis."""
        if self.log:
            ax.set_yscale("log")
        ax.set_ylim(self.lo, self.hi)


def value_axis(values: np.ndarray) -> ValueAxis | None:
    """A log axis when the finite values span more than LOG_SPAN x (seconds to target beside censored
    misses at 10x the limit: a linear axis would flatten every hit onto its floor), else a linear one
    with a margin. None when no value is finite. History, slices and parallel coordinates all use it."""
    ok = values[np.isfinite(values)]
    if not ok.size:
        return None
    lo, hi = float(ok.min()), float(ok.max())
    if lo > 0 and hi / lo > LOG_SPAN:
        return ValueAxis(lo / 1.3, hi * 1.3, True)
    pad = 0.06 * (hi - lo or abs(hi) or 1.0)
    return ValueAxis(lo - pad, hi + pad, False)


def nothing_to_plot(n_finished: int) -> str:
    """Why a figure of objectives is empty: no trial finished yet, or every one failed."""
    if n_finished == 0:
        return "No finished trials with an objective yet."
    return (f"All {n_finished} finished trial{'s' * (n_finished != 1)} failed or diverged: no objective to plot.\n"
            "Their reasons are listed in index.md.")


def _status_legend(statuses: list[str]) -> list[Line2D]:
    out = []
    for s in dict.fromkeys(statuses):
        st = status_style(s)
        marker = st.marker if s in ENDED_BADLY else "None"
        out.append(Line2D([], [], color=st.colour, ls=st.linestyle, lw=1.6, marker=marker, mec="black", mew=0.6,
                          label=st.label + (" (marker: where it stopped)" if s in ENDED_BADLY else "")))
    return out


# --- convergence ---------------------------------------------------------------------------------------

def _auc_limits(info: ConvergenceInfo) -> tuple[float, float]:
    # Zoom on the region that decides the sweep: early-training AUCs near 0.5 would flatten everything.
    tails = [v for c in info.curves for v in c.value[len(c.value) // 3:]]
    all_v = np.array(tails or [0.5, 1.0])
    top = max(float(all_v.max()), info.target or 0.0)
    low = max(0.5, float(np.percentile(all_v, 5)))
    pad = 0.08 * max(top - low, 0.004)
    return low - pad, top + pad


def _draw_curves(ax: Axes, info: ConvergenceInfo, x_of: str, scale: float) -> None:
    """One LineCollection per status (hundreds of trials draw in one call), the incumbent on top."""
    by_status: dict[str, list[np.ndarray]] = {}
    for c in info.curves:
        xy = np.column_stack([np.asarray(getattr(c, x_of)) / scale, c.value])
        if c.trial_id == info.incumbent:
            ax.plot(xy[:, 0], xy[:, 1], color=INCUMBENT_COLOUR, lw=3.0, zorder=4, gid="incumbent",
                    marker="o" if len(xy) == 1 else "None")  # one evaluation: a point, not an invisible line
        else:
            by_status.setdefault(c.status, []).append(xy)
    alpha = crowd(len(info.curves), 0.8, 0.45)
    for status, segs in by_status.items():
        st = status_style(status)
        ax.add_collection(LineCollection(segs, colors=st.colour, linestyles=st.linestyle, lw=1.1, alpha=alpha,
                                         zorder=2, gid=f"curves-{status}"))
    for status, segs in by_status.items():  # trials with a single evaluation draw no line: show the point
        single = [xy[0] for xy in segs if len(xy) == 1]
        if single:
            pts = np.array(single)
            ax.plot(pts[:, 0], pts[:, 1], marker="o", ms=4, ls="none", color=status_style(status).colour,
                    alpha=alpha, zorder=2, gid=f"points-{status}")
    ax.autoscale_view(scaley=False)
    if info.target is not None:
        ax.axhline(info.target, color=TARGET_COLOUR, ls=(0, (6, 3)), lw=1.3, zorder=5, gid="target")
    low, high = _auc_limits(info)
    ax.set_ylim(low, high)
    for status in ENDED_BADLY:  # where such runs stopped, pinned inside the zoomed axis so they stay visible
        ends = [c for c in info.curves if c.status == status and c.value]
        if ends:
            st = status_style(status)
            x = np.array([getattr(c, x_of)[-1] for c in ends]) / scale
            y = np.clip([c.value[-1] for c in ends], low, high)
            ax.plot(x, y, marker=st.marker, ms=8, color=st.colour, mec="black", mew=0.6, ls="none", clip_on=False,
                    zorder=6, gid=f"ends-{status}")
    ax.set_ylabel(f"validation AUC ({info.metric})")
    ax.grid(alpha=0.3)


def plot_convergence(info: ConvergenceInfo, title: str = "") -> Figure:
    """Val AUC of every trial versus wall-clock time (left) and versus samples seen (right)."""
    fig = new_figure(14, 5.6)
    if not info.curves:
        message(fig, "No AUC measurements stored yet.")
        return fig
    axes = fig.subplots(1, 2, sharey=True)
    adjust(fig, 0.85, 0.2, 0.65, 0.5, ncols=2, wspace=0.25)
    div, unit = time_unit(max(max(c.wall_s) for c in info.curves if c.wall_s))
    _draw_curves(axes[0], info, "wall_s", div)
    axes[0].set_xlabel(f"wall-clock time since trial start [{unit}]")
    _draw_curves(axes[1], info, "samples", 1.0)
    axes[1].set_xlabel("training samples seen")
    axes[1].xaxis.set_major_formatter(EngFormatter(sep=""))
    axes[1].set_ylabel("")
    handles = _status_legend([c.status for c in info.curves])
    if info.incumbent is not None:
        handles.append(Line2D([], [], color=INCUMBENT_COLOUR, lw=3, label=f"incumbent (trial {info.incumbent})"))
    if info.target is not None:
        handles.append(Line2D([], [], color=TARGET_COLOUR, ls=(0, (6, 3)), label=f"target AUC {info.target:g}"))
    axes[1].legend(handles=handles, loc="lower right", fontsize=9, framealpha=0.92)
    fig.suptitle(f"{title}validation AUC of {len(info.curves)} trials", fontsize=13)
    return fig


# --- history -------------------------------------------------------------------------------------------

def history_annotation(info: HistoryInfo, best_text: str) -> str:
    """The one-line verdict over the history plot."""
    parts = []
    if info.target_after is not None:
        parts.append(f"target reached after {info.target_after} trial{'s' * (info.target_after != 1)}")
    elif info.target is not None:
        parts.append(f"target AUC {info.target:g} not reached in {len(info.trial_ids)} trials")
    if info.best_value is not None:
        parts.append(f"best: {best_text} (trial {info.best_trial})")
    return "   |   ".join(parts)


def _value_text(value: float | None, scale: Scale) -> str:
    if value is None:
        return "–"
    return f"{value / scale.div:.4g} {scale.unit}" if scale.unit else f"{value:.5g}"


def plot_history(info: HistoryInfo, title: str = "") -> Figure:
    """Objective per finished trial in completion order, with the best-so-far line."""
    fig = new_figure(12, 5.6)
    pen = np.array(info.penalised, dtype=bool)
    if not info.trial_ids or pen.all():
        message(fig, "No finished trials yet." if not info.trial_ids else nothing_to_plot(len(pen)))
        return fig
    ax = fig.add_subplot()
    adjust(fig, 0.85, 2.2, 0.65, 0.8)  # the legend sits in the right margin
    values = np.array(info.values)
    scale = objective_scale(info.objective, values[~pen])
    div, ylabel = scale.div, scale.label
    x, y, statuses = np.arange(1, len(values) + 1), values / div, np.array(info.statuses)
    size = crowd(len(x), 40, 12)
    for status in dict.fromkeys(info.statuses):
        sel, st = (statuses == status) & ~pen, status_style(status)
        if sel.any():  # in a time-to-target sweep, only a hit's value is measured; a miss's is extrapolated
            censored = info.objective.is_time and status != Status.REACHED_TARGET
            ax.scatter(x[sel], y[sel], color=st.colour, marker=st.marker, s=size, zorder=3, gid=f"status-{status}",
                       label=st.label + ("\n(censored: time extrapolated)" if censored else ""))
    axis = value_axis(y[~pen])
    if axis is not None:
        axis.apply(ax)
    if pen.any():  # penalties are arbitrary numbers: pin them to the top edge instead of wrecking the scale
        ax.scatter(x[pen], np.full(pen.sum(), ax.get_ylim()[1]), color=status_style(Status.FAILED).colour, marker="x",
                   s=size + 8, clip_on=False, label="failed / diverged\n(penalised, at top edge)", zorder=3,
                   gid="penalised")
    ax.step(x, np.array(info.best_so_far) / div, where="post", color=INCUMBENT_COLOUR, lw=2.2,
            label="best so far", zorder=4, gid="best-so-far")
    if info.best_trial is not None:
        k = info.trial_ids.index(info.best_trial)
        ax.plot(x[k], y[k], marker="*", ms=16, color=INCUMBENT_COLOUR, mec="black", ls="none", zorder=5,
                label="incumbent", gid="incumbent")
    if info.target_after is not None:
        ax.axvline(info.target_after, color=TARGET_COLOUR, ls=(0, (6, 3)), lw=1.1, label="target first reached",
                   gid="target-after")
    ax.set_title(history_annotation(info, _value_text(info.best_value, scale)), loc="left",
                 fontsize=11, gid="annotation")
    ax.set_xlabel("finished trials (completion order)")
    ax.set_ylabel(ylabel + (" (higher is better)" if info.objective.higher_is_better else " (lower is better)"))
    ax.set_xlim(0.3, len(x) + 0.7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.suptitle(f"{title}objective history ({len(x)} finished trials)", fontsize=13)
    return fig


# --- comparison ----------------------------------------------------------------------------------------

def plot_compare(info: CompareInfo) -> Figure:
    """Best-so-far of several sweeps versus trials (left) and versus wall-clock hours (right)."""
    fig = new_figure(14, 5.6)
    if not any(s.best_so_far for s in info.sweeps):
        message(fig, "No finished trials in any of the sweeps yet.")
        return fig
    axes = fig.subplots(1, 2, sharey=True)
    adjust(fig, 0.85, 0.2, 0.65, 0.5, ncols=2, wspace=0.25)
    allv = np.array([v for s in info.sweeps for v in s.best_so_far], dtype=float)
    div, _, ylabel = objective_scale(info.objective, allv)
    for k, s in enumerate(info.sweeps):
        colour, y = OKABE_ITO[k % len(OKABE_ITO)], np.array(s.best_so_far) / div
        x = np.arange(1, len(y) + 1)
        axes[0].step(x, y, where="post", color=colour, lw=2.2, label=s.name, gid=f"sweep-{s.name}")
        axes[1].step(np.array(s.hours), y, where="post", color=colour, lw=2.2, gid=f"sweep-{s.name}")
        if s.target_after is not None:
            k = s.target_after - 1
            for ax, at in ((axes[0], s.target_after), (axes[1], s.hours[k])):
                ax.plot(at, y[k], marker="*", ms=14, color=colour, mec="black", ls="none", zorder=5)
    axes[0].plot([], [], marker="*", ms=12, color="white", mec="black", ls="none", label="target first reached")
    axes[0].set_xlabel("finished trials")
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set_xlabel("wall-clock since sweep start [h]")
    direction = " (higher is better)" if info.objective.higher_is_better else " (lower is better)"
    axes[0].set_ylabel("best so far: " + ylabel + direction)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=10, framealpha=0.92)
    warn = "  [objectives differ between sweeps!]" if info.mixed_objectives else ""
    fig.suptitle(f"comparison of {len(info.sweeps)} sweeps{warn}", fontsize=13)
    return fig


# --- throughput ----------------------------------------------------------------------------------------

def plot_throughput(info: ThroughputInfo, title: str = "") -> Figure:
    """Samples/s per trial versus its rank count, with the median per rank count and ideal scaling."""
    fig = new_figure(9, 5.6)
    if not info.ranks:
        message(fig, "No throughput measurements stored yet.")
        return fig
    ax = fig.add_subplot()
    adjust(fig, 0.85, 0.2, 0.9, 0.5)
    ranks, sps = np.array(info.ranks, dtype=float), np.array(info.samples_per_s)
    jitter = 1 + 0.04 * (np.random.default_rng(0).random(ranks.size) - 0.5)  # fixed seed: stable images
    ax.scatter(ranks * jitter, sps, color=OKABE_ITO[0], alpha=0.55, s=28, label="one trial", gid="trials")
    ax.plot(info.rank_levels, info.median, "o-", color=OKABE_ITO[3], lw=2, ms=7, label="median", gid="median")
    if len(info.rank_levels) > 1:
        ax.plot(info.rank_levels, info.ideal, ls="--", color="black", lw=1.2, label="ideal linear scaling",
                gid="ideal")
        eff = info.median[-1] / info.ideal[-1]
        ax.text(0.02, 0.97, f"scaling efficiency at {info.rank_levels[-1]} ranks: {eff:.0%}", transform=ax.transAxes,
                va="top", fontsize=11, bbox=BOX, gid="annotation")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(info.rank_levels))
    nodes = dict(zip(info.ranks, info.nodes))
    ax.set_xticklabels([f"{r}\n({nodes[r]}×{r // nodes[r]})" for r in info.rank_levels])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_yscale("log")  # log-log: ideal scaling is a straight line, lost efficiency a bend below it
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("ranks (nodes × tasks per node)")
    ax.set_ylabel("training throughput [samples/s]")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9, framealpha=0.92)
    fig.suptitle(f"{title}throughput scaling ({len(ranks)} trials)", fontsize=13)
    return fig
