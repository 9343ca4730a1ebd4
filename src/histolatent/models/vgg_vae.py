"""``vgg-vae``: a VAE whose encoder is DRL's VGG backbone, the reconstruction baseline of DRL's tables.

papers/drl_deformation-representation-learning.txt compares DRL with a VAE (Kingma & Welling
2014) re-implemented "by changing the backbone network to VGG and using the same
hyper-parameter configurations" (§4.B.1; Tables I and III). Here the encoder is
:class:`~histolatent.nn.vgg.VGGEncoder` under the name ``backbone`` -- the name and layout of
``drl``, ``dim`` and the downstream ``vgg-classifier`` / ``vgg-segmenter`` -- so
:func:`histolatent.downstream.finetune` warm-starts from it exactly as from DRL.

* Input: float ``(N, C, S, S)`` in [0, 1], scaled to [-1, 1] before the encoder (as in DRL).
* ``q(z | x)``: the last block's map ``(N, C_B, S/2^B, S/2^B)`` flattened, one linear layer to
  ``mu`` and ``log sigma^2`` (``latent_dim`` each).
* Decoder (not transferred): a linear layer back to the last block's map, then one
  up-sampling block per encoder block (2 x 2 transposed conv, BN, ReLU, 3 x 3 conv, BN, ReLU,
  widths mirrored), a 3 x 3 conv and a sigmoid: ``x_hat`` in [0, 1].
* Loss: ``-log N(x | x_hat, recon_sigma^2 I)`` summed over pixels
  (:func:`~histolatent.losses.likelihood.gaussian_nll`) plus ``beta * KL(q(z | x) || N(0, I))``
  (:func:`~histolatent.losses.kl.kl_normal_standard`), averaged over the batch; one Adam.
  ``recon_sigma`` of 0.1 on [0, 1] pixels keeps the KL from swamping a 27k-pixel likelihood.
* ``encode(x)``: ``z`` = ``mu``, ``mu``, ``logvar`` and ``conv1 .. convB`` (each block's output
  averaged over space, as :mod:`~histolatent.models.infomax` gives them, for the per-block
  linear probes); :meth:`VGGVAE.feature_maps` gives the blocks' full maps.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from histolatent.losses.kl import kl_normal_standard
from histolatent.losses.likelihood import gaussian_nll
from histolatent.models.base import LossTermsModel
from histolatent.models.feature_matching_vae import LOGVAR_RANGE
from histolatent.models.registry import register_model
from histolatent.nn.vgg import VGGBackboneConfig, VGGEncoder

__all__ = ["VGGVAE", "VGGVAEConfig"]


class VGGVAEConfig(VGGBackboneConfig):
    """Backbone (as DRL's), latent size, likelihood scale, KL weight and Adam (DRL §4.B.1: 1e-4)."""

    latent_dim: int = Field(128, ge=1, description="units of z")
    beta: float = Field(1.0, ge=0, description="weight of the KL term (1: the plain VAE)")
    recon_sigma: float = Field(0.1, gt=0, description="std of the Gaussian likelihood on [0, 1] pixels")
    lr: float = Field(1e-4, gt=0)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register_model("vgg-vae")
class VGGVAE(LossTermsModel):
    """``x (N, C, S, S) -> z (N, latent_dim) -> x_hat (N, C, S, S)`` on a VGG encoder (module docstring)."""

    Config = VGGVAEConfig

    def __init__(self, config: VGGVAEConfig) -> None:
        super().__init__(config)
        c = config
        self.backbone = VGGEncoder(c.in_channels, c.widths, c.convs, batch_norm=c.batch_norm)
        self.side = c.image_size // 2 ** len(c.widths)
        flat = c.widths[-1] * self.side**2
        self.to_posterior = nn.Linear(flat, 2 * c.latent_dim)
        self.from_z = nn.Linear(c.latent_dim, flat)
        outs = [*c.widths[-2::-1], c.widths[0]]  # one up-sampling per block, widths mirrored
        ups, cin = [], c.widths[-1]
        for cout in outs:
            ups.append(_up(cin, cout))
            cin = cout
        self.decoder = nn.Sequential(*ups, nn.Conv2d(cin, c.in_channels, 3, padding=1))

    def images(self, x: Tensor) -> Tensor:
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"vgg-vae: expected (N, {c.in_channels}, {c.image_size}, {c.image_size}) images "
                             f"in [0, 1], got {tuple(x.shape)}")
        return x.to(self.device, torch.float32)

    def blocks(self, x: Tensor) -> list[Tensor]:
        """Block outputs of checked images in [0, 1] (scaled to [-1, 1] first)."""
        return self.backbone(x * 2.0 - 1.0)

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        """``{"conv1": (N, C_1, S/2, S/2), ...}``: every block's output (the transferable encoder)."""
        return {f"conv{b + 1}": m for b, m in enumerate(self.blocks(self.images(x)))}

    def posterior(self, maps: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)``, each ``(N, latent_dim)`` float32, from the block outputs."""
        h = self.to_posterior(maps[-1].flatten(1)).float()
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: Tensor) -> Tensor:
        """``z (N, latent_dim) -> x_hat (N, C, S, S)`` in [0, 1]."""
        h = self.from_z(z).view(z.shape[0], self.config.widths[-1], self.side, self.side)
        return torch.sigmoid(self.decoder(h))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction from the posterior mean."""
        return self.decode(self.posterior(self.blocks(self.images(x)))[0])

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        maps = self.blocks(self.images(x))
        mu, logvar = self.posterior(maps)
        out = {"z": mu, "mu": mu, "logvar": logvar}
        out.update({f"conv{b + 1}": m.mean(dim=(2, 3)).float() for b, m in enumerate(maps)})
        return out

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        x = self.images(x)
        mu, logvar = self.posterior(self.blocks(x))
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation, torch's global RNG
        recon = gaussian_nll(self.decode(z), x, self.config.recon_sigma).mean()
        kl = kl_normal_standard(mu, logvar).mean()
        return {"loss": recon + self.config.beta * kl, "recon": recon, "kl": kl}

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(self.device)
        return self.decode(z)

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        g = torch.Generator().manual_seed(0)
        return {"image": torch.rand(batch_size, c.in_channels, c.image_size, c.image_size, generator=g)}
