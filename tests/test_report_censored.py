"""Censored trials (the target never reached: an extrapolated time) in the report, and a sweep whose
trials all failed: the figures keep the hits readable beside a miss at 10x the limit, mark what is
extrapolated, and index.md says what each value is."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import LogNorm
from PIL import Image

from hpcdlrm.report import extract as ex
from hpcdlrm.report.builder import CENSORED_MARK, build
from hpcdlrm.report.demo import fake_sweep
from hpcdlrm.report.plots import plot_history
from hpcdlrm.report.plots_params import plot_parallel, plot_slices
from hpcdlrm.sweep.records import SweepData

HITS = {1: 3.1, 2: 5.2, 4: 2.4, 5: 8.8, 6: 4.0, 7: 6.3}  # trial -> seconds to target
MISS = {3: 700.0}  # censored at CENSOR_CAP x a 70 s limit, as in the default sweep


@pytest.fixture(scope="module")
def default_like() -> SweepData:
    """Eight trials like the default sweep's: hits in seconds, one censored miss at 700 s, one failure."""
    base = fake_sweep(8, 8, seed=4)
    trials = []
    for t in base.trials:
        if t.id in HITS:
            t = dataclasses.replace(t, status="reached_target", objective=HITS[t.id], time_to_target_s=HITS[t.id])
        elif t.id in MISS:
            t = dataclasses.replace(t, status="capped", objective=MISS[t.id], time_to_target_s=None)
        else:
            t = dataclasses.replace(t, status="failed", objective=3200.0, time_to_target_s=None,
                                    reason="--max-samples: must be a positive number, got -1")
        trials.append(t)
    return dataclasses.replace(base, trials=trials)


def test_censored_is_a_time_objective_miss(default_like: SweepData) -> None:
    assert [t.id for t in default_like.trials if ex.is_censored(default_like, t)] == list(MISS)
    auc = dataclasses.replace(default_like, info=dataclasses.replace(default_like.info, objective="auc"))
    assert not any(ex.is_censored(auc, t) for t in auc.trials)  # a best AUC is measured, never extrapolated


def test_slices_keep_the_hits_apart_and_mark_the_miss(default_like: SweepData, tmp_path: Path) -> None:
    info = ex.param_view_info(default_like)
    fig = plot_slices(info)
    history_ax = plot_history(ex.history_info(default_like)).axes[0]
    ax = fig.axes[0]
    assert ax.get_yscale() == history_ax.get_yscale() == "log"
    assert ax.get_ylim() == pytest.approx(history_ax.get_ylim())  # the very same axis history.png chose
    (hits,) = [c for c in ax.collections if c.get_gid() == "slice-lr"]
    (miss,) = [c for c in ax.collections if c.get_gid() == "slice-lr-censored"]
    assert sorted(hits.get_offsets()[:, 1]) == sorted(HITS.values())
    assert list(miss.get_offsets()[:, 1]) == list(MISS.values())
    # on screen the hits (2.4 .. 8.8 s) use a good part of the axis instead of sitting on its floor
    y = ax.transAxes.inverted().transform(ax.transData.transform(hits.get_offsets()))[:, 1]
    assert y.max() - y.min() > 0.15
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "censored: target not reached, time extrapolated" in legend
    fig.savefig(tmp_path / "s.png")
    with Image.open(tmp_path / "s.png") as im:
        im.load()


def test_parallel_coordinates_log_colours_and_dashed_miss(default_like: SweepData) -> None:
    info = ex.param_view_info(default_like)
    fig = plot_parallel(info)
    (lc,) = [c for c in fig.axes[0].collections if c.get_gid() == "trials"]
    assert isinstance(lc.norm, LogNorm)
    styles = [ls for _, ls in lc.get_linestyles()]
    assert sum(s is not None for s in styles) == len(MISS)  # dashes only for the censored line
    ends = np.array([seg[-1, 1] for seg in lc.get_segments()])  # position on the objective axis
    hit_ends = np.sort(ends)[-len(HITS):]  # the best (highest) are the hits
    assert hit_ends.max() - hit_ends.min() > 0.2  # not squashed into one corner by the 700 s miss
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[-1].endswith("(log)")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][0].startswith("censored")


def test_index_labels_extrapolated_values(default_like: SweepData, tmp_path: Path) -> None:
    build(default_like, tmp_path)
    index = (tmp_path / "index.md").read_text()
    rows = {int(r.split("|")[2]): r for r in index.splitlines() if r.startswith("| ") and r[2].isdigit()}
    assert CENSORED_MARK in rows[3] and "700" in rows[3]
    assert all(CENSORED_MARK not in rows[i] for i in HITS)
    assert "not a time to target" in index
    assert "incumbent: trial 4 (time to target AUC 0.8025: 2.4 s)" in index  # a hit: measured, unlabelled
    assert "- trial 0: failed: --max-samples: must be a positive number, got -1" in index


def test_every_trial_failed_says_so_with_the_reasons(default_like: SweepData, tmp_path: Path) -> None:
    reasons = ["exit code 2 on rank 0 (n1): --out x: cannot write to /x", "node failure", "node failure"]
    trials = [dataclasses.replace(t, status="failed", objective=3200.0, time_to_target_s=None, reason=r)
              for t, r in zip(default_like.trials[:3], reasons)]
    data = dataclasses.replace(default_like, trials=trials)
    build(data, tmp_path)
    index = (tmp_path / "index.md").read_text()
    assert "**every finished trial failed (3 of 3)**" in index
    assert f"- trial {trials[0].id}: failed: {reasons[0]}" in index
    assert f"- 2 trials ({trials[1].id}, {trials[2].id}): failed: node failure" in index
    assert index.index("## Failed trials") < index.index("![convergence]")  # the reasons come first
    assert "## Top" not in index  # no empty table of the best trials
    for render in (plot_history(ex.history_info(data)), plot_slices(ex.param_view_info(data)),
                   plot_parallel(ex.param_view_info(data))):
        texts = [t.get_text() for t in render.findobj(lambda a: hasattr(a, "get_text"))]
        assert any("All 3 finished trials failed" in t for t in texts)
