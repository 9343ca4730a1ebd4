"""Circular correlation (Jammalamadaka–SenGupta), rotation RMSE (A.3), translation correlation."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.metrics.circular import (
    circular_correlation,
    circular_mean,
    pearson,
    relative_angles,
    rotation_rmse,
    translation_correlation,
    wrap_angle,
)

RNG = np.random.default_rng(0)
A = RNG.uniform(0, 2 * np.pi, 500)


def test_perfect_and_reversed_and_offset_angles():
    assert circular_correlation(A, A) == pytest.approx(1.0)
    assert circular_correlation(A, A + 1.234) == pytest.approx(1.0)  # invariant to a constant offset
    assert circular_correlation(A, wrap_angle(A + 1.234)) == pytest.approx(1.0)  # and to wrapping
    assert circular_correlation(A, -A) == pytest.approx(-1.0)
    assert circular_correlation(A, 2.0 - A) == pytest.approx(-1.0)


def test_independent_angles_have_near_zero_correlation():
    b = RNG.uniform(0, 2 * np.pi, 500)
    assert abs(circular_correlation(A, b)) < 0.12


def test_known_value_against_the_formula():
    a = np.array([0.1, 0.5, 1.0, 2.0, 3.0])
    b = np.array([0.2, 0.4, 1.3, 1.9, 2.5])
    abar = np.arctan2(np.sin(a).sum(), np.cos(a).sum())
    bbar = np.arctan2(np.sin(b).sum(), np.cos(b).sum())
    num = (np.sin(a - abar) * np.sin(b - bbar)).sum()
    den = np.sqrt((np.sin(a - abar) ** 2).sum() * (np.sin(b - bbar) ** 2).sum())
    assert circular_correlation(a, b) == pytest.approx(num / den)


def test_two_fold_symmetric_objects_scored_modulo_pi():
    flips = RNG.integers(0, 2, A.shape) * np.pi  # predictions off by pi for half of the objects
    b = A + flips + RNG.normal(0, 0.05, A.shape)
    assert circular_correlation(A, b, period=np.pi) > 0.99
    assert circular_correlation(A, b) < 0.3


def test_circular_mean_and_wrap():
    # the mean of two angles either side of pi is pi, reported in [-pi, pi) as -pi
    assert circular_mean([np.pi - 0.1, -np.pi + 0.1]) == pytest.approx(-np.pi, abs=1e-9)
    assert circular_mean([np.pi - 0.1, -np.pi + 0.1]) < np.pi
    assert circular_mean([0.1, 0.3]) == pytest.approx(0.2)
    w = wrap_angle(np.array([0.0, np.pi, 3 * np.pi / 2, -3 * np.pi / 2, 7.0]))
    assert np.all((w >= -np.pi) & (w < np.pi))
    np.testing.assert_allclose(np.cos(w), np.cos([0.0, np.pi, 3 * np.pi / 2, -3 * np.pi / 2, 7.0]), atol=1e-12)
    np.testing.assert_allclose(relative_angles([0.5, 3.0], [0.2, -3.0]), [0.3, 6.0 - 2 * np.pi])


def test_rotation_rmse_protocol():
    n, k = 20, 16
    rot = np.linspace(0, 2 * np.pi, k, endpoint=False)
    ref = RNG.uniform(-np.pi, np.pi, n)  # each object's own (arbitrary) zero
    perfect = wrap_angle(ref[:, None] + rot[None, :])
    assert rotation_rmse(perfect, ref, rot) == pytest.approx(0.0, abs=1e-9)
    off = perfect + np.deg2rad(10.0)  # every copy 10 degrees off
    assert rotation_rmse(off, ref, rot) == pytest.approx(10.0)
    flipped = perfect + np.pi
    assert rotation_rmse(flipped, ref, rot) == pytest.approx(180.0)
    assert rotation_rmse(flipped, ref, rot, period=np.pi) == pytest.approx(0.0, abs=1e-6)
    per = rotation_rmse(off, ref, rot, groups=np.repeat([0, 1], n // 2))
    assert per[0] == pytest.approx(10.0) and per["mean"] == pytest.approx(10.0)


def test_translation_correlation_and_pearson():
    t = RNG.normal(size=(300, 2))
    pred = np.stack([2 * t[:, 0] + 1, -t[:, 1]], 1)
    rx, ry = translation_correlation(pred, t)
    assert rx == pytest.approx(1.0) and ry == pytest.approx(-1.0)
    assert pearson([1, 2, 3], [1, 1, 1]) == 0.0
    with pytest.raises(ValueError):
        translation_correlation(pred[:, :1], t)


def test_circular_correlation_interval_exposes_flip_instability():
    from histolatent.metrics.circular import circular_correlation_interval

    rng = np.random.default_rng(0)
    a = rng.uniform(0, 2 * np.pi, 1000)
    exact = a + 0.3 + rng.normal(0, 0.02, a.size)  # offset + small noise: stable near 1
    lo, mid, hi = circular_correlation_interval(a, exact, n_boot=200)
    assert 0.99 < lo <= mid <= hi <= 1.0
    # 9 % of predictions off by pi: the point value is bounded by about 1 - 2 * 0.07 and the
    # bootstrap reaches far below it (the circular means of uniform angles are noise)
    flipped = a + np.pi * (rng.random(a.size) < 0.09) + rng.normal(0, 0.02, a.size)
    lo, mid, hi = circular_correlation_interval(a, flipped, n_boot=300)
    assert hi < 0.9 and lo < 0.5 < hi
    assert circular_correlation_interval(a, flipped, n_boot=50, seed=3) == \
        circular_correlation_interval(a, flipped, n_boot=50, seed=3)
    with pytest.raises(ValueError, match="n_boot"):
        circular_correlation_interval(a, flipped, n_boot=0)
