"""Building blocks of the NIC patch encoders (papers/nic_neural-image-compression.txt, supplementary).

All NIC encoders share one shape: ``n`` strided 3x3 conv blocks, optionally a dense hidden
layer (BN, LeakyReLU), then a linear layer with ``C`` units. The histopathology VAE /
contrastive / supervised encoder is ``[32, 64, 128, 256, 512]`` "same"-padded blocks
(conv -> BN -> LReLU) + dense 512; the BiGAN encoder is ``4 x [conv 128 3x3 stride 2 "valid"
-> LReLU 0.2 -> BN]`` (the authors' released layer order, REFERENCES.md) without a hidden
layer. Decoders / generators are a dense layer reshaped to ``4 x 4 x c0``, then blocks of
[nearest x2 upsampling, 3x3 conv, BN, LReLU], then a 3x3 conv and ``tanh``; when
``4 * 2**n`` differs from the image size (the 9-px digit patches) the output is
area-resampled to it.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NICDecoder", "NICEncoder", "conv_out_size", "to_signed"]


def conv_out_size(size: int, n: int, *, valid: bool) -> int:
    """Side after ``n`` 3x3 stride-2 convs ("valid": no padding; "same": padding 1)."""
    for _ in range(n):
        size = (size - 3) // 2 + 1 if valid else (size - 1) // 2 + 1
        if size < 1:
            raise ValueError(f"image too small for {n} stride-2 convs")
    return size


def to_signed(x: Tensor, pool: int = 1) -> Tensor:
    """``x`` in [0, 1] -> average-pooled by ``pool`` and scaled to [-1, 1] (the NIC input convention)."""
    if pool > 1:
        x = F.avg_pool2d(x, pool)
    return x * 2.0 - 1.0


class NICEncoder(nn.Module):
    """``(N, in_channels, S, S) -> (N, out_dim)``.

    Parameters
    ----------
    in_channels, image_size : int
        Input channels and side (after any pooling).
    channels : list of int
        Filters of the stride-2 3x3 conv blocks.
    hidden : int
        Units of the dense BN-LReLU layer before the output (0: none).
    out_dim : int
        Units of the final linear layer.
    padding : "same" or "valid"
    order : "bn_act" (conv, BN, LReLU) or "act_bn" (conv, LReLU, BN: the authors' BiGAN)
    """

    def __init__(self, in_channels: int, image_size: int, channels: list[int], hidden: int, out_dim: int, *,
                 padding: Literal["same", "valid"] = "same", order: Literal["bn_act", "act_bn"] = "bn_act",
                 slope: float = 0.2) -> None:
        super().__init__()
        valid = padding == "valid"
        layers: list[nn.Module] = []
        cin = in_channels
        for ch in channels:
            act, bn = nn.LeakyReLU(slope), nn.BatchNorm2d(ch, eps=1e-3)
            layers += [nn.Conv2d(cin, ch, 3, stride=2, padding=0 if valid else 1),
                       *((bn, act) if order == "bn_act" else (act, bn))]
            cin = ch
        self.convs = nn.Sequential(*layers)
        self.feature_shape = (cin, conv_out_size(image_size, len(channels), valid=valid),
                              conv_out_size(image_size, len(channels), valid=valid))
        flat = cin * self.feature_shape[1] * self.feature_shape[2]
        head: list[nn.Module] = []
        if hidden:
            head += [nn.Linear(flat, hidden), nn.BatchNorm1d(hidden, eps=1e-3), nn.LeakyReLU(slope)]
            flat = hidden
        head.append(nn.Linear(flat, out_dim))
        self.head = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.convs(x).flatten(1))


class NICDecoder(nn.Module):
    """``(N, in_dim) -> (N, out_channels, S, S)`` in [-1, 1] (tanh).

    Dense ``4 * 4 * start_channels`` (BN, LReLU) -> per entry of ``channels``: nearest x2,
    3x3 conv, BN, LReLU -> 3x3 conv to ``out_channels`` -> tanh; resampled (area) to
    ``image_size`` when the upsampled side differs.
    """

    def __init__(self, in_dim: int, image_size: int, start_channels: int, channels: list[int],
                 out_channels: int, *, slope: float = 0.2) -> None:
        super().__init__()
        self.start_channels, self.image_size = start_channels, image_size
        self.dense = nn.Sequential(nn.Linear(in_dim, 16 * start_channels), nn.BatchNorm1d(16 * start_channels, eps=1e-3),
                                   nn.LeakyReLU(slope))
        layers: list[nn.Module] = []
        cin = start_channels
        for ch in channels:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, ch, 3, padding=1),
                       nn.BatchNorm2d(ch, eps=1e-3), nn.LeakyReLU(slope)]
            cin = ch
        layers.append(nn.Conv2d(cin, out_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.out_side = 4 * 2 ** len(channels)

    def forward(self, z: Tensor) -> Tensor:
        h = self.dense(z).view(z.shape[0], self.start_channels, 4, 4)
        y = self.body(h)
        if self.out_side != self.image_size:
            y = F.interpolate(y, size=(self.image_size, self.image_size), mode="area" if
                              self.out_side > self.image_size else "bilinear")
        return y.tanh()
