"""Paper 0's discriminator (appendix B.3) for the feature reconstruction term of Eq. 6.

An SE(2,N) CNN: lifting block -> max-pool -> 2 SE(2,N) conv blocks with max-pools -> a last
SE(2,N) conv block whose kernel covers the remaining map -> projection over orientations ->
1x1 conv -> one logit per image (``sigmoid`` of it is ``p_REAL``). The outputs of the four
blocks are the feature maps ``D_i`` used by Eq. 6. Being rotation-invariant, it judges a
reconstruction without caring how the cell is oriented. Used with both VAEs.
"""

from __future__ import annotations

from torch import Tensor, nn

from histolatent.nn.groupconv import (
    GroupBatchNorm,
    GroupConv2d,
    GroupMaxPool2d,
    GroupProjection,
    LiftingConv2d,
)


def valid_conv_sizes(image_size: int, n_blocks: int, kernel_size: int) -> tuple[list[int], list[int], int]:
    """Spatial sizes of paper 0's "valid" conv + 2x2 max-pool pyramid (appendix B).

    Returns ``(conv_out, pooled, final_kernel)``: the size after each block's conv, after each
    pool, and the kernel of the last conv that maps the remaining ``pooled[-1]`` map to 1x1
    (68 -> 64 -> 32 -> 28 -> 14 -> 10 -> 5 -> 1 for paper 0's 68x68 patches and 5x5 kernels).
    Every conv output must be even so that the mirrored decoder (2x up-pooling) is exact.
    """
    conv_out, pooled, s = [], [], image_size
    for i in range(n_blocks):
        s = s - kernel_size + 1
        if s < 2 or s % 2:
            raise ValueError(
                f"image_size {image_size} does not fit {n_blocks} blocks of valid {kernel_size}x{kernel_size} "
                f"conv + 2x2 pool: block {i + 1} would output {s} px (must be even and >= 2); "
                f"68 fits 3 blocks, 32 fits 2")
        conv_out.append(s)
        s //= 2
        pooled.append(s)
    return conv_out, pooled, s


def _gblock(cin: int, cout: int, k: int, n: int, slope: float, *, lifting: bool) -> nn.Sequential:
    conv = LiftingConv2d(cin, cout, k, n) if lifting else GroupConv2d(cin, cout, k, n)
    return nn.Sequential(conv, GroupBatchNorm(cout), nn.LeakyReLU(slope))


class SE2NDiscriminator(nn.Module):
    """``x (B, C, S, S) -> (logits (B,), [D_1, ..., D_4])`` (paper 0, appendix B.3).

    Parameters
    ----------
    channels : ``[C1, C2, C3, C4]`` (paper: ``[6, 6, 6, 16]``); the last block uses the final kernel.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 68, channels: list[int] | None = None,
                 n_rotations: int = 8, kernel_size: int = 5, leaky_slope: float = 0.2) -> None:
        super().__init__()
        channels = list(channels or [6, 6, 6, 16])
        n_pool = len(channels) - 1
        _, _, k_final = valid_conv_sizes(image_size, n_pool, kernel_size)
        blocks = []
        cin = in_channels
        for i, c in enumerate(channels):
            k = kernel_size if i < n_pool else k_final
            blocks.append(_gblock(cin, c, k, n_rotations, leaky_slope, lifting=i == 0))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        self.pool = GroupMaxPool2d(2)
        self.project = GroupProjection("mean")
        self.head = nn.Conv2d(channels[-1], 1, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        feats = []
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)  # (B, C_i, N, H_i, W_i)
            feats.append(h)
            if i < len(self.blocks) - 1:
                h = self.pool(h)
        logits = self.head(self.project(h))  # (B, 1, 1, 1)
        return logits.flatten(1).mean(dim=1), feats
