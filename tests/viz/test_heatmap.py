"""Heatmap figures (viz/heatmap.py): the heatmap lands on the thumbnail through the grid's affine,
not stretched over it, and the one call writes store, GeoJSON and PNG."""

from __future__ import annotations

import numpy as np
from PIL import Image

from histolatent.embed.grid import compress_slide
from histolatent.tissue.mask import TissueMask
from histolatent.viz.heatmap import heatmap_on_thumbnail, overlay_rgb, render_heatmap_slide

# 5 x 7 cells, stride 10 x 6 level-0 px from (3, 5), tiles 12 x 8: cell (i, j)'s stride box is
# [4 + 10 j, 14 + 10 j) x [6 + 6 i, 12 + 6 i); the grid covers x in [4, 74), y in [6, 36) of an 80 x 40 slide
ATTRS = {"affine": [[10.0, 0.0, 3.0], [0.0, 6.0, 5.0], [0.0, 0.0, 1.0]], "tile_px": [6, 4], "mpp": 1.0,
         "slide_mpp": 0.5, "level0_dimensions": [80, 40], "grid_shape": [5, 7]}


def test_one_hot_cell_lands_on_its_level0_box():
    heat = np.zeros((5, 7), np.float32)
    heat[3, 4] = 1.0
    for scale in (1, 2):  # a full-size thumbnail and one at half size
        vals = heatmap_on_thumbnail(heat, ATTRS, (40 // scale, 80 // scale))
        xc = (np.arange(80 // scale) + 0.5) * scale  # level-0 centres of the pixels
        yc = (np.arange(40 // scale) + 0.5) * scale
        inside = ((yc >= 24) & (yc < 30))[:, None] & ((xc >= 44) & (xc < 54))[None, :]
        np.testing.assert_array_equal(vals == 1.0, inside)
        covered = ((yc >= 6) & (yc < 36))[:, None] & ((xc >= 4) & (xc < 74))[None, :]
        np.testing.assert_array_equal(np.isfinite(vals), covered)  # the uncovered margin stays empty
    mask = np.ones((5, 7), bool)
    mask[3, 4] = False
    assert not (heatmap_on_thumbnail(heat, ATTRS, (40, 80), mask=mask) == 1.0).any()


def test_overlay_colours_only_where_there_are_cells():
    thumb = np.full((4, 6, 3), 200, np.uint8)
    vals = np.full((4, 6), np.nan, np.float32)
    vals[1, 2:4] = [0.0, 1.0]
    out = overlay_rgb(thumb, vals, alpha=0.5)
    changed = (out != thumb).any(-1)
    np.testing.assert_array_equal(changed, np.isfinite(vals))
    assert not np.array_equal(out[1, 2], out[1, 3])  # low and high heat differ


def test_render_heatmap_slide_writes_store_geojson_and_png(tmp_path, brightness_cnn):
    cells = np.zeros((6, 9), bool)
    cells[1:5, 5:8] = True  # a 4 x 3 block, right of centre
    image = np.repeat(np.repeat(cells, 16, 0), 16, 1)[..., None].repeat(3, -1).astype(np.uint8) * 200 + 30
    grid = compress_slide(image, lambda x: x.mean(dim=(2, 3)), tmp_path / "s.zarr", tile_px=16, mpp=0.5,
                          slide_mpp=0.5, tissue=TissueMask(np.ones((6, 9), bool), (144, 96)), progress=False)
    paths = render_heatmap_slide(brightness_cnn(), grid, tmp_path / "out", slide=image, thumbnail_px=144,
                                 progress=False)
    assert paths.store.is_dir() and paths.geojson.is_file() and paths.png.name == "s.heatmap.png"
    with Image.open(paths.png) as im:
        assert im.format == "PNG" and im.size[0] > 200
