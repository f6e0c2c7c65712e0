"""Nevergrad ask/tell behind a watchdog, rebuilt from the trial store (never from a pickle).

Offered optimizers (``--optimizer``): see ``OPTIMIZERS``. The default, ``TwoPointsDE``, is nevergrad's
differential evolution with two-points crossover, which nevergrad recommends for many parallel workers.
Population based, it takes asynchronous tells in any order and noisy losses, handles the mixed space
through the parametrization's transforms, and accepts points it did not ask for (the store replayed on
resume). On the training surrogate (``python -m hpcdlrm.bench sweep``: 4 workers, 100 trials, defaults
moved mid-range so no method starts at the known recipe; 20 seeds each) the median trials to a
near-best configuration were 19.5 for TwoPointsDE and DE, 20.5 for CMA, 26.5 for ``SmallPSO`` (PSO with
max(12, workers) particles instead of 40) and 79.5 for uniform random search.

Every ask/tell runs in a daemon thread with a time limit: nevergrad 1.0.12's NGOpt crashes inside
MetaModel on numpy >= 2.4 and then hangs on a non-daemon thread (shared/notes/hpo-anchors.md). Threads
nevergrad starts from our daemon thread are daemons too, so a stuck optimizer cannot keep the process
alive either. NGOpt is refused up front on the affected versions.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

from ..errors import ConfigError, HpcDlrmError
from .space import Space

OPTIMIZERS = ("SmallPSO", "TwoPointsDE", "DE", "CMA", "PSO", "PortfolioDiscreteOnePlusOne", "RandomSearch",
              "NGOpt")
DEFAULT_OPTIMIZER = "TwoPointsDE"
SMALL_SWARM = 12
T = TypeVar("T")


class OptimizerError(HpcDlrmError):
    """The optimizer raised or did not answer in time."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("+")[0].split(".")[:3] if p.isdigit())


def check_optimizer(name: str) -> None:
    """ConfigError for names we do not offer, and for NGOpt where it is known to hang."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"--optimizer: {name!r} is not one of {list(OPTIMIZERS)}")
    if name == "NGOpt":
        import nevergrad  # noqa: PLC0415
        import numpy  # noqa: PLC0415

        if _version(nevergrad.__version__) <= (1, 0, 12) and _version(numpy.__version__) >= (2, 4):
            raise ConfigError(
                f"--optimizer NGOpt: nevergrad {nevergrad.__version__} crashes and then hangs in NGOpt "
                f"with numpy {numpy.__version__} (fixed upstream after 1.0.12); use the default "
                f"{DEFAULT_OPTIMIZER}, or install numpy<2.4")


def _guarded(what: str, fn: Callable[[], T], timeout_s: float) -> T:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    th = threading.Thread(target=target, name=f"optimizer-{what}", daemon=True)
    th.start()
    th.join(timeout_s)
    if th.is_alive():
        raise OptimizerError(f"the optimizer did not answer {what} within {timeout_s:.0f} s; "
                             f"try another --optimizer (e.g. {DEFAULT_OPTIMIZER})")
    if "error" in box:
        e = box["error"]
        raise OptimizerError(f"the optimizer failed in {what}: {type(e).__name__}: {e}") from e
    return box["value"]


class Optimizer:
    """Ask points (plain dicts) and tell losses; points not asked here (the store's) are told too."""

    def __init__(self, space: Space, name: str = DEFAULT_OPTIMIZER, *, budget: int, num_workers: int,
                 seed: int = 0, timeout_s: float = 120.0) -> None:
        check_optimizer(name)
        import nevergrad as ng  # noqa: PLC0415

        self.space, self.name, self.timeout_s = space, name, timeout_s
        param = space.parametrization(seed)
        workers = max(num_workers, 1)
        if name == "SmallPSO":  # every particle can be in flight at once: at least one per worker
            cls: Any = ng.families.ConfPSO(popsize=max(SMALL_SWARM, workers))
        else:
            cls = ng.optimizers.registry[name]
        self._opt = _guarded("init", lambda: cls(parametrization=param, budget=max(budget, 1),
                                                 num_workers=workers), timeout_s)

    def ask(self) -> tuple[Any, dict[str, Any]]:
        """A new point (dict) and its candidate handle (pass it back to :meth:`tell`)."""
        cand = _guarded("ask()", self._opt.ask, self.timeout_s)
        point = {k: _plain(v) for k, v in cand.value.items()}
        return cand, point

    def suggest(self, point: dict[str, Any]) -> None:
        """Make ``point`` the next ask (e.g. the space's defaults: the known recipe goes first)."""
        self.space.check_point(point)
        _guarded("suggest()", lambda: self._opt.suggest(dict(point)), self.timeout_s)

    def tell(self, point: dict[str, Any], loss: float, candidate: Any = None) -> None:
        """Tell a loss; without ``candidate`` the point is told as not-asked (replay after resume)."""
        if candidate is None:
            self.space.check_point(point)
            candidate = _guarded("spawn_child()", lambda: self._opt.parametrization.spawn_child(
                new_value=dict(point)), self.timeout_s)
        _guarded("tell()", lambda: self._opt.tell(candidate, float(loss)), self.timeout_s)

    def recommend(self) -> dict[str, Any]:
        rec = _guarded("recommend()", self._opt.provide_recommendation, self.timeout_s)
        return {k: _plain(v) for k, v in rec.value.items()}

    @property
    def num_ask(self) -> int:
        return int(self._opt.num_ask)

    @property
    def num_tell(self) -> int:
        return int(self._opt.num_tell)


def _plain(v: Any) -> Any:
    """numpy scalars -> Python (JSON, SQLite and argv need plain values)."""
    return v.item() if hasattr(v, "item") else v
