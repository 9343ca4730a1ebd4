"""``mean-rgb``: NIC's lower bound (papers/nic_neural-image-compression.txt, supplementary Eq. 13).

``e^(c) = mean over the P x P pixels of channel c``: ``x (N, C, P, P)`` in [0, 1] -> ``z (N, C)``
(C = 3 for RGB). Nothing is learned; ``training_step`` updates nothing and reports the code's mean.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from histolatent.config import Config
from histolatent.models.base import Batch, Optimizers, RepresentationModel
from histolatent.models.registry import register_model


class MeanRGBConfig(Config):
    image_size: int = Field(128, ge=1)
    in_channels: int = Field(3, ge=1)
    mpp: float = Field(0.5, gt=0)

    @property
    def code_size(self) -> int:
        return self.in_channels


@register_model("mean-rgb")
class MeanRGB(RepresentationModel):
    Config = MeanRGBConfig

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def training_step(self, batch: Batch, optimizers: Optimizers, step: int) -> dict[str, Tensor]:
        return {"z_mean": self.encode(batch["image"])["z"].mean()}

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"mean-rgb: expected (N, {c.in_channels}, H, W) images, got {tuple(x.shape)}")
        return {"z": x.float().mean(dim=(2, 3))}

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        return {"image": torch.rand(batch_size, c.in_channels, c.image_size, c.image_size,
                                    generator=torch.Generator().manual_seed(0))}
