"""Colours, line styles and file output shared by every figure.

Colours are Okabe-Ito (safe for the common colour-vision deficiencies); status is also carried by line
style and marker, so nothing depends on colour alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hpcdlrm.io import atomic_path
from hpcdlrm.train.result import Status

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
GREY = "#8C8C8C"
TARGET_COLOUR = "#000000"
INCUMBENT_COLOUR = "#D55E00"
DPI = 100


@dataclass(frozen=True)
class StatusStyle:
    label: str
    colour: str
    linestyle: str
    marker: str


STATUS_STYLE: dict[Status, StatusStyle] = {  # one per Status member (tests/test_report_plots.py checks)
    Status.REACHED_TARGET: StatusStyle("reached target", "#009E73", "-", "o"),
    Status.COMPLETED: StatusStyle("completed", "#0072B2", "-", "s"),
    Status.CAPPED: StatusStyle("capped (budget)", "#E69F00", "--", "v"),
    Status.TIMEOUT: StatusStyle("timeout", "#56B4E9", "--", "D"),
    Status.PREEMPTED: StatusStyle("preempted", "#56B4E9", ":", "d"),
    Status.FAILED: StatusStyle("failed", "#CC79A7", ":", "x"),
    Status.DIVERGED: StatusStyle("diverged", "#CC79A7", "-.", "X"),
    Status.LOST: StatusStyle("lost (no result)", GREY, ":", "x"),
    Status.RUNNING: StatusStyle("running", GREY, "-", "."),
    Status.PENDING: StatusStyle("pending", GREY, ":", "."),
}


def status_style(status: str) -> StatusStyle:
    return STATUS_STYLE.get(status, StatusStyle(status, GREY, ":", "."))


def crowd(n: int, few: float, many: float) -> float:
    """A size or alpha that shrinks from ``few`` (<= 30 items) to ``many`` (>= 300) so crowds stay legible."""
    t = min(max((n - 30) / 270, 0.0), 1.0)
    return few + t * (many - few)


def time_unit(max_seconds: float) -> tuple[float, str]:
    """A divisor and unit that keep time axes in readable numbers."""
    if max_seconds < 180:
        return 1.0, "s"
    if max_seconds < 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def new_figure(width: float, height: float) -> Figure:
    """A Figure on the Agg canvas: no pyplot state, no GUI backend, safe inside a sweep's process.

    No layout engine: constrained layout measured 2-3x the whole drawing time on 500-trial reports, so
    each figure sets fixed margins in inches with ``adjust``.
    """
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def adjust(fig: Figure, left: float, right: float, bottom: float, top: float, *, ncols: int = 1, nrows: int = 1,
           wspace: float = 0.0, hspace: float = 0.0) -> None:
    """``subplots_adjust`` with margins and gaps in inches (readable whatever the figure size)."""
    w, h = fig.get_size_inches()
    axis_w = (w - left - right - (ncols - 1) * wspace) / ncols
    axis_h = (h - bottom - top - (nrows - 1) * hspace) / nrows
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=wspace / axis_w, hspace=hspace / axis_h)


def side_axes(fig: Figure, right: float, width: float, bottom: float, top: float) -> Axes:
    """An axes (for a colourbar) ``right`` inches from the figure's right edge, ``width`` inches wide."""
    w, h = fig.get_size_inches()
    return fig.add_axes((1 - (right + width) / w, bottom / h, width / w, 1 - (bottom + top) / h))


def message(fig: Figure, text: str) -> None:
    """A figure that says why there is nothing to draw (a report must exist from the first trial on)."""
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=13, wrap=True, transform=ax.transAxes)


def save_png(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG atomically: a viewer polling the report never sees a half-written file."""
    final = Path(path)
    with atomic_path(final) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return final
