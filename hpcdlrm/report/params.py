"""Trial parameters as a numeric matrix, in the space the optimizer searched.

Log-scale parameters become log10 values, choices become category indices, so that importance, parallel
coordinates and slices all look at the parameters the way the search space defines them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpcdlrm.sweep.records import SweepData, Trial
from hpcdlrm.sweep.space import place_in

KINDS = ("log", "float", "int", "choice")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter's encoding: ``low``/``high`` are in encoded units (log10 for ``log``)."""

    name: str
    kind: str
    low: float
    high: float
    choices: tuple[Any, ...] = ()

    @property
    def is_log(self) -> bool:
        return self.kind == "log"

    @property
    def is_choice(self) -> bool:
        return self.kind == "choice"

    def decode(self, x: float) -> Any:
        """Encoded value -> the value a user would type (for axis tick labels)."""
        if self.is_choice:
            return self.choices[int(round(x))]
        return 10.0**x if self.is_log else x

    def label(self, x: float) -> str:
        """Short tick text: ``0.001``, ``8000``, ``1e+05``, a choice as written."""
        value = self.decode(x)
        if self.kind == "int" or (isinstance(value, float) and value.is_integer() and abs(value) < 1e6):
            return str(int(round(value)))
        return f"{value:.3g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class ParamTable:
    """Encoded parameters of some trials: ``X[i, j]`` is trial ``trial_ids[i]``'s parameter ``specs[j]``
    (NaN where the trial lacks it)."""

    specs: tuple[ParamSpec, ...]
    trial_ids: tuple[int, ...]
    X: np.ndarray

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]


def _encode_value(kind: str, value: Any, choices: list[Any]) -> float:
    if value is None:
        return math.nan
    if kind == "choice":
        if value not in choices:  # a value outside the declared list: show it rather than drop the trial
            choices.append(value)
        return float(choices.index(value))
    v = float(value)
    if kind == "log":
        return math.log10(v) if v > 0 else math.nan
    return v


def _infer_kind(values: list[Any]) -> str:
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)
    return "float" if numeric else "choice"


def _bounds(kind: str, decl: dict[str, Any], col: np.ndarray, n_choices: int) -> tuple[float, float]:
    if kind == "choice":
        return 0.0, float(max(n_choices - 1, 0))
    finite = col[np.isfinite(col)]
    lo_obs, hi_obs = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    enc = (lambda v: math.log10(v)) if kind == "log" else float
    lo = enc(decl["low"]) if decl.get("low") is not None else lo_obs
    hi = enc(decl["high"]) if decl.get("high") is not None else hi_obs
    # Trials outside the declared bounds (a changed space, a suggested point) widen the domain.
    return min(lo, lo_obs), max(hi, hi_obs)


def _place(value: Any, decl: dict[str, Any], choice: Any) -> float:
    """Where ``value`` lies in the range its ``choice`` gives it (0 low end, 1 high end; log for log)."""
    r = decl["ranges"].get(str(choice))
    if value is None or r is None:
        return math.nan
    return place_in(str(decl.get("kind")), float(r[0]), float(r[1]), float(value))


def param_table(data: SweepData, trials: Sequence[Trial] | None = None, *, places: bool = False) -> ParamTable:
    """Encode ``trials`` (default: all of ``data``) over the declared space plus any undeclared keys.

    ``places``: a parameter whose range a choice picks (``by``/``ranges``: the lr per dense optimizer) as
    its place in that range, 0-1, which is what the optimizer searched (importance); otherwise as its
    value (plots, which show the lr a user would type)."""
    trials = list(data.trials if trials is None else trials)
    space = data.info.space
    extra = sorted({k for t in trials for k in t.params} - set(space))
    specs, cols = [], []
    for name in [*space, *extra]:
        decl = space.get(name, {})
        if places and decl.get("by") and isinstance(decl.get("ranges"), dict):
            cols.append(np.array([_place(t.params.get(name), decl, t.params.get(decl["by"])) for t in trials],
                                 dtype=float))
            specs.append(ParamSpec(name, "float", 0.0, 1.0))
            continue
        kind = decl.get("kind") or _infer_kind([t.params.get(name) for t in trials])
        if kind not in KINDS:
            kind = "float"
        choices = list(decl.get("choices") or [])
        col = np.array([_encode_value(kind, t.params.get(name), choices) for t in trials], dtype=float)
        low, high = _bounds(kind, decl, col, len(choices))
        specs.append(ParamSpec(name, kind, low, high, tuple(choices)))
        cols.append(col)
    X = np.column_stack(cols) if cols else np.zeros((len(trials), 0))
    return ParamTable(tuple(specs), tuple(t.id for t in trials), X)
