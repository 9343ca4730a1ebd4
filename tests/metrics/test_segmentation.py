"""Segmentation and detection metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.metrics.detection import detection_scores, match_points
from histolatent.metrics.segmentation import (
    aggregated_jaccard_index,
    dice,
    jaccard,
    pixel_confusion,
    pixel_scores,
    sensitivity,
    specificity,
)


def test_pixel_metrics_hand_computed():
    true = np.zeros((4, 5), bool)
    true[:2, :] = True  # 10 px
    pred = np.zeros((4, 5), bool)
    pred[1:3, :] = True  # 10 px, overlap 5
    assert pixel_confusion(pred, true) == {"tp": 5, "fp": 5, "fn": 5, "tn": 5}
    assert sensitivity(pred, true) == 0.5
    assert specificity(pred, true) == 0.5
    assert dice(pred, true) == pytest.approx(10 / 20)
    assert jaccard(pred, true) == pytest.approx(5 / 15)
    s = pixel_scores(pred, true)
    assert s == {"sensitivity": 0.5, "specificity": 0.5, "dice": 0.5, "jaccard": pytest.approx(1 / 3)}


def test_pixel_metrics_edge_cases_and_labels():
    empty = np.zeros((3, 3), int)
    assert dice(empty, empty) == 1.0 and jaccard(empty, empty) == 1.0
    lab = np.array([[0, 1, 1], [0, 2, 2], [0, 0, 3]])  # label maps count as foreground
    assert dice(lab, lab > 0) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))


def test_aji_hand_computed():
    true = np.zeros((4, 8), int)
    true[:, :4] = 1  # 16 px
    true[:, 4:] = 2  # 16 px
    pred = np.zeros((4, 8), int)
    pred[:, :6] = 7  # covers all of 1 and half of 2
    pred[0, 7] = 9  # a stray pixel inside 2
    # G1: best S=7, I=16, U=24.  G2: IoU(7)=8/32, IoU(9)=1/16 -> S=7 again, I=8, U=32.
    # S=9 never chosen: U += 1.  AJI = 24 / 57
    assert aggregated_jaccard_index(pred, true) == pytest.approx(24 / 57)
    assert aggregated_jaccard_index(true, true) == 1.0
    assert aggregated_jaccard_index(np.zeros_like(true), true) == 0.0
    # ids need not be consecutive, and relabelling does not matter
    assert aggregated_jaccard_index(pred * 3, true + (true > 0) * 10) == pytest.approx(24 / 57)


def test_match_points_is_one_to_one_and_optimal():
    true = np.array([[0.0, 0.0], [2.0, 0.0]])
    pred = np.array([[1.1, 0.0], [3.0, 0.0]])
    # greedy nearest-first would pair pred 0 with true 1 (0.9) and leave pred 1 unmatched
    pairs = match_points(pred, true, 1.5)
    assert pairs.tolist() == [[0, 0], [1, 1]]
    s = detection_scores(pred, true, 1.5)
    assert (s["tp"], s["fp"], s["fn"], s["f1"]) == (2, 0, 0, 1.0)


def test_detection_scores_counts_and_coincident_points():
    true = np.array([[5.0, 5.0], [20.0, 20.0], [40.0, 40.0]])
    pred = np.array([[5.0, 5.0], [21.0, 20.0], [80.0, 80.0], [5.5, 5.0]])  # exact hit, near hit, FP, duplicate
    s = detection_scores(pred, true, 2.0)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 2, 1)
    assert s["precision"] == 0.5 and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(4 / 7)
    assert detection_scores(np.zeros((0, 2)), np.zeros((0, 2)), 1.0)["f1"] == 1.0
    assert detection_scores(np.zeros((0, 2)), true, 1.0)["recall"] == 0.0
    with pytest.raises(ValueError, match="max_distance"):
        match_points(pred, true, 0.0)
