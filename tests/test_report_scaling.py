"""``scaling.png``: measured points and model lines per preset/sharding, and the report's hook."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from matplotlib.image import imread

from hpcdlrm.plan import calibrate, read_measurements
from hpcdlrm.plan.calibrate import model_curves
from hpcdlrm.report import ReportConfig, build
from hpcdlrm.report.demo import fake_sweep
from hpcdlrm.report.plots_scaling import scaling_figure, scaling_figure_from_file
from hpcdlrm.report.style import save_png

FIXTURE = Path(__file__).with_name("data") / "scaling_fixture.jsonl"


def _lines(fig, prefix: str) -> dict[str, object]:
    return {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines() if (ln.get_gid() or "").startswith(prefix)}


def test_figure_has_one_marker_set_per_config_and_model_lines(tmp_path: Path) -> None:
    recs = read_measurements(FIXTURE)
    curves = model_curves(recs, calibrate(recs).rates)
    fig = scaling_figure(recs, curves)
    presets = sorted({r["preset"] for r in recs})
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == presets
    for ax in fig.axes:
        assert ax.get_xlabel().startswith("ranks") and ax.get_ylabel() == "training samples/s"
    measured = _lines(fig, "measured:")
    expected = {f"measured:{r['preset']}:{r['sharding']}" for r in recs if r["launcher"] == "mpiexec"}
    assert set(measured) == expected  # one marker set per (preset, sharding), 1-rank runs as "local"
    for gid, line in measured.items():
        _, preset, sharding = gid.split(":")
        g = max(r["global_batch"] for r in recs if r["preset"] == preset)
        want = sorted((r["ranks"], r["samples_per_s"]) for r in recs
                      if r["preset"] == preset and r["sharding"] == sharding and r["global_batch"] == g)
        assert sorted(zip(line.get_xdata(), line.get_ydata())) == want  # the half-batch runs are not drawn
        assert line.get_linestyle() == "None"
    models = _lines(fig, "model:")
    assert set(models) == {f"model:{p}:{s}" for p in presets for s in ("table", "column")}
    for gid, line in models.items():
        _, preset, sharding = gid.split(":")
        pts = dict(zip(line.get_xdata(), line.get_ydata()))
        assert 1 in pts and 4 in pts and all(y > 0 for y in pts.values())
        measured_pts = dict(zip(*measured[f"measured:{preset}:{sharding}"].get_data()))
        for ranks, y in measured_pts.items():  # the line passes near its measured points
            assert abs(pts[ranks] - y) / y < 0.25, (gid, ranks, pts[ranks], y)
    png = save_png(fig, tmp_path / "s.png")
    img = imread(png)
    assert img.shape[0] >= 400 and img.shape[1] >= 800 and np.ptp(img[..., :3]) > 0.5


def test_empty_measurements_give_a_message_figure() -> None:
    fig = scaling_figure([], [])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("bench scaling" in t for t in texts)


def test_report_writes_scaling_png_when_the_sweep_has_measurements(tmp_path: Path) -> None:
    fast = ReportConfig(forest_trees=4, forest_seeds=(0,), top_k=3)
    data = fake_sweep(6, 4, seed=1)
    written = build(data, tmp_path / "plain", fast)
    assert "scaling.png" not in [p.name for p in written]
    written = build(data, tmp_path / "rep", fast, scaling=FIXTURE)
    assert "scaling.png" in [p.name for p in written]
    assert "![scaling](scaling.png)" in (tmp_path / "rep" / "index.md").read_text()
    assert imread(tmp_path / "rep" / "scaling.png").shape[1] >= 800
    fig = scaling_figure_from_file(FIXTURE)
    assert _lines(fig, "model:")


def test_report_cli_finds_scaling_jsonl_in_the_sweep_dir(tmp_path: Path) -> None:
    from hpcdlrm.report.__main__ import main
    from test_report_build import store_sweep

    sweep = tmp_path / "sw"
    store_sweep(sweep, fake_sweep(5, 3, seed=3))
    shutil.copy(FIXTURE, sweep / "scaling.jsonl")
    assert main([str(sweep)]) == 0
    assert (sweep / "report" / "scaling.png").is_file()
