"""Stain and image metrics against OpenCV / scikit-image references, and their properties."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from histolatent.metrics.image import psnr, ssim
from histolatent.metrics.stain import (
    channel_histograms,
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


def _channels_differ(rng):
    """A 5 x 7 RGB image whose three channels have different distributions (a swap would show)."""
    return np.stack([rng.integers(0, 60, (5, 7)), rng.integers(100, 200, (5, 7)), rng.integers(200, 256, (5, 7))],
                    -1).astype(np.uint8)


def test_channel_histograms_by_definition_for_every_dtype_bin_count_and_mask():
    rng = np.random.default_rng(21)
    img = _channels_differ(rng)
    h = channel_histograms(img)
    assert h.shape == (3, 256) and h.dtype == np.float64
    for c in range(3):
        np.testing.assert_array_equal(h[c], np.bincount(img[..., c].ravel(), minlength=256))
    np.testing.assert_array_equal(channel_histograms(img.astype(np.float32)), h)  # the float path agrees
    h16 = channel_histograms(img, bins=16)
    for c in range(3):
        np.testing.assert_array_equal(h16[c], np.histogram(img[..., c], bins=16, range=(0, 256))[0])
    rgba = np.concatenate([img, np.full((5, 7, 1), 9, np.uint8)], -1)
    np.testing.assert_array_equal(channel_histograms(rgba), h)  # alpha is not a colour channel
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    hm = channel_histograms(img, mask=mask)
    assert hm.sum() == 3 * mask.sum()
    for c in range(3):
        np.testing.assert_array_equal(hm[c], np.bincount(img[..., c][mask], minlength=256))
    with pytest.raises(ValueError, match="mask: shape"):
        channel_histograms(img, mask=mask.T)
    with pytest.raises(ValueError, match="image: contains NaN"):
        channel_histograms(np.full((2, 2, 3), np.nan))


def test_distances_by_hand():
    a = np.zeros((1, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0] = [255, 0, 0]  # one of two pixels differs by one full channel
    assert euclidean_distance(a, b) == pytest.approx(np.sqrt(0.5))
    b[0, 1] = [255, 255, 255]
    assert euclidean_distance(a, b) == pytest.approx(np.sqrt((1 + 3) / 2))
    assert euclidean_distance(b, b) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        euclidean_distance(a, np.zeros((2, 1, 3), np.uint8))
    rng = np.random.default_rng(22)
    x, y = _channels_differ(rng), _channels_differ(rng)
    hx, hy = (np.stack([np.bincount(i[..., c].ravel(), minlength=256) for c in range(3)]).astype(float) for i in (x, y))
    corr = np.mean([np.corrcoef(hx[c], hy[c])[0, 1] for c in range(3)])
    assert histogram_correlation(x, y) == pytest.approx(corr)
    p, q = hx / hx.sum(1, keepdims=True), hy / hy.sum(1, keepdims=True)
    hell = np.mean(np.sqrt(np.clip(1 - np.sqrt(p * q).sum(1), 0, 1)))
    assert hellinger_distance(x, y) == pytest.approx(hell)
    assert hellinger_distance(x, x) == pytest.approx(0.0, abs=1e-7)
    assert hellinger_distance(np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)) == pytest.approx(1.0)


def test_stain_metrics_keeps_pixel_metrics_for_same_shaped_images_only():
    rng = np.random.default_rng(23)
    x = np.concatenate([_channels_differ(rng) for _ in range(3)], 0)
    x = np.concatenate([x, x[:, ::-1]], 1)  # 15 x 14: SSIM's window fits
    same = stain_metrics(x, x)
    assert set(same) == {"hist_correlation", "hellinger", "euclidean", "psnr", "ssim"}
    assert same["euclidean"] == 0.0 and same["hist_correlation"] == pytest.approx(1.0)
    other = stain_metrics(x, x[:4])
    assert set(other) == {"hist_correlation", "hellinger"}
