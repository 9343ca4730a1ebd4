"""Discriminator-feature reconstruction and the discriminator's own loss (paper 0, Eq. 6).

Larsen et al. (2016)'s idea as used by paper 0 §4.3.1: the feature maps ``D_i`` of a
discriminator are extra Gaussian observations with identity covariance, so the VAE also
minimises ``sum_i 0.5 ||D_i(x) - D_i(x_hat)||^2`` (weighted by ``gamma``), while ``D`` is
trained by cross-entropy to tell real images from reconstructions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def feature_reconstruction_loss(feats_real: Sequence[Tensor], feats_fake: Sequence[Tensor], *,
                                detach_real: bool = True) -> Tensor:
    """``sum_i 0.5 ||D_i(x) - D_i(x_hat)||^2`` per sample (Eq. 6's ``-log p(D_i(x) | z)``).

    ``feats_real[i]`` and ``feats_fake[i]`` have the same shape ``(B, ...)``; the real features
    are treated as observations (detached) unless ``detach_real`` is false, which a caller needs
    when they depend on the reconstruction (real and reconstructed images normalised with shared
    batch statistics). Returns ``(B,)``.
    """
    if len(feats_real) != len(feats_fake):
        raise ValueError(f"got {len(feats_real)} real and {len(feats_fake)} fake feature maps")
    total = None
    for a, b in zip(feats_real, feats_fake, strict=True):
        if a.shape != b.shape:
            raise ValueError(f"feature shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
        term = 0.5 * ((a.detach() if detach_real else a).float() - b.float()).pow(2).flatten(1).sum(dim=1)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("no feature maps given")
    return total


def discriminator_bce(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Cross-entropy of a discriminator on a batch balanced between real and reconstructed images.

    ``logits_*``: ``(B,)`` pre-sigmoid scores; returns a scalar (mean over the ``2B`` images).
    """
    real = F.binary_cross_entropy_with_logits(logits_real.float(), torch.ones_like(logits_real, dtype=torch.float32))
    fake = F.binary_cross_entropy_with_logits(logits_fake.float(), torch.zeros_like(logits_fake, dtype=torch.float32))
    return 0.5 * (real + fake)
