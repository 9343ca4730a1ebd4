"""Rank correlation: Spearman's rho (NIC §4.6 scores TUPAC16 proliferation this way). Pure numpy.

Spearman's rho is Pearson's correlation of the average ranks, so ties get the mean of the
ranks they span (as ``scipy.stats.spearmanr``).

Example
-------
>>> spearman([1, 2, 3, 4], [10, 20, 30, 40])
1.0
>>> spearman([1, 2, 3, 4], [4, 3, 2, 1])
-1.0
"""

from __future__ import annotations

import numpy as np

from histolatent.metrics.auc import average_ranks

__all__ = ["pearson", "spearman"]


def pearson(x, y) -> float:
    """Pearson's correlation of two equally long 1-D samples; ValueError if one is constant."""
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"x has {a.size} values but y has {b.size}")
    if a.size < 2:
        raise ValueError(f"a correlation needs at least 2 values, got {a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("x or y contains NaN or inf")
    da, db = a - a.mean(), b - b.mean()
    denom = np.sqrt((da * da).sum() * (db * db).sum())
    if denom == 0:
        raise ValueError("a correlation is undefined when x or y is constant")
    return float(np.clip((da * db).sum() / denom, -1.0, 1.0))


def spearman(x, y) -> float:
    """Spearman's rank correlation of ``x`` and ``y`` (1-D, same length), ties by average ranks.

    Raises ``ValueError`` for samples of different length, fewer than 2 values, NaN or inf,
    or a constant sample (the correlation is undefined).
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"x has {a.size} values but y has {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("x or y contains NaN or inf")
    return pearson(average_ranks(a), average_ranks(b))
