"""Losses of the NIC encoders (papers/nic_neural-image-compression.txt, supplementary).

Tensor functions, float32 out; each returns the batch mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bigan_discriminator_loss", "bigan_encoder_generator_loss", "same_different_bce",
           "vae_reconstruction"]


def vae_reconstruction(x_hat: Tensor, x: Tensor) -> Tensor:
    """Squared error ``(x - D(E(x)))^2`` (Eq. 9), mean over pixels and batch."""
    return (x_hat.float() - x.float()).pow(2).mean()


def same_different_bce(logits: Tensor, label: Tensor) -> Tensor:
    """Binary cross-entropy of the Siamese head's logits against same (1) / different (0)."""
    return F.binary_cross_entropy_with_logits(logits.float().view(-1), label.float().view(-1))


def bigan_discriminator_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """``-[log D(x, E(x)) + log(1 - D(G(z), z))]`` (Eq. 12, D's side) on logits."""
    return (F.binary_cross_entropy_with_logits(d_real.float(), torch.ones_like(d_real.float()))
            + F.binary_cross_entropy_with_logits(d_fake.float(), torch.zeros_like(d_fake.float())))


def bigan_encoder_generator_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """G and E's side of Eq. 12 with swapped labels (non-saturating): ``-[log(1 - D(x, E(x))) + log D(G(z), z)]``."""
    return (F.binary_cross_entropy_with_logits(d_real.float(), torch.zeros_like(d_real.float()))
            + F.binary_cross_entropy_with_logits(d_fake.float(), torch.ones_like(d_fake.float())))
