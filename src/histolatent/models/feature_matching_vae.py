"""Paper 0's training rule for its two VAEs: the ELBO plus a discriminator-feature term (Eq. 6).

Both the baseline VAE / beta-VAE (``models/vae.py``) and the SE(2,N)-VAE
(``models/se2n_vae.py``) are trained the same way (paper 0, §5.2 and appendix B.3): an
AdamW step on the negative ELBO (Eq. 1 or 5) plus ``gamma`` times the reconstruction error
of the discriminator's feature maps (Eq. 6), then an SGD-with-momentum step of the
discriminator on real versus reconstructed images. A subclass writes only its ELBO,
:meth:`FeatureMatchingVAE.vae_terms`. This module registers no model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from histolatent.config import Config
from histolatent.losses.feature_matching import discriminator_bce, feature_reconstruction_loss
from histolatent.models.base import Batch, Optimizers, RepresentationModel
from histolatent.models.discriminator import SE2NDiscriminator

__all__ = ["LOGVAR_RANGE", "FeatureMatchingVAE", "FeatureMatchingVAEConfig"]

#: Clamp of the encoders' log sigma^2 (keeps exp() finite early in training).
LOGVAR_RANGE = (-12.0, 8.0)


class FeatureMatchingVAEConfig(Config):
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


class FeatureMatchingVAE(RepresentationModel):
    """A VAE trained with Eq. 1/5 plus Eq. 6. Subclasses implement :meth:`vae_terms`."""

    def _init_discriminator(self, c: FeatureMatchingVAEConfig) -> None:
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
            # through those statistics the real images' features depend on x_hat: detaching them
            # made the update follow a different function than the loss (for the SE(2,N)-VAE at
            # initialisation its feature term rose under the step)
            fm = feature_reconstruction_loss([f[:b] for f in feats], [f[b:] for f in feats], detach_real=False).mean()
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
