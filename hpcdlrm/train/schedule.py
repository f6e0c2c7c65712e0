"""The MLPerf DLRM learning-rate policy (the reference's LRPolicyScheduler), as a pure function of the step.

    lr(s) = base * (s + 1) / warmup_steps                      s < warmup_steps        (linear warm-up)
          = base                                               until decay_start       (constant)
          = max(floor, base * ((D - k) / D) ** power)          k = min(s - decay_start, D), D = decay_steps

``s`` is the 0-based index of the optimizer step about to run, so the first step already trains with
base / warmup_steps (never exactly 0) and step ``warmup_steps - 1`` reaches ``base``. After the decay the
rate stays at ``floor`` (the reference freezes at its 1e-7 floor). ``decay_steps == 0`` disables the decay.
Differences from the reference, on purpose: it keeps the last warm-up value (base * (W-1)/W) between
warm-up and decay, and its first step runs at ``base``; here both are ``base`` / the first warm-up value.

A pure function of ``step`` makes resuming from a checkpoint trivial: no scheduler state to save.
Use one instance per parameter family (dense and sparse base rates differ).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class LRSchedule:
    base_lr: float
    warmup_steps: int = 0
    decay_start: int = 0
    decay_steps: int = 0
    power: float = 2.0
    floor: float = 0.0
    name: str = "lr"  # prefix of error messages, e.g. "dense lr" or "sparse lr"

    def __post_init__(self) -> None:
        n = self.name
        for fld in ("warmup_steps", "decay_start", "decay_steps"):
            if int(getattr(self, fld)) != getattr(self, fld) or getattr(self, fld) < 0:
                raise ConfigError(f"{n}: {fld} must be a non-negative integer, got {getattr(self, fld)!r}")
        if not self.base_lr >= 0:  # also rejects NaN
            raise ConfigError(f"{n}: base_lr must be >= 0, got {self.base_lr}")
        if not self.power > 0:
            raise ConfigError(f"{n}: power must be > 0, got {self.power}")
        if not 0 <= self.floor <= self.base_lr:
            raise ConfigError(f"{n}: floor must be in [0, base_lr={self.base_lr}], got {self.floor}")
        if self.decay_steps > 0 and self.decay_start < self.warmup_steps:
            raise ConfigError(
                f"{n}: decay_start ({self.decay_start}) must be >= warmup_steps ({self.warmup_steps}): "
                "the decay cannot start before the warm-up ends"
            )

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ConfigError(f"{self.name}: step must be >= 0, got {step}")
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        if self.decay_steps == 0 or step < self.decay_start:
            return self.base_lr
        k = min(step - self.decay_start, self.decay_steps)
        return max(self.floor, self.base_lr * ((self.decay_steps - k) / self.decay_steps) ** self.power)

    @property
    def end(self) -> int:
        """First step at which the rate is final (floor after a decay, base otherwise)."""
        return self.decay_start + self.decay_steps if self.decay_steps else self.warmup_steps
