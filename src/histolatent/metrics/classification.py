"""Unsupervised classification scores: clusters matched to classes, then per-class statistics.

Paper 4 (papers/stain-normalization_infogan-nuclei.txt, §3.3 "Evaluation" and §4.2.1)
reports, per class, precision, sensitivity (recall) and F1, the overall accuracy and the
confusion matrix of its unsupervised InfoGAN classes against the pathologists' labels.
Clusters carry no names, so each cluster is first matched to a class: one-to-one by the
Hungarian algorithm on the contingency table (maximising the number of agreeing items; a
cluster left without a class counts as wrong), or, for more clusters than classes,
many-to-one by majority.

Pure numpy / scipy; imports nothing of histolatent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["ClassificationReport", "classification_report", "confusion_matrix", "contingency",
           "match_clusters", "per_class_scores"]


def _labels(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of integer labels, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.mod(arr, 1) == 0):
            raise ValueError(f"{name}: expected integer labels, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name}: labels must be >= 0, got {arr.min()}")
    return arr.astype(np.int64)


def contingency(clusters: Any, classes: Any, n_clusters: int | None = None, n_classes: int | None = None) -> np.ndarray:
    """Counts ``(n_clusters, n_classes)``: entry ``[k, j]`` = items in cluster k of class j."""
    k = _labels(clusters, "clusters")
    y = _labels(classes, "classes")
    if k.shape != y.shape:
        raise ValueError(f"clusters ({k.shape[0]}) and classes ({y.shape[0]}) must have the same length")
    nk = int(max(k.max(initial=-1) + 1, n_clusters or 0))
    ny = int(max(y.max(initial=-1) + 1, n_classes or 0))
    table = np.zeros((nk, ny), dtype=np.int64)
    np.add.at(table, (k, y), 1)
    return table


def match_clusters(clusters: Any, classes: Any, *, n_clusters: int | None = None, n_classes: int | None = None,
                   method: str = "hungarian") -> np.ndarray:
    """Class assigned to each cluster: array ``(n_clusters,)``, -1 for a cluster left unmatched.

    ``method="hungarian"``: one-to-one, maximising agreement (ties broken by scipy's
    ``linear_sum_assignment``); ``"majority"``: each cluster takes its most frequent class.
    """
    table = contingency(clusters, classes, n_clusters, n_classes)
    mapping = np.full(table.shape[0], -1, dtype=np.int64)
    if method == "hungarian":
        rows, cols = linear_sum_assignment(-table)
        mapping[rows] = cols
    elif method == "majority":
        mapping[:] = table.argmax(axis=1)
    else:
        raise ValueError(f"method: expected 'hungarian' or 'majority', got {method!r}")
    return mapping


def confusion_matrix(classes: Any, predicted: Any, n_classes: int | None = None) -> np.ndarray:
    """``(n_classes, n_classes)`` counts: rows = true class, columns = predicted class.

    ``predicted`` may contain -1 (no class): such items appear in no column.
    """
    y = _labels(classes, "classes")
    p = np.asarray(predicted, dtype=np.int64)
    if p.shape != y.shape:
        raise ValueError(f"classes ({y.shape[0]}) and predicted ({p.shape[0]}) must have the same length")
    n = int(max(y.max(initial=-1) + 1, p.max(initial=-1) + 1, n_classes or 0))
    cm = np.zeros((n, n), dtype=np.int64)
    ok = p >= 0
    np.add.at(cm, (y[ok], p[ok]), 1)
    return cm


def per_class_scores(cm: np.ndarray, *, support: Any = None) -> dict[str, np.ndarray]:
    """Precision, sensitivity (recall) and F1 per class from a confusion matrix (rows = truth).

    ``support`` (n_classes,): the number of items of each class, when some items have no
    predicted class (an unmatched cluster) and so are missing from ``cm``'s rows; they
    then count as missed. Default: the row sums. Undefined ratios (no predicted / no true
    items of a class) are 0, as in scikit-learn's ``zero_division=0``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    pred = cm.sum(axis=0)
    true = cm.sum(axis=1) if support is None else np.asarray(support, dtype=np.float64)
    if true.shape != tp.shape:
        raise ValueError(f"support: expected {tp.shape[0]} counts, got shape {true.shape}")
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    sensitivity = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    denom = precision + sensitivity
    f1 = np.divide(2 * precision * sensitivity, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "sensitivity": sensitivity, "f1": f1}


class ClassificationReport(dict):
    """The result of :func:`classification_report` (a dict; JSON-ready with :meth:`to_dict`)."""

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.items()}


def classification_report(classes: Any, clusters: Any, *, n_classes: int | None = None,
                          n_clusters: int | None = None, method: str = "hungarian",
                          class_names: list[str] | None = None) -> ClassificationReport:
    """Match clusters to classes, then score (paper 4 §4.2.1).

    Parameters
    ----------
    classes : (N,) int
        True class of each item, in ``[0, n_classes)``.
    clusters : (N,) int
        Cluster of each item (e.g. ``argmax q(c | x)``), in ``[0, n_clusters)``.
    method : {"hungarian", "majority"}
        How clusters are matched to classes (see :func:`match_clusters`).

    Returns
    -------
    ClassificationReport with ``accuracy`` (float), ``mapping`` (n_clusters,) cluster ->
    class, ``predicted`` (N,) class per item (-1 if its cluster is unmatched),
    ``confusion`` (n_classes, n_classes) (rows = truth), ``contingency`` (n_clusters,
    n_classes), per-class ``precision``, ``sensitivity``, ``f1`` (n_classes,), ``macro_f1``,
    ``support`` (n_classes,) and ``class_names``.
    """
    y = _labels(classes, "classes")
    k = _labels(clusters, "clusters")
    if y.size == 0:
        raise ValueError("classes: no items to score")
    nc = int(max(y.max() + 1, n_classes or 0))
    table = contingency(k, y, n_clusters, nc)
    mapping = match_clusters(k, y, n_clusters=table.shape[0], n_classes=nc, method=method)
    predicted = mapping[k]
    cm = confusion_matrix(y, predicted, nc)
    support = np.bincount(y, minlength=nc)
    scores = per_class_scores(cm, support=support)
    names = list(class_names) if class_names is not None else [str(i) for i in range(nc)]
    if len(names) != nc:
        raise ValueError(f"class_names: expected {nc} names, got {len(names)}")
    return ClassificationReport(
        accuracy=float(np.trace(cm) / y.size), mapping=mapping, predicted=predicted, confusion=cm,
        contingency=table, precision=scores["precision"], sensitivity=scores["sensitivity"], f1=scores["f1"],
        macro_f1=float(scores["f1"].mean()), support=support, class_names=names)
