"""Where to take crops of a slide grid: cells drawn in proportion to their distance to background.

NIC (§3.2) trains its slide-level CNN on random ``R x R`` crops of a compressed slide whose
centres are "sampled proportionally to the distance to background", so dense tissue is seen
more often than thin strands and background is never a centre; at test time, T crops spread
over the tissue are averaged. Both work on a tissue mask at grid resolution (one cell per
tile), which is small, so the distance transform is cheap.

Example
-------
>>> import numpy as np
>>> mask = np.zeros((5, 7), bool); mask[1:4, 1:6] = True
>>> distance_to_background(mask)[2].tolist()      # 0 on background, largest in the middle
[0.0, 1.0, 2.0, 2.0, 2.0, 1.0, 0.0]
>>> sample_cells(mask, 3, np.random.default_rng(0)).shape
(3, 2)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from histolatent.errors import InputError

__all__ = ["distance_to_background", "sample_cells", "spread_cells"]


def _check(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2 or m.dtype != bool:
        raise InputError(f"mask: expected a 2-D bool tissue mask, got {m.dtype} {m.shape}")
    if not m.any():
        raise InputError("mask: no tissue cell to take a crop around")
    return m


def distance_to_background(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (cells) from each tissue cell to the nearest background cell.

    ``(H, W)`` float64; 0 on background, at least 1 on tissue. Cells outside the grid count
    as background, so tissue cut by the grid's edge is not treated as the middle of a lesion.
    """
    m = _check(mask)
    return ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]


def sample_cells(mask: np.ndarray, n: int, rng: np.random.Generator, *,
                 weights: np.ndarray | None = None) -> np.ndarray:
    """``n`` tissue cells ``(n, 2)`` (row, column), drawn with replacement, each with probability
    proportional to its :func:`distance_to_background` (or to ``weights`` when given: that
    array, computed once, saves the transform when one mask is sampled many times)."""
    w = distance_to_background(mask) if weights is None else np.asarray(weights, dtype=np.float64)
    flat = w.ravel()
    total = flat.sum()
    if not total > 0:
        raise InputError("mask: no tissue cell to take a crop around")
    idx = rng.choice(flat.size, size=int(n), p=flat / total)
    return np.stack(np.unravel_index(idx, w.shape), axis=1).astype(np.int64)


def spread_cells(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` distinct tissue cells spread over the tissue, ``(min(n, tissue cells), 2)``.

    The first is drawn as :func:`sample_cells` draws; each next one is the tissue cell
    farthest from those already taken (farthest-point sampling), so T test crops cover the
    tissue instead of piling up in its densest part.
    """
    m = _check(mask)
    cells = np.argwhere(m)
    k = min(int(n), len(cells))
    first = sample_cells(m, 1, rng)[0]
    chosen = [int(np.flatnonzero((cells == first).all(axis=1))[0])]
    d2 = ((cells - first) ** 2).sum(axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(d2))
        chosen.append(nxt)
        d2 = np.minimum(d2, ((cells - cells[nxt]) ** 2).sum(axis=1))
    return cells[chosen].astype(np.int64)
