"""Clusters matched to classes (Hungarian), confusion matrix, per-class precision/sensitivity/F1."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.metrics.classification import (
    classification_report,
    confusion_matrix,
    contingency,
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


def test_contingency_and_confusion_against_loops_and_sklearn():
    from sklearn.metrics import confusion_matrix as sk_confusion

    rng = np.random.default_rng(11)
    clusters, classes = rng.integers(0, 5, 300), rng.integers(0, 3, 300)
    table = contingency(clusters, classes, n_clusters=7, n_classes=4)  # padded beyond the data
    assert table.shape == (7, 4)  # rows are clusters, columns classes: a swap shows
    brute = np.zeros((7, 4), int)
    for k, y in zip(clusters, classes, strict=True):
        brute[k, y] += 1
    np.testing.assert_array_equal(table, brute)
    predicted = rng.integers(-1, 4, 300)  # -1 = no class: counted in no column
    cm = confusion_matrix(classes, predicted, n_classes=5)
    ok = predicted >= 0
    np.testing.assert_array_equal(cm, sk_confusion(classes[ok], predicted[ok], labels=range(5)))
    assert cm.sum() == ok.sum()


def test_per_class_scores_match_sklearn_with_zero_division_0():
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(12)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
    p[p == 3] = 2  # class 3 is never predicted: its precision is 0 by convention
    s = per_class_scores(confusion_matrix(y, p, n_classes=4))
    pr, rc, f1, _ = precision_recall_fscore_support(y, p, labels=range(4), zero_division=0)
    np.testing.assert_allclose(s["precision"], pr)
    np.testing.assert_allclose(s["sensitivity"], rc)
    np.testing.assert_allclose(s["f1"], f1)
    # items missing from the matrix (an unmatched cluster) count as missed through `support`
    cm = confusion_matrix(y, p, n_classes=4)
    more = per_class_scores(cm, support=cm.sum(axis=1) + [5, 0, 0, 0])
    assert more["sensitivity"][0] == pytest.approx(cm[0, 0] / (cm[0].sum() + 5))
    with pytest.raises(ValueError, match="support: expected 4"):
        per_class_scores(cm, support=[1, 2, 3])


def test_report_accuracy_is_the_best_one_to_one_matching():
    import itertools

    rng = np.random.default_rng(13)
    classes = rng.integers(0, 3, 120)
    clusters = np.where(rng.random(120) < 0.7, (classes + 1) % 3, rng.integers(0, 4, 120))  # 4 clusters
    rep = classification_report(classes, clusters, class_names=["a", "b", "c"])
    best = 0
    for chosen in itertools.permutations(range(4), 3):  # cluster chosen[j] -> class j, the 4th unmatched
        mapping = np.full(4, -1)
        mapping[list(chosen)] = [0, 1, 2]
        best = max(best, int((mapping[clusters] == classes).sum()))
    assert rep["accuracy"] == pytest.approx(best / 120)
    assert (rep["mapping"] >= 0).sum() == 3 and sorted(rep["mapping"][rep["mapping"] >= 0]) == [0, 1, 2]
    np.testing.assert_array_equal(rep["predicted"], rep["mapping"][clusters])
    np.testing.assert_array_equal(rep["support"], np.bincount(classes, minlength=3))
    assert rep["macro_f1"] == pytest.approx(float(np.mean(rep["f1"])))
    d = rep.to_dict()
    assert d["class_names"] == ["a", "b", "c"] and isinstance(d["confusion"], list) and d["accuracy"] == rep["accuracy"]
    majority = classification_report(classes, clusters, method="majority")
    assert (majority["mapping"] >= 0).all() and majority["accuracy"] >= rep["accuracy"]


def test_label_inputs_are_checked_by_name():
    assert contingency([0.0, 1.0], [1, 0]).tolist() == [[0, 1], [1, 0]]  # integer-valued floats are labels
    with pytest.raises(ValueError, match="clusters: expected integer labels"):
        contingency([0.5, 1.0], [1, 0])
    with pytest.raises(ValueError, match="classes: labels must be >= 0"):
        contingency([0, 1], [1, -2])
    with pytest.raises(ValueError, match="clusters: expected a 1-D array"):
        contingency([[0, 1]], [1, 0])
    with pytest.raises(ValueError, match="same length"):
        contingency([0, 1, 1], [1, 0])
    with pytest.raises(ValueError, match="no items"):
        classification_report([], [])
    with pytest.raises(ValueError, match="class_names: expected 2"):
        classification_report([0, 1], [1, 0], class_names=["x"])
    with pytest.raises(ValueError, match="method"):
        classification_report([0, 1], [1, 0], method="greedy")
