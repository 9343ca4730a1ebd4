"""Spearman's rho against hand-computed values and scipy.stats.spearmanr (ties included)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from histolatent.metrics.correlation import pearson, spearman


def test_spearman_without_ties_is_the_classic_formula():
    # d = rank differences (-1, 1, -1, 1, 0): rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8, abs=1e-15)


def test_spearman_with_ties_uses_average_ranks_by_hand():
    # ranks of x: 1, 2.5, 2.5, 4; of y: 1, 3, 2, 4 -> rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(np.sqrt(0.9), abs=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_spearman_matches_scipy_on_tied_random_samples(seed):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=200), 1)  # rounding creates ties
    y = np.round(0.5 * x + rng.normal(size=200), 1)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert pearson(x, y) == pytest.approx(pearsonr(x, y).statistic, abs=1e-12)


def test_spearman_is_invariant_to_monotone_maps_and_antisymmetric():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert spearman(np.exp(x), y ** 3) == pytest.approx(spearman(x, y), abs=1e-12)
    assert spearman(-x, y) == pytest.approx(-spearman(x, y), abs=1e-12)


@pytest.mark.parametrize(("x", "y", "match"), [([1, 2], [1, 2, 3], "values"), ([1], [1], "at least 2"),
                                               ([1, 1, 1], [1, 2, 3], "constant"),
                                               ([1, np.nan], [1, 2], "NaN")])
def test_spearman_refuses_what_has_no_correlation(x, y, match):
    with pytest.raises(ValueError, match=match):
        spearman(x, y)
