"""Tile grids and tissue fractions with non-square mask pixels and slides wider than tall.

References are brute force: the tissue mask blown up to level 0 pixel by pixel, and the
tile corners enumerated one by one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from histolatent.io.slide import ArraySlide
from histolatent.tissue import TissueMask, box_fractions, tile_grid


def _l_mask() -> np.ndarray:
    """40 rows x 36 columns, an L off the centre: the reference flips if x and y are swapped."""
    m = np.zeros((40, 36), bool)
    m[4:34, 20:27] = True
    m[27:34, 20:35] = True
    m[10, 3] = True  # a lone pixel near the left edge
    return m


def test_tissue_fractions_with_non_square_mask_pixels_match_brute_force():
    """Mask pixels of 5 x 3 level-0 px (180 x 120 slide); tiles of 30 level-0 px every 15:
    each box covers whole mask pixels, so the fraction is exact."""
    m = _l_mask()
    tm = TissueMask(m, (180, 120))
    assert tm.downsample == (5.0, 3.0)
    level0 = np.repeat(np.repeat(m, 3, axis=0), 5, axis=1)  # (120, 180): what each level-0 px is
    grid = tile_grid(mask=tm, level0_dimensions=(180, 120), slide_mpp=0.25, mpp=0.75, tile_px=10,
                     stride_px=5, min_tissue=0.0)
    xs = [15 * k for k in range(100) if 15 * k + 30 <= 180]
    ys = [15 * k for k in range(100) if 15 * k + 30 <= 120]
    np.testing.assert_array_equal(grid.x, np.tile(xs, len(ys)))  # row-major: x varies fastest
    np.testing.assert_array_equal(grid.y, np.repeat(ys, len(xs)))
    ref = np.array([level0[y:y + 30, x:x + 30].mean() for x, y in zip(grid.x, grid.y, strict=True)])
    assert ref.max() > 0.5 and (ref == 0).sum() > 5  # tissue and glass both present
    np.testing.assert_allclose(grid.tissue_fraction, ref, atol=1e-6)
    np.testing.assert_allclose(box_fractions(tm, grid.x, grid.y, 30.0), ref, atol=1e-12)
    kept = tile_grid(mask=tm, level0_dimensions=(180, 120), slide_mpp=0.25, mpp=0.75, tile_px=10, stride_px=5,
                     min_tissue=0.3)
    np.testing.assert_array_equal(kept.x, grid.x[ref >= 0.3])
    np.testing.assert_array_equal(kept.y, grid.y[ref >= 0.3])


def test_grid_corners_at_a_non_integer_scale_match_enumeration():
    """2.4 level-0 px per tile pixel, stride 16.8 level-0 px, on a 401 x 157 slide."""
    tm = TissueMask(np.ones((10, 25), bool), (401, 157))
    grid = tile_grid(mask=tm, level0_dimensions=(401, 157), slide_mpp=0.25, mpp=0.6, tile_px=20, stride_px=7)
    tile0, stride0 = 48.0, 16.8
    assert grid.level0_tile == pytest.approx(tile0)
    xs = [round(k * stride0) for k in range(100) if k * stride0 + tile0 <= 401 + 1e-9]
    ys = [round(k * stride0) for k in range(100) if k * stride0 + tile0 <= 157 + 1e-9]
    assert len(xs) == 22 and len(ys) == 7  # (401 - 48) / 16.8 = 21.01, (157 - 48) / 16.8 = 6.49
    np.testing.assert_array_equal(grid.x, np.tile(xs, len(ys)))
    np.testing.assert_array_equal(grid.y, np.repeat(ys, len(xs)))
    assert math.isclose(float(grid.tissue_fraction.min()), 1.0)


def test_grid_tiles_read_the_right_level0_block():
    """Tile i of a grid at twice the slide's mpp is the 2 x 2 block mean of level 0 at (x[i], y[i])."""
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (70, 110, 3), dtype=np.uint8)
    slide = ArraySlide(img, mpp=0.5)
    tm = TissueMask(np.ones((7, 11), bool), (110, 70))
    grid = tile_grid(slide, mpp=1.0, tile_px=12, stride_px=9, mask=tm)
    assert len(np.unique(grid.x)) == 5 and len(np.unique(grid.y)) == 3
    for i, tile in grid.iter_tiles(slide):
        x, y = int(grid.x[i]), int(grid.y[i])
        ref = img[y:y + 24, x:x + 24].astype(float).reshape(12, 2, 12, 2, 3).mean(axis=(1, 3))
        assert np.abs(tile - ref).max() <= 0.5 + 1e-9, (i, x, y)
