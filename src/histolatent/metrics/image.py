"""Full-reference image quality: PSNR and SSIM (pure numpy).

Both take two images of the same shape, ``(H, W)`` or ``(H, W, C)``, any real dtype, and a
``data_range`` (255 for uint8). SSIM follows Wang et al., "Image quality assessment: from
error visibility to structural similarity", IEEE TIP 2004: Gaussian window sigma 1.5
(truncated at 3.5 sigma, 11 x 11), K1 = 0.01, K2 = 0.03, population covariances, mean
over the image minus a 5-pixel border, averaged over channels. It matches
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise ValueError(f"expected (H, W) or (H, W, C) images, got shape {a.shape}")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("images contain NaN or inf")
    return a, b


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over all pixels and channels."""
    a, b = _pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range^2 / MSE)``; inf when equal."""
    err = mse(a, b)
    if err == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / err))


def _gaussian_kernel(sigma: float, truncate: float) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _filter2(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable correlation of ``(H, W, C)`` with symmetric padding (scipy's "reflect")."""
    r = len(kernel) // 2
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="symmetric")
    out = sliding_window_view(p, len(kernel), axis=0) @ kernel  # (H, W, C)
    p = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="symmetric")
    return sliding_window_view(p, len(kernel), axis=1) @ kernel


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 255.0, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean structural similarity (Wang et al. 2004), averaged over channels; 1 = identical.

    Parameters
    ----------
    a, b : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``, at least 11 x 11.
    data_range : float
        Dynamic range of the pixel values (255 for uint8, 1 for floats in [0, 1]).
    """
    a, b = _pair(a, b)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    kernel = _gaussian_kernel(sigma, 3.5)
    pad = (len(kernel) - 1) // 2
    if min(a.shape[:2]) < len(kernel):
        raise ValueError(f"images must be at least {len(kernel)} x {len(kernel)} for SSIM, got {a.shape[:2]}")
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ux, uy = _filter2(a, kernel), _filter2(b, kernel)
    vx = _filter2(a * a, kernel) - ux * ux
    vy = _filter2(b * b, kernel) - uy * uy
    vxy = _filter2(a * b, kernel) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    s = s[pad:-pad, pad:-pad] if pad else s
    return float(s.mean(axis=(0, 1)).mean())
