"""Thin fast paths over :mod:`histolatent.nn.groupconv` used by TARGET-VAE.

:class:`PointwiseGroupConv` is :class:`~histolatent.nn.groupconv.GroupConv2d` with
``kernel_size=1, orientation_size=1`` (TARGET-VAE §3.3.1: "1x1 group convolutional layers ...
efficiently implemented as 3D convolutions"): a channel mixing shared by all orientations and
locations. The parent builds a ``(C_out N, C_in N)`` filter bank that is block diagonal in the
orientations and runs a dense conv, ``N`` times the necessary work; this subclass keeps the same
parameter (``weight (C_out, C_in, 1, 1, 1)``, ``bias (C_out,)``, identical state dicts) and applies
it as one batched matmul on the ``(B, C, N, H, W)`` layout, with no transposes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from histolatent.nn.groupconv import GroupConv2d

__all__ = ["PointwiseGroupConv"]


class PointwiseGroupConv(GroupConv2d):
    """1x1 group conv mixing channels only: ``(B, C_in, N, H, W) -> (B, C_out, N, H, W)``.

    ``out[b, o, r, h, w] = sum_i weight[o, i] in[b, i, r, h, w] + bias[o]``; commutes with
    rotations of the grid and rolls of the orientation axis (exactly, any angle). Also accepts
    any trailing spatial shape, e.g. ``(B, C_in, N, L)``.
    """

    def __init__(self, in_channels: int, out_channels: int, n_rotations: int, *, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, n_rotations, bias=bias, disk=False, orientation_size=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[1] != self.in_channels or x.shape[2] != self.n_rotations:
            raise ValueError(f"PointwiseGroupConv expects (B, {self.in_channels}, {self.n_rotations}, ...), "
                             f"got {tuple(x.shape)}")
        w = self.weight.reshape(self.out_channels, self.in_channels)
        b = x.shape[0]
        flat = x.reshape(b, self.in_channels, -1)  # (B, C_in, N H W)
        # one GEMM per image on the native layout: no transposes, contiguous output; the bias is
        # added in place (baddbmm would first materialise the expanded bias)
        y = torch.bmm(w.expand(b, -1, -1), flat)
        if self.bias is not None:
            y = y.add_(self.bias[:, None].to(y.dtype))  # bmm's backward does not need y
        return y.reshape(b, self.out_channels, *x.shape[2:])
