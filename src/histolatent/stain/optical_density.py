"""Optical density (Beer–Lambert) and colour deconvolution, numpy core.

``OD = -log10(I / I0)`` per channel. An H&E image in OD space is a non-negative mix of
stain vectors: ``OD = C @ S`` with concentrations ``C`` (N, k) and unit stain rows ``S`` (k, 3).

Units: OD is in **log10** units throughout histolatent. Reference implementations of
Macenko and Vahadane (and torchstain, StainTools) use natural-log OD; thresholds and
sparsity weights quoted from them are divided by ``ln 10`` here (e.g. Macenko's
``beta = 0.15`` becomes :data:`BETA_MACENKO` = 0.0651); stain directions are unaffected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from histolatent.errors import InputError
from histolatent.io.image import rgb8_from_any

#: Ruifrok & Johnston (2001) H&E stain OD vectors (rows: haematoxylin, eosin), unit norm.
HE_RUIFROK = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]], dtype=np.float64)
HE_RUIFROK = HE_RUIFROK / np.linalg.norm(HE_RUIFROK, axis=1, keepdims=True)

#: Macenko et al. (2009) reference H&E matrix as commonly used for normalisation targets.
HE_MACENKO_REF = np.array([[0.5626, 0.7201, 0.4062], [0.2159, 0.8012, 0.5581]], dtype=np.float64)
HE_MACENKO_REF = HE_MACENKO_REF / np.linalg.norm(HE_MACENKO_REF, axis=1, keepdims=True)

_EPS = 1.0  # grey levels added before the log, so 0 maps to a finite OD

#: Macenko's transparency threshold 0.15 (natural-log OD) in log10 units.
BETA_MACENKO = 0.15 / np.log(10.0)


def od_from_rgb(rgb: np.ndarray, *, background: float = 255.0, clip: bool = True) -> np.ndarray:
    """Optical density (float32) of a uint8 RGB image; ``background`` is I0.

    ``OD = log10((I0 + 1) / (I + 1))``: the +1 keeps black finite and maps ``I0`` to 0.
    With ``clip`` (default) pixels brighter than ``I0`` get 0; without it they get a small
    negative OD, so that :func:`rgb_from_od` round-trips them exactly.
    """
    rgb = rgb8_from_any(rgb, name="rgb")
    return od_lut(background)[rgb] if not clip else np.maximum(od_lut(background)[rgb], 0.0)


def od_lut(background: float = 255.0) -> np.ndarray:
    """OD of each grey level 0..255 (float32, unclipped): ``log10((I0 + 1) / (I + 1))``."""
    levels = np.arange(256, dtype=np.float64)
    return np.log10((background + _EPS) / (levels + _EPS)).astype(np.float32)


def rgb_from_od(od: np.ndarray, *, background: float = 255.0) -> np.ndarray:
    """Inverse of :func:`od_from_rgb`, rounded and clipped to uint8."""
    od = np.asarray(od, dtype=np.float32)
    rgb = (background + _EPS) * np.power(np.float32(10.0), -od) - _EPS
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def tissue_pixel_mask(rgb: np.ndarray, *, od_threshold: float = BETA_MACENKO,
                      background: float = 255.0, dark_level: int = 8) -> np.ndarray:
    """Pixels that carry stain: OD >= ``od_threshold`` in every channel, and not near black.

    This is Macenko's transparency criterion (all channels above ``beta``), plus the
    exclusion of pixels darker than ``dark_level`` in every channel (scanner borders,
    black ink, an all-black tile), whose colour says nothing about the stains.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool.
    """
    rgb = rgb8_from_any(rgb, name="rgb")
    od = od_lut(background)[rgb]
    return (od.min(axis=-1) >= od_threshold) & (rgb.max(axis=-1) >= dark_level)


def check_stain_matrix(stain_matrix: Any, *, name: str = "stain_matrix", rows: int | None = None) -> np.ndarray:
    """A stain matrix (one OD stain vector per row, ``(k, 3)``) that can separate its stains.

    Returns it as float64; raises :class:`InputError` naming ``name`` when it is not numeric,
    not of shape ``(k, 3)`` (``(rows, 3)`` when given), holds NaN or inf, has a zero (or
    negative-OD) row, or is rank-deficient: rows so nearly parallel (smallest singular value
    below 1e-3 of the largest) that the least-squares concentrations are meaningless, which
    would otherwise give a uniform grey or single-stain image without a word.

    >>> check_stain_matrix([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]]).shape
    (2, 3)
    """
    try:
        s = np.asarray(stain_matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name}: not a numeric matrix") from None
    want = f"({rows}, 3)" if rows else "(k, 3)"
    if s.ndim != 2 or s.shape[1] != 3 or s.shape[0] < 1 or (rows is not None and s.shape[0] != rows):
        raise InputError(f"{name}: expected shape {want}, got {s.shape}")
    if not np.isfinite(s).all():
        raise InputError(f"{name}: contains NaN or inf")
    norms = np.linalg.norm(s, axis=1)
    if (norms < 1e-6).any() or (s.sum(axis=1) <= 0).any():
        raise InputError(f"{name}: row(s) {np.flatnonzero((norms < 1e-6) | (s.sum(axis=1) <= 0)).tolist()} are zero "
                         "or negative; every stain needs a positive optical-density vector")
    sv = np.linalg.svd(s / norms[:, None], compute_uv=False)
    if sv[-1] < 1e-3 * sv[0]:
        raise InputError(f"{name}: rank-deficient (the stain vectors are parallel, singular values "
                         f"{np.round(sv, 6).tolist()}); the stains cannot be told apart")
    return s


def concentrations_from_od(od: np.ndarray, stain_matrix: np.ndarray) -> np.ndarray:
    """Least-squares concentrations ``C`` with ``OD ≈ C @ S``; shape ``od.shape[:-1] + (k,)``."""
    s = check_stain_matrix(stain_matrix)
    flat = np.asarray(od, dtype=np.float64).reshape(-1, 3)
    c = np.linalg.lstsq(s.T, flat.T, rcond=None)[0].T  # (N, k)
    return c.reshape(*od.shape[:-1], s.shape[0]).astype(np.float32)


def od_from_concentrations(c: np.ndarray, stain_matrix: np.ndarray) -> np.ndarray:
    """``OD = C @ S``: concentrations (..., k) and stain rows (k, 3) -> OD (..., 3)."""
    return np.asarray(c, dtype=np.float32) @ np.asarray(stain_matrix, dtype=np.float32)


def hed_from_rgb(rgb: np.ndarray, stain_matrix: np.ndarray = HE_RUIFROK) -> np.ndarray:
    """Haematoxylin and eosin concentration channels (H, W, 2) by colour deconvolution."""
    return concentrations_from_od(od_from_rgb(rgb), stain_matrix)
