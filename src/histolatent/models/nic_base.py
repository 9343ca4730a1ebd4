"""What the NIC patch encoders share (papers/nic_neural-image-compression.txt, supplementary).

Every NIC encoder takes float ``(N, in_channels, image_size, image_size)`` in [0, 1] — the
same input for all of them, so that compression reads tiles once — and does its own
average pooling (``pool``: BiGAN's x2) and [-1, 1] scaling. ``encode(x)`` returns
``{"z": (N, code_size)}`` and the parts natural to the method.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from histolatent.config import Config
from histolatent.models.base import LossTermsModel
from histolatent.nn.nic import NICEncoder, to_signed

#: The VAE/contrastive/supervised encoder of the histopathology experiments: 5 strided convs
#: 32 -> 512, dense 512, linear C; and the synthetic (digit) one: 2 convs 32, 64, dense 64.
HISTO_CHANNELS = [32, 64, 128, 256, 512]
DIGIT_CHANNELS = [32, 64]


class NICConfig(Config):
    image_size: int = Field(128, ge=4, description="input side P, px (before pooling)")
    in_channels: int = Field(3, ge=1, description="3 for RGB patches, 1 for the digit task")
    mpp: float = Field(0.5, gt=0, description="µm per pixel the encoder reads patches at")
    pool: int = Field(1, ge=1, description="average pooling of the input inside the model")
    code_size: int = Field(128, ge=1, description="C")
    channels: list[int] = Field(default_factory=lambda: list(HISTO_CHANNELS))
    hidden: int = Field(512, ge=0, description="dense layer before the code (0: none)")
    padding: Literal["same", "valid"] = "same"
    slope: float = 0.2
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)

    @model_validator(mode="after")
    def _fits(self) -> NICConfig:
        if self.image_size % self.pool:
            raise ValueError(f"image_size {self.image_size} is not a multiple of pool {self.pool}")
        return self

    @property
    def model_size(self) -> int:
        """Side the networks see (``image_size // pool``)."""
        return self.image_size // self.pool


class NICModel(LossTermsModel):
    """Base of the NIC encoders: input checks, pooling/scaling and the shared encoder builder.

    The one-Adam encoders write ``batch_terms(batch)``; :class:`LossTermsModel` turns it into the
    update rule and the validation terms.
    """

    def _encoder(self, out_dim: int, *, order: str = "bn_act") -> NICEncoder:
        c = self.config
        return NICEncoder(c.in_channels, c.model_size, c.channels, c.hidden, out_dim, padding=c.padding,
                          order=order, slope=c.slope)

    def prepare(self, x: Tensor) -> Tensor:
        """``(N, C, P, P)`` in [0, 1] -> pooled and in [-1, 1]; checks the shape."""
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"{self.registry_name}: expected (N, {c.in_channels}, {c.image_size}, {c.image_size}) "
                             f"images in [0, 1], got {tuple(x.shape)}")
        return to_signed(x.to(self.device, torch.float32), c.pool)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.parameters(), lr=self.config.lr, betas=tuple(self.config.betas))}

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch_size, c.in_channels, c.image_size, c.image_size, generator=g)
        return {"image": x}
