"""The haematoxylin channel of an H&E image by colour deconvolution (Ruifrok & Johnston 2001).

Nuclei are where haematoxylin is: every classical detector and segmenter in
:mod:`histolatent.nuclei` works on the haematoxylin concentration map, in decadic
optical-density units (the convention of :mod:`histolatent.stain`).
"""

from __future__ import annotations

import numpy as np

from histolatent.errors import InputError
from histolatent.io.image import rgb8_from_any
from histolatent.stain.optical_density import HE_RUIFROK, od_lut


def _stain_rows(stain_matrix: np.ndarray | str | None, rgb: np.ndarray) -> np.ndarray:
    if stain_matrix is None or (isinstance(stain_matrix, str) and stain_matrix == "ruifrok"):
        return HE_RUIFROK
    if isinstance(stain_matrix, str):
        if stain_matrix != "macenko":
            raise InputError(f"stain_matrix: expected an array, 'ruifrok' or 'macenko', got {stain_matrix!r}")
        from histolatent.stain.macenko import macenko_stain_matrix

        try:
            return macenko_stain_matrix(rgb)
        except InputError:  # too little tissue to estimate: fall back to the published vectors
            return HE_RUIFROK
    m = np.asarray(stain_matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != 3 or m.shape[0] not in (2, 3) or not np.isfinite(m).all():
        raise InputError(f"stain_matrix: expected a finite (2, 3) or (3, 3) array of OD rows, got shape {m.shape}")
    return m


def haematoxylin_from_rgb(rgb: np.ndarray, *, stain_matrix: np.ndarray | str | None = None,
                          background: float = 255.0) -> np.ndarray:
    """Haematoxylin concentration of each pixel (colour deconvolution).

    Parameters
    ----------
    rgb : ndarray, (H, W, 3)
        H&E image, any input :func:`~histolatent.io.image.rgb8_from_any` accepts; never modified.
    stain_matrix : (2, 3) or (3, 3) array, "ruifrok", "macenko" or None
        OD rows, haematoxylin first. None or "ruifrok" uses Ruifrok & Johnston's vectors;
        "macenko" estimates the image's own (falls back to Ruifrok on too little tissue).
    background : float
        Glass intensity I0 (grey levels).

    Returns
    -------
    ndarray, (H, W) float32
        Least-squares haematoxylin concentration, decadic OD units (0 on glass). It equals
        the first channel of :func:`histolatent.stain.hed_from_rgb` for the same matrix.

    Notes
    -----
    OD is a per-channel lookup, so the concentration is ``L_R[r] + L_G[g] + L_B[b]`` with
    three 256-entry tables (the first row of the pseudo-inverse times the OD table): one
    pass over the image, no float copy of it.
    """
    img = rgb8_from_any(rgb, name="rgb")
    rows = _stain_rows(stain_matrix, img)
    w = np.linalg.pinv(rows.T)[0]  # (3,) weights: c_H = od @ w
    lut = np.maximum(od_lut(background), 0.0).astype(np.float64)  # od_from_rgb clips at 0
    tables = (lut[None, :] * w[:, None]).astype(np.float32)  # (3, 256)
    return tables[0][img[..., 0]] + tables[1][img[..., 1]] + tables[2][img[..., 2]]


def haematoxylin_map(image: np.ndarray, *, stain_matrix: np.ndarray | str | None = "macenko") -> np.ndarray:
    """``(H, W)`` float32 haematoxylin: from an RGB(A) image, or an ``(H, W)`` float map validated.

    What the detectors and segmenters of :mod:`histolatent.nuclei` take: an H&E image, or a
    haematoxylin map computed once and passed on. ``stain_matrix`` is as in
    :func:`haematoxylin_from_rgb` (default: the image's own Macenko vectors).
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
            raise InputError(f"image: a 2-D input must be a finite float haematoxylin map, got dtype {arr.dtype}")
        return arr.astype(np.float32, copy=False)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return haematoxylin_from_rgb(arr, stain_matrix=stain_matrix)
    raise InputError(f"image: expected (H, W, 3) RGB or an (H, W) haematoxylin map, got shape {arr.shape}")
