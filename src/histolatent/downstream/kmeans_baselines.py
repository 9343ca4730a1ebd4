"""k-means baselines for unsupervised nucleus classification (paper 4 §3.3 "Evaluation").

Yuan & Suh compare their InfoGAN with k-means (3 clusters, L2) on (a) the flattened pixels
of each crop (a 3072-vector for 32 x 32 x 3) and (b) 2048-d average-pool features of an
ImageNet ResNet-152. No ImageNet weights exist here, so (b) is replaced by the code ``z`` of
an encoder trained without labels on the same training crops
(:func:`histolatent.embed.train_feature_encoder`), applied by
:func:`histolatent.embed.encode_images`. This module only reads the resulting arrays.

Unlike the paper, which clustered and scored the same cells, k-means is fitted on the
training split and its centroids assign the held-out test cells (as the InfoGAN's Q head
does); scores come from :func:`histolatent.metrics.classification.classification_report`.
"""

from __future__ import annotations

import numpy as np
import torch

from histolatent.metrics.classification import ClassificationReport, classification_report

__all__ = ["kmeans_baseline", "kmeans_clusters", "pixel_features"]


def pixel_features(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Flattened pixels in [0, 1]: (N, H, W, C) uint8 or (N, C, H, W) float -> (N, H*W*C) float32.

    uint8 arrays are taken as HWC (the library's edge format), float tensors/arrays as NCHW.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    a = np.asarray(images)
    if a.ndim != 4:
        raise ValueError(f"images: expected a 4-D batch, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.reshape(len(a), -1).astype(np.float32) / 255.0
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).reshape(len(a), -1).astype(np.float32)


def kmeans_clusters(train_features: np.ndarray, test_features: np.ndarray, n_clusters: int, *, seed: int = 0,
                    n_init: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """k-means (L2) fitted on ``train_features`` (N, D); returns (train clusters, test clusters)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
    train = km.fit_predict(np.asarray(train_features, dtype=np.float64))
    return train, km.predict(np.asarray(test_features, dtype=np.float64))


def kmeans_baseline(train_features: np.ndarray, test_features: np.ndarray, test_classes: np.ndarray, *,
                    n_clusters: int, seed: int = 0, n_init: int = 10,
                    class_names: list[str] | None = None) -> ClassificationReport:
    """Fit k-means on the training features, assign the held-out cells, score them (Hungarian)."""
    _, test = kmeans_clusters(train_features, test_features, n_clusters, seed=seed, n_init=n_init)
    n_classes = len(class_names) if class_names is not None else None
    return classification_report(test_classes, test, n_clusters=n_clusters, n_classes=n_classes,
                                 class_names=class_names)
