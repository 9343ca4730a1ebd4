"""Stain-normalisation metrics of Yuan & Suh (paper 4, Sec. 4.1 table), pure numpy.

The paper compares a normalised image with the target style by

* the Euclidean distance between the images (0 is ideal),
* the correlation of their colour histograms, averaged over R, G and B (1 is ideal),
* the Hellinger distance between their colour histograms (0 is ideal).

The paper does not say how the Euclidean distance is scaled; here it is the root mean
square, over pixels, of the RGB distance with intensities in [0, 1] (so 0 <= d <= sqrt(3)
and it does not grow with the image size). Histograms have 256 bins per channel over
[0, 255]; the correlation is Pearson's between the two histograms (OpenCV's
``HISTCMP_CORREL``) and the Hellinger distance ``sqrt(1 - sum_i sqrt(p_i q_i))`` between
the normalised histograms (OpenCV's ``HISTCMP_BHATTACHARYYA``), each averaged over the
three channels. Histogram metrics compare colour distributions, so they also apply to two
images of different content or size (the paper's use: normalised image vs target style).
"""

from __future__ import annotations

import numpy as np


def _rgb(img: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[-1] < 3 or a.size == 0:
        raise ValueError(f"{name}: expected an (H, W, 3) RGB image, got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: contains NaN or inf")
    return a


def channel_histograms(img: np.ndarray, *, bins: int = 256, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-channel histograms ``(3, bins)`` of an RGB image over [0, 255] (counts, float64)."""
    a = _rgb(img, "image")
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != a.shape[:2]:
            raise ValueError(f"mask: shape {m.shape} does not match the image {a.shape[:2]}")
        a = a[m]
    flat = a.reshape(-1, 3)
    if flat.dtype == np.uint8 and bins == 256:
        return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(3)]).astype(np.float64)
    return np.stack([np.histogram(flat[:, c], bins=bins, range=(0.0, 256.0))[0] for c in range(3)]).astype(np.float64)


def euclidean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square RGB distance per pixel, intensities in [0, 1] (uint8 divided by 255).

    ``sqrt(mean_over_pixels(|a - b|^2))``; 0 is ideal, at most sqrt(3).
    """
    x, y = _rgb(a, "a").astype(np.float64), _rgb(b, "b").astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {x.shape} and {y.shape}")
    return float(np.sqrt(np.mean(np.sum(((x - y) / 255.0) ** 2, axis=-1))))


def histogram_correlation(a: np.ndarray, b: np.ndarray, *, bins: int = 256, mask_a: np.ndarray | None = None,
                          mask_b: np.ndarray | None = None) -> float:
    """Pearson correlation of the colour histograms, mean over R, G, B (1 is ideal).

    ``mask_a`` / ``mask_b`` restrict each histogram to some pixels (e.g. tissue).
    """
    ha, hb = channel_histograms(a, bins=bins, mask=mask_a), channel_histograms(b, bins=bins, mask=mask_b)
    da = ha - ha.mean(axis=1, keepdims=True)
    db = hb - hb.mean(axis=1, keepdims=True)
    den = np.sqrt((da**2).sum(axis=1) * (db**2).sum(axis=1))
    corr = np.where(den > 0, (da * db).sum(axis=1) / np.where(den > 0, den, 1.0), 1.0)
    return float(corr.mean())


def hellinger_distance(a: np.ndarray, b: np.ndarray, *, bins: int = 256, mask_a: np.ndarray | None = None,
                       mask_b: np.ndarray | None = None) -> float:
    """Hellinger distance of the normalised colour histograms, mean over R, G, B (0 is ideal).

    ``mask_a`` / ``mask_b`` restrict each histogram to some pixels (e.g. tissue).
    """
    ha, hb = channel_histograms(a, bins=bins, mask=mask_a), channel_histograms(b, bins=bins, mask=mask_b)
    p = ha / np.maximum(ha.sum(axis=1, keepdims=True), 1.0)
    q = hb / np.maximum(hb.sum(axis=1, keepdims=True), 1.0)
    bc = np.sqrt(p * q).sum(axis=1)
    return float(np.sqrt(np.clip(1.0 - bc, 0.0, 1.0)).mean())


def stain_metrics(output: np.ndarray, reference: np.ndarray, *, data_range: float = 255.0,
                  mask_output: np.ndarray | None = None, mask_reference: np.ndarray | None = None
                  ) -> dict[str, float]:
    """All five: ``euclidean``, ``hist_correlation``, ``hellinger``, ``psnr``, ``ssim``.

    ``reference`` is the true target rendering of the same tissue (SynthPath) or, for real
    images, any image of the target style (then only the histogram metrics are meaningful
    and ``euclidean``/``psnr``/``ssim`` are omitted when the shapes differ). The masks
    restrict the histogram metrics only.
    """
    from histolatent.metrics.image import psnr, ssim  # same package, pure numpy

    masks = {"mask_a": mask_output, "mask_b": mask_reference}
    out = {"hist_correlation": histogram_correlation(output, reference, **masks),
           "hellinger": hellinger_distance(output, reference, **masks)}
    if np.shape(output)[:2] == np.shape(reference)[:2]:
        out["euclidean"] = euclidean_distance(output, reference)
        out["psnr"] = psnr(np.asarray(output)[..., :3], np.asarray(reference)[..., :3], data_range=data_range)
        out["ssim"] = ssim(np.asarray(output)[..., :3], np.asarray(reference)[..., :3], data_range=data_range)
    return out
