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


def _brute_mean(a, period):
    """Mean direction modulo ``period`` by the resultant vector of ``exp(2 pi i a / period)``."""
    z = np.exp(2j * np.pi * np.asarray(a) / period).sum()
    m = np.angle(z) * period / (2 * np.pi)
    return (m + period / 2) % period - period / 2


@pytest.mark.parametrize("period", [2 * np.pi, np.pi, 2 * np.pi / 3, 90.0])
def test_circular_mean_and_wrap_for_any_period(period):
    rng = np.random.default_rng(7)
    a = rng.normal(0.3 * period, 0.08 * period, 40) + period * rng.integers(-2, 3, 40)  # whole periods apart
    assert circular_mean(a, period) == pytest.approx(_brute_mean(a, period), abs=1e-9)
    assert circular_mean(a, period) == pytest.approx(0.3 * period, abs=0.05 * period)
    w = wrap_angle(a, period)
    assert np.all((w >= -period / 2) & (w < period / 2))
    np.testing.assert_allclose(np.exp(2j * np.pi * w / period), np.exp(2j * np.pi * a / period), atol=1e-9)
    rel = relative_angles(a, np.zeros_like(a) + 0.1 * period, period=period)
    np.testing.assert_allclose(rel, wrap_angle(a - 0.1 * period, period))
    assert np.all((rel >= -period / 2) & (rel < period / 2))


def test_angle_inputs_are_checked_by_name():
    with pytest.raises(ValueError, match="pred_reference: angles must be finite"):
        relative_angles([0.1, 0.2], [0.0, np.nan])
    with pytest.raises(ValueError, match="pred: angles must be finite"):
        relative_angles([np.inf, 0.2], [0.0, 0.0])
    with pytest.raises(ValueError, match="period must be > 0"):
        circular_mean([0.1], period=0.0)
    # 2-D input is taken as a flat set of angles
    assert circular_mean(np.array([[0.1, 0.3], [0.2, 0.2]])) == pytest.approx(0.2)
    with pytest.raises(ValueError, match=">= 2 angles"):
        circular_correlation([0.1], [0.2])


def test_pearson_matches_numpy_on_partial_correlation():
    rng = np.random.default_rng(3)
    a = rng.normal(5.0, 2.0, 200)
    b = 0.6 * a + rng.normal(-3.0, 3.0, 200)  # non-zero means, unequal spreads, r well inside (0, 1)
    r = np.corrcoef(a, b)[0, 1]
    assert 0.2 < r < 0.8
    assert pearson(a, b) == pytest.approx(r, abs=1e-12)
    assert pearson(a.reshape(20, 10), b.reshape(20, 10)) == pytest.approx(r, abs=1e-12)  # flattened
    assert pearson([1.0, 2.0], [3.0, 7.0]) == pytest.approx(1.0)  # two points are enough
    assert pearson([4.0, 4.0, 4.0], [1.0, 2.0, 3.0]) == 0.0
    for a_bad, b_bad in (([1.0], [2.0]), ([1.0, 2.0, 3.0], [1.0, 2.0])):
        with pytest.raises(ValueError, match="paired samples"):
            pearson(a_bad, b_bad)


def test_translation_correlation_is_per_axis_and_never_swaps_them():
    rng = np.random.default_rng(4)
    t = rng.normal(size=(400, 2)) * [1.0, 3.0]
    pred = np.stack([t[:, 0] + rng.normal(0, 0.5, 400), t[:, 1] + rng.normal(0, 6.0, 400)], 1)
    rx, ry = translation_correlation(pred, t)
    assert rx == pytest.approx(np.corrcoef(pred[:, 0], t[:, 0])[0, 1])
    assert ry == pytest.approx(np.corrcoef(pred[:, 1], t[:, 1])[0, 1])
    assert rx > 0.8 and 0.2 < ry < 0.6  # the two axes differ, so a swap shows
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        translation_correlation(pred, t[:, ::-1][:, :1])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        translation_correlation(pred[:10], t)


def test_rotation_rmse_units_groups_and_shapes():
    rng = np.random.default_rng(5)
    n, k = 12, 8
    rot = np.linspace(0, 2 * np.pi, k, endpoint=False)
    ref = rng.uniform(-np.pi, np.pi, n)
    errors = np.where(np.arange(n) < n // 2, 10.0, 20.0)  # group 0 off by 10 degrees, group 1 by 20
    pred = ref[:, None] + rot[None, :] + np.deg2rad(errors)[:, None]
    groups = (np.arange(n) >= n // 2).astype(int)
    per = rotation_rmse(pred, ref, rot, groups=groups)
    assert per[0] == pytest.approx(10.0) and per[1] == pytest.approx(20.0) and per["mean"] == pytest.approx(15.0)
    overall = rotation_rmse(pred, ref, rot)
    assert overall == pytest.approx(np.sqrt((10.0 ** 2 + 20.0 ** 2) / 2))
    assert rotation_rmse(pred, ref, rot, degrees=False) == pytest.approx(np.deg2rad(overall))
    full = np.broadcast_to(rot, (n, k))  # (N, K) true rotations give the same as (K,)
    assert rotation_rmse(pred, ref, full) == pytest.approx(overall)
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        rotation_rmse(pred[0], ref, rot)
    with pytest.raises(ValueError, match="pred_reference has 11 objects"):
        rotation_rmse(pred, ref[:-1], rot)
