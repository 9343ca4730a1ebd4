"""A VGG-style convolutional encoder whose blocks can be read one by one.

Simonyan & Zisserman (2015), VGG-19 as DRL's backbone (papers/drl_deformation-representation-
learning.txt §4.B.1): five blocks of 3 x 3 convolutions (stride 1, padding 1) with ReLU, 2, 2,
4, 4 and 4 convolutions of 64, 128, 256, 512 and 512 channels, each block closed by a 2 x 2
max-pool. ``widths`` and ``convs`` make smaller presets; ``batch_norm`` adds BN after each
convolution (torchvision's ``vgg19_bn`` layout), which lets the 16-layer stack train from scratch.

The output of block ``b`` (1-based, after its pool) is the feature map the paper calls
"Conv b": its linear probes read Conv2-Conv4 (§4.C.2) and its local objective reads a
mid-level block of side ``M = S / 2^b``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, model_validator
from torch import Tensor, nn

from histolatent.config import Config

__all__ = ["VGG19_CONVS", "VGG19_WIDTHS", "VGGBackboneConfig", "VGGEncoder"]

VGG19_WIDTHS = (64, 128, 256, 512, 512)
VGG19_CONVS = (2, 2, 4, 4, 4)


class VGGBackboneConfig(Config):
    """The options of a model built on :class:`VGGEncoder` (DRL, DIM and their downstream networks).

    A pretext run and the network fine-tuned from it share these, so the encoder's weights fit.
    """

    image_size: int = Field(96, ge=2, description="input side S, px (PCam: 96)")
    in_channels: int = Field(3, ge=1)
    mpp: float = Field(0.972, gt=0, description="µm per pixel of the input (PCam: 10x, about 0.97)")
    widths: list[int] = Field(default_factory=lambda: list(VGG19_WIDTHS), description="channels of each VGG block")
    convs: list[int] = Field(default_factory=lambda: list(VGG19_CONVS), description="3x3 convs in each VGG block")
    batch_norm: bool = Field(True, description="BN after each conv (VGG-19-BN); the paper does not say")

    @model_validator(mode="after")
    def _backbone_fits(self) -> VGGBackboneConfig:
        if len(self.widths) != len(self.convs) or not self.widths:
            raise ValueError(f"widths {self.widths} and convs {self.convs} must be non-empty and of the same length")
        if self.image_size % 2 ** len(self.widths):
            raise ValueError(f"image_size {self.image_size} must be divisible by 2^{len(self.widths)} "
                             f"({len(self.widths)} max-pools)")
        return self


class VGGEncoder(nn.Module):
    """``(N, C, S, S) -> [block 1, ..., block B]``, block ``b`` of shape ``(N, widths[b-1], S/2^b, S/2^b)``."""

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = VGG19_WIDTHS,
                 convs: Sequence[int] = VGG19_CONVS, *, batch_norm: bool = True) -> None:
        super().__init__()
        if len(widths) != len(convs) or not widths or min(convs) < 1:
            raise ValueError(f"VGGEncoder: widths {list(widths)} and convs {list(convs)} must be non-empty, "
                             "of the same length, with at least one conv per block")
        self.widths = tuple(int(w) for w in widths)
        blocks, cin = [], in_channels
        for width, n in zip(self.widths, convs, strict=True):
            layers: list[nn.Module] = []
            for _ in range(n):
                layers.append(nn.Conv2d(cin, width, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                cin = width
            layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        for m in self.modules():  # He initialisation, as torchvision's VGG
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, *, upto: int | None = None) -> list[Tensor]:
        """The outputs of blocks ``1 .. upto`` (all by default), each after its max-pool."""
        upto = len(self.blocks) if upto is None else upto
        if not 1 <= upto <= len(self.blocks):
            raise ValueError(f"VGGEncoder: upto must be in 1..{len(self.blocks)}, got {upto}")
        out = []
        for block in self.blocks[:upto]:
            x = block(x)
            out.append(x)
        return out
