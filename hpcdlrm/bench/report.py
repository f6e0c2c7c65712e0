"""``python -m hpcdlrm.bench report [--trials 500] [--points 200] [--json]``: time a full sweep report.

Builds a fake sweep (``hpcdlrm.report.demo``) of ``--trials`` finished trials with ``--points`` AUC
evaluations each (plus as many loss points), then times ``hpcdlrm.report.build`` on it: every PNG and the
index, with the default importance forests, as the sweep driver runs it after each trial.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from hpcdlrm.bench._util import emit


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m hpcdlrm.bench report", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--points", type=int, default=200, help="AUC evaluations per full-length trial")
    p.add_argument("--repeat", type=int, default=2, help="builds timed; the best is reported (first is warm-up)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from hpcdlrm.report import build
    from hpcdlrm.report.demo import fake_sweep

    data = fake_sweep(args.trials, args.points, seed=0)
    times, cpu = [], []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(max(1, args.repeat)):
            t0, c0 = time.perf_counter(), time.process_time()
            written = build(data, out)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    # CPU seconds beside wall seconds: on a shared, oversubscribed machine only the former is stable.
    extra = {"trials": args.trials, "metric_points": len(data.metrics), "files": len(written),
             "first_s": round(times[0], 3), "cpu_s": round(min(cpu), 3)}
    emit("report_build_s", min(times), "s", args.json, **extra)
    return 0
