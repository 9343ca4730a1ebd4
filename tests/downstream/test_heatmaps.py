"""Heatmaps at grid resolution (downstream/heatmaps.py, io/heatmap_store.py): the level-0 affine
round trip through the store and QuPath GeoJSON on a non-square grid with non-square tiles and
stride, a real compressed slide end to end, ground-truth masks on the grid, post-processing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.draw import polygon as draw_polygon

from histolatent.downstream.heatmaps import (
    cells_from_mask,
    grid_geometry,
    heatmap_geojson,
    heatmap_jaccard,
    heatmap_polygons,
    heatmap_slide,
    mask_polygons,
    postprocess_heatmap,
)
from histolatent.embed.grid import compress_slide, read_slide_grid
from histolatent.errors import InputError
from histolatent.io.geojson import read_geojson_polygons
from histolatent.io.geojson_export import validate_feature_collection, write_feature_collection
from histolatent.io.heatmap_store import read_heatmap, write_heatmap
from histolatent.tissue.mask import TissueMask, mask_from_geojson

# 5 x 7 cells; tiles 6 x 4 px at 1 µm/px on a 0.5 µm/px slide (12 x 8 level-0 px), stride 10 x 6
# level-0 px (tiles overlap), origin (3, 5): cell (i, j)'s stride box is [4 + 10 j, 14 + 10 j) x [6 + 6 i, 12 + 6 i)
ATTRS = {"affine": [[10.0, 0.0, 3.0], [0.0, 6.0, 5.0], [0.0, 0.0, 1.0]], "tile_px": [6, 4], "stride_px": [5, 3],
         "mpp": 1.0, "slide_mpp": 0.5, "level0_dimensions": [80, 40], "grid_shape": [5, 7], "slide": "s.tiff"}
CELLS = np.array([[1, 1, 1, 0, 0, 0, 1],   # a ring with a hole, a diagonal pair (top right),
                  [1, 0, 1, 0, 0, 1, 0],   # and three single cells
                  [1, 1, 1, 0, 0, 0, 0],
                  [0, 0, 0, 0, 1, 0, 0],
                  [1, 0, 0, 0, 0, 0, 1]], dtype=bool)


def planted_heatmap(cells: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(cells, rng.uniform(0.6, 1.0, cells.shape), rng.uniform(0.0, 0.4, cells.shape)).astype(np.float32)


def stride_box(i: int, j: int) -> tuple[float, float, float, float]:
    return 4 + 10 * j, 14 + 10 * j, 6 + 6 * i, 12 + 6 * i


def test_geometry_of_a_non_square_grid():
    geo = grid_geometry(ATTRS)
    assert geo.tile == (12.0, 8.0) and geo.stride == (10.0, 6.0) and geo.shape == (5, 7)
    x0, y0, size = geo.boxes("cell")
    assert (x0[2], y0[3], size) == (24.0, 24.0, (10.0, 6.0))
    x0, y0, size = geo.boxes("tile")
    assert (x0[2], y0[3], size) == (23.0, 23.0, (12.0, 8.0))  # the affine's corner: 3 + 2 * 10, 5 + 3 * 6
    with pytest.raises(InputError, match="scale"):
        grid_geometry({**ATTRS, "affine": [[0.0, 6.0, 0.0], [10.0, 0.0, 0.0], [0.0, 0.0, 1.0]]})


def test_store_and_geojson_round_trip_at_level0(tmp_path):
    heat = planted_heatmap(CELLS)
    store = write_heatmap(heat, ATTRS, tmp_path / "s.heatmap.zarr", attrs={"threshold": 0.5})
    got, mask, attrs = read_heatmap(store)
    np.testing.assert_array_equal(got, heat)
    assert mask.all() and attrs["affine"] == ATTRS["affine"] and attrs["level0_dimensions"] == [80, 40]
    with pytest.raises(InputError, match="already exists"):
        write_heatmap(heat, ATTRS, store)

    fc = heatmap_geojson(got, attrs, threshold=0.5)
    assert validate_feature_collection(fc) == []
    path = write_feature_collection(fc, tmp_path / "s.geojson")
    feats = json.loads(path.read_text())["features"]
    assert len(feats) == 6  # the ring, the diagonal pair as two, three singles
    assert sorted(f["properties"]["measurements"]["n_cells"] for f in feats) == [1, 1, 1, 1, 1, 8]
    assert all(f["properties"]["classification"]["name"] == "Grad-CAM" for f in feats)
    ring = next(f for f in feats if f["properties"]["measurements"]["n_cells"] == 8)
    assert len(ring["geometry"]["coordinates"]) == 2  # exterior and the hole
    assert ring["properties"]["measurements"]["area_um2"] == pytest.approx(8 * 10 * 6 * 0.25)
    # each single cell's polygon is its stride box, x along columns and y along rows
    boxes = {tuple(np.ptp(np.asarray(f["geometry"]["coordinates"][0]), axis=0)) + tuple(
        np.min(f["geometry"]["coordinates"][0], axis=0)) for f in feats}
    for i, j in [(3, 4), (4, 0), (4, 6), (0, 6), (1, 5)]:
        x0, x1, y0, y1 = stride_box(i, j)
        assert (x1 - x0, y1 - y0, x0, y0) in boxes

    # read back as QuPath would (x = column, pixel (i, j) covers [j, j+1) x [i, i+1)), at level 0
    level0 = mask_from_geojson(path, (80, 40), max_px=4096)
    assert level0.mask.shape == (40, 80)
    np.testing.assert_array_equal(cells_from_mask(level0, attrs, footprint="cell"), CELLS)
    np.testing.assert_array_equal(cells_from_mask(level0.mask, attrs, footprint="cell"), CELLS)
    # the same polygons with x and y swapped do not come back
    swapped = [(e[:, ::-1], [h[:, ::-1] for h in hs]) for e, hs in heatmap_polygons(CELLS, attrs)]
    wrong = np.zeros((40, 80), bool)
    for ext, _ in swapped:
        rr, cc = draw_polygon(ext[:, 1] - 0.5, ext[:, 0] - 0.5, shape=wrong.shape)
        wrong[rr, cc] = True
    assert not np.array_equal(cells_from_mask(wrong, attrs, footprint="cell"), CELLS)


@pytest.mark.parametrize("seed", range(4))
def test_mask_polygons_rasterise_back_to_the_mask(seed):
    m = np.random.default_rng(seed).uniform(size=(13, 17)) < 0.45  # holes, saddles, edge cells
    back = np.zeros_like(m)
    polys = mask_polygons(m)
    for ext, holes in polys:
        fill = np.zeros_like(m)
        rr, cc = draw_polygon(ext[:, 1] - 0.5, ext[:, 0] - 0.5, shape=m.shape)  # cell centres inside
        fill[rr, cc] = True
        for hole in holes:
            rr, cc = draw_polygon(hole[:, 1] - 0.5, hole[:, 0] - 0.5, shape=m.shape)
            fill[rr, cc] = False
        back |= fill
    np.testing.assert_array_equal(back, m)
    from scipy import ndimage as ndi

    assert len(polys) == ndi.label(m, structure=ndi.generate_binary_structure(2, 1))[1]


def mean_rgb(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


def bright_slide() -> tuple[np.ndarray, np.ndarray]:
    """A 96 x 160 px slide at 0.25 µm/px, 3 x 5 tiles of 16 px at 0.5 µm/px: bright cells (0, 3), (1, 3), (1, 4)."""
    cells = np.zeros((3, 5), bool)
    cells[0, 3] = cells[1, 3] = cells[1, 4] = True
    image = np.repeat(np.repeat(cells, 32, 0), 32, 1)[..., None].repeat(3, -1).astype(np.uint8) * 255
    return image, cells


def test_compressed_slide_end_to_end(tmp_path, brightness_cnn):
    image, cells = bright_slide()
    grid = compress_slide(image, mean_rgb, tmp_path / "slide.zarr", tile_px=16, mpp=0.5, slide_mpp=0.25,
                          tissue=TissueMask(np.ones((3, 5), bool), (160, 96)), progress=False)
    paths = heatmap_slide(brightness_cnn(), grid, tmp_path / "out", postprocess=False, progress=False)
    assert paths.store.name == "slide.heatmap.zarr" and paths.geojson.name == "slide.heatmap.geojson"
    assert paths.png is None
    heat, mask, attrs = read_heatmap(paths.store)
    _, _, gattrs = read_slide_grid(grid)
    assert attrs["affine"] == gattrs["affine"] == [[32.0, 0.0, 0.0], [0.0, 32.0, 0.0], [0.0, 0.0, 1.0]]
    assert attrs["layer"] == "conv" and attrs["method"] == "grad-cam" and attrs["grid"] == str(grid)
    np.testing.assert_allclose(heat, cells.astype(np.float32), atol=1e-6)
    # the GeoJSON region, rasterised at level 0, is the bright part of the slide pixel for pixel
    level0 = mask_from_geojson(paths.geojson, (160, 96), max_px=4096)
    np.testing.assert_array_equal(level0.mask, image[..., 0] > 127)
    # the ground truth on the grid: from the level-0 mask, and from an 8x coarser one (SynthPath's masks)
    truth = cells_from_mask(image[..., 0] > 127, attrs)
    np.testing.assert_array_equal(truth, cells)
    coarse = (image[::8, ::8, 0] > 127)
    np.testing.assert_array_equal(cells_from_mask(coarse, attrs, downsample=8), cells)
    assert heatmap_jaccard(heat, truth) == 1.0
    with pytest.raises(InputError, match="already exists"):
        heatmap_slide(brightness_cnn(), grid, tmp_path / "out", progress=False)
    again = heatmap_slide(brightness_cnn(), grid, tmp_path / "out", overwrite=True, postprocess=False, progress=False)
    assert read_geojson_polygons(again.geojson)[0][0].tolist() == read_geojson_polygons(paths.geojson)[0][0].tolist()


def test_postprocess_removes_a_speck_and_keeps_a_blob():
    heat = np.zeros((30, 40), np.float32)
    heat[5:17, 4:19] = 1.0  # the blob: 12 x 15 cells
    heat[24, 33] = 1.0  # an isolated speck
    mask = np.ones_like(heat, bool)
    mask[:, 38:] = False  # background at the right edge
    out = postprocess_heatmap(heat, mask)
    kept = out >= 0.5
    assert not kept[20:, 28:].any()  # the speck is gone
    assert kept[6:16, 5:18].all()  # the blob's interior stays
    outside = np.ones_like(kept)
    outside[4:18, 3:20] = False  # more than one cell beyond the blob
    assert not kept[outside].any()
    assert (out[~mask] == 0).all()
    assert np.array_equal(postprocess_heatmap(heat, mask), out)  # deterministic


def test_postprocess_rejects_regions_below_min_cells():
    heat = np.zeros((10, 20), np.float32)
    heat[0, 0] = heat[0, 3:5] = heat[0, 7:10] = 0.9  # regions of 1, 2 and 3 cells
    heat[4, 0:4] = heat[4:6, 8:13] = 0.9  # 4 and 10 cells
    out = postprocess_heatmap(heat, sigma=0.0, threshold=0.5, min_cells=4)
    kept = out >= 0.5
    assert kept.sum() == 4 + 10
    assert kept[4, 0:4].all() and kept[4:6, 8:13].all() and not kept[0].any()
    np.testing.assert_array_equal(out[kept], np.float32(0.9))  # sigma 0: values kept as they were


def test_jaccard_at_grid_resolution():
    heat = np.array([[0.9, 0.6, 0.1], [0.0, 0.7, 0.2]])
    truth = np.array([[True, False, False], [False, True, True]])
    assert heatmap_jaccard(heat, truth) == pytest.approx(2 / 4)
    assert heatmap_jaccard(heat, truth, threshold=0.15) == pytest.approx(3 / 4)
    with pytest.raises(InputError, match="shapes"):
        heatmap_jaccard(heat, truth[:, :2])
