"""Classical instance segmentation: haematoxylin threshold + marker-controlled watershed.

1. Foreground (:func:`~histolatent.nuclei.foreground.foreground_mask`): the smoothed
   haematoxylin channel above a threshold (Otsu's on the stained pixels by default), holes
   filled, specks removed (sizes in µm²).
2. Markers: LoG detections (:func:`~histolatent.nuclei.detect.detect_log`) inside the
   foreground, or the peaks of its distance transform; a foreground component that gets no
   marker becomes one nucleus of its own.
3. Watershed of the negative distance transform from the markers, restricted to the
   foreground, so touching nuclei are split along the neck between them.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from histolatent.errors import InputError
from histolatent.io.image import check_mpp
from histolatent.nuclei.detect import detect_log
from histolatent.nuclei.foreground import foreground_mask
from histolatent.nuclei.haematoxylin import haematoxylin_map


def distance_markers(fg: np.ndarray, *, mpp: float, min_distance_um: float = 3.0,
                     h_um: float = 0.7) -> np.ndarray:
    """Marker points ``(N, 2)`` (x, y) at the peaks of the foreground's distance transform.

    A peak must rise ``h_um`` above its saddle to its neighbours (h-maxima, so one
    nucleus with a bumpy outline gets one marker) and be ``min_distance_um`` from a higher
    peak.
    """
    mpp = check_mpp(mpp)
    dist = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 5)
    h = h_um / mpp
    size = max(3, 2 * int(round(min_distance_um / mpp)) + 1)
    # h-maxima: reconstruction by dilation of (dist - h) under dist
    from skimage.morphology import reconstruction

    rec = reconstruction(np.maximum(dist - h, 0), dist, method="dilation")
    peaks_region = (dist - rec) > 1e-3
    dil = cv2.dilate(dist, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    peaks = peaks_region & (dist >= dil) & fg
    lab, n = ndi.label(peaks, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros((0, 2))
    cy, cx = np.asarray(ndi.center_of_mass(peaks, lab, np.arange(1, n + 1))).reshape(-1, 2).T
    return np.column_stack([cx, cy])


def instances_from_markers(fg: np.ndarray, markers_xy: np.ndarray, *, elevation: np.ndarray | None = None,
                           min_area_px: float = 0.0, max_radius_px: float | None = None) -> np.ndarray:
    """Watershed of the foreground from marker points; unmarked components get one label each.

    Parameters
    ----------
    fg : ndarray of bool, (H, W)
    markers_xy : ndarray, (N, 2)
        Marker coordinates (x, y), px; markers outside ``fg`` are ignored.
    elevation : ndarray, (H, W), optional
        The landscape to flood (default: the negative distance transform of ``fg``).
    min_area_px : float
        Segments smaller than this are removed.
    max_radius_px : float, optional
        No segment reaches farther than this from its marker; a segment that had to lose
        more than a fifth of its area to this limit, and an unmarked component larger than
        a disc of this radius, are dropped (keratin, folds, vessel walls are not nuclei).

    Returns
    -------
    ndarray of int32, (H, W)
        Instance labels 1..n (consecutive), 0 = background.
    """
    fg = np.asarray(fg, dtype=bool)
    hh, ww = fg.shape
    markers = np.zeros(fg.shape, dtype=np.int32)
    pts = np.asarray(markers_xy, dtype=np.float64).reshape(-1, 2)
    if len(pts):
        xi = np.clip(np.rint(pts[:, 0]).astype(np.int64), 0, ww - 1)
        yi = np.clip(np.rint(pts[:, 1]).astype(np.int64), 0, hh - 1)
        ok = fg[yi, xi]
        markers[yi[ok], xi[ok]] = np.arange(1, int(ok.sum()) + 1, dtype=np.int32)
    n_mark = int(markers.max())
    comp, n_comp = ndi.label(fg, structure=np.ones((3, 3)))
    if n_comp:
        has = np.zeros(n_comp + 1, dtype=bool)
        has[comp[markers > 0]] = True
        lonely = np.flatnonzero(~has[1:]) + 1
        if max_radius_px is not None and len(lonely):
            area = np.bincount(comp.ravel(), minlength=n_comp + 1)
            lonely = lonely[area[lonely] <= np.pi * float(max_radius_px) ** 2]
        if len(lonely):
            # one marker per unmarked component, at its deepest interior point
            dist = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 3)
            pos = ndi.maximum_position(dist, comp, lonely)
            for k, (y, x) in enumerate(pos):
                markers[y, x] = n_mark + 1 + k
    if markers.max() == 0:
        return np.zeros(fg.shape, dtype=np.int32)
    if elevation is None:
        elevation = -cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 5)
    lab = watershed(elevation, markers, mask=fg).astype(np.int32)
    if max_radius_px is not None:
        # each segment keeps only the pixels within max_radius_px of its own marker
        n_lab = int(markers.max())
        my, mx = np.zeros(n_lab + 1), np.zeros(n_lab + 1)
        yy, xx = np.nonzero(markers)
        my[markers[yy, xx]], mx[markers[yy, xx]] = yy, xx
        py, px = np.nonzero(lab)
        li = lab[py, px]
        far = (py - my[li]) ** 2 + (px - mx[li]) ** 2 > float(max_radius_px) ** 2
        # a segment that overflows its disc by more than a fifth is part of a larger dark
        # structure (keratin, a fold, a vessel wall), not a nucleus: drop it whole
        total = np.bincount(li, minlength=n_lab + 1)
        over = np.bincount(li[far], minlength=n_lab + 1)
        drop = over > 0.2 * np.maximum(total - over, 1)
        lab[py[far | drop[li]], px[far | drop[li]]] = 0
    return relabel_sequential(lab, min_area_px=min_area_px)


def relabel_sequential(labels: np.ndarray, *, min_area_px: float = 0.0) -> np.ndarray:
    """Labels renumbered 1..n in order of first appearance (raster order); small ones dropped."""
    lab = np.asarray(labels)
    area = np.bincount(lab.ravel())
    keep = area >= max(float(min_area_px), 1.0)
    keep[0] = False
    new = np.zeros(len(area), dtype=np.int32)
    new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new[lab]


def segment_watershed(image: np.ndarray, *, mpp: float, markers: str | np.ndarray | pd.DataFrame = "log",
                      threshold: float | None = None, min_area_um2: float = 6.0, max_radius_um: float | None = 12.0,
                      smooth_um: float = 0.5,
                      stain_matrix="macenko", log_options: dict | None = None) -> np.ndarray:
    """Nucleus instances by marker-controlled watershed on the haematoxylin channel.

    Parameters
    ----------
    image : ndarray
        ``(H, W, 3)`` RGB H&E or an ``(H, W)`` haematoxylin map; never modified.
    mpp : float
        Microns per pixel.
    markers : "log", "distance", (N, 2) array or detection table
        Seeds: LoG detections (default), distance-transform peaks, or given points (x, y).
    threshold : float, optional
        Foreground haematoxylin level (default: Otsu, see :func:`foreground_mask`).
    min_area_um2 : float
        Smallest nucleus kept, µm².
    max_radius_um : float, optional
        No nucleus reaches farther than this from its seed, µm; larger unseeded foreground
        components are dropped (see :func:`instances_from_markers`). None: no limit.
    smooth_um : float
        Smoothing before thresholding, µm.
    stain_matrix
        See :func:`~histolatent.nuclei.haematoxylin.haematoxylin_from_rgb`; default
        "macenko" (the image's own stain vectors).
    log_options : dict, optional
        Keyword arguments of :func:`~histolatent.nuclei.detect.detect_log`.

    Returns
    -------
    ndarray of int32, (H, W)
        Instance labels 1..n, 0 = background.
    """
    mpp = check_mpp(mpp)
    h = haematoxylin_map(image, stain_matrix=stain_matrix)
    fg = foreground_mask(h, mpp=mpp, threshold=threshold, smooth_um=smooth_um, min_area_um2=min_area_um2)
    if isinstance(markers, str):
        if markers == "log":
            det = detect_log(h, mpp=mpp, **(log_options or {}))
            pts = det[["x", "y"]].to_numpy()
        elif markers == "distance":
            pts = distance_markers(fg, mpp=mpp)
        else:
            raise InputError(f"markers: expected 'log', 'distance' or points, got {markers!r}")
    elif isinstance(markers, pd.DataFrame):
        if not {"x", "y"} <= set(markers.columns):
            raise InputError("markers: a table of markers needs columns 'x' and 'y'")
        pts = markers[["x", "y"]].to_numpy(dtype=np.float64)
    else:
        pts = np.asarray(markers, dtype=np.float64)
        if pts.size and (pts.ndim != 2 or pts.shape[1] != 2):
            raise InputError(f"markers: expected an (N, 2) array of (x, y), got shape {pts.shape}")
    min_px = min_area_um2 / (mpp * mpp)
    return instances_from_markers(fg, pts, min_area_px=min_px,
                                  max_radius_px=None if max_radius_um is None else max_radius_um / mpp)
