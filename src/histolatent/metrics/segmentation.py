"""Segmentation metrics: pixel confusion counts, sensitivity, specificity, Dice, Jaccard, AJI.

Pure numpy (no imports from histolatent): the pixel metrics are the four columns of the
nuclei-segmentation table of Yuan & Suh (2018, "Neural stain normalization and unsupervised
classification of cell nuclei", §4.1.1, defined in its appendix); the aggregated Jaccard
index is that of Kumar et al. (2017, "A dataset and a technique for generalized nuclear
segmentation", IEEE TMI 36(7)), the MoNuSeg challenge metric.

Masks are any arrays whose non-zero pixels are foreground (instance label maps work
as-is). Bad inputs raise ``ValueError`` naming the argument.

Example
-------
>>> import numpy as np
>>> t = np.zeros((4, 4), bool); t[:2] = True
>>> p = np.zeros((4, 4), bool); p[:, :2] = True
>>> round(dice(p, t), 3), round(jaccard(p, t), 3)
(0.5, 0.333)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "aggregated_jaccard_index",
    "dice",
    "jaccard",
    "pixel_confusion",
    "pixel_scores",
    "sensitivity",
    "specificity",
]


def _pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred)
    t = np.asarray(true)
    if p.shape != t.shape:
        raise ValueError(f"pred and true must have the same shape, got {p.shape} and {t.shape}")
    if p.size == 0:
        raise ValueError("pred and true are empty")
    return p, t


def pixel_confusion(pred: np.ndarray, true: np.ndarray) -> dict[str, int]:
    """Pixel counts ``tp``, ``fp``, ``fn``, ``tn`` of two masks (non-zero = foreground)."""
    p, t = _pair(pred, true)
    p = p.astype(bool, copy=False).ravel()
    t = t.astype(bool, copy=False).ravel()
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    tn = int(p.size) - tp - fp - fn
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _ratio(num: int, den: int, empty: float) -> float:
    return float(num) / float(den) if den else float(empty)


def sensitivity(pred: np.ndarray, true: np.ndarray) -> float:
    """``tp / (tp + fn)`` (recall); 1.0 when ``true`` has no foreground."""
    c = pixel_confusion(pred, true)
    return _ratio(c["tp"], c["tp"] + c["fn"], 1.0)


def specificity(pred: np.ndarray, true: np.ndarray) -> float:
    """``tn / (tn + fp)``; 1.0 when ``true`` has no background."""
    c = pixel_confusion(pred, true)
    return _ratio(c["tn"], c["tn"] + c["fp"], 1.0)


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """``2 tp / (2 tp + fp + fn)``; 1.0 when both masks are empty."""
    c = pixel_confusion(pred, true)
    return _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"], 1.0)


def jaccard(pred: np.ndarray, true: np.ndarray) -> float:
    """``tp / (tp + fp + fn)`` (intersection over union); 1.0 when both masks are empty."""
    c = pixel_confusion(pred, true)
    return _ratio(c["tp"], c["tp"] + c["fp"] + c["fn"], 1.0)


def pixel_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Sensitivity, specificity, Dice and Jaccard from one confusion count (paper 4's table)."""
    c = pixel_confusion(pred, true)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    return {"sensitivity": _ratio(tp, tp + fn, 1.0), "specificity": _ratio(tn, tn + fp, 1.0),
            "dice": _ratio(2 * tp, 2 * tp + fp + fn, 1.0), "jaccard": _ratio(tp, tp + fp + fn, 1.0)}


def _relabel(labels: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """Labels as consecutive ids 1..n (0 stays background) and n."""
    a = np.asarray(labels)
    if not np.issubdtype(a.dtype, np.integer) and a.dtype != bool:
        raise ValueError(f"{name}: expected an integer label map, got dtype {a.dtype}")
    if a.dtype != bool and a.size and a.min() < 0:
        raise ValueError(f"{name}: labels must be >= 0")
    ids, inv = np.unique(a.ravel(), return_inverse=True)
    if ids[0] != 0:  # no background pixel: shift so that ids start at 1
        inv = inv + 1
        n = len(ids)
    else:
        n = len(ids) - 1
    return inv.astype(np.int64), n


def aggregated_jaccard_index(pred: np.ndarray, true: np.ndarray) -> float:
    """Aggregated Jaccard index (AJI) of two instance label maps (Kumar et al. 2017).

    For each true nucleus ``G_i`` the predicted nucleus ``S_j`` of largest IoU with it is
    found; ``C += |G_i ∩ S_j|``, ``U += |G_i ∪ S_j|`` (a true nucleus that overlaps no
    prediction adds ``|G_i|`` to ``U``). Every predicted nucleus never chosen adds its area
    to ``U``. ``AJI = C / U``; 1.0 when both maps are empty.

    Parameters
    ----------
    pred, true : ndarray of int, same shape
        Instance label maps, 0 = background; ids need not be consecutive.

    Returns
    -------
    float
        In [0, 1].
    """
    p, t = _pair(pred, true)
    pi, n_p = _relabel(p, "pred")
    ti, n_t = _relabel(t, "true")
    if n_t == 0 and n_p == 0:
        return 1.0
    area_p = np.bincount(pi, minlength=n_p + 1)
    area_t = np.bincount(ti, minlength=n_t + 1)
    both = (pi > 0) & (ti > 0)
    key = ti[both] * (n_p + 1) + pi[both]
    pairs, inter = np.unique(key, return_counts=True)
    g, s = np.divmod(pairs, n_p + 1)
    union = area_t[g] + area_p[s] - inter
    iou = inter / union
    # best prediction per true nucleus: sort by (g, -iou) and take the first of each g
    order = np.lexsort((-iou, g))
    g_o = g[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = g_o[1:] != g_o[:-1]
    best = order[first]
    c_sum = float(inter[best].sum())
    u_sum = float(union[best].sum())
    matched_g = np.zeros(n_t + 1, dtype=bool)
    matched_g[g[best]] = True
    u_sum += float(area_t[1:][~matched_g[1:]].sum())
    used = np.zeros(n_p + 1, dtype=bool)
    used[s[best]] = True
    u_sum += float(area_p[1:][~used[1:]].sum())
    return c_sum / u_sum if u_sum else 1.0
