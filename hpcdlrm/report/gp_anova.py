"""Functional ANOVA on a Gaussian-process surrogate: first-order Sobol indices over its posterior.

A random forest needs hundreds of trials before its main effects stop being noise. On the training
surrogate, whose true ranking is known (``python -m hpcdlrm.bench importance``: lr first), forests fitted
to 24 trials ranked lr first in 6 of 10 uniform random samples (``--uniform``) and in 3 of 10 TwoPointsDE
sweeps; this GP, on the same trials, in 9 and 7 of 10 (its mean alone: 9 and 8; BudgetDE, the default:
9 vs the mean's 7). A GP's smoothness prior is what small designs need
(Oakley & O'Hagan 2004; Marrel et al. 2009: Sobol indices from a GP metamodel), so the report uses it for
small sweeps and the forest (``fanova.py``) for large ones.

The GP (constant x Matern-5/2 with one length scale per parameter, plus white noise for the trials'
noise) is fitted on the encoded parameters scaled to the unit cube. ``V_i`` is the variance, over a grid
on parameter ``i``, of the posterior mean averaged over the other parameters (one scrambled-Sobol sample
of them, shared by every grid point so their sampling noise mostly cancels); ``V`` its variance over the
whole domain. Both are uniform over the search space, as the forest's are. The error bars are a
jackknife over the trials (``gp_anova``): what another draw of trials could have shown.

Both variances are expectations over the GP's posterior, not of its mean alone (Oakley & O'Hagan 2004):
E[V_i] adds the variance of parameter ``i``'s main effect that the posterior leaves uncertain. A sweep
samples near good configurations; beyond its trials the posterior mean falls back to the average, which
read as "no effect there". On the surrogate, BudgetDE sweeps tried lr only in 0.003-0.06, where SGD
(optimum 0.3) always loses to LAMB (0.03): the mean alone credited the optimizer choice (truly ~0: it only
moves lr's optimum), while lr's short length scale over its untried range says its effect there is
uncertain, not absent. Screened on seeds 10-29, kept apart from the figures' 0-9 (lr first, of 20):
BudgetDE 10 -> 11, ``--uninformed`` 7 -> 9, TwoPointsDE 18 -> 18, uniform trials 15 -> 16.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from hpcdlrm.report.fanova import FanovaResult

GRID = 16  # points on a continuous parameter's axis (the GP mean is smooth: a coarse grid integrates it)
N_OTHERS = 256  # scrambled-Sobol points over the other parameters, per grid point
N_TOTAL = 4096  # points for the total variance
N_UNCERTAIN = 32  # of them, per grid point, for the variance the posterior's uncertainty adds (cost ~ this^2)
DROP = 0.2  # share of the trials each error-bar fit leaves out


def _levels(low: float, high: float, discrete: bool) -> np.ndarray:
    """Unit-cube coordinates of a parameter's grid: its integer levels (choices) or cell midpoints."""
    if discrete:
        n = int(round(high - low)) + 1
        return np.arange(n) / max(n - 1, 1)
    return (np.arange(GRID) + 0.5) / GRID


def _uniform(n: int, discrete: Sequence[bool], bounds: np.ndarray, seed: int) -> np.ndarray:
    """``n`` scrambled-Sobol points of the unit cube, the discrete dimensions snapped to their levels."""
    from scipy.stats import qmc  # noqa: PLC0415 - scipy comes with scikit-learn

    u = qmc.Sobol(len(discrete), scramble=True, seed=seed).random(n)
    for i, disc in enumerate(discrete):
        if disc:
            levels = _levels(bounds[i][0], bounds[i][1], True)
            u[:, i] = levels[np.minimum((u[:, i] * levels.size).astype(int), levels.size - 1)]
    return u


def _fit(Z: np.ndarray, y: np.ndarray, seed: int):  # noqa: ANN202 - sklearn's regressor
    from sklearn.exceptions import ConvergenceWarning  # noqa: PLC0415 - heavy, only when importance is wanted
    from sklearn.gaussian_process import GaussianProcessRegressor  # noqa: PLC0415
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel  # noqa: PLC0415

    d = Z.shape[1]
    kernel = (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(np.full(d, 0.5), (0.05, 20.0), nu=2.5)
              + WhiteKernel(0.1, (1e-3, 1.0)))
    scale = y.std() or 1.0
    with warnings.catch_warnings():  # a length scale at its bound is an answer here (irrelevant parameter)
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp = GaussianProcessRegressor(kernel, n_restarts_optimizer=2, random_state=seed)
        return gp.fit(Z, (y - y.mean()) / scale)


def _posterior_cov(gp, A: np.ndarray, B: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Posterior covariance of the latent function (no trial noise) between the rows of ``A`` and ``B``."""
    from scipy.linalg import solve_triangular  # noqa: PLC0415

    latent = gp.kernel_.k1  # constant x Matern; k2 is the trials' white noise
    va = solve_triangular(gp.L_, latent(gp.X_train_, A), lower=True)
    vb = va if B is A else solve_triangular(gp.L_, latent(gp.X_train_, B), lower=True)
    return latent(A, B) - va.T @ vb


def _spread_var(cov: np.ndarray, groups: int) -> float:
    """E[variance across ``groups`` means] that the posterior's uncertainty adds: each group mean averages
    its block of ``cov`` over distinct pairs (a point paired with itself would add its noise, not a trend)."""
    m = cov.shape[0] // groups
    blocks = cov.reshape(groups, m, groups, m).transpose(0, 2, 1, 3)
    off = blocks.sum(axis=(2, 3)) - np.einsum("abii->ab", blocks)
    c = off / (m * (m - 1))
    return float(np.trace(c) / groups - c.sum() / groups**2)


def first_order_shares(gp, bounds: np.ndarray, discrete: Sequence[bool], seed: int = 0,  # noqa: ANN001
                       posterior: bool = True) -> np.ndarray:
    """``V_i / V`` of the GP over the unit cube: of its posterior mean, plus (``posterior``) the expected
    variance its uncertainty adds, E[V_i] / E[V] over the posterior (Oakley & O'Hagan 2004)."""
    d = len(discrete)
    pts_total = _uniform(N_TOTAL, discrete, bounds, seed)
    total = float(gp.predict(pts_total).var())
    if total <= 1e-12:  # the trials do not vary: nothing to explain (the uncertainty alone is the prior's)
        return np.zeros(d)
    others = _uniform(N_OTHERS, discrete, bounds, seed + 1)
    out = np.zeros(d)
    for i in range(d):
        levels = _levels(bounds[i][0], bounds[i][1], discrete[i])
        pts = np.repeat(others[None], levels.size, axis=0)
        pts[:, :, i] = levels[:, None]
        means = gp.predict(pts.reshape(-1, d)).reshape(levels.size, N_OTHERS).mean(axis=1)
        out[i] = means.var()
        if posterior and hasattr(gp, "L_"):
            # Where no trial was run the mean reverts to the average: a sweep that never tried high
            # lrs leaves lr's effect there uncertain, not absent, and a short length scale says it varies.
            sub = pts[:, :N_UNCERTAIN].reshape(-1, d)
            out[i] += _spread_var(_posterior_cov(gp, sub, sub), levels.size)
    if posterior and hasattr(gp, "L_"):
        total += _total_spread(gp, pts_total[:N_UNCERTAIN * 16])
    return out / total


def _total_spread(gp, pts: np.ndarray) -> float:  # noqa: ANN001
    """E[variance over ``pts``] the posterior's uncertainty adds: mean variance minus mean covariance."""
    cov = _posterior_cov(gp, pts, pts)
    n = len(pts)
    return float(np.diag(cov).mean() - (cov.sum() - np.trace(cov)) / (n * (n - 1)))


def gp_anova(X: np.ndarray, y: np.ndarray, bounds: np.ndarray, discrete: Sequence[bool],
             seeds: Sequence[int] = (0, 1, 2, 3, 4)) -> FanovaResult:
    """Sobol shares of one GP fitted on all rows of ``X -> y``; error bars by the delete-d jackknife: one GP
    per seed on a random ``1 - DROP`` of the rows (no repeated rows: a GP reads a duplicate as a second,
    agreeing measurement), their spread scaled by ``sqrt(kept / dropped)`` (Shao & Wu 1989)."""
    bounds = np.asarray(bounds, dtype=float)
    width = np.where(bounds[:, 1] > bounds[:, 0], bounds[:, 1] - bounds[:, 0], 1.0)
    Z = (X - bounds[:, 0]) / width
    first = seeds[0] if seeds else 0
    full = first_order_shares(_fit(Z, y, first), bounds, discrete, first)
    n = len(y)
    keep = n - max(1, int(round(DROP * n)))
    rows = []
    for s in seeds if keep >= 3 else ():
        pick = np.sort(np.random.default_rng([s, 7]).choice(n, keep, replace=False))
        if np.unique(y[pick]).size >= 2:
            rows.append(first_order_shares(_fit(Z[pick], y[pick], s), bounds, discrete, s))
    per_seed = np.array(rows) if rows else full[None]
    std = np.sqrt(keep / (n - keep) * ((per_seed - per_seed.mean(axis=0)) ** 2).mean(axis=0)) if rows else 0 * full
    return FanovaResult(full, std, per_seed, float(max(0.0, 1.0 - full.sum())))
