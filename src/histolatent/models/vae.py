"""Paper 0's baseline VAE and beta-VAE (appendix B.1), with the Eq. 6 discriminator term.

Encoder: blocks of [5x5 "valid" conv -> batch norm -> LeakyReLU -> 2x2 max-pool], then a conv
whose kernel covers the remaining map (5x5 on 68x68 inputs) giving ``mu`` and ``log sigma^2``
of ``q(z | x)`` (``M = 64``). Decoder: the mirror image — transposed-conv blocks and 2x
up-pooling back to the input size, then a 1x1 conv (and a sigmoid: pixels live in [0, 1]).
Channels ``C_i = 34`` (``C_8 = 32``). Objective Eq. 1 (``beta``; ``beta > 1`` is Higgins et
al.'s beta-VAE) plus ``gamma`` times the discriminator-feature reconstruction of Eq. 6; the
discriminator (appendix B.3) is updated by SGD with momentum after each Adam(W) step of the
VAE, alternating (paper 0 §5.2).

The update rule (Eq. 6 and the alternating steps) is shared with the SE(2,N)-VAE and lives in
:mod:`~histolatent.models.feature_matching_vae`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from histolatent.losses.kl import kl_normal_standard
from histolatent.losses.likelihood import gaussian_nll
from histolatent.models.discriminator import valid_conv_sizes
from histolatent.models.feature_matching_vae import (
    LOGVAR_RANGE,
    FeatureMatchingVAE,
    FeatureMatchingVAEConfig,
)
from histolatent.models.registry import register_model


def _block(cin: int, cout: int, k: int, slope: float, *, transposed: bool = False) -> nn.Sequential:
    conv = nn.ConvTranspose2d(cin, cout, k) if transposed else nn.Conv2d(cin, cout, k)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.LeakyReLU(slope))


class VAEConfig(FeatureMatchingVAEConfig):
    encoder_channels: list[int] = [34, 34, 34]  # C1..C3: one conv block (and one pool) each
    decoder_channels: list[int] = [34, 34, 34, 32]  # one transposed-conv block each; last is C8
    latent_dim: int = 64  # M
    beta: float = 1.0


@register_model("vae")
class VAE(FeatureMatchingVAE):
    """Paper 0's baseline VAE: ``x (B, 3, 68, 68) -> z (B, 64) -> x_hat (B, 3, 68, 68)``.

    ``encode(x)`` returns ``{"z": mu, "mu": mu, "logvar": log sigma^2}`` (``(B, M)`` each; ``z``
    is the posterior mean, the cell embedding of paper 0 §5.3).
    """

    Config = VAEConfig

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        c = config
        n = len(c.encoder_channels)
        if len(c.decoder_channels) != n + 1:
            raise ValueError(f"decoder_channels needs {n + 1} entries (one per transposed-conv block), "
                             f"got {len(c.decoder_channels)}")
        conv_out, _, k_final = valid_conv_sizes(c.image_size, n, c.kernel_size)
        enc: list[nn.Module] = []
        cin = c.in_channels
        for ch in c.encoder_channels:
            enc += [_block(cin, ch, c.kernel_size, c.leaky_slope), nn.MaxPool2d(2)]
            cin = ch
        enc.append(nn.Conv2d(cin, 2 * c.latent_dim, k_final))  # (B, 2M, 1, 1)
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [_block(c.latent_dim, c.decoder_channels[0], k_final, c.leaky_slope, transposed=True)]
        for i, ch in enumerate(c.decoder_channels[1:]):
            dec += [nn.Upsample(size=conv_out[n - 1 - i], mode="nearest"),
                    _block(c.decoder_channels[i], ch, c.kernel_size, c.leaky_slope, transposed=True)]
        dec.append(nn.Conv2d(c.decoder_channels[-1], c.in_channels, 1))
        self.decoder = nn.Sequential(*dec)
        self._init_discriminator(c)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, C, S, S) -> (mu, logvar)``, each ``(B, M)`` float32."""
        h = self.encoder(x).flatten(1).float()  # (B, 2M)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        mu, logvar = self.posterior(x)
        return {"z": mu, "mu": mu, "logvar": logvar}

    def decode(self, z: Tensor) -> Tensor:
        """``z (B, M) -> x_hat (B, C, S, S)`` in [0, 1]."""
        return torch.sigmoid(self.decoder(z[:, :, None, None]))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction from the posterior mean."""
        return self.decode(self.posterior(x)[0])

    def vae_terms(self, x: Tensor) -> dict[str, Tensor]:
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation
        x_hat = self.decode(z)
        recon = gaussian_nll(x_hat, x, self.config.recon_sigma).mean()
        kl = kl_normal_standard(mu, logvar).mean()
        return {"loss": recon + self.config.beta * kl, "recon": recon, "kl": kl, "x_hat": x_hat}

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(self.device)
        return self.decode(z)


class BetaVAEConfig(VAEConfig):
    beta: float = 4.0  # Higgins et al. (2017); paper 0 sweeps beta in {0.1, 0.5, 1, 2, 4}


@register_model("beta-vae")
class BetaVAE(VAE):
    """:class:`VAE` with ``beta = 4`` by default (Higgins et al. 2017)."""

    Config = BetaVAEConfig
