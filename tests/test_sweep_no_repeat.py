"""A resumed sweep never runs a point twice (issue 13 item 1), in-process and fast: the real driver,
store and optimizer, trials run by the surrogate in threads (InlineBackend). The driver is abandoned
mid-sweep (as by kill -9: jobs keep running, nothing cleaned up) or interrupted (Ctrl-C), or a finished
sweep is rerun with a larger budget; a fresh driver with a fresh optimizer on the same seed resumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcdlrm.errors import ConfigError
from hpcdlrm.sweep.config import SweepConfig
from hpcdlrm.sweep.driver import Driver
from hpcdlrm.sweep.fakes import InlineBackend
from hpcdlrm.sweep.optim import Optimizer, OptimizerError
from hpcdlrm.sweep.records import FINISHED, SweepInfo
from hpcdlrm.sweep.space import load_space, space_from_dict
from hpcdlrm.sweep.store import Store
from hpcdlrm.sweep.surrogate import run as surrogate
from hpcdlrm.train import RunResult, TrainConfig

TARGET = 0.79


class Stop(BaseException):
    """The driver dies here (kill -9 stands in as an exception nobody catches: no cleanup runs)."""


def fast_surrogate(cfg: TrainConfig) -> RunResult:
    return surrogate(cfg, speed=2000.0)


def driver(out: Path, backend: InlineBackend, budget: int, stop_after: int | None = None,
           interrupt: type[BaseException] = Stop, optimizer: str = "TwoPointsDE") -> Driver:
    space = load_space()
    cfg = SweepConfig(out=str(out), space=space.to_dict(), target_auc=TARGET, time_min=2.0, poll_s=0.005,
                      budget=budget, parallel=[3], optimizer=optimizer, entry="hpcdlrm.sweep.surrogate:run")
    store = Store(out)
    if store.sweep_info() is None:
        store.init_sweep(SweepInfo("t", [], cfg.space, cfg.optimizer, cfg.objective, TARGET, 0.0), cfg.to_dict())
    opt = Optimizer(space, cfg.optimizer, budget=budget, num_workers=cfg.num_workers, seed=0)

    def on_poll() -> None:
        if stop_after is not None and sum(t.status in FINISHED for t in store.trials()) >= stop_after:
            raise interrupt("stopped by the test")

    return Driver(cfg, space, store, {"": backend}, opt, on_poll=on_poll)


def flags(out: Path) -> list[tuple[str, ...]]:
    space = load_space()
    with Store(out) as st:
        return [tuple(space.to_argv(t.params)) for t in st.trials()]


def stopped(d: Driver, kind: type[BaseException]) -> None:
    with pytest.raises(kind):
        d.run()
    assert d.live, "the test wants trials still running when the driver dies"
    d.store.close()


@pytest.mark.parametrize("kind", [Stop, KeyboardInterrupt], ids=["kill-9", "ctrl-c"])
def test_a_driver_killed_midway_then_rerun_repeats_no_point(tmp_path: Path, kind: type[BaseException]) -> None:
    be = InlineBackend(fast_surrogate)
    stopped(driver(tmp_path, be, budget=10, stop_after=2, interrupt=kind), kind)
    before = flags(tmp_path)
    assert 2 <= len(before) < 10
    d2 = driver(tmp_path, be, budget=10)
    d2.run()
    after = flags(tmp_path)
    assert after[:len(before)] == before
    assert len(after) == 10  # the budget counts across runs
    assert len(set(after)) == len(after), "a resumed sweep ran a point twice"
    told = sum(t.objective is not None for t in d2.store.trials() if t.id <= len(before) and t.status in FINISHED)
    assert d2.opt.num_tell >= told  # the new optimizer was told every result stored before it started


def test_extending_a_finished_sweep_repeats_no_point(tmp_path: Path) -> None:
    be = InlineBackend(fast_surrogate)
    driver(tmp_path, be, budget=5).run()
    first = flags(tmp_path)
    assert len(first) == 5
    d = driver(tmp_path, be, budget=9)
    d.run()
    after = flags(tmp_path)
    assert after[:5] == first and len(after) == 9
    assert len(set(after)) == 9, "the extension replayed the first run's asks"


def test_restore_tells_every_result_and_never_asks_a_stored_point() -> None:
    space = load_space()
    first = Optimizer(space, "TwoPointsDE", budget=20, num_workers=2, seed=0)
    asked = [first.ask()[1] for _ in range(6)]
    fresh = Optimizer(space, "TwoPointsDE", budget=20, num_workers=2, seed=0)
    assert [fresh.ask()[1] for _ in range(6)] == asked  # what a fresh optimizer does: the same asks again
    resumed = Optimizer(space, "TwoPointsDE", budget=20, num_workers=2, seed=0)
    resumed.restore([(p, float(i)) for i, p in enumerate(asked[:4])], asked[4:])
    assert resumed.num_tell == 4
    keys = {tuple(space.to_argv(p)) for p in asked}
    new = [resumed.ask()[1] for _ in range(10)]
    assert not keys & {tuple(space.to_argv(p)) for p in new}


def test_a_proposed_repeat_is_told_its_known_loss_and_not_returned() -> None:
    space = space_from_dict({"bs": {"kind": "choice", "choices": [1, 2, 3]},
                             "opt": {"kind": "choice", "choices": ["a", "b"]}})
    opt = Optimizer(space, "TwoPointsDE", budget=50, num_workers=1, seed=0)
    seen = set()
    for i in range(6):  # 6 points exist: every ask is new, though the optimizer proposes repeats
        cand, point = opt.ask()
        key = (point["bs"], point["opt"])
        assert key not in seen
        seen.add(key)
        opt.tell(point, float(i), cand)
    assert opt.repeats > 0 and opt.num_tell > 6  # the repeats were told their known losses
    with pytest.raises(OptimizerError, match="exhausted"):
        opt.ask()


def test_restore_checks_stored_points_against_the_space() -> None:
    opt = Optimizer(load_space(), "TwoPointsDE", budget=4, num_workers=1)
    with pytest.raises(ConfigError, match="lr"):
        opt.restore([], [{"lr": 0.1}])
