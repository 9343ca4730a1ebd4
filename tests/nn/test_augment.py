"""The NIC augmentation: seeded, batched, in range, and each transform doing what it says."""

from __future__ import annotations

import torch

from histolatent.nn.augment import AugmentConfig, augment, geometric, photometric


def _x(n=3, s=32):
    return torch.rand(n, 3, s, s, generator=torch.Generator().manual_seed(0))


def test_same_seed_same_output_and_range():
    x = _x()
    a = augment(x, AugmentConfig(), torch.Generator().manual_seed(5))
    b = augment(x, AugmentConfig(), torch.Generator().manual_seed(5))
    c = augment(x, AugmentConfig(), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1


def test_geometry_off_is_identity_and_elastic_moves_pixels_smoothly():
    x = _x()
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(geometric(x, g, rotate=False), x, atol=1e-5)
    ramp = torch.linspace(0, 1, 32).expand(1, 3, 32, 32).contiguous()
    y = geometric(ramp, torch.Generator().manual_seed(1), rotate=False, elastic_alpha=0.05)
    assert (y - ramp).abs().max() > 0.01  # displaced
    assert (y[..., 1:] - y[..., :-1]).abs().max() < 0.2  # and still smooth


def test_rotation_keeps_a_centred_disk_and_moves_an_off_centre_square():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disk = (((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 64).float().expand(8, 3, 32, 32).contiguous()
    out = geometric(disk, torch.Generator().manual_seed(0), rotate=True)
    assert (out - disk).abs().mean() < 0.02
    square = torch.zeros(8, 3, 32, 32)
    square[..., 2:10, 2:10] = 1.0  # top-left corner: any turn other than ~0 moves it
    moved = (geometric(square, torch.Generator().manual_seed(0), rotate=True) - square).abs().mean(dim=(1, 2, 3))
    assert int((moved > 0.02).sum()) >= 6


def test_brightness_is_a_per_image_constant_shift():
    x = 0.3 + 0.4 * _x(4)  # in [0.3, 0.7]: no clipping for shifts up to 0.3
    z = photometric(x, torch.Generator().manual_seed(0), brightness=0.3)
    d = z - x
    assert torch.allclose(d, d.mean(dim=(1, 2, 3), keepdim=True).expand_as(d), atol=1e-6)
    assert d.mean(dim=(1, 2, 3)).std() > 0.01
    assert torch.allclose(photometric(x, torch.Generator().manual_seed(0)), x, atol=1e-6)
