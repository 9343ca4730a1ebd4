"""AUC and multi-class one-vs-rest AUC against brute force and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from histolatent.metrics.auc import multiclass_auc, one_vs_rest_aucs, roc_auc


def _brute_auc(y, s):
    pos, neg = s[y], s[~y]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_binary_auc_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(size=300) + y, 1)  # rounding creates ties
    assert roc_auc(y, s) == pytest.approx(_brute_auc(y, s), abs=1e-12)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_binary_auc_extremes():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.1, np.nan])


def test_multiclass_auc_matches_sklearn_ovr_macro():
    rng = np.random.default_rng(1)
    y = rng.integers(1, 4, size=200)  # grades 1..3
    logits = rng.normal(size=(200, 3)) + 1.5 * np.eye(3)[y - 1]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ours = multiclass_auc(y, proba)
    ref = roc_auc_score(y, proba, multi_class="ovr", average="macro")
    assert ours == pytest.approx(ref, abs=1e-12)
    per_class = [roc_auc_score(y == c, proba[:, c - 1]) for c in (1, 2, 3)]
    np.testing.assert_allclose(one_vs_rest_aucs(y, proba, classes=[1, 2, 3]), per_class, atol=1e-12)
    np.testing.assert_allclose(one_vs_rest_aucs(y, proba), per_class, atol=1e-12)  # default: sorted labels
    # columns in another order, named by classes: the same AUC per class
    np.testing.assert_allclose(one_vs_rest_aucs(y, proba[:, [2, 0, 1]], classes=[3, 1, 2]),
                               [per_class[2], per_class[0], per_class[1]], atol=1e-12)
    with pytest.raises(ValueError, match="columns"):
        multiclass_auc(y, proba[:, :2])
