"""Nuclear morphometrics from instance label maps, and their ROI / slide aggregates.

Per nucleus (:func:`measure_nuclei`), in physical units:

================= =====================================================================
``area_um2``      pixel count x mpp²
``perimeter_um``  Crofton perimeter (Cauchy–Crofton formula over 4 directions, within
                  about 1 % of the true perimeter of a digitised ellipse) x mpp
``major_axis_um`` ``4 sqrt(λ1)``, ``λ`` the eigenvalues of the pixel coordinates'
``minor_axis_um`` covariance (each pixel a unit square: + 1/12), so an ellipse of
                  semi-axes a, b gives 2a, 2b
``eccentricity``  ``sqrt(1 - λ2 / λ1)``
``orientation``   direction of the major axis, radians in [0, π), counter-clockwise from
                  the +x axis as displayed (image y points down) — SynthPath's
                  ``axis_angle`` convention
``solidity``      pixel count / pixel count of the convex hull of the pixel centres
                  (as scikit-image's ``regionprops``; about 0.97 for a digitised ellipse)
``circularity``   ``4 π area / perimeter²`` (1 for a disc)
``h_mean``,       mean and standard deviation of the haematoxylin concentration (OD units)
``h_sd``          over the nucleus
================= =====================================================================

Aggregates (:func:`aggregate_nuclei`) per ROI or slide include the mean nuclear area
(MNA) and its standard deviation (SDNA), the morphometric baselines of the
orientation-disentangled SE(2,N)-VAE paper (paper 0, Figs. 6–7), plus nuclear density.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from histolatent.errors import InputError
from histolatent.io.image import check_mpp

#: Morphometric columns written by :func:`measure_nuclei`.
MORPHOMETRIC_COLUMNS = ["area_um2", "perimeter_um", "major_axis_um", "minor_axis_um", "eccentricity",
                        "orientation", "solidity", "circularity", "h_mean", "h_sd"]


def _check_labels(labels: np.ndarray) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"labels: expected a 2-D integer instance map, got shape {lab.shape}, dtype {lab.dtype}")
    if lab.size and lab.min() < 0:
        raise InputError("labels: instance ids must be >= 0")
    return lab


def outline_polygon(mask: np.ndarray, *, tolerance_px: float = 0.5) -> np.ndarray:
    """Outer outline of a binary object as a closed ``(N, 2)`` polygon of (x, y), pixel-centre coordinates.

    The mask is up-sampled 2x (nearest) and its outer boundary traced (OpenCV), which puts
    the outline a quarter pixel inside the object's edge; the staircase is then simplified
    with Douglas–Peucker at ``tolerance_px``. The ring is closed (first vertex repeated
    last) and has a positive shoelace area in (x, y) — counter-clockwise in the
    coordinates, the right-hand rule of GeoJSON (RFC 7946) — i.e. clockwise as displayed,
    y pointing down. Of several pieces, the largest is traced.
    """
    m = np.asarray(mask).astype(np.uint8)
    if not m.any():
        return np.zeros((0, 2))
    up = cv2.resize(m, (2 * m.shape[1], 2 * m.shape[0]), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea)
    if tolerance_px > 0 and len(c) > 4:
        c = cv2.approxPolyDP(c, 2.0 * float(tolerance_px), True)
    xy = c.reshape(-1, 2).astype(np.float64) / 2.0 - 0.25  # 2x grid -> pixel-centre coordinates
    if len(xy) < 3:  # a one- or two-pixel object: its square
        x0, y0 = xy.min(axis=0) - 0.25
        x1, y1 = xy.max(axis=0) + 0.25
        xy = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    xy = np.vstack([xy, xy[:1]])
    if _signed_area(xy) < 0:
        xy = xy[::-1]
    return xy


def simplify_polygon(xy: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas–Peucker simplification of a closed ring ``(N, 2)``; stays closed (>= 4 vertices)."""
    if tolerance <= 0 or len(xy) <= 5:
        return xy
    c = cv2.approxPolyDP(xy[:-1].astype(np.float32).reshape(-1, 1, 2), float(tolerance), True).reshape(-1, 2)
    if len(c) < 3:
        return xy
    c = c.astype(np.float64)
    return np.vstack([c, c[:1]])


def _solidity(mask: np.ndarray) -> float:
    """Pixel count / pixel count of the convex hull of the pixel centres (as scikit-image)."""
    m8 = mask.astype(np.uint8)
    n = int(m8.sum())
    if n < 3:
        return 1.0
    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    pts = np.concatenate(contours).reshape(-1, 2)
    hull = cv2.convexHull(pts)
    filled = np.zeros_like(m8)
    cv2.fillConvexPoly(filled, hull, 1)
    return min(1.0, n / max(int(filled.sum()), 1))


def crofton_perimeters(labels: np.ndarray, n_labels: int | None = None) -> np.ndarray:
    """Crofton perimeter (4 directions, px) of every label of an instance map at once.

    Equal, label by label, to :func:`skimage.measure.perimeter_crofton` of that label's
    mask: the same 2x2-configuration lookup table, evaluated for each label in each 2x2
    window it occurs in.

    Returns
    -------
    ndarray, (n_labels + 1,)
        Perimeter of label ``i`` at index ``i`` (index 0 unused).
    """
    lab = np.pad(np.asarray(labels), 1)
    n = int(lab.max()) if n_labels is None else int(n_labels)
    pos = [lab[:-1, :-1], lab[:-1, 1:], lab[1:, :-1], lab[1:, 1:]]  # TL, TR, BL, BR
    bits = [8, 2, 4, 1]  # skimage's kernel [[0,0,0],[0,1,4],[0,2,8]] under convolution
    out = np.zeros(n + 1)
    for k in range(4):
        lk = pos[k]
        first = lk != 0
        for j in range(k):
            first &= pos[j] != lk
        if not first.any():
            continue
        code = np.zeros(lk.shape, dtype=np.int64)
        for j in range(4):
            code += bits[j] * (pos[j] == lk)
        out += np.bincount(lk[first].ravel(), _CROFTON4[code[first]].ravel(), minlength=n + 1)[: n + 1]
    return out


_S2 = math.sqrt(2.0)
_CROFTON4 = np.array([0, math.pi / 4 * (1 + 1 / _S2), math.pi / (4 * _S2), math.pi / (2 * _S2), 0,
                      math.pi / 4 * (1 + 1 / _S2), 0, math.pi / (4 * _S2), math.pi / 4, math.pi / 2,
                      math.pi / (4 * _S2), math.pi / (4 * _S2), math.pi / 4, math.pi / 2, 0, 0])


def _signed_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def measure_nuclei(labels: np.ndarray, *, mpp: float, image: np.ndarray | None = None,
                   haematoxylin: np.ndarray | None = None, origin: tuple[float, float] = (0.0, 0.0),
                   polygons: bool = True, polygon_tolerance_px: float = 0.5) -> pd.DataFrame:
    """Morphometrics of every nucleus of an instance map (see the module docstring).

    Parameters
    ----------
    labels : ndarray of int, (H, W)
        Instance ids, 0 = background (ids need not be consecutive). Not modified.
    mpp : float
        Microns per pixel of ``labels``.
    image : ndarray, (H, W, 3), optional
        RGB the haematoxylin statistics are computed from (colour deconvolution).
    haematoxylin : ndarray, (H, W), optional
        Precomputed haematoxylin map (takes precedence over ``image``).
    origin : (float, float)
        Added to the x, y coordinates (e.g. the tile's level-0 offset, px).
    polygons : bool
        Add a ``polygon`` column: flat float64 arrays ``[x0, y0, x1, y1, ...]`` of the closed
        outline (pixel-centre coordinates plus ``origin``).

    Returns
    -------
    pandas.DataFrame
        One row per nucleus, in increasing label order: ``label``, ``x``, ``y`` (centroid,
        px, pixel-centre convention), then :data:`MORPHOMETRIC_COLUMNS` (haematoxylin
        columns are NaN without ``image``/``haematoxylin``), then ``polygon``.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((40, 40), np.int32)
    >>> yy, xx = np.mgrid[:40, :40]
    >>> lab[(xx - 20) ** 2 + (yy - 20) ** 2 <= 100] = 1
    >>> t = measure_nuclei(lab, mpp=0.5)
    >>> round(float(t.area_um2[0]) / (np.pi * 5 ** 2), 2), round(float(t.eccentricity[0]), 2)
    (1.01, 0.0)
    """
    mpp = check_mpp(mpp)
    lab = _check_labels(labels)
    h = None
    if haematoxylin is not None:
        h = np.asarray(haematoxylin, dtype=np.float32)
        if h.shape != lab.shape:
            raise InputError(f"haematoxylin: expected shape {lab.shape}, got {h.shape}")
    elif image is not None:
        from histolatent.nuclei.haematoxylin import haematoxylin_from_rgb

        img = np.asarray(image)
        if img.shape[:2] != lab.shape:
            raise InputError(f"image: expected {lab.shape[0]}x{lab.shape[1]} px like labels, got shape {img.shape}")
        h = haematoxylin_from_rgb(img)
    cols = ["label", "x", "y", *MORPHOMETRIC_COLUMNS] + (["polygon"] if polygons else [])
    flat = lab.ravel()
    nmax = int(flat.max()) if flat.size else 0
    if nmax == 0:
        return _empty_table(cols)
    area = np.bincount(flat, minlength=nmax + 1).astype(np.float64)
    ids = np.flatnonzero(area[1:]) + 1
    hh, ww = lab.shape
    yy, xx = np.mgrid[:hh, :ww]
    xf, yf = xx.ravel().astype(np.float64), yy.ravel().astype(np.float64)
    sx = np.bincount(flat, xf, nmax + 1)
    sy = np.bincount(flat, yf, nmax + 1)
    sxx = np.bincount(flat, xf * xf, nmax + 1)
    syy = np.bincount(flat, yf * yf, nmax + 1)
    sxy = np.bincount(flat, xf * yf, nmax + 1)
    a = area[ids]
    cx, cy = sx[ids] / a, sy[ids] / a
    # central second moments of unit-square pixels (+1/12 per axis)
    mxx = sxx[ids] / a - cx**2 + 1.0 / 12.0
    myy = syy[ids] / a - cy**2 + 1.0 / 12.0
    mxy = sxy[ids] / a - cx * cy
    tr, det = mxx + myy, mxx * myy - mxy**2
    disc = np.sqrt(np.maximum(tr**2 / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, np.maximum(tr / 2 - disc, 0.0)
    ecc = np.sqrt(np.clip(1.0 - l2 / np.maximum(l1, 1e-12), 0.0, 1.0))
    # angle of the major axis in image coordinates (y down) is clockwise as displayed
    theta_img = 0.5 * np.arctan2(2.0 * mxy, mxx - myy)
    orientation = np.mod(-theta_img, np.pi)
    if h is not None:
        hf = h.ravel().astype(np.float64)
        s1 = np.bincount(flat, hf, nmax + 1)[ids]
        s2 = np.bincount(flat, hf * hf, nmax + 1)[ids]
        h_mean = s1 / a
        h_sd = np.sqrt(np.maximum(s2 / a - h_mean**2, 0.0))
    else:
        h_mean = h_sd = np.full(len(ids), np.nan)
    perim = crofton_perimeters(lab, nmax)[ids]
    solidity = np.ones(len(ids))
    polys: list[np.ndarray] = []
    slices = ndi.find_objects(lab)
    for k, i in enumerate(ids):
        sl = slices[i - 1]
        m = lab[sl] == i
        solidity[k] = _solidity(m)
        poly = outline_polygon(m, tolerance_px=0.0)
        if polygons:
            poly = simplify_polygon(poly, polygon_tolerance_px)
            polys.append((poly + np.array([sl[1].start + origin[0], sl[0].start + origin[1]])).ravel())
    perim_um = perim * mpp
    area_um2 = a * mpp * mpp
    with np.errstate(divide="ignore", invalid="ignore"):
        circ = np.where(perim_um > 0, 4 * math.pi * area_um2 / perim_um**2, np.nan)
    out = pd.DataFrame({
        "label": ids.astype(np.int64), "x": cx + origin[0], "y": cy + origin[1],
        "area_um2": area_um2, "perimeter_um": perim_um,
        "major_axis_um": 4 * np.sqrt(l1) * mpp, "minor_axis_um": 4 * np.sqrt(l2) * mpp,
        "eccentricity": ecc, "orientation": orientation, "solidity": solidity, "circularity": circ,
        "h_mean": h_mean, "h_sd": h_sd,
    })
    if polygons:
        out["polygon"] = polys
    return out


def _empty_table(cols: list[str]) -> pd.DataFrame:
    dtypes = {c: (np.int64 if c == "label" else object if c == "polygon" else np.float64) for c in cols}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


def aggregate_nuclei(cells: pd.DataFrame, *, by: str | list[str] | None = "slide_id",
                     tissue_area_um2: float | dict | None = None) -> pd.DataFrame:
    """Per-ROI / per-slide aggregates of a cell table.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cell table with at least ``area_um2`` (other morphometric columns are optional).
    by : str, list of str or None
        Grouping columns (``"slide_id"``, ``["slide_id", "roi_id"]``); None aggregates all.
    tissue_area_um2 : float or dict, optional
        Tissue area per group (or one number for all) for ``density_per_mm2``.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``n_nuclei``, ``mna_um2`` (mean nuclear area, paper 0's MNA),
        ``sdna_um2`` (its standard deviation, SDNA; ddof = 1), ``median_area_um2``, and the
        mean of every other morphometric column present (``mean_<column>``).
    """
    if "area_um2" not in cells.columns:
        raise InputError("cells: the table has no 'area_um2' column; measure the nuclei first")
    keys = [by] if isinstance(by, str) else list(by or [])
    missing = [k for k in keys if k not in cells.columns]
    if missing:
        raise InputError(f"cells: grouping columns {missing} are not in the table")
    extra = [c for c in MORPHOMETRIC_COLUMNS if c in cells.columns and c not in ("area_um2", "orientation")]
    groups = cells.groupby(keys, sort=True, dropna=False) if keys else [((), cells)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        area = g["area_um2"].to_numpy(dtype=np.float64)
        row = dict(zip(keys, key, strict=True))
        row.update({"n_nuclei": int(len(g)), "mna_um2": float(area.mean()) if len(area) else np.nan,
                    "sdna_um2": float(area.std(ddof=1)) if len(area) > 1 else np.nan,
                    "median_area_um2": float(np.median(area)) if len(area) else np.nan})
        for c in extra:
            row[f"mean_{c}"] = float(g[c].mean())
        if tissue_area_um2 is not None:
            ta = tissue_area_um2.get(key[0] if len(key) == 1 else key) if isinstance(tissue_area_um2, dict) \
                else tissue_area_um2
            row["density_per_mm2"] = float(len(g) / (ta / 1e6)) if ta else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
