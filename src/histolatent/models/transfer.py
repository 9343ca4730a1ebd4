"""Downstream networks on a (pretrained) VGG encoder: DRL's fine-tuning protocol.

papers/drl_deformation-representation-learning.txt §4.B.2: the encoder of a pretext task
(DRL, DIM, a VAE ... with the same VGG backbone; the Feature Enhance Module is not
transferred) is fine-tuned end to end with a task head:

* ``vgg-classifier`` (PCam, Table III): the spatial mean of the last block (or of block
  ``feature_block``), then a linear layer (``head: linear``) or a one-hidden-layer MLP;
  cross-entropy. Adam at ``lr`` 1e-3 (the paper: Adam 1e-3, batch 128).
* ``vgg-segmenter`` (GLaS, Tables I and IV): a U-Net decoder (Ronneberger et al. 2015) on the
  blocks: from the deepest block, each level up-samples by a 2 x 2 transposed convolution,
  concatenates the block of the same size and applies two 3 x 3 conv-BN-ReLU; a last
  up-sampling returns to the input size and a 1 x 1 conv gives ``num_classes`` logits per
  pixel (0 background, 1 gland, 2 lumen when ``num_classes`` is 3); cross-entropy plus a soft
  Dice term on the foreground. (The paper: SGD at 5e-3, batch 2; Adam here, as the CPU
  presets train for minutes.)

The encoder is :class:`~histolatent.nn.vgg.VGGEncoder` under the name ``backbone``, the same
name and layout as in ``drl`` and ``dim``, so a pretrained run's ``backbone.*``
tensors load into it (``train.init_from``; :func:`histolatent.downstream.finetune` sets it).
Inputs are float ``(N, C, S, S)`` in [0, 1], scaled to [-1, 1] inside as in the pretext
models. Training draws random flips and quarter turns from the engine-seeded torch RNG.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from histolatent.models.base import Batch, Optimizers, RepresentationModel
from histolatent.models.registry import register_model
from histolatent.nn.vgg import VGGBackboneConfig, VGGEncoder

__all__ = ["TransferConfig", "VGGClassifier", "VGGClassifierConfig", "VGGSegmenter", "VGGSegmenterConfig"]


class TransferConfig(VGGBackboneConfig):
    """The encoder (as the pretext model's), task classes, optimiser and augmentation."""

    num_classes: int = Field(2, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    augment: bool = Field(True, description="random flips and quarter turns in training_step")


class _Transfer(RepresentationModel):
    """The shared encoder, input check, augmentation, optimiser and update rule."""

    def __init__(self, config: TransferConfig) -> None:
        super().__init__(config)
        c = config
        self.backbone = VGGEncoder(c.in_channels, c.widths, c.convs, batch_norm=c.batch_norm)

    def images(self, x: Tensor) -> Tensor:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"{self.registry_name}: expected (N, {c.in_channels}, H, W) images in [0, 1], "
                             f"got {tuple(x.shape)}")
        return x.to(self.device, torch.float32)

    def blocks(self, x: Tensor) -> list[Tensor]:
        return self.backbone(self.images(x) * 2.0 - 1.0)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        maps = self.blocks(x)
        out = {"z": maps[-1].mean(dim=(2, 3))}
        out.update({f"conv{b + 1}": m.mean(dim=(2, 3)) for b, m in enumerate(maps)})
        return out

    def _augment(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if not self.config.augment:
            return x, y
        k = int(torch.randint(0, 4, ()).item())
        flip = bool(torch.rand(()) < 0.5)
        x = torch.rot90(x, k, dims=(-2, -1))
        x = x.flip(-1) if flip else x
        if y is not None and y.ndim >= 2:  # a mask turns with its image
            y = torch.rot90(y, k, dims=(-2, -1))
            y = y.flip(-1) if flip else y
        return x.contiguous(), y

    def batch_terms(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def target(self, batch: Batch) -> Tensor:
        raise NotImplementedError

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {"main": torch.optim.Adam(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)}

    def training_step(self, batch: Batch, optimizers: Optimizers, step: int) -> dict[str, Tensor]:
        x, y = self._augment(batch["image"], self.target(batch))
        terms = self.batch_terms(x, y)
        optimizers.update(terms["loss"], "main")
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        return self.batch_terms(batch["image"], self.target(batch))


class VGGClassifierConfig(TransferConfig):
    head: Literal["linear", "mlp"] = Field("linear", description="linear layer or a one-hidden-layer MLP")
    hidden: int = Field(256, ge=1, description="hidden units of the MLP head")
    feature_block: int = Field(0, ge=0, description="block whose spatial mean feeds the head (0: the last)")

    @model_validator(mode="after")
    def _block(self) -> VGGClassifierConfig:
        if self.feature_block > len(self.widths):
            raise ValueError(f"feature_block {self.feature_block} is past the last of {len(self.widths)} blocks")
        return self


@register_model("vgg-classifier")
class VGGClassifier(_Transfer):
    """``(N, C, S, S) -> (N, num_classes)`` logits; ``batch = {"image", "label"}``."""

    Config = VGGClassifierConfig

    def __init__(self, config: VGGClassifierConfig) -> None:
        super().__init__(config)
        c = config
        d = c.widths[(c.feature_block or len(c.widths)) - 1]
        self.head = (nn.Linear(d, c.num_classes) if c.head == "linear" else
                     nn.Sequential(nn.Linear(d, c.hidden), nn.ReLU(inplace=True), nn.Linear(c.hidden, c.num_classes)))

    def forward(self, x: Tensor) -> Tensor:
        c = self.config
        maps = self.backbone(self.images(x) * 2.0 - 1.0, upto=c.feature_block or None)
        return self.head(maps[-1].mean(dim=(2, 3)))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Class probabilities ``(N, num_classes)``."""
        return torch.softmax(self(x).float(), dim=1)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        out = super().encode(x)
        out["prob"] = torch.softmax(self(x).float(), dim=1)
        return out

    def target(self, batch: Batch) -> Tensor:
        return batch["label"].to(self.device).long().view(-1)

    def batch_terms(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        logits = self(x).float()
        loss = F.cross_entropy(logits, y)
        return {"loss": loss, "acc": (logits.argmax(1) == y).float().mean().detach()}

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        return {"image": torch.rand(batch_size, c.in_channels, c.image_size, c.image_size),
                "label": torch.arange(batch_size) % c.num_classes}


class _Up(nn.Module):
    """Up-sample ``x2`` (transposed conv), concatenate the skip, two conv-BN-ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = nn.Sequential(nn.Conv2d(cout + cskip, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        h = self.up(x)
        return self.conv(h if skip is None else torch.cat([h, skip], dim=1))


class VGGSegmenterConfig(TransferConfig):
    image_size: int = Field(128, ge=2, description="training tile side S, px")
    decoder_scale: float = Field(0.5, gt=0, le=4, description="decoder channels = scale x the encoder's")
    dice_weight: float = Field(1.0, ge=0, description="weight of the soft foreground Dice term")


@register_model("vgg-segmenter")
class VGGSegmenter(_Transfer):
    """``(N, C, H, W) -> (N, num_classes, H, W)`` logits (``H, W`` divisible by ``2^blocks``);
    ``batch = {"image", "target": (N, H, W) class ids}``."""

    Config = VGGSegmenterConfig

    def __init__(self, config: VGGSegmenterConfig) -> None:
        super().__init__(config)
        c = config
        dec = [max(4, int(round(w * c.decoder_scale))) for w in c.widths]
        ups, cin = [], c.widths[-1]
        for b in range(len(c.widths) - 2, -1, -1):  # to the size of block b (0-based), with its skip
            ups.append(_Up(cin, c.widths[b], dec[b]))
            cin = dec[b]
        ups.append(_Up(cin, 0, dec[0]))  # back to the input size (no skip there)
        self.decoder = nn.ModuleList(ups)
        self.classify = nn.Conv2d(dec[0], c.num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        m = 2 ** len(self.config.widths)
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"vgg-segmenter: input size {tuple(x.shape[-2:])} must be divisible by {m}")
        maps = self.blocks(x)
        h = maps[-1]
        skips = [*maps[-2::-1], None]
        for up, skip in zip(self.decoder, skips, strict=True):
            h = up(h, skip)
        return self.classify(h)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Class probabilities ``(N, num_classes, H, W)`` for any ``H, W`` (reflect-padded, cropped back)."""
        m = 2 ** len(self.config.widths)
        hh, ww = x.shape[-2:]
        ph, pw = (-hh) % m, (-ww) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if hh > ph and ww > pw else "replicate")
        return torch.softmax(self(x).float(), dim=1)[..., :hh, :ww]

    def target(self, batch: Batch) -> Tensor:
        return batch["target"].to(self.device).long()

    def batch_terms(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        logits = self(x).float()
        ce = F.cross_entropy(logits, y)
        fg_p = 1.0 - torch.softmax(logits, dim=1)[:, 0]
        fg_t = (y > 0).float()
        soft_dice = (2 * (fg_p * fg_t).sum() + 1.0) / (fg_p.sum() + fg_t.sum() + 1.0)
        with torch.no_grad():
            fg = logits.argmax(1) > 0
            dice = (2 * (fg & (y > 0)).sum() + 1e-6) / (fg.sum() + (y > 0).sum() + 1e-6)
        return {"loss": ce + self.config.dice_weight * (1.0 - soft_dice), "ce": ce.detach(), "dice": dice.float()}

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        s = c.image_size
        return {"image": torch.rand(batch_size, c.in_channels, s, s),
                "target": torch.randint(0, c.num_classes, (batch_size, s, s))}
