"""The VAE and beta-VAE baselines of TARGET-VAE's Table 2 (papers/target-vae.txt §4.3).

Plain VAEs with no dedicated pose latents (Kingma & Welling 2014; beta-VAE, Higgins et al.
2017, beta = 4), ``z_dim = 4`` as in the paper, on the same data and with the same likelihood
as TARGET-VAE (Bernoulli for binary-like images, Gaussian for real-valued ones). MLP encoder and
decoder (``n_hidden`` layers of ``hidden`` units, LeakyReLU) on the flattened, optionally
average-pooled image.

Why not ``models/vae.py``: paper 0's conv VAE is built for 68x68 RGB patches with "valid" 5x5
convs (50x50 does not fit its pyramid), batch norm and a Gaussian likelihood of fixed variance;
the TARGET-VAE comparison needs the same likelihood as the model it is compared with.

Shapes: images ``(B, C, D, D)`` in [0, 1]; ``encode(x) -> {"z": mu (B, Z), "mu", "logvar"}``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from histolatent.config import Config
from histolatent.losses.kl import kl_normal_standard
from histolatent.losses.likelihood import reconstruction_nll
from histolatent.models.base import LossTermsModel
from histolatent.models.registry import register_model
from histolatent.nn.fourier import at_least_float32

__all__ = ["MLPBetaVAE", "MLPBetaVAEConfig", "MLPVAE", "MLPVAEConfig"]


class MLPVAEConfig(Config):
    in_channels: int = Field(1, ge=1)
    image_size: int = Field(50, ge=2)
    pool: int = Field(1, ge=1)
    hidden: int = Field(512, ge=1)
    n_hidden: int = Field(2, ge=1)
    latent_dim: int = Field(4, ge=1)
    beta: float = Field(1.0, ge=0)
    leaky_slope: float = 0.01
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    min_std: float = Field(0.02, gt=0)
    gaussian_std: float | None = Field(None, gt=0, description="fixed pixel std (None: learned)")
    lr: float = Field(1e-3, gt=0)

    @model_validator(mode="after")
    def _check(self):
        if self.image_size % self.pool:
            raise ValueError(f"image_size {self.image_size} must be divisible by pool {self.pool}")
        return self


def _mlp(widths: list[int], slope: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.LeakyReLU(slope)]
    return nn.Sequential(*layers)


@register_model("mlp-vae")
class MLPVAE(LossTermsModel):
    """``x (B, C, D, D) -> q(z | x) = N(mu, diag exp(logvar)) -> p(x | z)`` with MLPs (Eq. 1 of Kingma & Welling)."""

    Config = MLPVAEConfig

    def __init__(self, config: MLPVAEConfig) -> None:
        super().__init__(config)
        c = config
        self.side = c.image_size // c.pool
        n_in = c.in_channels * self.side**2
        widths = [c.hidden] * c.n_hidden
        self.encoder = _mlp([n_in, *widths], c.leaky_slope)
        self.to_latent = nn.Linear(widths[-1], 2 * c.latent_dim)
        self.decoder = _mlp([c.latent_dim, *widths], c.leaky_slope)
        self.k = 2 if c.likelihood == "gaussian" and c.gaussian_std is None else 1
        self.to_pixels = nn.Linear(widths[-1], n_in * self.k)

    def prepare(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"MLP VAE expects images (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        return F.avg_pool2d(x, self.config.pool) if self.config.pool > 1 else x

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = at_least_float32(self.to_latent(self.encoder(self.prepare(x).flatten(1)))).chunk(2, dim=1)
        return mu, logvar.clamp(-16.0, 8.0)

    def _out(self, z: Tensor) -> Tensor:
        """Decoder output as ``(B, P, C)`` logits or ``(B, P, 2C)`` (mean, log std)."""
        c = self.config
        out = at_least_float32(self.to_pixels(self.decoder(z)))
        # pixel-major layout expected by reconstruction_nll: (B, k C, P) -> (B, P, k C)
        return out.reshape(z.shape[0], self.k * c.in_channels, -1).transpose(1, 2)

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        c = self.config
        recon = reconstruction_nll(self._out(z), self.prepare(x), c.likelihood, min_std=c.min_std,
                                   fixed_std=c.gaussian_std)
        kl = kl_normal_standard(mu, logvar)
        return {"loss": (recon + self.config.beta * kl).mean(), "recon": recon.mean(), "kl": kl.mean()}

    @torch.no_grad()
    def encode(self, x: Tensor) -> dict[str, Tensor]:
        mu, logvar = self.posterior(x)
        return {"z": mu, "mu": mu, "logvar": logvar}

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """``(B, Z) -> (B, C, D', D')`` probabilities or means at the working (pooled) size."""
        c = self.config
        out = self._out(z)[..., : c.in_channels]
        img = torch.sigmoid(out) if c.likelihood == "bernoulli" else out.clamp(0, 1)
        return img.transpose(1, 2).reshape(z.shape[0], c.in_channels, self.side, self.side)

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        return {"image": torch.rand(batch_size, c.in_channels, c.image_size, c.image_size)}


class MLPBetaVAEConfig(MLPVAEConfig):
    beta: float = Field(4.0, ge=0)  # Higgins et al. (2017), as TARGET-VAE's Table 2


@register_model("mlp-beta-vae")
class MLPBetaVAE(MLPVAE):
    """:class:`MLPVAE` with ``beta = 4`` by default."""

    Config = MLPBetaVAEConfig
