"""Nevergrad ask/tell behind a watchdog, rebuilt from the trial store (never from a pickle).

Offered optimizers (``--optimizer``): see ``OPTIMIZERS``. The default, ``BudgetDE``, is nevergrad's
differential evolution as Storn & Price run it, current-to-best/1 with binomial crossover (crossover
rate 0.9, both differential weights 0.65), with its population sized to the sweep's budget
(:func:`de_population`: a sixth of the budget within [8, 20], at least one member per worker).
Population based, it takes asynchronous tells in any order and noisy losses, handles the mixed space
through the parametrization's transforms, and accepts points it did not ask for (the store replayed on
resume). Why the population follows the budget: a DE's first ``population`` asks are blind draws
(informed by no result; see below for where they fall), so TwoPointsDE's 30 left a 48-trial sweep 18
informed trials and made a 16-trial sweep blind. Screened on the training surrogate (``python -m
hpcdlrm.bench sweep``, defaults moved mid-range; capping; seeds 20-39), sweeps of 48 that found the
goal, summed over P = 2/4/16: target 0.795: TwoPointsDE 19 of 60, population 8 (16 at P = 16) 30 of 60;
0.79: 39 vs 40; 0.785: 49 vs 51; at 0.795 / 4 / 48 over 40 seeds 18 vs 25 of 40 (population 12: 23,
16: 7 of 20); sweeps of 16, all targets and P: 45 vs 52 of 180. At 200 trials 8 members evolve
too little (0.795 / 4 / 200: 76.5 vs 36.5 trials).

Why crossover 0.9 and weights 0.65 (not TwoPointsDE's two-points crossover and nevergrad's 0.8), and a
population of at most 20: screened on seeds 0-59 (median trials to the goal, capping; the settings
where the TwoPointsDE-based BudgetDE missed the grid's goals, TPE 29.5 and random search 131 trials
there):

=============================================  ===============  =================  ==============  ==============  ==============
variant (population cap 30 unless said)        0.79/2/48        0.79/2/200         0.795/2/200     0.795/4/200     0.785/4/48
=============================================  ===============  =================  ==============  ==============  ==============
two-points crossover, F 0.8 (BudgetDE before)  25.5             24.5               72.5            79.5            15.5
F 0.5                                          18.5             24.5               71              57.5            15.5
F 0.3 / 0.65 / 1.0                             25/22/25         24.5               78/67/60        63/63/68.5      15.5/17/14
rotated two-points crossover                   16.5             24.5               77.5            82              13
init LHS / QR / SO / QO                        48/43/42.5/33.5  51/72.5/38.5/23.5  101/95.5/96/66  90/129/74.5/63  36.5/37.5/33/-
crossover 0.9                                  25               24.5               50              50              14
crossover 0.9, F 0.5                           17               24.5               63.5            56              13
crossover 0.9, cap 20                          25               22                 49.5            54              14
crossover 0.9, F 0.5, cap 20                   17               23                 43              50.5            13
crossover 0.9, F 0.65, cap 20 (BudgetDE now)   15.5             21                 45.5            44              13
=============================================  ===============  =================  ==============  ==============  ==============

A binomial crossover at 0.9 moves almost every coordinate of a child at once (two-points crossover moves
a contiguous block), which suits this space, where lr, warm-up and decay interact; at 0.79 / 2 / 200 a
population of 30 had left the goal to the blind first draws (24.5 with every variant). On the grid
(``bench sweep --grid --seeds 60``, 27 settings) it needs <= 0.5x random search's trials and <= 0.8x
TPE's in 20 of the 20 settings where some method finds the goal in half the seeds (15 of 17 before);
on fresh seeds 60-119 (``--first-seed 60``) in 14 of 17 each, the misses (0.51-0.52x random, 0.80-0.85x
TPE) inside their 90% bootstrap intervals; at 0.785 / 16 there the goal falls to the first wave's
blind draws, the same for the DE before (README, Benchmarks ``sweep --grid``).

Where the first population falls (measured 2026-12-07; every figure above assumed uniform draws): nevergrad's
DE draws it from a Gaussian around the parametrization's init, the space's defaults, with a sixth of each
range as its spread (its default ``initialization="parametrization"``: the parametrization's own sampling,
whose spread is each parameter's sigma), not uniformly. From a sweep's recipe that is a search
near the recipe first, which is what a user with a recipe wants. In the bench, whose ``Space.uninformed``
moves every default to the middle of its range, it makes the DE's lead depend on where that middle lies:
on the DESIGNED landscape it lies near good configurations; on the FITTED one the one lr range 0.003-3 put
it at 0.095, 10x below SGD's best lr and past LAMB's edge (``bench sweep --landscape fitted``, default
setting: 23.5 trials vs TPE's 24.5). With an lr range per dense optimizer (the default space now: SGD
0.03-3, LAMB 0.001-0.1, searched as the place in its range) the middle is 0.3 for SGD and 0.01 for LAMB;
on FITTED the DE then needs (median trials, capping; BudgetDE / TPE) 14.5 / 18.5 at the default setting
(60 seeds) and, over the grid's 30 seeds, 10.5 / 17 at 0.785 / 2 / 48 but 35 / 25 at 0.795 / 4 / 200.
A prototype of that space (the lr as a multiple 0.1-10 of 0.3 or 0.01; 0.785 / 2 / 48, 0.79 / 4 / 100,
0.795 / 4 / 200, 30 seeds): the DE 7 / 14 / 28, TPE 17 / 17 / 25; the DE started from nevergrad's
space-filling samplers instead of the Gaussian, LHS 14.5 / 19.5 / 33, QR 15 / 22.5 / 40.5: TPE's level,
no better. So on this landscape the DE's lead over TPE is its start near the space's middle (or the
recipe), not a better search afterwards.

Tried since and not kept (median trials to the goal, capping, defaults not given):

* on the per-optimizer lr space, a population of at most 12 instead of 20 (seeds 0-29, 0.795 / 2 / 200 and
  0.795 / 4 / 200): FITTED 26 and 24 vs 37.5 and 35, DESIGNED 25 and 23.5 vs 17 and 17: the two landscapes
  disagree, so the cap stays;
* a first population twice as wide (each parameter's nevergrad sigma doubled, a third of its range; the
  DE's ``scale`` does not touch its first draws), seeds 0-29, 0.785 / 2 / 48, 0.79 / 4 / 100,
  0.795 / 4 / 200: DESIGNED 21 / 23 / 45.5 vs 6 / 9 / 17, FITTED 20.5 / 21.5 / 47.5 vs 10.5 / 14.5 / 35:
  the narrow start near the middle is where the DE's lead comes from;

* offspring screened by a model: each ask takes K of the DE's offspring, an ExtraTrees forest (sklearn)
  fitted on the told points' log loss picks the best predicted, the others are told a huge loss (so they
  replace no parent). 0.79 / 2 / 48, seeds 20-59: K = 8: 33.5 trials (found 22 of 40), K = 3: 25.5 (28),
  a random forest from 16 points: 23.5 (28), BudgetDE 25 (28);
* (this and the next on the two-points BudgetDE before) deterministic choices
  (``ng.p.Choice(deterministic=True)``: the most likely option, not a draw from the softmax of the DE's
  weights), seeds 0-59: 0.785 / 2 / 48: 13 vs 17 trials, 0.79 / 2 / 48: 23 vs 24, 0.795 / 2 / 200: 72 vs
  62, 0.795 / 4 / 200: 65.5 vs 64: better at the easy targets, worse at the hard one;
* populations capped at 14 / 20 / 30 at 200 trials (0.795 / 4 / 200, seeds 20-39): 63 / 114 / 55.5:
  20 seeds do not rank them;
* Bayesian optimisation written on sklearn's Gaussian process (Matern 5/2 with a length scale per
  dimension and a noise term, fitted on the log loss; in-flight points told their predicted mean;
  expected improvement over 2,000 uniform and 1,000 local candidates; 8 uniform points first),
  0.79 / 2 / 48, seeds 0-29: 30.5 trials, 36.5 with 14 uniform points first, 29.5 with an
  improvement margin of 0.1, 27.5-29 with the loss clipped at its 30th-50th percentile, vs 23 for
  BudgetDE (two-points) and 29.5 for TPE: censored losses make the surface a plateau with a valley,
  which a stationary GP fits badly.

Also measured and not chosen (same screen): DiagonalCMA looked best at small budgets (0.785 / 16 / 48:
median 1.5 trials) only because it starts at the space's midpoint, which on this surrogate lies near
good configurations; started from a uniform random point per seed it found the goal in 9 vs
TwoPointsDE's 16 of 20 at 0.785 / 4 / 48 and 10 vs 12 at 0.79 / 4 / 48. NGOpt's pick (``NGOptPick``;
NGOpt itself picks it for every budget and worker count of the grid here because the loss is noisy)
7 of 40 and PortfolioDiscreteOnePlusOne 13 of 40 at 0.795 / 4 / 48; DE with LHS initialisation 11 of
40. nevergrad's model-based ``BO`` fails in its first model-based ask() on this space (1.0.12: "Only
data between [0] and [1] can be transformed back"), and NGOpt's MetaModel route hangs on numpy >= 2.4,
so no model-based nevergrad optimizer ran; Optuna's TPE (the bench's peer) is model-based. Earlier
10-seed screen at larger budgets (median trials; *: PortfolioDiscreteOnePlusOne; SmallDE: population
max(8, P)):

=====================  =========  =======  =====  =====  ========  =========  ====  ======
setting (target/P/B)   TwoPtsDE   SmallDE  DE     CMA    (1+1)*    NGOptPick  TPE   random
=====================  =========  =======  =====  =====  ========  =========  ====  ======
0.79 / 4 / 100         14         21       14     22     -         46.5       25.5  82.5
0.79 / 16 / 200        7.5        14       -      30.5   25.5      -          32.5  36.5
0.785 / 2 / 48         14         18       -      25.5   23.5      -          25    36.5
0.795 / 4 / 200        36.5       76.5     72     -      -         170        -     -
=====================  =========  =======  =====  =====  ========  =========  ====  ======

Resume never repeats work: a driver rebuilds its optimizer from the store (:meth:`Optimizer.restore`:
every finished trial's point and loss told as not-asked, every unfinished one marked in flight) and
moves the seeded random stream past the earlier driver's asks, which a fresh optimizer would otherwise
replay point for point. Every ask is also checked against all points run or in flight (by the train
flags they become, so two points that run the same trial count as one): a repeat is not submitted;
the optimizer is told the known loss instead (or later, when the running twin ends) and asked again.

Every ask/tell runs in a daemon thread with a time limit: nevergrad 1.0.12's NGOpt crashes inside
MetaModel on numpy >= 2.4 and then hangs on a non-daemon thread (shared/notes/hpo-anchors.md). Threads
nevergrad starts from our daemon thread are daemons too, so a stuck optimizer cannot keep the process
alive either. NGOpt is refused up front on the affected versions.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from ..errors import ConfigError, HpcDlrmError
from .space import Space

OPTIMIZERS = ("BudgetDE", "SmallPSO", "TwoPointsDE", "SmallDE", "DE", "CMA", "PSO", "PortfolioDiscreteOnePlusOne",
              "NGOptPick", "RandomSearch", "NGOpt")
DEFAULT_OPTIMIZER = "BudgetDE"
SMALL_SWARM = 12
SMALL_POP = 8
MAX_POP = 20  # BudgetDE's largest population (nevergrad's "standard" is max(30, workers))
POP_SHARE = 6  # BudgetDE: at most 1/6 of the budget goes to the blind first population
DE_CROSSOVER = 0.9  # BudgetDE: binomial crossover rate (Storn & Price's usual CR)
DE_F = 0.65  # BudgetDE: both differential weights of current-to-best/1 (nevergrad's F1, F2; its default 0.8)
MAX_REPEATS = 20  # asks in a row that only return known points before a uniform draw is used instead
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


def de_population(budget: int, workers: int) -> int:
    """BudgetDE's population: budget / 6 within [8, 20], and never fewer than the workers.

    A DE's first ``population`` asks are blind draws; only then does it recombine. nevergrad's 30
    leaves a 48-trial sweep 18 informed trials and a 16-trial sweep none (it is random search there),
    while 8 members evolve too little at 200 trials (0.795 / 4 / 200: 76.5 vs 36.5 trials); 30 spent the
    first 30 of 200 trials on blind draws, 20 is enough (see the module's docstring)."""
    return max(workers, min(MAX_POP, max(SMALL_POP, budget // POP_SHARE)))


def _family(ng: Any, name: str, workers: int, budget: int) -> Any:
    """The nevergrad optimizer class (or configured family) behind one of our names."""
    if name == "BudgetDE":  # DE/current-to-best/1/bin, its population sized to the sweep's budget
        return ng.families.DifferentialEvolution(crossover=DE_CROSSOVER, F1=DE_F, F2=DE_F,
                                                 popsize=de_population(budget, workers))
    if name == "SmallPSO":  # every particle can be in flight at once: at least one per worker
        return ng.families.ConfPSO(popsize=max(SMALL_SWARM, workers))
    if name == "SmallDE":  # TwoPointsDE whose population (its first asks are random) fits small budgets
        return ng.families.DifferentialEvolution(crossover="twopoints", popsize=max(SMALL_POP, workers))
    if name == "NGOptPick":  # what NGOpt picks on our noisy mixed space (NGOpt16 -> this), without NGOpt
        return ng.families.ParametrizedOnePlusOne(crossover=True, mutation="discrete", noise_handling="optimistic")
    return ng.optimizers.registry[name]


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

        self.space, self.name, self.timeout_s, self.seed = space, name, timeout_s, seed
        param = space.parametrization(seed)
        workers = max(num_workers, 1)
        cls = _family(ng, name, workers, max(budget, 1))
        self._opt = _guarded("init", lambda: cls(parametrization=param, budget=max(budget, 1),
                                                 num_workers=workers), timeout_s)
        # every point run or in flight, by the train flags it becomes -> its loss (None: not known yet)
        self._seen: dict[tuple[str, ...], float | None] = {}
        self._waiting: dict[tuple[str, ...], list[Any]] = {}  # repeats of a running point: told with it
        self.repeats = 0  # asks that returned a known point (not submitted)
        self._rng = np.random.default_rng([seed, 1])

    def _key(self, point: dict[str, Any]) -> tuple[str, ...]:
        return tuple(self.space.to_argv(point))

    def restore(self, finished: Sequence[tuple[dict[str, Any], float | None]],
                unfinished: Sequence[dict[str, Any]]) -> None:
        """Rebuild from a sweep's store: tell every finished trial (loss None: ran but nothing to tell,
        e.g. a lost job), mark unfinished ones in flight, and continue the seeded random stream where
        no earlier driver drew from it (seeded by the count of stored trials, so still reproducible)."""
        n = len(finished) + len(unfinished)
        if n:
            state = int(np.random.SeedSequence([self.seed, n]).generate_state(1)[0])
            self._opt.parametrization.random_state.seed(state)
            self._rng = np.random.default_rng([self.seed, n, 1])
        for point, loss in finished:
            if loss is None:
                self.space.check_point(point)
                self._seen[self._key(point)] = None
            else:
                self.tell(point, loss)
        for point in unfinished:
            self.space.check_point(point)
            self._seen.setdefault(self._key(point), None)

    def ask(self) -> tuple[Any, dict[str, Any]]:
        """A new point (dict) never run or in flight, and its candidate handle (pass it back to
        :meth:`tell`; None for a uniform draw made when the optimizer keeps proposing known points)."""
        for _ in range(MAX_REPEATS):
            cand = _guarded("ask()", self._opt.ask, self.timeout_s)
            point = self.space.decode({k: _plain(v) for k, v in cand.value.items()})
            key = self._key(point)
            if key not in self._seen:
                self._seen[key] = None
                return cand, point
            self.repeats += 1
            known = self._seen[key]
            if known is None:  # running: its loss reaches this candidate too when it ends
                self._waiting.setdefault(key, []).append(cand)
            else:
                _guarded("tell()", lambda c=cand, v=known: self._opt.tell(c, v), self.timeout_s)
        for _ in range(1000):
            point = uniform_points(self.space, 1, self._rng)[0]
            key = self._key(point)
            if key not in self._seen:
                self._seen[key] = None
                return None, point
        raise OptimizerError(f"every point drawn is one the sweep already ran ({len(self._seen)} distinct "
                             f"points so far): the search space looks exhausted")

    def suggest(self, point: dict[str, Any]) -> None:
        """Make ``point`` the next ask (e.g. the space's defaults: the known recipe goes first)."""
        self.space.check_point(point)
        _guarded("suggest()", lambda: self._opt.suggest(self.space.encode(point)), self.timeout_s)

    def tell(self, point: dict[str, Any], loss: float, candidate: Any = None) -> None:
        """Tell a loss; without ``candidate`` the point is told as not-asked (replay after resume)."""
        if candidate is None:
            self.space.check_point(point)
            candidate = _guarded("spawn_child()", lambda: self._opt.parametrization.spawn_child(
                new_value=self.space.encode(point)), self.timeout_s)
        _guarded("tell()", lambda: self._opt.tell(candidate, float(loss)), self.timeout_s)
        key = self._key(point)
        self._seen[key] = float(loss)
        for twin in self._waiting.pop(key, []):
            _guarded("tell()", lambda c=twin: self._opt.tell(c, float(loss)), self.timeout_s)

    def recommend(self) -> dict[str, Any]:
        rec = _guarded("recommend()", self._opt.provide_recommendation, self.timeout_s)
        return self.space.decode({k: _plain(v) for k, v in rec.value.items()})

    @property
    def num_ask(self) -> int:
        return int(self._opt.num_ask)

    @property
    def num_tell(self) -> int:
        return int(self._opt.num_tell)


def uniform_points(space: Space, n: int, rng: np.random.Generator | int) -> list[dict[str, Any]]:
    """``n`` independent uniform points (log-uniform for log parameters), vectorised per parameter; a
    ``by`` parameter uniform in the range its point's choice picks."""
    rng = np.random.default_rng(rng)
    cols: dict[str, list[Any]] = {}
    for p in space.params:
        if p.kind == "choice":
            cols[p.name] = [p.choices[i] for i in rng.integers(0, len(p.choices), n)]
            continue
        if p.by is not None:  # its position in its range: decoded below, once the choices are drawn
            cols[p.name] = rng.uniform(0.0, 1.0, n).tolist()
            continue
        assert p.low is not None and p.high is not None
        if p.kind == "log":
            cols[p.name] = np.exp(rng.uniform(math.log(p.low), math.log(p.high), n)).tolist()
        elif p.kind == "int":
            cols[p.name] = rng.integers(int(p.low), int(p.high) + 1, n).tolist()
        else:
            cols[p.name] = rng.uniform(p.low, p.high, n).tolist()
    points = [{k: v[i] for k, v in cols.items()} for i in range(n)]
    return [space.decode(pt) for pt in points] if any(p.by for p in space.params) else points


def _plain(v: Any) -> Any:
    """numpy scalars -> Python (JSON, SQLite and argv need plain values)."""
    return v.item() if hasattr(v, "item") else v
