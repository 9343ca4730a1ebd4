"""Histogram quantiles: the batched torch estimator equals the numpy one, and both track the exact quantile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histolatent.stain.quantile import binned_quantiles_torch, hist_quantile, hist_quantile_torch

QS = [0.01, 0.5, 0.99]


def _rows(seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    x = g.normal(size=(5, 4000)).astype(np.float32)
    x[1] = 2.5  # constant row
    x[2, :3000] = 7.0  # a spike holding most of the mass
    x[3] = g.exponential(size=4000)  # skewed
    return x


def test_torch_rows_equal_the_numpy_estimator():
    x = _rows()
    ref = np.stack([hist_quantile(r, QS) for r in x], axis=1)
    got = hist_quantile_torch(torch.from_numpy(x), None, QS).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-12)


@pytest.mark.parametrize("as_float", [False, True])
def test_masked_rows_equal_the_numpy_estimator_on_the_valid_values(as_float):
    x = _rows(1)
    valid = np.random.default_rng(2).random(x.shape) > 0.4
    valid[4] = False  # a row with no valid value gives 0
    rng = (-6.0, 9.0)
    ref = np.stack([hist_quantile(r[v], QS, value_range=rng) if v.any() else np.zeros(len(QS))
                    for r, v in zip(x, valid, strict=True)], axis=1)
    v = torch.from_numpy(valid)
    got = hist_quantile_torch(torch.from_numpy(x), v.float() if as_float else v, QS, value_range=rng).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert np.all(got[:, 4] == 0.0)


def test_estimate_is_within_a_bin_of_the_exact_quantile():
    x = np.random.default_rng(3).normal(size=(3, 50000)).astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    bins = 4096
    pos = torch.from_numpy((x - lo) * (bins / (hi - lo)))
    got = lo + binned_quantiles_torch(pos, None, QS, bins=bins).numpy() * (hi - lo) / bins
    exact = np.quantile(x.astype(np.float64), QS, axis=1)
    assert np.abs(got - exact).max() <= (hi - lo) / bins
