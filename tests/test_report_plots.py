"""The renderers draw what the info records say: inspect the matplotlib objects, then decode the PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from PIL import Image

from hpcdlrm.report import extract as ex
from hpcdlrm.report.builder import FIGURES, ReportConfig
from hpcdlrm.report.demo import fake_sweep
from hpcdlrm.report.importance import importance_info
from hpcdlrm.report.plots import plot_compare, plot_convergence, plot_history, plot_throughput
from hpcdlrm.report.plots_params import plot_importance, plot_parallel, plot_slices
from hpcdlrm.report.style import save_png
from hpcdlrm.sweep.records import SweepData, SweepInfo

FAST = ReportConfig(forest_trees=8, forest_seeds=(0, 1))


@pytest.fixture(scope="module")
def data() -> SweepData:
    d = fake_sweep(16, 12, seed=0)
    statuses = {t.status for t in d.trials}
    assert {"reached_target", "capped"} <= statuses and statuses & {"failed", "diverged"}, statuses
    return d


def by_gid(fig: Figure, gid: str) -> list:
    return [a for a in fig.findobj(lambda a: a.get_gid() == gid)]


def png_shape(fig: Figure, path: Path) -> tuple[int, ...]:
    save_png(fig, path)
    with Image.open(path) as im:
        im.load()  # decodes the whole file, not just the header
        return (im.height, im.width)


def test_convergence_has_one_curve_per_trial_target_and_incumbent(data: SweepData, tmp_path: Path) -> None:
    info = ex.convergence_info(data)
    fig = plot_convergence(info, "demo: ")
    left, right = fig.axes
    assert left.get_xlabel() == "wall-clock time since trial start [min]"
    assert right.get_xlabel() == "training samples seen"
    assert left.get_ylabel() == "validation AUC (auc)"
    for ax in (left, right):
        curves = [c for c in ax.collections if str(c.get_gid()).startswith("curves-")]
        drawn = sum(len(c.get_segments()) for c in curves)
        incumbent = [line for line in ax.get_lines() if line.get_gid() == "incumbent"]
        assert drawn + len(incumbent) == len(info.curves) == len(data.trials)
        assert len(incumbent) == 1
        (target,) = [line for line in ax.get_lines() if line.get_gid() == "target"]
        assert list(target.get_ydata()) == [0.8025, 0.8025]
    styles = {c.get_gid(): c.get_linestyle()[0] for c in left.collections if str(c.get_gid()).startswith("curves-")}
    assert styles["curves-capped"] != styles["curves-reached_target"]  # status visible without colour
    legend = [t.get_text() for t in right.get_legend().get_texts()]
    assert f"incumbent (trial {info.incumbent})" in legend and "target AUC 0.8025" in legend
    assert "capped (budget)" in legend and "reached target" in legend
    assert png_shape(fig, tmp_path / "c.png") == (560, 1400)


def test_history_annotates_target_and_best(data: SweepData, tmp_path: Path) -> None:
    info = ex.history_info(data)
    fig = plot_history(info)
    ax = fig.axes[0]
    title = ax.get_title(loc="left")
    assert f"target reached after {info.target_after} trials" in title
    assert f"(trial {info.best_trial})" in title
    (best,) = by_gid(fig, "best-so-far")
    div = 60.0 if "[min]" in ax.get_ylabel() else 1.0
    np.testing.assert_allclose(best.get_ydata(), np.array(info.best_so_far) / div)
    points = sum(len(c.get_offsets()) for c in ax.collections if str(c.get_gid()).startswith("status-"))
    assert points == info.penalised.count(False)
    assert len(by_gid(fig, "penalised")[0].get_offsets()) == info.penalised.count(True)
    assert ax.get_xlabel() == "finished trials (completion order)"
    assert "(lower is better)" in ax.get_ylabel()
    assert png_shape(fig, tmp_path / "h.png") == (560, 1200)


def test_importance_bars_match_the_info_and_warn_on_few_trials(data: SweepData) -> None:
    info = importance_info(data, FAST.forest_trees, FAST.forest_seeds)
    fig = plot_importance(info)
    bars = by_gid(fig, "fanova")
    assert sorted(b.get_width() for b in bars) == pytest.approx(sorted(info.fanova_mean))
    assert len(by_gid(fig, "interactions")) == 1
    ped = by_gid(fig, "pedanova")
    assert sorted(b.get_width() for b in ped) == pytest.approx(sorted(info.ped_share))
    (warn,) = by_gid(fig, "warnings")  # 16 trials for 4 parameters: under the 5-per-parameter rule
    assert "Only 16 finished trials for 4 parameters (rule of thumb: >= 20)" in warn.get_text()
    enough = importance_info(fake_sweep(24, 6, seed=0), FAST.forest_trees, FAST.forest_seeds)
    assert not any("fANOVA" in w or "Only" in w for w in enough.warnings)


def test_importance_labels_stay_inside_their_panel_even_past_a_wide_error_bar() -> None:
    from hpcdlrm.report.importance import ImportanceInfo

    # As in a default 8-trial sweep: "0.76 ± 0.47" past its error bar would land in the PED-ANOVA panel.
    names = ("dense_optimizer", "lr", "decay_steps", "batch_size")
    info = ImportanceInfo(names, 8, (0.76, 0.10, 0.05, 0.02), (0.47, 0.08, 0.05, 0.02), 0.07, 8, 2, "reached",
                          (0.7, 0.2, 0.05, 0.05), ())
    fig = plot_importance(info)
    fig.canvas.draw()
    labels = by_gid(fig, "bar-label")
    assert len(labels) == 2 * len(names)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for text in labels:
        box, panel = text.get_window_extent(renderer), text.axes.get_window_extent(renderer)
        assert panel.x0 <= box.x0 and box.x1 <= panel.x1 + 1, (text.get_text(), box, panel)
    assert any(t.get_text() == "0.76 ± 0.47" for t in labels)


def test_parallel_coordinates_one_line_per_trial_with_colourbar(data: SweepData, tmp_path: Path) -> None:
    info = ex.param_view_info(data)
    fig = plot_parallel(info)
    (lc,) = by_gid(fig, "trials")
    assert isinstance(lc, LineCollection)
    assert len(lc.get_segments()) == info.penalised.count(False)
    assert all(len(s) == len(info.specs) + 1 for s in lc.get_segments())  # every parameter + the objective
    (pen,) = by_gid(fig, "penalised")
    assert len(pen.get_segments()) == info.penalised.count(True)
    ax, cbar = fig.axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "lr (log)" and labels[-1] == cbar.get_ylabel() == "time to target AUC 0.8025 [min]"
    png_shape(fig, tmp_path / "p.png")


def test_slices_one_panel_per_parameter(data: SweepData) -> None:
    info = ex.param_view_info(data)
    fig = plot_slices(info)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_xlabel()]
    assert [ax.get_xlabel() for ax in panels] == ["lr (log scale)", "warmup_steps", "decay_start", "decay_power"]
    assert panels[0].get_xscale() == "log" and panels[1].get_xscale() == "linear"
    assert [t.get_text() for t in panels[3].get_xticklabels()] == ["1", "2"]
    measured = [not p and not c for p, c in zip(info.penalised, info.censored)]
    assert 0 < measured.count(True) < info.penalised.count(False)  # the demo has hits and censored misses
    for spec in info.specs:
        (sc,) = by_gid(fig, f"slice-{spec.name}")
        (cens,) = by_gid(fig, f"slice-{spec.name}-censored")
        assert len(sc.get_offsets()) == measured.count(True)
        assert len(sc.get_offsets()) + len(cens.get_offsets()) == info.penalised.count(False)
        assert not np.array_equal(cens.get_paths()[0].vertices, sc.get_paths()[0].vertices)  # another marker


def test_throughput_median_ideal_and_efficiency(data: SweepData) -> None:
    info = ex.throughput_info(data)
    fig = plot_throughput(info)
    (median,) = by_gid(fig, "median")
    np.testing.assert_allclose(median.get_ydata(), info.median)
    (ideal,) = by_gid(fig, "ideal")
    np.testing.assert_allclose(ideal.get_ydata(), info.ideal)
    (note,) = by_gid(fig, "annotation")
    assert note.get_text() == f"scaling efficiency at {info.rank_levels[-1]} ranks: " \
                              f"{info.median[-1] / info.ideal[-1]:.0%}"
    assert len(by_gid(fig, "trials")[0].get_offsets()) == len(data.trials)


def test_compare_draws_each_sweep_on_both_axes() -> None:
    a, b = fake_sweep(8, 6, seed=1, name="a"), fake_sweep(10, 6, seed=2, name="b")
    fig = plot_compare(ex.compare_info([a, b]))
    left, right = fig.axes
    for ax in (left, right):
        assert sorted(line.get_gid() for line in ax.get_lines() if line.get_gid()) == ["sweep-a", "sweep-b"]
    assert left.get_xlabel() == "finished trials" and right.get_xlabel() == "wall-clock since sweep start [h]"
    assert [t.get_text() for t in left.get_legend().get_texts()][:2] == ["a", "b"]


def test_every_figure_renders_an_empty_sweep(tmp_path: Path) -> None:
    info = SweepInfo("empty", [], {"lr": {"kind": "log", "low": 1e-3, "high": 1.0}}, "RandomSearch",
                     "time_to_target", 0.8, 0.0)
    empty = SweepData(info, [], [])
    for name, render in FIGURES.items():
        fig = render(empty, "", FAST)
        texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
        assert any("yet" in t or "need at least" in t for t in texts), name
        png_shape(fig, tmp_path / f"{name}.png")


def test_a_trial_with_one_evaluation_is_drawn_as_a_point() -> None:
    import dataclasses

    base = fake_sweep(6, 8, seed=2)
    info0 = ex.convergence_info(base)
    lone = next(c.trial_id for c in info0.curves if c.trial_id != info0.incumbent)
    first = min(m.step for m in base.metrics if m.trial_id == lone and m.name == "auc")
    metrics = [m for m in base.metrics if not (m.trial_id == lone and m.name == "auc" and m.step != first)]
    info = ex.convergence_info(dataclasses.replace(base, metrics=metrics))
    status = next(c.status for c in info.curves if c.trial_id == lone)
    for ax in plot_convergence(info, "one point: ").axes:
        points = [ln for ln in ax.get_lines() if ln.get_gid() == f"points-{status}"]
        assert len(points) == 1 and len(points[0].get_xdata()) == 1  # a line of one point would be invisible
        assert points[0].get_marker() == "o"


def test_history_uses_a_log_axis_when_objectives_span_decades() -> None:
    import dataclasses

    base = fake_sweep(6, 8, seed=3)
    objectives = [1.0, 2.0, 600.0, 1.5, 900.0, 3.0]  # fast hits beside censored misses
    trials = [dataclasses.replace(t, objective=v) for t, v in zip(base.trials, objectives)]
    ax = plot_history(ex.history_info(dataclasses.replace(base, trials=trials)), "").axes[0]
    assert ax.get_yscale() == "log"
    assert plot_history(ex.history_info(base), "").axes[0].get_yscale() == "linear"  # the demo's spread is small
