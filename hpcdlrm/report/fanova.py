"""Functional ANOVA on a random forest, computed exactly from the trees' leaf boxes.

Hutter, Hoos & Leyton-Brown (ICML 2014): a regression tree is piecewise constant on axis-aligned boxes, so
the marginal of parameter ``i`` (the forest's prediction averaged over every other parameter, uniformly
over the search space) is constant between consecutive split thresholds on ``i``. Its variance ``V_i``
divided by the tree's total variance ``V`` is parameter ``i``'s first-order importance. Everything here
is exact: no sampling, no grid.

A dimension is either continuous (uniform on ``[low, high]``) or discrete (uniform on the integers
``low..high``, used for category indices).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Cells:
    """A dimension cut at every split threshold: cell representative points and their probability mass."""

    points: np.ndarray
    mass: np.ndarray


@dataclass(frozen=True)
class TreeDecomposition:
    """One tree over the domain: ``cover[i][l, c]`` says leaf ``l`` spans cell ``c`` of dimension ``i``."""

    value: np.ndarray  # [L] leaf predictions
    weight: np.ndarray  # [L, d] probability mass of each leaf's side in each dimension
    cover: list[np.ndarray]
    cells: list[Cells]

    @cached_property
    def prob(self) -> np.ndarray:
        return self.weight.prod(axis=1)

    @cached_property
    def mean(self) -> float:
        return float(self.prob @ self.value)

    @cached_property
    def variance(self) -> float:
        return float(self.prob @ (self.value - self.mean) ** 2)


@dataclass(frozen=True)
class FanovaResult:
    """First-order importance shares ``V_i / V``: mean and std over forest seeds (``per_seed[s, i]``)."""

    mean: np.ndarray
    std: np.ndarray
    per_seed: np.ndarray
    interaction: float  # 1 - sum of first-order shares: variance only explained by interactions


def leaf_boxes(tree: Any, n_dims: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lo, hi, value)`` of each leaf of an sklearn-style ``tree_``; a sample is in the leaf iff
    ``lo < x <= hi`` in every dimension (sklearn sends ``x <= threshold`` left)."""
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    feature, threshold = np.asarray(tree.feature), np.asarray(tree.threshold, dtype=float)
    n = left.size
    lo, hi = np.full((n, n_dims), -np.inf), np.full((n, n_dims), np.inf)
    frontier = np.array([0])
    while frontier.size:  # one vectorised step per tree level
        inner = frontier[left[frontier] >= 0]
        f, t, a, b = feature[inner], threshold[inner], left[inner], right[inner]
        lo[a], hi[a], lo[b], hi[b] = lo[inner], hi[inner], lo[inner], hi[inner]
        hi[a, f] = np.minimum(hi[inner, f], t)
        lo[b, f] = np.maximum(lo[inner, f], t)
        frontier = np.concatenate([a, b])
    leaves = left < 0
    value = np.asarray(tree.value, dtype=float).reshape(n, -1)[:, 0]
    return lo[leaves], hi[leaves], value[leaves]


def dimension_cells(thresholds: np.ndarray, low: float, high: float, discrete: bool) -> Cells:
    """Cut ``[low, high]`` at the thresholds that fall inside it."""
    if discrete or high <= low:
        points = np.arange(np.ceil(low), np.floor(high) + 1) if high > low else np.array([low])
        return Cells(points, np.full(points.size, 1.0 / points.size))
    inside = thresholds[(thresholds > low) & (thresholds < high)]
    edges = np.unique(np.concatenate([[low, high], inside]))
    return Cells((edges[:-1] + edges[1:]) / 2, np.diff(edges) / (high - low))


def decompose(tree: Any, bounds: np.ndarray, discrete: Sequence[bool]) -> TreeDecomposition:
    """Leaf boxes of ``tree`` intersected with the domain ``bounds[i] = (low, high)``."""
    d = len(bounds)
    lo, hi, value = leaf_boxes(tree, d)
    feature, threshold = np.asarray(tree.feature), np.asarray(tree.threshold, dtype=float)
    cells, cover = [], []
    for i in range(d):
        c = dimension_cells(threshold[feature == i], bounds[i][0], bounds[i][1], discrete[i])
        cells.append(c)
        cover.append((lo[:, i, None] < c.points) & (c.points <= hi[:, i, None]))
    weight = np.column_stack([cv @ c.mass for cv, c in zip(cover, cells)]) if d else np.ones((value.size, 0))
    return TreeDecomposition(value, weight, cover, cells)


def _others(dec: TreeDecomposition, skip: Sequence[int]) -> np.ndarray:
    keep = [j for j in range(dec.weight.shape[1]) if j not in skip]
    return dec.weight[:, keep].prod(axis=1)


def marginal(dec: TreeDecomposition, i: int) -> np.ndarray:
    """Exact marginal prediction of dimension ``i`` on each of its cells."""
    return (dec.value * _others(dec, [i])) @ dec.cover[i]


def main_effect_variances(dec: TreeDecomposition) -> np.ndarray:
    """``V_i`` for every dimension."""
    mean = dec.mean
    return np.array([dec.cells[i].mass @ (marginal(dec, i) - mean) ** 2 for i in range(len(dec.cells))])


def pairwise_variance(dec: TreeDecomposition, i: int, j: int) -> float:
    """``V_ij``: the variance of the (i, j) interaction component alone (main effects removed)."""
    coef = dec.value * _others(dec, [i, j])
    joint = (dec.cover[i] * coef[:, None]).T @ dec.cover[j]
    mass = np.outer(dec.cells[i].mass, dec.cells[j].mass)
    v_i, v_j = (dec.cells[k].mass @ (marginal(dec, k) - dec.mean) ** 2 for k in (i, j))
    return float((mass * (joint - dec.mean) ** 2).sum() - v_i - v_j)


def _varies(dec: TreeDecomposition) -> bool:
    """Trees that predict a constant over the domain carry no information and are skipped (as in the paper)."""
    return dec.variance > 1e-12 * max(1.0, float(np.abs(dec.value).max(initial=0.0))) ** 2


def forest_shares(trees: Sequence[Any], bounds: np.ndarray, discrete: Sequence[bool]) -> np.ndarray:
    """Mean over trees of ``V_i / V``."""
    decs = [dec for dec in (decompose(t, bounds, discrete) for t in trees) if _varies(dec)]
    shares = [main_effect_variances(dec) / dec.variance for dec in decs]
    return np.mean(shares, axis=0) if shares else np.zeros(len(bounds))


def forest_pair_share(trees: Sequence[Any], bounds: np.ndarray, discrete: Sequence[bool], i: int, j: int) -> float:
    """Mean over trees of ``V_ij / V``: the share of variance due to the (i, j) interaction alone."""
    decs = [dec for dec in (decompose(t, bounds, discrete) for t in trees) if _varies(dec)]
    return float(np.mean([pairwise_variance(dec, i, j) / dec.variance for dec in decs])) if decs else 0.0


def fit_trees(X: np.ndarray, y: np.ndarray, n_trees: int, seed: int) -> list[Any]:
    """The fitted ``tree_`` objects of one random forest on ``X -> y``."""
    from sklearn.ensemble import RandomForestRegressor  # heavy import, only when importance is wanted

    forest = RandomForestRegressor(n_estimators=n_trees, random_state=seed, n_jobs=1).fit(X, y)
    return [e.tree_ for e in forest.estimators_]


def fanova(
    X: np.ndarray,
    y: np.ndarray,
    bounds: np.ndarray,
    discrete: Sequence[bool],
    n_trees: int = 16,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
) -> FanovaResult:
    """Fit one random forest per seed on ``X -> y`` and decompose each exactly."""
    ps = np.array([forest_shares(fit_trees(X, y, n_trees, seed), bounds, discrete) for seed in seeds])
    mean = ps.mean(axis=0)
    return FanovaResult(mean, ps.std(axis=0), ps, float(max(0.0, 1.0 - mean.sum())))
