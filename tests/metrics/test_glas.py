"""GLaS object-level metrics against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from histolatent.metrics.glas import glas_scores, object_dice, object_f1, object_hausdorff


def _two_glands():
    """G1: rows 0-1, cols 0-3 (8 px); G2: rows 4-5, cols 0-1 (4 px), on 6 x 6."""
    true = np.zeros((6, 6), np.int32)
    true[:2, :4] = 7
    true[4:, :2] = 3
    return true


def test_f1_needs_more_than_half_of_the_true_gland():
    true = _two_glands()
    halves = np.zeros_like(true)
    halves[:2, :2] = 1   # exactly 4 of G1's 8 px: not a match
    halves[:2, 2:4] = 2  # the other half: not a match either
    halves[4:, :3] = 4   # covers G2 (and one px of background): a match
    # TP 1, FP 2, FN 1 -> 2 / (2 + 2 + 1)
    assert object_f1(halves, true) == pytest.approx(0.4)
    most = np.zeros_like(true)
    most[:2, :3] = 1     # 6 of 8 px of G1
    most[4:, :3] = 2
    assert object_f1(most, true) == 1.0
    assert object_f1(true, true) == 1.0


def test_object_dice_weights_by_area_on_both_sides():
    true = _two_glands()
    pred = np.zeros_like(true)
    pred[:2, :3] = 1     # S1: 6 px inside G1
    pred[4:, :3] = 2     # S2: 6 px, G2's 4 px + 2
    g_side = (8 * (2 * 6 / 14) + 4 * (2 * 4 / 10)) / 12
    s_side = (6 * (2 * 6 / 14) + 6 * (2 * 4 / 10)) / 12
    assert object_dice(pred, true) == pytest.approx((g_side + s_side) / 2)
    # a missed gland counts 0 with its area's weight; the prediction side stays 1
    only_g1 = np.where(true == 7, 1, 0)
    assert object_dice(only_g1, true) == pytest.approx((8 / 12 * 1.0 + 1.0) / 2)
    assert object_dice(true, true) == 1.0


def test_object_hausdorff_hand_computed():
    true = _two_glands()
    pred = np.zeros_like(true)
    pred[:2, :3] = 1     # G1's column 3 is 1 px away
    pred[4:, :3] = 2     # one extra column beside G2: 1 px
    assert object_hausdorff(pred, true) == pytest.approx(1.0)
    # no overlap: each object pairs with the nearest object of the other map
    a = np.zeros((6, 6), np.int32)
    a[0, 0] = 1
    b = np.zeros((6, 6), np.int32)
    b[0, 3] = 1
    assert object_hausdorff(a, b) == pytest.approx(3.0)
    # a missed gland far away: true side (0 + sqrt(50)) / 2, prediction side 0
    t2 = a.copy()
    t2[5, 5] = 2
    assert object_hausdorff(a, t2) == pytest.approx(math.sqrt(50) / 4)


def test_empty_maps_and_bad_input():
    empty = np.zeros((4, 4), np.int32)
    one = empty.copy()
    one[1:3, 1:3] = 1
    assert glas_scores(empty, empty) == {"f1": 1.0, "object_dice": 1.0, "object_hausdorff": 0.0}
    s = glas_scores(empty, one)
    assert s["f1"] == 0.0 and s["object_dice"] == 0.0 and s["object_hausdorff"] == math.inf
    with pytest.raises(ValueError, match="same shape"):
        object_f1(empty, np.zeros((4, 5), np.int32))
    with pytest.raises(ValueError, match="pred"):
        object_dice(empty.astype(float), one)
