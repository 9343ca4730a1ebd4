"""``nic-vae``: NIC's variational autoencoder (papers/nic_neural-image-compression.txt §2.1, supplementary).

Encoder E: 5 strided 3x3 convs with 32, 64, 128, 256, 512 filters (BN, LeakyReLU), dense
512 (BN, LReLU), linear ``2C`` -> ``mu``, ``log sigma^2``; ``e = mu + sigma * n`` (Eq. 8).
Decoder D: dense 8192 (BN, LReLU) reshaped to 4 x 4 x 512, 5 x [nearest x2, 3x3 conv 256 ... 16,
BN, LReLU], 3x3 conv, tanh. Objective (Eq. 9): squared reconstruction error (mean over
pixels, in [-1, 1]) + ``gamma`` KL(q(e|x) || N(0, I)) (summed over C), ``gamma = 5e-5``;
Adam 1e-3, batch 64. Shapes: ``x (N, 3, 128, 128)`` in [0, 1] -> ``z (N, 128)``.
The digit-task variant (supplementary, "encoders for synthetic data") is configs/nic-vae-digits.yaml.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from histolatent.losses.kl import kl_normal_standard
from histolatent.losses.nic import vae_reconstruction
from histolatent.models.base import Batch
from histolatent.models.nic_base import NICConfig, NICModel
from histolatent.models.registry import register_model
from histolatent.nn.nic import NICDecoder


class NICVAEConfig(NICConfig):
    gamma: float = Field(5e-5, ge=0, description="KL weight (the paper's gamma)")
    decoder_start: int = Field(512, description="channels of the 4 x 4 map after the dense layer")
    decoder_channels: list[int] = Field(default_factory=lambda: [256, 128, 64, 32, 16])


@register_model("nic-vae")
class NICVAE(NICModel):
    """NIC's VAE; ``encode(x) -> {"z": mu, "mu": mu, "logvar": log sigma^2}``, each ``(N, C)``."""

    Config = NICVAEConfig

    def __init__(self, config: NICVAEConfig) -> None:
        super().__init__(config)
        c = config
        self.encoder = self._encoder(2 * c.code_size)
        self.decoder = NICDecoder(c.code_size, c.model_size, c.decoder_start, c.decoder_channels, c.in_channels,
                                  slope=c.slope)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` in [0, 1] -> ``(mu, logvar)``, each ``(N, C)`` float32."""
        mu, logvar = self.encoder(self.prepare(x)).float().chunk(2, dim=1)
        return mu, logvar.clamp(-20.0, 10.0)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        mu, logvar = self.posterior(x)
        return {"z": mu, "mu": mu, "logvar": logvar}

    def decode(self, z: Tensor) -> Tensor:
        """``z (N, C)`` -> images ``(N, in_channels, P', P')`` in [0, 1] (``P' = P / pool``)."""
        return (self.decoder(z) + 1.0) / 2.0

    def loss_terms(self, x: Tensor, noise: Tensor | None = None) -> dict[str, Tensor]:
        """Eq. 9 on a batch; ``noise`` (N, C) replaces the drawn ``n`` (tests)."""
        target = self.prepare(x)
        mu, logvar = self.posterior(x)
        n = torch.randn_like(mu) if noise is None else noise
        e = mu + n * (0.5 * logvar).exp()
        recon = vae_reconstruction(self.decoder(e).float(), target)
        kl = kl_normal_standard(mu, logvar).mean()
        return {"loss": recon + self.config.gamma * kl, "recon": recon, "kl": kl}

    def batch_terms(self, batch: Batch) -> dict[str, Tensor]:
        return self.loss_terms(batch["image"])
