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


def test_accuracy_is_the_best_one_to_one_matching_by_brute_force():
    import itertools

    rng = np.random.default_rng(31)
    for n_clusters in (2, 3, 4):  # fewer, as many and more clusters than the 3 classes
        y = rng.integers(0, 3, 60)
        p = rng.integers(0, n_clusters, 60) * 10 + 5  # arbitrary cluster ids
        ids = np.unique(p)
        best = 0
        for perm in itertools.permutations(range(max(3, len(ids))), len(ids)):  # cluster ids[i] -> class perm[i]
            best = max(best, sum(int(perm[list(ids).index(c)] == t) for c, t in zip(p, y, strict=True)))
        assert clustering_accuracy(y, p) == pytest.approx(best / 60)


def test_cluster_is_seeded_and_checks_its_input():
    from histolatent.metrics.clustering import cluster

    rng = np.random.default_rng(32)
    x = rng.normal(size=(60, 3))
    a, b = cluster(x, 4, seed=3, n_init=2), cluster(x, 4, seed=3, n_init=2)
    np.testing.assert_array_equal(a, b)
    assert sorted(np.unique(a)) == [0, 1, 2, 3] and a.shape == (60,)
    assert sorted(np.unique(cluster(x, 5, method="ward"))) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="N >= n_clusters"):
        cluster(x[:3], 4)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        cluster(x[:, 0], 2)
    bad = x.copy()
    bad[5, 1] = np.inf
    with pytest.raises(ValueError, match="finite"):
        cluster(bad, 2)


def test_standardize_and_n_clusters_change_the_answer():
    rng = np.random.default_rng(33)
    y = np.repeat([0, 1], 100)
    informative = (2 * y - 1) * 0.01 + rng.normal(0, 0.001, 200)  # the classes, on a tiny scale
    noise = rng.normal(0, 10.0, 200)  # a big feature that carries nothing
    x = np.stack([informative, noise], 1)
    raw = cluster_accuracy(x, y, n_init=3)
    scaled = cluster_accuracy(x, y, n_init=3, standardize=True)
    assert scaled == 1.0 and raw < 0.7  # k-means on raw features splits the noise
    assert cluster_accuracy(x, y, n_init=3, standardize=True, n_clusters=1) == 0.5  # one cluster: one class
