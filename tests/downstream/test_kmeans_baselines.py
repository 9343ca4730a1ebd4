"""k-means baselines of paper 4: pixel features, fitted on train, scored on held-out cells.

(The encoder features are :func:`histolatent.embed.encode_images`, tested in tests/embed.)
"""

from __future__ import annotations

import numpy as np
import torch

from histolatent.downstream.kmeans_baselines import kmeans_baseline, kmeans_clusters, pixel_features


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4, 4, 3) uint8 images of 3 well-separated brightness levels; labels 0..2."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    base = np.array([30, 128, 230])[y][:, None, None, None]
    return np.clip(base + rng.normal(0, 8, (n, 4, 4, 3)), 0, 255).astype(np.uint8), y


def test_pixel_features_agree_for_uint8_hwc_and_float_nchw():
    imgs, _ = _blobs(5, 0)
    a = pixel_features(imgs)
    b = pixel_features(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
    assert a.shape == (5, 48) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_kmeans_fitted_on_train_recovers_separated_classes_on_held_out_items():
    tr, _ = _blobs(60, 1)
    te, y_te = _blobs(30, 2)
    r = kmeans_baseline(pixel_features(tr), pixel_features(te), y_te, n_clusters=3, seed=0,
                        class_names=["dark", "mid", "light"])
    assert r["accuracy"] == 1.0 and r["class_names"] == ["dark", "mid", "light"]
    a = kmeans_clusters(pixel_features(tr), pixel_features(te), 3, seed=4)[1]
    b = kmeans_clusters(pixel_features(tr), pixel_features(te), 3, seed=4)[1]
    np.testing.assert_array_equal(a, b)  # seeded
