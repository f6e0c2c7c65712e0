"""Every offered optimizer answers a few asynchronous ask/tell rounds in time; none can hang us."""

from __future__ import annotations

import threading
import time

import numpy
import pytest

from hpcdlrm.errors import ConfigError
from hpcdlrm.sweep.optim import (DE_CROSSOVER, DE_F, DEFAULT_OPTIMIZER, OPTIMIZERS, Optimizer, OptimizerError,
                                 _guarded, _version, check_optimizer, de_population)
from hpcdlrm.sweep.space import load_space

NGOPT_BROKEN = _version(numpy.__version__) >= (2, 4)


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS if not (n == "NGOpt" and NGOPT_BROKEN)])
def test_optimizer_runs_async_rounds(name: str) -> None:
    sp = load_space()
    t0 = time.monotonic()
    opt = Optimizer(sp, name, budget=12, num_workers=3, seed=1, timeout_s=60)
    opt.tell(sp.defaults(), 50.0)  # a stored trial replayed (not asked)
    in_flight = [opt.ask() for _ in range(3)]
    for i in range(6):  # tell the oldest, ask a new one: completion order != ask order
        cand, point = in_flight.pop(i % len(in_flight))
        sp.check_point(point)
        opt.tell(point, float(10 + i), cand)
        in_flight.append(opt.ask())
    # repeats of known points are not returned: told their loss (or their running twin's) and asked again
    assert opt.num_ask == 9 + opt.repeats and 7 <= opt.num_tell <= 7 + opt.repeats
    sp.check_point(opt.recommend())
    assert time.monotonic() - t0 < 60


@pytest.mark.skipif(not NGOPT_BROKEN, reason="only refused where nevergrad 1.0.12 + numpy>=2.4 hang")
def test_ngopt_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match=f"NGOpt.*hangs.*numpy.*{DEFAULT_OPTIMIZER}"):
        check_optimizer("NGOpt")


def test_unknown_optimizer() -> None:
    with pytest.raises(ConfigError, match="'Bogus' is not one of"):
        check_optimizer("Bogus")


def test_watchdog_turns_a_hang_into_an_error() -> None:
    release = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(OptimizerError, match="did not answer ask\\(\\) within"):
        _guarded("ask()", release.wait, timeout_s=0.3)
    assert time.monotonic() - t0 < 5
    release.set()
    with pytest.raises(OptimizerError, match="failed in tell\\(\\): ZeroDivisionError"):
        _guarded("tell()", lambda: 1 / 0, timeout_s=5)


def test_seeded_asks_are_reproducible() -> None:
    sp = load_space()
    a = [Optimizer(sp, "SmallPSO", budget=8, num_workers=2, seed=5).ask()[1] for _ in range(2)]
    assert a[0] == a[1]


NGOPT_SCRIPT = """
import math, sys
from hpcdlrm.sweep import optim
from hpcdlrm.sweep.space import space_from_dict
optim.check_optimizer = lambda name: None  # bypass the refusal: exercise the watchdog on the real thing
sp = space_from_dict({"lr": {"kind": "log", "low": 1e-3, "high": 1.0},
                      "w": {"kind": "int", "low": 0, "high": 10000},
                      "d": {"kind": "int", "low": 10000, "high": 100000},
                      "p": {"kind": "choice", "choices": [1, 2]}})
opt = optim.Optimizer(sp, "NGOpt", budget=40, num_workers=4, seed=0, timeout_s=30)
try:
    for i in range(40):
        c, p = opt.ask()
        opt.tell(p, math.log(p["lr"]) ** 2 + p["w"] / 1e4 + p["p"], c)
    print("completed")
except optim.OptimizerError as e:
    print("optimizer error:", e)
"""


def test_real_ngopt_crash_cannot_hang_the_process() -> None:
    """On numpy>=2.4 NGOpt raises inside MetaModel and leaves a non-daemon thread blocked; through
    our watchdog the error surfaces and the process still exits (a hang fails this test)."""
    import os
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", NGOPT_SCRIPT], capture_output=True, text=True, timeout=240,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    if NGOPT_BROKEN:
        assert "optimizer error: the optimizer failed in" in p.stdout and "TypeError" in p.stdout, p.stdout
    else:
        assert "completed" in p.stdout, p.stdout


def test_small_pso_keeps_one_particle_per_worker() -> None:
    sp = load_space()
    assert Optimizer(sp, "SmallPSO", budget=50, num_workers=4)._opt.llambda == 12
    opt = Optimizer(sp, "SmallPSO", budget=50, num_workers=20)
    assert opt._opt.llambda == 20
    points = [opt.ask() for _ in range(20)]  # all workers busy at once
    assert len({tuple(sorted(p.items())) for _, p in points}) == 20


def test_budget_de_sizes_its_population_to_the_budget() -> None:
    # a sixth of the budget within [8, 20], never fewer members than workers (each can be in flight)
    assert [de_population(b, 2) for b in (16, 48, 100, 119, 200, 5000)] == [8, 8, 16, 19, 20, 20]
    assert de_population(48, 16) == 16 and de_population(200, 40) == 40
    sp = load_space()
    assert Optimizer(sp, "BudgetDE", budget=48, num_workers=4)._opt.llambda == 8


def test_budget_de_is_current_to_best_with_binomial_crossover() -> None:
    # the classic DE (Storn & Price: CR 0.9), not nevergrad's TwoPointsDE: its offspring differ from
    # TwoPointsDE's once the first (uniform, identical) population has been told
    sp = load_space().uninformed()
    cfg = Optimizer(sp, "BudgetDE", budget=200, num_workers=4)._opt._config
    assert (cfg.crossover, cfg.F1, cfg.F2) == (DE_CROSSOVER, DE_F, DE_F) == (0.9, 0.65, 0.65)
    asks = []
    for name in ("BudgetDE", "TwoPointsDE"):
        opt, seen = Optimizer(sp, name, budget=48, num_workers=4, seed=3), []
        for i in range(20):  # past the first population of 8: recombination included
            cand, point = opt.ask()
            opt.tell(point, float(i % 7), cand)
            seen.append(point)
        asks.append(seen)
    assert asks[0][:8] == asks[1][:8] and asks[0][8:] != asks[1][8:]


def test_the_lr_is_searched_in_the_range_of_the_optimizer_it_comes_with() -> None:
    """The default space gives SGD and LAMB their own lr ranges: every ask lies in its own choice's range,
    a stored point told back lands where it was (in both choices' units), and the recipe goes first as
    written."""
    sp = load_space()
    ranges = {c: (lo, hi) for c, lo, hi in next(p for p in sp.params if p.name == "lr").ranges}
    opt = Optimizer(sp, budget=40, num_workers=4, seed=3)
    opt.suggest(sp.defaults())
    first = opt.ask()[1]
    assert first == pytest.approx(sp.defaults()) and first["lr"] == 0.012  # exactly: it went through lr's units
    opt.tell({**sp.defaults(), "dense_optimizer": "sgd", "lr": 2.5}, 5.0)  # replayed from a store
    seen = {"sgd": 0, "lamb": 0}
    for i in range(30):
        cand, point = opt.ask()
        lo, hi = ranges[point["dense_optimizer"]]
        assert lo <= point["lr"] <= hi, point
        seen[point["dense_optimizer"]] += 1
        opt.tell(point, float(i % 7), cand)
    assert min(seen.values()) > 0  # both optimizers were tried, each in its own range
    rec = opt.recommend()
    sp.check_point(rec)
