"""The label-free feature encoder of paper 4's k-means baseline (§3.3 "Evaluation").

Yuan & Suh cluster 2048-d average-pool features of an ImageNet ResNet-152 with k-means. No
ImageNet weights exist here, so the features are the code ``z`` of the reference
convolutional autoencoder (``models/autoencoder.py``), trained here without labels on the same
training crops; :func:`~histolatent.embed.encode.encode_images` then gives the features and
:func:`histolatent.downstream.kmeans_baselines.kmeans_baseline` clusters them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["train_feature_encoder"]


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
