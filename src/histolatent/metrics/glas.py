"""Object-level gland segmentation metrics of the GLaS challenge.

Sirinukunwattana et al. (2017), "Gland segmentation in colon histology images: the GlaS
challenge contest", Medical Image Analysis 35, §3.2 (the metrics DRL reports in its Tables I
and IV). Inputs are instance label maps of the same shape: 0 is background, every other
value one object (ids need not be consecutive). ``G_i`` are the true objects, ``S_j`` the
segmented ones.

* **Object F1** (:func:`object_f1`): a segmented object is a true positive when more than
  half of the true object it overlaps most is covered by it, otherwise a false positive;
  true objects left unmatched are false negatives. "More than" (the challenge's code)
  rather than "at least": two segmented halves of one gland cannot both count.
* **Object Dice** (:func:`object_dice`):
  ``1/2 [sum_i gamma_i Dice(G_i, S*(G_i)) + sum_j sigma_j Dice(G*(S_j), S_j)]``, with
  ``gamma_i = |G_i| / sum |G|``, ``sigma_j = |S_j| / sum |S|``, and ``S*(G_i)`` the segmented
  object overlapping ``G_i`` most (Dice 0 when none does), ``G*(S_j)`` likewise.
* **Object Hausdorff** (:func:`object_hausdorff`): the same weighting of the Hausdorff
  distance (px, Euclidean, between pixel sets); an object overlapping nothing is paired with
  the object of the other map nearest to it (smallest Hausdorff distance), as the challenge.

Empty maps: two empty maps score F1 1, Dice 1, Hausdorff 0; one empty map against a
non-empty one scores F1 0, Dice 0, Hausdorff ``inf``.

Example
-------
>>> import numpy as np
>>> true = np.zeros((6, 6), int); true[:2, :2] = 1; true[3:, 3:] = 2
>>> pred = np.zeros((6, 6), int); pred[:2, :2] = 5
>>> round(object_f1(pred, true), 3), round(object_dice(pred, true), 3)
(0.667, 0.654)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["glas_scores", "object_dice", "object_f1", "object_hausdorff"]


class _Objects:
    """Instance map relabelled 1..n, object areas, and the overlap table with another map."""

    def __init__(self, labels: np.ndarray, name: str) -> None:
        a = np.asarray(labels)
        if a.dtype != bool and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name}: expected an integer instance label map, got dtype {a.dtype}")
        if a.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D label map, got shape {a.shape}")
        if a.dtype != bool and a.size and a.min() < 0:
            raise ValueError(f"{name}: labels must be >= 0")
        ids, inv = np.unique(a.ravel(), return_inverse=True)
        if ids.size and ids[0] != 0:
            inv = inv + 1
        self.map = inv.reshape(a.shape).astype(np.int64)
        self.n = int(self.map.max()) if self.map.size else 0
        self.area = np.bincount(self.map.ravel(), minlength=self.n + 1).astype(np.float64)


def _pair(pred: np.ndarray, true: np.ndarray) -> tuple[_Objects, _Objects, np.ndarray]:
    p, t = _Objects(pred, "pred"), _Objects(true, "true")
    if p.map.shape != t.map.shape:
        raise ValueError(f"pred and true must have the same shape, got {p.map.shape} and {t.map.shape}")
    # overlap[j, i] = |S_j ∩ G_i| (row/column 0 = background)
    overlap = np.bincount(p.map.ravel() * (t.n + 1) + t.map.ravel(),
                          minlength=(p.n + 1) * (t.n + 1)).reshape(p.n + 1, t.n + 1).astype(np.float64)
    return p, t, overlap


def _best(overlap: np.ndarray) -> np.ndarray:
    """For each object (row 1..n) the partner (column >= 1) of largest overlap, 0 if none overlaps."""
    inner = overlap[1:, 1:]
    if inner.shape[1] == 0:
        return np.zeros(inner.shape[0], dtype=np.int64)
    best = inner.argmax(axis=1) + 1
    best[inner.max(axis=1) == 0] = 0
    return best


def object_f1(pred: np.ndarray, true: np.ndarray) -> float:
    """GLaS object-level F1 in [0, 1] (module docstring)."""
    p, t, overlap = _pair(pred, true)
    if p.n == 0 and t.n == 0:
        return 1.0
    best = _best(overlap)  # per segmented object: its true object of largest overlap
    rows = np.arange(1, p.n + 1)
    covered = np.where(best > 0, overlap[rows, best] / np.maximum(t.area[best], 1.0), 0.0)
    tp = int(np.count_nonzero(covered > 0.5))
    fp, fn = p.n - tp, t.n - tp
    return 2.0 * tp / (2.0 * tp + fp + fn)


def _dice_terms(a: _Objects, b: _Objects, overlap_ab: np.ndarray) -> float:
    """``sum_k w_k Dice(A_k, B*(A_k))`` with ``w_k = |A_k| / sum |A|``."""
    best = _best(overlap_ab)
    rows = np.arange(1, a.n + 1)
    inter = np.where(best > 0, overlap_ab[rows, best], 0.0)
    dice = 2.0 * inter / (a.area[1:] + np.where(best > 0, b.area[best], 0.0))
    return float((a.area[1:] * dice).sum() / a.area[1:].sum())


def object_dice(pred: np.ndarray, true: np.ndarray) -> float:
    """GLaS object Dice in [0, 1] (module docstring)."""
    p, t, overlap = _pair(pred, true)
    if p.n == 0 and t.n == 0:
        return 1.0
    if p.n == 0 or t.n == 0:
        return 0.0
    return 0.5 * (_dice_terms(t, p, overlap.T) + _dice_terms(p, t, overlap))


def _hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Hausdorff distance (px) between two non-empty boolean masks, on their joint bounding box."""
    rows, cols = np.nonzero(a | b)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    a, b = a[box], b[box]
    to_b = ndimage.distance_transform_edt(~b)
    to_a = ndimage.distance_transform_edt(~a)
    return float(max(to_b[a].max(), to_a[b].max()))


def _hausdorff_terms(a: _Objects, b: _Objects, overlap_ab: np.ndarray) -> float:
    """``sum_k w_k H(A_k, B*(A_k))``; an ``A_k`` overlapping nothing takes its nearest ``B``."""
    best = _best(overlap_ab)
    total = 0.0
    for k in range(1, a.n + 1):
        obj = a.map == k
        if best[k - 1] > 0:
            h = _hausdorff(obj, b.map == best[k - 1])
        else:
            h = min(_hausdorff(obj, b.map == m) for m in range(1, b.n + 1))
        total += a.area[k] * h
    return total / a.area[1:].sum()


def object_hausdorff(pred: np.ndarray, true: np.ndarray) -> float:
    """GLaS object Hausdorff distance in px (module docstring); lower is better."""
    p, t, overlap = _pair(pred, true)
    if p.n == 0 and t.n == 0:
        return 0.0
    if p.n == 0 or t.n == 0:
        return float("inf")
    return 0.5 * (_hausdorff_terms(t, p, overlap.T) + _hausdorff_terms(p, t, overlap))


def glas_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """``{"f1", "object_dice", "object_hausdorff"}`` of one image."""
    return {"f1": object_f1(pred, true), "object_dice": object_dice(pred, true),
            "object_hausdorff": object_hausdorff(pred, true)}
