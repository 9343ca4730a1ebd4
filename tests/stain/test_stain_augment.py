"""Stain augmentation: seeded, identity at zero strength, perturbs stains not structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histolatent.errors import InputError
from histolatent.stain import StainAugment


def test_seeded_reproducible_and_input_untouched(render_he):
    x = torch.from_numpy(np.stack([render_he(size=32, seed=s) for s in range(4)])).permute(0, 3, 1, 2)
    before = x.clone()
    a, b = StainAugment(seed=3)(x), StainAugment(seed=3)(x)
    assert torch.equal(a, b) and torch.equal(x, before) and a.dtype == torch.uint8
    c = StainAugment(seed=4)(x)
    assert not torch.equal(a, c)
    aug = StainAugment(seed=3)
    assert not torch.equal(aug(x), aug(x))  # a fresh draw per call


def test_zero_strength_is_identity_and_float_path(render_he):
    x = torch.from_numpy(render_he(size=32, seed=1)).permute(2, 0, 1)
    ident = StainAugment(sigma_scale=0, sigma_shift=0, sigma_vector=0)
    assert torch.equal(ident(x), x)
    xf = x.float() / 255
    assert (ident(xf) - xf).abs().max() < 1e-5
    assert StainAugment(p=0.0, seed=1)(xf).sub(xf).abs().max() < 1e-5


def test_perturbation_changes_colour_but_keeps_glass_and_structure(render_he):
    img = render_he(size=48, seed=2)
    img[:6] = 250
    x = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(8, 1, 1, 1)
    out = StainAugment(sigma_scale=0.3, sigma_vector=0.1, seed=0)(x).int()
    assert (out - x.int()).abs().float().mean() > 2  # colours moved
    assert (out[:, :, :6] - 250).abs().max() <= 4  # glass stays glass (no shift, only scale)
    g_in = x.float().mean(1).flatten(1)
    g_out = out.float().mean(1).flatten(1)
    corr = torch.stack([torch.corrcoef(torch.stack([a, b]))[0, 1] for a, b in zip(g_in, g_out, strict=True)])
    assert corr.min() > 0.9  # same structure


def test_bad_arguments():
    with pytest.raises(InputError, match="parallel"):
        StainAugment(stain_matrix=[[1, 0, 0], [2, 0, 0]])
    with pytest.raises(InputError, match="tensor"):
        StainAugment()(np.zeros((3, 4, 4)))
