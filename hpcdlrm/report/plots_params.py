"""Thin renderers for the parameter figures: importance, parallel coordinates, slices."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from hpcdlrm.report.extract import ParamViewInfo, normalise
from hpcdlrm.report.importance import ImportanceInfo, Model
from hpcdlrm.report.params import ParamSpec
from hpcdlrm.report.plots import ValueAxis, nothing_to_plot, objective_scale, value_axis
from hpcdlrm.report.style import GREY, OKABE_ITO, adjust, crowd, message, new_figure, side_axes

WARN_COLOUR = "#A04000"
PLAIN = FuncFormatter(lambda v, _: f"{v:g}")


# --- importance ----------------------------------------------------------------------------------------

def _bars(ax: Axes, names: tuple[str, ...], share: tuple[float, ...], err: tuple[float, ...] | None,
          colour: str, gid: str) -> None:
    """Horizontal bars, largest on top, each labelled with its value past the end of its error bar."""
    order = np.argsort(share, kind="stable")
    y = np.arange(len(order))
    v = np.array(share)[order]
    e = np.zeros_like(v) if err is None else np.array(err)[order]
    ax.barh(y, v, xerr=None if err is None else e, color=colour, capsize=4, gid=gid)
    ax.set_yticks(y, [names[i] for i in order])
    xmax = 1.12
    for yi, vi, ei in zip(y, v, e):
        label = f"{vi:.2f}" + (f" ± {ei:.2f}" if err is not None else "")
        # Past the error bar while it fits (~0.03 per character at this size), else right-aligned at the
        # axes' edge on a white box: a wide error bar must not push the label into the next panel.
        if vi + ei + 0.015 + 0.03 * len(label) <= xmax:
            ax.text(vi + ei + 0.015, float(yi), label, va="center", fontsize=9, gid="bar-label")
        else:
            ax.text(xmax - 0.01, float(yi) + 0.3, label, va="center", ha="right", fontsize=9, gid="bar-label",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    ax.set_xlim(0, xmax)
    ax.grid(axis="x", alpha=0.3)


def _interaction_bar(ax: Axes, share: float) -> None:
    """The variance no single parameter explains, kept apart below the parameters (it is not one)."""
    ax.barh(-1.2, share, color="white", edgecolor=GREY, hatch="///", gid="interactions")
    ax.text(share + 0.015, -1.2, f"{share:.2f}", va="center", fontsize=9)
    ticks = list(ax.get_yticks()) + [-1.2]
    labels = [t.get_text() for t in ax.get_yticklabels()] + ["interactions\n(rest)"]
    ax.set_yticks(ticks, labels)


def _empty(ax: Axes, text: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, color=WARN_COLOUR)


def plot_importance(info: ImportanceInfo, title: str = "") -> Figure:
    """fANOVA shares with seed spread (left) beside PED-ANOVA for the top set (right), plus warnings."""
    fig = new_figure(14, 5.8)
    if not info.names:
        message(fig, "; ".join(info.warnings) or "No parameters.")
        return fig
    left, right = fig.subplots(1, 2)
    name_in = 0.3 + 0.08 * max(len(n) for n in (*info.names, "interactions"))  # room for the bar labels
    adjust(fig, name_in, 0.25, 0.65 + 0.2 * len(info.warnings), 0.95, ncols=2, wspace=name_in + 0.3)
    if info.fanova_mean is not None:
        _bars(left, info.names, info.fanova_mean, info.fanova_std, OKABE_ITO[0], "fanova")
        _interaction_bar(left, info.interaction or 0.0)
    else:
        _empty(left, "fANOVA not computable yet (see the note below)")
    spread = "jackknife std over trials" if info.model is Model.GP else "std over forest seeds"
    left.set_xlabel(f"share of objective variance (first order; bars: {spread})")
    left.set_title(f"fANOVA: what drives the objective\n({info.n_trials} finished trials, objective ranks, "
                   f"{info.model.value})", fontsize=11)
    if info.ped_share is not None:
        _bars(right, info.names, info.ped_share, None, OKABE_ITO[2], "pedanova")
    else:
        _empty(right, "PED-ANOVA not computable yet (see the note below)")
    right.set_xlabel("share of Pearson divergence, top set vs all")
    right.set_title(f"PED-ANOVA: what sets apart the {info.n_top} trial{'s' * (info.n_top != 1)} that\n{info.top_label}"
                    f" (out of {info.n_region} finished)", fontsize=11)
    if info.warnings:
        fig.text(0.5, 0.01, "⚠ " + "\n⚠ ".join(info.warnings), ha="center", va="bottom", fontsize=10,
                 color=WARN_COLOUR, gid="warnings")
    fig.suptitle(f"{title}parameter importance", fontsize=13)
    return fig


# --- parallel coordinates ------------------------------------------------------------------------------

def axis_ticks(spec: ParamSpec) -> tuple[list[float], list[str]]:
    """Tick positions (encoded) and labels (as a user would write the value) for one parameter axis."""
    if spec.is_choice:
        pos = [float(i) for i in range(len(spec.choices))]
    elif spec.is_log and spec.high - spec.low >= 1:
        pos = [float(p) for p in range(math.ceil(spec.low), math.floor(spec.high) + 1)]
    else:
        pos = np.linspace(spec.low, spec.high, 5).tolist()
    return pos, [spec.label(p) for p in pos]


def _colour_scale(info: ParamViewInfo) -> tuple[np.ndarray, str, str, ValueAxis | None]:
    """Objective values in display units, their label, a colour map, and the axis history.png would
    choose for them (log when censored misses sit decades above the hits)."""
    values = np.array(info.values, dtype=float)
    ok = ~np.array(info.penalised, dtype=bool)
    div, _, label = objective_scale(info.objective, values[ok])
    # Better trials are drawn bright and last (on top), whichever way the objective points.
    cmap = "viridis" if info.objective.higher_is_better else "viridis_r"
    y = values / div
    return y, label, cmap, value_axis(y[ok])


def _censored(info: ParamViewInfo) -> np.ndarray:
    return np.array(info.censored or [False] * len(info.trial_ids), dtype=bool)


def objective_axis(y: np.ndarray, pen: np.ndarray, higher_is_better: bool, axis: ValueAxis) -> np.ndarray:
    """Objective values mapped to [0, 1] of ``axis`` with the best at 1 (penalised trials at 0.5, never
    drawn there)."""
    coord = np.where(pen, 0.5, axis.position(np.where(pen, axis.hi, y)))
    return np.where(pen, 0.5, coord if higher_is_better else 1 - coord)


def _axis_labels(ax: Axes, info: ParamViewInfo, axis: ValueAxis) -> None:
    """Tick text beside every vertical axis, in the units a user would type (objective axis on the right)."""
    n = len(info.specs)
    for k, spec in enumerate(info.specs):
        ax.axvline(k, color="black", lw=1)
        ticks, labels = axis_ticks(spec)
        where = normalise(np.array([[t] * n for t in ticks]), info.specs)[:, k]
        for at, text in zip(where, labels):
            ax.text(k - 0.04, float(at), text, ha="right", va="center", fontsize=8)
    ax.axvline(n, color="black", lw=1)
    locator = LogLocator(subs=(1.0, 2.0, 5.0)) if axis.log else MaxNLocator(6)
    for v in locator.tick_values(axis.lo, axis.hi):
        at = float(axis.position(v))
        at = at if info.objective.higher_is_better else 1 - at
        if -0.01 <= at <= 1.01:
            ax.text(n + 0.04, at, f"{v:.4g}", ha="left", va="center", fontsize=8)


def plot_parallel(info: ParamViewInfo, title: str = "") -> Figure:
    """Every finished trial as a line across the parameter axes, coloured by objective; censored trials
    (target not reached: an extrapolated time) dashed."""
    fig = new_figure(max(9.0, 2.2 * (len(info.specs) + 1)), 6.0)
    pen = np.array(info.penalised, dtype=bool)
    if not info.trial_ids or not info.specs or pen.all():
        message(fig, nothing_to_plot(len(info.trial_ids)))
        return fig
    ax = fig.add_subplot()
    adjust(fig, 0.6, 1.5, 0.6, 0.8)
    y, label, cmap, axis = _colour_scale(info)
    assert axis is not None  # some trial is not penalised, so some value is finite
    obj = objective_axis(y, pen, info.objective.higher_is_better, axis)
    cens = _censored(info)
    coords = normalise(np.array(info.X, dtype=float).reshape(len(info.trial_ids), -1), info.specs)
    xs = np.arange(len(info.specs) + 1)
    segs = [np.column_stack([xs, row]) for row in np.column_stack([coords, obj])]
    good = np.flatnonzero(~pen)[np.argsort(obj[~pen])]  # best drawn last, on top
    norm = LogNorm(axis.lo, axis.hi) if axis.log else Normalize(axis.lo, axis.hi)
    lc = LineCollection([segs[i] for i in good], cmap=cmap, norm=norm, gid="trials",
                        linestyles=[(0, (4, 2)) if cens[i] else "solid" for i in good],
                        lw=crowd(good.size, 1.6, 0.7), alpha=crowd(good.size, 0.85, 0.5))
    lc.set_array(y[good])
    handles = []
    if cens[~pen].any():
        handles.append(Line2D([], [], color=GREY, ls=(0, (4, 2)), lw=1.6,
                              label="censored: target not reached, time extrapolated"))
    if pen.any():  # no objective to place them on: drawn up to the last parameter only
        ax.add_collection(LineCollection([segs[i][:-1] for i in np.flatnonzero(pen)], colors=GREY, lw=1, ls=":",
                                         alpha=0.7, gid="penalised"))
        handles.append(Line2D([], [], color=GREY, ls=":", lw=1, label="failed / diverged"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, 1.08), ncol=2, fontsize=9, frameon=False)
    ax.add_collection(lc)
    _axis_labels(ax, info, axis)
    ax.set_xticks(xs, [s.name + (" (log)" if s.is_log else "") for s in info.specs]
                  + [label + (" (log)" if axis.log else "")])
    ax.set_yticks([])
    ax.set_xlim(-0.6, xs[-1] + 0.3)
    ax.set_ylim(-0.05, 1.05)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.tick_params(axis="x", length=0)
    cbar = fig.colorbar(lc, cax=side_axes(fig, 0.85, 0.2, 0.6, 0.8), label=label)
    if cbar.solids is not None:
        cbar.solids.set_alpha(1.0)  # the lines are translucent, the scale should not be
    if axis.log:  # "20", "50", "100" as on the objective axis, not 10^1 with unlabelled minor ticks
        cbar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        cbar.ax.yaxis.set_major_formatter(PLAIN)
        cbar.ax.yaxis.set_minor_locator(NullLocator())
    if not info.objective.higher_is_better:
        cbar.ax.invert_yaxis()  # best at the top, as on the objective axis
    fig.suptitle(f"{title}parallel coordinates ({good.size} trials, brighter = better)", fontsize=13)
    return fig


# --- slices --------------------------------------------------------------------------------------------

def _slice(ax: Axes, spec: ParamSpec, x: np.ndarray, y: np.ndarray, order: np.ndarray, pen: np.ndarray,
           cens: np.ndarray, top: float) -> PathCollection:
    if spec.is_choice:
        jitter = (np.random.default_rng(0).random(x.size) - 0.5) * 0.3  # fixed seed: stable images
        xs = x + jitter
        ax.set_xticks(range(len(spec.choices)), [str(c) for c in spec.choices])
        ax.set_xlim(-0.5, len(spec.choices) - 0.5)
    else:
        xs = 10**x if spec.is_log else x
        if spec.is_log:
            ax.set_xscale("log")
            ax.set_xlim(10**spec.low / 1.3, 10**spec.high * 1.3)
            ax.xaxis.set_major_formatter(PLAIN)  # "0.01" reads faster than 10^-2 (and skips mathtext)
            ax.xaxis.set_minor_locator(NullLocator())  # minor log ticks cost more to draw than they tell
    size = crowd(x.size, 28, 10)
    style = {"cmap": "viridis", "vmin": 1, "vmax": max(2, x.size), "edgecolors": "black", "linewidths": 0.3,
             "zorder": 3}
    measured = ~pen & ~cens
    sc = ax.scatter(xs[measured], y[measured], c=order[measured], s=size, gid=f"slice-{spec.name}", **style)
    if cens.any():  # an estimate, not a measurement: its own marker
        ax.scatter(xs[cens], y[cens], c=order[cens], marker="^", s=size * 1.4, gid=f"slice-{spec.name}-censored",
                   **style)
    if pen.any():
        ax.scatter(xs[pen], np.full(pen.sum(), top), marker="x", color=GREY, s=30, clip_on=False, zorder=2,
                   gid=f"slice-{spec.name}-penalised")
    ax.set_xlabel(spec.name + (" (log scale)" if spec.is_log else ""))
    ax.grid(alpha=0.3)
    return sc


def plot_slices(info: ParamViewInfo, title: str = "") -> Figure:
    """Objective versus each parameter; colour is completion order, so the optimizer's drift shows.
    Censored trials (an extrapolated time) are triangles; the value axis is history.png's."""
    d = len(info.specs)
    ncols = min(3, max(1, math.ceil(math.sqrt(d))))
    nrows = max(1, math.ceil(d / ncols))
    fig = new_figure(4.6 * ncols + 1.2, 3.8 * nrows + 0.9)
    pen = np.array(info.penalised, dtype=bool)
    if not info.trial_ids or not d or pen.all():
        message(fig, nothing_to_plot(len(info.trial_ids)))
        return fig
    X = np.array(info.X, dtype=float).reshape(len(info.trial_ids), d)
    y, label, _, axis = _colour_scale(info)
    assert axis is not None  # some trial is not penalised, so some value is finite
    cens = _censored(info) & ~pen
    order = np.arange(1, len(y) + 1)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    adjust(fig, 0.85, 1.35, 0.6, 0.9, ncols=ncols, nrows=nrows, wspace=0.3, hspace=0.75)
    axis.apply(axes[0])  # shared by every panel
    scatters = [_slice(axes[k], spec, X[:, k], y, order, pen, cens, axis.hi) for k, spec in enumerate(info.specs)]
    for ax in axes[::ncols]:
        ax.set_ylabel(label + (" (log)" if axis.log else ""))
    for ax in axes[d:]:
        ax.set_visible(False)
    fig.colorbar(scatters[0], cax=side_axes(fig, 0.85, 0.2, 0.6, 0.9), label="completion order (trial #)")
    marks = {"measured": ("o", ~pen & ~cens), "censored: target not reached, time extrapolated": ("^", cens),
             "failed / diverged (at the top)": ("x", pen)}
    handles = [Line2D([], [], marker=m, ls="none", color=GREY if m == "x" else "white",
                      mec=GREY if m == "x" else "black", ms=7, label=text) for text, (m, sel) in marks.items() if sel.any()]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.5 / fig.get_size_inches()[1]),
               ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle(f"{title}objective versus each parameter ({len(y)} trials)", fontsize=13)
    return fig
