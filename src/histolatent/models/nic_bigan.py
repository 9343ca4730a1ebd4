"""``nic-bigan``: NIC's BiGAN encoder (papers/nic_neural-image-compression.txt §2.3, supplementary; Donahue et al. 2017).

Input: 128-px patches at 0.5 µm/px in [0, 1], average-pooled x2 to 64 px and scaled to [-1, 1]
inside the model. Encoder E: 4 x [conv 128 3x3 stride 2 "valid", LeakyReLU 0.2, BN]
(64 -> 31 -> 15 -> 7 -> 3), flatten 3 x 3 x 128, linear C = 128 (the authors' released
layout, ../shared/REFERENCES.md). Generator G: z ~ N(0, I) (C) -> dense 1024 (BN, LReLU) reshaped to
4 x 4 x 64 -> 4 x [nearest x2, conv 128 3x3, BN, LReLU] -> conv 3x3 -> tanh (64 px).
Discriminator D(x, e): x through a network with E's architecture (own weights) -> C,
concatenated with e -> 2 x [dense 1024, LReLU, dropout 0.5] -> one logit.
Objective Eq. 12; :meth:`training_step` updates D on (x, E(x)) vs (G(z), z), then G and E
together with swapped labels (non-saturating). Adam 2e-4, batch 64.
``encode(x) -> {"z": E(x)}``, ``(N, C)``.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from histolatent.losses.nic import bigan_discriminator_loss, bigan_encoder_generator_loss
from histolatent.models.base import Batch, Optimizers
from histolatent.models.nic_base import NICConfig, NICModel
from histolatent.models.registry import register_model
from histolatent.nn.nic import NICDecoder


class NICBiGANConfig(NICConfig):
    pool: int = 2
    channels: list[int] = Field(default_factory=lambda: [128, 128, 128, 128])
    hidden: int = 0
    padding: str = "valid"
    gen_start: int = Field(64, description="channels of G's 4 x 4 map (dense 1024 = 4 x 4 x 64)")
    gen_channels: list[int] = Field(default_factory=lambda: [128, 128, 128, 128])
    disc_hidden: int = Field(1024, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


class _Discriminator(nn.Module):
    def __init__(self, image_net: nn.Module, code_size: int, hidden: int, dropout: float, slope: float) -> None:
        super().__init__()
        self.image_net = image_net
        self.joint = nn.Sequential(nn.Linear(2 * code_size, hidden), nn.LeakyReLU(slope), nn.Dropout(dropout),
                                   nn.Linear(hidden, hidden), nn.LeakyReLU(slope), nn.Dropout(dropout),
                                   nn.Linear(hidden, 1))

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        return self.joint(torch.cat([self.image_net(x), e.to(x.dtype)], dim=1)).view(-1)


@register_model("nic-bigan")
class NICBiGAN(NICModel):
    Config = NICBiGANConfig

    def __init__(self, config: NICBiGANConfig) -> None:
        super().__init__(config)
        c = config
        self.encoder = self._encoder(c.code_size, order="act_bn")
        self.generator = NICDecoder(c.code_size, c.model_size, c.gen_start, c.gen_channels, c.in_channels,
                                    slope=c.slope)
        self.discriminator = _Discriminator(self._encoder(c.code_size, order="act_bn"), c.code_size, c.disc_hidden,
                                            c.dropout, c.slope)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        return {"z": self.encoder(self.prepare(x)).float()}

    def encode_signed(self, x: Tensor) -> Tensor:
        """E on already pooled images in [-1, 1] (``(N, C, P / pool, P / pool)``)."""
        return self.encoder(x)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` generated patches in [0, 1], at the pooled size."""
        z = torch.randn(n, self.config.code_size, generator=generator).to(self.device)
        return (self.generator(z) + 1) / 2

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        ge = [*self.encoder.parameters(), *self.generator.parameters()]
        return {"discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=c.lr, betas=tuple(c.betas)),
                "generator": torch.optim.Adam(ge, lr=c.lr, betas=tuple(c.betas))}

    def bigan_terms(self, x: Tensor, z: Tensor) -> dict[str, Tensor]:
        """Both sides of Eq. 12 for real images ``x`` ([0, 1]) and prior draws ``z`` ``(N, C)``."""
        xs = self.prepare(x)
        e = self.encoder(xs)
        fake = self.generator(z)
        d_real, d_fake = self.discriminator(xs, e), self.discriminator(fake, z)
        return {"d_loss": bigan_discriminator_loss(d_real, d_fake),
                "ge_loss": bigan_encoder_generator_loss(d_real, d_fake), "d_real": d_real, "d_fake": d_fake}

    def training_step(self, batch: Batch, optimizers: Optimizers, step: int) -> dict[str, Tensor]:
        x = batch["image"]
        z = torch.randn(x.shape[0], self.config.code_size, device=self.device)
        xs = self.prepare(x)
        with torch.no_grad():
            e = self.encoder(xs)
            fake = self.generator(z)
        d_loss = bigan_discriminator_loss(self.discriminator(xs, e), self.discriminator(fake, z))
        optimizers.update(d_loss, "discriminator")
        e = self.encoder(xs)
        fake = self.generator(z)
        d_real, d_fake = self.discriminator(xs, e), self.discriminator(fake, z)
        ge_loss = bigan_encoder_generator_loss(d_real, d_fake)
        optimizers.update(ge_loss, "generator")
        # grads of D from the G/E update are discarded: D's optimizer zeroes them before its next step
        return {"d_loss": d_loss.detach(), "ge_loss": ge_loss.detach(),
                "d_real": torch.sigmoid(d_real.detach().float()).mean(),
                "d_fake": torch.sigmoid(d_fake.detach().float()).mean()}

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        x = batch["image"]
        g = torch.Generator().manual_seed(0)
        z = torch.randn(x.shape[0], self.config.code_size, generator=g).to(self.device)
        t = self.bigan_terms(x, z)
        return {"loss": t["d_loss"] + t["ge_loss"], "d_loss": t["d_loss"], "ge_loss": t["ge_loss"]}
