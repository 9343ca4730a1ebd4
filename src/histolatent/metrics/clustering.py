"""Clustering accuracy with Hungarian matching; KMeans and Ward agglomerative (numpy/scipy/sklearn).

TARGET-VAE (papers/target-vae.txt §4.3, Table 2) clusters the test set in z-space and reports
the accuracy of the best one-to-one assignment between clusters and classes.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["cluster", "cluster_accuracy", "clustering_accuracy", "confusion_matrix"]


def confusion_matrix(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts ``(n_clusters, n_classes)`` and the cluster and class labels they index."""
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and paired, got {t.shape} and {p.shape}")
    classes, ti = np.unique(t, return_inverse=True)
    clusters, pi = np.unique(p, return_inverse=True)
    m = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(m, (pi, ti), 1)
    return m, clusters, classes


def clustering_accuracy(y_true, y_pred) -> float:
    """Fraction of items whose cluster maps to their class under the best one-to-one matching.

    Hungarian matching (``scipy.optimize.linear_sum_assignment``) of clusters to classes;
    with more clusters than classes the unmatched clusters count as errors. Invariant to
    any relabelling of the clusters.
    """
    m, _, _ = confusion_matrix(y_true, y_pred)
    rows, cols = linear_sum_assignment(-m)
    return float(m[rows, cols].sum() / m.sum())


def cluster(features, n_clusters: int, *, method: str = "kmeans", n_init: int = 10, seed: int = 0) -> np.ndarray:
    """Cluster labels ``(N,)`` of ``features (N, D)`` by KMeans or Ward agglomerative clustering."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < n_clusters:
        raise ValueError(f"features must be (N, D) with N >= n_clusters ({n_clusters}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features must be finite")
    if method not in ("kmeans", "ward"):
        raise ValueError(f"method must be 'kmeans' or 'ward', got {method!r}")
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from threadpoolctl import threadpool_limits

    # one thread: on a shared machine OpenMP's spin-waiting makes KMeans 10x slower, not faster
    with threadpool_limits(1):
        if method == "kmeans":
            return KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit_predict(x)
        return AgglomerativeClustering(n_clusters=n_clusters, linkage="ward").fit_predict(x)


def cluster_accuracy(features, labels, *, method: str = "kmeans", n_clusters: int | None = None,
                     n_init: int = 10, seed: int = 0, standardize: bool = False) -> float:
    """Cluster ``features`` into ``n_clusters`` (default: number of classes) and score with
    :func:`clustering_accuracy`. ``standardize`` scales each feature to unit variance first.
    """
    y = np.asarray(labels).reshape(-1)
    x = np.asarray(features, dtype=np.float64)
    if standardize:
        x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
    k = len(np.unique(y)) if n_clusters is None else int(n_clusters)
    return clustering_accuracy(y, cluster(x, k, method=method, n_init=n_init, seed=seed))
