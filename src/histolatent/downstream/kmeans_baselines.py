"""k-means baselines for unsupervised nucleus classification (paper 4 §3.3 "Evaluation").

Yuan & Suh compare their InfoGAN with k-means (3 clusters, L2) on (a) the flattened pixels
of each crop (a 3072-vector for 32 x 32 x 3) and (b) 2048-d average-pool features of an
ImageNet ResNet-152. No ImageNet weights exist here, so (b) is replaced by the code ``z`` of
an encoder we train ourselves without labels on the same training crops: the reference
convolutional autoencoder (``models/autoencoder.py``), trained through the engine by
:func:`train_feature_encoder`.

Unlike the paper, which clustered and scored the same cells, k-means is fitted on the
training split and its centroids assign the held-out test cells (as the InfoGAN's Q head
does); scores come from :func:`histolatent.metrics.classification.classification_report`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histolatent.metrics.classification import ClassificationReport, classification_report

__all__ = ["encoder_features", "kmeans_baseline", "kmeans_clusters", "pixel_features", "train_feature_encoder"]


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


@torch.no_grad()
def encoder_features(model: Any, images: np.ndarray | torch.Tensor, *, part: str = "z",
                     batch_size: int = 256) -> np.ndarray:
    """``model.encode(x)[part]`` for every image: (N, D) float32.

    ``images``: (N, H, W, C) uint8 or (N, C, H, W) float in [0, 1].
    """
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255.0
    else:
        x = torch.as_tensor(images).float()
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        out.append(model.encode(x[i:i + batch_size].to(model.device))[part].float().flatten(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


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


def train_feature_encoder(data: dict[str, Any], *, out: str | os.PathLike, seed: int = 0, steps: int = 400,
                          batch_size: int = 64, image_size: int | None = None, latent_dim: int = 32,
                          channels: list[int] | None = None, precision: str = "32-true") -> Path:
    """Train the reference autoencoder (no labels) on ``data``'s training split; returns the run.

    ``data`` is a run config's data entry (``{"name": "synth-nuclei-crops", ...}``); its
    images must be RGB. The encoder's code ``z`` is the feature vector of the baseline.
    """
    from histolatent.train import RunConfig, fit

    size = image_size or int(data.get("size_px", data.get("size", 40)))
    model = {"name": "autoencoder", "in_channels": 3, "image_size": size, "latent_dim": latent_dim,
             "channels": channels or [32, 64, 128]}
    cfg = RunConfig(model=model, data=dict(data), train={"steps": steps, "batch_size": batch_size, "seed": seed,
                                                         "precision": precision, "progress": False,
                                                         "log_every": max(1, steps // 10)})
    return fit(cfg, out=out)
