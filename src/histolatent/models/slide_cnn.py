"""``slide-cnn``: NIC's slide-level CNN on compressed slides (papers/nic_neural-image-compression.txt,
§3.1-3.2 and the supplementary, "Image-level Classification and Regression").

Eight depthwise-separable convolutions (:class:`~histolatent.nn.separable.SeparableConv2d`)
with 128 filters 3 x 3, each followed by batch normalisation, LeakyReLU and 20 % feature-wise
(channel) dropout, stride 2 except the 7th and 8th; L2 regularisation 1e-5 on their kernels;
then a dense layer of 128 units with BN and LeakyReLU, and one output unit (sigmoid for
classification, linear for regression). Adam 1e-2 divided by 10 on each plateau of the
validation metric down to 1e-5, batch 16 (``configs/slide-cnn.yaml``).

Not in the paper, chosen here: the feature map of the last convolution is reduced to one
vector by global average pooling (``pool="avg"``; "max", or "flatten" which ties the model
to ``crop``); LeakyReLU slope 0.2 and BN epsilon 1e-3 as the NIC encoders of this package;
the L2 term is Keras' (``l2 * sum(w^2)`` over the depthwise and pointwise kernels, added to
the loss).

``forward(x)`` / ``encode(x)`` on ``(N, C, R, R)`` crops return ``{"pooled": (N, 128),
"hidden": (N, 128), "logits": (N,), "prediction": (N,)}``. :attr:`SlideCNN.cam_layer` is the
first convolution block, the layer the paper's Grad-CAM maps use "to maximize the heatmap
resolution" (§3.3, k = 1); :attr:`SlideCNN.blocks` holds all eight (the last one, ``blocks[-1]``,
gives the coarser classic Grad-CAM).

Example
-------
>>> import torch
>>> from histolatent.models import create_model
>>> net = create_model("slide-cnn", in_channels=8, crop=32, filters=16, hidden=16).eval()
>>> out = net(torch.zeros(2, 8, 32, 32))
>>> sorted(out), tuple(out["logits"].shape)
(['hidden', 'logits', 'pooled', 'prediction'], (2,))
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from histolatent.models.registry import register_model
from histolatent.models.slide_base import SlideModel, SlideModelConfig
from histolatent.nn.nic import conv_out_size
from histolatent.nn.separable import SeparableConv2d

__all__ = ["SlideCNN", "SlideCNNConfig"]


class SlideCNNConfig(SlideModelConfig):
    filters: int = Field(128, ge=1, description="filters of every convolution")
    strides: list[int] = Field(default_factory=lambda: [2, 2, 2, 2, 2, 2, 1, 1],
                               description="one stride per separable convolution (the paper's 8 layers)")
    dropout: float = Field(0.2, ge=0, lt=1, description="feature-wise (channel) dropout after each block")
    hidden: int = Field(128, ge=1, description="units of the dense layer")
    l2: float = Field(1e-5, ge=0, description="Keras L2 coefficient on the convolution kernels")
    pool: Literal["avg", "max", "flatten"] = Field("avg", description="last feature map -> vector")
    slope: float = 0.2

    @model_validator(mode="after")
    def _layers(self) -> SlideCNNConfig:
        if not self.strides or any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"strides must be a non-empty list of 1s and 2s, got {self.strides}")
        return self


@register_model("slide-cnn")
class SlideCNN(SlideModel):
    """NIC's slide-level CNN (module docstring)."""

    Config = SlideCNNConfig

    def __init__(self, config: SlideCNNConfig) -> None:
        super().__init__(config)
        c = config
        blocks, cin = [], c.in_channels
        for s in c.strides:
            blocks.append(nn.Sequential(SeparableConv2d(cin, c.filters, 3, stride=s),
                                        nn.BatchNorm2d(c.filters, eps=1e-3), nn.LeakyReLU(c.slope),
                                        nn.Dropout2d(c.dropout)))
            cin = c.filters
        self.blocks = nn.Sequential(*blocks)
        flat = c.filters
        if c.pool == "flatten":
            side = c.crop
            for s in c.strides:
                side = conv_out_size(side, 1, valid=False) if s == 2 else side
            flat = c.filters * side * side
        self.dense = nn.Sequential(nn.Linear(flat, c.hidden), nn.BatchNorm1d(c.hidden, eps=1e-3),
                                   nn.LeakyReLU(c.slope))
        self.out = nn.Linear(c.hidden, 1)

    @property
    def cam_layer(self) -> nn.Module:
        """The first convolution block (separable conv, BN, LeakyReLU, dropout), NIC §3.3: Grad-CAM hooks its output."""
        return self.blocks[0]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """``x (N, C, R, R)`` -> named parts; ``mask`` is not used (background codes are zero)."""
        x, _ = self.check_input(x, mask)
        c = self.config
        if c.pool == "flatten" and tuple(x.shape[2:]) != (c.crop, c.crop):
            raise ValueError(f"slide-cnn with pool='flatten' takes {c.crop} x {c.crop} crops, got {tuple(x.shape)}")
        f = self.blocks(x)  # (N, filters, R', R')
        if c.pool == "avg":
            pooled = f.mean(dim=(2, 3))
        elif c.pool == "max":
            pooled = f.amax(dim=(2, 3))
        else:
            pooled = f.flatten(1)
        h = self.dense(pooled)
        logits = self.out(h)[:, 0]
        return {"pooled": pooled, "hidden": h, "logits": logits, "prediction": self.prediction(logits)}

    def regularization(self) -> Tensor | None:
        if not self.config.l2:
            return None
        kernels = [m.weight for m in self.blocks.modules() if isinstance(m, nn.Conv2d)]
        return self.config.l2 * torch.stack([(w * w).sum() for w in kernels]).sum()
