"""CIE L*a*b* (D65) of sRGB, numpy: the colour space of Reinhard's transfer.

The torch kernels (:func:`~histolatent.stain.torch_ops.lab_from_rgb8_torch` and friends)
use the constants and the sRGB curve defined here, so that both paths compute the same
formulas.
"""

from __future__ import annotations

import numpy as np

#: sRGB (linear) -> XYZ, D65.
RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
XYZ_TO_RGB = np.linalg.inv(RGB_TO_XYZ)
#: The D65 white point in XYZ.
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
#: The knee of the CIE L*a*b* cube root: ``f(t) = t^(1/3)`` above ``DELTA^3``, linear below.
DELTA = 6.0 / 29.0


def linear_from_srgb(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve undone: encoded values in [0, 1] -> linear light."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def srgb_from_linear(c: np.ndarray) -> np.ndarray:
    """Linear light (clipped to [0, 1]) -> sRGB-encoded values in [0, 1]."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


def lab_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of uint8 sRGB, ``(..., 3)`` float64; L in [0, 100]."""
    lin = linear_from_srgb(np.arange(256) / 255.0)[np.asarray(rgb, dtype=np.uint8)]
    xyz = lin @ RGB_TO_XYZ.T / WHITE_D65
    f = np.where(xyz > DELTA**3, np.cbrt(xyz), xyz / (3 * DELTA**2) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                     200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def rgb_from_lab(lab: np.ndarray) -> np.ndarray:
    """Inverse of :func:`lab_from_rgb`: float sRGB in [0, 255] (unrounded), ``(..., 3)``."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > DELTA, f**3, 3 * DELTA**2 * (f - 4.0 / 29.0)) * WHITE_D65
    return 255.0 * srgb_from_linear(xyz @ XYZ_TO_RGB.T)
