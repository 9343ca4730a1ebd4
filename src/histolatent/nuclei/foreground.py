"""The nuclear foreground of a haematoxylin map: smoothed, thresholded, holes filled, specks removed.

Used by the LoG detector (a blob counts only inside the foreground) and by the watershed
(the foreground is what it floods). Sizes are in µm and µm², converted with ``mpp``.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from histolatent.io.image import check_mpp


def foreground_mask(h: np.ndarray, *, mpp: float, threshold: float | None = None, smooth_um: float = 0.5,
                    min_area_um2: float = 6.0, max_hole_um2: float = 30.0,
                    min_threshold: float = 0.12) -> np.ndarray:
    """Nuclear foreground of a haematoxylin map.

    Parameters
    ----------
    h : ndarray, (H, W) float
        Haematoxylin concentration (OD units). Not modified.
    mpp : float
        Microns per pixel.
    threshold : float, optional
        Haematoxylin level of the foreground; default Otsu's threshold over the pixels with
        any haematoxylin (> 0.02), but never below ``min_threshold``.
    smooth_um : float
        Gaussian sigma (µm) applied before thresholding.
    min_area_um2, max_hole_um2 : float
        Components smaller than ``min_area_um2`` are dropped; holes smaller than
        ``max_hole_um2`` are filled (vesicular nuclei have pale centres).
    min_threshold : float
        Floor of the automatic threshold: a tile without nuclei must not get half its
        cytoplasm as foreground.

    Returns
    -------
    ndarray of bool, (H, W)
    """
    mpp = check_mpp(mpp)
    hs = _smooth(h, smooth_um / mpp)
    if threshold is None:
        vals = hs[hs > 0.02]
        t = float(threshold_otsu(vals)) if vals.size > 16 and np.ptp(vals) > 0 else min_threshold
        t = max(t, float(min_threshold))
    else:
        t = float(threshold)
    fg = hs > t
    px2 = mpp * mpp
    fg = _fill_small_holes(fg, max_hole_um2 / px2)
    return _remove_small(fg, min_area_um2 / px2)


def _smooth(h: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px <= 0.2:
        return h
    return cv2.GaussianBlur(h, (0, 0), sigmaX=sigma_px, sigmaY=sigma_px, borderType=cv2.BORDER_REFLECT)


def _remove_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return keep[lab]


def _fill_small_holes(mask: np.ndarray, max_px: float) -> np.ndarray:
    holes = ~mask
    n, lab, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=4)
    small = stats[:, cv2.CC_STAT_AREA] < max_px
    # a hole touching the border is background, not a hole
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    small[border] = False
    small[0] = False  # label 0 is the mask itself
    return mask | (small[lab] & holes)
