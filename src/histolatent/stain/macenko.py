"""Macenko stain normalisation (Macenko et al., ISBI 2009), numpy core + batched torch path.

Stain vectors are found in optical-density space from the stained pixels (OD >= beta in
every channel): project them onto the plane of the two leading eigenvectors of their
covariance, take the ``alpha`` and ``100 - alpha`` percentiles of the angle in that plane,
and turn those two extreme angles back into unit OD vectors; the one with the larger red
component is haematoxylin. Concentrations are least-squares coefficients on the two
vectors; their 99th percentiles set the scale (over all pixels, as in Macenko's code, or
only the stained ones with ``percentile_pixels="stained"``; a user mask restricts both).
Normalising maps each
image's concentrations, rescaled to the target's 99th percentiles, through the target's
stain vectors:

``OD_out = OD @ pinv(S_src) @ diag(maxC_tgt / maxC_src) @ S_tgt``

which is one 3 x 3 matrix per image, so the batched path costs a matrix product and an
exponential per pixel.

Conventions follow Macenko's reference code (and torchstain): light intensity
``I0 = 240``, ``alpha = 1`` %, ``beta = 0.15`` in natural-log OD (:data:`BETA_MACENKO` in our
log10 units), and OD below zero (pixels brighter than I0) kept unclipped so that bright
background round-trips. Percentiles are estimated on at most ``max_fit_pixels`` pixels
per image (a fixed raster stride, identical on both paths), from histograms
(:mod:`~histolatent.stain.quantile`) rather than by sorting.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from histolatent.errors import InputError
from histolatent.io.image import rgb8_from_any
from histolatent.stain.base import StainMatrixNormalizer, register_normalizer
from histolatent.stain.estimation import (
    C_BINS,
    MAX_STAIN_COS,
    MIN_EIG_RATIO,
    PHI_BINS,
    PHI_RANGE,
    subsample_index,
)
from histolatent.stain.optical_density import BETA_MACENKO, od_lut
from histolatent.stain.quantile import hist_quantile


def _stain_matrix_from_od(od_t: np.ndarray, alpha: float) -> np.ndarray | None:
    """Macenko's (2, 3) stain matrix from stained OD pixels ``(n, 3)``; None if degenerate."""
    if od_t.shape[0] < 3:
        return None
    cov = np.cov(od_t.T.astype(np.float64))
    if not np.isfinite(cov).all():
        return None
    evals, evecs = np.linalg.eigh(cov)
    if evals[2] <= 1e-12 or evals[1] <= MIN_EIG_RATIO * evals[2]:
        return None
    e1 = evecs[:, 2] * np.sign(evecs[:, 2].sum() or 1.0)
    plane = np.stack([evecs[:, 1], e1], axis=1)  # (3, 2)
    proj = od_t.astype(np.float64) @ plane  # (n, 2)
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = hist_quantile(phi, [alpha / 100.0, 1.0 - alpha / 100.0], bins=PHI_BINS, value_range=PHI_RANGE)
    v_lo = plane @ np.array([np.cos(lo), np.sin(lo)])
    v_hi = plane @ np.array([np.cos(hi), np.sin(hi)])
    s = np.stack([v_lo, v_hi]) if v_lo[0] > v_hi[0] else np.stack([v_hi, v_lo])
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    if abs(float(s[0] @ s[1])) > MAX_STAIN_COS:
        return None
    return s


def concentration_bounds(p: np.ndarray, od_lo: float, od_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``od @ p`` over every OD in ``[od_lo, od_hi]^3``: ``p`` ``(3, k)`` -> (lo, hi) ``(k,)``.

    A fixed histogram range for the concentration percentile that needs no pass over the
    pixels (and is the same on both paths).
    """
    a, b = p * od_lo, p * od_hi
    return np.minimum(a, b).sum(axis=0), np.maximum(a, b).sum(axis=0)


def _max_concentrations(od_t: np.ndarray, s: np.ndarray, background: float) -> np.ndarray | None:
    if od_t.shape[0] == 0:
        return None
    p = np.linalg.pinv(s)  # (3, 2)
    c = od_t.astype(np.float64) @ p  # (n, 2)
    lut = od_lut(background)
    lo, hi = concentration_bounds(p, float(lut[255]), float(lut[0]))
    max_c = np.array([hist_quantile(c[:, k], [0.99], bins=C_BINS, value_range=(lo[k], hi[k]))[0]
                      for k in range(2)])
    if not np.all(np.isfinite(max_c)) or np.any(max_c <= 1e-6):
        return None
    return max_c


def macenko_stain_matrix(image: np.ndarray, *, mask: np.ndarray | None = None, alpha: float = 1.0,
                         beta: float = BETA_MACENKO, background: float = 240.0,
                         max_fit_pixels: int | None = 262144) -> np.ndarray:
    """Macenko's H&E stain matrix of one image.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` RGB (any dtype :func:`~histolatent.io.image.rgb8_from_any`
        accepts).
    mask : numpy.ndarray, optional
        ``(H, W)`` bool; only these pixels (and only stained ones) are used.
    alpha : float
        Angle percentile (per cent).
    beta : float
        OD threshold (log10 units) in every channel for a pixel to count as stained.
    background : float
        Transmitted light intensity I0.
    max_fit_pixels : int, optional
        Raster-stride subsample size for the estimate.

    Returns
    -------
    numpy.ndarray
        ``(2, 3)`` unit rows in OD space: haematoxylin, eosin.

    Raises
    ------
    InputError
        Too few stained pixels, or degenerate colours (grey, one colour).
    """
    norm = MacenkoNormalizer(alpha=alpha, beta=beta, background=background,
                             max_fit_pixels=max_fit_pixels, min_tissue_pixels=3, min_tissue_fraction=0.0)
    norm.fit(image, masks=None if mask is None else [mask])
    return norm.stain_matrix_.copy()


@register_normalizer("macenko")
class MacenkoNormalizer(StainMatrixNormalizer):
    """Macenko stain normalisation.

    Parameters
    ----------
    alpha : float
        Angle percentile in per cent (1 in Macenko's code).
    beta : float
        Per-channel OD threshold (log10 units) for stained pixels; default is Macenko's 0.15
        in natural-log units.
    background : float
        Transmitted light intensity I0 (240 in Macenko's code).
    max_fit_pixels : int, optional
        At most this many pixels (raster stride) per image for the estimate.
    percentile_pixels : {"all", "stained"}
        Pixels whose 99th-percentile concentration sets the scale: all (inside the mask, if
        any; Macenko's and torchstain's choice) or only the stained ones, which makes the
        scale independent of how much background a tile holds.
    min_tissue_fraction, min_tissue_pixels
        See :class:`~histolatent.stain.base.StainNormalizer`.

    Attributes
    ----------
    stain_matrix_ : numpy.ndarray
        ``(2, 3)`` target stain vectors (H, E) after ``fit``.
    max_concentrations_ : numpy.ndarray
        ``(2,)`` target 99th-percentile concentrations (log10 OD units).

    Example
    -------
    >>> from histolatent.synth import render_tile
    >>> target = render_tile(128, seed=1, tissue="tumour").rgb
    >>> source = render_tile(128, seed=2, stain=7, tissue="tumour").rgb
    >>> norm = MacenkoNormalizer().fit(target)
    >>> norm.transform(source).shape              # numpy HWC in, same out; (N, 3, H, W) tensors too
    (128, 128, 3)
    """

    def __init__(self, *, alpha: float = 1.0, beta: float = BETA_MACENKO, background: float = 240.0,
                 max_fit_pixels: int | None = 262144, percentile_pixels: str = "all",
                 min_tissue_fraction: float = 0.02, min_tissue_pixels: int = 100) -> None:
        super().__init__(min_tissue_fraction=min_tissue_fraction, min_tissue_pixels=min_tissue_pixels)
        if not 0.0 <= alpha < 50.0:
            raise InputError(f"alpha must lie in [0, 50), got {alpha}")
        if not 0.0 < background <= 255.0:
            raise InputError(f"background must lie in (0, 255], got {background}")
        if max_fit_pixels is not None and max_fit_pixels < 3:
            raise InputError(f"max_fit_pixels must be >= 3, got {max_fit_pixels}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.background = float(background)
        self.max_fit_pixels = None if max_fit_pixels is None else int(max_fit_pixels)
        if percentile_pixels not in ("all", "stained"):
            raise InputError(f"percentile_pixels must be 'all' or 'stained', got {percentile_pixels!r}")
        self.percentile_pixels = percentile_pixels

    # -- estimation -------------------------------------------------------------------------
    def _od_parts(self, rgb: np.ndarray, mask: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Subsampled stained OD pixels ``(n, 3)``, the pixels for the concentration
        percentile ``(m, 3)``, and the subsample size."""
        flat = rgb.reshape(-1, 3)
        sl = subsample_index(flat.shape[0], self.max_fit_pixels, rgb.shape[1])
        sub = flat[sl]
        od = od_lut(self.background)[sub]
        keep = (od.min(axis=1) >= self.beta) & (sub.max(axis=1) >= 8)
        od_c = od
        if mask is not None:
            inside = mask.reshape(-1)[sl]
            keep &= inside
            od_c = od[inside]
        od_t = od[keep]
        return od_t, (od_t if self.percentile_pixels == "stained" else od_c), sub.shape[0]

    def _estimate(self, od_t: np.ndarray, od_c: np.ndarray, n_total: int
                  ) -> tuple[np.ndarray, np.ndarray] | None:
        if self._too_little_tissue(od_t.shape[0], n_total):
            return None
        s = _stain_matrix_from_od(od_t, self.alpha)
        if s is None:
            return None
        max_c = _max_concentrations(od_c, s, self.background)
        return None if max_c is None else (s, max_c)

    def stain_matrix(self, image: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray | None:
        """``(2, 3)`` stain matrix of one image, or None when it has too little tissue."""
        rgb = rgb8_from_any(image, name="image")
        est = self._estimate(*self._od_parts(rgb, mask))
        return None if est is None else est[0]

    def concentrations(self, image: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray:
        """Haematoxylin and eosin concentrations ``(H, W, 2)`` (log10 OD units) by colour
        deconvolution with the image's own Macenko stain matrix (the target's when the image
        has too little tissue)."""
        rgb = rgb8_from_any(image, name="image")
        s = self.stain_matrix(rgb, mask=mask)
        if s is None:
            self._check_fitted()
            s = self.stain_matrix_
        od = od_lut(self.background)[rgb]
        return (od.reshape(-1, 3).astype(np.float64) @ np.linalg.pinv(s)).reshape(*rgb.shape[:2], 2).astype(np.float32)

    # -- numpy path -------------------------------------------------------------------------
    def _transform_one(self, rgb: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        est = self._image_estimate(rgb, mask)
        if est is None:
            return None
        s, max_c = est
        m = np.linalg.pinv(s) @ np.diag(self.max_concentrations_ / max_c) @ self.stain_matrix_
        od = od_lut(self.background).astype(np.float64)[rgb.reshape(-1, 3)]
        out = (self.background + 1.0) * np.power(10.0, -(od @ m)) - 1.0
        return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(rgb.shape)

    # -- torch path -------------------------------------------------------------------------
    def _transform_batch_torch(self, x8, mask):
        import torch

        from histolatent.stain.torch_ops import (
            Workspace,
            log_intensity_torch,
            macenko_apply_torch,
            macenko_estimate_torch,
        )

        ws = self._workspace if isinstance(self._workspace, Workspace) else None
        n, _, h, w = x8.shape
        lum = log_intensity_torch(x8.reshape(n, 3, h * w), ws)  # (N, 3, P); OD = ln(I0 + 1) - lum
        s, max_c, ok = macenko_estimate_torch(
            lum, None if mask is None else mask.reshape(n, h * w), width=w, alpha=self.alpha,
            beta=self.beta, background=self.background, max_fit_pixels=self.max_fit_pixels,
            min_fraction=self.min_tissue_fraction, min_pixels=self.min_tissue_pixels,
            stained_percentile=self.percentile_pixels == "stained", ws=ws)
        s_ref = torch.as_tensor(self.stain_matrix_, dtype=torch.float64, device=lum.device)
        c_ref = torch.as_tensor(self.max_concentrations_, dtype=torch.float64, device=lum.device)
        m = torch.linalg.pinv(s) @ torch.diag_embed(c_ref / max_c) @ s_ref  # (N, 3, 3): OD @ m
        ok &= torch.isfinite(m).flatten(1).all(1)
        m = torch.where(ok[:, None, None], m, torch.eye(3, dtype=m.dtype, device=m.device))
        return macenko_apply_torch(lum, m, self.background, ws).reshape(n, 3, h, w), ~ok

    # -- state ------------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "alpha": self.alpha, "beta": self.beta,
                "background": self.background, "max_fit_pixels": self.max_fit_pixels,
                "percentile_pixels": self.percentile_pixels}
