"""Paper 0's baseline VAE and beta-VAE (appendix B.1), with the Eq. 6 discriminator term.

Encoder: blocks of [5x5 "valid" conv -> batch norm -> LeakyReLU -> 2x2 max-pool], then a conv
whose kernel covers the remaining map (5x5 on 68x68 inputs) giving ``mu`` and ``log sigma^2``
of ``q(z | x)`` (``M = 64``). Decoder: the mirror image — transposed-conv blocks and 2x
up-pooling back to the input size, then a 1x1 conv (and a sigmoid: pixels live in [0, 1]).
Channels ``C_i = 34`` (``C_8 = 32``). Objective Eq. 1 (``beta``; ``beta > 1`` is Higgins et
al.'s beta-VAE) plus ``gamma`` times the discriminator-feature reconstruction of Eq. 6; the
discriminator (appendix B.3) is updated by SGD with momentum after each Adam(W) step of the
VAE, alternating (paper 0 §5.2).

:class:`_Eq6VAE` holds the update rule shared with the SE(2,N)-VAE (``models/se2n_vae.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from histolatent.config import Config
from histolatent.losses.feature_matching import discriminator_bce, feature_reconstruction_loss
from histolatent.losses.kl import gaussian_nll, kl_normal_standard
from histolatent.models.base import Batch, Optimizers, RepresentationModel
from histolatent.models.discriminator import SE2NDiscriminator, valid_conv_sizes
from histolatent.models.registry import register_model

_LOGVAR_RANGE = (-12.0, 8.0)


class _Eq6Config(Config):
    """Options shared by both VAEs of paper 0 (training: §5.2; Eq. 6 discriminator: B.3)."""

    in_channels: int = 3
    image_size: int = 68
    kernel_size: int = 5
    recon_sigma: float = 1.0  # std of the Gaussian likelihood; paper: identity covariance
    leaky_slope: float = 0.2
    gamma: float = 0.01  # weight of the discriminator-feature reconstruction (0 disables D)
    disc_channels: list[int] = [6, 6, 6, 16]
    disc_rotations: int = 8
    lr: float = 1e-3  # Adam, betas (0.9, 0.999)
    weight_decay: float = 1e-4  # decoupled (AdamW)
    disc_lr: float = 1e-3  # SGD
    disc_momentum: float = 0.9


class _Eq6VAE(RepresentationModel):
    """A VAE trained with Eq. 1/5 plus Eq. 6. Subclasses implement :meth:`vae_terms`."""

    def _init_discriminator(self, c: _Eq6Config) -> None:
        self.discriminator = (
            SE2NDiscriminator(c.in_channels, c.image_size, c.disc_channels, c.disc_rotations, c.kernel_size,
                              c.leaky_slope) if c.gamma > 0 else None
        )

    def vae_parameters(self) -> list[nn.Parameter]:
        skip = {id(p) for p in self.discriminator.parameters()} if self.discriminator is not None else set()
        return [p for p in self.parameters() if id(p) not in skip]

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        opts = {"main": torch.optim.AdamW(self.vae_parameters(), lr=c.lr, betas=(0.9, 0.999),
                                          weight_decay=c.weight_decay)}
        if self.discriminator is not None:
            opts["disc"] = torch.optim.SGD(self.discriminator.parameters(), lr=c.disc_lr,
                                           momentum=c.disc_momentum, weight_decay=c.weight_decay)
        return opts

    def vae_terms(self, x: Tensor) -> dict[str, Tensor]:
        """``{"loss", "recon", <kl terms>..., "x_hat"}``: the negative ELBO (Eq. 1 or 5), batch-averaged."""
        raise NotImplementedError

    def training_step(self, batch: Batch, optimizers: Optimizers, step: int) -> dict[str, Tensor]:
        x = batch["image"]
        d = self.discriminator
        if d is not None:
            d.requires_grad_(False)  # the VAE step must not touch D's gradients
        terms = self.vae_terms(x)
        loss = terms["loss"]
        if d is not None:
            b = x.shape[0]
            _, feats = d(torch.cat([x, terms["x_hat"].to(x.dtype)]))  # shared batch statistics
            fm = feature_reconstruction_loss([f[:b] for f in feats], [f[b:] for f in feats]).mean()
            loss = loss + self.config.gamma * fm
            terms["feat_recon"] = fm
            d.requires_grad_(True)
        optimizers.update(loss, "main")
        if d is not None:
            logits, _ = d(torch.cat([x, terms["x_hat"].detach().to(x.dtype)]))
            d_loss = discriminator_bce(logits[:b], logits[b:])
            optimizers.update(d_loss, "disc")
            terms["disc"] = d_loss
        terms["loss"] = loss
        return {k: v.detach() for k, v in terms.items() if k != "x_hat"}

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        terms = self.vae_terms(batch["image"])
        terms.pop("x_hat")
        return terms

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        return {"image": torch.rand(batch_size, c.in_channels, c.image_size, c.image_size)}


def _block(cin: int, cout: int, k: int, slope: float, *, transposed: bool = False) -> nn.Sequential:
    conv = nn.ConvTranspose2d(cin, cout, k) if transposed else nn.Conv2d(cin, cout, k)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.LeakyReLU(slope))


class VAEConfig(_Eq6Config):
    encoder_channels: list[int] = [34, 34, 34]  # C1..C3: one conv block (and one pool) each
    decoder_channels: list[int] = [34, 34, 34, 32]  # one transposed-conv block each; last is C8
    latent_dim: int = 64  # M
    beta: float = 1.0


@register_model("vae")
class VAE(_Eq6VAE):
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
        return mu, logvar.clamp(*_LOGVAR_RANGE)

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
