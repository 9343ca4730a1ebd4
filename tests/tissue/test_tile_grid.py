"""Tile grids: physical scale, level-0 coordinates, tissue fractions, streaming reads."""

from __future__ import annotations

import numpy as np
import pytest

from histolatent.errors import InputError
from histolatent.io.slide import open_slide
from histolatent.tissue import TissueMask, box_fractions, detect_tissue, tile_grid


def test_grid_coordinates_and_fractions_against_brute_force():
    mask = np.zeros((100, 150), bool)
    mask[20:70, 30:120] = True
    tm = TissueMask(mask, (1500, 1000))  # 10 level-0 px per mask px
    grid = tile_grid(mask=tm, level0_dimensions=(1500, 1000), slide_mpp=0.25, mpp=0.5, tile_px=100,
                     stride_px=50, min_tissue=0.0)
    tile0 = 200  # 100 px at 0.5 um/px = 200 level-0 px at 0.25
    assert grid.level0_tile == tile0
    nx, ny = (1500 - tile0) // 100 + 1, (1000 - tile0) // 100 + 1
    assert len(grid) == nx * ny
    for i in range(0, len(grid), 7):
        x, y = grid.x[i] // 10, grid.y[i] // 10
        assert grid.tissue_fraction[i] == pytest.approx(mask[y:y + 20, x:x + 20].mean(), abs=1e-6)
    kept = tile_grid(mask=tm, level0_dimensions=(1500, 1000), slide_mpp=0.25, mpp=0.5, tile_px=100,
                     min_tissue=0.99)
    assert len(kept) > 0 and (kept.tissue_fraction >= 0.99).all()
    assert (kept.x + tile0 <= 1500).all() and (kept.y + tile0 <= 1000).all()


def test_box_fractions_vectorised():
    tm = TissueMask(np.eye(10, dtype=bool), (10, 10))
    f = box_fractions(tm, np.array([0, 5]), np.array([0, 0]), 5.0)
    assert f.tolist() == [pytest.approx(5 / 25), 0.0]


def test_grid_on_real_slide_reads_tissue_tiles(sample_paths):
    with open_slide(sample_paths["cmu-small-region"]) as slide:
        tm = detect_tissue(slide, thumbnail_px=512)
        assert 0.2 < tm.tissue_fraction < 0.6
        grid = tile_grid(slide, mpp=1.0, tile_px=128, min_tissue=0.9, mask=tm)
        assert len(grid) >= 10
        for i, tile in grid.iter_tiles(slide):
            assert tile.shape == (128, 128, 3)
            if i == 3:
                break
        assert tile.mean() < 225  # tissue, not glass


def test_grid_errors():
    tm = TissueMask(np.ones((4, 4), bool), (40, 40))
    with pytest.raises(InputError, match="mpp"):
        tile_grid(mask=tm, level0_dimensions=(40, 40), slide_mpp=0.5, mpp=0, tile_px=8)
    with pytest.raises(InputError, match="slide"):
        tile_grid(mpp=1.0, tile_px=8)
    arr = open_slide(np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(InputError, match="mpp"):
        tile_grid(arr, mpp=1.0, tile_px=8, mask=tm)
