"""Nucleus detection: Laplacian-of-Gaussian blobs on the haematoxylin channel, radii in µm.

Yuan & Suh (2018, §3.3) found their nuclei with HistomicTK's Laplacian-of-Gaussian blob
detector; this is the same idea, made aware of the physical scale: the radii to look for
are given in µm and converted with the image's ``mpp``, so the same call works at 20x and
40x.

A nucleus of radius ``r`` gives the strongest scale-normalised response ``-σ² ∇²G_σ * h``
at ``σ = r / √2`` (Lindeberg 1998). Responses are computed for a geometric ladder of radii,
the maximum over scales is taken per pixel, and its local maxima above ``threshold`` (in
haematoxylin OD units) are the nuclei; blobs overlapping a stronger one by more than
``overlap`` of the smaller area are dropped.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from histolatent.errors import InputError
from histolatent.io.image import check_mpp
from histolatent.nuclei.foreground import foreground_mask
from histolatent.nuclei.haematoxylin import haematoxylin_map

#: Columns of a detection table.
DETECTION_COLUMNS = ["x", "y", "radius_um", "score"]


def _radii(radius_um: tuple[float, float], num_scales: int) -> np.ndarray:
    try:
        r0, r1 = (float(v) for v in radius_um)
    except (TypeError, ValueError):
        raise InputError(f"radius_um: expected (min, max) in µm, got {radius_um!r}") from None
    if not (0 < r0 <= r1 and math.isfinite(r1)):
        raise InputError(f"radius_um: expected 0 < min <= max, got {radius_um!r}")
    if int(num_scales) < 1:
        raise InputError(f"num_scales: expected >= 1, got {num_scales}")
    return np.geomspace(r0, r1, int(num_scales)) if num_scales > 1 else np.array([r0])


def check_threshold(threshold: Any, *, name: str = "threshold") -> float:
    """A finite LoG threshold (NaN would keep no blob at all, and say nothing)."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a number, got {threshold!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{name}: expected a finite number, got {threshold!r}")
    return value


def log_response(h: np.ndarray, sigma_px: float) -> np.ndarray:
    """Scale-normalised negative Laplacian of Gaussian ``-σ² ∇²(G_σ * h)``, ``(H, W)`` float32.

    Positive on blobs brighter than their surround (haematoxylin-rich nuclei); a disc of
    contrast ``c`` and radius ``σ √2`` responds with about ``0.74 c`` at its centre.
    """
    s = float(sigma_px)
    g = cv2.GaussianBlur(h, (0, 0), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT)
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REFLECT)
    return (-(s * s)) * lap


def detect_log(image: np.ndarray, *, mpp: float, radius_um: tuple[float, float] = (3.0, 7.0),
               num_scales: int = 5, threshold: float = 0.1, overlap: float = 0.5,
               min_distance_um: float | None = None, stain_matrix="macenko",
               mask: np.ndarray | None = None, foreground: bool = True) -> pd.DataFrame:
    """Nucleus centres by Laplacian-of-Gaussian blob detection.

    Parameters
    ----------
    image : ndarray
        ``(H, W, 3)`` RGB H&E, or an ``(H, W)`` float haematoxylin map. Not modified.
    mpp : float
        Microns per pixel of ``image``.
    radius_um : (float, float)
        Smallest and largest nuclear radius to look for, µm (default 3–7: lymphocytes
        to large epithelial nuclei).
    num_scales : int
        Radii tried, geometrically spaced over ``radius_um``.
    threshold : float
        Smallest scale-normalised LoG response, haematoxylin OD units (about 0.74 times the
        contrast of a disc against its surround).
    overlap : float
        Of two blobs whose circles overlap by more than this fraction of the smaller one's
        area, the weaker is dropped (0..1).
    min_distance_um : float, optional
        Smallest distance between two maxima, µm (default: ``radius_um[0]``).
    stain_matrix
        See :func:`~histolatent.nuclei.haematoxylin.haematoxylin_from_rgb`; default
        "macenko" (the image's own stain vectors) for RGB input.
    mask : ndarray of bool, (H, W), optional
        Only detections whose centre lies in the mask are kept.
    foreground : bool
        Keep only blobs whose centre lies in the haematoxylin foreground
        (:func:`~histolatent.nuclei.foreground.foreground_mask`: Otsu's threshold on the
        smoothed channel), which rejects texture in haematoxylin-tinged cytoplasm.

    Returns
    -------
    pandas.DataFrame
        One row per nucleus: ``x``, ``y`` (px, pixel-centre convention: pixel ``(i, j)`` is at
        ``x = j, y = i``), ``radius_um`` and ``score`` (LoG response), strongest first.

    Examples
    --------
    >>> import numpy as np
    >>> h = np.zeros((64, 64), np.float32)
    >>> yy, xx = np.mgrid[:64, :64]
    >>> h[(yy - 20) ** 2 + (xx - 40) ** 2 <= 36] = 0.5
    >>> det = detect_log(h, mpp=0.5, radius_um=(2, 5))
    >>> det[["x", "y"]].round().values.tolist()
    [[40.0, 20.0]]
    """
    mpp = check_mpp(mpp)
    threshold = check_threshold(threshold)
    h = haematoxylin_map(image, stain_matrix=stain_matrix)
    if not 0.0 <= float(overlap) <= 1.0:
        raise InputError(f"overlap: expected a fraction in [0, 1], got {overlap}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != h.shape:
            raise InputError(f"mask: expected shape {h.shape}, got {mask.shape}")
    radii_um = _radii(radius_um, num_scales)
    radii_px = radii_um / mpp
    best = np.full(h.shape, -np.inf, dtype=np.float32)
    which = np.zeros(h.shape, dtype=np.uint8)
    for k, r in enumerate(radii_px):
        resp = log_response(h, max(r / math.sqrt(2.0), 0.5))
        better = resp > best
        best = np.where(better, resp, best)
        which[better] = k
    md_px = (float(min_distance_um) if min_distance_um is not None else float(radii_um[0])) / mpp
    size = max(3, 2 * int(round(md_px)) + 1)
    peaks = (best >= cv2.dilate(best, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))))
    peaks &= best >= float(threshold)
    if mask is not None:
        peaks &= mask
    if foreground:
        peaks &= foreground_mask(h, mpp=mpp, min_area_um2=0.0, max_hole_um2=float(np.pi * radii_um[-1] ** 2))
    ys, xs = np.nonzero(peaks)
    score = best[ys, xs]
    rad = radii_px[which[ys, xs]]
    order = np.argsort(-score, kind="stable")
    xs, ys, score, rad = xs[order], ys[order], score[order], rad[order]
    keep = _prune_overlaps(xs.astype(np.float64), ys.astype(np.float64), rad, float(overlap))
    out = pd.DataFrame({"x": xs[keep].astype(np.float64), "y": ys[keep].astype(np.float64),
                        "radius_um": rad[keep] * mpp, "score": score[keep].astype(np.float64)})
    return out.reset_index(drop=True)


def _circle_overlap_fraction(d: np.ndarray, r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Area of the intersection of two circles over the smaller circle's area."""
    d = np.maximum(d, 1e-12)
    small = np.minimum(r1, r2)
    out = np.zeros_like(d)
    inside = d <= np.abs(r1 - r2)
    out[inside] = 1.0
    part = (~inside) & (d < r1 + r2)
    if part.any():
        a, b, dd = r1[part], r2[part], d[part]
        c1 = np.clip((dd**2 + a**2 - b**2) / (2 * dd * a), -1, 1)
        c2 = np.clip((dd**2 + b**2 - a**2) / (2 * dd * b), -1, 1)
        area = (a**2 * np.arccos(c1) + b**2 * np.arccos(c2)
                - 0.5 * np.sqrt(np.clip((-dd + a + b) * (dd + a - b) * (dd - a + b) * (dd + a + b), 0, None)))
        out[part] = area / (np.pi * small[part] ** 2)
    return out


def _prune_overlaps(x: np.ndarray, y: np.ndarray, r: np.ndarray, overlap: float) -> np.ndarray:
    """Greedy suppression in the given (strongest-first) order; returns kept indices."""
    n = len(x)
    if n <= 1 or overlap >= 1.0:
        return np.arange(n)
    pts = np.column_stack([x, y])
    pairs = cKDTree(pts).query_pairs(float(2 * r.max()), output_type="ndarray")
    if len(pairs) == 0:
        return np.arange(n)
    i, j = pairs[:, 0], pairs[:, 1]
    d = np.hypot(x[i] - x[j], y[i] - y[j])
    frac = _circle_overlap_fraction(d, r[i], r[j])
    bad = frac > overlap
    i, j = i[bad], j[bad]
    lo, hi = np.minimum(i, j), np.maximum(i, j)  # lo is the stronger (earlier) blob
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], hi[order]
    alive = np.ones(n, dtype=bool)
    starts = np.searchsorted(lo, np.arange(n))
    ends = np.searchsorted(lo, np.arange(n), side="right")
    for k in range(n):
        if alive[k] and ends[k] > starts[k]:
            alive[hi[starts[k]:ends[k]]] = False
    return np.flatnonzero(alive)
