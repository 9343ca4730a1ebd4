"""Every normaliser: odd inputs give a sensible result or a clear error, never NaN, never a
modified input; tiles with too little tissue come back unchanged and are counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histolatent.errors import InputError
from histolatent.stain import MacenkoNormalizer, ReinhardNormalizer, VahadaneNormalizer

METHODS = [MacenkoNormalizer, ReinhardNormalizer, VahadaneNormalizer]


@pytest.fixture(params=METHODS, ids=lambda c: c.method)
def norm(request, render_he):
    return request.param().fit(render_he(size=64, seed=5))


def _check_unchanged_and_counted(norm, img, expect):
    before = img.copy()
    n0 = norm.n_skipped
    out = norm.transform(img)
    assert np.array_equal(img, before)
    assert norm.n_skipped == n0 + 1 and bool(norm.last_skipped[0])
    assert np.array_equal(out, expect)


def test_all_white_all_black_and_one_pixel_are_returned_unchanged(norm):
    for img in (np.full((32, 32, 3), 255, np.uint8), np.zeros((32, 32, 3), np.uint8),
                np.array([[[120, 60, 150]]], np.uint8)):
        _check_unchanged_and_counted(norm, img, img)


def test_grey_input_is_replicated_and_left_unchanged(norm, render_he):
    grey = render_he(size=32, seed=6).mean(axis=-1).astype(np.uint8)
    _check_unchanged_and_counted(norm, grey, np.repeat(grey[..., None], 3, axis=-1))


def test_rgba_keeps_alpha_and_16_bit_is_scaled(norm, render_he):
    img = render_he(size=48, seed=7)
    alpha = np.full((48, 48, 1), 200, np.uint8)
    rgba = np.concatenate([img, alpha], axis=-1)
    out = norm.transform(rgba)
    assert out.shape == (48, 48, 4) and np.array_equal(out[..., 3], alpha[..., 0])
    assert np.array_equal(out[..., :3], norm.transform(img))
    img16 = img.astype(np.uint16) * 257
    before = img16.copy()
    out16 = norm.transform(img16)
    assert out16.dtype == np.uint8 and np.array_equal(out16, norm.transform(img))
    assert np.array_equal(img16, before)


def test_nan_and_out_of_range_inputs_raise_clear_errors(norm):
    bad = np.full((8, 8, 3), 0.5)
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        norm.transform(bad)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        norm.transform(np.full((8, 8, 3), 2.0))
    with pytest.raises(InputError, match="NaN"):
        norm.transform(torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(InputError, match="shape"):
        norm.transform(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(InputError, match="masks"):
        norm.transform(np.zeros((8, 8, 3), np.uint8), masks=np.ones((4, 4), bool))


def test_degenerate_colours_never_produce_nan(norm):
    rng = np.random.default_rng(0)
    two = np.where(rng.random((32, 32, 1)) < 0.5, [120, 60, 150], [200, 200, 200]).astype(np.uint8)
    flat = np.full((32, 32, 3), (150, 80, 160), np.uint8)
    for img in (two, flat):
        out = norm.transform(img)
        assert out.dtype == np.uint8 and out.shape == img.shape
    x = torch.from_numpy(np.stack([two, flat])).permute(0, 3, 1, 2)
    out = norm.transform(x)
    assert out.dtype == torch.uint8 and torch.equal(out[1], x[1])  # flat colour: unchanged


def test_tensor_batch_counts_skips_and_keeps_input(norm, render_he):
    tiles = np.stack([render_he(size=32, seed=8), np.full((32, 32, 3), 250, np.uint8)])
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    before = x.clone()
    n0 = norm.n_skipped
    out = norm.transform(x)
    assert torch.equal(x, before) and out.dtype == torch.float32 and out.shape == x.shape
    assert norm.n_skipped == n0 + 1 and norm.last_skipped.tolist() == [False, True]
    assert torch.equal(out[1], x[1])  # the glass tile comes back exactly, not rounded


def test_lists_and_stacks(norm, render_he):
    imgs = [render_he(size=24, seed=9), render_he(size=40, seed=10)]
    outs = norm.transform(imgs)
    assert isinstance(outs, list) and [o.shape for o in outs] == [(24, 24, 3), (40, 40, 3)]
    stack = np.stack([imgs[0], imgs[0]])
    one = norm.transform(imgs[0])
    assert np.array_equal(outs[0], one) and np.array_equal(outs[1], norm.transform(imgs[1]))
    np.testing.assert_array_equal(norm.transform(stack), np.stack([one, one]))
