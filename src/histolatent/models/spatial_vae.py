"""spatial-VAE (Bepler, Zhong, Kelley, Brignole & Berger, NeurIPS 2019): TARGET-VAE's baseline.

An MLP inference network (2 hidden layers of 500 units, tanh) maps the flattened image to
``q(z | y) = N(mu_z, sigma_z^2)``, ``q(theta | y) = N(mu_theta, sigma_theta^2)`` and
``q(t | y) = N(mu_t, diag sigma_t^2)``; the generator is the same coordinate MLP as TARGET-VAE's
(:class:`~histolatent.nn.fourier.SpatialGenerator`, Eq. 2 of papers/target-vae.txt), rendering
``y(u) = g(z, M(theta)(u - t))``. Only the generator is equivariant: the inference network has to
learn pose from examples, which fails for uniformly rotated objects (TARGET-VAE Table 1).

Priors: ``z ~ N(0, I)``, ``theta ~ N(0, theta_prior_std^2)`` (pi / 4 in the reference code; use a
large value, e.g. pi, for uniformly rotated data), ``t ~ N(0, t_prior_std^2)`` per axis (0.1). The
objective is the ELBO with the Bernoulli or Gaussian likelihood of TARGET-VAE; lr 1e-4.

Shapes: images ``(B, C, D, D)``; ``z (B, Z)``, ``theta (B,)``, ``t (B, 2)`` in the coordinate units of
:mod:`histolatent.nn.fourier` (a ``D``-pixel image spans ``[-1, 1]``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from histolatent.config import Config
from histolatent.losses.kl import kl_normal
from histolatent.losses.likelihood import reconstruction_nll
from histolatent.models.base import LossTermsModel
from histolatent.models.registry import register_model
from histolatent.nn.fourier import SpatialGenerator, at_least_float32, grid_axes, wrap_angle

__all__ = ["SpatialVAE", "SpatialVAEConfig"]

_LOGSTD_RANGE = (-8.0, 4.0)


class SpatialVAEConfig(Config):
    in_channels: int = Field(1, ge=1)
    image_size: int = Field(50, ge=4)
    pool: int = Field(1, ge=1, description="average-pool inputs and targets by this factor")
    hidden: int = Field(500, ge=1, description="inference MLP width")
    n_hidden: int = Field(2, ge=1, description="inference MLP hidden layers (tanh)")
    z_dim: int = Field(2, ge=0)
    infer_rotation: bool = True
    infer_translation: bool = True
    leaky_slope: float = 0.01
    fourier_features: int = Field(1024, ge=0)
    fourier_scale: float = Field(1.0, gt=0)
    gen_hidden: int = Field(512, ge=1)
    gen_layers: int = Field(2, ge=1)
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    min_std: float = Field(0.02, gt=0)
    gaussian_std: float | None = Field(None, gt=0, description="fixed pixel std (None: learned)")
    theta_prior_std: float = Field(math.pi / 4, gt=0)
    t_prior_std: float = Field(0.1, gt=0)
    beta: float = Field(1.0, ge=0)
    lr: float = Field(1e-4, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if self.image_size % self.pool:
            raise ValueError(f"image_size {self.image_size} must be divisible by pool {self.pool}")
        return self


@register_model("spatial-vae")
class SpatialVAE(LossTermsModel):
    """spatial-VAE: ``encode(x)`` gives ``z``, ``theta`` and ``t`` (posterior means)."""

    Config = SpatialVAEConfig

    def __init__(self, config: SpatialVAEConfig) -> None:
        super().__init__(config)
        c = config
        d = c.image_size // c.pool
        layers: list[nn.Module] = []
        width = c.in_channels * d * d
        for _ in range(c.n_hidden):
            layers += [nn.Linear(width, c.hidden), nn.Tanh()]
            width = c.hidden
        self.encoder = nn.Sequential(*layers)
        self.n_out = 2 * c.z_dim + 2 + 4  # z (mu, log std), theta (mu, log std), t (mu, log std)
        self.head = nn.Linear(width, self.n_out)
        out_dim = c.in_channels * (2 if c.likelihood == "gaussian" and c.gaussian_std is None else 1)
        self.generator = SpatialGenerator(c.z_dim, out_dim, fourier_features=c.fourier_features,
                                          sigma=c.fourier_scale * self.spacing, hidden=c.gen_hidden,
                                          n_layers=c.gen_layers, leaky_slope=c.leaky_slope, seed=c.seed)

    @property
    def spacing(self) -> float:
        return self.config.pool * 2.0 / (self.config.image_size - 1)

    def prepare(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"spatial-VAE expects images (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        return F.avg_pool2d(x, self.config.pool) if self.config.pool > 1 else x

    def posterior(self, x: Tensor) -> dict[str, Tensor]:
        """``{"z_mu", "z_logstd" (B, Z), "theta_mu", "theta_logstd" (B,), "t_mu", "t_logstd" (B, 2)}``."""
        c = self.config
        out = at_least_float32(self.head(self.encoder(self.prepare(x).flatten(1))))
        z = c.z_dim
        lo, hi = _LOGSTD_RANGE
        post = {"z_mu": out[:, :z], "z_logstd": out[:, z:2 * z].clamp(lo, hi),
                "theta_mu": out[:, 2 * z], "theta_logstd": out[:, 2 * z + 1].clamp(lo, hi),
                "t_mu": out[:, 2 * z + 2:2 * z + 4], "t_logstd": out[:, 2 * z + 4:2 * z + 6].clamp(lo, hi)}
        if not c.infer_rotation:
            post["theta_mu"] = torch.zeros_like(post["theta_mu"])
        if not c.infer_translation:
            post["t_mu"] = torch.zeros_like(post["t_mu"])
        return post

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        """Negative ELBO (batch mean) and its parts."""
        c = self.config
        xp = self.prepare(x)
        q = self.posterior(x)
        b = x.shape[0]
        z = q["z_mu"] + q["z_logstd"].exp() * torch.randn_like(q["z_mu"])
        kl_z = kl_normal(q["z_mu"], q["z_logstd"], 1.0).sum(1)
        theta, t = torch.zeros(b, device=x.device), torch.zeros(b, 2, device=x.device)
        kl_theta = kl_t = torch.zeros(b, device=x.device)
        if c.infer_rotation:
            theta = q["theta_mu"] + q["theta_logstd"].exp() * torch.randn_like(q["theta_mu"])
            kl_theta = kl_normal(q["theta_mu"], q["theta_logstd"], c.theta_prior_std)
        if c.infer_translation:
            t = q["t_mu"] + q["t_logstd"].exp() * torch.randn_like(q["t_mu"])
            kl_t = kl_normal(q["t_mu"], q["t_logstd"], c.t_prior_std).sum(1)
        grid = grid_axes(xp.shape[-2], xp.shape[-1], spacing=self.spacing, device=x.device)
        recon = reconstruction_nll(self.generator(z, theta, t, grid), xp, c.likelihood, min_std=c.min_std,
                                   fixed_std=c.gaussian_std)
        kl = kl_z + kl_theta + kl_t
        return {"loss": (recon + c.beta * kl).mean(), "recon": recon.mean(), "kl": kl.mean(),
                "kl_z": kl_z.mean(), "kl_theta": kl_theta.mean(), "kl_t": kl_t.mean()}

    @torch.no_grad()
    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """``{"z" (B, Z), "z_logstd", "theta" (B,) in (-pi, pi], "t" (B, 2)}`` (posterior means)."""
        q = self.posterior(x)
        return {"z": q["z_mu"], "z_logstd": q["z_logstd"], "theta": wrap_angle(q["theta_mu"]), "t": q["t_mu"]}

    @torch.no_grad()
    def decode(self, z: Tensor, theta: Tensor | float = 0.0, t: Tensor | None = None, *,
               size: int | None = None) -> Tensor:
        """Render ``z`` at pose ``(theta, t)`` (default canonical) on a ``size``-pixel grid -> ``(B, C, S, S)``."""
        c = self.config
        b = z.shape[0]
        theta = torch.as_tensor(theta, dtype=torch.float32, device=z.device).expand(b)
        t = torch.zeros(b, 2, device=z.device) if t is None else t.to(z.device).float()
        size = c.image_size if size is None else size
        grid = grid_axes(size, size, spacing=2.0 / (c.image_size - 1), device=z.device)
        out = self.generator(z.float(), theta, t, grid)[..., : c.in_channels]
        img = torch.sigmoid(out) if c.likelihood == "bernoulli" else out.clamp(0, 1)
        return img.transpose(1, 2).reshape(b, c.in_channels, size, size)

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        return {"image": torch.rand(batch_size, c.in_channels, c.image_size, c.image_size)}
