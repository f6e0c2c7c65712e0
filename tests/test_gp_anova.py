"""fANOVA on a Gaussian process: exact shares of a known function, planted structure from few trials."""

from __future__ import annotations

import numpy as np
import pytest

from hpcdlrm.report.fanova import fanova
from hpcdlrm.report.gp_anova import _fit, _spread_var, first_order_shares, gp_anova
from hpcdlrm.report.importance import GP_MAX_TRIALS, Model, model_for

BOUNDS = np.array([[-4.0, -1.0], [0.0, 1.0], [0.0, 2.0]])


class Known:
    """Stands in for a fitted GP: an additive function on the unit cube (x2 a choice of 3 levels)."""

    def predict(self, z: np.ndarray) -> np.ndarray:
        return 3.0 * z[:, 0] + np.where(z[:, 2] == 0.5, 1.0, 0.0)


def test_shares_of_a_known_function_are_its_sobol_indices() -> None:
    # 3*u, u ~ U(0,1): variance 0.75; an indicator of one of 3 levels: 2/9; nothing else, no interaction.
    shares = first_order_shares(Known(), BOUNDS, [False, False, True])
    total = 0.75 + 2 / 9
    np.testing.assert_allclose(shares, [0.75 / total, 0.0, (2 / 9) / total], atol=0.01)


def test_planted_structure_from_24_trials_closer_than_a_forest() -> None:
    # y = -(log10 lr + 2.5)^2 + 0.3 * warm-up: Var 0.45 and 0.0075, so shares 0.984, 0.016 and 0 (a dummy choice)
    truth = np.array([0.45, 0.0075, 0.0]) / 0.4575
    err_gp = err_forest = 0.0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        X = np.column_stack([rng.uniform(-4, -1, 24), rng.uniform(0, 1, 24), rng.integers(0, 3, 24)])
        y = -((X[:, 0] + 2.5) ** 2) + 0.3 * X[:, 1] + rng.normal(0, 0.02, 24)
        res = gp_anova(X, y, BOUNDS, [False, False, True], seeds=(0, 1))
        assert res.std.shape == (3,) and np.all(res.std >= 0) and res.per_seed.shape == (2, 3)
        np.testing.assert_allclose(res.mean, truth, atol=0.03)
        assert res.interaction == pytest.approx(1 - res.mean.sum())
        err_gp += np.abs(res.mean - truth).sum()
        err_forest += np.abs(fanova(X, y, BOUNDS, [False, False, True], n_trees=16, seeds=(0, 1)).mean - truth).sum()
    assert err_gp < 0.5 * err_forest


def test_the_forest_takes_over_for_large_sweeps() -> None:
    assert model_for(24) is Model.GP and model_for(GP_MAX_TRIALS + 1) is Model.FOREST


def test_a_constant_objective_explains_nothing() -> None:
    X = np.random.default_rng(0).uniform(0, 1, (12, 3))
    res = gp_anova(X, np.r_[np.ones(11), 2.0], np.array([[0.0, 1.0]] * 3), [False] * 3, seeds=(0,))
    assert res.mean.sum() <= 1.0 + 1e-9
    assert gp_anova(X[:5], np.ones(5), np.array([[0.0, 1.0]] * 3), [False] * 3, seeds=(0,)).mean == pytest.approx(0)


def test_uncertainty_term_is_the_expected_spread_of_group_means() -> None:
    # every point of a group shares its group's value: the spread of N(0, C) group means, in expectation
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    c = a @ a.T
    cov = np.kron(c, np.ones((5, 5)))  # 4 groups x 5 points
    draws = rng.multivariate_normal(np.zeros(4), c, size=200_000)
    assert _spread_var(cov, 4) == pytest.approx(draws.var(axis=1).mean(), rel=0.02)
    assert _spread_var(np.kron(np.ones((4, 4)), np.ones((5, 5))), 4) == pytest.approx(0.0, abs=1e-12)  # a shift


def test_an_unexplored_range_is_uncertain_not_flat() -> None:
    # The best x0 moves with a binary choice c (as lr's optimum moves with the dense optimizer). Trials
    # only at x0 < 0.4, where c = 0 always wins: the posterior mean alone reverts to the average beyond the
    # trials and credits c; over the whole space x0 matters most (c's main effect is ~0 by symmetry).
    bounds, discrete = np.array([[0.0, 1.0]] * 3), [False, False, True]
    for seed in range(3):
        rng = np.random.default_rng(seed)
        X = np.column_stack([rng.uniform(0, 0.4, 24), rng.uniform(0, 1, 24), rng.integers(0, 2, 24)])
        y = -np.exp(-(((X[:, 0] - 0.2 - 0.5 * X[:, 2]) / 0.12) ** 2)) + 0.05 * X[:, 1] + rng.normal(0, 0.02, 24)
        gp = _fit(X, y, 0)
        mean_only = first_order_shares(gp, bounds, discrete, posterior=False)
        shares = first_order_shares(gp, bounds, discrete)
        assert shares[0] > mean_only[0] and shares[0] > shares[2] and shares[0] > shares[1]
