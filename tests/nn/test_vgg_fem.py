"""The VGG encoder's block shapes and FEM's dilation rule (DRL §3.3, Eq. 5)."""

from __future__ import annotations

import math

import pytest
import torch

from histolatent.nn.fem import FeatureEnhanceModule, fem_dilations, span
from histolatent.nn.vgg import VGG19_CONVS, VGG19_WIDTHS, VGGEncoder


def test_vgg19_layout_and_block_shapes():
    net = VGGEncoder(3, VGG19_WIDTHS, VGG19_CONVS, batch_norm=False)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16 and [c.out_channels for c in convs][-1] == 512  # VGG-19's 16 conv layers
    small = VGGEncoder(3, (4, 6, 8), (1, 2, 1))
    outs = small(torch.rand(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 4, 16, 16), (2, 6, 8, 8), (2, 8, 4, 4)]
    assert len(small(torch.rand(1, 3, 32, 32), upto=2)) == 2
    with pytest.raises(ValueError, match="upto"):
        small(torch.rand(1, 3, 32, 32), upto=4)
    with pytest.raises(ValueError, match="same length"):
        VGGEncoder(3, (4, 6), (1,))


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 64, 100, 128])
def test_fem_dilation_rule_and_the_widest_kernel_covers_the_map(m):
    rates = fem_dilations(m)
    assert len(rates) == max(1, math.ceil(math.log2(m)))
    want = [1, 2] + [6 * 2 ** (i - 3) for i in range(3, len(rates) + 1)]  # r_0 = 1, r_1 = 2, r_(k-1) = 6 * 2^(k-3)
    assert rates == want[: len(rates)]
    assert span(3, rates[-1]) == 2 * rates[-1] + 1 > m  # Eq. 5 and the paper's coverage claim
    assert span(5, rates[-1]) > m


def test_fem_examples_from_the_paper_and_shapes():
    assert fem_dilations(64) == [1, 2, 6, 12, 24, 48]
    assert fem_dilations(6) == [1, 2, 6]
    fem = FeatureEnhanceModule(8, 12, 5)
    assert [b.dilation[0] for b in fem.branches] == [1, 2, 6, 12] and fem.out_channels == 20
    assert fem(torch.rand(2, 8, 12, 12)).shape == (2, 20, 12, 12)
    # each branch taps the map at its own rate: an impulse at (0, 0) reaches (r, r), not (1, 1)
    x = torch.zeros(1, 8, 12, 12)
    x[..., 0, 0] = 1.0
    with torch.no_grad():
        delta = (fem(x) - fem(torch.zeros_like(x)))[0].abs()  # (20, 12, 12)
    for k, r in enumerate(fem.dilations):
        branch = delta[5 * k: 5 * (k + 1)]
        if r < 12:
            assert float(branch[:, r, r].sum()) > 0
        assert (float(branch[:, 1, 1].sum()) > 0) == (r == 1)
