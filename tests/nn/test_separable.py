"""The depthwise-separable convolution is the ordinary convolution with the factored kernel, at
the parameter count of the factorisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from histolatent.nn.separable import SeparableConv2d


@pytest.mark.parametrize(("stride", "size"), [(1, 9), (2, 9), (2, 10)])
def test_equals_a_dense_convolution_with_the_factored_kernel(stride, size):
    torch.manual_seed(0)
    conv = SeparableConv2d(5, 7, 3, stride=stride)
    x = torch.randn(2, 5, size, size + 3)  # not square
    y = conv(x)
    assert torch.allclose(y, conv.dense_forward(x), atol=1e-5)
    # the kernel by hand: w[o, i] = pointwise[o, i] * depthwise[i]
    w = torch.einsum("oi,ikl->oikl", conv.pointwise.weight[:, :, 0, 0], conv.depthwise.weight[:, 0])
    assert torch.allclose(y, F.conv2d(x, w, conv.pointwise.bias, stride=stride, padding=1), atol=1e-5)
    assert y.shape[-2:] == (-(-size // stride), -(-(size + 3) // stride))  # "same": ceil(n / stride)


def test_parameter_count_is_the_factorisation():
    conv = SeparableConv2d(128, 64, 3)
    assert sum(p.numel() for p in conv.parameters()) == 128 * 9 + 128 * 64 + 64
    assert conv.depthwise.bias is None  # as Keras: the depthwise step has no bias
    with pytest.raises(ValueError, match="odd"):
        SeparableConv2d(4, 4, 2)


def test_keras_initialisation_keeps_the_scale_of_a_signal():
    torch.manual_seed(0)
    x = torch.randn(4, 64, 24, 24)
    y = x
    with torch.no_grad():
        for _ in range(4):
            y = SeparableConv2d(64, 64, 3)(y)
    ratio = float(y[..., 4:-4, 4:-4].std() / x.std())  # away from the zero padding
    assert 0.2 < ratio < 5, ratio
