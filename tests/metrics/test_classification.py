"""Clusters matched to classes (Hungarian), confusion matrix, per-class precision/sensitivity/F1."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.metrics.classification import (
    classification_report,
    confusion_matrix,
    match_clusters,
    per_class_scores,
)


def test_permuted_cluster_ids_score_perfectly_with_a_diagonal_confusion_matrix():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    perm = np.array([2, 0, 3, 1])  # class j -> cluster perm[j]
    r = classification_report(y, perm[y])
    assert r["accuracy"] == 1.0
    np.testing.assert_array_equal(r["mapping"][perm], np.arange(4))  # cluster perm[j] -> class j
    np.testing.assert_array_equal(r["confusion"], np.diag(np.bincount(y, minlength=4)))
    np.testing.assert_array_equal(r["predicted"], y)
    for key in ("precision", "sensitivity", "f1"):
        np.testing.assert_array_equal(r[key], np.ones(4))


def test_hand_computed_confusion_and_per_class_scores():
    # true classes 0,0,0,0,1,1,1,2,2 ; clusters named so that Hungarian maps 5->0, 7->1, 9->2
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    k = np.array([5, 5, 5, 7, 7, 7, 9, 9, 9])
    r = classification_report(y, k)
    assert list(r["mapping"][[5, 7, 9]]) == [0, 1, 2]
    cm = np.array([[3, 1, 0], [0, 2, 1], [0, 0, 2]])
    np.testing.assert_array_equal(r["confusion"], cm)
    assert r["accuracy"] == pytest.approx(7 / 9)
    np.testing.assert_allclose(r["precision"], [1.0, 2 / 3, 2 / 3])
    np.testing.assert_allclose(r["sensitivity"], [3 / 4, 2 / 3, 1.0])
    np.testing.assert_allclose(r["f1"], [2 * 0.75 / 1.75, 2 / 3, 0.8])
    assert r["macro_f1"] == pytest.approx(np.mean([2 * 0.75 / 1.75, 2 / 3, 0.8]))
    np.testing.assert_array_equal(r["support"], [4, 3, 2])


def test_more_clusters_than_classes_hungarian_leaves_clusters_unmatched_majority_does_not():
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    k = np.array([0, 0, 1, 1, 2, 2, 3, 4])  # clusters 3 and 4 are extra
    h = classification_report(y, k, n_clusters=5)
    assert list(h["mapping"]) == [0, 1, 2, -1, -1]
    assert h["accuracy"] == pytest.approx(6 / 8)
    assert h["confusion"].sum() == 6  # items of unmatched clusters have no predicted class
    np.testing.assert_allclose(h["sensitivity"], [2 / 3, 2 / 3, 1.0])  # ... and count as missed
    m = classification_report(y, k, n_clusters=5, method="majority")
    assert m["accuracy"] == 1.0 and list(m["mapping"]) == [0, 1, 2, 0, 1]


def test_confusion_matrix_and_scores_by_definition():
    cm = confusion_matrix([0, 1, 1, 1], [0, 0, 1, -1], n_classes=3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    s = per_class_scores(cm, support=[1, 3, 0])
    np.testing.assert_allclose(s["precision"], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(s["sensitivity"], [1.0, 1 / 3, 0.0])  # the -1 item counts as missed
    np.testing.assert_allclose(per_class_scores(cm)["sensitivity"], [1.0, 0.5, 0.0])  # row sums
    assert match_clusters([1, 1, 0], [0, 0, 1]).tolist() == [1, 0]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same length"):
        classification_report([0, 1], [0])
    with pytest.raises(ValueError, match="classes: labels must be >= 0"):
        classification_report([-1, 0], [0, 0])
    with pytest.raises(ValueError, match="method"):
        match_clusters([0], [0], method="greedy")
    with pytest.raises(ValueError, match="class_names"):
        classification_report([0, 1], [0, 1], class_names=["a"])
