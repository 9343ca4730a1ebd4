"""Stain and image metrics against OpenCV / scikit-image references, and their properties."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from histolatent.metrics.image import psnr, ssim
from histolatent.metrics.stain import (
    euclidean_distance,
    hellinger_distance,
    histogram_correlation,
    stain_metrics,
)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    return a, b


def _cv_hist(img, c):
    return cv2.calcHist([img], [c], None, [256], [0, 256])


def test_histogram_metrics_match_opencv(pair):
    a, b = pair
    corr = np.mean([cv2.compareHist(_cv_hist(a, c), _cv_hist(b, c), cv2.HISTCMP_CORREL) for c in range(3)])
    bhat = np.mean([cv2.compareHist(_cv_hist(a, c), _cv_hist(b, c), cv2.HISTCMP_BHATTACHARYYA) for c in range(3)])
    assert histogram_correlation(a, b) == pytest.approx(corr, abs=1e-9)
    assert hellinger_distance(a, b) == pytest.approx(bhat, abs=1e-9)


def test_psnr_ssim_match_skimage(pair):
    a, b = pair
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
    ref = structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-9)
    grey = a[..., 0]
    assert ssim(grey, grey) == pytest.approx(1.0)


def test_ideal_values_and_bounds(pair):
    a, b = pair
    assert euclidean_distance(a, a) == 0 and hellinger_distance(a, a) == 0
    assert histogram_correlation(a, a) == pytest.approx(1.0) and psnr(a, a) == float("inf")
    white, black = np.full((4, 4, 3), 255, np.uint8), np.zeros((4, 4, 3), np.uint8)
    assert euclidean_distance(white, black) == pytest.approx(np.sqrt(3))
    assert hellinger_distance(white, black) == pytest.approx(1.0)
    m = stain_metrics(a, b)
    assert set(m) == {"euclidean", "hist_correlation", "hellinger", "psnr", "ssim"}
    assert set(stain_metrics(a, b[:20])) == {"hist_correlation", "hellinger"}  # different sizes
    before = a.copy()
    stain_metrics(a, b)
    assert np.array_equal(a, before)


def test_metrics_errors():
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        ssim(np.full((16, 16), np.nan), np.zeros((16, 16)))
    with pytest.raises(ValueError, match="RGB"):
        histogram_correlation(np.zeros((4, 4)), np.zeros((4, 4)))
