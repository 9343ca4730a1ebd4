"""U-Net for nuclei: background / nucleus / boundary, as in Yuan & Suh (2018), §3.2.

Architecture (paper §3.2): four levels of down-sampling and four symmetric levels of
up-sampling; each level holds two 3x3 convolutions (each followed by ReLU) and a 2x2 max
pool; skip connections concatenate the encoder's feature map of the same size onto each
up-sampling level; a 144x144 input reaches 512 channels at 9x9 at the bottom. Channels
double per level from ``base_channels`` (32 -> 512). Up-sampling is a 2x2 transposed
convolution (Ronneberger et al. 2015). Batch norm after each convolution is an addition
(on by default; the paper's colouriser uses it, its U-Net text does not say).

Output: three logits per pixel, classes 0 background, 1 nucleus interior, 2 nucleus
boundary (the three labels of the paper's §2.2); instances are recovered from the
3-class map by :func:`histolatent.nuclei.unet.instances_from_probabilities`.

CPU scaling: ``width`` multiplies every channel count (``width=0.25`` gives 8 -> 128);
the architecture (depth, convolutions, skips) is unchanged. The paper trains with Adam at
``lr = 1e-4``; the default here, too.

Training (:meth:`UNet.training_step`): class-weighted cross-entropy plus a soft Dice term
on the nucleus foreground (interior + boundary); random flips / 90-degree rotations and an
optional HED stain augmentation (:class:`histolatent.stain.StainAugment`, Tellez et al.
2018) are applied on the fly, drawn from the engine-seeded torch RNG.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from histolatent.config import Config
from histolatent.models.base import Batch, Optimizers, RepresentationModel
from histolatent.models.registry import register_model


class UNetConfig(Config):
    """Defaults of Yuan & Suh (2018) §3.2 (144x144 inputs, 512 channels at the bottom, Adam 1e-4)."""

    in_channels: int = Field(3, ge=1)
    num_classes: int = Field(3, ge=2, description="background, nucleus, boundary")
    base_channels: int = Field(32, ge=1, description="channels of the first level (doubles per level)")
    depth: int = Field(4, ge=1, le=6, description="down-sampling levels")
    width: float = Field(1.0, gt=0, le=4, description="multiplier on every channel count (CPU scaling)")
    batch_norm: bool = True
    image_size: int = Field(144, ge=16, description="training crop side (px), for example_batch")
    mpp: float = Field(0.5, gt=0, description="µm per pixel the model is trained at (inference resamples to it)")
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    class_weights: list[float] = Field(default_factory=lambda: [1.0, 1.0, 2.0])
    dice_weight: float = Field(1.0, ge=0, description="weight of the soft foreground Dice loss")
    augment: bool = Field(True, description="random flips and 90-degree rotations in training_step")
    stain_augment: float = Field(0.0, ge=0, le=1, description="HED stain augmentation: half-width of the "
                                 "concentration scale (sigma_scale of histolatent.stain.StainAugment; 0 = off)")

    def channels(self) -> list[int]:
        """Channels of each level, top to bottom (``depth + 1`` entries)."""
        return [max(1, int(round(self.base_channels * self.width * 2**k))) for k in range(self.depth + 1)]


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, bn: bool) -> None:
        layers: list[nn.Module] = []
        for a, b in ((cin, cout), (cout, cout)):
            layers += [nn.Conv2d(a, b, 3, padding=1, bias=not bn)]
            if bn:
                layers.append(nn.BatchNorm2d(b))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


@register_model("unet")
class UNet(RepresentationModel):
    """U-Net predicting background / nucleus / boundary per pixel (Yuan & Suh 2018, §3.2).

    ``forward(x)`` takes ``(N, C, H, W)`` float in [0, 1] with ``H`` and ``W`` divisible by
    ``2**depth`` and returns logits ``(N, num_classes, H, W)``; :meth:`predict` pads any
    size and returns probabilities. ``encode(x)`` returns ``{"z": (N, C_bottom)}`` (the
    spatially averaged bottleneck) and ``{"features": (N, C_bottom, H/16, W/16)}``.
    """

    Config = UNetConfig

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        ch = config.channels()
        bn = config.batch_norm
        self.down = nn.ModuleList()
        cin = config.in_channels
        for c in ch[:-1]:
            self.down.append(_DoubleConv(cin, c, bn))
            cin = c
        self.bottom = _DoubleConv(ch[-2], ch[-1], bn)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for c_hi, c_lo in zip(ch[::-1][:-1], ch[::-1][1:], strict=True):
            self.up.append(nn.ConvTranspose2d(c_hi, c_lo, 2, stride=2))
            self.up_conv.append(_DoubleConv(2 * c_lo, c_lo, bn))
        self.head = nn.Conv2d(ch[0], config.num_classes, 1)
        self._stain_aug = None
        if config.stain_augment > 0:
            from histolatent.stain.augment import StainAugment

            self._stain_aug = StainAugment(sigma_scale=config.stain_augment, sigma_shift=0.03, sigma_vector=0.05)
        self.register_buffer("class_weights", torch.tensor(config.class_weights, dtype=torch.float32),
                             persistent=False)
        if len(config.class_weights) != config.num_classes:
            raise ValueError(f"class_weights has {len(config.class_weights)} entries, expected {config.num_classes}")
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # -- network ---------------------------------------------------------------------------
    def _encode_maps(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        m = 2 ** self.config.depth
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be divisible by {m}; use predict() for any size")
        skips = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        return self.bottom(h), skips

    def forward(self, x: Tensor) -> Tensor:
        h, skips = self._encode_maps(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            h = conv(torch.cat([up(h), skip], dim=1))  # (N, 2c, H', W') -> (N, c, H', W')
        return self.head(h)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        h, _ = self._encode_maps(x)
        return {"z": h.mean(dim=(2, 3)), "features": h}

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Class probabilities ``(N, num_classes, H, W)`` for inputs of any size (reflect-padded)."""
        m = 2 ** self.config.depth
        hh, ww = x.shape[-2:]
        ph, pw = (-hh) % m, (-ww) % m
        if ph or pw:
            mode = "reflect" if hh > ph and ww > pw else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return torch.softmax(self(x).float(), dim=1)[..., :hh, :ww]

    # -- training --------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)}

    def loss(self, x: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Weighted cross-entropy + soft Dice of the foreground; ``target`` is ``(N, H, W)`` int64."""
        logits = self(x).float()
        ce = F.cross_entropy(logits, target, weight=self.class_weights)
        prob = torch.softmax(logits, dim=1)
        fg_p = 1.0 - prob[:, 0]
        fg_t = (target > 0).float()
        inter = (fg_p * fg_t).sum()
        soft_dice = (2 * inter + 1.0) / (fg_p.sum() + fg_t.sum() + 1.0)
        loss = ce + self.config.dice_weight * (1.0 - soft_dice)
        with torch.no_grad():
            pred_fg = logits.argmax(1) > 0
            tp = (pred_fg & (target > 0)).sum().float()
            dice = (2 * tp + 1e-6) / (pred_fg.sum() + (target > 0).sum() + 1e-6)
        return {"loss": loss, "ce": ce.detach(), "dice": dice}

    def _augment(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.config.augment:
            k = int(torch.randint(0, 4, ()).item())
            if k:
                x, y = torch.rot90(x, k, dims=(-2, -1)), torch.rot90(y, k, dims=(-2, -1))
            if bool(torch.rand(()) < 0.5):
                x, y = x.flip(-1), y.flip(-1)
        if self.config.stain_augment > 0:
            # re-seeded from the engine-seeded global RNG: the same step gets the same stains,
            # so a resumed run stays bitwise identical
            self._stain_aug.generator.manual_seed(int(torch.randint(0, 2**62, ())))
            x = self._stain_aug(x)
        return x.contiguous(), y.contiguous()

    def training_step(self, batch: Batch, optimizers: Optimizers, step: int) -> dict[str, Tensor]:
        x, y = self._augment(batch["image"], batch["target"].long())
        terms = self.loss(x, y)
        optimizers.update(terms["loss"], "main")
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        return self.loss(batch["image"], batch["target"].long())

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        c = self.config
        s = c.image_size
        return {"image": torch.rand(batch_size, c.in_channels, s, s),
                "target": torch.randint(0, c.num_classes, (batch_size, s, s))}

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

