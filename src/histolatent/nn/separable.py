"""Depthwise-separable convolution (Chollet, Xception, CVPR 2017), as NIC's slide-level CNN uses it.

A ``k x k`` convolution from ``C_in`` to ``C_out`` channels factored into a depthwise
``k x k`` convolution (one filter per input channel) and a pointwise ``1 x 1`` convolution
that mixes channels: ``C_in * k^2 + C_in * C_out`` weights instead of ``C_in * C_out * k^2``
(NIC §3.2: fewer parameters for a CNN trained on a few hundred slides). As Keras'
``SeparableConv2D`` (the authors' framework), the depthwise step has no bias and the pointwise
one has. Both kernels start Glorot-uniform with a zero bias, the depthwise fans counted per
channel (``k^2`` in, ``k^2`` out): a signal then keeps its scale through a stack of layers.
PyTorch's default, and Keras' fans counted over all channels, shrink it several-fold a layer,
which leaves an untrained 8-layer stack blind to its input until batch statistics catch up.

Example
-------
>>> import torch
>>> conv = SeparableConv2d(128, 128, 3, stride=2)
>>> sum(p.numel() for p in conv.parameters())           # 128*9 + 128*128 + 128 (bias)
17664
>>> tuple(conv(torch.zeros(1, 128, 25, 25)).shape)      # stride 2, "same" padding: ceil(25 / 2)
(1, 128, 13, 13)
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SeparableConv2d"]


class SeparableConv2d(nn.Module):
    """``(N, C_in, H, W) -> (N, C_out, H', W')``: depthwise ``k x k``, then pointwise ``1 x 1``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int
        Odd side of the depthwise filters.
    stride : int
        Stride of the depthwise step.
    padding : int, optional
        Zero padding of the depthwise step (default ``kernel_size // 2``: "same" for stride 1,
        ``ceil(H / stride)`` rows for stride 2).
    bias : bool
        Bias of the pointwise step.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1,
                 padding: int | None = None, bias: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        pad = kernel_size // 2 if padding is None else int(padding)
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=pad,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform kernels (depthwise fans per channel), zero bias."""
        k2 = self.depthwise.kernel_size[0] * self.depthwise.kernel_size[1]
        bound = math.sqrt(6.0 / (k2 + k2))  # one filter per channel: k^2 inputs, k^2 outputs
        nn.init.uniform_(self.depthwise.weight, -bound, bound)
        nn.init.xavier_uniform_(self.pointwise.weight)
        if self.pointwise.bias is not None:
            nn.init.zeros_(self.pointwise.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))

    def dense_weight(self) -> Tensor:
        """The ``(C_out, C_in, k, k)`` kernel of the one ordinary convolution this layer equals."""
        # pointwise (C_out, C_in, 1, 1) times depthwise (C_in, 1, k, k), per input channel
        return self.pointwise.weight * self.depthwise.weight.transpose(0, 1)

    def dense_forward(self, x: Tensor) -> Tensor:
        """The same map as :meth:`forward` through one ordinary convolution (slow; for checks)."""
        d = self.depthwise
        return F.conv2d(x, self.dense_weight(), self.pointwise.bias, stride=d.stride, padding=d.padding)
