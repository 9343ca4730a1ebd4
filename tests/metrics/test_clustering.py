"""Clustering accuracy with Hungarian matching; KMeans and Ward on separable data."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.metrics.clustering import cluster_accuracy, clustering_accuracy, confusion_matrix


def test_permuted_cluster_labels_give_accuracy_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500)
    perm = rng.permutation(10)
    assert clustering_accuracy(y, perm[y]) == 1.0
    assert clustering_accuracy(y, perm[y] + 100) == 1.0  # any cluster ids


def test_known_partial_accuracy_and_extra_clusters():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([5, 5, 7, 7, 7, 7])  # best matching: 5 -> 0 (2 right), 7 -> 1 (3 right)
    assert clustering_accuracy(y, p) == pytest.approx(5 / 6)
    p3 = np.array([0, 1, 2, 3, 3, 3])  # more clusters than classes: unmatched ones count as errors
    assert clustering_accuracy(y, p3) == pytest.approx(4 / 6)
    m, clusters, classes = confusion_matrix(y, p)
    assert m.tolist() == [[2, 0], [1, 3]] and clusters.tolist() == [5, 7] and classes.tolist() == [0, 1]


@pytest.mark.parametrize("method", ["kmeans", "ward"])
def test_separated_blobs_are_clustered_perfectly(method):
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 20, (4, 3))
    y = np.repeat(np.arange(4), 50)
    x = centres[y] + rng.normal(0, 0.5, (200, 3))
    assert cluster_accuracy(x, y, method=method, n_init=3) == 1.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="method"):
        cluster_accuracy(np.zeros((10, 2)), np.zeros(10), method="dbscan", n_clusters=2)
    with pytest.raises(ValueError, match="paired"):
        clustering_accuracy([0, 1], [0])
