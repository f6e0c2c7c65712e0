"""PED-ANOVA: which parameters distinguish a top set of trials from all of them.

Watanabe, Bansal & Hutter (IJCAI 2023) show that the local importance of parameter ``d`` for landing in
the top set, inside a region, is (up to a factor shared by all parameters) the Pearson divergence
``sum_x p_region(x) * (p_top(x) / p_region(x) - 1)^2`` between the two 1-D parameter densities. Here the top
set is the trials that reached the target and the region is every finished trial: "what distinguishes the
runs that made it". No surrogate model, so it is cheap and works from a handful of trials.

Densities are Parzen estimates on a grid (Gaussian kernels, Scott's bandwidth with a floor) for
continuous parameters and smoothed frequencies for categorical ones, both mixed with a uniform prior worth
one trial so that a top set of two or three trials does not become a spike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_GRID = 128
MIN_BANDWIDTH = 0.03  # in units of the domain width: coarser than this a handful of trials cannot resolve
PRIOR_WEIGHT = 1.0


@dataclass(frozen=True)
class PedAnovaResult:
    """``divergence[i]`` is the Pearson divergence of parameter ``i``; ``share`` normalises it to sum 1."""

    divergence: np.ndarray
    share: np.ndarray


def _grid(low: float, high: float, discrete: bool) -> np.ndarray:
    if high <= low:
        return np.array([low])
    if discrete:
        return np.arange(np.ceil(low), np.floor(high) + 1)
    return np.linspace(low, high, N_GRID)


def density(x: np.ndarray, grid: np.ndarray, low: float, high: float, discrete: bool) -> np.ndarray:
    """Probability of each grid point under a smoothed estimate from samples ``x`` (sums to 1)."""
    uniform = np.full(grid.size, 1.0 / grid.size)
    if x.size == 0 or grid.size == 1:
        return uniform
    if discrete:
        counts = (x[:, None] == grid[None, :]).sum(axis=0).astype(float)
        p = counts / x.size
    else:
        width = high - low
        scott = 1.059 * x.std() * x.size ** -0.2
        h = max(scott, MIN_BANDWIDTH * width)
        k = np.exp(-0.5 * ((grid[None, :] - x[:, None]) / h) ** 2)
        k /= k.sum(axis=1, keepdims=True)  # each kernel truncated to the domain carries one trial's mass
        p = k.mean(axis=0)
    n = x.size
    return (n * p + PRIOR_WEIGHT * uniform) / (n + PRIOR_WEIGHT)


def pearson_divergence(p_top: np.ndarray, p_all: np.ndarray) -> float:
    return float(np.sum(p_all * (p_top / p_all - 1.0) ** 2))


def ped_anova(X: np.ndarray, top: np.ndarray, bounds: np.ndarray, discrete: Sequence[bool]) -> PedAnovaResult:
    """``X`` holds every trial of the region (encoded parameters), ``top`` is a boolean mask of the top set."""
    top = np.asarray(top, dtype=bool)
    div = np.zeros(X.shape[1])
    for i in range(X.shape[1]):
        low, high = bounds[i]
        grid = _grid(low, high, discrete[i])
        col = X[:, i]
        ok = np.isfinite(col)
        p_all = density(col[ok], grid, low, high, discrete[i])
        p_top = density(col[ok & top], grid, low, high, discrete[i])
        div[i] = pearson_divergence(p_top, p_all)
    total = div.sum()
    return PedAnovaResult(div, div / total if total > 0 else np.zeros_like(div))
