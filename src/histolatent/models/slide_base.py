"""What the slide-level learners share: grid crops in, one slide label out (NIC §3).

A slide model reads a crop of a compressed slide, ``x (N, C, R, R)`` float codes with its
tissue mask ``(N, R, R)`` bool (background cells hold zero codes), and predicts the
slide's label: a probability (``task="binary"``: sigmoid, binary cross-entropy) or a value
(``task="regression"``: linear, mean squared error), as NIC's supplementary describes for
Camelyon16 and TUPAC16. A regression model learns the standardised label
``(y - target_mean) / target_std`` and predicts on the label's scale, so that the loss does not
vanish beside the weight penalty when labels are small numbers (a lesion fraction of 0.05). ``forward(x, mask)`` (= ``encode``) returns named parts with
``logits (N,)`` and ``prediction (N,)`` (the probability or the value) among them.

Batches are ``{"image": (N, C, R, R), "mask": (N, R, R), "label": (N,) float}``
(:mod:`histolatent.datasets.grid_crops`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from histolatent.config import Config
from histolatent.models.base import Batch, LossTermsModel

__all__ = ["SlideModel", "SlideModelConfig"]


class SlideModelConfig(Config):
    in_channels: int = Field(128, ge=1, description="C: code size of the grids")
    crop: int = Field(400, ge=1, description="R: side of the grid crops, cells (the paper's 400)")
    task: Literal["binary", "regression"] = Field("binary", description="sigmoid + BCE, or linear + MSE")
    target_mean: float = Field(0.0, description="regression: labels are standardised by this mean ...")
    target_std: float = Field(1.0, gt=0, description="... and this SD for the loss; predictions are on the "
                              "labels' scale (set from the training slides by slides train / cv)")
    lr: float = Field(1e-2, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)


class SlideModel(LossTermsModel):
    """Base of the slide-level models: input checks, the task's loss and its prediction."""

    def check_input(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``x`` as float32 ``(N, C, R, R)`` on the model's device (and the mask as bool)."""
        c = self.config.in_channels
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"{self.registry_name}: expected grid crops (N, {c}, R, R), got {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        if mask is not None:
            if tuple(mask.shape) != (x.shape[0], *x.shape[2:]):
                raise ValueError(f"{self.registry_name}: mask {tuple(mask.shape)} does not fit crops {tuple(x.shape)}")
            mask = mask.to(self.device, torch.bool)
        return x, mask

    def prediction(self, logits: Tensor) -> Tensor:
        """The probability (binary) or the value on the labels' scale (regression) of ``logits``."""
        c = self.config
        return logits.sigmoid() if c.task == "binary" else logits * c.target_std + c.target_mean

    def forward(self, x: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        raise NotImplementedError

    def encode(self, x: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """The named parts of :meth:`forward`."""
        return self(x, mask)

    def regularization(self) -> Tensor | None:
        """A penalty added to the loss (e.g. L2 on kernels), or None."""
        return None

    def batch_terms(self, batch: Batch) -> dict[str, Tensor]:
        out = self(batch["image"], batch.get("mask"))
        y = batch["label"].to(self.device, torch.float32).reshape(-1)
        logits = out["logits"]
        if self.config.task == "binary":
            data = F.binary_cross_entropy_with_logits(logits, y)
            terms = {"bce": data, "accuracy": ((logits.detach() > 0) == (y > 0.5)).float().mean()}
        else:
            data = F.mse_loss(logits, (y - self.config.target_mean) / self.config.target_std)
            terms = {"mse": data}  # of standardised labels
        reg = self.regularization()
        if reg is not None:
            terms["l2"] = reg
        return {"loss": data if reg is None else data + reg, **terms}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {"main": torch.optim.Adam(self.parameters(), lr=c.lr, betas=tuple(c.betas),
                                         weight_decay=getattr(c, "weight_decay", 0.0))}

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        g = torch.Generator().manual_seed(0)
        mask = torch.rand(batch_size, c.crop, c.crop, generator=g) < 0.7
        mask[:, c.crop // 2, c.crop // 2] = True  # crops are centred on tissue
        x = torch.randn(batch_size, c.in_channels, c.crop, c.crop, generator=g) * mask[:, None]
        label = (torch.arange(batch_size) % 2).float() if c.task == "binary" else torch.randn(batch_size, generator=g)
        return {"image": x, "mask": mask, "label": label}
