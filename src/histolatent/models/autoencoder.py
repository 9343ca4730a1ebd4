"""Reference model: a small convolutional autoencoder.

It exists to exercise the engine end to end (optimizers, schedulers, checkpoints,
precision, DDP) on a model that trains in seconds; it is also a sane baseline encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from histolatent.config import Config
from histolatent.models.base import Batch, Optimizers, RepresentationModel
from histolatent.models.registry import register_model


class AutoencoderConfig(Config):
    in_channels: int = 1
    image_size: int = 32
    channels: list[int] = [32, 64, 128]
    latent_dim: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_norm: bool = True


def _norm(c: int, on: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if on else nn.Identity()


def _down(cin: int, cout: int, bn: bool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), _norm(cout, bn), nn.LeakyReLU(0.2))


def _up(cin: int, cout: int, bn: bool) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), _norm(cout, bn), nn.LeakyReLU(0.2))


@register_model("autoencoder")
class Autoencoder(RepresentationModel):
    """Conv encoder (stride-2 blocks) -> linear code ``z`` -> mirrored transposed-conv decoder."""

    Config = AutoencoderConfig

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__(config)
        ch = config.channels
        n_down = len(ch)
        if config.image_size % (2**n_down):
            raise ValueError(f"image_size {config.image_size} must be divisible by 2**{n_down}")
        self.feat = config.image_size // 2**n_down
        self.encoder = nn.Sequential(*[_down(a, b, config.batch_norm) for a, b in zip([config.in_channels, *ch[:-1]], ch, strict=True)])
        self.to_z = nn.Linear(ch[-1] * self.feat**2, config.latent_dim)
        self.from_z = nn.Linear(config.latent_dim, ch[-1] * self.feat**2)
        rev = ch[::-1]
        self.decoder = nn.Sequential(
            *[_up(a, b, config.batch_norm) for a, b in zip(rev, [*rev[1:], rev[-1]], strict=True)],
            nn.Conv2d(rev[-1], config.in_channels, 1),
        )

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)}

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        h = self.encoder(x)  # (B, C, f, f)
        return {"z": self.to_z(h.flatten(1))}

    def decode(self, z: Tensor) -> Tensor:
        h = self.from_z(z).view(z.shape[0], -1, self.feat, self.feat)
        return torch.sigmoid(self.decoder(h))

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x)["z"])

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        x = batch["image"]
        recon = self(x)
        return {"loss": F.mse_loss(recon.float(), x.float())}

    def training_step(self, batch: Batch, optimizers: Optimizers, step: int) -> dict[str, Tensor]:
        terms = self.loss(batch)
        optimizers.update(terms["loss"], "main")
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        return self.loss(batch)

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        return {"image": torch.rand(batch_size, c.in_channels, c.image_size, c.image_size)}
