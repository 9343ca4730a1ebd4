"""DRL's Feature Enhance Module (papers/drl_deformation-representation-learning.txt §3.3, Eq. 5).

After ASPP (Chen et al. 2017): parallel dilated convolutions on an ``M x M`` feature map,
their outputs concatenated. DRL sizes the module by the map: ``k = ceil(log2 M)`` filters of
kernel ``s`` with dilation rates ``r_0 = 1, r_1 = 2, r_i = 6 * 2^(i - 2)`` (1, 2, 6, 12, 24,
...). A dilated kernel spans ``s + (s - 1)(r - 1)`` px (Eq. 5); for ``s = 3`` the widest,
``2 r_(k-1) + 1``, exceeds ``M``, so the last filter sees the whole map. (``M = 1`` would give
``k = 0``; one filter is kept.) Each branch is a plain convolution, bias included, with
"same" padding; FEM is part of the pretext network only and is not transferred.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["FeatureEnhanceModule", "fem_dilations", "span"]


def fem_dilations(m: int) -> list[int]:
    """The dilation rates of FEM for an ``m x m`` map: ``k = max(1, ceil(log2 m))`` of them.

    >>> fem_dilations(6), fem_dilations(12), fem_dilations(64)
    ([1, 2, 6], [1, 2, 6, 12], [1, 2, 6, 12, 24, 48])
    """
    if m < 1:
        raise ValueError(f"fem_dilations: the map side must be >= 1, got {m}")
    k = max(1, math.ceil(math.log2(m)))
    return [1, 2, *(6 * 2 ** (i - 2) for i in range(2, k))][:k]


def span(kernel_size: int, dilation: int) -> int:
    """Eq. 5: the side covered by a ``kernel_size`` kernel at ``dilation``."""
    return kernel_size + (kernel_size - 1) * (dilation - 1)


class FeatureEnhanceModule(nn.Module):
    """``(N, C_in, M, M) -> (N, k * channels, M, M)``: the concatenated dilated branches."""

    def __init__(self, in_channels: int, size: int, channels: int, *, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"FeatureEnhanceModule: kernel_size must be odd, got {kernel_size}")
        self.dilations = fem_dilations(size)
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, channels, kernel_size, dilation=r, padding=r * (kernel_size - 1) // 2)
            for r in self.dilations)
        self.out_channels = channels * len(self.dilations)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)
