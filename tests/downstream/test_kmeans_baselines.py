"""k-means baselines of paper 4: pixels and encoder features, fitted on train, scored on held-out cells."""

from __future__ import annotations

import numpy as np
import torch

from histolatent.downstream.kmeans_baselines import (
    encoder_features,
    kmeans_baseline,
    kmeans_clusters,
    pixel_features,
)
from histolatent.models import create_model


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


def test_encoder_features_take_the_named_part():
    torch.manual_seed(0)
    model = create_model("autoencoder", in_channels=3, image_size=8, channels=[4, 8], latent_dim=5)
    imgs, _ = _blobs(7, 3)
    imgs = np.repeat(np.repeat(imgs, 2, axis=1), 2, axis=2)  # (7, 8, 8, 3)
    f = encoder_features(model, imgs, part="z", batch_size=3)
    assert f.shape == (7, 5) and np.isfinite(f).all()
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(f, model.eval().encode(x)["z"].detach().numpy(), rtol=1e-5, atol=1e-6)
