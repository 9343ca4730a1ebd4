"""ROC AUC, binary and multi-class one-vs-rest (paper 0 §6's mAUC). Pure numpy.

The AUC is the Mann–Whitney probability that a random positive scores above a random
negative, ties counting one half; computed from average ranks in ``O(n log n)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["average_ranks", "multiclass_auc", "one_vs_rest_aucs", "roc_auc"]


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` (1-D) with ties given their average rank.

    >>> average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = len(x)
    ranks = np.empty(n, dtype=np.float64)
    # boundaries of runs of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(y_true, score) -> float:
    """Area under the ROC curve of ``score`` for the binary labels ``y_true``.

    Parameters
    ----------
    y_true : (n,) bool or {0, 1}
    score : (n,) float, higher means more likely positive

    Raises ``ValueError`` if only one class is present.
    """
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but score has {s.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("score contains NaN or inf")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc needs both classes; got {n_pos} positives and {n_neg} negatives")
    ranks = average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def one_vs_rest_aucs(y_true, proba, classes=None) -> np.ndarray:
    """Per-class one-vs-rest AUCs, ``(K,)``.

    Parameters
    ----------
    y_true : (n,) class labels
    proba : (n, K) scores, column ``k`` for ``classes[k]``
    classes : the labels of the ``K`` columns (default: sorted unique labels of ``y_true``)
    """
    y = np.asarray(y_true).ravel()
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"proba must have shape (n={y.size}, K), got {p.shape}")
    classes = np.unique(y) if classes is None else np.asarray(classes)
    if len(classes) != p.shape[1]:
        raise ValueError(f"{len(classes)} classes but proba has {p.shape[1]} columns")
    return np.array([roc_auc(y == c, p[:, k]) for k, c in enumerate(classes)])


def multiclass_auc(y_true, proba, classes=None) -> float:
    """Mean of the one-vs-rest AUCs (macro average): paper 0's multi-class AUC (mAUC)."""
    return float(one_vs_rest_aucs(y_true, proba, classes).mean())
