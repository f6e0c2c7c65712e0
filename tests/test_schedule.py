"""MLPerf DLRM LR policy: warm-up, constant, poly(2) decay to a floor, frozen after."""

from __future__ import annotations

import pytest

from hpcdlrm.errors import ConfigError
from hpcdlrm.train.schedule import LRSchedule


def test_warmup_constant_decay_and_floor_at_the_boundaries() -> None:
    s = LRSchedule(base_lr=2.0, warmup_steps=4, decay_start=6, decay_steps=4, floor=1e-3)
    expected = {
        0: 2.0 * 1 / 4,  # first step already trains
        3: 2.0,  # warm-up reaches base on its last step
        4: 2.0, 5: 2.0, 6: 2.0,  # constant, decay starts at base
        7: 2.0 * (3 / 4) ** 2,
        8: 2.0 * (2 / 4) ** 2,
        9: 2.0 * (1 / 4) ** 2,
        10: 1e-3, 11: 1e-3, 10**6: 1e-3,  # decayed to 0, held at the floor
    }
    for step, lr in expected.items():
        assert s(step) == pytest.approx(lr, rel=1e-12), step
    assert s.end == 10


def test_defaults_are_constant_and_power_is_honoured() -> None:
    assert [LRSchedule(0.5)(k) for k in (0, 1, 1000)] == [0.5, 0.5, 0.5]
    lin = LRSchedule(1.0, decay_start=0, decay_steps=10, power=1.0)
    assert lin(0) == 1.0 and lin(5) == pytest.approx(0.5) and lin(10) == 0.0
    warm_only = LRSchedule(1.0, warmup_steps=2)
    assert (warm_only(0), warm_only(1), warm_only(50)) == (0.5, 1.0, 1.0)


def test_invalid_schedules_name_the_fields() -> None:
    with pytest.raises(ConfigError, match=r"sparse lr: decay_start \(3\) must be >= warmup_steps \(5\)"):
        LRSchedule(1.0, warmup_steps=5, decay_start=3, decay_steps=10, name="sparse lr")
    LRSchedule(1.0, warmup_steps=5, decay_start=3)  # no decay: decay_start is unused, fine
    with pytest.raises(ConfigError, match="warmup_steps"):
        LRSchedule(1.0, warmup_steps=-1)
    with pytest.raises(ConfigError, match="floor"):
        LRSchedule(1.0, floor=2.0)
    with pytest.raises(ConfigError, match="base_lr"):
        LRSchedule(float("nan"))
    with pytest.raises(ConfigError, match="step"):
        LRSchedule(1.0)(-1)
