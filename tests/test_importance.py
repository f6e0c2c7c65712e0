"""Parameter importance: exact fANOVA on hand-built and fitted trees, planted structure, PED-ANOVA."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hpcdlrm.report.fanova import (
    decompose,
    fanova,
    fit_trees,
    forest_pair_share,
    forest_shares,
    main_effect_variances,
    marginal,
    pairwise_variance,
)
from hpcdlrm.report.importance import average_ranks, importance_info
from hpcdlrm.report.pedanova import density, ped_anova
from hpcdlrm.sweep.records import SweepData, SweepInfo, Trial

UNIT2 = np.array([[0.0, 1.0], [0.0, 1.0]])


def hand_tree() -> SimpleNamespace:
    """x0 <= 0.3 -> 1; else x1 <= 0.6 -> 2 else 4 (sklearn's tree_ layout: -1 marks a leaf)."""
    return SimpleNamespace(
        children_left=np.array([1, -1, 3, -1, -1]), children_right=np.array([2, -1, 4, -1, -1]),
        feature=np.array([0, -2, 1, -2, -2]), threshold=np.array([0.3, -2, 0.6, -2, -2]),
        value=np.array([0.0, 1.0, 0.0, 2.0, 4.0]).reshape(-1, 1, 1),
    )


def test_hand_tree_matches_hand_computation() -> None:
    dec = decompose(hand_tree(), UNIT2, [False, False])
    # Leaf masses 0.3, 0.7*0.6, 0.7*0.4 -> mean 2.26; marginals worked out on paper.
    assert dec.mean == pytest.approx(2.26)
    assert dec.variance == pytest.approx(0.3 * 1.26**2 + 0.42 * 0.26**2 + 0.28 * 1.74**2)
    np.testing.assert_allclose(marginal(dec, 0), [1.0, 2.8])
    np.testing.assert_allclose(marginal(dec, 1), [1.7, 3.1])
    np.testing.assert_allclose(main_effect_variances(dec), [0.6804, 0.4704])
    # Two dimensions: the total splits exactly into the two main effects and their interaction.
    assert pairwise_variance(dec, 0, 1) == pytest.approx(dec.variance - 0.6804 - 0.4704)


def test_hand_tree_domain_clips_the_boxes() -> None:
    # On x0 in [0.2, 0.5] the left leaf covers a third of the range, not 30 %.
    dec = decompose(hand_tree(), np.array([[0.2, 0.5], [0.0, 1.0]]), [False, False])
    assert dec.mean == pytest.approx(1 / 3 * 1 + 2 / 3 * 2.8)


def brute_force(predict, bounds: np.ndarray, discrete: list[bool], n: int = 400) -> tuple[float, np.ndarray]:
    """Total variance and main-effect variances from a dense grid (cell midpoints or every category)."""
    axes = [np.arange(lo, hi + 1) if disc else lo + (np.arange(n) + 0.5) * (hi - lo) / n
            for (lo, hi), disc in zip(bounds, discrete)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    f = predict(grid.reshape(-1, len(axes))).reshape(grid.shape[:-1])
    v_main = [f.mean(axis=tuple(k for k in range(f.ndim) if k != i)).var() for i in range(f.ndim)]
    return float(f.var()), np.array(v_main)


def test_fitted_trees_match_a_brute_force_grid() -> None:
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(3)
    X = np.column_stack([rng.uniform(-3, 0, 200), rng.uniform(0, 10, 200), rng.integers(0, 3, 200)])
    y = np.sin(2 * X[:, 0]) + 0.3 * X[:, 1] * (X[:, 2] == 1) + rng.normal(0, 0.1, 200)
    bounds, discrete = np.array([[-3.0, 0.0], [0.0, 10.0], [0.0, 2.0]]), [False, False, True]
    model = DecisionTreeRegressor(max_depth=6, random_state=0).fit(X, y)
    dec = decompose(model.tree_, bounds, discrete)
    v_total, v_main = brute_force(model.predict, bounds, discrete)
    # The grid only approximates the continuous cells; at 400 points per axis it agrees to ~0.1 %.
    assert dec.variance == pytest.approx(v_total, rel=3e-3)
    np.testing.assert_allclose(main_effect_variances(dec), v_main, rtol=5e-3)


def planted(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """log10(lr) drives y strongly, warm-up weakly (a ninth of lr's variance), a dummy not at all."""
    X = np.column_stack([rng.uniform(-4, -1, n), rng.uniform(0, 1, n), rng.uniform(0, 1, n)])
    return X, 1.0 * X[:, 0] + 1.0 * X[:, 1]


def test_planted_structure_ranks_lr_then_warmup_then_dummy() -> None:
    X, y = planted(150, np.random.default_rng(0))
    res = fanova(X, y, np.array([[-4.0, -1.0], [0.0, 1.0], [0.0, 1.0]]), [False] * 3, n_trees=24, seeds=(0, 1, 2))
    lr, warm, dummy = res.mean
    # Additive truth: shares 0.9 and 0.1, dummy 0.
    assert lr > warm > dummy
    assert lr == pytest.approx(0.9, abs=0.05)
    assert warm == pytest.approx(0.1, abs=0.05)
    assert dummy < 0.01
    assert res.interaction < 0.05
    assert res.std.shape == (3,) and np.all(res.std < 0.05)


def test_interaction_only_has_small_main_effects_and_a_large_pair_share() -> None:
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, (300, 3))
    y = np.sign(X[:, 0] - 0.5) * np.sign(X[:, 1] - 0.5)
    bounds = np.array([[0.0, 1.0]] * 3)
    res = fanova(X, y, bounds, [False] * 3, n_trees=16, seeds=(0, 1))
    additive = fanova(X, np.sign(X[:, 0] - 0.5) + np.sign(X[:, 1] - 0.5), bounds, [False] * 3, n_trees=16, seeds=(0,))
    assert np.all(res.mean < 0.1)  # no first-order effect exists ...
    assert additive.mean[:2].min() > 0.4  # ... unlike the additive twin, where each carries half
    assert res.interaction > 0.8
    pair = forest_pair_share(fit_trees(X, y, 16, 0), bounds, [False] * 3, 0, 1)
    assert pair > 0.8


def test_constant_objective_gives_zero_shares() -> None:
    X = np.random.default_rng(0).uniform(0, 1, (20, 2))
    assert np.all(forest_shares(fit_trees(X, np.ones(20), 4, 0), UNIT2, [False, False]) == 0)


def test_average_ranks_share_ties_and_put_inf_last() -> None:
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, np.inf, 1.0, np.inf])), [3, 1.5, 4.5, 1.5, 4.5])


def test_density_is_normalised_and_pearson_zero_when_sets_match() -> None:
    grid = np.linspace(0, 1, 128)
    x = np.random.default_rng(0).uniform(0, 1, 40)
    assert density(x, grid, 0.0, 1.0, False).sum() == pytest.approx(1.0)
    assert density(np.array([0.0, 2.0]), np.arange(3.0), 0.0, 2.0, True).sum() == pytest.approx(1.0)
    res = ped_anova(x[:, None], np.ones(40, dtype=bool), np.array([[0.0, 1.0]]), [False])
    assert res.divergence[0] == pytest.approx(0.0, abs=1e-12)


def test_ped_anova_finds_the_window_that_makes_the_target() -> None:
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.uniform(-4, -1, 80), rng.uniform(0, 1, 80), rng.integers(0, 2, 80)])
    top = np.abs(X[:, 0] + 2.5) < 0.3  # only a narrow band of log10(lr) reaches the target
    res = ped_anova(X, top, np.array([[-4.0, -1.0], [0.0, 1.0], [0.0, 1.0]]), [False, False, True])
    assert res.share[0] > 0.8
    assert res.share.sum() == pytest.approx(1.0)


def sweep_from_table(X: np.ndarray, loss: np.ndarray, reached: np.ndarray) -> SweepData:
    space = {"lr": {"kind": "log", "low": 1e-4, "high": 1e-1}, "warmup": {"kind": "float", "low": 0, "high": 1},
             "dummy": {"kind": "float", "low": 0, "high": 1}}
    rows = enumerate(zip(X, loss, reached))
    trials = [Trial(id=i, status="reached_target" if r else "capped", objective=float(v), ended_at=float(i),
                    params={"lr": 10 ** x[0], "warmup": x[1], "dummy": x[2]}) for i, (x, v, r) in rows]
    info = SweepInfo("planted", [], space, "RandomSearch", "time_to_target", 0.8, 0.0)
    return SweepData(info, trials, [])


def test_importance_info_on_a_planted_sweep() -> None:
    X, y = planted(120, np.random.default_rng(4))
    data = sweep_from_table(X, -y, y > np.quantile(y, 0.8))
    info = importance_info(data, n_trees=16, seeds=(0, 1))
    assert info.names == ("lr", "warmup", "dummy")
    lr, warm, dummy = info.fanova_mean
    assert lr > warm > dummy and dummy < 0.02
    assert info.n_trials == 120 and info.n_top == 24 and info.n_region == 120
    assert info.ped_share is not None and info.ped_share[0] == max(info.ped_share)
    assert info.warnings == ()


def test_importance_info_says_plainly_when_there_are_too_few_trials() -> None:
    X, y = planted(8, np.random.default_rng(5))
    info = importance_info(sweep_from_table(X, -y, np.zeros(8, dtype=bool)), n_trees=8, seeds=(0,))
    assert info.fanova_mean is not None  # still shown ...
    assert any("Only 8 finished trials for 3 parameters" in w for w in info.warnings)  # ... with the caveat
    assert info.ped_share is None and any("0 trial(s) reached AUC" in w for w in info.warnings)
    two = importance_info(sweep_from_table(X[:2], -y[:2], np.ones(2, dtype=bool)), n_trees=8, seeds=(0,))
    assert two.fanova_mean is None and any("need at least 3" in w for w in two.warnings)
