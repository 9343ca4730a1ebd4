"""Elastic deformation (DRL §3.2): identity at zero strength, exact translations, seeded,
and a field whose size and smoothness follow sigma and alpha as the Gaussian filter predicts."""

from __future__ import annotations

import math

import pytest
import torch

from histolatent.errors import InputError
from histolatent.nn.deform import (
    displacement_field,
    elastic_deform,
    gaussian_smooth,
    sigma_px,
    warp,
)


def _x(n=2, c=3, s=24, seed=0):
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(seed))


def test_zero_alpha_is_exactly_the_identity():
    x = _x()
    y, field = elastic_deform(x, sigma=2.0, alpha=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y, x) and not field.any()


def test_a_constant_integer_field_translates_exactly():
    x = _x(s=20)
    field = torch.zeros(2, 2, 20, 20)
    field[:, 0], field[:, 1] = 3.0, -2.0  # read from 3 px to the right, 2 px up
    y = warp(x, field)
    assert torch.equal(y[..., 2:, :17], x[..., :-2, 3:])
    # outside the image the input is mirrored about its last row/column
    assert torch.equal(y[..., 0, :17], x[..., 2, 3:]) and torch.equal(y[..., 5, 17], x[..., 3, 18])
    assert torch.equal(warp(x, field, padding="border")[..., 0, 19], x[..., 0, 19])


def test_a_half_pixel_shift_averages_neighbours():
    x = _x(s=8)
    field = torch.zeros(2, 2, 8, 8)
    field[:, 0] = 0.5
    torch.testing.assert_close(warp(x, field)[..., :7], 0.5 * (x[..., :7] + x[..., 1:]))


def test_same_generator_state_same_output_and_another_seed_differs():
    x = _x()
    a, fa = elastic_deform(x, sigma=1.5, alpha=48.0, generator=torch.Generator().manual_seed(7))
    b, fb = elastic_deform(x, sigma=1.5, alpha=48.0, generator=torch.Generator().manual_seed(7))
    c, _ = elastic_deform(x, sigma=1.5, alpha=48.0, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and torch.equal(fa, fb) and not torch.equal(a, c)
    assert not torch.equal(a, x) and a.dtype == x.dtype and a.shape == x.shape
    assert torch.equal(x, _x())  # the input is left alone


def test_field_size_and_smoothness_follow_the_gaussian_filter():
    # Smoothed U(-1, 1) noise: std alpha / (sigma sqrt(12 pi)), lag-1 autocorrelation exp(-1 / (4 sigma^2)).
    g = torch.Generator().manual_seed(0)
    for sigma in (1.0, 2.0, 4.0):
        f = displacement_field(2, (192, 192), sigma=sigma, alpha=10.0, generator=g)
        inner = f[..., 20:-20, 20:-20]  # away from the zero padding's border
        std = float(inner.std())
        assert std == pytest.approx(10.0 / (sigma * math.sqrt(12 * math.pi)), rel=0.1)
        d = inner - inner.mean()
        rho = float((d[..., :, 1:] * d[..., :, :-1]).mean() / (d * d).mean())
        assert rho == pytest.approx(math.exp(-1 / (4 * sigma**2)), abs=0.03)
    # a larger sigma: a smoother field (smaller gradient relative to its size)
    rough = displacement_field(1, (64, 64), sigma=1.0, alpha=1.0, generator=torch.Generator().manual_seed(3))
    smooth = displacement_field(1, (64, 64), sigma=3.0, alpha=1.0, generator=torch.Generator().manual_seed(3))

    def grad_ratio(f):
        return float((f[..., 1:] - f[..., :-1]).pow(2).mean() / f.pow(2).mean())

    assert grad_ratio(smooth) < 0.2 * grad_ratio(rough)


def test_each_image_gets_its_own_sigma_and_zero_sigma_keeps_the_raw_noise():
    u = torch.rand(3, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    out = gaussian_smooth(u, torch.tensor([0.0, 1.0, 2.0]))
    assert torch.equal(out[0], u[0])
    torch.testing.assert_close(out[1], gaussian_smooth(u[1:2], 1.0)[0])
    torch.testing.assert_close(out[2], gaussian_smooth(u[2:3], 2.0)[0])
    # zero padding: a constant field is smoothed to itself in the middle; at a corner only the
    # quarter of the kernel inside the image (the half-kernel, centre included, squared) remains
    ones = gaussian_smooth(torch.ones(1, 1, 32, 32), 2.0)
    half = 0.5 + 0.5 / (2.0 * math.sqrt(2 * math.pi))
    assert float(ones[0, 0, 16, 16]) == pytest.approx(1.0, abs=1e-5)
    assert float(ones[0, 0, 0, 0]) == pytest.approx(half**2, abs=1e-3)


def test_sigma_from_a_fraction_of_the_image_side():
    assert torch.equal(sigma_px(3, 96, 0.04), torch.full((3,), 0.04 * 96))
    s = sigma_px(500, 96, (0.03, 0.05), generator=torch.Generator().manual_seed(0))
    assert float(s.min()) >= 0.03 * 96 and float(s.max()) <= 0.05 * 96 and float(s.std()) > 0.3
    with pytest.raises(InputError, match="sigma range"):
        sigma_px(2, 96, (0.05, 0.03))


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="elastic_deform"):
        elastic_deform(torch.rand(3, 8, 8), sigma=1.0, alpha=1.0)
    with pytest.raises(InputError, match="field"):
        warp(_x(), torch.zeros(2, 2, 5, 5))
    with pytest.raises(InputError, match="padding"):
        warp(_x(), torch.zeros(2, 2, 24, 24), padding="zeros")

